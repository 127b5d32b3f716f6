"""The states of a case (DESIGN.md, "Case lifecycle"), in a module of their own: the
command line lists them in its help without importing the database layer."""

STATUSES = ("new", "acknowledged", "in_progress", "waiting_customer", "answered", "closed", "reexamination")
