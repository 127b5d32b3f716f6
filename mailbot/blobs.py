"""Content-addressed storage of raw mails and attachments, inside the database."""

from __future__ import annotations

import hashlib

from sqlmodel import Session

from mailbot.models import Blob


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(session: Session, data: bytes, digest: str | None = None) -> str:
    """Store `data` once (by its sha256) and return the digest."""
    digest = digest or sha256(data)
    if session.get(Blob, digest) is None:
        session.add(Blob(sha256=digest, size=len(data), data=data))
        session.flush()
    return digest


def get(session: Session, digest: str) -> bytes | None:
    blob = session.get(Blob, digest)
    return blob.data if blob else None
