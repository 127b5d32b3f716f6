"""The rounds of a case — the complaint, then each re-examination — and the legal caps on
their answer dates: what the complaint register keeps (`mailbot register export`).

A round is written when it opens (`open_round`: round 1 with the case, the next one when
a re-examination starts) and changed by what happens to it: its promised date moves
(`move_due`: extension, tier change), its final response is queued (`answer_queued`:
outcome, mediation offered). Its acknowledgement and answer times are set when the mail
is sent (the dispatcher's outcome, mailbot.cases.deliveries) or the letter posted, never
when they are queued (`delivered`): a case counts as answered only once its answer has
left. The round number travels with the mail (`context["round"]` of its outbox row).

Legal caps (per brand, `[brands.sla]`): any complaint is answered at most `cap_months`
after its receipt (ACPR recommendation 2022-R-01: two months); a brand offering payment
services (`payment_services = true`) answers within `payment_days` business days (15),
and at most `payment_days_max` (35) with a holding reply that gives the reasons (PSD2,
CMF L.133-45). A re-examination is a new complaint for these limits: they count from
its own receipt. A change of the promised date past a cap is refused (`cap_problems`).

A promised date moved after it had passed unanswered (a late extension) leaves the
deadline that passed in `late_since`: that round's answer never counts as on time.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time

from sqlalchemy import bindparam, insert, update
from sqlmodel import Session, select

from mailbot.business_days import BusinessCalendar
from mailbot.config import BrandConfig
from mailbot.models import Case, Round, track
from mailbot.prepared import Prepared

KINDS = ("complaint", "reexamination")


def months_after(cal: BusinessCalendar, start: datetime, months: int) -> datetime:
    """The end (23:59:59 local) of the same day `months` later (the month's last day if
    it is shorter: 31 December + 2 months is 28 or 29 February)."""
    local = cal.local(start).date()
    month0 = local.month - 1 + months
    year, month = local.year + month0 // 12, month0 % 12 + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return cal.end_of_day(date(year, month, day))


@dataclass(frozen=True)
class Caps:
    """The limits on a round's answer date."""

    latest: datetime  # the legal cap: no promised date may pass it
    latest_why: str  # what sets it, for messages ("2 months from receipt (ACPR)")
    reasons_from: datetime | None  # past this date the customer must be given the reasons


def caps(brand: BrandConfig, cal: BusinessCalendar, received_at: datetime) -> Caps:
    sla = brand.sla
    latest, why = months_after(cal, received_at, sla.cap_months), f"{sla.cap_months} months from receipt (ACPR)"
    reasons_from = None
    if sla.payment_services:
        payment_max = cal.add_business_days(received_at, sla.payment_days_max)
        if payment_max < latest:
            latest, why = payment_max, f"{sla.payment_days_max} business days for payment services (PSD2)"
        reasons_from = cal.add_business_days(received_at, sla.payment_days)
    return Caps(latest, why, reasons_from)


def cap_problems(brand: BrandConfig, cal: BusinessCalendar, received_at: datetime, new_due: datetime,
                 reason: str) -> list[str]:
    """Why the promised date may not move to `new_due` (empty: it may)."""
    c = caps(brand, cal, received_at)
    if new_due > c.latest:
        return [f"the new date {_day(cal, new_due)} is past the legal limit of {c.latest_why}: "
                f"the latest allowed date is {_day(cal, c.latest)}"]
    if c.reasons_from is not None and new_due > c.reasons_from and not reason.strip():
        return [f"past {brand.sla.payment_days} business days (payment services, after "
                f"{_day(cal, c.reasons_from)}) the customer must be told the reasons: give a reason"]
    return []


def _day(cal: BusinessCalendar, dt: datetime) -> str:
    return cal.local(dt).date().isoformat()


_INSERT_ROUND = Prepared(insert(Round))


