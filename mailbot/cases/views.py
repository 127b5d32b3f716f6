"""Read-only views of a case: what `mailbot cases show` prints and the staff console shows.

`case_detail(session, app, case)` gathers everything about one case as a typed
`CaseDetail`: its facts, with the final response scheduled for later or held
(`scheduled_final`, mailbot.cases.scheduled); every message with its text (a reply's
quoted history folded, `full_text` kept); the notes; the attachments, numbered 1… across the case
in message order (`mailbot cases attachment REF N`); the timeline. Times are aware
datetimes in the brand's time zone. `CaseDetail.to_json()` is the stable JSON of
`cases show --json` (DESIGN.md lists its keys); `format_case` the human view.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlmodel import Session, col, select

from mailbot import blobs
from mailbot.app import App
from mailbot.cases.scheduled import FinalState, states
from mailbot.cases.sla import OPEN_STATUSES
from mailbot.mail.quotes import fold_quotes
from mailbot.models import Attachment, Case, Event, FailingRecipient, Message, Round


@dataclass(frozen=True)
class AttachmentView:
    n: int  # 1-based, across the case in message order
    id: int
    message_n: int
    filename: str
    content_type: str
    size: int
    kept: bool  # its bytes are stored (else dropped by the type/size limits, see dropped_reason)
    dropped_reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "filename": self.filename, "content_type": self.content_type, "size": self.size,
                "kept": self.kept, "dropped_reason": self.dropped_reason}


@dataclass(frozen=True)
class MessageView:
    n: int
    id: int
    direction: str  # in | out
    kind: str  # customer | agent | staff_held | acknowledgement | agent_reply | final_response | ...
    message_id: str | None
    subject: str
    from_addr: str
    from_name: str
    at: datetime
    text: str  # what was written: a reply's quoted history folded
    full_text: str
    quoted_lines: int  # lines folded out of `text`
    routed_by: str
    route_detail: str
    attachments: tuple[AttachmentView, ...]

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "direction": self.direction, "kind": self.kind, "message_id": self.message_id,
                "subject": self.subject, "from": self.from_addr, "from_name": self.from_name,
                "at": self.at.isoformat(), "text": self.text, "full_text": self.full_text,
                "quoted_lines": self.quoted_lines, "routed_by": self.routed_by, "route_detail": self.route_detail,
                "attachments": [a.to_json() for a in self.attachments]}


@dataclass(frozen=True)
class NoteView:
    at: datetime
    author: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "author": self.author, "text": self.text}


@dataclass(frozen=True)
class EventView:
    type: str
    at: datetime
    actor: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "at": self.at.isoformat(), "actor": self.actor, "data": self.data}


@dataclass(frozen=True)
class RoundView:
    """One round of the register (the complaint, each re-examination), local times."""

    number: int
    kind: str
    received_at: datetime
    ack_due_at: datetime | None
    acknowledged_at: datetime | None
    ack_via: str | None
    promised_at: datetime
    due_at: datetime
    cap_at: datetime
    late_since: datetime | None
    answered_at: datetime | None
    answer_via: str | None
    outcome: str | None
    mediation_offered: bool

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "kind": self.kind, "received_at": _iso(self.received_at),
                "ack_due_at": _iso(self.ack_due_at), "acknowledged_at": _iso(self.acknowledged_at),
                "ack_via": self.ack_via, "promised_at": _iso(self.promised_at), "due_at": _iso(self.due_at),
                "cap_at": _iso(self.cap_at), "late_since": _iso(self.late_since),
                "answered_at": _iso(self.answered_at), "answer_via": self.answer_via, "outcome": self.outcome,
                "mediation_offered": self.mediation_offered}


@dataclass(frozen=True)
class CaseDetail:
    case: Case
    timezone: str
    category_label: str
    received_at: datetime
    ack_due_at: datetime | None
    due_at: datetime | None
    acknowledged_at: datetime | None
    answered_at: datetime | None
    closed_at: datetime | None
    overdue: timedelta | None
    failing_since: datetime | None
    linked_case: str | None
    messages: tuple[MessageView, ...]
    notes: tuple[NoteView, ...]
    events: tuple[EventView, ...]
    rounds: tuple[RoundView, ...] = ()
    scheduled_final: FinalState | None = None  # `#final at`: when it goes (local), or held

    @property
    def attachments(self) -> list[AttachmentView]:
        return [a for m in self.messages for a in m.attachments]

    def to_json(self) -> dict[str, Any]:
        c = self.case
        return {
            "ref": c.ref, "brand": c.brand, "status": c.status, "category": c.category,
            "category_label": self.category_label, "priority": c.priority, "tier": c.tier, "channel": c.channel,
            "subject": c.subject, "language": c.language,
            "customer": {"name": c.customer_name, "email": c.customer_email, "failing_since": _iso(self.failing_since)},
            "assignee": c.assignee, "timezone": self.timezone,
            "received_at": _iso(self.received_at), "ack_due_at": _iso(self.ack_due_at), "due_at": _iso(self.due_at),
            "acknowledged_at": _iso(self.acknowledged_at), "answered_at": _iso(self.answered_at),
            "closed_at": _iso(self.closed_at), "outcome": c.outcome,
            "overdue": self.overdue is not None, "linked_case": self.linked_case, "extracted": c.extracted,
            "messages": [m.to_json() for m in self.messages],
            "notes": [n.to_json() for n in self.notes],
            "attachments": [a.to_json() for a in self.attachments],
            "events": [e.to_json() for e in self.events],
            "rounds": [r.to_json() for r in self.rounds],
            "scheduled_final": {"at": self.scheduled_final.at.isoformat(), "held": self.scheduled_final.held}
            if self.scheduled_final else None,
        }


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def case_detail(session: Session, app: App, case: Case) -> CaseDetail:
    """Everything about one case (three queries: messages, attachments, events)."""
    brand = app.config.brand(case.brand)
    tz = app.calendar(brand).tz
    msgs = session.exec(select(Message).where(Message.case_id == case.id).order_by(col(Message.id))).all()
    atts = session.exec(select(Attachment).where(col(Attachment.message_id).in_([m.id for m in msgs]))
                        .order_by(col(Attachment.id))).all() if msgs else []
    events = session.exec(select(Event).where(Event.case_id == case.id).order_by(col(Event.id))).all()
    rounds = session.exec(select(Round).where(Round.case_id == case.id).order_by(col(Round.number))).all()
    linked = session.get(Case, case.linked_case_id) if case.linked_case_id else None
    failing = session.get(FailingRecipient, case.customer_email.lower()) if case.customer_email else None
    messages, notes = _messages(msgs, atts, tz)
    final = states(session, [case.id]).get(case.id) if case.id is not None else None
    now = app.now()
    return CaseDetail(
        case=case, timezone=brand.timezone,
        category_label=next((c.label for c in brand.categories if c.key == case.category), case.category or ""),
        received_at=_local(case.received_at, tz), ack_due_at=_local(case.ack_due_at, tz), due_at=_local(case.due_at, tz),
        acknowledged_at=_local(case.acknowledged_at, tz), answered_at=_local(case.answered_at, tz),
        closed_at=_local(case.closed_at, tz),
        overdue=now - case.due_at if case.due_at and case.status in OPEN_STATUSES and now > case.due_at else None,
        failing_since=_local(failing.since, tz) if failing else None, linked_case=linked.ref if linked else None,
        messages=tuple(messages), notes=tuple(notes),
        events=tuple(EventView(e.type, _local(e.at, tz), e.actor, e.data) for e in events),  # type: ignore[arg-type]
        rounds=tuple(_round(r, tz) for r in rounds),
        scheduled_final=FinalState(final.at.astimezone(tz), final.held) if final else None,
    )


def _round(r: Round, tz: tzinfo) -> RoundView:
    return RoundView(r.number, r.kind, r.received_at.astimezone(tz), _local(r.ack_due_at, tz),
                     _local(r.acknowledged_at, tz), r.ack_via, r.promised_at.astimezone(tz), r.due_at.astimezone(tz),
                     r.cap_at.astimezone(tz), _local(r.late_since, tz), _local(r.answered_at, tz), r.answer_via,
                     r.outcome, r.mediation_offered)


def _local(dt: datetime | None, tz: tzinfo) -> datetime | None:
    return dt.astimezone(tz) if dt else None


def _messages(msgs: list[Message], atts: list[Attachment], tz: tzinfo) -> tuple[list[MessageView], list[NoteView]]:
    by_msg: dict[int, list[Attachment]] = {}
    for a in atts:
        by_msg.setdefault(a.message_id, []).append(a)
    messages: list[MessageView] = []
    notes: list[NoteView] = []
    n_att = 0
    for m in msgs:
        at = _local(m.sent_at or m.created_at, tz)
        assert at is not None
        if m.kind == "note":
            notes.append(NoteView(at, m.from_addr, m.body_text))
            continue
        views = []
        for a in by_msg.get(m.id or 0, []):
            n_att += 1
            views.append(AttachmentView(n_att, a.id or 0, len(messages) + 1, a.filename, a.content_type, a.size,
                                        a.sha256 is not None, a.dropped_reason))
        text, folded = fold_quotes(m.body_text) if m.direction == "in" else (m.body_text, 0)
        messages.append(MessageView(len(messages) + 1, m.id or 0, m.direction, m.kind, m.message_id, m.subject,
                                    m.from_addr, m.from_name, at, text, m.body_text, folded, m.route_signal,
                                    m.route_detail, tuple(views)))
    return messages, notes


def attachment_bytes(session: Session, app: App, case: Case, n: int) -> tuple[AttachmentView, bytes] | str:
    """The case's N-th attachment and its bytes, or why there are none."""
    views = case_detail(session, app, case).attachments
    if not 1 <= n <= len(views):
        return f"{case.ref} has {len(views)} attachment(s); no #{n}"
    view = views[n - 1]
    row = session.get(Attachment, view.id)
    data = blobs.get(session, row.sha256) if row is not None and row.sha256 else None
    if data is None:
        return f"{case.ref} attachment #{n} {view.filename} was not kept: {view.dropped_reason or 'erased'}"
    return view, data


