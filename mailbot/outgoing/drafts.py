"""Turning outbox rows into the bytes we send: render the template, build the MIME.

Done by the dispatcher just before the first attempt (not on the ingest path);
the bytes are kept on the row so retries resend exactly the same mail, and the
case's message record gets the subject and text that went out. `render_drafts`
renders many rows with three queries for all of them (their cases, the messages
they answer, the cases' messages with a Message-ID: threads and records of the mails) and writes
nothing: the dispatcher renders outside its write transactions and stores the
drafts with one statement each (mailbot.outgoing.outbox).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_
from sqlmodel import Session, col, select

from mailbot.app import App
from mailbot.mail.quotes import fold_quotes
from mailbot.models import Attachment, Blob, Case, Message, Outbox
from mailbot.outgoing import templating
from mailbot.outgoing.audiences import (
    RecipientNotStaff,
    customer_view,
    is_staff_kind,
    name_for_customer,
    rendered_for_customer,
)
from mailbot.outgoing.case_context import context, reply_address
from mailbot.outgoing.command_help import command_help
from mailbot.outgoing.compose import OutFile, Outgoing, build


@dataclass(frozen=True)
class Draft:
    """A row's mail, and what the case's record of it gets (`record_id`, when there is one)."""

    raw: bytes
    record_id: int | None
    subject: str
    text: str


def thread_of(ids: Sequence[tuple[int, str]], about: Message | None) -> list[str]:
    """References for a reply: the Message-IDs of the case's messages received (`ids`:
    (id, Message-ID) in order), up to the one answered and ending with it."""
    if about is not None and about.id is not None:
        ids = [(i, m) for i, m in ids if i <= about.id]
    thread = [m for _, m in ids if m]
    if about is not None and about.message_id:
        thread = [m for m in thread if m != about.message_id] + [about.message_id]
    return thread[-20:]


def render_drafts(session: Session, app: App, rows: Sequence[Outbox], at: datetime) -> dict[int, Draft | Exception]:
    """Each row's draft, or the error that kept it from being rendered (a template error,
    a row without a case), by row id. Reads only."""
    case_ids = {r.case_id for r in rows if r.case_id}
    cases = {c.id: c for c in session.exec(select(Case).where(col(Case.id).in_(case_ids)))} if case_ids else {}
    about_ids = {r.about_id for r in rows if r.about_id}
    abouts = {m.id: m for m in session.exec(select(Message).where(col(Message.id).in_(about_ids)))} \
        if about_ids else {}
    threads: dict[int, list[tuple[int, str]]] = defaultdict(list)
    records: dict[tuple[int, str], int] = {}
    mids = {r.message_id for r in rows}
    if case_ids:  # the cases' messages with a Message-ID: the threads, and the records of these mails
        for case_id, msg_id, message_id, direction in session.exec(
                select(Message.case_id, Message.id, Message.message_id, Message.direction)
                .where(col(Message.case_id).in_(case_ids), col(Message.message_id).is_not(None))
                .order_by(col(Message.id))):
            if direction == "in":
                threads[case_id].append((msg_id, message_id))
            if message_id in mids:
                records.setdefault((case_id, message_id), msg_id)
    files = _Files.read(session, app, rows, cases, abouts)
    notes = _notes(session, {r.case_id for r in rows if r.case_id and is_staff_kind(r.kind)})
    out: dict[int, Draft | Exception] = {}
    for row in rows:
        assert row.id is not None
        try:
            case = cases.get(row.case_id) if row.case_id else None
            if case is None:
                raise ValueError(f"outbox row {row.id} has no case and no raw bytes")
            about = abouts.get(row.about_id) if row.about_id else None
            out[row.id] = _draft(app, row, case, about, threads[case.id or 0], records, at, files,
                                 notes.get(case.id or 0, []))
        except Exception as exc:  # noqa: BLE001 - one row's error is that row's, not the batch's
            out[row.id] = exc
    return out


NOTES_SHOWN = 5  # the latest internal notes a staff mail repeats


def _notes(session: Session, case_ids: set[int | None]) -> dict[int, list[Message]]:
    """The latest notes of each case (for staff mail: they never reach the customer)."""
    out: dict[int, list[Message]] = defaultdict(list)
    if case_ids:
        for m in session.exec(select(Message).where(col(Message.case_id).in_(case_ids), Message.kind == "note")
                              .order_by(col(Message.id))):
            out[m.case_id].append(m)
    return {k: v[-NOTES_SHOWN:] for k, v in out.items()}


# Staff mail about a customer message lists its files and attaches them (up to the brand's
# staff_attachments_max); mail to the customer attaches the agent's files it names.
LISTS_FILES = frozenset({"agent_notification", "urgent_alert", "assignment"})


@dataclass
class _Files:
    """The attachments a batch of rows lists or carries, read with two queries."""

    by_message: dict[int, list[tuple[int, Attachment]]]  # message id -> (n in its case, attachment)
    by_id: dict[int, Attachment]
    data: dict[str, bytes]

    @classmethod
    def read(cls, session: Session, app: App, rows: Sequence[Outbox], cases: dict[int | None, Case],
             abouts: dict[int | None, Message]) -> _Files:
        listing = {r.case_id for r in rows if r.kind in LISTS_FILES and r.about_id}
        wanted = {i for r in rows if not is_staff_kind(r.kind) for i in (r.context or {}).get("attachments", [])}
        files = cls({}, {}, {})
        if listing or wanted:
            stmt = (select(Attachment, Message.case_id).join(Message, col(Message.id) == Attachment.message_id)
                    .where(or_(col(Message.case_id).in_(listing), col(Attachment.id).in_(wanted)))
                    .order_by(col(Message.case_id), col(Attachment.message_id), col(Attachment.id)))
            counts: dict[int, int] = defaultdict(int)
            for att, case_id in session.exec(stmt):
                counts[case_id] += 1
                files.by_message.setdefault(att.message_id, []).append((counts[case_id], att))
                files.by_id[att.id or 0] = att
        digests = {a.sha256 for r in rows for a in files.to_attach(app, r, cases.get(r.case_id)) if a.sha256}
        if digests:
            files.data = dict(session.exec(select(Blob.sha256, Blob.data).where(col(Blob.sha256).in_(digests))).all())
        return files

    def listed(self, row: Outbox) -> list[tuple[int, Attachment]]:
        return self.by_message.get(row.about_id or 0, []) if row.kind in LISTS_FILES else []

    def to_attach(self, app: App, row: Outbox, case: Case | None) -> list[Attachment]:
        """The files that go with the mail: the agent's (all of them: checked when queued), or
        the customer's while they fit the brand's staff_attachments_max."""
        if not is_staff_kind(row.kind):
            return [self.by_id[i] for i in (row.context or {}).get("attachments", []) if i in self.by_id]
        room = app.config.brand(case.brand).staff_attachments_max if case else 0
        out = []
        for _, att in self.listed(row):
            if att.sha256 and att.size <= room:
                out.append(att)
                room -= att.size
        return out


def _check_staff_row(app: App, row: Outbox, case: Case) -> None:
    """Staff mail goes out only with its staff token, and only to a current agent of the brand."""
    if not row.reply_to:
        raise ValueError(f"staff mail {row.kind} without a staff reply address: not sent")
    if not app.config.receives_staff_mail(row.to_addr, case.brand):
        raise RecipientNotStaff(f"{row.to_addr} is no longer an agent of {case.brand}: withheld")


def _draft(app: App, row: Outbox, case: Case, about: Message | None, ids: Sequence[tuple[int, str]],
           records: dict[tuple[int, str], int], at: datetime, files: _Files, notes: list[Message]) -> Draft:
    brand = app.config.brand(case.brand)
    if is_staff_kind(row.kind):
        _check_staff_row(app, row, case)
    extra = dict(row.context or {})
    if row.reply_to:
        extra["reply_address"] = row.reply_to
    attach = files.to_attach(app, row, case)
    if row.kind in LISTS_FILES:
        attached = {a.id for a in attach}
        extra["attachments"] = [{"n": n, "filename": a.filename, "content_type": a.content_type, "size": a.size,
                                 "kept": a.sha256 is not None, "attached": a.id in attached,
                                 "dropped_reason": a.dropped_reason or ""} for n, a in files.listed(row)]
    ctx = context(app, case, about, **extra)
    staff = is_staff_kind(row.kind)
    if staff:
        renderer = templating.renderer(app)
        language = renderer.resolve_language(brand.key, row.language or brand.language)
        replies = renderer.replies(brand.key, renderer.resolve_language(brand.key, case.language))
        ctx["commands"] = command_help(brand, language, case.language, replies)
        ctx["notes"] = [{"at": app.calendar(brand).local(n.created_at).isoformat(), "author": n.from_addr,
                         "text": n.body_text} for n in notes]
        if about is not None and about.direction == "in" and "text" not in extra.get("message", {}):
            text, folded = fold_quotes(about.body_text)  # a reply's quoted history is not repeated
            ctx["message"] = {**ctx["message"], "text": text, "quoted_lines": folded}
    else:
        ctx = customer_view(ctx, customer_text="text" not in extra.get("message", {}))
    rendered = templating.renderer(app).render(brand.key, row.language or case.language, row.kind, ctx)
    if not staff:
        rendered = rendered_for_customer(app.config, rendered)
    thread = thread_of(ids, about)
    out = Outgoing(
        from_addr=row.from_addr, from_name=brand.name, to_addr=row.to_addr,
        to_name=row.to_name if staff else name_for_customer(row.to_name),
        subject=f"[{case.ref}] {rendered.subject}", text=rendered.text, html=rendered.html,
        message_id=row.message_id, in_reply_to=thread[-1] if thread else None, references=thread,
        reply_to=row.reply_to or reply_address(brand, case.reply_token),
        auto_submitted="auto-replied" if row.automatic else None,
        attachments=tuple(OutFile(a.filename, a.content_type, files.data[a.sha256]) for a in attach
                          if a.sha256 in files.data),
    )
    return Draft(build(out, at), records.get((case.id or 0, row.message_id)), out.subject[:1000], rendered.text)
