"""The analysis half of ingest in worker processes (mailbot.ingest.analysis).

Workers must change nothing a user can see: the same cases, with the same
extracted facts, as when everything runs in one process; a worker that dies
loses no mail; workers do not outlive a killed daemon.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import Future
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from bench.gen_mails import generate_bytes
from mailbot import db
from mailbot.business_days import BusinessCalendar
from mailbot.cases import records as cases
from mailbot.cases import sla
from mailbot.ingest import analysis
from mailbot.ingest.analysis import Received
from mailbot.ingest.pipeline import Outcome, ingest_batch, ingest_stream, prepare, record
from mailbot.mail.masking import stored_body
from mailbot.models import Case, Inbound, Message
from tests.conftest import ROOT, make_config
from tests.procs import wait_until

pytestmark = pytest.mark.slow  # processes, servers or corpora: left out by `make test-fast`

N = 60  # above MIN_BATCH_FOR_WORKERS, several chunks
AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _items(n: int = N) -> list[Received]:
    return [Received(raw, "test", received_at=None) for raw in generate_bytes(n)]


def _cases(app: Any) -> list[tuple]:
    """What a user sees of each case: its fields, deadlines and stored messages."""
    with Session(app.engine) as s:
        rows = s.exec(select(Case).order_by(col(Case.id))).all()
        bodies = {m.case_id: m.body_text for m in s.exec(select(Message).where(Message.direction == "in")).all()}
        return [(c.ref, c.subject, c.customer_email, c.category, c.priority, c.tier, c.language, c.status,
                 c.extracted, c.received_at, c.ack_due_at, c.due_at, c.next_sla_at, bodies[c.id]) for c in rows]


def _drain(app: Any, items: list[Received], size: int = 20) -> list[Outcome]:
    batches = [items[i:i + size] for i in range(0, len(items), size)]
    return [r.outcome for _, results in ingest_stream(app, batches) for r in results]


def test_workers_analyse_in_other_processes_and_find_the_same(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, ingest={"workers": 2})
    stamped = [Received(it.raw, it.source, received_at=AT) for it in _items()]
    pending = analysis.submit(cfg, stamped)
    in_workers = pending.result()
    here = [analysis.analyse(cfg, it, with_facts=True) for it in stamped]
    assert {a.analysed_by for a in in_workers} - {os.getpid()}, "nothing ran in a worker"
    for w, h in zip(in_workers, here, strict=True):
        assert (w.digest, w.dedupe_key, w.parse_error, w.verdict) == (h.digest, h.dedupe_key, h.parse_error, h.verdict)
        assert w.parsed is not None and h.parsed is not None
        assert (w.parsed.subject, w.parsed.text, w.parsed.html, w.parsed.attachments) == (
            h.parsed.subject, h.parsed.text, h.parsed.html, h.parsed.attachments)
        assert w.parsed.header("Message-ID") == h.parsed.header("Message-ID")  # headers travel back
        assert w.facts == h.facts and set(w.facts) == {"kalra-plus"}
        # what the write copies instead of computing: the stored body and a new case's deadlines
        assert w.parsed.masked_text == h.parsed.masked_text == stored_body(h.parsed.text)
        brand = cfg.brand("kalra-plus")
        cal = BusinessCalendar(brand.timezone, brand.holidays_country, brand.holidays_subdiv, brand.closed_days)
        assert w.openings == h.openings == {"kalra-plus": sla.opening(brand, cal, AT, w.facts["kalra-plus"].category)}


def test_cases_are_the_same_with_and_without_workers(make_app: Any) -> None:
    items = _items()
    with_workers = make_app(ingest={"workers": 2})
    assert _drain(with_workers, items) == [Outcome.CASE_OPENED] * N
    # the same mails into a second database, analysed in this process only
    in_process = _second_app(with_workers, workers=0)
    try:
        assert _drain(in_process, items) == [Outcome.CASE_OPENED] * N
        assert _cases(with_workers) == _cases(in_process)
    finally:
        in_process.close()


def test_a_case_takes_the_deadlines_computed_ahead_only_when_they_fit(make_app: Any) -> None:
    """open_case copies an `sla.Opening` computed for the same brand, reception time and
    category, and computes its own otherwise (a stale or foreign one is never used)."""
    app = make_app()
    brand = app.config.brand("kalra-plus")
    ahead = sla.opening(brand, app.calendar(brand), AT, None)
    marked = replace(ahead, due_at=datetime(2030, 1, 1, tzinfo=UTC))  # recognisable if copied
    later = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    with db.session_scope(app.engine) as s:
        kw = {"customer_email": "a@example.org", "customer_name": "A", "subject": "s"}
        copied = cases.open_case(s, app, brand, received_at=AT, opening=marked, **kw)
        refused = cases.open_case(s, app, brand, received_at=later, opening=marked, **kw)
        other_category = cases.open_case(s, app, brand, received_at=AT, category="frais", opening=marked, **kw)
    assert copied.due_at == marked.due_at and copied.ack_due_at == ahead.ack_due_at
    assert refused.due_at == sla.opening(brand, app.calendar(brand), later, None).due_at
    assert other_category.due_at == sla.opening(brand, app.calendar(brand), AT, "frais").due_at != marked.due_at


def _second_app(app: Any, workers: int) -> Any:
    """An App like `app` on a fresh SQLite file, with another worker count."""
    from mailbot.app import App

    path = Path(str(app.config.source_path)).parent / f"second-{workers}"
    path.mkdir()
    cfg = make_config(path, ingest={"workers": workers})
    return App.open(cfg, upgrade=True, clock=app.clock)


def test_a_result_a_worker_cannot_send_back_is_analysed_here(tmp_path: Path) -> None:
    """E.g. a header object that does not pickle: the chunk is redone in this process
    instead of failing the batch again and again (which would leave it in the mailbox)."""
    from concurrent.futures import Future

    class Unpicklable:  # what the pool answers when the worker's result cannot come back
        handed: list[int] = []

        def submit(self, _fn: Any, _config: Any, chunk: list[Received]) -> Future[list[analysis.Analysis]]:
            self.handed.append(len(chunk))
            failed: Future[list[analysis.Analysis]] = Future()
            failed.set_exception(TypeError("cannot pickle 'Header' object"))
            return failed

    cfg = make_config(tmp_path)
    items = [Received(it.raw, it.source, received_at=AT) for it in _items(2 * analysis.CHUNK + 5)]
    pool = Unpicklable()
    chunks = [items[i:i + analysis.CHUNK] for i in range(0, len(items), analysis.CHUNK)]
    results = analysis.Pending(cfg, items, [(c, pool.submit(None, cfg, c)) for c in chunks]).result()
    assert pool.handed == [analysis.CHUNK] * (len(items) // analysis.CHUNK) + [len(items) % analysis.CHUNK]
    assert [r.dedupe_key for r in results] == [analysis.analyse(cfg, it).dedupe_key for it in items]
    assert all(r.parsed is not None and r.analysed_by == os.getpid() for r in results)


def test_a_failed_extraction_keeps_the_verdict_and_a_failed_classification_the_whole_mail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a worker sends back when part of the analysis fails: ingest redoes only that
    part, on the same input (a bounce's body rules need the whole message)."""
    cfg = make_config(tmp_path)
    bounce = (b"From: MAILER-DAEMON@mx.example.net\nTo: support@kalra-plus.com\n"
              b"Subject: Undelivered Mail Returned to Sender\nMessage-ID: <b1@mx.example.net>\n"
              b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
              b"--b\nContent-Type: text/plain\n\nThe mail could not be delivered.\n"
              b"--b\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; x@example.org\n"
              b"Action: failed\nStatus: 5.1.1\n--b--\n")
    item = Received(generate_bytes(1)[0], "imap:x", envelope_to=("support@kalra-plus.com",), received_at=AT)

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(analysis, "extract_for", broken)
    (a,) = analysis._analyse_chunk(cfg, [item])
    assert a.verdict is not None and not a.verdict.automatic and a.facts == {}
    monkeypatch.setattr(analysis, "classify", broken)
    (b,) = analysis._analyse_chunk(cfg, [Received(bounce, "imap:x", received_at=AT)])
    assert b.verdict is None and b.parsed is not None
    assert b.parsed.message.is_multipart()  # the whole message, not its headers only


