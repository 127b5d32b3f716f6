#!/usr/bin/env python3
"""`mailbot cases search` and the work queue over many cases.

    python bench/search.py [--cases 100000] [--db sqlite|pg|URL] [--repeat 30] [--json]

Fills a fresh database with `--cases` cases (bench/sla.py's generator: open cases
received over the last 60 days), then, with bulk inserts: 40 % of them answered
and half of those closed, a third of the open ones assigned (to one of three agents
of their brand), and one customer message per case (a French complaint made of
common words, an operation reference and an amount of its own). Then it times, each
`--repeat` times after one warm run, the functions the commands call:

- search (`mailbot.cases.search.search_cases`, as `mailbot cases search TEXT` and the
  console's search box): a common word, a word's prefix, two words, a rare word, an
  operation reference, a customer's address, a case reference;
- the queue (`mailbot.cases.queue.list_cases`, as `mailbot cases list` and the
  console's queue): the first page of the open cases, one brand's, `--mine`,
  `--overdue`, `--due-today`, and a late page (page 200 of 50).

Each line: p50 and p95 in ms, and how many cases matched. The baseline printed
beside them is the bare indexed `SELECT count(*) FROM cases WHERE status IN (open)`,
what any page must at least pay.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from _common import bench_config, database, db_label, machine, scratch_dir
from sla import NOW, populate
from sqlalchemy import insert, select, text
from sqlmodel import Session

from mailbot import db
from mailbot.app import App
from mailbot.cases.queue import QueueFilter, QueuePage, list_cases
from mailbot.cases.search import search_cases
from mailbot.config import parse_config
from mailbot.models import Case, Message

CHUNK = 5000
WORDS = ("virement carte paiement compte frais prélèvement remboursement retrait chèque opposition "
         "découvert agios banque conseiller agence délai réponse dossier contrat assurance crédit "
         "échéance relevé mensuel solde débit bloqué refusé contesté fraude piratage identifiant "
         "application connexion mot passe code plafond étranger devise commission").split()
AGENTS = {"kalra-plus": ["agent@kalra-plus.com", "paul@kalra-plus.com", "lea@kalra-plus.com"],
          "divikeys": ["agent@divikeys.com", "marc@divikeys.com", "ines@divikeys.com"]}


def _body(rng: random.Random, i: int) -> str:
    words = " ".join(rng.choice(WORDS) for _ in range(60)) + (" rétrofacturation" if i % 997 == 0 else "")
    return (f"Bonjour,\n\nJe conteste l'opération VIR-{i:06d} de {rng.randint(10, 5000)},{rng.randint(0, 99):02d} EUR "
            f"du {rng.randint(1, 28)} novembre.\n{words}\n\nMerci de votre retour.\nClient {i}")


def fill(app: App, n_cases: int, seed: int = 11) -> None:
    """The cases (bench/sla.py), then their messages and states, a chunk per transaction (the
    full-text index grows as it does in service: one transaction holding 100,000 messages
    would have SQLite's FTS5 merge its segments through a small page cache)."""
    populate(app, n_cases, 0)
    rng = random.Random(seed)
    with app.engine.connect() as conn:
        rows = conn.execute(select(Case.id, Case.brand, Case.subject, Case.customer_email, Case.customer_name,
                                   Case.received_at).order_by(Case.id)).all()
    messages = [{"case_id": cid, "direction": "in", "kind": "customer", "message_id": f"<c{cid}@example.org>",
                 "subject": subject, "from_addr": email, "from_name": name, "sent_at": received,
                 "created_at": received, "body_text": _body(rng, cid), "route_signal": "new",
                 "route_detail": ""} for cid, _b, subject, email, name, received in rows]
    for i in range(0, len(messages), CHUNK):
        with app.engine.begin() as conn:
            conn.execute(insert(Message.__table__), messages[i:i + CHUNK])  # type: ignore[attr-defined]
    with app.engine.begin() as conn:
        later = ("received_at + (8 + id % 33) * interval '1 day'" if conn.dialect.name == "postgresql"
                 else "datetime(received_at, '+' || (8 + id % 33) || ' days')")
        conn.execute(text(f"UPDATE cases SET status = 'answered', answered_at = {later}, next_sla_at = NULL "
                          "WHERE id % 5 IN (0, 1)"))
        conn.execute(text("UPDATE cases SET status = 'closed', closed_at = answered_at WHERE id % 10 = 0"))
        for brand, agents in AGENTS.items():
            for k, agent in enumerate(agents):
                conn.execute(text("UPDATE cases SET assignee = :a WHERE brand = :b AND id % 9 = :k"),
                             {"a": agent, "b": brand, "k": k})
        conn.exec_driver_sql("ANALYZE")
    if app.engine.dialect.name == "postgresql":  # as autovacuum leaves the tables
        with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE cases")
            conn.exec_driver_sql("VACUUM ANALYZE messages")


def timed(app: App, fn: Callable[[Session], int], repeat: int) -> dict[str, float]:
    with db.read_scope(app.engine) as s:
        found = fn(s)  # warm: statements prepared, pages cached
    times = []
    for _ in range(repeat):
        with db.read_scope(app.engine) as s:
            t0 = time.perf_counter()
            fn(s)
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
            "matched": found}


