"""The IMAP poller and `mailbot imap check`, against a real Dovecot (tests/dovecot.py).

Each test uses a mailbox user of its own. Core tests run on SQLite and on
PostgreSQL (the `app` fixture); the slow ones are pinned to SQLite.
"""

from __future__ import annotations

import functools
import logging
import secrets
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, func, text
from sqlmodel import Session, select

from mailbot.app import App
from mailbot.channels import imap as imap_module
from mailbot.channels.imap import ImapPoller, Timings, advisory_key, mailbox_brand
from mailbot.channels.imap_check import reconcile, reconcile_all
from mailbot.channels.imap_idle import Idle
from mailbot.config import ImapConfig
from mailbot.ingest.pipeline import Outcome, TemporaryFailure, ingest
from mailbot.models import Case, Inbound, MailboxState, Quarantine
from tests import procs
from tests.conftest import make_config
from tests.dovecot import Dovecot

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

SUPPORT = "support@kalra-plus.com"
FAST = Timings(backoff_initial=0.05, backoff_max=0.5, config_backoff=0.05, idle_check=0.2,
               lock_retry=0.2, lock_check=0.2)
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
POSTGRES_ONLY = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def complaint(n: int, sender: str | None = None, to: str = SUPPORT, subject: str = "Réclamation",
              message_id: str | None = None) -> bytes:
    sender = sender or f"client{n}@example.test"
    mid = message_id or f"<c{n}.{secrets.token_hex(6)}@example.test>"
    return (f"From: Client {n} <{sender}>\r\nTo: {to}\r\nSubject: {subject} {n}\r\n"
            f"Message-ID: {mid}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Bonjour, mon virement de {n}0 EUR n'est pas arrivé.\r\n").encode()


# The shared poll-with-deadline, with this module's tighter defaults (IDLE is fast).
wait_until = functools.partial(procs.wait_until, timeout=10.0, every=0.02)


def count(app: App, model: type) -> int:
    with Session(app.engine) as s:
        return s.exec(select(func.count()).select_from(model)).one()


def cases(app: App) -> list[Case]:
    with Session(app.engine) as s:
        return list(s.exec(select(Case).order_by(Case.id)).all())


