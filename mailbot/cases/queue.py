"""The work queue: cases filtered, sorted by deadline and cut into pages, with a count.

Shared by `mailbot cases list` and the staff console (mailbot.web): build a
`QueueFilter`, call `list_cases`, get a `QueuePage` of typed `QueueRow`s. Times are
aware UTC datetimes; `QueueRow.due_local` is the deadline in the brand's time zone,
which is how people read it (a Divikeys case due at 23:59 on 28 December in
Saint-Martin is due then, not on the 29th as UTC would say).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, false, func, or_, union_all
from sqlmodel import Session, col, select

from mailbot.app import App
from mailbot.cases.records import STATUSES
from mailbot.cases.sla import OPEN_STATUSES
from mailbot.models import Case

STATUS_GROUPS: dict[str, tuple[str, ...]] = {"open": OPEN_STATUSES, "all": STATUSES}
SORTS = ("due", "received", "updated")
UNASSIGNED = "none"  # --assignee none: cases assigned to nobody
MAX_PER_PAGE = 500


class BadFilter(ValueError):
    """A filter value that means nothing (an unknown status, brand or sort); the message
    lists the valid ones."""


@dataclass(frozen=True)
class QueueFilter:
    """Which cases: every field narrows the list (None/False: no condition).

    `status`: a status, or "open" (every status still running: new, acknowledged,
    in_progress, waiting_customer, reexamination) or "all". `mine`: the agent's work
    (assigned to them, or unassigned in one of their brands). `assignee`: assigned to
    exactly that address, or `"none"`. `brands`: the brands the viewer may see (the
    staff console passes the agent's brands)."""

    status: str = "open"
    brand: str | None = None
    mine: str | None = None
    assignee: str | None = None
    overdue: bool = False
    due_today: bool = False
    brands: Sequence[str] | None = None


@dataclass(frozen=True)
class QueueRow:
    id: int
    ref: str
    brand: str
    status: str
    priority: str
    category: str | None
    subject: str
    customer_name: str
    customer_email: str
    assignee: str | None
    received_at: datetime
    due_at: datetime | None
    due_local: datetime | None  # due_at in the brand's time zone
    overdue: timedelta | None  # how late, when the case is still open past its deadline

    def to_json(self) -> dict[str, object]:
        return {
            "ref": self.ref, "brand": self.brand, "status": self.status, "priority": self.priority,
            "category": self.category, "subject": self.subject,
            "customer": {"name": self.customer_name, "email": self.customer_email},
            "assignee": self.assignee, "received_at": self.received_at.isoformat(),
            "due_at": self.due_local.isoformat() if self.due_local else None,
            "overdue": self.overdue is not None,
            "overdue_hours": round(self.overdue.total_seconds() / 3600, 1) if self.overdue else 0,
        }


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    total: int  # cases matching the filter, all pages together
    page: int
    per_page: int
    filter: QueueFilter = field(default_factory=QueueFilter)
    capped: bool = False  # more than `total` match (a search counts up to cases.search.COUNT_CAP)

    @property
    def total_text(self) -> str:
        """The count as a person reads it: "1,000" exact, "more than 1,000" when capped."""
        return f"more than {self.total:,}" if self.capped else f"{self.total:,}"

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def first(self) -> int:
        """1-based position of the page's first row (0 when empty)."""
        return (self.page - 1) * self.per_page + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0

    @property
    def has_next(self) -> bool:
        return self.page < self.pages or (self.capped and len(self.rows) == self.per_page)


def statuses(value: str) -> tuple[str, ...]:
    """The statuses `value` names ("open", "all" or one status); BadFilter otherwise."""
    if value in STATUS_GROUPS:
        return STATUS_GROUPS[value]
    if value in STATUSES:
        return (value,)
    valid = ", ".join([*STATUS_GROUPS, *STATUSES])
    raise BadFilter(f"unknown status {value!r}; valid: {valid}")


def _conditions(app: App, f: QueueFilter, now: datetime) -> list[ColumnElement[bool]]:
    cfg = app.config
    known = [b.key for b in cfg.brands]
    if f.brand is not None and f.brand not in known:
        raise BadFilter(f"unknown brand {f.brand!r}; valid: {', '.join(known)}")
    wanted = statuses(f.status)
    where: list[ColumnElement[bool]] = [col(Case.status).in_(wanted)]
    if f.brand:
        where.append(col(Case.brand) == f.brand)
    if f.brands is not None:
        where.append(col(Case.brand).in_(list(f.brands)) if f.brands else false())
    if f.assignee:
        where.append(col(Case.assignee).is_(None) if f.assignee == UNASSIGNED
                     else col(Case.assignee) == f.assignee.lower())
    if f.overdue:
        where += [col(Case.due_at) < now, col(Case.status).in_(OPEN_STATUSES)]
    if f.due_today:
        where.append(or_(*[and_(col(Case.brand) == b.key, col(Case.due_at) > start, col(Case.due_at) <= end)
                           for b in cfg.brands for start, end in [_today(app, b.key, now)]]))
    return where


def _today(app: App, brand: str, now: datetime) -> tuple[datetime, datetime]:
    """Today in the brand's time zone, as (start, end] in UTC: from the end of yesterday
    (deadlines fall at 23:59:59 local) to the end of today."""
    cal = app.calendar(brand)
    day = cal.local(now).date()
    return cal.end_of_day(day - timedelta(days=1)), cal.end_of_day(day)


@dataclass(frozen=True)
class _Part:
    """Cases a filter selects, in a shape one index range serves: the conditions, and the
    brands they can be in (None: any the filter allows). A filter is one part, or — "mine" —
    two disjoint ones."""

    where: list[ColumnElement[bool]]
    brands: Sequence[str] | None = None


def _parts(app: App, f: QueueFilter, where: list[ColumnElement[bool]]) -> list[_Part]:
    """The filter as disjoint parts. "mine" is an OR — assigned to me, or unassigned in one of
    my brands — that no single index range serves (every open case was read to count and
    page it: bench/README.md, "mine" read as two parts); its two sides are disjoint (an
    assignee, or none), each read from its own range of ix_cases_assignee (assignee, brand,
    status, due_at), counted apart and added, paged apart and merged."""
    if not f.mine:
        return [_Part(where)]
    agent = app.config.agent(f.mine)
    theirs = list(agent.brands) if agent else []
    parts = [_Part([*where, col(Case.assignee) == f.mine.lower()])]
    if theirs:
        parts.append(_Part([*where, col(Case.assignee).is_(None), col(Case.brand).in_(theirs)], theirs))
    return parts


def _order(sort: str, c: Any) -> tuple[Any, ...]:
    """The ORDER BY of `sort` over the columns `c` (the cases table's, or a subquery's)."""
    if sort == "due":
        return (c.due_at.is_(None), c.due_at, c.id)
    if sort == "received":
        return (c.received_at.desc(), c.id.desc())
    return (c.id.desc(),)


# What a queue row shows: a page reads these columns only (not the extracted data, the
# SLA bookkeeping...). mailbot.cases.search may select them too.
QUEUE_COLUMNS = (col(Case.id), col(Case.ref), col(Case.brand), col(Case.status), col(Case.priority),
                 col(Case.category), col(Case.subject), col(Case.customer_name), col(Case.customer_email),
                 col(Case.assignee), col(Case.received_at), col(Case.due_at))
_CASES = Case.__table__.c  # type: ignore[attr-defined]


def list_cases(session: Session, app: App, f: QueueFilter, *, page: int = 1, per_page: int = 50,
               sort: str = "due") -> QueuePage:
    """One page of the cases `f` selects, soonest deadline first (cases without one last),
    and how many there are in all. Raises BadFilter for a value that means nothing."""
    if sort not in SORTS:
        raise BadFilter(f"unknown sort {sort!r}; valid: {', '.join(SORTS)}")
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise BadFilter(f"page must be at least 1 and per page between 1 and {MAX_PER_PAGE}")
    now = app.now()
    parts = _parts(app, f, _conditions(app, f, now))
    conn = session.connection()  # Core statements: rows of columns, no ORM objects to build
    counts = [select(func.count()).select_from(Case).where(*p.where).scalar_subquery() for p in parts]
    total = conn.execute(select(sum(counts[1:], counts[0]))).scalar_one()
    offset = (page - 1) * per_page
    if sort == "due":
        found = _soonest(session, app, f, parts, offset, per_page)
    elif len(parts) == 1:
        found = conn.execute(select(*QUEUE_COLUMNS).where(*parts[0].where).order_by(*_order(sort, _CASES))
                             .offset(offset).limit(per_page)).all()
    else:  # each part's first offset + per_page in the same order, merged and cut
        arms = [select(*QUEUE_COLUMNS).where(*p.where).order_by(*_order(sort, _CASES)).limit(offset + per_page)
                .subquery() for p in parts]
        merged = union_all(*(select(arm) for arm in arms)).subquery()
        found = conn.execute(select(merged).order_by(*_order(sort, merged.c)).offset(offset).limit(per_page)).all()
    rows = [queue_row(app, c, now) for c in found]
    return QueuePage(rows, int(total), page, per_page, f)


def _soonest(session: Session, app: App, f: QueueFilter, parts: list[_Part], offset: int,
             per_page: int) -> Sequence[Any]:
    """The page of the deadline order without sorting every case the filter selects: for
    each part and (brand, status) the ids of the first `offset + per_page` by deadline, read
    in order from an index ((brand, status, due_at…), or (assignee, brand, status, due_at)
    for "mine") and stopped there, merged and cut in one statement; then the page's rows,
    only their listed columns. (A single ORDER BY over several statuses sorts every open case
    of the brand, reading each whole row: bench/README.md, the queue merged from the index.) Cases
    without a deadline come last."""
    known = [b.key for b in app.config.brands]
    brands = [f.brand] if f.brand else list(f.brands) if f.brands is not None else known
    if f.brand and f.brands is not None and f.brand not in f.brands:
        brands = []
    enough = offset + per_page
    due, ident = col(Case.due_at), col(Case.id)
    arms = []
    for part in parts:
        pairs = [(b, st) for b in brands if b in known and (part.brands is None or b in part.brands)
                 for st in statuses(f.status)]
        if not pairs:
            continue
        arms += [select(ident, due).where(*part.where, col(Case.brand) == b, col(Case.status) == st,
                                          due.is_not(None)).order_by(due, ident).limit(enough).subquery()
                 for b, st in pairs]
        arms.append(select(ident, due).where(*part.where, due.is_(None)).order_by(ident).limit(enough).subquery())
    if not arms:
        return []
    merged = union_all(*(select(arm.c.id, arm.c.due_at) for arm in arms)).subquery()
    conn = session.connection()
    ids = list(conn.execute(select(merged.c.id).order_by(*_order("due", merged.c)).offset(offset).limit(per_page))
               .scalars())
    if not ids:
        return []
    found = {r.id: r for r in conn.execute(select(*QUEUE_COLUMNS).where(ident.in_(ids)))}
    return [found[i] for i in ids if i in found]


class _Listed(Protocol):
    """A case, or a row of QUEUE_COLUMNS."""

    id: int | None
    ref: str
    brand: str
    status: str
    priority: str
    category: str | None
    subject: str
    customer_name: str
    customer_email: str
    assignee: str | None
    received_at: datetime
    due_at: datetime | None


def queue_row(app: App, case: _Listed, now: datetime) -> QueueRow:
    """The queue's view of one case (a Case, or a row of QUEUE_COLUMNS)."""
    due_local = app.calendar(case.brand).local(case.due_at) if case.due_at else None
    late = now - case.due_at if case.due_at and case.status in OPEN_STATUSES and now > case.due_at else None
    return QueueRow(case.id or 0, case.ref, case.brand, case.status, case.priority, case.category, case.subject,
                    case.customer_name, case.customer_email, case.assignee, case.received_at, case.due_at,
                    due_local, late)
