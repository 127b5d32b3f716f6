"""Case records: opening a case, adding messages, status changes and the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session

from mailbot import caselocks, db
from mailbot.app import App
from mailbot.cases import references, rounds, sla
from mailbot.cases.sla import OPEN_STATUSES
from mailbot.cases.statuses import STATUSES  # noqa: F401 - re-exported
from mailbot.config import BrandConfig
from mailbot.mail.masking import stored_line
from mailbot.models import Case, Event, Message, StoredMessage, construct, track, utcnow
from mailbot.prepared import Prepared

_INSERT_EVENT = Prepared(insert(Event))


def log_event(session: Session, case: Case | None, type_: str, *, actor: str = "system",
              at: datetime | None = None, **data: Any) -> None:
    """Append one line to the audit trail (an INSERT in the caller's transaction: several
    per mail, so no ORM object)."""
    log_case_event(session, case.id if case else None, type_, actor=actor, at=at, **data)


def log_case_event(session: Session, case_id: int | None, type_: str, *, actor: str = "system",
                   at: datetime | None = None, **data: Any) -> None:
    """`log_event` for a case known by its id."""
    db.write(session, _INSERT_EVENT, {"case_id": case_id, "type": type_, "actor": actor[:500],
                                      "data": data, "at": at or utcnow()})


def set_status(session: Session, case: Case, status: str, *, actor: str = "system",
               at: datetime | None = None, reason: str = "") -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    if case.status == status:
        return
    log_event(session, case, "status", actor=actor, at=at, **{"from": case.status, "to": status, "reason": reason})
    case.status = status
    track(session, case)
    _note_open(session, case)


_OPEN_CASES = "open_cases"  # session.info, in a batch: sender (lower-case) → ids of their open cases


def remember_open_cases(session: Session, found: dict[str, set[int]]) -> None:
    """A batch's senders and their open cases, read at its start (duplicates.prefetch_open_cases);
    every case opened or reopened in the transaction is added (`open_case`, `set_status`)."""
    session.info[_OPEN_CASES] = found


def may_have_open_case(session: Session, sender: str, besides: int | None) -> bool:
    """False only when `sender` is known to have no open case but `besides`."""
    known = session.info.get(_OPEN_CASES, {}).get(sender)
    return known is None or bool(known - {besides})


def _note_open(session: Session, case: Case) -> None:
    known = session.info.get(_OPEN_CASES)
    if known is not None and case.status in OPEN_STATUSES and case.id is not None:
        known.setdefault(case.customer_email.lower(), set()).add(case.id)


def open_case(session: Session, app: App, brand: BrandConfig, *, customer_email: str,
              customer_name: str, subject: str, received_at: datetime, channel: str = "email",
              category: str | None = None, urgent: bool = False, language: str | None = None,
              extracted: dict[str, Any] | None = None, actor: str = "system",
              opening: sla.Opening | None = None, received_date_only: bool = False) -> Case:
    """Create a case with its reference, deadlines and first round (in the caller's
    transaction). `opening`: its year, tier and deadlines when the analysis computed them
    ahead (for the same brand, category and `received_at`). `received_date_only`: only
    the day of receipt is known (a letter), `received_at` is a time on that day."""
    o = opening if opening is not None and opening.fits(brand, received_at, category) \
        else sla.opening(brand, app.calendar(brand), received_at, category)
    # The counter row is locked by next_seq until commit (database lock on SQLite,
    # row lock on PostgreSQL), so the number is ours: no retry loop needed.
    seq = references.next_seq(session, brand.key, o.year)
    case = construct(
        Case, ref=references.format_ref(brand.prefix, o.year, seq),
        brand=brand.key, year=o.year, seq=seq, channel=channel,
        category=category or brand.default_category,
        priority="urgent" if urgent else "normal", tier=o.tier,
        language=language or brand.language, subject=stored_line(subject)[:1000],
        customer_email=customer_email, customer_name=stored_line(customer_name)[:500],
        reply_token=references.new_reply_token(), extracted=extracted or {},
        received_at=received_at, ack_due_at=o.ack_due_at, due_at=o.due_at,
        next_sla_at=o.next_sla_at,  # before the INSERT: no UPDATE
        received_date_only=received_date_only,
    )
    if urgent:  # its on-call alerts and first-response deadline come before any other point
        case.next_sla_at = sla.next_at(case, brand, app.calendar(brand), set())
    _insert_case(session, case)
    _note_open(session, case)
    rounds.open_round(session, case, brand, app.calendar(brand), kind="complaint", received_at=received_at,
                      ack_due_at=o.ack_due_at, due_at=o.due_at)
    log_event(session, case, "case_opened", actor=actor, at=app.now(), channel=channel,
              ref=case.ref, tier=o.tier, due_at=o.due_at.isoformat())
    return case


_INSERT_MESSAGE = Prepared(insert(Message).returning(Message.id))


_CASE_COLUMNS = [c.key for c in Case.__table__.columns if c.key != "id"]  # type: ignore[attr-defined]
_INSERT_CASE = Prepared(insert(Case).returning(Case.id))


def _insert_case(session: Session, case: Case) -> None:
    """INSERT the case at once and make the object persistent without a flush: a flush
    here would also send the pending changes of the batch's earlier cases one by one,
    rather than all together at the commit."""
    values = {key: getattr(case, key) for key in _CASE_COLUMNS}
    case.id = int(_INSERT_CASE.scalar(session, values))
    make_transient_to_detached(case)
    session.add(case)
    caselocks.locked(session, [case])  # inserted by this transaction: no one else sees it yet


def add_message(session: Session, case: Case, *, direction: str, kind: str, message_id: str | None,
                subject: str, from_addr: str, from_name: str = "", body_text: str = "",
                sent_at: datetime | None = None, inbound_id: int | None = None,
                route_signal: str = "", route_detail: str = "", created_at: datetime | None = None
                ) -> StoredMessage:
    """One prepared INSERT (at least one per mail received, so no ORM object). Every case
    has its id from `open_case` on. `created_at`: the app's clock (default: the system's)."""
    new_id = _INSERT_MESSAGE.scalar(session, {
        "case_id": case.id, "inbound_id": inbound_id, "direction": direction, "kind": kind,
        "message_id": message_id, "subject": stored_line(subject)[:1000], "from_addr": from_addr[:500],
        "from_name": stored_line(from_name)[:500], "body_text": body_text, "sent_at": sent_at,
        "created_at": created_at or utcnow(),
        "route_signal": route_signal, "route_detail": route_detail[:1000],
    })
    return StoredMessage(id=int(new_id))


_INSERT_SENT = Prepared(insert(Message))


def note_outgoing(session: Session, case: Case, *, kind: str, message_id: str, from_addr: str,
                  from_name: str, sent_at: datetime) -> None:
    """Record a mail we send on the case's thread, so replies to it find the case."""
    db.write(session, _INSERT_SENT, {
        "case_id": case.id, "inbound_id": None, "direction": "out", "kind": kind, "message_id": message_id,
        "subject": "", "from_addr": from_addr[:500], "from_name": from_name[:500], "body_text": "",
        "sent_at": sent_at, "created_at": utcnow(), "route_signal": "", "route_detail": ""})
