"""Files that come with a mail: kept with the message (or dropped, with the reason), and
an agent's files checked before they go to the customer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import insert
from sqlmodel import Session, col, select

from mailbot import blobs
from mailbot.app import App
from mailbot.mail.attachments import drop_reason, sanitise_filename
from mailbot.mail.parsing import ParsedMail
from mailbot.models import Attachment, StoredMessage
from mailbot.prepared import Prepared

_INSERT_ATTACHMENT = Prepared(insert(Attachment))


class File(Protocol):
    filename: str
    content_type: str
    data: bytes


def store_attachments(session: Session, app: App, msg: StoredMessage, parsed: ParsedMail) -> None:
    """Keep each file of the mail under a safe name; one over the limits is recorded as
    dropped, with why (its bytes are not kept)."""
    store_files(session, app, msg, parsed.attachments)


def store_files(session: Session, app: App, msg: StoredMessage, files: Sequence[File]) -> None:
    """`store_attachments` for files that came another way (the staff console's uploads)."""
    for i, att in enumerate(files, 1):
        name = sanitise_filename(att.filename, fallback=f"attachment-{i}")
        reason = drop_reason(name, len(att.data), app.config.limits)
        digest = None if reason else blobs.put(session, att.data)
        _INSERT_ATTACHMENT.scalar(session, {
            "message_id": msg.id, "filename": name, "content_type": att.content_type[:200],
            "size": len(att.data), "sha256": digest, "dropped_reason": reason})


def of_message(session: Session, message_id: int) -> list[Attachment]:
    return list(session.exec(select(Attachment).where(Attachment.message_id == message_id)
                             .order_by(col(Attachment.id))).all())


def refused(attachments: Sequence[Attachment]) -> list[str]:
    """Why some of an agent's files cannot go to the customer (the type and size limits of
    `[limits]`, as for what customers send): empty when all can."""
    return [f"{a.filename}: {a.dropped_reason}" for a in attachments if a.sha256 is None]
