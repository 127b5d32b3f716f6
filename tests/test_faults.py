"""Fault injection: the database or the relay goes away, the disk fills up.

Each test fails if a guarantee of DESIGN.md breaks: a source is told "done"
only after the commit (SMTP 451 / IMAP leaves the mail / pipe exit 75
otherwise), nothing is half recorded, everything catches up once the fault is
gone, and each mail is recorded — and each acknowledgement delivered — once.

- PostgreSQL stopped: a throwaway cluster of our own (never the machine's).
- SQLite locked: another connection holds `BEGIN EXCLUSIVE`.
- Relay down: the real daemon retries against a closed port, then a relay appears.
- Disk full: `PRAGMA max_page_count` on the engine's connections, and (as
  root, when tmpfs can be mounted) a real full filesystem under the pipe transport.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import pwd
import shutil
import signal
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import event, func
from sqlmodel import col, select

from mailbot import db
from mailbot.app import App
from mailbot.channels.imap import ImapPoller, Timings
from mailbot.config import ImapConfig
from mailbot.ingest.pipeline import GroupCommit, Received, TemporaryFailure, ingest, ingest_batch
from mailbot.models import Case, Inbound, Outbox, Quarantine
from tests.conftest import ROOT, config_data, make_config
from tests.dovecot import Dovecot
from tests.mails import mail
from tests.procs import StderrReader, free_port, start_daemon, to_toml, wait_until
from tests.test_smtp import listening

pytestmark = pytest.mark.slow  # processes, servers or corpora: left out by `make test-fast`

SUPPORT = "support@kalra-plus.com"
FAST = Timings(backoff_initial=0.05, backoff_max=0.3, config_backoff=0.05, idle_check=0.2,
               lock_retry=0.2, lock_check=0.2)


def count(app: App, model: type, *where: object) -> int:
    with db.session_scope(app.engine) as s:
        return s.exec(select(func.count()).select_from(model).where(*where)).one()


def message_ids(app: App) -> list[str]:
    with db.session_scope(app.engine) as s:
        return sorted(m or "" for m in s.exec(select(Inbound.message_id)).all())


def send(port: int, raw: bytes, sender: str = "marie.dupont@example.org") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
        assert c.sendmail(sender, [SUPPORT], raw) == {}


def send_expecting_451(port: int, raw: bytes) -> float:
    """Send; the DATA must be refused with 451 4.3.0. Returns how long the answer took."""
    t0 = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as c, pytest.raises(smtplib.SMTPDataError) as err:
        c.sendmail("marie.dupont@example.org", [SUPPORT], raw)
    assert err.value.smtp_code == 451 and b"4.3.0" in err.value.smtp_error
    return time.monotonic() - t0


# ---------------------------------------------------------------- PostgreSQL stopped
class PgCluster:
    """A throwaway PostgreSQL cluster on a loopback port (initdb → start → stop → rm)."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            pytest.fail("PostgreSQL server binaries not found (Debian: apt-get install postgresql)",
                        pytrace=False)
        self.bin = Path(bins[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="mailbot-pg-"))
        self.dir = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        os.chmod(self.root, 0o755)
        self.dir.mkdir(mode=0o700)
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres?connect_timeout=3"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout}\n{done.stderr}"

    def start(self) -> None:
        opts = (f"-c listen_addresses='127.0.0.1' -p {self.port} -k {self.dir} -c fsync=off "
                f"-c max_connections=100")
        self._run("pg_ctl", "-D", str(self.dir), "-w", "-l", str(self.dir / "log"), "-o", opts, "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-w", "-m", "fast", "stop")

    def cleanup(self) -> None:
        if (self.dir / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


def test_postgresql_stopped_smtp_451_imap_waits_then_both_catch_up(
        tmp_path: Path, pg_cluster: PgCluster, dovecot: Dovecot) -> None:
    user, pw = dovecot.new_user("fault")
    pw_file = tmp_path / "imap.pw"
    pw_file.write_text(pw + "\n")
    imap_cfg = ImapConfig(host=dovecot.host, port=dovecot.port, tls=False, username=user,
                          password_file=str(pw_file), brand="kalra-plus")
    app = App.open(make_config(tmp_path, pg_cluster.url), upgrade=True)
    poller = ImapPoller(app, imap_cfg, FAST)
    try:
        with listening(app) as port:
            poller.start()
            # Before the fault: both channels work.
            send(port, mail(message_id="<before-smtp@example.org>"))
            dovecot.append(user, mail(message_id="<before-imap@example.org>", frm="a@example.org"))
            wait_until(lambda: count(app, Inbound) == 2 and not dovecot.uids(user), what="first mails")

            pg_cluster.stop()
            # SMTP: 451 at once (connection refused is immediate), nothing half recorded.
            assert send_expecting_451(port, mail(message_id="<during-smtp@example.org>")) < 10
            # IMAP: the mail stays in INBOX, unseen, while the poller backs off and retries.
            failures = poller.failures
            uid = dovecot.append(user, mail(message_id="<during-imap@example.org>", frm="b@example.org"))
            wait_until(lambda: poller.failures >= failures + 3, what="the poller retrying")
            assert dovecot.fetch_flags(user) == {uid: ()}
            assert dovecot.folder_count(user, "Processed") == 1

            pg_cluster.start()
            # IMAP catches up by itself; the MTA retries the refused mail.
            wait_until(lambda: not dovecot.uids(user), timeout=20, what="the IMAP backlog")
            send(port, mail(message_id="<during-smtp@example.org>"))
            send(port, mail(message_id="<during-smtp@example.org>"))  # a second MTA retry: a duplicate
    finally:
        poller.stop(timeout=10)
    assert message_ids(app) == sorted(["<before-smtp@example.org>", "<before-imap@example.org>",
                                       "<during-smtp@example.org>", "<during-imap@example.org>"])
    assert count(app, Case) == 4
    assert dovecot.folder_count(user, "Processed") == 2
    assert count(app, Quarantine) == 0
    app.close()


# ---------------------------------------------------------------- SQLite durability
def test_sqlite_commit_is_synced_to_disk(tmp_path: Path, sqlite_url: str) -> None:
    """A source hears "done" after the commit, so the commit must survive a power loss or
    an OS crash, not only a crash of mailbot: in WAL mode that is synchronous=FULL (the
    WAL is synced at each commit). NORMAL syncs only at checkpoints, and a mail already
    answered 250 or moved out of the mailbox could roll back with the power."""
    app = App.open(make_config(tmp_path, sqlite_url), upgrade=True)
    try:
        with app.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        app.close()


# ---------------------------------------------------------------- SQLite locked
@contextlib.contextmanager
def exclusive_lock(path: str) -> Iterator[None]:
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_sqlite_locked_answers_451_in_bounded_time_then_catches_up(tmp_path: Path,
                                                                  sqlite_url: str) -> None:
    app = App.open(make_config(tmp_path, sqlite_url, database={"busy_timeout": 1}), upgrade=True)
    path = app.engine.url.database
    assert path
    with listening(app) as port:
        send(port, mail(message_id="<first@example.org>"))
        with exclusive_lock(path):
            elapsed = send_expecting_451(port, mail(message_id="<locked@example.org>"))
            # busy_timeout (1 s) times ingest's retries of a locked database, not the 10 s default
            assert elapsed < 12, f"451 took {elapsed:.1f}s"
        assert count(app, Inbound) == 1  # nothing half written
        send(port, mail(message_id="<locked@example.org>"))  # the MTA's retry
    assert message_ids(app) == ["<first@example.org>", "<locked@example.org>"]
    app.close()


def test_sqlite_locked_every_caller_of_a_smtp_group_hears_retry_later_and_nothing_is_recorded(
        tmp_path: Path, sqlite_url: str) -> None:
    """Group commit: when the group's transaction cannot be written, each waiting SMTP
    session gets its own TemporaryFailure (451), none a result, and the retries go through."""
    app = App.open(make_config(tmp_path, sqlite_url, database={"busy_timeout": 0.5}), upgrade=True)
    group = GroupCommit(app)
    raws = [mail(message_id=f"<g{i}@example.org>", frm=f"c{i}@example.org") for i in range(5)]
    outcomes: list[object] = [None] * len(raws)

    def deliver(i: int) -> None:
        try:
            outcomes[i] = group.ingest(Received(raws[i], "smtp"))
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcomes[i] = exc

    with exclusive_lock(str(app.engine.url.database)):
        threads = [threading.Thread(target=deliver, args=(i,)) for i in range(len(raws))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert all(isinstance(o, TemporaryFailure) for o in outcomes), outcomes
    assert group.groups < len(raws)  # some callers failed together, in one group
    assert count(app, Inbound) == 0
    for i, raw in enumerate(raws):  # the MTAs retry
        assert group.ingest(Received(raw, "smtp")).case_refs, i
    assert message_ids(app) == sorted(f"<g{i}@example.org>" for i in range(len(raws)))
    app.close()


def test_sqlite_locked_pipe_exits_75_with_the_configured_busy_timeout(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(to_toml(config_data(tmp_path, database={"busy_timeout": 0.5})))
    dbfile = tmp_path / "mailbot.db"

    def pipe(raw: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(cfg), "ingest",
                               "-r", SUPPORT, "-f", "marie.dupont@example.org", "-"],
                              input=raw, capture_output=True, cwd=ROOT, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})

    assert pipe(mail(message_id="<p1@example.org>")).returncode == 0  # creates and migrates the DB
    with exclusive_lock(str(dbfile)):
        t0 = time.monotonic()
        done = pipe(mail(message_id="<p2@example.org>"))
        elapsed = time.monotonic() - t0
    assert done.returncode == 75, done.stderr.decode()
    assert b"locked" in done.stderr and elapsed < 10
    assert pipe(mail(message_id="<p2@example.org>")).returncode == 0
    with sqlite3.connect(dbfile) as c:
        assert c.execute("SELECT count(*) FROM inbound").fetchone() == (2,)


# ---------------------------------------------------------------- relay down
class Sink:
    def __init__(self) -> None:
        self.received: list[Envelope] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.received.append(envelope)
        return "250 OK"


def _message_id(envelope: Envelope) -> str:
    raw = envelope.original_content or b""
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


def test_relay_down_outbox_retries_then_delivers_exactly_once(tmp_path: Path) -> None:
    smtp_port, relay_port = free_port(), free_port()
    proc = start_daemon(
        tmp_path, smtp_port, scheduler={"outbox_interval": 0.2},
        outbound={"transport": "smtp", "host": "127.0.0.1", "port": relay_port, "timeout": 2,
                  "max_attempts": 1000, "backoff_seconds": 0.1, "backoff_max_seconds": 0.5})
    log = StderrReader(proc)
    reader = App(config=make_config(tmp_path), engine=db.make_engine(f"sqlite:///{tmp_path}/mailbot.db"))

    def outbox() -> list[Outbox]:
        with db.session_scope(reader.engine) as s:
            return list(s.exec(select(Outbox).order_by(col(Outbox.id))).all())

    try:
        for i in range(3):
            send(smtp_port, mail(frm=f"client{i}@example.org", message_id=f"<relay-{i}@example.org>"))
        # Nothing listens on the relay port: every row is retried, none dropped, none failed.
        wait_until(lambda: (rows := outbox()) and all(r.attempts >= 3 for r in rows),
                   what="three attempts per row")
        rows = outbox()
        assert len(rows) >= 3
        assert all(r.status == "pending" and r.sent_at is None for r in rows)
        assert all("refused" in (r.last_error or "").lower() for r in rows), [r.last_error for r in rows]

        sink = Sink()
        ctl = Controller(sink, hostname="127.0.0.1", port=relay_port)
        ctl.start()
        try:
            wait_until(lambda: all(r.status == "sent" for r in outbox()), what="delivery")
            time.sleep(1.0)  # several more dispatcher passes: nothing is sent twice
        finally:
            ctl.stop()
        rows = outbox()
        delivered = [_message_id(e) for e in sink.received]
        assert sorted(delivered) == sorted(r.message_id for r in rows)  # each row exactly once
        acks = sorted(e.rcpt_tos[0] for e in sink.received if e.rcpt_tos[0].startswith("client"))
        assert acks == [f"client{i}@example.org" for i in range(3)]
        assert all(r.last_error is None and r.sent_at is not None for r in rows)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        reader.close()
    assert proc.returncode == 0, log.join()[-3000:]
    assert "attempt" in log.join() and "failed for good" not in log.join()


# ---------------------------------------------------------------- disk full
def integrity(path: str) -> str:
    with contextlib.closing(sqlite3.connect(path)) as c:
        return c.execute("PRAGMA integrity_check").fetchone()[0]


@contextlib.contextmanager
def no_room_to_grow(app: App, path: str) -> Iterator[None]:
    """Every new connection of the engine may not grow the file: SQLITE_FULL on write."""
    with contextlib.closing(sqlite3.connect(path)) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.execute("VACUUM")  # no free pages left to reuse
        pages = c.execute("PRAGMA page_count").fetchone()[0]

    def cap(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    event.listen(app.engine, "connect", cap)
    app.engine.dispose()
    try:
        yield
    finally:
        event.remove(app.engine, "connect", cap)
        app.engine.dispose()


def test_disk_full_is_a_temporary_failure_without_corruption(tmp_path: Path, sqlite_url: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    app = App.open(make_config(tmp_path, sqlite_url), upgrade=True)
    path = app.engine.url.database
    assert path
    earlier = [ingest(app, mail(frm=f"c{i}@example.org", message_id=f"<old-{i}@example.org>"), "smtp")
               for i in range(3)]
    refs = sorted(r for e in earlier for r in e.case_refs)
    big = "Détail de la réclamation.\n" * 4000  # ~100 KB: needs new pages
    with listening(app) as port:
        with no_room_to_grow(app, path):
            # SMTP: 451, with the reason in the log.
            send_expecting_451(port, mail(body=big, message_id="<full@example.org>"))
            assert any("database or disk is full" in r.getMessage() for r in caplog.records)
            # The write path says "temporary" (pipe exit 75), alone or in an IMAP batch,
            # and never quarantines a mail because the disk is full.
            with pytest.raises(TemporaryFailure, match="database or disk is full"):
                ingest(app, mail(body=big, message_id="<full@example.org>"), "pipe")
            caplog.clear()
            with pytest.raises(TemporaryFailure, match="database or disk is full"):
                ingest_batch(app, [Received(mail(body=big, message_id=f"<b{i}@example.org>"), "imap:x")
                                   for i in range(2)])
            assert not any("quarantining" in r.getMessage() for r in caplog.records)
        assert integrity(path) == "ok"
        assert count(app, Quarantine) == 0 and count(app, Inbound) == 3
        with db.session_scope(app.engine) as s:
            assert sorted(s.exec(select(Case.ref)).all()) == refs
        # Space is back: the MTA's retry is accepted.
        send(port, mail(body=big, message_id="<full@example.org>"))
    assert count(app, Inbound) == 4 and count(app, Case) == 4
    assert integrity(path) == "ok"
    app.close()


@contextlib.contextmanager
def tiny_filesystem(size: str = "4m") -> Iterator[Path]:
    """A size-limited tmpfs (root only); unmounted and removed afterwards."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    where = Path(tempfile.mkdtemp(prefix="mailbot-full-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        with contextlib.suppress(OSError):
            where.rmdir()


def fill(directory: Path) -> Path:
    """Write a ballast file until the filesystem is full (ENOSPC)."""
    ballast = directory / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 512):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return ballast


def test_real_disk_full_pipe_exits_75_then_accepts_once_space_is_back(tmp_path: Path) -> None:
    with tiny_filesystem() as fs:
        dbfile = fs / "mailbot.db"
        cfg = tmp_path / "config.toml"
        cfg.write_text(to_toml(config_data(tmp_path, db_url=f"sqlite:///{dbfile}")))

        def pipe(raw: bytes) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(cfg), "ingest",
                                   "-r", SUPPORT, "-f", "marie.dupont@example.org", "-"],
                                  input=raw, capture_output=True, cwd=ROOT, timeout=60,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})

        first = pipe(mail(message_id="<disk-1@example.org>"))
        assert first.returncode == 0, first.stderr.decode()
        # An idle reader (say, a backup) keeps the -wal/-shm files; the WAL is emptied, so
        # the next commit needs new space for its frames.
        with contextlib.closing(sqlite3.connect(dbfile)) as keeper:
            keeper.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            ballast = fill(fs)
            full = pipe(mail(message_id="<disk-2@example.org>", body="Texte.\n" * 2000))
            assert full.returncode == 75, (full.returncode, full.stderr.decode()[-2000:])
            assert b"database or disk is full" in full.stderr
            # without the -shm file, even opening fails, with a disk I/O error: also 75
            ballast.unlink()
        ballast = fill(fs)
        full = pipe(mail(message_id="<disk-2@example.org>", body="Texte.\n" * 2000))
        assert full.returncode == 75, (full.returncode, full.stderr.decode()[-2000:])
        assert b"disk" in full.stderr
        ballast.unlink()
        assert integrity(str(dbfile)) == "ok"

        again = pipe(mail(message_id="<disk-2@example.org>", body="Texte.\n" * 2000))
        assert again.returncode == 0, again.stderr.decode()[-2000:]
        with contextlib.closing(sqlite3.connect(dbfile)) as c:
            assert c.execute("SELECT message_id FROM inbound ORDER BY id").fetchall() == [
                ("<disk-1@example.org>",), ("<disk-2@example.org>",)]
            assert c.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
        assert integrity(str(dbfile)) == "ok"
