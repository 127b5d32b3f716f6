#!/usr/bin/env python3
"""Ingest throughput against the least work any ingest must do, on the same mails.

    python bench/ingest.py [--n 2000] [--db sqlite|pg|URL] [--mode single|batch]
                           [--instances 1|3] [--profile FILE] [--json]

Baseline: `email.message_from_bytes(policy=default)`, `get_body()` and decoding
every attachment. mailbot: stored, parsed, classified, routed, extracted,
acknowledgement and agent notification queued, committed — one transaction
per mail (as SMTP does: `--mode single`) or per 100 mails (as IMAP batches
do: `--mode batch`). With `--instances 3`, three processes ingest disjoint
thirds concurrently into the same database. `--db pg` runs on a throwaway
schema of the PostgreSQL `test` database at 127.0.0.1:5432, dropped afterwards.
`--profile FILE` (single instance) writes a cProfile of the mailbot run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time

from _common import bench_app, database, db_label, scratch_dir, start_like_the_daemon, stdlib_handle
from gen_mails import generate_bytes

from mailbot.ingest.pipeline import Received, ingest, ingest_stream


def ingest_all(app, raws: list[bytes], mode: str) -> None:  # type: ignore[no-untyped-def]
    """One transaction per mail (`single`, as SMTP) or per 100 mails (`batch`, as IMAP)."""
    if mode == "single":
        for raw in raws:
            ingest(app, raw, "bench")
        return
    batches = ([Received(r, "bench") for r in raws[i:i + 100]] for i in range(0, len(raws), 100))
    for _ in ingest_stream(app, batches):  # pipelined, as the IMAP poller and import do
        pass


def baseline(raws: list[bytes]) -> float:
    t0 = time.perf_counter()
    for raw in raws:
        stdlib_handle(raw)
    return time.perf_counter() - t0


def run_mailbot(raws: list[bytes], db_url: str | None, mode: str, workdir: str | None = None,
                profile: str | None = None) -> float:
    app = bench_app(db_url, workdir)
    start_like_the_daemon(app)  # outside the clock
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    ingest_all(app, raws, mode)
    elapsed = time.perf_counter() - t0
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)
    app.close()
    return elapsed


def _worker(raws: list[bytes], url: str, mode: str, workdir: str, barrier, out) -> None:
    """One instance: open the app, wait for the others, ingest its share, report (start, end)."""
    app = bench_app(url, workdir)
    start_like_the_daemon(app)  # outside the clock
    barrier.wait()
    t0 = time.time()
    ingest_all(app, raws, mode)
    out.put((t0, time.time()))
    app.close()


def run_instances(raws: list[bytes], url: str, mode: str, n: int, workdir: str) -> float:
    """n processes ingest disjoint shares concurrently; wall time from the common start to the last end
    (process start-up and imports are excluded, as they are for the single-instance run)."""
    bench_app(url, workdir).close()  # migrate once
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(raws[i::n], url, mode, workdir, barrier, out)) for i in range(n)]
    for p in procs:
        p.start()
    spans = [out.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise SystemExit(f"instance pid {p.pid} exited with {p.exitcode}")
    return max(e for _, e in spans) - min(s for s, _ in spans)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--db", default="sqlite",
                    help="sqlite (fresh file, default), pg (throwaway schema on 127.0.0.1:5432) or a URL")
    ap.add_argument("--mode", choices=["single", "batch"], default="single")
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--profile", metavar="FILE", help="write a cProfile of the mailbot run (1 instance)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    raws = generate_bytes(args.n)
    base_s = baseline(raws)
    workdir = scratch_dir(prefix="mailbot-bench-")
    with database(args.db, workdir) as url:
        if args.instances > 1:
            mb_s = run_instances(raws, url, args.mode, args.instances, workdir)
        else:
            mb_s = run_mailbot(raws, url, args.mode, workdir, args.profile)
    result = {
        "n": args.n, "mode": args.mode, "instances": args.instances,
        "db": db_label(args.db),
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
