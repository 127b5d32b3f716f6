#!/usr/bin/env python3
"""The daemon's write of analysed mails, against SQLite executing the same statements bare.

    python bench/write.py [--n 1000] [--rounds 3] [--json]

The analysis is done beforehand, in this process and outside the clock (as the
workers do it: facts, deadlines and the masked body included). Then batches of
100 analysed mails are written as the IMAP poller writes them
(`ingest._record_works`: routing, case, messages, attachments, audit trail,
acknowledgement and agent notification queued, commit), on a fresh SQLite
database, `--rounds` times N mails; the figure is the CPU time of the best
round per mail (this process only: nothing else runs in it).

Baseline, same run: every statement one more round of N mails executed —
captured with its bound values as the round ran — replayed with the bare
`sqlite3` module on a copy of the database taken before that round (same
pragmas, same BEGIN IMMEDIATE/COMMIT): what SQLite itself costs. The
difference is mailbot's Python around the statements.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from _common import bench_app, scratch_dir
from gen_mails import generate_bytes
from sqlalchemy import event
from sqlalchemy.engine import Connection

from mailbot import prepared
from mailbot.ingest import analysis
from mailbot.ingest import pipeline as ingest
from mailbot.ingest.analysis import Received

BATCH = 100


def analysed(app: Any, raws: list[bytes]) -> list[ingest._Work]:  # noqa: SLF001 - what the poller writes
    now = app.now()
    items = [Received(raw, "imap:bench", received_at=now) for raw in raws]
    return [ingest._Work(it, analysis.analyse(app.config, it, with_facts=True)) for it in items]  # noqa: SLF001


def write(app: Any, works: list[Any]) -> float:
    """CPU seconds of writing `works` in batches of BATCH."""
    t0 = time.process_time()
    for i in range(0, len(works), BATCH):
        ingest._record_works(app, works[i:i + BATCH])  # noqa: SLF001
    return time.process_time() - t0


class Capture:
    """Every statement the write runs, with its values as bound for sqlite3."""

    def __init__(self, app: Any) -> None:
        self.app, self.log = app, []  # type: ignore[var-annotated]
        self._saved = (prepared.Prepared.scalar, prepared.Prepared.executemany)

    def __enter__(self) -> Capture:
        log, (scalar, many) = self.log, self._saved

        def captured_scalar(stmt: prepared.Prepared, session: Any, params: Any) -> Any:
            conn = session if isinstance(session, Connection) else session.connection()
            plan = stmt._plan(conn.dialect, params)  # noqa: SLF001
            if plan is not None:
                log.append(("one", plan.sql, plan.args(params)))
            return scalar(stmt, session, params)

        def captured_many(stmt: prepared.Prepared, conn: Any, rows: Any) -> None:
            plan = stmt._plan(conn.dialect, rows[0])  # noqa: SLF001
            if plan is not None and not plan.returning and conn.dialect.name == "sqlite":
                log.append(("many", plan.sql, [plan.args(r) for r in rows]))
            return many(stmt, conn, rows)

        prepared.Prepared.scalar, prepared.Prepared.executemany = captured_scalar, captured_many  # type: ignore[method-assign]
        event.listen(self.app.engine, "before_cursor_execute", self._sqlalchemy)
        event.listen(self.app.engine, "commit", self._commit)
        return self

    def _sqlalchemy(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
                    executemany: bool) -> None:
        if statement.startswith("BEGIN"):
            self.log.append(("begin", statement, None))
        else:
            self.log.append(("many" if executemany else "one", statement, parameters))

    def _commit(self, _conn: Any) -> None:
        self.log.append(("commit", None, None))

    def __exit__(self, *exc: object) -> None:
        prepared.Prepared.scalar, prepared.Prepared.executemany = self._saved  # type: ignore[method-assign]
        event.remove(self.app.engine, "before_cursor_execute", self._sqlalchemy)
        event.remove(self.app.engine, "commit", self._commit)


def replay(path: Path, log: list[tuple[str, Any, Any]]) -> float:
    """CPU seconds of executing `log` with the bare sqlite3 module on the database at `path`."""
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
        db.execute(f"PRAGMA {pragma}")
    t0 = time.process_time()
    for kind, sql, args in log:
        if kind == "begin":
            db.execute("BEGIN IMMEDIATE")
        elif kind == "commit":
            db.execute("COMMIT")
        elif kind == "one":
            cursor = db.execute(sql, args or ())
            if "RETURNING" in sql:
                cursor.fetchall()
        else:
            db.executemany(sql, args)
    elapsed = time.process_time() - t0
    db.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    n = args.n
    workdir = Path(scratch_dir(prefix="mailbot-bench-write-"))
    app = bench_app(workdir=str(workdir), limits={"ack_limit": 10_000_000, "first_contact_acks": 10_000_000})
    app.warm_up()  # as `mailbot run` at start-up
    raws = generate_bytes(n * (args.rounds + 1))
    works = analysed(app, raws)
    rounds = [write(app, works[r * n:(r + 1) * n]) / n * 1000 for r in range(args.rounds)]
    app.engine.dispose()  # (WAL checkpointed: the copy below is the whole database)
    shutil.copy(workdir / "bench.db", workdir / "replay.db")
    with Capture(app) as capture:
        write(app, works[args.rounds * n:])
    statements = sum(len(args) if kind == "many" else 1 for kind, _, args in capture.log
                     if kind in ("one", "many"))
    bare = replay(workdir / "replay.db", capture.log) / n * 1000
    app.close()
    result = {"n": n, "write_cpu_ms_per_mail": round(min(rounds), 3), "rounds": [round(r, 3) for r in rounds],
              "sqlite_cpu_ms_per_mail": round(bare, 3), "statements_per_mail": round(statements / n, 2),
              "ratio": round(bare / min(rounds), 3)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{n} analysed mails written in batches of {BATCH} (SQLite, synchronous=FULL), CPU of this process")
    print(f"  mailbot write path:        {result['write_cpu_ms_per_mail']:>7} ms/mail (best of {result['rounds']})")
    print(f"  bare sqlite3, same statements ({result['statements_per_mail']}/mail): "
          f"{result['sqlite_cpu_ms_per_mail']:>7} ms/mail")
    print(f"  ratio bare/mailbot: {result['ratio']}")


if __name__ == "__main__":
    main()
