"""`mailbot stats` and `mailbot register export --csv` (the complaint register)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import datetime
from statistics import median
from typing import IO, Any

from sqlmodel import col, select

from mailbot import db
from mailbot.app import App
from mailbot.exitcodes import EX_OK
from mailbot.models import Case

REGISTER_COLUMNS = ("reference", "brand", "channel", "received_at", "acknowledged_at", "answered_at",
                    "closed_at", "status", "category", "priority", "tier", "due_at", "outcome", "deadline_met")


def _hours(a: datetime | None, b: datetime | None) -> float | None:
    return (b - a).total_seconds() / 3600 if a and b else None


def deadline_met(case: Case) -> bool | None:
    if case.answered_at is None or case.due_at is None:
        return None
    return case.answered_at <= case.due_at


def _group_stats(cases: list[Case]) -> dict[str, Any]:
    ack = [h for c in cases if (h := _hours(c.received_at, c.acknowledged_at)) is not None]
    ans = [h for c in cases if (h := _hours(c.received_at, c.answered_at)) is not None]
    met = [m for c in cases if (m := deadline_met(c)) is not None]
    return {
        "count": len(cases),
        "median_hours_to_ack": round(median(ack), 2) if ack else None,
        "median_hours_to_answer": round(median(ans), 2) if ans else None,
        "answered": len(met),
        "answered_within_deadline": round(sum(met) / len(met), 4) if met else None,
    }


def compute_stats(app: App) -> dict[str, Any]:
    with db.read_scope(app.engine) as s:
        cases = list(s.exec(select(Case)).all())
    out: dict[str, Any] = {"total": _group_stats(cases), "by": {}}
    for dim in ("brand", "category", "status", "tier"):
        groups: dict[str, list[Case]] = defaultdict(list)
        for c in cases:
            groups[str(getattr(c, dim) or "-")].append(c)
        out["by"][dim] = {k: _group_stats(v) for k, v in sorted(groups.items())}
    return out


def print_stats(app: App, as_json: bool) -> int:
    stats = compute_stats(app)
    if as_json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return EX_OK
    t = stats["total"]
    print(f"{t['count']} cases; answered {t['answered']}; within deadline: {_pct(t['answered_within_deadline'])}")
    for dim, groups in stats["by"].items():
        print(f"\nby {dim}:")
        for key, g in groups.items():
            print(f"  {key:<20} {g['count']:>6} cases  ack median {g['median_hours_to_ack'] or '-':>7} h  "
                  f"answer median {g['median_hours_to_answer'] or '-':>7} h  on time {_pct(g['answered_within_deadline'])}")
    return EX_OK


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f} %"


def export_register(app: App, out: IO[str]) -> None:
    """One line per complaint, what a regulator asks for; kept after retention purges."""
    w = csv.writer(out)
    w.writerow(REGISTER_COLUMNS)
    with db.read_scope(app.engine) as s:
        for c in s.exec(select(Case).order_by(col(Case.id))).all():
            met = deadline_met(c)
            w.writerow([c.ref, c.brand, c.channel, _iso(c.received_at), _iso(c.acknowledged_at),
                        _iso(c.answered_at), _iso(c.closed_at), c.status, c.category or "", c.priority,
                        c.tier, _iso(c.due_at), c.outcome or "", "" if met is None else ("yes" if met else "no")])


def _iso(dt: datetime | None) -> str:
    return dt.isoformat() if dt else ""
