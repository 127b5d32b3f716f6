"""What was received: the inbound rows, for `mailbot inbound list|show`.

Every mail has an inbound row and its raw bytes, whatever became of it. Automatic mail
that concerned no case has nothing else (mailbot.cases.unmatched): `list --automatic`
is where it is found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import default

from sqlmodel import col, select

from mailbot import blobs, db
from mailbot.app import App
from mailbot.models import Inbound, Message


@dataclass(frozen=True)
class Received:
    """One inbound row, with the From and Subject of its mail."""

    id: int
    received_at: datetime
    source: str
    outcome: str
    reason: str
    sender: str
    subject: str


def listed(app: App, *, automatic: bool = False, limit: int = 100) -> list[Received]:
    """The latest inbound rows, newest first; `automatic`: only the automatic mail that is on
    no case (an auto-reply, a form mailer's notice, a bounce of nothing we sent…)."""
    stmt = select(Inbound).order_by(col(Inbound.id).desc()).limit(limit)
    if automatic:
        on_a_case = select(Message.id).where(Message.inbound_id == Inbound.id).exists()
        stmt = stmt.where(Inbound.outcome == "automatic", ~on_a_case)
    with db.read_scope(app.engine) as s:
        rows = list(s.exec(stmt).all())
        raws = {r.sha256: blobs.get(s, r.sha256) or b"" for r in rows}
    out = []
    for r in rows:
        headers = BytesHeaderParser(policy=default).parsebytes(raws[r.sha256])
        out.append(Received(r.id or 0, r.received_at, r.source, r.outcome, r.reason,
                            _header(headers, "From") or r.envelope_from or "", _header(headers, "Subject")))
    return out


def _header(headers: object, name: str) -> str:
    try:
        return " ".join(str(headers.get(name, "")).split())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a header too broken to decode is shown as missing
        return ""


def received_mail(app: App, inbound_id: int) -> tuple[Inbound, bytes] | None:
    """An inbound row and its raw bytes; None if there is no such row."""
    with db.read_scope(app.engine) as s:
        row = s.get(Inbound, inbound_id)
        return None if row is None else (row, blobs.get(s, row.sha256) or b"")
