"""Human-friendly case references, unique per brand: KP-2026-000123."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from mailbot.models import RefCounter

REF_PATTERN = re.compile(r"\b([A-Z]{1,6})-(\d{4})-(\d{6,})\b")


def format_ref(prefix: str, year: int, seq: int) -> str:
    return f"{prefix}-{year}-{seq:06d}"


def next_seq(session: Session, brand: str, year: int) -> int:
    """Take the next sequence number for (brand, year): unique under concurrency,
    gap-tolerant.

    On PostgreSQL the number is taken in its own short transaction, so the counter
    row is not held locked while the case's transaction goes on (several instances
    would otherwise queue on it); a case transaction that then rolls back leaves a
    gap. On SQLite writers are serialised anyway, so it is taken in the caller's
    transaction and a rollback leaves no gap.
    """
    if session.get_bind().dialect.name == "postgresql":
        with Session(session.get_bind()) as own, own.begin():
            return _take(own, brand, year)
    return _take(session, brand, year)


def _take(session: Session, brand: str, year: int) -> int:
    _ensure_counter(session, brand, year)
    result = session.execute(
        update(RefCounter)
        .where(RefCounter.brand == brand, RefCounter.year == year)
        .values(next_seq=RefCounter.next_seq + 1)
        .returning(RefCounter.next_seq)
    ).first()
    assert result is not None
    return int(result[0]) - 1


def _ensure_counter(session: Session, brand: str, year: int) -> None:
    """Create the (brand, year) counter if missing, without racing other writers."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(RefCounter).values(brand=brand, year=year, next_seq=1)
                    .on_conflict_do_nothing(index_elements=["brand", "year"]))


def refs_in(text: str) -> list[str]:
    return [m.group(0) for m in REF_PATTERN.finditer(text or "")]


def new_reply_token() -> str:
    """A secret per-case token for the plus-address (support+<token>@…)."""
    return "c" + secrets.token_hex(10)


def counter(session: Session, brand: str, year: int) -> int:
    row = session.exec(select(RefCounter).where(RefCounter.brand == brand, RefCounter.year == year)).first()
    return row.next_seq if row else 1
