"""Turning an outbox row into the bytes we send: render the template, build the MIME.

Done by the dispatcher just before the first attempt (not on the ingest path);
the bytes are kept on the row so retries resend exactly the same mail, and the
case's message record gets the subject and text that went out.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from mailbot.app import App
from mailbot.compose import Outgoing, build
from mailbot.models import Case, Message, Outbox
from mailbot.responses import context, reply_address


def thread_of(session: Session, case: Case, about: Message | None) -> list[str]:
    """References for a reply: the case's earlier message ids, ending with the one answered."""
    stmt = select(Message.message_id).where(Message.case_id == case.id, col(Message.message_id).is_not(None),
                                            Message.direction == "in")
    if about is not None and about.id is not None:
        stmt = stmt.where(col(Message.id) <= about.id)
    ids = [m for m in session.exec(stmt.order_by(col(Message.id))).all() if m]
    if about is not None and about.message_id:
        ids = [i for i in ids if i != about.message_id] + [about.message_id]
    return ids[-20:]


def materialise(session: Session, app: App, row: Outbox, at: datetime) -> bytes:
    case = session.get(Case, row.case_id) if row.case_id else None
    if case is None:
        raise ValueError(f"outbox row {row.id} has no case and no raw bytes")
    brand = app.config.brand(case.brand)
    about = session.get(Message, row.about_id) if row.about_id else None
    extra = dict(row.context or {})
    if row.reply_to:
        extra["reply_address"] = row.reply_to
    rendered = app.renderer.render(brand.key, row.language or case.language, row.kind,
                                   context(app, case, about, **extra))
    thread = thread_of(session, case, about)
    out = Outgoing(
        from_addr=row.from_addr, from_name=brand.name, to_addr=row.to_addr, to_name=row.to_name,
        subject=f"[{case.ref}] {rendered.subject}", text=rendered.text, html=rendered.html,
        message_id=row.message_id, in_reply_to=thread[-1] if thread else None, references=thread,
        reply_to=row.reply_to or reply_address(brand, case.reply_token),
        auto_submitted="auto-replied" if row.automatic else None,
    )
    raw = build(out, at)
    record = session.exec(select(Message).where(Message.message_id == row.message_id,
                                                Message.case_id == case.id)).first()
    if record is not None:
        record.subject, record.body_text = out.subject[:1000], rendered.text
        session.add(record)
    return raw
