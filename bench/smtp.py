#!/usr/bin/env python3
"""SMTP listener throughput and DATA→250 latency against a trivial aiosmtpd sink.

    python bench/smtp.py [--n 2000] [--concurrency 20] [--db sqlite|pg|URL] [--json]

Starts `mailbot run` as a real subprocess (config written to a temp dir, a free
loopback port, a fresh database — SQLite by default, `--db pg` a throwaway
PostgreSQL schema), then C concurrent senders (threads, one smtplib connection
each, reused for their share of the mails) send N generated complaint mails
(bench/gen_mails.generate_bytes). Measured: accepted mails/s (wall time from
the first connection to the last 250) and p50/p99 of the time from the end of
DATA to the 250 (smtplib's `data()` call; every 250 means ingest committed).

Baseline, same run, same senders: an aiosmtpd Controller in its own process
whose handle_DATA answers 250 at once. The daemon and the sink are stopped by
their PIDs; the database is checked to hold N inbound rows.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import ROOT, bench_app, bench_config, database, db_label, machine, scratch_dir
from gen_mails import generate_bytes
from sqlalchemy import func, select

from mailbot.models import Inbound
from tests.procs import free_port, to_toml

RCPT = "support@kalra-plus.com"
MAIL_FROM = "bench-sender@example.org"


def wait_listening(proc: subprocess.Popen, port: int, what: str, log: Path | None = None,
                   timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise SystemExit(f"{what} exited with {proc.returncode} at start\n{tail}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    stop(proc)
    raise SystemExit(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM by PID (the daemon drains in-flight work), SIGKILL if it does not exit."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def start_daemon(url: str, workdir: Path, port: int) -> tuple[subprocess.Popen, Path]:
    bench_app(url, str(workdir)).close()  # migrate before the clock starts (also PostgreSQL)
    data = bench_config(url, str(workdir), limits={"ack_limit": 100_000, "first_contact_acks": 100_000})
    data["smtp"] = {**data.get("smtp", {}), "host": "127.0.0.1", "port": port}
    data.pop("imap", None)
    cfg = workdir / "config.toml"
    cfg.write_text(to_toml(data))
    log = workdir / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mailbot.cli", "--config", str(cfg), "run"],
                                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    wait_listening(proc, port, "mailbot run", log)
    return proc, log


def start_sink(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, "--sink", str(port)], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    wait_listening(proc, port, "aiosmtpd sink")
    return proc


def run_sink(port: int) -> None:
    """The baseline server: accept everything, answer 250 at once (runs in its own process)."""
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
            return "250 2.0.0 OK"

    ctl = Controller(Sink(), hostname="127.0.0.1", port=port, data_size_limit=26_214_400,
                     decode_data=False)
    ctl.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    ctl.stop()


def send_all(port: int, raws: list[bytes], concurrency: int) -> dict:
    """C sender threads, each on its own connection; returns rate and DATA→250 latencies."""
    shares = [raws[i::concurrency] for i in range(concurrency)]
    lat: list[list[float]] = [[] for _ in shares]
    errors: list[str] = []
    start = threading.Barrier(concurrency + 1)

    def sender(k: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=300) as s:
                s.ehlo("bench.example.org")
                start.wait()
                for raw in shares[k]:
                    code, resp = s.mail(MAIL_FROM)
                    if code != 250:
                        errors.append(f"MAIL {code} {resp!r}")
                        s.rset()
                        continue
                    code, resp = s.rcpt(RCPT)
                    if code != 250:
                        errors.append(f"RCPT {code} {resp!r}")
                        s.rset()
                        continue
                    t0 = time.perf_counter()
                    code, resp = s.data(raw)
                    dt = time.perf_counter() - t0
                    if code == 250:
                        lat[k].append(dt)
                    else:
                        errors.append(f"DATA {code} {resp[:120]!r}")
        except Exception as exc:  # report, do not hang the barrier
            errors.append(f"{type(exc).__name__}: {exc}")
            start.abort()

    threads = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    all_lat = sorted(x for part in lat for x in part)
    ok = len(all_lat)
    return {
        "accepted": ok, "errors": len(errors), "error_examples": errors[:3], "seconds": wall,
        "per_s": ok / wall if wall else 0.0,
        "p50_ms": statistics.median(all_lat) * 1000 if all_lat else None,
        "p99_ms": all_lat[min(ok - 1, int(ok * 0.99))] * 1000 if all_lat else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--db", default="sqlite", help="sqlite (default), pg (throwaway schema) or a URL")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sink", type=int, help=argparse.SUPPRESS)  # internal: run the baseline sink
    args = ap.parse_args()
    if args.sink:
        run_sink(args.sink)
        return

    raws = generate_bytes(args.n)
    workdir = Path(scratch_dir(prefix="mailbot-bench-smtp-"))

    sink = start_sink(free_port())
    try:
        base = send_all(int(sink.args[-1]), raws, args.concurrency)
    finally:
        stop(sink)

    with database(args.db, str(workdir)) as url:
        port = free_port()
        daemon, log = start_daemon(url, workdir, port)
        try:
            mb = send_all(port, raws, args.concurrency)
        finally:
            stop(daemon)
        app = bench_app(url, str(workdir))
        with app.engine.connect() as conn:
            recorded = conn.execute(select(func.count()).select_from(Inbound.__table__)).scalar_one()
        app.close()
    if base["accepted"] != args.n or mb["accepted"] != args.n or recorded != args.n:
        raise SystemExit(f"incomplete: sink accepted {base['accepted']}, mailbot accepted {mb['accepted']} "
                         f"(errors {mb['error_examples']}), recorded {recorded}; daemon log {log}")
    result = {
        "n": args.n, "concurrency": args.concurrency, "db": db_label(args.db),
        "mails_per_s": round(mb["per_s"], 1), "p50_ms": round(mb["p50_ms"], 1), "p99_ms": round(mb["p99_ms"], 1),
        "baseline_per_s": round(base["per_s"], 1), "baseline_p50_ms": round(base["p50_ms"], 2),
        "baseline_p99_ms": round(base["p99_ms"], 2), "ratio": round(mb["per_s"] / base["per_s"], 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.n} mails, {args.concurrency} concurrent senders, {result['db']} ({machine()})")
    print(f"  baseline aiosmtpd sink (250 at once): {result['baseline_per_s']:>8} mails/s  "
          f"DATA→250 p50 {result['baseline_p50_ms']} ms, p99 {result['baseline_p99_ms']} ms")
    print(f"  mailbot run (250 after commit):       {result['mails_per_s']:>8} mails/s  "
          f"DATA→250 p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms  ({recorded} recorded)")
    print(f"  ratio mailbot/baseline: {result['ratio']}")


if __name__ == "__main__":
    main()
