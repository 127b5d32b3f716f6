"""Deferred INSERTs for batches: one executemany per statement instead of one
execute per row.

Inside `ingest`'s batch transaction (`deferring`), the rows nothing reads back
before the commit — audit events, outbox rows, records of outgoing messages,
the final outcome of each inbound row — are collected and written just before
the commit, all rows of a statement at once. Everywhere else `write` executes
at once, as before. Nothing reads such rows back
inside the batch (the acknowledgement count per sender is counted up in
`session.info` instead); code that uses savepoints runs under `immediate`, so a
rolled-back savepoint cannot leave deferred rows behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlmodel import Session

from mailbot.prepared import Prepared

_KEY = "deferred_writes"


def write(session: Session, stmt: Prepared, params: dict[str, Any]) -> None:
    """Execute now, or at the end of the batch when deferring."""
    buffer: dict[Prepared, list[dict[str, Any]]] | None = session.info.get(_KEY)
    if buffer is None:
        stmt.scalar(session, params)
    else:
        buffer.setdefault(stmt, []).append(params)


def flush(session: Session) -> None:
    """Write what was deferred (in the order the statements were first used)."""
    buffer = session.info.get(_KEY)
    if not buffer:
        return
    conn = session.connection()
    for stmt, rows in list(buffer.items()):
        if rows:
            stmt.executemany(conn, rows)
    buffer.clear()


@contextmanager
def deferring(session: Session) -> Iterator[None]:
    """Defer writes until the block ends, then write them (before the caller commits)."""
    session.info[_KEY] = {}
    try:
        yield
        flush(session)
    finally:
        session.info.pop(_KEY, None)


@contextmanager
def immediate(session: Session) -> Iterator[None]:
    """Write what is deferred, and write at once inside the block (savepoints)."""
    buffer = session.info.get(_KEY)
    if buffer is None:
        yield
        return
    flush(session)
    session.info.pop(_KEY)
    try:
        yield
    finally:
        session.info[_KEY] = buffer
