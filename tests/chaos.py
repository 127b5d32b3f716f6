"""The chaos run (issue 8): mail arrives over SMTP and IMAP while `mailbot run` is
killed with SIGKILL at random moments and restarted; at the end every mail must be
recorded exactly once, every customer acknowledged exactly once, and nothing left
unseen in the IMAP INBOX.

    python -m tests.chaos --n 2000                # SQLite (the default store)
    python -m tests.chaos --n 2000 --db pg        # PostgreSQL, a fresh schema
    make chaos N=2000

It prints `N sent, N recorded, L lost, D duplicated` and a few more lines (kills,
acknowledgements, the Maildir files, the IMAP folders), and exits 0 when every
guarantee held, 1 otherwise.

The pieces (the SMTP sender that behaves like an MTA, the IMAP appender, the daemon
process handle, the mail builder and the checks) are reused by tests/test_scaleout.py.
Traffic goes to 127.0.0.1 only; processes are stopped by the PID we started.
"""

from __future__ import annotations

import argparse
import contextlib
import email.parser
import os
import random
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from tests.conftest import ROOT, config_data
from tests.dovecot import Dovecot
from tests.mails import mail
from tests.pg import throwaway_schema
from tests.procs import free_port, to_toml

BRAND_ADDR = "support@kalra-plus.com"
HOST = "127.0.0.1"


# ---------------------------------------------------------------- the mails
@dataclass(frozen=True)
class Mail:
    message_id: str
    sender: str
    channel: str  # smtp | imap
    raw: bytes


def make_mails(tag: str, channel: str, n: int, start: int = 0) -> list[Mail]:
    """n complaint mails, each from its own customer (so ack_limit never applies), all in
    the `transaction` category (simple tier: one reminder time fits every case)."""
    out = []
    now = datetime.now(UTC)
    for i in range(start, start + n):
        sender = f"client.{channel}.{i}.{tag}@clients.example.org"
        mid = f"<chaos.{tag}.{channel}.{i}@clients.example.org>"
        body = (f"Bonjour,\nmon virement de {100 + i % 900},50 € du 3 novembre 2026 n'est pas arrivé.\n"
                f"Référence VIR-2026-11-{i % 10000:04d}. Numéro client {700000 + i}.\n"
                f"Merci de faire le nécessaire.\nClient {i}")
        attachments = (("releve.pdf", "application/pdf", b"%PDF-1.4\n" + bytes(i % 251 for _ in range(2048))),
                       ) if i % 7 == 0 else ()
        raw = mail(frm=f"Client {i} <{sender}>", to=BRAND_ADDR, subject=f"Virement non reçu n°{i}",
                   body=body, message_id=mid, date=now, attachments=attachments)
        out.append(Mail(mid, sender, channel, raw))
    return out


# ---------------------------------------------------------------- the daemon
class DaemonProc:
    """One `mailbot run` on a config file; logs to a file (a pipe nobody reads would
    fill up and block the daemon); started, killed and stopped by its PID."""

    def __init__(self, config_path: Path, port: int, log_path: Path) -> None:
        self.config_path, self.port, self.log_path = config_path, port, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailbot.cli", "--config", str(self.config_path), "run"],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mailbot run exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mailbot run did not listen on {self.port} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL and reap."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        if proc is not None:
            proc.wait()

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (drain and exit 0); returns the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return -9

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


def write_config(path: Path, workdir: Path, db_url: str, port: int, **over: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_toml(config_data(workdir, db_url, smtp={"port": port}, **over)))
    return path


# ---------------------------------------------------------------- the senders
@dataclass
class Progress:
    """What the senders achieved; `delivered` counts SMTP 250s and IMAP APPEND OKs."""

    delivered: int = 0
    smtp_250: int = 0
    imap_appended: int = 0
    tempfails: int = 0  # 4xx answers
    conn_errors: int = 0  # refused, reset, dropped before the answer
    permanent: list[str] = field(default_factory=list)  # 5xx: never expected here
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, attr: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, attr, getattr(self, attr) + n)