def open_round(session: Session, case: Case, brand: BrandConfig, cal: BusinessCalendar, *, kind: str,
               received_at: datetime, ack_due_at: datetime | None, due_at: datetime) -> None:
    """Start the case's next round (the case's first: number 1). Written at once, not
    deferred: later changes in the same transaction update it."""
    if kind not in KINDS:
        raise ValueError(f"unknown round kind {kind!r}")
    number = 1 if kind == "complaint" else case.round_number + 1
    _INSERT_ROUND.scalar(session, {
        "case_id": case.id, "number": number, "kind": kind, "received_at": received_at,
        "ack_due_at": ack_due_at, "acknowledged_at": None, "ack_via": None, "promised_at": due_at,
        "due_at": due_at, "cap_at": caps(brand, cal, received_at).latest, "late_since": None,
        "answered_at": None, "answer_via": None, "outcome": None, "mediation_offered": False})
    if case.round_number != number:
        case.round_number = number
        track(session, case)


def current(session: Session, case: Case) -> Round:
    """The case's round now (its last)."""
    found = session.exec(select(Round).where(Round.case_id == case.id,
                                             Round.number == case.round_number)).first()
    if found is None:
        raise LookupError(f"case {case.ref} has no round {case.round_number}")
    return found


def final_given(rnd: Round) -> bool:
    """The round's final response is queued, scheduled or sent: its deadline is frozen
    and it gets no other (a re-examination opens the next round)."""
    return rnd.outcome is not None or rnd.answered_at is not None


def move_due(session: Session, case: Case, new_due: datetime, now: datetime) -> bool:
    """Move the promised date of the case's current round; returns whether the old one had
    already passed unanswered (then the round stays late for good)."""
    rnd = current(session, case)
    late = rnd.answered_at is None and now > rnd.due_at
    if late and rnd.late_since is None:
        rnd.late_since = rnd.due_at
    rnd.due_at = new_due
    session.add(rnd)
    case.due_at = new_due
    track(session, case)
    return late


def answer_queued(session: Session, case: Case, *, outcome: str, mediation: bool) -> None:
    """The round's final response is on its way (its time is set when it leaves)."""
    rnd = current(session, case)
    rnd.outcome, rnd.mediation_offered = outcome, mediation
    session.add(rnd)


def answer_withdrawn(session: Session, case: Case) -> None:
    """The round's final response was taken back before it left (a scheduled one, held)."""
    rnd = current(session, case)
    rnd.outcome, rnd.mediation_offered = None, False
    session.add(rnd)


# What leaving the house means for a round.
ACK_KINDS = ("acknowledgement", "reexamination_ack", "linked_ack")
ANSWER_KINDS = ("final_response",)


def _delivered_statement(at_column: str, via_column: str) -> Prepared:
    column = getattr(Round, at_column)
    return Prepared(update(Round).where(Round.case_id == bindparam("of_case"),
                                        Round.number == bindparam("of_round"), column.is_(None))
                    .values({at_column: bindparam("at"), via_column: bindparam("via")}))


_ACKNOWLEDGED = _delivered_statement("acknowledged_at", "ack_via")
_ANSWERED = _delivered_statement("answered_at", "answer_via")


def delivered(session: Session, *, case_id: int | None, kind: str, round_number: int | None,
              at: datetime, via: str) -> None:
    """Record on its round that a mail or letter of `kind` left at `at` (`via`: email or
    letter; the first time only: a resend changes nothing). Kinds the register does not
    keep are ignored."""
    stmt = _ACKNOWLEDGED if kind in ACK_KINDS else _ANSWERED if kind in ANSWER_KINDS else None
    if stmt is None or case_id is None or round_number is None:
        return
    stmt.scalar(session, {"of_case": case_id, "of_round": round_number, "at": at, "via": via})


def start_of_day(cal: BusinessCalendar, day: date) -> datetime:
    """A letter's time in the register: the start of the local day it was posted."""
    return datetime.combine(day, time(0), tzinfo=cal.tz)
