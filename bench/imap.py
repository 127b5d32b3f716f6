#!/usr/bin/env python3
"""IMAP drain throughput: mailbot's poller against a bare imapclient drain, same mails, same server.

    python bench/imap.py [--n 10000] [--batch 100] [--json] [--profile FILE] [--timeline]

A private Dovecot (tests/dovecot.py) is filled with N generated complaint
mails (bench/gen_mails.py) in two mailboxes. Baseline: FETCH BODY.PEEK[] in
batches + MOVE to Processed, nothing parsed or stored. mailbot:
`ImapPoller.poll_once()` until the folder is empty, on a fresh SQLite
database — every mail stored, parsed, routed into a case with its
acknowledgement queued, committed, then \\Seen and MOVE. The analysis
workers (mailbot.ingest.analysis, `[ingest] workers`) are started before the clock,
as `mailbot run` starts them at start-up. `--timeline` prints each step of
the drain (fetch, analysis wait, write, move) in ms since it started
(bench/timeline.py; try it with `--n 500`). The CPU per mail is given for the
daemon process, the analysis workers and the whole machine during the drain
(`machine`: every CPU this process may use, so Dovecot and the kernel too; on a
machine where nothing else runs, what it adds to the other two is the server's
side).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import time
from pathlib import Path

from _common import (
    ROOT,
    bench_app,
    cpu_ticks,
    mailbot_cpu_seconds,
    scratch_dir,
    start_like_the_daemon,
)
from gen_mails import generate_bytes
from timeline import recording

from mailbot.channels.imap import ImapPoller, Timings, batched
from mailbot.config import ImapConfig
from tests.dovecot import Dovecot

assert ROOT  # _common put the repository root on sys.path


def baseline(d: Dovecot, user: str, batch: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    with d.client(user, timeout=120) as c:
        if not c.folder_exists("Processed"):
            c.create_folder("Processed")
        c.select_folder("INBOX")
        for part in batched(sorted(c.search("ALL")), batch):
            data = c.fetch(part, [b"BODY.PEEK[]", b"INTERNALDATE"])
            n += sum(1 for v in data.values() if b"BODY[]" in v)
            c.move(part, "Processed")
    return n, time.perf_counter() - t0


def run_mailbot(d: Dovecot, user: str, batch: int, workdir: str, profile: str | None = None,
                timeline: bool = False) -> tuple[int, float, dict[str, float]]:
    pw_file = d.write_password_file(user, Path(workdir) / "imap.pw")
    cfg = ImapConfig(host=d.host, port=d.port, tls=False, username=user, password_file=pw_file,
                     batch_size=batch)
    app = bench_app(workdir=workdir, limits={"ack_limit": 100_000, "first_contact_acks": 100_000})
    poller = ImapPoller(app, cfg, Timings())
    start_like_the_daemon(app)
    prof = cProfile.Profile() if profile else None
    cpu0, busy0 = mailbot_cpu_seconds(), cpu_ticks()[0]
    with recording() if timeline else contextlib.nullcontext() as steps:
        t0 = time.perf_counter()
        n = 0
        if prof:
            prof.enable()
        while handled := poller.poll_once():
            n += handled
        elapsed = time.perf_counter() - t0
    if steps is not None:
        print("\n".join(steps.lines()))
    cpu = {k: v - cpu0[k] for k, v in mailbot_cpu_seconds().items()}
    cpu["machine"] = (cpu_ticks()[0] - busy0) / os.sysconf("SC_CLK_TCK")
    if prof:
        prof.disable()
        prof.dump_stats(profile)
    poller.close()
    app.close()
    return n, elapsed, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=100, help="FETCH batch size (mailbot: batch_size)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the poller's thread into FILE")
    ap.add_argument("--timeline", action="store_true", help="print each step of mailbot's drain")
    args = ap.parse_args()

    raws = generate_bytes(args.n)
    workdir = scratch_dir(prefix="mailbot-bench-imap-")
    with Dovecot() as d:
        base_user, _ = d.new_user("baseline")
        mb_user, _ = d.new_user("mailbot")
        d.append_many(base_user, raws)
        d.append_many(mb_user, raws)
        base_n, base_s = baseline(d, base_user, args.batch)
        mb_n, mb_s, cpu = run_mailbot(d, mb_user, args.batch, workdir, args.profile, args.timeline)
        left = len(d.uids(mb_user))
    if base_n != args.n or mb_n != args.n or left:
        raise SystemExit(f"incomplete drain: baseline {base_n}, mailbot {mb_n}, left in INBOX {left}")
    result = {"n": args.n, "mailbot_per_s": round(args.n / mb_s, 1),
              "baseline_per_s": round(args.n / base_s, 1), "ratio": round(base_s / mb_s, 4),
              "seconds": round(mb_s, 2),
              "cpu_ms_per_mail": {k: round(v / args.n * 1000, 3) for k, v in cpu.items()}}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.n} mails, Dovecot on 127.0.0.1, batch {args.batch}, SQLite")
    print(f"  baseline (FETCH BODY.PEEK[] + MOVE, no parsing): {result['baseline_per_s']:>9} mails/s "
          f"({base_s:.2f} s)")
    print(f"  mailbot poller (ingested into cases, \\Seen + MOVE): {result['mailbot_per_s']:>9} mails/s "
          f"({mb_s:.2f} s)")
    print(f"  ratio mailbot/baseline: {result['ratio']}")
    split = result["cpu_ms_per_mail"]
    print(f"  CPU per mail: daemon process {split['daemon']} ms, analysis workers {split['workers']} ms; "
          f"all CPUs {split['machine']} ms (Dovecot, the kernel and anything else running included)")


if __name__ == "__main__":
    main()