def _total(page: QueuePage) -> int:
    return page.total


def run(dbname: str, n_cases: int, repeat: int) -> dict[str, object]:
    work = scratch_dir(prefix="mailbot-bench-search-")
    with database(dbname, work) as url:
        app = App.open(parse_config(bench_config(url, work), str(Path(work) / "config.toml")), upgrade=True)
        app.clock = lambda: NOW
        t0 = time.perf_counter()
        fill(app, n_cases)
        fill_s = time.perf_counter() - t0
        open_statuses = "('new','acknowledged','in_progress','waiting_customer','reexamination')"
        some = n_cases // 2 + 13  # one case: its operation, its customer, a reference
        searches: dict[str, str] = {
            "common word (virement)": "virement", "prefix (rembours)": "rembours",
            "two words (carte bloqué)": "carte bloqué", "three words (piratage agios plafond)": "piratage agios plafond",
            "rare word (rétrofacturation)": "rétrofacturation", f"operation reference (VIR-{some:06d})": f"VIR-{some:06d}",
            "customer address": f"client{some - 1}@example.org", "case reference": f"DK-2026-{(some + 1) // 2:06d}",
        }
        out: dict[str, object] = {"db": db_label(dbname), "cases": n_cases, "fill_s": round(fill_s, 1),
                                  "machine": machine()}
        out["baseline: count of open cases"] = timed(
            app, lambda s: int(s.connection().execute(text(f"SELECT count(*) FROM cases WHERE status IN {open_statuses}"))
                               .scalar_one()), repeat)
        for label, query in searches.items():
            out[f"search {label}"] = timed(app, lambda s, q=query: _total(search_cases(s, app, q)), repeat)
        queues: dict[str, tuple[QueueFilter, int]] = {
            "open, first page": (QueueFilter(), 1), "--brand kalra-plus": (QueueFilter(brand="kalra-plus"), 1),
            "--mine agent@kalra-plus.com": (QueueFilter(mine="agent@kalra-plus.com"), 1),
            "--overdue": (QueueFilter(overdue=True), 1), "--due-today": (QueueFilter(due_today=True), 1),
            "open, page 200": (QueueFilter(), 200),
        }
        for label, (f, page) in queues.items():
            out[f"queue {label}"] = timed(app, lambda s, f=f, p=page: _total(list_cases(s, app, f, page=p)), repeat)
        app.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--db", default="sqlite")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = run(args.db, args.cases, args.repeat)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['db']}, {result['cases']} cases (filled in {result['fill_s']} s)", flush=True)
    for key, value in result.items():
        if isinstance(value, dict) and "p50_ms" in value:
            print(f"  {key:45s} p50 {value['p50_ms']:8.2f} ms  p95 {value['p95_ms']:8.2f} ms  ({value['matched']} cases)")


if __name__ == "__main__":
    main()
