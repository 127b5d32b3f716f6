"""Human-friendly case references, unique per brand: KP-2026-000123."""

from __future__ import annotations

import re
import secrets
import threading
import weakref

from sqlalchemy import Connection, Engine, bindparam
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from mailbot.models import RefCounter
from mailbot.prepared import Prepared

REF_PATTERN = re.compile(r"\b([A-Z]{1,6})-(\d{4})-(\d{6,})\b")


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
    return _take(session.connection(), brand, year)


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
        try:
            return _take(conn, brand, year)
        except Exception:
            _COUNTER_CONNECTIONS.pop(engine, None)
            conn.close()
            raise


def release(engine: Engine) -> None:
    """Give back the engine's counter connection (App.close)."""
    with _COUNTER_LOCK:
        conn = _COUNTER_CONNECTIONS.pop(engine, None)
    if conn is not None:
        conn.close()


def _take(conn: Connection, brand: str, year: int) -> int:
    """One upsert: create the counter at 2 (we take 1) or bump it, and read it back."""
    return int(_UPSERTS[conn.dialect.name == "postgresql"].scalar(conn, {"brand": brand, "year": year})) - 1


_UPSERTS = {
    postgresql: Prepared(insert(RefCounter).values(brand=bindparam("brand"), year=bindparam("year"), next_seq=2)
                         .on_conflict_do_update(index_elements=["brand", "year"],
                                                set_={"next_seq": RefCounter.next_seq + 1})
                         .returning(RefCounter.next_seq))
    for postgresql, insert in ((True, pg_insert), (False, sqlite_insert))
}


def refs_in(text: str) -> list[str]:
    return [m.group(0) for m in REF_PATTERN.finditer(text or "")]


def new_reply_token() -> str:
    """A secret per-case token for the plus-address (support+<token>@…)."""
    return "c" + secrets.token_hex(10)
