"""Scale-out on PostgreSQL (issue 7): three `mailbot run` processes share one schema and
one IMAP mailbox; mail arrives over SMTP on all three and by APPEND to the mailbox; the
instance holding the mailbox is SIGKILLed midway. Every mail must be recorded once,
every customer acknowledged once, and — with the clock moved by `mailbot tick --now`
run from two processes at once — every reminder sent once.

Issue 7 asks for 3,000 SMTP + 2,000 IMAP mails; CI runs a smaller set:

    MAILBOT_SCALEOUT_N=5000 .venv/bin/python -m pytest -q -s tests/test_scaleout.py

(`MAILBOT_SCALEOUT_N` is the total; 60 % go over SMTP, 40 % over IMAP; default 500.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from mailbot import business_days
from mailbot.cases.sla import sla_points
from mailbot.db import make_engine, upgrade
from mailbot.models import Case, Outbox
from tests.chaos import (
    DaemonProc,
    ImapAppender,
    Progress,
    check,
    drained,
    folder_counts,
    maildir_is_idempotent,
    maildir_message_ids,
    make_mails,
    start_smtp_senders,
    wait_for,
    write_config,
)
from tests.conftest import ROOT, SHIPPED, _db_url, make_config
from tests.dovecot import Dovecot
from tests.procs import free_port

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

N = int(os.environ.get("MAILBOT_SCALEOUT_N", "500"))
N_SMTP = round(N * 0.6)
N_IMAP = N - N_SMTP
INSTANCES = 3


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    yield from _db_url("postgresql", tmp_path)


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    eng = make_engine(pg_url)
    upgrade(eng)  # once, before the instances start (they would serialise on a lock anyway)
    yield eng
    eng.dispose()


def lock_holder(daemons: list[DaemonProc]) -> tuple[bool, str]:
    holders = [k for k, d in enumerate(daemons) if "mailbox lock taken" in d.log_tail(10**7)]
    return len(holders) == 1, f"instances holding the mailbox: {holders}"


def test_three_instances_one_schema_one_mailbox(tmp_path: Path, pg_url: str, engine: Engine,
                                                dovecot: Dovecot, dovecot_user: tuple[str, str]) -> None:
    t0 = time.monotonic()
    user, _pw = dovecot_user
    tag = uuid.uuid4().hex[:8]
    smtp_mails, imap_mails = make_mails(tag, "smtp", N_SMTP), make_mails(tag, "imap", N_IMAP)
    mails = smtp_mails + imap_mails
    maildir = tmp_path / "sent"  # one Maildir shared by the three instances
    common = {
        "imap": [{"host": dovecot.host, "port": dovecot.port, "tls": False, "username": user,
                  "password_file": dovecot.write_password_file(user, tmp_path / "imap.pw"),
                  "idle": True, "brand": "kalra-plus", "batch_size": 50}],
        "outbound": {"transport": "maildir", "path": str(maildir), "backoff_seconds": 1},
        "scheduler": {"outbox_interval": 0.5, "sla_interval": 1},
        "limits": {"ack_limit": 1000, "first_contact_acks": 100_000},
        # every case gets its per-case reminders (the shipped config keeps them for urgent cases)
        "brands": [{**SHIPPED["brands"][0], "digest": {"case_reminders": "all"}}, *SHIPPED["brands"][1:]],
    }
    ports = [free_port() for _ in range(INSTANCES)]
    daemons = [DaemonProc(write_config(tmp_path / f"i{k}" / "config.toml", tmp_path, pg_url, ports[k], **common),
                          ports[k], tmp_path / f"i{k}.log") for k in range(INSTANCES)]
    progress, stop = Progress(), threading.Event()
    try:
        for d in daemons:
            d.start()
        wait_for(lambda: lock_holder(daemons), timeout=30)
        victim = next(d for d in daemons if "mailbox lock taken" in d.log_tail(10**7))

        senders = start_smtp_senders(smtp_mails, ports, 2 * INSTANCES, progress, stop)
        appender = ImapAppender(dovecot, user, imap_mails, progress, stop,
                                target=lambda: progress.smtp_250 / max(1, N_SMTP) + 0.05, chunk=25)
        appender.start()

        # Midway, SIGKILL the instance that polls the mailbox: another one must take it over.
        wait_for(lambda: (progress.smtp_250 >= N_SMTP // 2, f"{progress.smtp_250} SMTP 250"),
                 timeout=max(120, N / 5))
        victim.kill()
        killed_at = progress.delivered
        for t in (*senders, appender):
            t.join(timeout=max(300, N / 5))
            assert not t.is_alive(), f"{t.name} still running"
            assert t.error is None, repr(t.error)
        assert not progress.permanent, progress.permanent[:5]

        ids = {m.message_id for m in mails}
        state = wait_for(lambda: _drained_and_empty(engine, ids, dovecot, user), timeout=max(120, N / 10))
        ingest_seconds = time.monotonic() - t0

        figures = check(engine, mails, maildir)
        print(f"\nscale-out: {INSTANCES} instances, {N_SMTP} SMTP + {N_IMAP} IMAP mails, killed one "
              f"after {killed_at} deliveries; {state}; {ingest_seconds:.1f} s\n{figures.line()}\n{figures.ack_line()}")
        assert figures.line() == f"{N} sent, {N} recorded, 0 lost, 0 duplicated", figures.lost_ids[:5]
        assert figures.acks_ok, figures.ack_line()
        # One kill: at most the one row the victim was sending can be written twice, and
        # not even that once the Maildir transport names files by Message-ID.
        assert figures.ack_files_resent <= (0 if maildir_is_idempotent() else 1), figures.ack_line()
        assert figures.ack_files == N + figures.ack_files_resent, figures.ack_line()
        folders = folder_counts(dovecot, user)
        assert folders["INBOX"] == 0 and folders["INBOX unseen"] == 0, folders
        assert folders["Processed"] == N_IMAP and folders["Quarantine"] == 0, folders
        takers = [k for k, d in enumerate(daemons) if d is not victim and "mailbox lock taken" in d.log_tail(10**7)]
        assert len(takers) == 1, f"the mailbox was taken over by {takers}"

        # Move the clock past the 50 % reminder point of every case (and before 80 %),
        # and run `mailbot tick` from two processes at once.
        when = reminder_time(tmp_path, pg_url, engine)
        ticks = [subprocess.Popen([sys.executable, "-m", "mailbot.cli", "--config", str(daemons[0].config_path),
                                   "tick", "--now", when], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
                 for _ in range(2)]
        outs = [p.communicate(timeout=max(120, N / 10)) for p in ticks]
        for p, (_out, err) in zip(ticks, outs, strict=True):
            assert p.returncode == 0, err.decode()[-2000:]
        assert_reminders_once(engine, maildir)
        print(f"reminders: one per case at {when}; whole test {time.monotonic() - t0:.1f} s")
        print("tick outputs: " + " | ".join(out.decode().strip().replace("\n", "; ") for out, _ in outs))
    finally:
        stop.set()
        codes = [d.terminate() for d in daemons if d.proc is not None]
    assert all(c == 0 for c in codes), codes


def _drained_and_empty(engine: Engine, ids: set[str], dovecot: Dovecot, user: str) -> tuple[bool, str]:
    ok, state = drained(engine, len(ids), ids)
    if not ok:
        return ok, state
    inbox = folder_counts(dovecot, user)["INBOX"]
    return inbox == 0, f"{state}, {inbox} left in INBOX"


def reminder_time(tmp_path: Path, pg_url: str, engine: Engine) -> str:
    """A time past every case's 50 % reminder point and before any 80 % point."""
    common = {"brands": [{**SHIPPED["brands"][0], "digest": {"case_reminders": "all"}}, *SHIPPED["brands"][1:]]}
    brand = make_config(tmp_path, pg_url, **common).brand("kalra-plus")
    cal = business_days.for_brand(brand)
    with Session(engine) as s:
        cases = list(s.exec(select(Case)).all())
    assert len(cases) == N
    p50 = [p.at for c in cases for p in sla_points(c, brand, cal) if p.kind == "reminder" and p.percent == 50]
    p80 = [p.at for c in cases for p in sla_points(c, brand, cal) if p.kind == "reminder" and p.percent == 80]
    assert len(p50) == len(p80) == N
    when = max(p50) + timedelta(minutes=1)
    assert when < min(p80), (max(p50), min(p80))
    return when.isoformat()


def assert_reminders_once(engine: Engine, maildir: Path) -> None:
    with Session(engine) as s:
        rows = list(s.exec(select(Outbox).where(Outbox.kind == "reminder")).all())
        case_ids = set(s.exec(select(Case.id)).all())
    per_case = Counter(r.case_id for r in rows)
    assert set(per_case) == case_ids, f"{len(case_ids - set(per_case))} cases without a reminder"
    assert max(per_case.values()) == 1, [c for c, n in per_case.items() if n > 1][:10]
    assert all(r.status == "sent" for r in rows), Counter(r.status for r in rows)
    files = maildir_message_ids(maildir)
    copies = Counter(files[r.message_id] for r in rows)
    assert copies == Counter({1: len(rows)}), f"reminder files per Message-ID: {dict(copies)}"
