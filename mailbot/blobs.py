"""Content-addressed storage of raw mails and attachments, inside the database."""

from __future__ import annotations

import hashlib

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from mailbot.models import Blob, utcnow
from mailbot.prepared import Prepared


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(session: Session, data: bytes, digest: str | None = None) -> str:
    """Store `data` once (by its sha256) and return the digest (one prepared INSERT, no
    ORM object: large bytes are not tracked by the session)."""
    digest = digest or sha256(data)
    conn = session.connection()
    _PUTS[conn.dialect.name == "postgresql"].scalar(
        conn, {"sha256": digest, "size": len(data), "data": data, "created_at": utcnow()})
    return digest


_PUTS = {postgresql: Prepared(insert(Blob).on_conflict_do_nothing(index_elements=["sha256"]))
         for postgresql, insert in ((True, pg_insert), (False, sqlite_insert))}


def get(session: Session, digest: str) -> bytes | None:
    blob = session.get(Blob, digest)
    return blob.data if blob else None
