"""The supervisor's dashboard, per brand: open, overdue and due-this-week counts (live,
from the index on status and deadline), and how long acknowledgements and answers
took over the last DAYS days (a pass over the brand's cases: kept in `web_figures` and
recomputed when older than CHARTS_MAX_AGE, by whichever process shows the page)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, case, func, literal_column, select
from sqlmodel import Session, col

from mailbot import db
from mailbot.app import App
from mailbot.models import Case, WebFigures

OPEN_STATUSES = ("new", "acknowledged", "in_progress", "waiting_customer", "reexamination")
DAYS = 90
CHARTS_MAX_AGE = timedelta(minutes=5)
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
        week_end[b] = (local + timedelta(days=7 - local.weekday())).replace(hour=0, minute=0, second=0,
                                                                           microsecond=0)
    for b in brands:  # three range counts on the index (brand, status, due_at): no row is read
        f = result[b]
        f.open = _count(session, b)
        f.overdue = _count(session, b, col(Case.due_at) < now)
        f.due_this_week = _count(session, b, col(Case.due_at) >= now, col(Case.due_at) < week_end[b])
    for b, chart in charts(app, brands).items():
        result[b].ack_times = [(label, n) for (_, label), n in zip(ACK_BUCKETS, chart["ack"], strict=True)]
        result[b].answer_times = [(label, n) for (_, label), n in zip(ANSWER_BUCKETS, chart["answer"], strict=True)]
    return [result[b] for b in brands]


def _count(session: Session, brand: str, *where: ColumnElement[bool]) -> int:
    return int(session.execute(select(func.count()).select_from(Case).where(
        col(Case.brand) == brand, col(Case.status).in_(OPEN_STATUSES), *where)).scalar_one())


def charts(app: App, brands: Sequence[str]) -> dict[str, dict[str, list[int]]]:
    """The chart counts per brand: from `web_figures` when fresh, else computed and kept."""
    now = app.now()
    with db.read_scope(app.engine) as s:
        kept = {r.brand: r for r in s.scalars(select(WebFigures).where(col(WebFigures.brand).in_(brands)))}
        s.expunge_all()
    fresh = {b: r.data for b, r in kept.items() if now - r.computed_at < CHARTS_MAX_AGE and now >= r.computed_at}
    stale = [b for b in brands if b not in fresh]
    if stale:
        since = now - timedelta(days=DAYS)
        with db.read_scope(app.engine) as s:
            acks = _bucketed(s, stale, col(Case.acknowledged_at), col(Case.received_at), since, ACK_BUCKETS, 1)
            answers = _bucketed(s, stale, col(Case.answered_at), col(Case.received_at), since, ANSWER_BUCKETS, 24)
        with db.session_scope(app.engine) as s:
            for b in stale:
                fresh[b] = {"ack": acks[b], "answer": answers[b]}
                row = s.get(WebFigures, b) or WebFigures(brand=b, computed_at=now)
                row.computed_at, row.data = now, fresh[b]
                s.add(row)
    return fresh