def test_a_worker_that_dies_loses_no_mail(make_app: Any) -> None:
    app = make_app(ingest={"workers": 1})
    analysis.warm_up(app.config)
    victims = list(analysis._POOL[1]._processes)  # type: ignore[attr-defined] - the PIDs we started
    assert victims
    items = _items(60)
    pending = prepare(app, items[:40])  # under way in the worker
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    assert [r.outcome for r in record(app, pending)] == [Outcome.CASE_OPENED] * 40
    # the next batch finds workers again (or is analysed here): nothing is stuck
    assert [r.outcome for r in ingest_batch(app, items[40:])] == [Outcome.CASE_OPENED] * 20
    with Session(app.engine) as s:
        assert len(s.exec(select(Inbound.id)).all()) == 60


def test_workers_leave_when_their_parent_is_killed(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from mailbot.ingest import analysis\n"
        "from mailbot.config import load_config\n"
        "if __name__ == '__main__':\n"
        f"    cfg = load_config({str(ROOT / 'config.toml')!r})\n"
        "    cfg = cfg.model_copy(update={'ingest': cfg.ingest.model_copy(update={'workers': 2})})\n"
        "    analysis.warm_up(cfg)\n"
        "    print(*analysis._POOL[2]._processes, flush=True)\n"
        "    import time; time.sleep(60)\n"
    )
    script = tmp_path / "parent.py"
    script.write_text(code)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
    finally:
        parent.kill()
        parent.wait()
    wait_until(lambda: not any(_alive(p) for p in workers), timeout=5, what="workers gone")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity masks are Linux-only")
