"""Final responses scheduled for later (`#final at 2026-12-01T09:00`, issue #27 item 6 and
#20 item 14).

A scheduled final is in the future and no later than the round's promised date and its
legal cap (`problems`); the case stays open until the mail goes out: it is answered when
the dispatcher has sent it (`sent`, from mailbot.cases.deliveries), not when it is
queued, and its SLA clock runs meanwhile. Until then a customer's mail holds it
(`withdraw`, from mailbot.cases.conversations): the mail is not sent, the round has no
final response again (its deadline can move, a new `#final` can be given) and the
agent's notification of that mail says so. A new `#final` replaces a scheduled one that
has not gone yet.

A row the dispatcher has started on (an attempt counted) is no longer held or replaced:
it is on its way.

Staff are told (`states`): every reminder, escalation and digest line of an open case
says when its final response is scheduled to go, or that it was held and waits for the
agent; the SLA sweep does not escalate, nor send a holding reply for, a deadline that a
scheduled final response meets (mailbot.cases.lifecycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete
from sqlmodel import Session, col, select

from mailbot import caselocks
from mailbot.business_days import BusinessCalendar
from mailbot.cases import rounds, sla
from mailbot.cases.messages import Say, say
from mailbot.cases.records import log_event, set_status
from mailbot.config import BrandConfig
from mailbot.models import Case, Event, Message, Outbox, Round

KIND = "final_response"
SCHEDULED = "final_scheduled"  # the event, with the outbox row's Message-ID


def problems(brand: BrandConfig, cal: BusinessCalendar, rnd: Round, at: datetime,
             now: datetime) -> list[Say]:
    """Why the final response may not be scheduled at `at` (empty: it may)."""
    when = cal.local(at).strftime("%Y-%m-%d %H:%M")
    if at <= now:
        return [say("final_past", when=when, now=cal.local(now).strftime("%Y-%m-%d %H:%M"))]
    latest = min(rnd.due_at, rnd.cap_at) if rnd.cap_at is not None else rnd.due_at
    if at > latest:
        return [say("final_too_late", when=when, latest=cal.local(latest).strftime("%Y-%m-%d %H:%M"))]
    return []


def _pending(session: Session, case: Case, now: datetime) -> list[Outbox]:
    """The case's scheduled final responses the dispatcher has not started on."""
    return list(session.exec(select(Outbox).where(
        Outbox.case_id == case.id, Outbox.kind == KIND, Outbox.status == "pending", Outbox.attempts == 0,
        col(Outbox.not_before) > now)).all())


_FORGET_RECORD = delete(Message).where(Message.case_id == bindparam("case_id"), Message.direction == "out",
                                       Message.message_id == bindparam("mid"))


def withdraw(session: Session, case: Case, now: datetime, *, status: str, actor: str, reason: str
             ) -> datetime | None:
    """Take back the case's scheduled final response (`status`: held | replaced): not sent,
    the round without a final response again. Returns when it was to go, None if none was
    waiting."""
    caselocks.lock(session, case)
    rows = _pending(session, case, now)
    if not rows:
        return None
    for row in rows:
        row.status, row.last_error = status, reason[:2000]
        session.add(row)
        session.connection().execute(_FORGET_RECORD, {"case_id": case.id, "mid": row.message_id})
        log_event(session, case, f"final_{status}", actor=actor, at=now, outbox=row.id,
                  scheduled=row.not_before.isoformat(), reason=reason)
    rounds.answer_withdrawn(session, case)
    return min(r.not_before for r in rows)


def sent(session: Session, brand: BrandConfig, case_id: int, message_id: str, round_number: int | None,
         at: datetime) -> None:
    """A final response went out: if it was a scheduled one, the case is answered now."""
    scheduled = session.exec(select(Event.data).where(Event.case_id == case_id, Event.type == SCHEDULED)).all()
    if not any(data.get("message_id") == message_id for data in scheduled):
        return  # sent at once: the case was answered when it was queued
    case = session.get(Case, case_id)
    if case is None:
        return
    caselocks.lock(session, case)
    if case.round_number != round_number or case.status not in sla.OPEN_STATUSES:
        return
    rnd = rounds.current(session, case)
    case.answered_at, case.outcome = at, rnd.outcome
    set_status(session, case, "answered", at=at, reason="scheduled final response sent")
    sla.reschedule(session, case, brand)


@dataclass(frozen=True)
class FinalState:
    """An open case's final response of the current round that has not gone: scheduled for
    `at`, or `held` (a customer's mail came first: it waits for the agent)."""

    at: datetime
    held: bool


def context(final: FinalState | None, cal: BusinessCalendar) -> dict[str, Any]:
    """The templates' `scheduled_final`: the time in the brand's zone, or no time (none)."""
    return {"at": cal.local(final.at).isoformat(), "held": final.held} if final else {"at": "", "held": False}


def states(session: Session, case_ids: list[int]) -> dict[int, FinalState]:
    """The cases' final responses scheduled or held in their current round (a case with
    neither is absent). The latest final response of the round decides: one sent, failed
    or given at once (the case answered) leaves nothing to say; a replaced one does not count."""
    if not case_ids:
        return {}
    stmt = (select(Outbox.case_id, Outbox.status, Outbox.not_before)
            .join(Case, col(Case.id) == col(Outbox.case_id))
            .outerjoin(Round, and_(col(Round.case_id) == col(Case.id), col(Round.number) == col(Case.round_number)))
            .where(col(Outbox.case_id).in_(case_ids), Outbox.kind == KIND, Outbox.status != "replaced",
                   col(Case.status).in_(sla.OPEN_STATUSES),
                   col(Round.received_at).is_(None) | (col(Outbox.created_at) >= col(Round.received_at)))
            .order_by(col(Outbox.id)))
    latest = {case_id: (status, at) for case_id, status, at in session.exec(stmt).all()}
    return {case_id: FinalState(at, status == "held") for case_id, (status, at) in latest.items()
            if case_id is not None and status in ("pending", "held")}
