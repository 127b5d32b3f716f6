"""Quarantine: mail kept with its raw bytes and a reason, until an admin retries it."""

from __future__ import annotations

from mailbot import db
from mailbot.app import App
from mailbot.ingest import IngestResult, Outcome, ingest
from mailbot.models import Inbound, Quarantine


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
    if result.outcome is not Outcome.QUARANTINED:
        with db.session_scope(app.engine) as s:
            q = s.get(Quarantine, quarantine_id)
            if q is not None:
                q.status = "retried"
                s.add(q)
    return result