def message_ids_in(d: Dovecot, user: str, folder: str) -> list[str]:
    with d.client(user) as c:
        if not c.folder_exists(folder):
            return []
        c.select_folder(folder, readonly=True)
        uids = c.search("ALL")
        data = c.fetch(uids, [b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
    return sorted(v[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode().split(":", 1)[1].strip()
                  for v in data.values())


@pytest.fixture
def mailbox(tmp_path: Path) -> Callable[..., ImapConfig]:
    """mailbox(dovecot, **overrides) -> ImapConfig of a brand-new user on that server."""

    def factory(d: Dovecot, password: str | None = None, **over: object) -> ImapConfig:
        user, pw = d.new_user("imap", password=password or f"pw-{secrets.token_hex(4)}")
        pw_file = tmp_path / f"{user}.pw"
        pw_file.write_text(pw + "\n")
        data: dict[str, object] = {"host": d.host, "port": d.port, "tls": False,
                                   "username": user, "password_file": str(pw_file), "batch_size": 50}
        data.update(over)
        return ImapConfig(**data)

    return factory


@pytest.fixture
def pollers() -> Iterator[Callable[..., ImapPoller]]:
    made: list[ImapPoller] = []

    def factory(app: App, cfg: ImapConfig, timings: Timings = FAST) -> ImapPoller:
        p = ImapPoller(app, cfg, timings)
        made.append(p)
        return p

    yield factory
    for p in made:
        p.stop(timeout=10)


# ---------------------------------------------------------------- pure helpers
def test_advisory_key_is_stable_63_bit() -> None:
    k = advisory_key("support@kalra-plus.com@127.0.0.1:993/INBOX")
    assert k == advisory_key("support@kalra-plus.com@127.0.0.1:993/INBOX")
    assert 0 <= k < 2**63
    assert k != advisory_key("info@divikeys.com@127.0.0.1:993/INBOX")


@pytest.mark.parametrize(("username", "brand", "expected"), [
    ("support@kalra-plus.com", None, "kalra-plus"),
    ("SUPPORT@Kalra-Plus.com", None, "kalra-plus"),
    ("info@divikeys.com", None, "divikeys"),
    ("shared@example.test", None, None),
    ("plain-login", None, None),
    ("shared@example.test", "divikeys", "divikeys"),
])
def test_mailbox_brand(tmp_path: Path, username: str, brand: str | None, expected: str | None) -> None:
    config = make_config(tmp_path)
    cfg = ImapConfig(username=username, password_env="X", brand=brand)
    assert mailbox_brand(config, cfg) == expected


def test_processed_folder_must_differ(app: App) -> None:
    cfg = ImapConfig(username="u@x.test", password_env="X", processed_folder="INBOX")
    with pytest.raises(ValueError, match="must differ"):
        ImapPoller(app, cfg)


# ---------------------------------------------------------------- core (SQLite + PostgreSQL)
def test_complaints_become_cases_and_are_filed(app: App, dovecot: Dovecot, mailbox, pollers) -> None:
    cfg = mailbox(dovecot)
    senders = ["alice@example.test", "bob@example.test", "chloe@example.test"]
    for i, s in enumerate(senders):
        dovecot.append(cfg.username, complaint(i, sender=s))
    poller = pollers(app, cfg)

    assert poller.poll_once() == 3

    got = cases(app)
    assert sorted(c.customer_email for c in got) == senders
    assert {c.brand for c in got} == {"kalra-plus"}
    with Session(app.engine) as s:
        sources = set(s.exec(select(Inbound.source)).all())
        state = s.get(MailboxState, cfg.account_key)
    assert sources == {f"imap:{cfg.username}/INBOX"}
    assert dovecot.uids(cfg.username) == []
    flags = dovecot.fetch_flags(cfg.username, "Processed")
    assert len(flags) == 3 and all(b"\\Seen" in f for f in flags.values())
    assert state is not None and state.last_uid == 3
    assert state.uidvalidity == dovecot.uidvalidity(cfg.username)
    assert poller.poll_once() == 0  # nothing twice


def test_mailbox_brand_used_for_routing(app: App, dovecot: Dovecot, mailbox, pollers) -> None:
    cfg = mailbox(dovecot, brand="divikeys")
    dovecot.append(cfg.username, complaint(1, to="someone@elsewhere.test"))
    assert pollers(app, cfg).poll_once() == 1
    assert [c.brand for c in cases(app)] == ["divikeys"]


def test_unparseable_mail_goes_to_quarantine_folder(app: App, dovecot: Dovecot, mailbox,
                                                    pollers) -> None:
    cfg = mailbox(dovecot)
    dovecot.append(cfg.username, b"\x00\x00garbage")
    dovecot.append(cfg.username, complaint(1))
    assert pollers(app, cfg).poll_once() == 2
    assert dovecot.folder_count(cfg.username, "Quarantine") == 1
    assert dovecot.folder_count(cfg.username, "Processed") == 1
    assert dovecot.uids(cfg.username) == []
    with Session(app.engine) as s:
        held = s.exec(select(Quarantine)).all()
    assert len(held) == 1 and held[0].source == f"imap:{cfg.username}/INBOX"
    assert "unparseable" in held[0].reason
    assert len(cases(app)) == 1


def test_database_down_leaves_mail_untouched(app: App, db_url: str, dovecot: Dovecot, mailbox,
                                             pollers) -> None:
    cfg = mailbox(dovecot)
    poller = pollers(app, cfg)
    assert poller.poll_once() == 0  # connected, state recorded (and, on PostgreSQL, lock held)
    broken = create_engine("sqlite:////nonexistent-dir/x.db" if db_url.startswith("sqlite")
                           else "postgresql+psycopg://postgres@127.0.0.1:1/none")
    poller.app = replace(app, engine=broken)
    poller._known_uidvalidity = None  # the pass checks UIDVALIDITY in the database (after its first FETCH)
    uid = dovecot.append(cfg.username, complaint(1))

    with pytest.raises(TemporaryFailure):
        poller.poll_once()
    assert dovecot.fetch_flags(cfg.username) == {uid: ()}  # still there, unseen

    poller.app = app
    assert poller.poll_once() == 1
    assert dovecot.uids(cfg.username) == [] and len(cases(app)) == 1


def test_idle_wakes_poller_within_2s(app: App, dovecot: Dovecot, mailbox, pollers) -> None:
    cfg = mailbox(dovecot)
    poller = pollers(app, cfg)
    poller.start()
    assert poller.wait_idle(10), "poller never entered IDLE"
    t0 = time.monotonic()
    dovecot.append(cfg.username, complaint(1, sender="idle@example.test"))
    wait_until(lambda: cases(app), timeout=5, what="a case from the APPENDed mail")
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0, f"APPEND → case took {elapsed:.2f}s"
    assert cases(app)[0].customer_email == "idle@example.test"
    t1 = time.monotonic()
    poller.stop()
    assert time.monotonic() - t1 < 2.0  # stop() breaks IDLE quickly


@SQLITE_ONLY
@pytest.mark.parametrize("transport", ["plain", "imaps", "starttls"])
def test_mail_that_lands_just_before_idle_is_not_left_waiting(app: App, dovecot: Dovecot, mailbox, pollers,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             transport: str) -> None:
    """A mail that lands after the pass's last SEARCH and before IDLE: Dovecot announces it
    right behind IDLE's continuation, often in the same packet (or TLS record), so imaplib
    has read that EXISTS into its buffer already and a poll of the socket never sees it.
    It was then noticed only at the server's next keepalive (Dovecot: 2 min) or at the
    IDLE renewal (20 min)."""
    cfg = {"plain": lambda: mailbox(dovecot),
           "imaps": lambda: mailbox(dovecot, tls=True, port=dovecot.ssl_port, ca_file=dovecot.cert_path),
           "starttls": lambda: mailbox(dovecot, starttls=True, ca_file=dovecot.cert_path)}[transport]()
    poller = pollers(app, cfg, replace(FAST, idle_renew=600.0))
    start = Idle.start
    landed: list[int] = []

    def mail_lands_first(idle: Idle) -> str | None:  # between the last SEARCH and IDLE
        if not landed:
            landed.append(dovecot.append(cfg.username, complaint(1, sender="race@example.test")))
        return start(idle)

    monkeypatch.setattr(Idle, "start", mail_lands_first)
    poller.start()
    wait_until(lambda: cases(app), timeout=5, what="a case from the mail that landed before IDLE")
    assert cases(app)[0].customer_email == "race@example.test"
    assert dovecot.uids(cfg.username) == []


# ---------------------------------------------------------------- the "database busy" path (SQLite)
@SQLITE_ONLY
def test_move_happens_only_after_commit(app: App, dovecot: Dovecot, mailbox, pollers) -> None:
    cfg = mailbox(dovecot)
    event.listen(app.engine, "connect", lambda c, _r: c.execute("PRAGMA busy_timeout=100"))
    app.engine.dispose()
    poller = pollers(app, cfg)
    assert poller.poll_once() == 0
    uid = dovecot.append(cfg.username, complaint(1))

    locker = sqlite3.connect(app.engine.url.database, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(TemporaryFailure, match="locked"):
            poller.poll_once()  # fetched, ingest could not commit
        assert dovecot.fetch_flags(cfg.username) == {uid: ()}
        assert dovecot.folder_count(cfg.username, "Processed") == 0

        poller.start()  # the thread backs off and retries while the database is busy
        wait_until(lambda: poller.failures >= 2, what="retries")
        assert dovecot.fetch_flags(cfg.username) == {uid: ()}
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    wait_until(lambda: dovecot.folder_count(cfg.username, "Processed") == 1, what="the move")
    assert dovecot.uids(cfg.username) == [] and count(app, Inbound) == 1


@SQLITE_ONLY
def test_polls_at_interval_without_idle(app: App, dovecot: Dovecot, mailbox, pollers) -> None:
    cfg = mailbox(dovecot, idle=False, poll_interval=0.2)
    poller = pollers(app, cfg)
    poller.start()
    dovecot.append(cfg.username, complaint(1))
    wait_until(lambda: cases(app), timeout=5, what="a case")
    assert not poller.wait_idle(0)


# ---------------------------------------------------------------- server trouble (SQLite)
@SQLITE_ONLY
def test_connection_dropped_mid_batch_loses_and_duplicates_nothing(
        app: App, dovecot_fresh: Dovecot, mailbox, pollers, monkeypatch) -> None:
    d = dovecot_fresh
    cfg = mailbox(d, batch_size=20)
    raws = [complaint(i) for i in range(400)]
    d.append_many(cfg.username, raws)
    appended = sorted(r.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode() for r in raws)
    # The third batch's write waits for the restart, so the restart lands in the middle
    # of the backlog however fast the rest goes (the helper thread is at its MOVE/FETCH).
    real, restarted, calls = imap_module.record, threading.Event(), []

    def record_held_for_the_restart(app_: App, pending: Any, **kw: Any) -> list:
        calls.append(len(pending.items))
        if len(calls) == 3:
            restarted.wait(30)
        return real(app_, pending, **kw)

    monkeypatch.setattr(imap_module, "record", record_held_for_the_restart)
    poller = pollers(app, cfg)
    poller.start()

    wait_until(lambda: len(calls) >= 3, timeout=30, what="the third batch")
    recorded_at_restart = count(app, Inbound)
    d.restart()  # drops the poller's connection in the middle of the backlog
    restarted.set()
    assert recorded_at_restart == 40
    wait_until(lambda: count(app, Inbound) == 400 and not d.uids(cfg.username), timeout=60,
               what="the whole backlog")

    assert poller.connects >= 2
    with Session(app.engine) as s:
        mids = s.exec(select(Inbound.message_id)).all()
    assert sorted(mids) == appended  # each once
    assert len(cases(app)) == 400
    # a MOVE cut by the restart may leave a second copy in Processed, never a missing one
    assert sorted(set(message_ids_in(d, cfg.username, "Processed"))) == appended


def test_a_batch_fetched_ahead_is_not_touched_when_the_one_before_fails(
        make_app: Callable[..., App], dovecot_fresh: Dovecot, mailbox, pollers, monkeypatch) -> None:
    """The poller fetches (and analyses, in a worker) the next batches while it commits
    batch k. When the commit of batch 2 fails, batches 2 and 3 stay in the INBOX, unseen;
    only batch 1, committed, was moved. The next pass records them, each once."""
    app = make_app(ingest={"workers": 1})
    d = dovecot_fresh
    cfg = mailbox(d, batch_size=20)
    d.append_many(cfg.username, [complaint(i) for i in range(60)])
    real, calls = imap_module.record, []

    def record_failing_second(app_: App, pending: Any, **kw: Any) -> list:
        calls.append(len(pending.items))
        if len(calls) == 2:
            raise TemporaryFailure("database unavailable (test)")
        return real(app_, pending, **kw)

    monkeypatch.setattr(imap_module, "record", record_failing_second)
    poller = pollers(app, cfg)
    with pytest.raises(TemporaryFailure):
        poller.poll_once()
    assert calls == [20, 20]  # batch 3 was fetched ahead, never recorded
    assert count(app, Inbound) == 20
    assert d.folder_count(cfg.username, "Processed") == 20
    left = d.fetch_flags(cfg.username)
    assert len(left) == 40 and all(flags == () for flags in left.values())

    monkeypatch.setattr(imap_module, "record", real)
    assert poller.poll_once() == 40
    assert count(app, Inbound) == 60 and len(cases(app)) == 60
    assert d.uids(cfg.username) == [] and d.folder_count(cfg.username, "Processed") == 60



@SQLITE_ONLY
def test_imap_side_runs_while_a_batch_is_written(app: App, dovecot_fresh: Dovecot, mailbox, pollers,
                                                 monkeypatch) -> None:
    """While batch 2 is being written, the helper thread moves batch 1 (committed) and
    fetches batch 4 (two batches are fetched ahead): the commit does not wait for
    Dovecot, nor Dovecot for the commit. (Sequentially, batch 4 would be fetched before
    batch 2's write starts: the fetch below would wait in vain for it.)"""
    d = dovecot_fresh
    cfg = mailbox(d, batch_size=10)
    d.append_many(cfg.username, [complaint(i) for i in range(40)])
    real_record, real_fetch = imap_module.record, ImapPoller._fetch
    writing_2, fetched_4 = threading.Event(), threading.Event()
    fetches: list[int] = []
    seen: dict[str, object] = {}

    def fetch(self: ImapPoller, client: Any, uids: list[int], **kwargs: Any) -> Any:
        fetches.append(len(uids))
        if len(fetches) == 4:
            seen["writing 2 when fetching 4"] = writing_2.wait(3)
            seen["moved when fetching 4"] = d.folder_count(cfg.username, "Processed")
            result = real_fetch(self, client, uids, **kwargs)
            fetched_4.set()
            return result
        return real_fetch(self, client, uids, **kwargs)

    def record(app_: App, pending: Any, **kw: Any) -> list:
        seen["records"] = int(seen.get("records", 0)) + 1  # type: ignore[call-overload]
        if seen["records"] == 2:
            writing_2.set()
            seen["fetched 4 before writing 2 ended"] = fetched_4.wait(10)
        return real_record(app_, pending, **kw)

    monkeypatch.setattr(ImapPoller, "_fetch", fetch)
    monkeypatch.setattr(imap_module, "record", record)
    assert pollers(app, cfg).poll_once() == 40
    assert seen["writing 2 when fetching 4"] is True
    assert seen["fetched 4 before writing 2 ended"] is True
    assert seen["moved when fetching 4"] == 10  # batch 1, committed; batch 2 not yet
    assert count(app, Inbound) == 40 and d.folder_count(cfg.username, "Processed") == 40



@SQLITE_ONLY
def test_big_mails_are_fetched_a_few_at_a_time(app: App, dovecot: Dovecot, mailbox, pollers,
                                                monkeypatch) -> None:
    """A batch holds at most `batch_bytes` of mail by RFC822.SIZE (a bigger mail goes
    alone): with three batches in flight, a backlog of big mails stays small in memory."""
    cfg = mailbox(dovecot, batch_size=50, batch_bytes=250_000)
    padding = ("Détail de l'opération contestée, ligne de relevé. " * 20 + "\r\n").encode() * 100
    raws = [complaint(i)[:-2] + padding for i in range(9)] + [complaint(9) + padding * 3]  # ~100 KB; ~300 KB
    dovecot.append_many(cfg.username, raws)
    real_fetch = ImapPoller._fetch
    batches: list[int] = []

    def fetch(self: ImapPoller, client: Any, uids: list[int], **kwargs: Any) -> Any:
        batches.append(len(uids))
        return real_fetch(self, client, uids, **kwargs)

    monkeypatch.setattr(ImapPoller, "_fetch", fetch)
    assert pollers(app, cfg).poll_once() == 10
    assert batches == [2, 2, 2, 2, 1, 1]  # nine of ~100 KB two by two, the ~300 KB one alone
    assert count(app, Inbound) == 10 and dovecot.folder_count(cfg.username, "Processed") == 10


@SQLITE_ONLY
def test_only_the_big_mails_have_their_size_fetched(app: App, dovecot: Dovecot, mailbox, pollers,
                                                     monkeypatch) -> None:
    """Cutting batches by bytes needs the exact size of big mails only: one SEARCH LARGER
    names them, and every other mail counts as batch_bytes / batch_size (here 60,000), an
    upper bound, so a batch still holds at most batch_bytes."""
    cfg = mailbox(dovecot, batch_size=4, batch_bytes=240_000)
    padding = ("Détail de l'opération contestée, ligne de relevé. " * 20 + "\r\n").encode() * 100
    raws = [complaint(i) for i in range(6)] + [complaint(6)[:-2] + padding] + [complaint(i) for i in range(7, 10)]
    dovecot.append_many(cfg.username, raws)
    real_fetch, real_batch = imap_module.IMAPClient.fetch, ImapPoller._fetch
    sized: list[int] = []
    batches: list[int] = []

    def fetch(self: Any, messages: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
        if b"RFC822.SIZE" in data:
            sized.extend(messages)
        return real_fetch(self, messages, data, *args, **kwargs)

    def fetch_batch(self: ImapPoller, client: Any, uids: list[int], **kwargs: Any) -> Any:
        batches.append(len(uids))
        return real_batch(self, client, uids, **kwargs)

    monkeypatch.setattr(imap_module.IMAPClient, "fetch", fetch)
    monkeypatch.setattr(ImapPoller, "_fetch", fetch_batch)
    assert pollers(app, cfg).poll_once() == 10
    assert sized == [7]  # the ~106 KB one, the seventh appended
    assert batches == [4, 3, 3]  # 4 × 60,000; then 60,000 + 60,000 + the big one; the rest
    assert count(app, Inbound) == 10 and dovecot.folder_count(cfg.username, "Processed") == 10


@SQLITE_ONLY
def test_the_last_uid_is_saved_at_the_end_of_a_pass_not_after_each_batch(
        app: App, dovecot: Dovecot, mailbox, pollers, monkeypatch) -> None:
    """The last UID filed away is bookkeeping (its own transaction, with an fsync): saved
    once at the end of a pass, and during a long pass at most every STATE_EVERY seconds."""
    cfg = mailbox(dovecot, batch_size=10)
    dovecot.append_many(cfg.username, [complaint(i) for i in range(40)])
    saved: list[int] = []
    real_save = ImapPoller._save_state

    def save(self: ImapPoller, uidvalidity: int, top_uid: int) -> None:
        saved.append(top_uid)
        real_save(self, uidvalidity, top_uid)

    monkeypatch.setattr(ImapPoller, "_save_state", save)
    poller = pollers(app, cfg)
    assert poller.poll_once() == 40
    assert saved == [40]
    dovecot.append_many(cfg.username, [complaint(i) for i in range(40, 70)])
    monkeypatch.setattr(imap_module, "STATE_EVERY", 0.0)  # a pass longer than STATE_EVERY
    assert poller.poll_once() == 30
    assert saved == [40, 50, 60, 70]  # after each batch (and nothing left for the end)
    with Session(app.engine) as s:
        state = s.get(MailboxState, cfg.account_key)
    assert state is not None and state.last_uid == 70


@SQLITE_ONLY
def test_a_backlog_starts_with_smaller_batches(app: App, dovecot_fresh: Dovecot, mailbox, pollers,
                                               monkeypatch) -> None:
    """With batch_size 100 (the default), a pass writes 25 mails first, then 50, then
    100 at a time: the first commit (and the first acknowledgements) need a quarter
    batch analysed, not a whole one. Every mail is still recorded once and filed away."""
    d = dovecot_fresh
    cfg = mailbox(d, batch_size=100)
    d.append_many(cfg.username, [complaint(i) for i in range(190)])
    written: list[int] = []
    real_record = imap_module.record

    def record(app_: App, pending: Any, **kw: Any) -> Any:
        written.append(len(pending.items))
        return real_record(app_, pending, **kw)

    monkeypatch.setattr(imap_module, "record", record)
    assert pollers(app, cfg).poll_once() == 190
    assert written == [25, 50, 100, 15]
    assert count(app, Inbound) == 190 and d.folder_count(cfg.username, "Processed") == 190
    assert imap_module.ramp(50) == []  # a quarter of 50 is less than one analysis chunk
    assert list(imap_module.batches_by_size(list(range(10)), {i: 100 for i in range(10)}, count=4,
                                            max_bytes=250, first=[3])) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]

@SQLITE_ONLY
def test_stop_mid_pass_files_away_what_it_wrote_and_leaves_the_rest_unseen(
        app: App, dovecot_fresh: Dovecot, mailbox, pollers, monkeypatch) -> None:
    """stop() during a pass: no more fetching; what was fetched is written and moved, the
    rest stays in the INBOX unseen, and nothing is moved that was not committed."""
    d = dovecot_fresh
    cfg = mailbox(d, batch_size=10)
    d.append_many(cfg.username, [complaint(i) for i in range(60)])
    poller = pollers(app, cfg)
    real, calls = imap_module.record, []

    def record_then_stop(app_: App, pending: Any, **kw: Any) -> list:
        calls.append(len(pending.items))
        if len(calls) == 2:
            poller._stop.set()
        return real(app_, pending, **kw)

    monkeypatch.setattr(imap_module, "record", record_then_stop)
    handled = poller.poll_once()
    recorded = count(app, Inbound)
    assert handled == recorded == sum(calls) and 20 <= recorded < 60
    assert d.folder_count(cfg.username, "Processed") == recorded
    left = d.fetch_flags(cfg.username)
    assert len(left) == 60 - recorded and all(flags == () for flags in left.values())

@SQLITE_ONLY
def test_connection_lost_between_commit_and_move(app: App, dovecot_fresh: Dovecot, mailbox,
                                                 pollers, monkeypatch) -> None:
    """The worst moment: batch 2 is committed, then the server goes away before the MOVE."""
    d = dovecot_fresh
    cfg = mailbox(d, batch_size=20)
    d.append_many(cfg.username, [complaint(i) for i in range(60)])
    outcomes: list[Outcome] = []
    real = imap_module.record

    def record_then_crash(app_: App, pending: Any, **kw: Any) -> list:
        results = real(app_, pending, **kw)
        outcomes.extend(r.outcome for r in results)
        if len(outcomes) == 40:
            d.restart()
        return results

    monkeypatch.setattr(imap_module, "record", record_then_crash)
    poller = pollers(app, cfg)
    poller.start()
    wait_until(lambda: count(app, Inbound) == 60 and not d.uids(cfg.username), timeout=30,
               what="the backlog")
    assert poller.connects == 2
    # Batch 2 is fetched again and recorded once. So is batch 3 when the helper thread had
    # fetched it before the server went away: it is committed while batch 2's MOVE fails.
    assert outcomes.count(Outcome.DUPLICATE) in (20, 40)
    assert len(outcomes) == 60 + outcomes.count(Outcome.DUPLICATE)
    assert len(cases(app)) == 60


@SQLITE_ONLY
def test_uidvalidity_reset_rescans_without_duplicates(app: App, dovecot_fresh: Dovecot, mailbox,
                                                      pollers, caplog) -> None:
    d = dovecot_fresh
    cfg = mailbox(d)
    poller = pollers(app, cfg)
    d.append_many(cfg.username, [complaint(1), complaint(2)])
    assert poller.poll_once() == 2
    old = d.uidvalidity(cfg.username)
    # a crash between commit and move: recorded, yet still in INBOX
    left = [complaint(3), complaint(4)]
    for raw in left:
        ingest(app, raw, f"imap:{cfg.username}/INBOX")
    d.append_many(cfg.username, [*left, complaint(5)])
    poller.close()
    d.reset_uidvalidity(cfg.username)

    with caplog.at_level(logging.WARNING, logger="mailbot.imap"):
        assert poller.poll_once() == 3
    assert any("UIDVALIDITY changed" in r.getMessage() for r in caplog.records)
    assert count(app, Inbound) == 5 and len(cases(app)) == 5
    assert d.uids(cfg.username) == []
    with Session(app.engine) as s:
        state = s.get(MailboxState, cfg.account_key)
    assert state is not None and state.uidvalidity != old
    assert state.uidvalidity == d.uidvalidity(cfg.username)


@SQLITE_ONLY
def test_wrong_password_logged_once_while_retrying(app: App, dovecot: Dovecot, mailbox, pollers,
                                                   caplog, tmp_path: Path) -> None:
    cfg = mailbox(dovecot, password="right-pw-123")
    Path(cfg.password_file).write_text("wrong-pw-456\n")
    dovecot.append(cfg.username, complaint(1))
    poller = pollers(app, cfg)
    with caplog.at_level(logging.DEBUG, logger="mailbot.imap"):
        poller.start()
        wait_until(lambda: poller.failures >= 4, what="several login attempts")
        errors = [r for r in caplog.records if r.name == "mailbot.imap" and r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert "authentication failed" in errors[0].getMessage()
        assert errors[0].account == cfg.account_key

        Path(cfg.password_file).write_text("right-pw-123\n")  # the admin fixes it
        wait_until(lambda: cases(app) and poller.last_error is None, timeout=15, what="recovery")
    assert "wrong-pw-456" not in caplog.text and "right-pw-123" not in caplog.text


# ---------------------------------------------------------------- TLS (SQLite)
@SQLITE_ONLY
def test_implicit_tls_verified_against_ca(app: App, dovecot: Dovecot, mailbox, pollers) -> None:
    cfg = mailbox(dovecot, tls=True, port=dovecot.ssl_port, ca_file=dovecot.cert_path)
    dovecot.append(cfg.username, complaint(1))
    assert pollers(app, cfg).poll_once() == 1


@SQLITE_ONLY
def test_starttls_verified_against_ca(app: App, dovecot: Dovecot, mailbox, pollers) -> None:
    cfg = mailbox(dovecot, starttls=True, ca_file=dovecot.cert_path)
    dovecot.append(cfg.username, complaint(1))
    assert pollers(app, cfg).poll_once() == 1


@SQLITE_ONLY
def test_tls_verification_failure_is_reported(app: App, dovecot: Dovecot, mailbox, pollers,
                                              caplog) -> None:
    cfg = mailbox(dovecot, tls=True, port=dovecot.ssl_port)  # no ca_file: self-signed → refused
    dovecot.append(cfg.username, complaint(1))
    with pytest.raises(ssl.SSLCertVerificationError):
        pollers(app, cfg).poll_once()
    poller = pollers(app, cfg)
    with caplog.at_level(logging.INFO, logger="mailbot.imap"):
        poller.start()
        wait_until(lambda: poller.failures >= 3, what="retries")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "certificate verification failed" in errors[0]
    assert dovecot.uids(cfg.username) != [] and not cases(app)

    insecure = cfg.model_copy(update={"verify_tls": False})
    assert pollers(app, insecure).poll_once() == 1


# ---------------------------------------------------------------- reconciliation
def test_reconcile_reports_unrecorded_and_stuck_mail(app: App, dovecot: Dovecot, mailbox,
                                                     pollers) -> None:
    cfg = mailbox(dovecot)
    dovecot.append(cfg.username, complaint(1))
    dovecot.append(cfg.username, b"no headers at all\r\n")  # quarantined, matched by sha256
    assert pollers(app, cfg).poll_once() == 2

    report = reconcile(app, cfg)
    assert report.problems == 0, report.lines()
    assert report.counts == {"INBOX": 0, "Processed": 1, "Quarantine": 1}

    stray = "<never-ingested.1@example.test>"
    dovecot.append(cfg.username, complaint(2, message_id=stray), folder="Processed")
    dovecot.append(cfg.username, b"From: x@example.test\r\nSubject: no id\r\n\r\nhi\r\n",
                   folder="Processed")
    dovecot.append(cfg.username, complaint(3))  # waiting in INBOX
    report = reconcile(app, cfg)
    assert sorted(str(m.message_id) for m in report.not_ingested) == ["<never-ingested.1@example.test>",
                                                                     "None"]
    assert report.stuck == []  # too recent to be stuck
    later = reconcile(app, cfg, now=datetime.now(UTC) + timedelta(hours=1))
    assert len(later.stuck) == 1 and later.problems == 3
    assert "not ingested: Processed" in "\n".join(later.lines())


@SQLITE_ONLY
def test_reconcile_all_prints_one_line_per_mailbox(make_app, dovecot: Dovecot, mailbox,
                                                   capsys) -> None:
    cfg = mailbox(dovecot)
    app = make_app(imap=[cfg.model_dump(exclude_defaults=True)])
    assert reconcile_all(app) == 0
    assert f"{cfg.account_key}: INBOX 0" in capsys.readouterr().out
    dovecot.append(cfg.username, complaint(1), folder="Processed")
    assert reconcile_all(app) == 1
    out = capsys.readouterr().out
    assert "1 not ingested" in out and "PROBLEMS" in out
    bad = make_app(imap=[{**cfg.model_dump(exclude_defaults=True), "port": 1}])
    assert reconcile_all(bad) == 1
    assert "ERROR" in capsys.readouterr().out


# ---------------------------------------------------------------- scale-out (PostgreSQL)
@POSTGRES_ONLY
def test_one_instance_polls_and_another_takes_over(app: App, dovecot: Dovecot, mailbox,
                                                   pollers) -> None:
    cfg = mailbox(dovecot)
    a, b = pollers(app, cfg), pollers(app, cfg)
    a.start()
    b.start()
    dovecot.append_many(cfg.username, [complaint(i) for i in range(5)])
    wait_until(lambda: len(cases(app)) == 5, what="5 cases")
    holder, standby = (a, b) if a.lock.held else (b, a)
    assert holder.lock.held and not standby.lock.held
    assert standby.connects == 0

    # the holder's database session dies (as when its instance crashes): one instance,
    # whichever, serves the mailbox again within seconds
    key = advisory_key(cfg.account_key)
    with app.engine.connect() as c:
        c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                       "AND classid::bigint = :hi AND objid::bigint = :lo"),
                  {"hi": key >> 32, "lo": key & 0xFFFFFFFF})
        c.commit()
    dovecot.append(cfg.username, complaint(98))
    wait_until(lambda: len(cases(app)) == 6, what="mail served after the lock session died")
    wait_until(lambda: [a.lock.held, b.lock.held].count(True) == 1, what="a single holder")

    # the holder stops: the other takes over
    holder, standby = (a, b) if a.lock.held else (b, a)
    holder.stop()
    t0 = time.monotonic()
    dovecot.append(cfg.username, complaint(99))
    wait_until(lambda: len(cases(app)) == 7, what="the standby to take over")
    assert time.monotonic() - t0 < 5
    assert standby.lock.held
    assert count(app, Inbound) == 7
