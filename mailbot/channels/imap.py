"""The IMAP poller: a mailbox in front of `ingest`.

What the poller promises (DESIGN.md, guarantees 1 and 2):

- mail is fetched with ``BODY.PEEK[]`` (nothing is marked read by fetching)
  through imapclient's parser (`imap_commands`);
- a message is marked ``\\Seen`` and moved out of the folder only after
  `ingest.record` returned, i.e. after the commit (meanwhile a helper thread
  fetches the batches after it, which workers analyse, and files away the
  batch committed before it: see `ImapPoller._pass`). It goes to
  ``quarantine_folder`` when its record says quarantined — also when it comes
  back as a duplicate after a broken connection — else to ``processed_folder``;
- when the database is unavailable the mail stays untouched in the folder
  and the poller backs off and retries;
- every pass looks at *everything* still in the folder (``SEARCH NOT
  DELETED``), not only at UIDs above the last one seen: a mail left behind by
  a crash between the commit and the move is simply handled again, and
  ingest's dedupe records it once. ``MailboxState`` keeps the UIDVALIDITY and
  the highest UID handled, so a UIDVALIDITY change is noticed and logged;
- a mail the server will not give (refused FETCH, NIL body) does not block
  the folder: it is left in place, logged at once, retried now and then, and
  listed by `mailbot imap check` (`imap_unfetchable`);
- between passes the poller waits in IDLE (`imap_idle`) until the server
  announces new mail (a higher EXISTS), else polls every ``poll_interval``;
  it never loops faster than ``poll_interval`` without new mail (`WakeUps`);
- on PostgreSQL one instance polls a mailbox at a time: the holder of a
  session advisory lock keyed on the account (`MailboxLock`).

`mailbot.channels.imap_check.reconcile` compares what the server holds with
what was recorded and is the safety net behind these promises.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, LoginError
from imapclient.imapclient import SocketTimeout
from sqlalchemy import Connection, Engine, text
from sqlmodel import col, select

from mailbot import db
from mailbot.app import App
from mailbot.channels import imap_commands
from mailbot.channels.imap_idle import Idle, MailboxWatch, WakeUps
from mailbot.channels.imap_unfetchable import Unfetchable
from mailbot.config import Config, ImapConfig
from mailbot.ingest.analysis import CHUNK, Pending
from mailbot.ingest.pipeline import (
    IngestResult,
    Outcome,
    Received,
    TemporaryFailure,
    prepare,
    record,
)
from mailbot.models import Inbound, MailboxState, utcnow

log = logging.getLogger("mailbot.imap")
# imapclient logs every literal it reads at DEBUG: that would put message
# bodies in the logs (guarantee 4). Passwords are redacted by imapclient itself.
logging.getLogger("imapclient").setLevel(logging.INFO)


@dataclass(frozen=True)
class Timings:
    """The poller's clocks, in seconds (tests shorten them)."""

    backoff_initial: float = 1.0  # connection/database errors: doubled up to backoff_max
    backoff_max: float = 300.0
    config_backoff: float = 600.0  # bad password, bad certificate: retried quietly, slowly
    idle_check: float = 1.0  # how often IDLE looks at stop() and the lock
    idle_renew: float = 20 * 60.0  # re-issue IDLE before servers drop it (RFC 9051: 29 min)
    lock_retry: float = 3.0  # PostgreSQL: how often a standby tries to take a mailbox over
    lock_check: float = 10.0  # how often the holder checks its lock connection is alive
    connect_timeout: float = 15.0
    read_timeout: float = 120.0
    unfetchable_retry: float = 15 * 60.0  # a mail the server will not give is tried again this often


