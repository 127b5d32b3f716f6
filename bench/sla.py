#!/usr/bin/env python3
"""SLA sweep over many open cases against a bare indexed count of the due ones.

    python bench/sla.py [--cases 100000] [--due 300] [--db sqlite|pg|URL] [--json]

Fills a fresh database with `--cases` open cases (SQLAlchemy core bulk insert):
received over the last 60 days, resolution deadlines from the brand's tiers,
SLA points already past marked as done (`sla_marks`), so `next_sla_at` holds
each case's next pending point; `--due` cases (default 300) have a point that
came due in the last minutes. Then, with the app's clock fixed:

- first sweep: `mailbot.cases.lifecycle.sla_sweep(app)` fires what is due (reminder
  and escalation mails rendered and queued, points marked, cases rescheduled);
- second sweep: nothing is due, the work a sweep does on most runs;
- baseline: `SELECT count(*) FROM cases WHERE next_sla_at <= :now` (indexed).

Prints the seconds of each and the ratio second sweep / baseline.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import time
from datetime import UTC, datetime, timedelta

from _common import bench_app, database, db_label, machine, scratch_dir
from sqlalchemy import func, insert, select

from mailbot.app import App
from mailbot.cases.lifecycle import sla_sweep
from mailbot.models import Case, Outbox, SlaMark

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CHUNK = 5000


def _points(received: datetime, due: datetime, reminders: list[float]) -> list[tuple[str, datetime]]:
    """Same keys and times as mailbot.cases.sla.sla_points for an acknowledged case."""
    stamp = due.strftime("%Y%m%dT%H%M")
    span = due - received
    pts = [(f"reminder-{round(f * 100)}@{stamp}", received + span * f) for f in reminders]
    pts.append((f"escalation@{stamp}", due))
    return sorted(pts, key=lambda p: p[1])


def populate(app: App, n_cases: int, n_due: int, seed: int = 7) -> dict:
    rng = random.Random(seed)
    brands = [app.config.brand(b.key) for b in app.config.brands]
    due_ids = set(rng.sample(range(n_cases), n_due))
    seqs = {b.key: 0 for b in brands}
    cases, marks = [], []
    stats = {"open": n_cases, "due_now": 0, "scheduled": 0, "overdue_escalated": 0, "marks": 0}
    for i in range(n_cases):
        brand = brands[i % len(brands)]
        seqs[brand.key] += 1
        tiers = brand.sla.tiers
        tier = brand.sla.default_tier if rng.random() < 0.7 else rng.choice(list(tiers))
        # calendar approximation of business days (7/5); good enough for a realistic spread
        span = timedelta(days=tiers[tier] * 7 / 5, hours=rng.randint(0, 23))
        received = NOW - timedelta(seconds=rng.randint(120, 60 * 86400))
        due = received + span
        pts = _points(received, due, list(brand.sla.reminders))
        past = [p for p in pts if p[1] <= NOW]
        pending = [p for p in pts if p[1] > NOW]
        if i in due_ids:
            # the latest past point came due a few minutes ago and was not handled yet
            if not past:
                received = NOW - span - timedelta(minutes=rng.randint(1, 30))
                due = received + span
                pts = _points(received, due, list(brand.sla.reminders))
                past, pending = pts, []
            fresh = past[-1]
            past, pending = past[:-1], [(fresh[0], min(fresh[1], NOW - timedelta(minutes=rng.randint(1, 30))))]
            stats["due_now"] += 1
        marks.extend({"case_id": i + 1, "point": key, "at": at} for key, at in past)
        next_sla = min(p[1] for p in pending) if pending else None
        if next_sla is None:
            stats["overdue_escalated"] += 1
        elif next_sla > NOW:
            stats["scheduled"] += 1
        status = rng.choice(["acknowledged", "acknowledged", "in_progress", "waiting_customer"])
        cases.append({
            "id": i + 1, "ref": f"{brand.prefix}-2026-{seqs[brand.key]:06d}", "brand": brand.key,
            "year": 2026, "seq": seqs[brand.key], "status": status, "channel": "email",
            "category": brand.default_category, "priority": "normal", "tier": tier, "language": "fr",
            "subject": f"Réclamation {i}", "customer_email": f"client{i}@example.org",
            "customer_name": f"Client {i}", "reply_token": secrets.token_hex(12), "assignee": None,
            "linked_case_id": None, "extracted": {}, "received_at": received, "created_at": received,
            "ack_due_at": received + timedelta(days=1), "due_at": due,
            "acknowledged_at": received + timedelta(hours=rng.randint(1, 20)), "answered_at": None,
            "closed_at": None, "outcome": None, "auto_mail_count": 1, "extended_days": 0,
            "next_sla_at": next_sla, "purged_at": None,
        })
    with app.engine.begin() as conn:
        for i in range(0, len(cases), CHUNK):
            conn.execute(insert(Case.__table__), cases[i:i + CHUNK])
        for i in range(0, len(marks), CHUNK):
            conn.execute(insert(SlaMark.__table__), marks[i:i + CHUNK])
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('cases', 'id'), (SELECT max(id) FROM cases))")
            conn.exec_driver_sql("ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE")
    stats["marks"] = len(marks)
    return stats


def baseline(app: App, now: datetime, repeat: int = 5) -> tuple[float, int]:
    stmt = select(func.count()).select_from(Case.__table__).where(Case.__table__.c.next_sla_at <= now)
    best, count = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        with app.engine.connect() as conn:
            count = conn.execute(stmt).scalar_one()
        best = min(best, time.perf_counter() - t0)
    return best, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--due", type=int, default=300, help="cases with a point due now (first sweep)")
    ap.add_argument("--db", default="sqlite", help="sqlite (default), pg (throwaway schema) or a URL")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    workdir = scratch_dir(prefix="mailbot-bench-sla-")
    with database(args.db, workdir) as url:
        app = bench_app(url, workdir)
        app.clock = lambda: NOW
        t0 = time.perf_counter()
        stats = populate(app, args.cases, args.due)
        fill_s = time.perf_counter() - t0
        base_s, due_count = baseline(app, NOW)
        t0 = time.perf_counter()
        report1 = sla_sweep(app)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report2 = sla_sweep(app)
        second_s = time.perf_counter() - t0
        base2_s, left = baseline(app, NOW)
        with app.engine.connect() as conn:
            queued = conn.execute(select(func.count()).select_from(Outbox.__table__)).scalar_one()
        app.close()
    if left:
        raise SystemExit(f"{left} cases still due after two sweeps")
    result = {
        "cases": args.cases, "db": db_label(args.db), "due": due_count, "mails_queued": queued,
        "first_sweep_s": round(first_s, 4), "second_sweep_s": round(second_s, 4),
        "baseline_s": round(base_s, 5), "ratio": round(second_s / base_s, 1),
        "first_ratio": round(first_s / base_s, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.cases} open cases, {result['db']} ({machine()}); filled in {fill_s:.1f} s: {stats}")
    print(f"  baseline SELECT count(*) WHERE next_sla_at <= now (indexed): {base_s * 1000:8.2f} ms "
          f"({due_count} due)")
    print(f"  sla_sweep, first run ({report1}; {queued} mails queued): {first_s * 1000:8.1f} ms "
          f"({first_s / max(due_count, 1) * 1000:.1f} ms per due case)")
    print(f"  sla_sweep, second run ({report2}):                {second_s * 1000:8.2f} ms")
    print(f"  ratio second sweep / baseline: {result['ratio']}   (first sweep / baseline: {result['first_ratio']})")


if __name__ == "__main__":
    main()
