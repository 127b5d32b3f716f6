"""Deadlines of a case from the brand's policy and business-day calendar, and its SLA points."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select

from mailbot.business_days import BusinessCalendar, for_brand
from mailbot.config import BrandConfig
from mailbot.models import Case, Round, SlaMark, track

OPEN_STATUSES = ("new", "acknowledged", "in_progress", "waiting_customer", "reexamination")


def ack_due(brand: BrandConfig, cal: BusinessCalendar, received_at: datetime) -> datetime:
    """When the acknowledgement is due: calendar hours if set, else business hours."""
    if brand.sla.ack_hours:
        return received_at + timedelta(hours=brand.sla.ack_hours)
    return cal.add_business_hours(received_at, brand.sla.ack_business_hours or 24)


def resolution_due(brand: BrandConfig, cal: BusinessCalendar, received_at: datetime, tier: str,
                   extra_days: int = 0) -> datetime:
    days = brand.sla.tiers.get(tier, brand.sla.tiers[brand.sla.default_tier])
    return cal.add_business_days(received_at, days + extra_days)



@dataclass(frozen=True)
class Opening:
    """A new case's year, tier and deadlines: pure functions of its brand, its category
    and when it was received, so the analysis workers compute them ahead (see
    mailbot.ingest.analysis) and the daemon's write only copies them."""

    brand: str  # what it was computed for
    received_at: datetime
    category: str | None
    year: int
    tier: str
    ack_due_at: datetime
    due_at: datetime
    next_sla_at: datetime | None

    def fits(self, brand: BrandConfig, received_at: datetime, category: str | None) -> bool:
        return (self.brand, self.received_at, self.category) == (brand.key, received_at, category)


def opening(brand: BrandConfig, cal: BusinessCalendar, received_at: datetime, category: str | None) -> Opening:
    tier = brand.category_tier(category)  # categories may start in a given tier
    ack, due = ack_due(brand, cal, received_at), resolution_due(brand, cal, received_at, tier)
    first = min((p.at for p in _points("new", received_at, ack, due, brand, cal, reminders=True)), default=None)
    return Opening(brand.key, received_at, category, cal.local(received_at).year, tier, ack, due, first)


@dataclass(frozen=True)
class SlaPoint:
    key: str  # unique per case: e.g. "reminder-50@20261202T2259"
    kind: str  # ack_breach | reminder | escalation | holding | urgent_alert | urgent_escalation
    at: datetime
    percent: int = 0
    deadline: datetime | None = None  # the deadline the point is about (default: the case's)


def sla_points(case: Case, brand: BrandConfig, cal: BusinessCalendar, start: datetime | None = None
               ) -> list[SlaPoint]:
    """Every point of the case's current deadline, in time order (pure). `start`: when the
    current round began (a re-examination's receipt; default: the case's)."""
    urgent = case.priority == "urgent" and case.round_number <= 1 and not agent_acted(case)
    return _points(case.status, start or case.received_at, case.ack_due_at, case.due_at, brand, cal,
                   urgent=urgent, reminders=brand.reminds_per_case(case.priority))


def agent_acted(case: Case) -> bool:
    """An agent has taken the case in hand: assigned it, or answered or asked the customer."""
    return case.assignee is not None or case.status not in ("new", "acknowledged")


def round_start(session: Session, case: Case) -> datetime:
    """When the case's current round began: its receipt, or its re-examination's."""
    if case.round_number <= 1 or case.id is None:
        return case.received_at
    return session.exec(select(Round.received_at).where(Round.case_id == case.id,
                                                        Round.number == case.round_number)).one()


def _points(status: str, received_at: datetime, ack_due_at: datetime | None, due_at: datetime | None,
            brand: BrandConfig, cal: BusinessCalendar, *, urgent: bool = False, reminders: bool
            ) -> list[SlaPoint]:
    """Staff points (reminders, escalations) and the customer's holding reply fall within
    opening hours of business days (`sla.business_hours`); an urgent case's on-call alert
    repeats on the clock (on-call is on call). `reminders`: whether the case gets per-case
    reminders (`BrandConfig.reminds_per_case`: else the daily digest lists it). (A new
    case's first point counts them: at worst the sweep wakes for nothing and reschedules.)"""
    if status not in OPEN_STATUSES or due_at is None:
        return []
    opens, closes = brand.sla.opening_hours

    def working(at: datetime) -> datetime:
        return cal.working_moment(at, opens, closes)

    stamp = due_at.strftime("%Y%m%dT%H%M")
    points = []
    if status == "new" and ack_due_at is not None:
        points.append(SlaPoint("ack_breach", "ack_breach", working(ack_due_at), deadline=ack_due_at))
    span = due_at - received_at
    for fraction in brand.sla.reminders if reminders else ():
        pct = round(fraction * 100)
        points.append(SlaPoint(f"reminder-{pct}@{stamp}", "reminder", working(received_at + span * fraction), pct))
    if brand.sla.escalate_at_breach:
        points.append(SlaPoint(f"escalation@{stamp}", "escalation", working(due_at), 100))
    if brand.sla.holding_reply:
        points.append(SlaPoint(f"holding@{stamp}", "holding", working(due_at), 100))
    if urgent:
        first = cal.add_working_hours(received_at, brand.sla.urgent_response_hours, opens, closes)
        every = timedelta(minutes=brand.sla.urgent_realert_minutes)
        for n in range(1, brand.sla.urgent_realerts + 1):
            if received_at + every * n < first:
                points.append(SlaPoint(f"urgent-alert-{n}", "urgent_alert", received_at + every * n, deadline=first))
        points.append(SlaPoint("urgent-escalation", "urgent_escalation", first, deadline=first))
    return sorted(points, key=lambda p: p.at)


def marked(session: Session, case: Case) -> set[str]:
    return set(session.exec(select(SlaMark.point).where(SlaMark.case_id == case.id)).all())


def next_at(case: Case, brand: BrandConfig, cal: BusinessCalendar, done: set[str],
            start: datetime | None = None) -> datetime | None:
    """When the case's first SLA point not in `done` falls due (pure)."""
    pending = [p.at for p in sla_points(case, brand, cal, start) if p.key not in done]
    return min(pending) if pending else None


def reschedule(session: Session, case: Case, brand: BrandConfig) -> None:
    """Recompute `next_sla_at` after any change of status or deadline."""
    case.next_sla_at = next_at(case, brand, for_brand(brand), marked(session, case) if case.id is not None else set(),
                               round_start(session, case))
    track(session, case)
