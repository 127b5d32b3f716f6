"""Human-friendly case references, unique per brand: KP-2026-000123."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

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
    """One upsert: create the counter at 2 (we take 1) or bump it, and read it back."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = _UPSERTS.get(insert)
    if stmt is None:
        ins = insert(RefCounter).values(brand=bindparam("brand"), year=bindparam("year"), next_seq=2)
        stmt = ins.on_conflict_do_update(index_elements=["brand", "year"],
                                         set_={"next_seq": RefCounter.next_seq + 1}
                                         ).returning(RefCounter.next_seq)
        _UPSERTS[insert] = stmt
    value = session.connection().execute(stmt, {"brand": brand, "year": year}).scalar_one()
    return int(value) - 1


_UPSERTS: dict[object, object] = {}


def refs_in(text: str) -> list[str]:
    return [m.group(0) for m in REF_PATTERN.finditer(text or "")]


def new_reply_token() -> str:
    """A secret per-case token for the plus-address (support+<token>@…)."""
    return "c" + secrets.token_hex(10)
