"""The web side (`mailbot web`): the complaint form, the customer's status page, the
intake API and the staff console. One more channel (what customers send goes
through `ingest`) and one more view onto the same database; no state in process
memory, so several processes can serve one PostgreSQL database."""