class SmtpSender(threading.Thread):
    """Sends its mails like an MTA: one connection reused, a 4xx answer or a broken
    connection means "try again later" (on the next port, when there are several, as an
    MTA tries the next MX); a mail counts as delivered only once it got 250."""

    def __init__(self, mails: Sequence[Mail], ports: Sequence[int], progress: Progress,
                 stop: threading.Event, pace: Callable[[], None] | None = None,
                 give_up_after: float = 300.0) -> None:
        super().__init__(daemon=True, name="smtp-sender")
        self.mails, self.ports, self.progress, self.stop = list(mails), list(ports), progress, stop
        self.pace = pace
        self.give_up_after = give_up_after
        self.error: BaseException | None = None
        self._conn: smtplib.SMTP | None = None
        self._port_i = 0

    def run(self) -> None:
        try:
            for m in self.mails:
                if self.pace:
                    self.pace()
                if not self._deliver(m):
                    return
        except BaseException as exc:  # reported by the harness
            self.error = exc
        finally:
            self._close()

    def _deliver(self, m: Mail) -> bool:
        delay, deadline = 0.02, time.monotonic() + self.give_up_after
        while not self.stop.is_set():
            try:
                if self._conn is None:
                    self._conn = smtplib.SMTP(HOST, self.ports[self._port_i], timeout=30)
                self._conn.sendmail(m.sender, [BRAND_ADDR], m.raw)
                self.progress.add("smtp_250")
                self.progress.add("delivered")
                return True
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code >= 500:
                    self.progress.permanent.append(f"{m.message_id}: {exc.smtp_code} {exc.smtp_error!r}")
                    return True
                self.progress.add("tempfails")
            except smtplib.SMTPRecipientsRefused as exc:
                code = next(iter(exc.recipients.values()))[0]
                if code >= 500:
                    self.progress.permanent.append(f"{m.message_id}: {exc.recipients}")
                    return True
                self.progress.add("tempfails")
            except (OSError, smtplib.SMTPException):
                self.progress.add("conn_errors")
            self._close()
            self._port_i = (self._port_i + 1) % len(self.ports)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{m.message_id} not accepted within {self.give_up_after} s")
            self.stop.wait(delay)
            delay = min(0.25, delay * 2)
        return False

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def start_smtp_senders(mails: Sequence[Mail], ports: Sequence[int], threads: int, progress: Progress,
                       stop: threading.Event, pace: Callable[[], None] | None = None) -> list[SmtpSender]:
    """`threads` senders, sender j starting on port j % len(ports), mails dealt round robin."""
    senders = []
    for j in range(threads):
        rotated = list(ports[j % len(ports):]) + list(ports[:j % len(ports)])
        s = SmtpSender(mails[j::threads], rotated, progress, stop, pace)
        s.start()
        senders.append(s)
    return senders


class ImapAppender(threading.Thread):
    """APPENDs mails to the polled mailbox in small batches, following `target()`:
    the fraction of the IMAP mails that should have arrived by now."""

    def __init__(self, dovecot: Dovecot, user: str, mails: Sequence[Mail], progress: Progress,
                 stop: threading.Event, target: Callable[[], float], chunk: int = 10) -> None:
        super().__init__(daemon=True, name="imap-appender")
        self.dovecot, self.user, self.mails = dovecot, user, list(mails)
        self.progress, self.stop, self.target, self.chunk = progress, stop, target, chunk
        self.error: BaseException | None = None
        self.slowest = 0.0  # the longest APPEND, seconds

    def run(self) -> None:
        try:
            done = 0
            with self.dovecot.client(self.user, timeout=60) as c:
                while done < len(self.mails) and not self.stop.is_set():
                    want = min(len(self.mails), int(self.target() * len(self.mails)))
                    if want <= done:
                        self.stop.wait(0.05)
                        continue
                    batch = [m.raw for m in self.mails[done:min(want, done + self.chunk)]]
                    t = time.monotonic()
                    c.multiappend("INBOX", batch)
                    self.slowest = max(self.slowest, time.monotonic() - t)
                    done += len(batch)
                    self.progress.add("imap_appended", len(batch))
                    self.progress.add("delivered", len(batch))
        except BaseException as exc:
            self.error = exc


class Pacer:
    """Spreads n sends evenly over `seconds` (shared by all sender threads)."""

    def __init__(self, n: int, seconds: float) -> None:
        self.interval = seconds / max(1, n)
        self.t0 = time.monotonic()
        self.k = 0
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            at = self.t0 + self.k * self.interval
            self.k += 1
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)


# ---------------------------------------------------------------- the checks
def maildir_message_ids(path: Path) -> Counter[str]:
    """Message-ID → number of files carrying it, over new/ and cur/."""
    parser = email.parser.BytesHeaderParser(policy=policy.compat32)
    found: Counter[str] = Counter()
    for sub in ("new", "cur"):
        d = path / sub
        if not d.is_dir():
            continue
        for f in d.iterdir():
            with open(f, "rb") as fh:
                head = fh.read(16384).split(b"\r\n\r\n", 1)[0]
            mid = (parser.parsebytes(head).get("Message-ID") or "").strip()
            found[mid] += 1
    return found


