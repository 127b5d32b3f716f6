#!/usr/bin/env python3
"""The web side: page latency over many cases, and form intake against plain ingest.

    python bench/web.py [--cases 100000] [--db sqlite|pg|URL] [--requests 200] [--intake 300] [--json]

Pages: fills a fresh database with `--cases` cases (bench/sla.py's generator:
open cases received over the last 60 days; then 40 % of them answered and half of
those closed), signs a supervisor in, and requests each page `--requests` times
through the whole ASGI application (FastAPI's TestClient: routing, session check,
database queries, template, middleware — no network), reporting p50 and p95 in ms.
Pages: the dashboard (both brands of the supervisor — here each supervisor has
one brand), and, when the agents' queue and case view are present, the queue's
first page and a case page.

Intake: `--intake` complaints posted through the form (CSRF, validation, MIME
built, `ingest`, the rate-limit row), against the baseline of the same MIME bytes
given to `ingest` directly, as `mailbot ingest` does for each mail (both in this
process, on a fresh database each; the subprocess start of `mailbot ingest`, ~0.5 s,
is reported apart on 10 mails).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from _common import ROOT, bench_config, database, db_label, machine, scratch_dir
from sla import NOW, populate
from sqlalchemy import text

from mailbot.app import App
from mailbot.config import parse_config
from mailbot.ingest.pipeline import ingest
from mailbot.web.app import create_app
from mailbot.web.intake import complaint_mime, from_fields

SECRET = "bench-web-secret-0123456789"
SUPERVISOR = "supervisor@kalra-plus.com"


def _app(url: str, workdir: str) -> App:
    data = bench_config(url, workdir, web={"secret": SECRET, "public_url": "http://testserver",
                                           "limit_per_address": 10**6, "limit_per_ip": 10**6})
    return App.open(parse_config(data, str(Path(workdir) / "config.toml")), upgrade=True)


def _client(app: App):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    return TestClient(create_app(app, secret=SECRET, base_url="http://testserver"), follow_redirects=False)


def _csrf(c, path: str) -> str:  # type: ignore[no-untyped-def]
    return re.search(r'name="csrf" value="([^"]+)"', c.get(path).text).group(1)


def _answer_some(app: App) -> None:
    """40 % of the cases answered (8 to 40 days after they came), half of those closed."""
    with app.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            later = "received_at + (8 + id % 33) * interval '1 day'"
        else:
            later = "datetime(received_at, '+' || (8 + id % 33) || ' days')"
        conn.execute(text(f"UPDATE cases SET status = 'answered', answered_at = {later}, next_sla_at = NULL "
                          "WHERE id % 5 IN (0, 1)"))
        conn.execute(text("UPDATE cases SET status = 'closed', closed_at = answered_at WHERE id % 10 = 0"))
        conn.exec_driver_sql("ANALYZE")
    if app.engine.dialect.name == "postgresql":  # as autovacuum leaves a table: index-only scans need it
        with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE cases")


def _sign_in(app: App, c) -> None:  # type: ignore[no-untyped-def]
    from mailbot.web.sessions import use_link
    from mailbot.web.signing import make_signin_token

    token = make_signin_token(SECRET, SUPERVISOR, app.now() + timedelta(minutes=15))
    cookie, _ = use_link(app, SECRET, token)
    c.cookies.set("mb_staff", cookie)


def _timed(c, path: str, n: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """p50/p95 of the wall time, and the median CPU time of this process (the app's thread
    and, on SQLite, the database's work) per request: less moved by a loaded machine."""
    c.get(path)  # warm: templates compiled, statements prepared
    times, cpu = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        r = c.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        assert r.status_code == 200, (path, r.status_code)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * (n - 1))], 2),
            "cpu_p50_ms": round(statistics.median(cpu), 2)}


