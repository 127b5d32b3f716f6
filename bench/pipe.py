#!/usr/bin/env python3
"""`mailbot ingest` as an MTA's pipe transport runs it: one process per mail.

    python bench/pipe.py [--n 60] [--rounds 3] [--json]

Three kinds of process, started one after another as a pipe transport starts them
(mail on standard input, `-r support@… -f sender`), in `--rounds` alternating rounds
of n / rounds mails each (the machine may be shared: alternating spreads its moods
over all three):

- daemon: `mailbot ingest` while `mailbot run` is up: the thin client hands the mail
  to the daemon over its local LMTP socket (mailbot.pipe) and prints its answer;
- in process: `mailbot ingest` with no daemon (`[pipe] socket = ""`): imports,
  config, database and the mail's analysis in the process itself;
- baseline: `python -c "import sqlalchemy, sqlmodel"`, what importing the database
  layer alone costs a process.

Prints, per kind, the wall time and the CPU time (user + system) of each process in
ms (median and mean), the daemon's own CPU per mail handed to it, and the ratios to
the baseline. Every mail must come back `case_opened` (exit 0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, bench_app, bench_config, cpu_seconds, machine, scratch_dir
from gen_mails import generate_bytes
from smtp import start_daemon, stop

from mailbot.pipe import settings
from tests.procs import free_port, to_toml, wait_until

RCPT = "support@kalra-plus.com"
SENDER = "bench-sender@example.org"


def mailbot_command() -> list[str]:
    """The console script, as the MTA runs it (`python -m mailbot.cli` if there is none)."""
    script = Path(sys.executable).parent / "mailbot"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mailbot.cli"]


def timed(cmd: list[str], stdin: bytes) -> tuple[float, float, subprocess.CompletedProcess[bytes]]:
    """(wall s, CPU s of the child: user + system, the completed process)."""
    before = os.times()
    t0 = time.perf_counter()
    done = subprocess.run(cmd, input=stdin, capture_output=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t0
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system), done


def check(done: subprocess.CompletedProcess[bytes], kind: str) -> None:
    if done.returncode != 0 or (kind != "baseline" and not done.stdout.startswith(b"case_opened")):
        raise SystemExit(f"{kind}: exit {done.returncode}: {done.stdout[:200]!r} {done.stderr[-500:]!r}")


def in_process_config(workdir: Path) -> Path:
    bench_app(None, str(workdir)).close()  # migrated before the clock starts, as `mailbot run` would have
    data = bench_config(None, str(workdir), limits={"ack_limit": 100_000, "first_contact_acks": 100_000})
    data["pipe"] = {"socket": ""}
    cfg = workdir / "config.toml"
    cfg.write_text(to_toml(data))
    return cfg


def summary(walls: list[float], cpus: list[float]) -> dict[str, float]:
    ms = 1000.0
    return {"wall_ms_median": round(statistics.median(walls) * ms, 1), "wall_ms_mean": round(statistics.mean(walls) * ms, 1),
            "cpu_ms_median": round(statistics.median(cpus) * ms, 1), "cpu_ms_mean": round(statistics.mean(cpus) * ms, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="mails per kind of process")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    raws = generate_bytes(2 * args.n)
    daemon_dir, inproc_dir = Path(scratch_dir("mailbot-bench-pipe-d-")), Path(scratch_dir("mailbot-bench-pipe-i-"))
    proc, log = start_daemon(f"sqlite:///{daemon_dir}/bench.db", daemon_dir, free_port())
    daemon_cfg = daemon_dir / "config.toml"
    sock = settings(str(daemon_cfg)).socket  # type: ignore[union-attr]
    inproc_cfg = in_process_config(inproc_dir)
    mailbot = mailbot_command()
    commands = {
        "daemon": mailbot + ["--config", str(daemon_cfg), "ingest", "-r", RCPT, "-f", SENDER],
        "in_process": mailbot + ["--config", str(inproc_cfg), "ingest", "-r", RCPT, "-f", SENDER],
        "baseline": [sys.executable, "-c", "import sqlalchemy, sqlmodel"],
    }
    walls: dict[str, list[float]] = {k: [] for k in commands}
    cpus: dict[str, list[float]] = {k: [] for k in commands}
    daemon_cpu = 0.0
    try:
        wait_until(lambda: os.path.exists(sock), what="the daemon's pipe socket")
        per_round = max(1, args.n // args.rounds)
        mails = iter(raws)
        for _ in range(args.rounds):
            for kind, cmd in commands.items():
                start_cpu = cpu_seconds(proc.pid) if kind == "daemon" else 0.0
                for _ in range(per_round):
                    wall, cpu, done = timed(cmd, next(mails) if kind != "baseline" else b"")
                    check(done, kind)
                    walls[kind].append(wall)
                    cpus[kind].append(cpu)
                if kind == "daemon":
                    daemon_cpu += cpu_seconds(proc.pid) - start_cpu
    finally:
        stop(proc)
    n = len(walls["daemon"])
    result: dict[str, object] = {"n": n, "rounds": args.rounds, "command": " ".join(Path(c).name for c in mailbot)}
    for kind in commands:
        result[kind] = summary(walls[kind], cpus[kind])
    result["daemon"]["daemon_cpu_ms_per_mail"] = round(daemon_cpu / n * 1000, 1)  # type: ignore[index]
    base, thin, inproc = result["baseline"], result["daemon"], result["in_process"]
    result["ratio_wall_daemon_to_baseline"] = round(thin["wall_ms_median"] / base["wall_ms_median"], 3)  # type: ignore[index]
    result["ratio_cpu_daemon_to_baseline"] = round(thin["cpu_ms_median"] / base["cpu_ms_median"], 3)  # type: ignore[index]
    result["ratio_wall_in_process_to_baseline"] = round(inproc["wall_ms_median"] / base["wall_ms_median"], 3)  # type: ignore[index]
    if args.json:
        print(json.dumps(result))
        return
    print(f"{n} mails per kind, {args.rounds} alternating rounds ({machine()})")
    for kind, label in (("daemon", "mailbot ingest, daemon running (thin pipe)"),
                        ("in_process", "mailbot ingest, no daemon (in process)"),
                        ("baseline", 'python -c "import sqlalchemy, sqlmodel"')):
        s = result[kind]
        print(f"  {label:<46} wall {s['wall_ms_median']:>7} ms (mean {s['wall_ms_mean']}), "  # type: ignore[index]
              f"CPU {s['cpu_ms_median']:>6} ms (mean {s['cpu_ms_mean']})")  # type: ignore[index]
    print(f"  the daemon's own CPU per mail handed over: {thin['daemon_cpu_ms_per_mail']} ms")  # type: ignore[index]
    print(f"  thin pipe / baseline: wall {result['ratio_wall_daemon_to_baseline']}, "
          f"CPU {result['ratio_cpu_daemon_to_baseline']}; in process / baseline: wall "
          f"{result['ratio_wall_in_process_to_baseline']}")


if __name__ == "__main__":
    main()