def maildir_is_idempotent() -> bool:
    """Does the Maildir transport write a mail sent twice (same Message-ID) as one file?

    When it does, a kill between the transport's write and the commit marking the
    row sent cannot leave two copies; when it does not, the dispatcher's one-row
    transactions bound the damage to one extra copy per kill."""
    from mailbot.outgoing.transports import MaildirTransport

    raw = mail(message_id="<idempotence-probe@clients.example.org>")
    with tempfile.TemporaryDirectory() as d:
        t = MaildirTransport(Path(d))
        t.send(BRAND_ADDR, "probe@clients.example.org", raw)
        t.send(BRAND_ADDR, "probe@clients.example.org", raw)
        t.close()
        return sum(maildir_message_ids(Path(d)).values()) == 1


@dataclass
class Figures:
    sent: int
    recorded: int
    lost: int
    duplicated: int
    customers: int
    ack_rows_sent: int
    acked_once: int
    ack_missing: int
    ack_extra_rows: int
    ack_unsent: int
    ack_files: int
    ack_files_missing: int
    ack_files_resent: int  # extra copies of an acknowledgement in the Maildir
    lost_ids: list[str] = field(default_factory=list)
    duplicated_ids: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"{self.sent} sent, {self.recorded} recorded, {self.lost} lost, {self.duplicated} duplicated"

    def ack_line(self) -> str:
        return (f"acknowledgements: {self.customers} customers, {self.acked_once} acknowledged once "
                f"({self.ack_missing} missing, {self.ack_extra_rows} extra rows, {self.ack_unsent} not sent); "
                f"maildir: {self.ack_files} files, {self.ack_files_missing} missing, "
                f"{self.ack_files_resent} re-sent copies")

    @property
    def records_ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.sent == self.recorded

    @property
    def acks_ok(self) -> bool:
        return (self.acked_once == self.customers and not self.ack_missing and not self.ack_extra_rows
                and not self.ack_unsent and not self.ack_files_missing)


def check(engine: Engine, mails: Sequence[Mail], maildir: Path) -> Figures:
    """Compare what was delivered with what the database and the Maildir hold."""
    expected = {m.message_id for m in mails}
    with engine.connect() as c:
        inbound = Counter(mid for (mid,) in c.execute(text("SELECT message_id FROM inbound")) if mid in expected)
        acks = list(c.execute(text("SELECT to_addr, status, message_id FROM outbox "
                                   "WHERE kind = 'acknowledgement'")))
    lost_ids = sorted(expected - set(inbound))
    dup_ids = sorted(mid for mid, n in inbound.items() if n > 1)
    customers = {m.sender.lower() for m in mails}
    per_customer = Counter(to for to, _status, _mid in acks if to in customers)
    unsent = sum(1 for to, status, _ in acks if to in customers and status != "sent")
    files = maildir_message_ids(maildir)
    ack_mids = [mid for to, _status, mid in acks if to in customers]
    return Figures(
        sent=len(mails), recorded=len(inbound), lost=len(lost_ids),
        duplicated=sum(n - 1 for n in inbound.values()),
        customers=len(customers), ack_rows_sent=len(acks) - unsent,
        acked_once=sum(1 for c in customers if per_customer[c] == 1),
        ack_missing=sum(1 for c in customers if per_customer[c] == 0),
        ack_extra_rows=sum(n - 1 for n in per_customer.values() if n > 1), ack_unsent=unsent,
        ack_files=sum(files[mid] for mid in ack_mids),
        ack_files_missing=sum(1 for mid in ack_mids if files[mid] == 0),
        ack_files_resent=sum(files[mid] - 1 for mid in ack_mids if files[mid] > 1),
        lost_ids=lost_ids[:20], duplicated_ids=dup_ids[:20])


def folder_counts(dovecot: Dovecot, user: str) -> dict[str, int]:
    """Messages per folder, and `INBOX unseen`."""
    out: dict[str, int] = {}
    with dovecot.client(user) as c:
        for name in ("INBOX", "Processed", "Quarantine"):
            if name == "INBOX" or c.folder_exists(name):
                st = c.folder_status(name, [b"MESSAGES", b"UNSEEN"])
                out[name] = int(st[b"MESSAGES"])
                if name == "INBOX":
                    out["INBOX unseen"] = int(st[b"UNSEEN"])
            else:
                out[name] = 0
    return out