def pages(url: str, workdir: str, n_cases: int, n_requests: int) -> dict[str, object]:
    app = _app(url, workdir)
    app.clock = lambda: NOW
    populate(app, n_cases, 0)
    _answer_some(app)
    c = _client(app)
    _sign_in(app, c)
    out: dict[str, object] = {"dashboard": _timed(c, "/staff/dashboard", n_requests)}
    queue = c.get("/staff/queue")
    if queue.status_code == 200:
        out["queue"] = _timed(c, "/staff/queue", n_requests)
        ref = re.search(r'href="/staff/cases/([A-Z]+-\d{4}-\d{6})', queue.text)
        if ref:
            out["case"] = _timed(c, f"/staff/cases/{ref.group(1)}", n_requests)
    app.close()
    return out


FIELDS = {"name": "Marie Curie", "subject": "Virement non reçu", "fact_date": "2026-11-03",
          "operation_type": "virement", "amount": "1250,00", "references": "VIR-88213",
          "description": "Mon virement de 1 250,00 EUR du 3 novembre n'est jamais arrivé chez le bénéficiaire."}


def intake(db: str, n: int) -> dict[str, object]:
    with database(db, scratch_dir(prefix="mailbot-bench-web-")) as url:
        app = _app(url, str(Path(scratch_dir())))
        c = _client(app)
        token = _csrf(c, "/complaint/kalra-plus")
        t0 = time.perf_counter()
        for i in range(n):
            r = c.post("/complaint/kalra-plus", data={**FIELDS, "csrf": token, "email": f"client{i}@example.org"})
            assert r.status_code == 303, r.text
        form_s = time.perf_counter() - t0
        app.close()
    brand_app = None
    with database(db, scratch_dir(prefix="mailbot-bench-web-")) as url:
        work = scratch_dir()
        brand_app = _app(url, work)
        brand = brand_app.config.brand("kalra-plus")
        raws = [complaint_mime(from_fields({**FIELDS, "email": f"client{i}@example.org"}, []), brand, "fr",
                               f"<bench-{i}@example.org>", brand_app.now()) for i in range(n)]
        t0 = time.perf_counter()
        for raw in raws:
            assert ingest(brand_app, raw, "pipe").case_refs
        ingest_s = time.perf_counter() - t0
        cfg = Path(work) / "config.toml"
        _write_config(cfg, url, work)
        t0 = time.perf_counter()
        for raw in raws[:10]:
            subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(cfg), "ingest", "-"],
                           input=raw.replace(b"<bench-", b"<bench-sub-"), check=True, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
        sub_s = (time.perf_counter() - t0) / 10
        brand_app.close()
    return {"n": n, "form_per_s": round(n / form_s, 1), "ingest_per_s": round(n / ingest_s, 1),
            "ratio": round(form_s / ingest_s, 2), "mailbot_ingest_process_s": round(sub_s, 3)}


def _write_config(path: Path, url: str, work: str) -> None:
    from tests.procs import to_toml

    data = bench_config(url, work)
    path.write_text(to_toml(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--intake", type=int, default=300)
    ap.add_argument("--db", default="sqlite", help="sqlite (default), pg (throwaway schema) or a URL")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    workdir = scratch_dir(prefix="mailbot-bench-web-")
    t0 = time.perf_counter()
    with database(args.db, workdir) as url:
        figures = pages(url, workdir, args.cases, args.requests)
    fill_s = time.perf_counter() - t0
    result = {"cases": args.cases, "db": db_label(args.db), "pages": figures,
              "intake": intake(args.db, args.intake)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.cases} cases, {result['db']} ({machine()}); filled and measured in {fill_s:.0f} s")
    for page, f in figures.items():
        print(f"  {page:<10} p50 {f['p50_ms']:7.2f} ms   p95 {f['p95_ms']:7.2f} ms   CPU p50 {f['cpu_p50_ms']:6.2f} ms"
              f"   ({args.requests} requests)")
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}")
    i = result["intake"]
    print(f"  intake: form {i['form_per_s']}/s, ingest of the same MIME {i['ingest_per_s']}/s "
          f"(form takes {i['ratio']}× the time); `mailbot ingest` as a process: {i['mailbot_ingest_process_s']} s a mail")


if __name__ == "__main__":
    main()