class Backoff:
    """Exponential backoff with jitter: initial, doubled each failure, capped."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self.failures = 0

    def next(self) -> float:
        delay = min(self.maximum, self.initial * 2 ** min(self.failures, 30))
        self.failures += 1
        return delay / 2 + random.uniform(0, delay / 2)

    def reset(self) -> None:
        self.failures = 0


class CredentialsUnavailable(Exception):
    """The password could not be read (env var unset, file unreadable)."""


# ---------------------------------------------------------------- small helpers
def advisory_key(account: str) -> int:
    """A stable, non-negative 63-bit lock key for an account (fits PostgreSQL's bigint)."""
    return int.from_bytes(hashlib.sha256(account.encode()).digest()[:8], "big") >> 1


def mailbox_brand(config: Config, cfg: ImapConfig) -> str | None:
    """The brand a mailbox belongs to: configured, or the brand owning its address."""
    if cfg.brand:
        return cfg.brand
    brand = config.brand_for_address(cfg.username) if "@" in cfg.username else None
    return brand.key if brand else None


def source_of(cfg: ImapConfig) -> str:
    return f"imap:{cfg.username}/{cfg.folder}"


def tls_context(cfg: ImapConfig) -> ssl.SSLContext:
    """Certificate and host name verified by default; `verify_tls = false` turns both off."""
    ctx = ssl.create_default_context(cafile=cfg.ca_file)
    if not cfg.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(cfg: ImapConfig, timings: Timings = Timings()) -> IMAPClient:
    """A logged-in client (implicit TLS, STARTTLS or plain, as configured)."""
    try:
        password = cfg.password()
    except ValueError as exc:
        raise CredentialsUnavailable(str(exc)) from None
    ctx = tls_context(cfg) if cfg.tls or cfg.starttls else None
    client = IMAPClient(cfg.host, cfg.port, ssl=cfg.tls, ssl_context=ctx,
                        timeout=SocketTimeout(timings.connect_timeout, timings.read_timeout))
    try:
        if cfg.starttls and not cfg.tls:
            client.starttls(ctx)
        client.login(cfg.username, password)
    except BaseException:
        with contextlib.suppress(Exception):
            client.shutdown()
        raise
    client.normalise_times = False  # aware INTERNALDATEs
    return client


def ensure_folder(client: IMAPClient, folder: str) -> None:
    if folder.upper() == "INBOX" or client.folder_exists(folder):
        return
    try:
        client.create_folder(folder)
    except IMAPClient.Error:
        if not client.folder_exists(folder):  # created meanwhile by another client: fine
            raise
    log.info("created folder", extra={"folder": folder})


FETCH_AHEAD = 2  # batches fetched (and being analysed) ahead of the one being written
STATE_EVERY = 5.0  # seconds: during a pass, the last UID filed away is saved at most this often


def ramp(count: int) -> list[int]:
    """Sizes of a pass's first batches: a quarter, then half of `count`, so that the
    first write starts once a quarter batch is analysed rather than a whole one (a
    short backlog is drained sooner, the first acknowledgements go out sooner). Only
    when a quarter is still a whole chunk for the analysis workers."""
    return [count // 4, count // 2] if count // 4 >= CHUNK else []


def batches_by_size(uids: Sequence[int], sizes: dict[int, int], count: int, max_bytes: int,
                    first: Sequence[int] = ()) -> Iterator[list[int]]:
    """`uids` in batches of at most `count` mails and `max_bytes` bytes (by their
    RFC822.SIZE; a mail bigger than that is a batch of its own): up to three batches
    are in memory at once (one written, two fetched ahead). `first`: smaller counts
    for the first batches (see `ramp`)."""
    counts = iter(first)
    limit = next(counts, count)
    batch: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if batch and (len(batch) >= limit or total + size > max_bytes):
            yield batch
            batch, total = [], 0
            limit = next(counts, count)
        batch.append(uid)
        total += size
    if batch:
        yield batch


def _sizes(client: IMAPClient, uids: Sequence[int], small: int) -> dict[int, int]:
    """Sizes of `uids` for cutting batches: `small` for a mail of at most `small` bytes
    (an upper bound, so no batch passes its byte limit), the exact RFC822.SIZE of the
    others. One `SEARCH LARGER` finds those; only their sizes are fetched (in commands
    of bounded length, see `imap_commands.fetch`). With the defaults (`small` = 32 MB /
    100 = 320 KB) that is one round trip instead of one FETCH per 1,000 mails."""
    sizes = dict.fromkeys(uids, small)
    big = sorted(set(client.search(["NOT", "DELETED", "LARGER", str(small)])).intersection(sizes))
    if big:
        for uid, data in imap_commands.fetch(client, big, [b"RFC822.SIZE"]).data.items():
            if uid in sizes:
                sizes[uid] = int(data.get(b"RFC822.SIZE", small))  # type: ignore[call-overload]
    return sizes


def batched(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def as_utc(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError | IMAPClientAbortError | EOFError)


def describe_error(exc: BaseException) -> tuple[str, bool]:
    """(kind, persistent): persistent errors need an admin and are logged once."""
    if isinstance(exc, LoginError):
        return "authentication failed (check username and password)", True
    if isinstance(exc, CredentialsUnavailable):
        return f"password unavailable: {exc}", True
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate verification failed: {exc.verify_message} "
                "(set ca_file to the server's CA, or verify_tls = false)"), True
    if isinstance(exc, TemporaryFailure):
        return f"database unavailable, mail left in the folder: {exc}", False
    return f"{type(exc).__name__}: {str(exc)[:300]}", False


# ---------------------------------------------------------------- scale-out lock
class MailboxLock:
    """`pg_try_advisory_lock` held on a dedicated connection while this instance polls.

    The lock lives as long as that database session: if the holder dies, the
    server drops it and a standby takes over at its next try.
    """

    def __init__(self, engine: Engine, account: str, check_every: float) -> None:
        self.engine = engine
        self.key = advisory_key(account)
        self.account = account
        self.check_every = check_every
        self._conn: Connection | None = None
        self._checked = 0.0

    @property
    def held(self) -> bool:
        return self._conn is not None

    def acquire(self, verify: bool = False) -> bool:
        """True while this instance holds the lock (taking it when free).

        A held lock's session is checked every `check_every` seconds, or now with `verify`.
        """
        if self._conn is not None:
            return self._still_held(verify)
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(CAST(:k AS bigint))"),
                               {"k": self.key}).scalar()
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn, self._checked = conn, time.monotonic()
        log.info("mailbox lock taken", extra={"account": self.account})
        return True

    def _still_held(self, verify: bool) -> bool:
        assert self._conn is not None
        if not verify and time.monotonic() - self._checked < self.check_every:
            return True
        try:
            self._conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("mailbox lock lost: %s", str(exc).splitlines()[0][:200],
                        extra={"account": self.account})
            self._discard()
            return False
        self._checked = time.monotonic()
        return True

    def release(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(Exception):
            self._conn.execute(text("SELECT pg_advisory_unlock(CAST(:k AS bigint))"), {"k": self.key})
        self._discard()

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()  # never hand a lock-holding session back to the pool
                conn.close()


# ---------------------------------------------------------------- the poller
@dataclass(frozen=True)
class Committed:
    """A batch written to the database, not yet out of the folder."""

    uids: list[int]
    results: list[IngestResult]
    quarantine: list[bool]  # per mail: to the quarantine folder (else to the processed one)


def _recorded_quarantined(app: App, ids: set[int], shas: set[str]) -> tuple[set[int], set[str]]:
    """Of these inbound ids, those recorded as quarantined; of these sha256 (duplicates
    recorded concurrently, no id at hand), those whose every record is quarantined."""
    with db.read_scope(app.engine) as session:
        held = set(session.exec(select(Inbound.id).where(
            col(Inbound.id).in_(sorted(ids)), Inbound.outcome == "quarantined")).all()) if ids else set()
        rows = session.exec(select(Inbound.sha256, Inbound.outcome).where(
            col(Inbound.sha256).in_(sorted(shas)))).all() if shas else []
    not_held = {sha for sha, outcome in rows if outcome != "quarantined"}
    return {i for i in held if i is not None}, {sha for sha, _ in rows} - not_held


class ImapPoller:
    """Polls one mailbox in its own thread (`start`/`stop`), or once (`poll_once`)."""

    def __init__(self, app: App, cfg: ImapConfig, timings: Timings = Timings()) -> None:
        if cfg.processed_folder == cfg.folder or cfg.quarantine_folder == cfg.folder:
            raise ValueError(f"imap {cfg.account_key}: processed_folder and quarantine_folder "
                             f"must differ from folder {cfg.folder!r}")
        self.app = app
        self.cfg = cfg
        self.timings = timings
        self.source = source_of(cfg)
        self.brand = mailbox_brand(app.config, cfg)
        self.lock = (MailboxLock(app.engine, cfg.account_key, timings.lock_check)
                     if app.engine.dialect.name == "postgresql" else None)
        self._client: IMAPClient | None = None
        self._known_uidvalidity: int | None = None
        self._top_uid = 0  # the highest UID filed away in this pass, and when it was last saved
        self._saved_at = 0.0
        self._stop = threading.Event()
        self._idling = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported: str | None = None
        self._backoff = Backoff(timings.backoff_initial, timings.backoff_max)
        self._slow = Backoff(timings.config_backoff, max(timings.config_backoff, 3600.0))
        self._watch = MailboxWatch()  # what the server said of the folder's size: new mail or not
        self._wakeups = WakeUps(cfg.poll_interval, extra=self._log_extra)
        self._woken_by = "start"  # what ended the last wait (for the loop detector's log line)
        self._idle_refused = False  # the server answered IDLE with NO/BAD on this connection
        self._top_seen = 0  # the highest UID seen in the folder (a higher one is new mail)
        self._found_new = False  # the last pass saw a UID above it
        self.unfetchable = Unfetchable(app, cfg.account_key, timings.unfetchable_retry)
        # Figures for tests, metrics and `status`:
        self.connects = 0
        self.failures = 0
        self.handled = 0
        self.last_error: str | None = None

    @property
    def _log_extra(self) -> dict[str, object]:
        return {"account": self.cfg.account_key}

    # -- thread control ------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"imap:{self.cfg.username}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to finish (IDLE notices within `Timings.idle_check`) and wait."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("imap poller did not stop in time", extra=self._log_extra)
        else:
            self.close()

    def wait_idle(self, timeout: float) -> bool:
        """True once the thread is waiting in IDLE (for tests)."""
        return self._idling.wait(timeout)

    def close(self) -> None:
        """Log out and release the mailbox lock."""
        self._disconnect(polite=True)
        if self.lock is not None:
            self.lock.release()

    # -- one pass --------------------------------------------------------------
    def poll_once(self) -> int:
        """Handle everything now in the folder once; return how many messages were handled.

        Returns 0 without touching the mailbox when another instance holds it
        (PostgreSQL). Raises `TemporaryFailure` when the database is down
        (the mail stays in the folder, unseen), and the IMAP/TLS error when
        the server cannot be used. The connection is kept for the next call.
        """
        if not self._hold_lock():
            return 0
        reused = self._client is not None
        try:
            return self._pass()
        except TemporaryFailure:
            raise
        except Exception as exc:
            self._disconnect(polite=False)
            if not (reused and _is_connection_error(exc)):
                raise
        return self._pass_or_disconnect()  # the kept connection had died: one fresh try

    def _pass_or_disconnect(self) -> int:
        try:
            return self._pass()
        except TemporaryFailure:
            raise
        except Exception:
            self._disconnect(polite=False)
            raise

    def _hold_lock(self) -> bool:
        if self.lock is None:
            return True
        try:
            held = self.lock.acquire(verify=True)  # before each pass: is our session alive?
        except db.TRANSIENT_DB_ERRORS as exc:
            raise TemporaryFailure(str(exc).splitlines()[0][:300]) from exc
        if not held:
            self._disconnect(polite=True)
        return held

    def _connection(self) -> IMAPClient:
        if self._client is None:
            client = connect(self.cfg, self.timings)
            try:
                ensure_folder(client, self.cfg.processed_folder)
                ensure_folder(client, self.cfg.quarantine_folder)
            except BaseException:
                with contextlib.suppress(Exception):
                    client.shutdown()
                raise
            self._client = client
            self._idle_refused = False
            self.connects += 1
            log.info("imap connected", extra={**self._log_extra, "connects": self.connects})
        return self._client

    def _disconnect(self, polite: bool) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if polite:
                client.logout()
            else:
                client.shutdown()
        except Exception:
            with contextlib.suppress(Exception):
                client.shutdown()

    def _pass(self) -> int:
        """One pass over the folder, in batches, as a pipeline: while this thread writes
        a batch, the workers analyse the next two, and a helper thread does the IMAP
        side (files away the batch committed last, fetches a new one). The commit does
        not wait for Dovecot, and the workers always have a batch queued. Still one
        IMAP command at a time: the helper is joined before the connection is used
        for anything else. Mails the server will not give are left out, and tried
        again alone when due (`Unfetchable`)."""
        client = self._connection()
        info = client.select_folder(self.cfg.folder)
        uidvalidity = int(info[b"UIDVALIDITY"])
        self._watch.selected(client, int(info.get(b"EXISTS", 0)))
        self._saved_at = time.monotonic()
        in_folder = sorted(client.search(["NOT", "DELETED"]))
        self._load_unfetchable(uidvalidity)
        self._found_new = bool(in_folder) and in_folder[-1] > self._top_seen
        self._top_seen = max([self._top_seen, *in_folder[-1:]])
        uids, retries = self.unfetchable.split(in_folder)
        small = max(1, self.cfg.batch_bytes // self.cfg.batch_size)  # a batch of such mails is within both limits
        chunks = itertools.chain(
            batches_by_size(uids, _sizes(client, uids, small) if uids else {}, self.cfg.batch_size,
                            self.cfg.batch_bytes, first=ramp(self.cfg.batch_size)),
            ([uid] for uid in retries))

        def next_chunk() -> list[int] | None:
            return None if self._stop.is_set() else next(chunks, None)

        handled = 0
        fetched: deque[tuple[list[int], Pending]] = deque()  # being analysed (mailbot.ingest.analysis)
        if (first := next_chunk()) is not None and (batch := self._fetch(client, first)) is not None:
            fetched.append(batch)  # the workers start on it while the UIDVALIDITY is checked
        self._check_uidvalidity(uidvalidity)
        committed: Committed | None = None  # not filed away yet
        with ThreadPoolExecutor(1, thread_name_prefix="imap-io") as io:
            while True:
                batch = fetched.popleft() if fetched else None
                ahead = [c for c in (next_chunk() for _ in range(FETCH_AHEAD - len(fetched))) if c is not None]
                if batch is None and not ahead:
                    break
                imap = io.submit(self._imap_step, client, committed, ahead)
                try:
                    now_committed = self._record(*batch) if batch is not None else None
                except BaseException:
                    wait([imap])  # the helper ends before the connection is given up
                    if committed is not None and imap.exception() is None:
                        with contextlib.suppress(Exception):  # filed away: count it if we can
                            handled += self._filed(uidvalidity, committed)
                            self._save_progress(uidvalidity)
                    raise
                upcoming = imap.result()
                if committed is not None:
                    handled += self._filed(uidvalidity, committed)
                committed = now_committed
                fetched.extend(upcoming)
        if committed is not None:
            self._file_away(client, committed.uids, committed.quarantine)
            handled += self._filed(uidvalidity, committed)
        self._save_progress(uidvalidity)
        return handled

    def _record(self, uids: list[int], pending: Pending) -> Committed:
        """Write a batch (the commit) and decide where each of its mails goes."""
        results = record(self.app, pending)
        return Committed(uids, results, self._quarantined(results))

    def _quarantined(self, results: list[IngestResult]) -> list[bool]:
        """For each committed mail, whether it goes to the quarantine folder: it was
        quarantined now, or — a duplicate, e.g. fetched again after a connection broke
        between the commit and the move — it was recorded as quarantined then."""
        again = [r for r in results if r.outcome is Outcome.DUPLICATE]
        if not again:
            return [r.quarantined for r in results]
        try:
            held_ids, held_shas = _recorded_quarantined(
                self.app, {r.inbound_id for r in again if r.inbound_id},
                {r.sha256 for r in again if not r.inbound_id and r.sha256})
        except db.TRANSIENT_DB_ERRORS as exc:
            raise TemporaryFailure(str(exc).splitlines()[0][:300]) from exc
        return [r.quarantined or (r.outcome is Outcome.DUPLICATE
                                  and (r.inbound_id in held_ids if r.inbound_id else r.sha256 in held_shas))
                for r in results]

    def _imap_step(self, client: IMAPClient, committed: Committed | None,
                   chunks: list[list[int]]) -> list[tuple[list[int], Pending]]:
        """The helper thread's part of a round: file away what was committed, then fetch
        the next batches (two in the first round, while the first batch is written;
        one in each round after it)."""
        if committed is not None:
            self._file_away(client, committed.uids, committed.quarantine)
        return [batch for chunk in chunks if (batch := self._fetch(client, chunk)) is not None]

    def _fetch(self, client: IMAPClient, uids: list[int]) -> tuple[list[int], Pending] | None:
        """FETCH a batch and start its analysis (in the workers, see `analysis.submit`)."""
        got = imap_commands.fetch_bodies(client, uids)
        self.unfetchable.refused(client, self.cfg.folder, got.refused)
        present = [uid for uid in uids if uid in got.mails]  # others vanished meanwhile, or refused
        self.unfetchable.fetched(present)
        if not present:
            return None
        items = [Received(got.mails[uid][0], self.source, received_at=as_utc(got.mails[uid][1]),
                          mailbox_brand=self.brand) for uid in present]
        return present, prepare(self.app, items)

    def _filed(self, uidvalidity: int, committed: Committed) -> int:
        """Bookkeeping once a committed batch is out of the folder. The last UID is saved
        (its own small transaction, with its fsync) at most every STATE_EVERY
        seconds and at the end of the pass, not after each batch: it is for people
        reading the table, nothing depends on it."""
        present, results = committed.uids, committed.results
        self._top_uid = max(self._top_uid, max(present))
        if time.monotonic() - self._saved_at >= STATE_EVERY:
            self._save_progress(uidvalidity)
        self.handled += len(present)
        log.info("imap batch ingested", extra={
            **self._log_extra, "count": len(present),
            "quarantined": sum(committed.quarantine),
            "cases": sorted({ref for r in results for ref in r.case_refs})[:20]})
        return len(present)

    def _file_away(self, client: IMAPClient, uids: list[int], quarantine: list[bool]) -> None:
        """After the commit: \\Seen, then out of the folder."""
        imap_commands.mark_seen(client, uids)
        imap_commands.move(client, [u for u, q in zip(uids, quarantine, strict=True) if not q],
                           self.cfg.processed_folder)
        imap_commands.move(client, [u for u, q in zip(uids, quarantine, strict=True) if q],
                           self.cfg.quarantine_folder)

    # -- MailboxState ----------------------------------------------------------
    def _check_uidvalidity(self, uidvalidity: int) -> None:
        if uidvalidity == self._known_uidvalidity:
            return
        try:
            with db.session_scope(self.app.engine) as session:
                state = session.get(MailboxState, self.cfg.account_key)
                if state is None:
                    state = MailboxState(account=self.cfg.account_key, uidvalidity=uidvalidity)
                elif state.uidvalidity != uidvalidity:
                    if state.uidvalidity is not None:
                        log.warning("UIDVALIDITY changed: rescanning the folder", extra={
                            **self._log_extra, "old_uidvalidity": state.uidvalidity,
                            "uidvalidity": uidvalidity, "old_last_uid": state.last_uid})
                    state.uidvalidity, state.last_uid = uidvalidity, 0
                else:
                    self._known_uidvalidity = uidvalidity
                    return
                state.updated_at = utcnow()
                session.add(state)
        except db.TRANSIENT_DB_ERRORS as exc:
            raise TemporaryFailure(str(exc).splitlines()[0][:300]) from exc
        self._known_uidvalidity = uidvalidity

    def _save_progress(self, uidvalidity: int) -> None:
        if self._top_uid:
            self._save_state(uidvalidity, self._top_uid)
            self._top_uid = 0
        try:
            self.unfetchable.save()
        except db.TRANSIENT_DB_ERRORS as exc:
            raise TemporaryFailure(str(exc).splitlines()[0][:300]) from exc
        self._saved_at = time.monotonic()

    def _load_unfetchable(self, uidvalidity: int) -> None:
        if uidvalidity != self.unfetchable.uidvalidity:
            self._top_seen = 0
        try:
            self.unfetchable.load(uidvalidity)
        except db.TRANSIENT_DB_ERRORS as exc:
            raise TemporaryFailure(str(exc).splitlines()[0][:300]) from exc

    def _save_state(self, uidvalidity: int, top_uid: int) -> None:
        try:
            with db.session_scope(self.app.engine) as session:
                state = session.get(MailboxState, self.cfg.account_key) or MailboxState(
                    account=self.cfg.account_key)
                if state.uidvalidity != uidvalidity:
                    state.uidvalidity, state.last_uid = uidvalidity, 0
                state.last_uid = max(state.last_uid, top_uid)
                state.updated_at = utcnow()
                session.add(state)
        except db.TRANSIENT_DB_ERRORS as exc:
            # The mail is recorded and filed away already; only the bookkeeping waits.
            raise TemporaryFailure(str(exc).splitlines()[0][:300]) from exc

    # -- the thread ------------------------------------------------------------
    def _run(self) -> None:
        log.info("imap poller started", extra={**self._log_extra, "brand": self.brand})
        try:
            while not self._stop.is_set():
                try:
                    delay = self._cycle()
                except Exception as exc:
                    self._disconnect(polite=False)
                    persistent = self._failed(exc)
                    delay = self._slow.next() if persistent else self._backoff.next()
                if delay:
                    self._stop.wait(delay)
        finally:
            self.close()
            log.info("imap poller stopped", extra=self._log_extra)

    def _cycle(self) -> float:
        """Drain the folder then wait for mail; return how long to sleep before the next cycle."""
        if not self._hold_lock():
            return self.timings.lock_retry
        found = False
        while not self._stop.is_set():
            handled = self._pass()
            found = found or bool(handled) or self._found_new
            if not handled:
                break  # (after a pass that handled mail, one more: more may have come meanwhile)
        self._recovered()
        client = self._connection()
        pause = self._wakeups.pause(found, self._woken_by)
        if pause:
            self._woken_by = f"poll_interval ({pause:g} s)"
            return pause
        if self._watch.after_commands(client):  # announced during our last commands
            self._woken_by = self._watch.signal
            return 0.0
        if self.cfg.idle and not self._idle_refused and client.has_capability("IDLE"):
            self._woken_by = self._idle(client)
            return 0.0
        self._woken_by = f"poll_interval ({self.cfg.poll_interval:g} s)"
        return self.cfg.poll_interval

    def _idle(self, client: IMAPClient) -> str:
        """Wait in IDLE; return what ended it (new mail, renewal, the server, …)."""
        idle = Idle(client, self._watch)
        reason = idle.start()
        if reason is None:
            self._idling.set()
            try:
                reason = self._idle_wait(idle)
            finally:
                self._idling.clear()
        idle.done()
        if reason == "new mail":
            reason = f"new mail: {self._watch.signal}"
        elif reason.startswith("refused"):
            self._idle_refused = True
            log.warning("imap server %s IDLE; polling every %g s on this connection",
                        reason, self.cfg.poll_interval, extra={**self._log_extra, "event": "imap.idle_refused"})
        return reason

    def _idle_wait(self, idle: Idle) -> str:
        """Return on new mail, stop(), loss of the lock, the server ending IDLE, or
        renewal time."""
        started = time.monotonic()
        while not self._stop.is_set():
            reason = idle.wait(self.timings.idle_check)
            if reason is not None:
                return reason
            if time.monotonic() - started > self.timings.idle_renew:
                return "IDLE renewal"
            if self.lock is not None and not self.lock.acquire():
                return "mailbox lock lost"
        return "stop"

    def _failed(self, exc: Exception) -> bool:
        kind, persistent = describe_error(exc)
        self.failures += 1
        self.last_error = kind
        if persistent:
            if self._reported != kind:  # once, clearly; then quietly until it changes
                log.error("imap %s", kind, extra={**self._log_extra, "error": type(exc).__name__})
                self._reported = kind
            else:
                log.debug("imap still failing: %s", kind, extra=self._log_extra)
        elif isinstance(exc, TemporaryFailure) or _is_connection_error(exc):
            log.warning("imap %s", kind, extra={**self._log_extra, "error": type(exc).__name__})
        else:
            log.exception("imap poller error", extra=self._log_extra)
        return persistent

    def _recovered(self) -> None:
        self._backoff.reset()
        self._slow.reset()
        if self.last_error is not None:
            log.info("imap poller recovered", extra={**self._log_extra, "after": self.last_error})
        self.last_error = None
        self._reported = None
