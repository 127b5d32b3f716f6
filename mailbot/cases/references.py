"""Human-friendly case references, unique per brand: KP-2026-000123."""

from __future__ import annotations

import secrets
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, Integer, bindparam, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from mailbot.models import RefCounter
from mailbot.prepared import Prepared


def format_ref(prefix: str, year: int, seq: int) -> str:
    return f"{prefix}-{year}-{seq:06d}"


def next_seq(session: Session, brand: str, year: int) -> int:
    """Take the next sequence number for (brand, year): unique under concurrency,
    gap-tolerant.

    On PostgreSQL the number is taken outside the case's transaction, by one
    autocommitted statement on a connection kept for the purpose, so the counter
    row is not held locked while the case's transaction goes on (several instances
    would otherwise queue on it); a case transaction that then rolls back leaves a
    gap. On SQLite writers are serialised anyway, so it is taken in the caller's
    transaction and a rollback leaves no gap.
    """
    engine = session.get_bind()
    if engine.dialect.name == "postgresql":
        return _take_autocommitted(engine, brand, year)  # type: ignore[arg-type]
    blocks: _Blocks | None = session.info.get(_BLOCKS_KEY)
    if blocks is None:
        return _take(session.connection(), brand, year)
    return blocks.take(session.connection(), brand, year)


_BLOCKS_KEY = "case_number_blocks"


class _Blocks:
    """The numbers a batch has taken per (brand, year): [next to hand out, end)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.ranges: dict[tuple[str, int], list[int]] = {}

    def take(self, conn: Connection, brand: str, year: int) -> int:
        block = self.ranges.get((brand, year))
        if block is None or block[0] == block[1]:  # none taken yet, or all used: take a block
            first = _take(conn, brand, year, self.size)
            block = self.ranges[(brand, year)] = [first, first + self.size]
        block[0] += 1
        return block[0] - 1


@contextmanager
def reserving(session: Session, size: int) -> Iterator[None]:
    """Within the block, on SQLite, case numbers are taken `size` at a time (one counter
    statement per brand for a batch of mails, instead of one per case); when the block
    ends without error, each counter is set to the first number not used, so the
    numbering stays without gaps. (Set, not moved back: right even if a savepoint
    rolled back the statement that took the numbers. If the block ends with an error
    the transaction is rolled back, counter included.) On PostgreSQL numbers are
    taken one at a time, as without it."""
    if size < 2 or session.get_bind().dialect.name != "sqlite" or _BLOCKS_KEY in session.info:
        yield
        return
    blocks = session.info[_BLOCKS_KEY] = _Blocks(size)
    try:
        yield
        for (brand, year), (first_unused, _end) in blocks.ranges.items():
            _SET_COUNTER.scalar(session.connection(), {"brand": brand, "year": year, "next_seq": first_unused})
    finally:
        session.info.pop(_BLOCKS_KEY, None)


_COUNTER_CONNECTIONS: weakref.WeakKeyDictionary[Engine, Connection] = weakref.WeakKeyDictionary()
_COUNTER_LOCK = threading.Lock()


def _take_autocommitted(engine: Engine, brand: str, year: int) -> int:
    """One round trip on the engine's counter connection (instead of a pool checkout,
    BEGIN, the statement and COMMIT); a broken connection is dropped and the error
    raised, so the caller retries later as for any database error."""
    with _COUNTER_LOCK:
        conn = _COUNTER_CONNECTIONS.get(engine)
        if conn is None or conn.closed or conn.invalidated:
            conn = _COUNTER_CONNECTIONS[engine] = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if not event.contains(engine, "engine_disposed", release):
                event.listen(engine, "engine_disposed", release)
        try:
            return _take(conn, brand, year)
        except Exception:
            _COUNTER_CONNECTIONS.pop(engine, None)
            conn.close()
            raise


def release(engine: Engine) -> None:
    """Give back the engine's counter connection (when the engine is disposed)."""
    with _COUNTER_LOCK:
        conn = _COUNTER_CONNECTIONS.pop(engine, None)
    if conn is not None:
        conn.close()


def _take(conn: Connection, brand: str, year: int, n: int = 1) -> int:
    """One upsert: create the counter at n + 1 (we take 1..n) or move it on by n, and
    read it back; returns the first of the n numbers taken."""
    return int(_UPSERTS[conn.dialect.name == "postgresql"].scalar(conn, {"brand": brand, "year": year, "n": n})) - n


_UPSERTS = {
    postgresql: Prepared(insert(RefCounter).values(brand=bindparam("brand"), year=bindparam("year"),
                                                   next_seq=bindparam("n", type_=Integer) + 1)
                         .on_conflict_do_update(index_elements=["brand", "year"],
                                                set_={"next_seq": RefCounter.next_seq + bindparam("n", type_=Integer)})
                         .returning(RefCounter.next_seq))
    for postgresql, insert in ((True, pg_insert), (False, sqlite_insert))
}

# The counter set to the first number a block did not use (created if a savepoint took it away).
_SET = sqlite_insert(RefCounter)
_SET_COUNTER = Prepared(_SET.on_conflict_do_update(index_elements=["brand", "year"],
                                                   set_={"next_seq": _SET.excluded.next_seq}))


def new_reply_token() -> str:
    """A secret per-case token for the plus-address (support+<token>@…)."""
    return "c" + secrets.token_hex(10)