def drained(engine: Engine, expected: int, ids: set[str]) -> tuple[bool, str]:
    """All expected mails recorded, and no outgoing mail due."""
    with engine.connect() as c:
        got = sum(1 for (mid,) in c.execute(text("SELECT DISTINCT message_id FROM inbound")) if mid in ids)
        pending = c.execute(text("SELECT count(*) FROM outbox WHERE status = 'pending'")).scalar_one()
    return got >= expected and pending == 0, f"{got}/{expected} recorded, {pending} outbox rows pending"


def wait_for(cond: Callable[[], tuple[bool, str]], timeout: float, every: float = 0.25) -> str:
    deadline = time.monotonic() + timeout
    while True:
        ok, state = cond()
        if ok:
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout:.0f} s: {state}")
        time.sleep(every)


# ---------------------------------------------------------------- databases
@contextlib.contextmanager
def database(kind: str, workdir: Path, keep: bool = False) -> Iterator[str]:
    """A fresh SQLite file, or a fresh PostgreSQL schema (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir}/mailbot.db"
        return
    with throwaway_schema("chaos", keep=keep) as url:
        yield url


# ---------------------------------------------------------------- the run
@dataclass
class ChaosResult:
    figures: Figures
    kills: int
    starts: int
    seconds: float
    folders: dict[str, int]
    clean_exit: int
    progress: Progress
    notes: list[str]

    @property
    def ok(self) -> bool:
        # Extra Maildir copies: none once the transport is idempotent; until then at most
        # one per kill (the one row being sent), which the report still prints.
        resent_ok = self.figures.ack_files_resent <= (0 if maildir_is_idempotent() else self.kills)
        return (self.figures.records_ok and self.figures.acks_ok and resent_ok and self.folders.get("INBOX", 1) == 0
                and self.folders.get("INBOX unseen", 1) == 0 and self.clean_exit == 0
                and not self.progress.permanent)

    def report(self) -> str:
        f = self.figures
        lines = [f.line(), f.ack_line(),
                 f"kills: {self.kills} SIGKILLs, {self.starts} starts; senders: {self.progress.smtp_250} "
                 f"SMTP 250, {self.progress.imap_appended} IMAP APPENDs, {self.progress.tempfails} 4xx, "
                 f"{self.progress.conn_errors} connection errors, {len(self.progress.permanent)} 5xx",
                 "imap: " + ", ".join(f"{k} {v}" for k, v in self.folders.items()),
                 f"final clean run exit code {self.clean_exit}; {self.seconds:.1f} s",
                 *self.notes]
        if f.lost_ids:
            lines.append(f"lost (first 20): {' '.join(f.lost_ids)}")
        if f.duplicated_ids:
            lines.append(f"duplicated (first 20): {' '.join(f.duplicated_ids)}")
        if f.ack_files_resent:
            lines.append("note: acknowledgements written to the Maildir more than once (a kill between "
                         "the transport's write and the commit marking the row sent)")
        return "\n".join(lines)


def run_chaos(n: int = 2000, kills: int = 20, db: str = "sqlite", imap_share: float = 0.4,
              uptime: tuple[float, float] = (0.5, 3.0), smtp_threads: int = 4, seed: int | None = None,
              dovecot: Dovecot | None = None, workdir: Path | None = None, timeout: float = 1800.0,
              keep: bool = False, say: Callable[[str], None] = lambda s: None) -> ChaosResult:
    """One chaos run; see the module docstring."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    own_dovecot = dovecot is None
    tmp = None
    if workdir is None:
        tmp = workdir = Path(tempfile.mkdtemp(prefix="mailbot-chaos-"))
    if own_dovecot:
        dovecot = Dovecot()
        dovecot.start()
    assert dovecot is not None
    try:
        with database(db, workdir, keep) as url:
            return _run(n, kills, url, imap_share, uptime, smtp_threads, rng, dovecot, workdir, timeout, t0, say)
    finally:
        if own_dovecot:
            dovecot.cleanup()
        if tmp is not None and not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _run(n: int, kills: int, url: str, imap_share: float, uptime: tuple[float, float], smtp_threads: int,
         rng: random.Random, dovecot: Dovecot, workdir: Path, timeout: float, t0: float,
         say: Callable[[str], None]) -> ChaosResult:
    tag = uuid.uuid4().hex[:8]
    n_imap = round(n * imap_share)
    smtp_mails = make_mails(tag, "smtp", n - n_imap)
    imap_mails = make_mails(tag, "imap", n_imap)
    mails = smtp_mails + imap_mails
    user, pw = dovecot.new_user("chaos")
    pw_file = dovecot.write_password_file(user, workdir / "imap.pw")
    port = free_port()
    maildir = workdir / "sent"
    cfg = write_config(
        workdir / "config.toml", workdir, url, port,
        imap=[{"host": dovecot.host, "port": dovecot.port, "tls": False, "username": user,
               "password_file": pw_file, "idle": True, "brand": "kalra-plus", "batch_size": 20}],
        outbound={"transport": "maildir", "path": str(maildir), "backoff_seconds": 1},
        scheduler={"outbox_interval": 0.5, "sla_interval": 5},
        limits={"ack_limit": 1000, "first_contact_acks": 100_000})
    daemon = DaemonProc(cfg, port, workdir / "mailbot.log")
    notes: list[str] = []
    progress, stop = Progress(), threading.Event()
    daemon.start()
    # Spread the arrivals over about the time the kills take, so they hit ingest, not idling.
    expected_span = kills * (sum(uptime) / 2 + 1.8) * 0.8
    senders = start_smtp_senders(smtp_mails, [port], smtp_threads, progress, stop,
                                 Pacer(len(smtp_mails), expected_span))
    appender = ImapAppender(dovecot, user, imap_mails, progress, stop,
                            target=lambda: min(1.0, (time.monotonic() - t0) / max(1.0, expected_span)))
    appender.start()
    done = 0
    try:
        # The kills go on while mail is being sent, up to twice the number asked for: on a loaded
        # machine a start-up takes seconds, and a daemon up a fifth of the time would be killed
        # forever. Then it stays up and the senders finish.
        while done < kills or (done < 2 * kills and (any(s.is_alive() for s in senders) or appender.is_alive())):
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"chaos run exceeded {timeout} s: {progress.delivered}/{n} delivered")
            time.sleep(rng.uniform(*uptime))
            daemon.kill()
            done += 1
            say(f"kill {done} at {time.monotonic() - t0:.1f} s: {progress.smtp_250} SMTP 250, "
                f"{progress.imap_appended} appended (slowest APPEND {appender.slowest:.2f} s)")
            daemon.start()
        for t in (*senders, appender):
            t.join()
            if t.error is not None:
                raise t.error
        # The final, clean run: wait until everything is recorded and sent, then SIGTERM.
        ids = {m.message_id for m in mails}
        engine = create_engine(url)
        try:
            state = wait_for(lambda: _drained_and_empty(engine, len(mails), ids, dovecot, user),
                             timeout=max(60.0, n / 10))
            say(f"drained: {state}")
            clean_exit = daemon.terminate()
            figures = check(engine, mails, maildir)
        finally:
            engine.dispose()
    finally:
        stop.set()
        daemon.kill()
    folders = folder_counts(dovecot, user)
    if progress.permanent:
        notes.append(f"5xx answers: {progress.permanent[:5]}")
    return ChaosResult(figures, done, daemon.starts, time.monotonic() - t0, folders, clean_exit, progress, notes)


def _drained_and_empty(engine: Engine, expected: int, ids: set[str], dovecot: Dovecot,
                       user: str) -> tuple[bool, str]:
    ok, state = drained(engine, expected, ids)
    if not ok:
        return ok, state
    inbox = folder_counts(dovecot, user)["INBOX"]
    return inbox == 0, f"{state}, {inbox} left in INBOX"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="mails in total (default 2000)")
    p.add_argument("--kills", type=int, default=20, help="at least this many SIGKILLs (default 20)")
    p.add_argument("--db", choices=("sqlite", "pg"), default="sqlite")
    p.add_argument("--imap-share", type=float, default=0.4, help="fraction of mails sent over IMAP")
    p.add_argument("--uptime", type=float, nargs=2, default=(0.5, 3.0), metavar=("MIN", "MAX"),
                   help="seconds the daemon lives between two kills, drawn uniformly (default 0.5 3.0)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the work directory / schema")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if args.verbose else (lambda s: None)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    result = run_chaos(args.n, args.kills, "sqlite" if args.db == "sqlite" else "pg", args.imap_share,
                       uptime=tuple(args.uptime), seed=args.seed, workdir=args.workdir, keep=args.keep, say=say)
    print(result.report())
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