# -- the human view ------------------------------------------------------------------------


def when(dt: datetime | None) -> str:
    """'2026-12-28 23:59 AST': local time with the zone's abbreviation."""
    return f"{dt:%Y-%m-%d %H:%M} {dt.tzname()}" if dt else "-"


def late(delta: timedelta | None) -> str:
    """'3 d 4 h' / '5 h' late, '' when on time."""
    if delta is None:
        return ""
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24} d {hours % 24} h" if hours >= 24 else f"{max(hours, 1)} h"


def format_case(d: CaseDetail, *, full: bool = False) -> str:
    """The human view of `cases show`: facts, deadlines, messages with their text, notes,
    attachments, timeline; local times with their zone."""
    c = d.case
    bounced = f"  (our mail bounced since {when(d.failing_since)})" if d.failing_since else ""
    lines = [
        f"{c.ref}  [{c.brand}]  {c.status}  priority={c.priority}  tier={c.tier}",
        f"  subject:    {c.subject}",
        f"  customer:   {c.customer_name} <{c.customer_email}>{bounced}",
        f"  category:   {c.category} ({d.category_label})   channel: {c.channel}   assignee: {c.assignee or '-'}",
        f"  received:   {when(d.received_at)}",
        f"  ack due:    {when(d.ack_due_at)}   acknowledged: {when(d.acknowledged_at)}",
        f"  answer due: {when(d.due_at)}   answered: {when(d.answered_at)}"
        + (f"   OVERDUE by {late(d.overdue)}" if d.overdue else ""),
    ]
    if d.scheduled_final:
        lines.append(_format_final(d.scheduled_final))
    if d.closed_at:
        lines.append(f"  closed:     {when(d.closed_at)}   outcome: {c.outcome or '-'}")
    if d.linked_case:
        lines.append(f"  linked:     {d.linked_case}")
    for r in d.rounds:
        since = f"  late since {when(r.late_since)}" if r.late_since else ""
        lines.append(f"  round {r.number} ({r.kind}): received {when(r.received_at)}, promised {when(r.promised_at)}"
                     f", due {when(r.due_at)}, legal cap {when(r.cap_at)}, answered {when(r.answered_at)}{since}")
    facts = {k: v for k, v in (c.extracted or {}).items() if v and k != "language"}
    if facts:
        lines.append("  extracted:")
        lines += [f"    {k}: {v}" for k, v in facts.items()]
    lines.append(f"  messages ({len(d.messages)}):")
    for m in d.messages:
        lines += _format_message(m, full)
    lines.append(f"  notes ({len(d.notes)}):")
    for note in d.notes:
        lines.append(f"    {when(note.at)}  {note.author}:")
        lines += [f"      {line}" for line in note.text.splitlines()]
    lines.append("  timeline:")
    for e in d.events:
        data = ", ".join(f"{k}={v}" for k, v in e.data.items())
        lines.append(f"    {when(e.at)}  {e.type:<20} by {e.actor}  {data}")
    return "\n".join(lines)


def _format_final(final: FinalState) -> str:
    if final.held:
        return (f"  final response held, waiting for the agent: it was scheduled for {when(final.at)};"
                " the customer wrote first (#final sends it again)")
    return f"  final response scheduled for {when(final.at)} (answered when it goes; a new #final replaces it)"


def _format_message(m: MessageView, full: bool) -> list[str]:
    arrow = "<-" if m.direction == "in" else "->"
    who = f"{m.from_name} <{m.from_addr}>" if m.from_name else m.from_addr
    out = [f"    [{m.n}] {when(m.at)} {arrow} {m.kind:<16} {who}  {m.subject}"]
    if m.direction == "in":
        out.append(f"        routed by {m.routed_by}: {m.route_detail}")
    text = m.full_text.strip() if full else m.text
    out += [f"        | {line}" for line in text.splitlines()]
    if m.quoted_lines and not full:
        out.append(f"        [{m.quoted_lines} quoted lines folded; --full shows them]")
    for a in m.attachments:
        state = "kept" if a.kept else f"dropped: {a.dropped_reason}"
        out.append(f"        attachment #{a.n} {a.filename} ({a.content_type}, {a.size} B, {state})")
    return out
