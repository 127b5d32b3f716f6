"""Case records: opening a case, adding messages, status changes and the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from mailbot import references, sla
from mailbot.app import App
from mailbot.config import BrandConfig
from mailbot.models import Case, Event, Message, utcnow

STATUSES = ("new", "acknowledged", "in_progress", "waiting_customer", "answered", "closed", "reexamination")


_INSERT_EVENT = insert(Event)


def log_event(session: Session, case: Case | None, type_: str, *, actor: str = "system",
              at: datetime | None = None, **data: Any) -> None:
    """Append one line to the audit trail (a prepared INSERT in the caller's transaction:
    several per mail, so no ORM object and no per-call statement construction)."""
    session.connection().execute(_INSERT_EVENT, {"case_id": case.id if case else None, "type": type_,
                                                 "actor": actor[:500], "data": data, "at": at or utcnow()})


def set_status(session: Session, case: Case, status: str, *, actor: str = "system",
               at: datetime | None = None, reason: str = "") -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    if case.status == status:
        return
    log_event(session, case, "status", actor=actor, at=at, **{"from": case.status, "to": status, "reason": reason})
    case.status = status
    session.add(case)


def open_case(session: Session, app: App, brand: BrandConfig, *, customer_email: str,
              customer_name: str, subject: str, received_at: datetime, channel: str = "email",
              category: str | None = None, urgent: bool = False, language: str | None = None,
              extracted: dict[str, Any] | None = None, actor: str = "system") -> Case:
    """Create a case with its reference and deadlines (in the caller's transaction)."""
    year = app.calendar(brand).local(received_at).year
    cal = app.calendar(brand)
    tier = brand.category_tier(category)  # categories may start in a given tier
    # The counter row is locked by next_seq until commit (database lock on SQLite,
    # row lock on PostgreSQL), so the number is ours: no retry loop needed.
    seq = references.next_seq(session, brand.key, year)
    case = Case(
        ref=references.format_ref(brand.prefix, year, seq),
        brand=brand.key, year=year, seq=seq, channel=channel,
        category=category or brand.default_category,
        priority="urgent" if urgent else "normal", tier=tier,
        language=language or brand.language, subject=subject[:1000],
        customer_email=customer_email, customer_name=customer_name[:500],
        reply_token=references.new_reply_token(), extracted=extracted or {},
        received_at=received_at,
        ack_due_at=sla.ack_due(brand, cal, received_at),
        due_at=sla.resolution_due(brand, cal, received_at, tier),
    )
    session.add(case)
    session.flush()
    sla.reschedule(session, case, brand, marks=set())
    log_event(session, case, "case_opened", actor=actor, at=app.now(), channel=channel,
              ref=case.ref, tier=tier, due_at=case.due_at.isoformat() if case.due_at else None)
    return case


def add_message(session: Session, case: Case, *, direction: str, kind: str, message_id: str | None,
                subject: str, from_addr: str, from_name: str = "", body_text: str = "",
                sent_at: datetime | None = None, inbound_id: int | None = None,
                route_signal: str = "", route_detail: str = "", flush: bool = True) -> Message:
    msg = Message(
        case_id=case.id, inbound_id=inbound_id, direction=direction, kind=kind,
        message_id=message_id, subject=subject[:1000], from_addr=from_addr[:500],
        from_name=from_name[:500], body_text=body_text, sent_at=sent_at,
        route_signal=route_signal, route_detail=route_detail[:1000],
    )
    session.add(msg)
    if flush:
        session.flush()
    return msg
