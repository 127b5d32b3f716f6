"""SQLite's full-text index written once per ingest batch, not once per row

FTS5 writes the words it holds in memory to a new segment of its index at every
statement's savepoint, so indexing each `messages` and `cases` row by its own
trigger makes a segment per row and merges them about once a mail (bench/README.md,
"the IMAP drain on a quiet machine again"). An ingest batch now defers it:

- `search_deferral` holds one row while a batch is being written, inside the batch's
  own transaction (no other connection ever sees it: SQLite has one writer, and the
  row is deleted before the commit, or rolled back with the batch);
- while it does, the insert triggers note the new row's id in `search_pending`
  instead of indexing it (a WHEN clause: the FTS table is not touched at all, so it has
  nothing to write at each statement); an update or delete of a row still pending
  leaves the index alone (its final words are indexed at the end; a deleted one leaves
  the pending list);
- the batch ends with one INSERT … SELECT per table from the pending rows
  (mailbot.cases.search.deferred_index), then empties both tables.

Every other write path (agents' commands, the web side, `tick`, the CLI) is indexed
by the triggers as before. PostgreSQL keeps its GIN indexes: nothing changes there.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 15:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# (table, FTS table, indexed columns) as migration 0007 created them
_INDEXED = (("messages", "messages_fts", ("subject", "body_text")),
            ("cases", "cases_fts", ("ref", "customer_name", "customer_email", "subject")))
_DEFERRING = "EXISTS (SELECT 1 FROM search_deferral)"


def _pending(table: str) -> str:
    return f"EXISTS (SELECT 1 FROM search_pending WHERE tbl = '{table}' AND row_id = old.id)"


def _triggers(table: str, fts: str, cols: tuple[str, ...], *, deferrable: bool = True) -> list[str]:
    """The triggers that keep `fts` in step with `table`: this migration's (`deferrable`), or
    0007's (row by row, what `downgrade` puts back)."""
    names = ", ".join(cols)
    new = ", ".join(f"new.{c}" for c in cols)
    old = ", ".join(f"old.{c}" for c in cols)
    forget = f"INSERT INTO {fts}({fts}, rowid, {names}) VALUES ('delete', old.id, {old}); "
    index = f"INSERT INTO {fts}(rowid, {names}) VALUES (new.id, {new}); "
    if not deferrable:
        return [
            f"CREATE TRIGGER {table}_fts_insert AFTER INSERT ON {table} BEGIN {index}END",
            f"CREATE TRIGGER {table}_fts_delete AFTER DELETE ON {table} BEGIN {forget}END",
            f"CREATE TRIGGER {table}_fts_update AFTER UPDATE OF {names} ON {table} BEGIN {forget}{index}END",
        ]
    return [
        f"CREATE TRIGGER {table}_fts_insert AFTER INSERT ON {table} WHEN NOT {_DEFERRING} "
        f"BEGIN {index}END",
        f"CREATE TRIGGER {table}_fts_defer AFTER INSERT ON {table} WHEN {_DEFERRING} "
        f"BEGIN INSERT INTO search_pending(tbl, row_id) VALUES ('{table}', new.id); END",
        # One trigger, its two statements in this order (two triggers fire in an order of SQLite's
        # choosing: the pending row could go first, and its words be "deleted" though never indexed).
        f"CREATE TRIGGER {table}_fts_delete AFTER DELETE ON {table} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, {names}) SELECT 'delete', old.id, {old} WHERE NOT {_pending(table)}; "
        f"DELETE FROM search_pending WHERE tbl = '{table}' AND row_id = old.id; END",
        f"CREATE TRIGGER {table}_fts_update AFTER UPDATE OF {names} ON {table} WHEN NOT {_pending(table)} "
        f"BEGIN {forget}{index}END",
    ]


def _drop(table: str) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {table}_fts_{what}"
            for what in ("insert", "defer", "delete", "update")]


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("CREATE TABLE search_deferral (id INTEGER PRIMARY KEY CHECK (id = 1))")
    op.execute("CREATE TABLE search_pending (tbl TEXT NOT NULL, row_id INTEGER NOT NULL, "
               "PRIMARY KEY (tbl, row_id)) WITHOUT ROWID")
    for table, fts, cols in _INDEXED:
        for statement in (*_drop(table), *_triggers(table, fts, cols)):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, fts, cols in _INDEXED:
        for statement in (*_drop(table), *_triggers(table, fts, cols, deferrable=False)):
            op.execute(statement)
    op.execute("DROP TABLE search_pending")
    op.execute("DROP TABLE search_deferral")
