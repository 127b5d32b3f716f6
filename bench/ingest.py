#!/usr/bin/env python3
"""Ingest throughput against the least work any ingest must do, on the same mails.

    python bench/ingest.py [--n 2000] [--db URL] [--instances 1|3] [--json]

Baseline: `email.message_from_bytes(policy=default)`, `get_body()` and decoding
every attachment. mailbot: stored, parsed, classified, routed, extracted,
acknowledgement and agent notification queued, committed — one transaction
per mail (as SMTP does: `--mode single`) or per 100 mails (as IMAP batches
do: `--mode batch`). With `--instances 3`, three processes ingest disjoint
thirds concurrently into the same database.
"""

from __future__ import annotations

import argparse
import email
import json
import multiprocessing as mp
import time
from email import policy

from _common import bench_app
from gen_mails import generate_bytes

from mailbot.ingest import Received, ingest, ingest_batch


def baseline(raws: list[bytes]) -> float:
    t0 = time.perf_counter()
    for raw in raws:
        msg = email.message_from_bytes(raw, policy=policy.default)
        body = msg.get_body(preferencelist=("plain", "html"))
        if body is not None:
            body.get_content()
        for att in msg.iter_attachments():
            att.get_content()
    return time.perf_counter() - t0


def run_mailbot(raws: list[bytes], db_url: str | None, mode: str, workdir: str | None = None) -> float:
    app = bench_app(db_url, workdir)
    t0 = time.perf_counter()
    if mode == "single":
        for raw in raws:
            ingest(app, raw, "bench")
    else:
        for i in range(0, len(raws), 100):
            ingest_batch(app, [Received(r, "bench") for r in raws[i:i + 100]])
    elapsed = time.perf_counter() - t0
    app.close()
    return elapsed


def _worker(args: tuple[list[bytes], str, str, str]) -> float:
    raws, db_url, mode, workdir = args
    return run_mailbot(raws, db_url, mode, workdir)


def run_instances(raws: list[bytes], db_url: str | None, mode: str, n: int) -> float:
    import tempfile

    workdir = tempfile.mkdtemp(prefix="mailbot-bench-")
    url = db_url or f"sqlite:///{workdir}/bench.db"
    bench_app(url, workdir).close()  # migrate once
    parts = [raws[i::n] for i in range(n)]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(n) as pool:
        pool.map(_worker, [(p, url, mode, workdir) for p in parts])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--mode", choices=["single", "batch"], default="single")
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    raws = generate_bytes(args.n)
    base_s = baseline(raws)
    if args.instances > 1:
        mb_s = run_instances(raws, args.db, args.mode, args.instances)
    else:
        mb_s = run_mailbot(raws, args.db, args.mode)
    result = {
        "n": args.n, "mode": args.mode, "instances": args.instances,
        "db": (args.db or "sqlite").split(":")[0],
        "mails_per_s": round(args.n / mb_s, 1), "baseline_per_s": round(args.n / base_s, 1),
        "ratio": round(base_s / mb_s, 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.n} mails, {result['db']}, mode={args.mode}, instances={args.instances}")
    print(f"  baseline (stdlib parse + body + attachments): {result['baseline_per_s']:>8} mails/s")
    print(f"  mailbot ingest (stored, parsed, classified, extracted, committed): "
          f"{result['mails_per_s']:>8} mails/s")
    print(f"  ratio mailbot/baseline: {result['ratio']}")


if __name__ == "__main__":
    main()
