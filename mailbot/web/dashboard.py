"""The supervisor's dashboard, per brand: open, overdue and due-this-week counts, and how
long acknowledgements and answers took (last DAYS days), in a few aggregate queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, case, func, literal_column, select
from sqlmodel import Session, col

from mailbot.app import App
from mailbot.models import Case

OPEN_STATUSES = ("new", "acknowledged", "in_progress", "waiting_customer", "reexamination")
DAYS = 90
ACK_BUCKETS = ((1, "< 1 h"), (4, "1–4 h"), (24, "4–24 h"), (48, "1–2 d"), (None, "> 2 d"))
ANSWER_BUCKETS = ((7, "< 1 w"), (14, "1–2 w"), (21, "2–3 w"), (42, "3–6 w"), (None, "> 6 w"))


@dataclass
class BrandFigures:
    brand: str
    name: str
    open: int = 0
    overdue: int = 0
    due_this_week: int = 0
    ack_times: list[tuple[str, int]] = field(default_factory=list)
    answer_times: list[tuple[str, int]] = field(default_factory=list)


def _hours(session: Session, later: ColumnElement, earlier: ColumnElement) -> ColumnElement:
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", later - earlier) / 3600.0
    return (func.julianday(later) - func.julianday(earlier)) * 24.0


def _bucketed(session: Session, brands: Sequence[str], later: ColumnElement, earlier: ColumnElement,
              since: datetime, buckets: tuple[tuple[int | None, str], ...], unit_hours: float) -> dict[str, list[int]]:
    h = _hours(session, later, earlier)
    whens = [(h < limit * unit_hours, i) for i, (limit, _) in enumerate(buckets) if limit is not None]
    bucket = case(*whens, else_=literal_column(str(len(buckets) - 1)))
    rows = session.execute(
        select(Case.brand, bucket, func.count())
        .where(col(Case.brand).in_(brands), later.is_not(None), later >= since)
        .group_by(Case.brand, bucket)).all()
    out = {b: [0] * len(buckets) for b in brands}
    for brand, i, n in rows:
        out[brand][int(i)] = int(n)
    return out


def figures(session: Session, app: App, brands: Sequence[str]) -> list[BrandFigures]:
    """Each brand's figures, as of `app.now()`; weeks end on Sunday in the brand's zone."""
    now = app.now()
    result = {b: BrandFigures(b, app.config.brand(b).name) for b in brands}
    week_end = {}
    for b in brands:
        local = app.calendar(b).local(now)
        start_next = (local + timedelta(days=7 - local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        week_end[b] = start_next
    rows = session.execute(
        select(Case.brand, func.count(), func.sum(case((col(Case.due_at) < now, 1), else_=0)),
               *[func.sum(case(((col(Case.brand) == b) & (col(Case.due_at) >= now)
                                & (col(Case.due_at) < week_end[b]), 1), else_=0)) for b in brands])
        .where(col(Case.status).in_(OPEN_STATUSES), col(Case.brand).in_(brands))
        .group_by(Case.brand)).all()
    for brand, n_open, n_overdue, *weeks in rows:
        f = result[brand]
        f.open, f.overdue = int(n_open), int(n_overdue or 0)
        f.due_this_week = int(weeks[list(brands).index(brand)] or 0)
    since = now - timedelta(days=DAYS)
    acks = _bucketed(session, brands, col(Case.acknowledged_at), col(Case.received_at), since, ACK_BUCKETS, 1)
    answers = _bucketed(session, brands, col(Case.answered_at), col(Case.received_at), since, ANSWER_BUCKETS, 24)
    for b in brands:
        result[b].ack_times = [(label, n) for (_, label), n in zip(ACK_BUCKETS, acks[b], strict=True)]
        result[b].answer_times = [(label, n) for (_, label), n in zip(ANSWER_BUCKETS, answers[b], strict=True)]
    return [result[b] for b in brands]