def test_the_default_worker_count_follows_the_cpus_the_daemon_may_run_on(tmp_path: Path) -> None:
    """`workers = -1` (as shipped) counts the CPUs of the daemon's affinity mask (systemd's
    `CPUAffinity=`, taskset, a container's cpuset), not the machine's: on the one CPU it
    may use, a worker would only fight the daemon for it."""
    mine = sorted(os.sched_getaffinity(0))
    script = tmp_path / "daemon.py"
    script.write_text(
        "import os, sys\n"
        "os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(',')})  # as taskset does\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from mailbot.ingest import analysis\n"
        "from mailbot.config import load_config\n"
        "if __name__ == '__main__':\n"
        f"    analysis.warm_up(load_config({str(ROOT / 'config.toml')!r}))\n"
        "    print(sum(len(pool._processes) for pool in analysis._POOL.values()))\n"
        "    analysis.shutdown()\n")

    def workers_started(cpus: list[int]) -> int:
        out = subprocess.run([sys.executable, str(script), ",".join(map(str, cpus))],
                             capture_output=True, text=True, timeout=120, check=True)
        return int(out.stdout.split()[-1])

    assert workers_started(mine[:1]) == 0
    if len(mine) >= 2:  # (on a one-CPU machine the mask and the machine are the same)
        assert workers_started(mine[:2]) == 1


def _child_uses_workers(config_path: str) -> None:
    from mailbot.config import load_config

    cfg = load_config(config_path)
    analysis.warm_up(cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"workers": 1})}))
    assert analysis._POOL, "no worker started"


def test_a_multiprocessing_child_with_workers_still_exits() -> None:
    """A process that is itself a multiprocessing child (bench instances, a supervisor)
    joins its children when it ends: the workers must be stopped before that join."""
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(
        target=_child_uses_workers, args=(str(ROOT / "config.toml"),))
    child.start()
    child.join(timeout=30)
    try:
        assert child.exitcode == 0, f"child still running or failed: {child.exitcode}"
    finally:
        if child.exitcode is None:
            child.kill()
            child.join()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.fixture(autouse=True)
def _no_pool_left() -> Any:
    yield
    analysis.shutdown()


def test_a_reload_to_another_worker_count_shuts_the_old_pool_down(tmp_path: Path) -> None:
    analysis.shutdown()
    one = make_config(tmp_path, ingest={"workers": 1})
    analysis.warm_up(one)
    (old,) = analysis._POOL.values()  # noqa: SLF001
    pids = list(old._processes)  # noqa: SLF001
    analysis.resize_pool(one)  # same size: kept
    assert list(analysis._POOL.values()) == [old]  # noqa: SLF001
    analysis.resize_pool(make_config(tmp_path, ingest={"workers": 2}))
    assert analysis._POOL == {}  # noqa: SLF001

    def gone() -> bool:
        return all(not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
                   for pid in pids)

    wait_until(gone, timeout=30, what="the old workers to leave")
