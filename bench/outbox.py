#!/usr/bin/env python3
"""The outbox dispatcher against the bare transport it sends through.

    python bench/outbox.py [--n 1000] [--db sqlite|pg|URL] [--json]

`--n` complaints are ingested first (outside the clock), which queues 2 × n mails:
each customer's acknowledgement and the agents' notification. Then, timed:

- `mailbot.cases.deliveries.dispatch(app)` sends every due row through the Maildir
  transport: claim, render (template, MIME, signature), send, record the outcome
  and the case's `mail_sent` event;
- baseline, same run: the same rendered mails written by the same transport into
  a fresh Maildir, with no database (each file written and fsynced, as the
  dispatcher's transport does).

Prints mails/s and CPU ms per mail of both, and the ratio dispatch / baseline.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import bench_app, database, db_label, machine, scratch_dir, start_like_the_daemon
from gen_mails import generate_bytes
from sqlalchemy import func, select

from mailbot.cases.deliveries import dispatch
from mailbot.ingest.analysis import Received
from mailbot.ingest.pipeline import ingest_batch
from mailbot.models import Outbox
from mailbot.outgoing.transports import MaildirTransport


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="complaints ingested (2 × n mails to send)")
    ap.add_argument("--db", default="sqlite", help="sqlite (default), pg or a URL")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    workdir = Path(scratch_dir(prefix="mailbot-bench-outbox-"))
    raws = generate_bytes(args.n)
    with database(args.db, str(workdir)) as url:
        app = bench_app(url, str(workdir), limits={"ack_limit": 100_000, "first_contact_acks": 100_000})
        start_like_the_daemon(app)
        for i in range(0, args.n, 100):
            ingest_batch(app, [Received(raw, "bench") for raw in raws[i:i + 100]])
        with app.engine.connect() as conn:
            queued = conn.execute(select(func.count()).select_from(Outbox.__table__)).scalar_one()
        t0, c0 = time.perf_counter(), time.process_time()
        report = dispatch(app)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        with app.engine.connect() as conn:
            sent = conn.execute(select(Outbox.from_addr, Outbox.to_addr, Outbox.raw)
                                .where(Outbox.status == "sent")).all()
        app.close()
    if report.sent != queued or len(sent) != queued:
        raise SystemExit(f"incomplete: {queued} queued, {report}, {len(sent)} marked sent")

    bare = MaildirTransport(workdir / "bare")
    t0, c0 = time.perf_counter(), time.process_time()
    for from_addr, to_addr, raw in sent:
        bare.send(from_addr, to_addr, raw)
    base_wall, base_cpu = time.perf_counter() - t0, time.process_time() - c0

    result = {"n": args.n, "db": db_label(args.db), "mails": queued,
              "mails_per_s": round(queued / wall, 1), "cpu_ms_per_mail": round(cpu / queued * 1000, 3),
              "baseline_per_s": round(queued / base_wall, 1),
              "baseline_cpu_ms_per_mail": round(base_cpu / queued * 1000, 3),
              "ratio": round(base_wall / wall, 3)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{queued} mails queued by {args.n} complaints, {result['db']} ({machine()})")
    print(f"  mailbot dispatch (claim, render, send, record): {result['mails_per_s']:>8} mails/s, "
          f"CPU {result['cpu_ms_per_mail']} ms a mail")
    print(f"  baseline: the same mails, bare Maildir transport: {result['baseline_per_s']:>8} mails/s, "
          f"CPU {result['baseline_cpu_ms_per_mail']} ms a mail")
    print(f"  ratio dispatch/baseline: {result['ratio']}")


if __name__ == "__main__":
    main()
