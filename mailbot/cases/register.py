"""The complaint register and the figures drawn from it (`mailbot register export`, `stats`).

One line per round of each case (the complaint, then each re-examination), with when it
was received, acknowledged and answered, the dates promised, the legal cap, the outcome,
whether mediation was offered, and whether each deadline was met. A round is judged by
what really happened (mailbot.cases.rounds): acknowledged and answered when the mail was
sent or the letter posted; an answer after a deadline that passed, however the date was
moved afterwards, is late. Lines stay after the retention purge (no personal data).

Deadline verdicts: "yes", "no", or "" while the deadline is still ahead and unmet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from statistics import median
from typing import Any

from sqlmodel import Session, col, select

from mailbot.app import App
from mailbot.cases.sla import OPEN_STATUSES
from mailbot.models import Case, Round

COLUMNS = (
    "reference", "round", "round_kind", "brand", "channel", "category", "priority", "tier", "assignee",
    "status", "received_at", "ack_due_at", "acknowledged_at", "ack_via", "ack_met", "promised_at",
    "extended_to", "answered_at", "answer_via", "answer_met", "late_extension", "cap_at", "cap_met",
    "outcome", "mediation_offered",
)


def _verdict(done_at: datetime | None, due: datetime | None, now: datetime, *, late: bool = False) -> str:
    if due is None:
        return ""
    if done_at is not None:
        return "no" if late or done_at > due else "yes"
    return "no" if late or now > due else ""


@dataclass(frozen=True)
class Line:
    """A round with its case: one line of the register."""

    case: Case
    round: Round

    def ack_met(self, now: datetime) -> str:
        return _verdict(self.round.acknowledged_at, self.round.ack_due_at, now)

    def answer_met(self, now: datetime) -> str:
        r = self.round
        return _verdict(r.answered_at, r.due_at, now, late=r.late_since is not None)

    def cap_met(self, now: datetime) -> str:
        return _verdict(self.round.answered_at, self.round.cap_at, now)

    def overdue(self, now: datetime) -> bool:
        """Open, unanswered, and its promised date passed."""
        return (self.case.status in OPEN_STATUSES and self.round.number == self.case.round_number
                and self.round.answered_at is None and now > self.round.due_at)

    def row(self, app: App, now: datetime) -> dict[str, str]:
        c, r = self.case, self.round
        cal = app.calendar(c.brand) if c.brand in {b.key for b in app.config.brands} else None

        def when(dt: datetime | None, date_only: bool = False) -> str:
            if dt is None:
                return ""
            local = cal.local(dt) if cal else dt
            return local.date().isoformat() if date_only else local.isoformat(timespec="seconds")

        return {
            "reference": c.ref, "round": str(r.number), "round_kind": r.kind, "brand": c.brand,
            "channel": c.channel, "category": c.category or "", "priority": c.priority, "tier": c.tier,
            "assignee": c.assignee or "", "status": c.status,
            "received_at": when(r.received_at, r.number == 1 and c.received_date_only),
            "ack_due_at": when(r.ack_due_at), "acknowledged_at": when(r.acknowledged_at, r.ack_via == "letter"),
            "ack_via": r.ack_via or "", "ack_met": self.ack_met(now), "promised_at": when(r.promised_at),
            "extended_to": when(r.due_at) if r.due_at != r.promised_at else "",
            "answered_at": when(r.answered_at, r.answer_via == "letter"), "answer_via": r.answer_via or "",
            "answer_met": self.answer_met(now), "late_extension": "yes" if r.late_since else "",
            "cap_at": when(r.cap_at), "cap_met": self.cap_met(now), "outcome": r.outcome or "",
            "mediation_offered": "yes" if r.mediation_offered else ("no" if r.answered_at else ""),
        }


def lines(session: Session) -> Iterator[Line]:
    """Every round with its case, by case then round."""
    stmt = (select(Case, Round).join(Round, col(Round.case_id) == col(Case.id))
            .order_by(col(Case.id), col(Round.number)))
    for case, rnd in session.exec(stmt):
        yield Line(case, rnd)


def rows(session: Session, app: App) -> list[dict[str, str]]:
    now = app.now()
    return [line.row(app, now) for line in lines(session)]


# -- stats ------------------------------------------------------------------------------

DIMENSIONS = ("brand", "category", "agent", "status", "tier")


def _hours(a: datetime | None, b: datetime | None) -> float | None:
    return (b - a).total_seconds() / 3600 if a and b else None


def group_stats(group: Iterable[Line], now: datetime) -> dict[str, Any]:
    """Figures of a set of rounds. `answered_within_deadline`: the share of rounds answered on
    time among those decided (answered, or unanswered past their date): an overdue open
    case counts against it, not for it."""
    group = list(group)
    ack = [h for ln in group if (h := _hours(ln.round.received_at, ln.round.acknowledged_at)) is not None]
    ans = [h for ln in group if (h := _hours(ln.round.received_at, ln.round.answered_at)) is not None]
    verdicts = [v for ln in group if (v := ln.answer_met(now))]
    cases = {ln.case.id: ln.case for ln in group}
    return {
        "count": len(cases),
        "rounds": len(group),
        "open": sum(c.status in OPEN_STATUSES for c in cases.values()),
        "overdue": sum(ln.overdue(now) for ln in group),
        "answered": sum(ln.round.answered_at is not None for ln in group),
        "answered_on_time": verdicts.count("yes"),
        "answered_within_deadline": round(verdicts.count("yes") / len(verdicts), 4) if verdicts else None,
        "late_extensions": sum(ln.round.late_since is not None for ln in group),
        "median_hours_to_ack": round(median(ack), 2) if ack else None,
        "median_hours_to_answer": round(median(ans), 2) if ans else None,
    }


def _key(line: Line, dim: str) -> str:
    if dim == "agent":
        return line.case.assignee or "(unassigned)"
    return str(getattr(line.case, dim) or "-")


def stats(session: Session, app: App) -> dict[str, Any]:
    now = app.now()
    every = list(lines(session))
    out: dict[str, Any] = {"at": now.isoformat(), "total": group_stats(every, now), "by": {}}
    for dim in DIMENSIONS:
        groups: dict[str, list[Line]] = defaultdict(list)
        for ln in every:
            groups[_key(ln, dim)].append(ln)
        out["by"][dim] = {k: group_stats(v, now) for k, v in sorted(groups.items())}
    return out
