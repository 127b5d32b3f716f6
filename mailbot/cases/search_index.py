"""SQLite's full-text index of a batch of mails, written once at the end of the batch.

The index (migration 0007) is kept by triggers as rows are written. FTS5 writes what it
holds in memory to a new segment at every statement, so a batch of a hundred mails
would make a few hundred segments and merge them as it goes. Inside `deferred`, the
triggers only note which `messages` and `cases` rows are new (migration 0014), and the
block ends by indexing them all with one statement per table. The rows and their index
entries commit together; on any error the caller's transaction rolls both back.

PostgreSQL's GIN indexes are kept by the database itself: `deferred` does nothing there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlmodel import Session

# OR REPLACE: were a deferral row ever left committed, the next batch would take it over and
# index whatever it had kept waiting, rather than fail on the key.
_START = "INSERT OR REPLACE INTO search_deferral (id) VALUES (1)"
_INDEX_PENDING = [
    "INSERT INTO messages_fts (rowid, subject, body_text) "
    "SELECT m.id, m.subject, m.body_text FROM search_pending p JOIN messages m ON m.id = p.row_id "
    "WHERE p.tbl = 'messages'",
    "INSERT INTO cases_fts (rowid, ref, customer_name, customer_email, subject) "
    "SELECT c.id, c.ref, c.customer_name, c.customer_email, c.subject FROM search_pending p "
    "JOIN cases c ON c.id = p.row_id WHERE p.tbl = 'cases'",
    "DELETE FROM search_pending",
    "DELETE FROM search_deferral",
]


@contextmanager
def deferred(session: Session) -> Iterator[None]:
    """Rows written in the block are indexed when it ends (SQLite), in the same transaction."""
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    conn = session.connection()
    conn.exec_driver_sql(_START)
    yield
    session.flush()  # rows the ORM still holds are written while the triggers defer them
    for statement in _INDEX_PENDING:
        conn.exec_driver_sql(statement)
