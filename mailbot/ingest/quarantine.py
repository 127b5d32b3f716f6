"""Quarantine: mail kept with its raw bytes and a reason, until an admin retries it."""

from __future__ import annotations

from sqlmodel import Session, col, select

from mailbot import blobs, db
from mailbot.app import App
from mailbot.ingest.pipeline import IngestResult, Outcome, ingest
from mailbot.models import Inbound, Quarantine


def held(app: App) -> list[Quarantine]:
    """Every quarantine row, oldest first (`quarantine list`), read without the write lock."""
    with db.read_scope(app.engine) as s:
        return list(s.exec(select(Quarantine).order_by(col(Quarantine.id))).all())


def held_mail(app: App, quarantine_id: int) -> tuple[Quarantine, bytes] | None:
    """A quarantine row and its raw bytes (`quarantine show|retry`); None if there is no such row."""
    with db.read_scope(app.engine) as s:
        q = s.get(Quarantine, quarantine_id)
        return None if q is None else (q, blobs.get(s, q.sha256) or b"")


def retry(app: App, quarantine_id: int, raw: bytes) -> IngestResult:
    """Run the held mail through ingest again (e.g. after a config fix).

    The original inbound record is renamed out of the way so dedupe does not
    hide the retry; on success the quarantine row is marked `retried`.
    """
    with db.session_scope(app.engine) as s:
        q = s.get(Quarantine, quarantine_id)
        if q is None:
            raise KeyError(quarantine_id)
        envelope_to, source = list(q.envelope_to), q.source
        if q.inbound_id is not None:
            inbound = s.get(Inbound, q.inbound_id)
            if inbound is not None and not inbound.dedupe_key.startswith("retried:"):
                inbound.dedupe_key = f"retried:{quarantine_id}:{inbound.dedupe_key}"[:1000]
                s.add(inbound)
    result = ingest(app, raw, f"retry:{source}", envelope_to=envelope_to)
    with db.session_scope(app.engine) as s:
        q = s.get(Quarantine, quarantine_id)
        assert q is not None
        if result.outcome is Outcome.QUARANTINED:
            _fold_into(s, q, result)
        else:
            q.status = "retried"
        s.add(q)
    return result


def _fold_into(s: Session, q: Quarantine, result: IngestResult) -> None:
    """Held again: keep ONE row (the original, with the new reason), so the admin can
    fix the cause and retry the same ID; the record the retry made is removed."""
    again = s.exec(select(Quarantine).where(Quarantine.inbound_id == result.inbound_id)).first()
    if again is not None and again.id != q.id:
        s.delete(again)
        s.flush()
        new_inbound = s.get(Inbound, result.inbound_id)
        if new_inbound is not None:
            s.delete(new_inbound)
            s.flush()
    original = s.get(Inbound, q.inbound_id) if q.inbound_id else None
    if original is not None and original.dedupe_key.startswith("retried:"):
        original.dedupe_key = original.dedupe_key.split(":", 2)[2]
        s.add(original)
    q.reason = f"{result.reason} (retried)"[:2000]
