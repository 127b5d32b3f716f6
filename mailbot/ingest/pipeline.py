"""The one write path: raw bytes from any channel → a recorded, routed message.

    store raw bytes → dedupe → parse → classify → route (brand, case) → extract
    → write message, attachments, events and outgoing mail in ONE transaction

`ingest` never raises for a bad mail: whatever cannot be parsed or handled
becomes a quarantine row holding the raw bytes and a reason. It raises
`TemporaryFailure` only when the database itself is unavailable — the caller
then answers "retry later" (SMTP 451, sysexit 75, IMAP leaves the mail).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from sqlalchemy import bindparam, insert, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from mailbot import blobs, counters, db
from mailbot.app import App
from mailbot.cases import references, search_index
from mailbot.cases.conversations import handle_automatic, handle_customer, prepare_batch
from mailbot.ingest import analysis
from mailbot.ingest.analysis import Analysis, Received
from mailbot.mail.classify import Verdict, classify
from mailbot.mail.parsing import clamp_date
from mailbot.mail.routing import BrandRoute, route_brands
from mailbot.models import Inbound, InboundRow, Quarantine
from mailbot.prepared import Prepared

__all__ = ["IngestResult", "Outcome", "Received", "TemporaryFailure", "ingest", "ingest_batch",
           "ingest_stream", "prepare", "record"]

log = logging.getLogger("mailbot.ingest")


class Outcome(StrEnum):
    CASE_OPENED = "case_opened"
    FOLLOWUP = "followup"
    AUTOMATIC = "automatic"
    OWN = "own"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


class TemporaryFailure(Exception):
    """The database is unavailable: nothing was recorded, the source must retry."""


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    reason: str
    inbound_id: int | None = None
    case_refs: tuple[str, ...] = ()
    sha256: str = ""
    detail: str = ""  # finer than the outcome, for the log (an agent's mail: see InboundRow.handled)

    @property
    def quarantined(self) -> bool:
        return self.outcome is Outcome.QUARANTINED

    @property
    def event(self) -> str:
        """The log's name for what became of the mail (docs/operations.md, "Logs")."""
        return "mail." + (self.detail or _EVENTS[self.outcome])


_EVENTS = {Outcome.CASE_OPENED: "case_opened", Outcome.FOLLOWUP: "customer_reply",
           Outcome.AUTOMATIC: "automatic", Outcome.OWN: "own_mail", Outcome.DUPLICATE: "duplicate",
           Outcome.QUARANTINED: "quarantined"}
# What an admin should look at: the rest is INFO.
_WARN_EVENTS = frozenset({"mail.quarantined", "mail.command_rejected", "mail.forgery_refused"})
_ADDRESS = re.compile(r"[^\s<>\"'(),;:]+@(?=[\w.-]+)")


def log_results(works: Sequence[_Work], results: Sequence[IngestResult]) -> None:
    """One line per mail once it is committed: its event, source, inbound row and cases
    (never its text; addresses in a reason keep only their domain)."""
    for work, r in zip(works, results, strict=False):
        extra: dict[str, object] = {"event": r.event, "source": work.item.source, "inbound": r.inbound_id,
                                    "refs": list(r.case_refs)}
        if r.outcome in (Outcome.QUARANTINED, Outcome.AUTOMATIC, Outcome.OWN) or r.detail:
            extra["reason"] = _ADDRESS.sub("…@", r.reason)[:300]
        level = logging.WARNING if r.event in _WARN_EVENTS else logging.INFO
        what = r.event.removeprefix("mail.").replace("_", " ")
        log.log(level, "%s: %s", what, " ".join(r.case_refs) or f"inbound {r.inbound_id}", extra=extra)


@dataclass
class _Work:
    item: Received
    a: Analysis  # what mailbot.ingest.analysis found
    results: list[IngestResult] = field(default_factory=list)
    _routes: list[BrandRoute] | None = None

    def routes(self, app: App) -> list[BrandRoute]:
        """The brands the (parsed) mail is for, worked out once."""
        if self._routes is None:
            assert self.a.parsed is not None
            self._routes = route_brands(app.config, self.a.parsed, self.item.envelope_to,
                                        self.item.mailbox_brand)
        return self._routes

    def is_new_customer_mail(self, app: App, known: dict[str, int]) -> bool:
        """Will be handled as a human's mail: parsed, not automatic, not recorded
        already, addressed to a brand."""
        return (self.a.parsed is not None and self.a.verdict is not None and not self.a.verdict.automatic
                and not any(k in known for k in _keys(self)) and bool(self.routes(app)))


def ingest(app: App, raw: bytes, source: str, *, envelope_from: str | None = None,
           envelope_to: Sequence[str] = (), received_at: datetime | None = None,
           mailbox_brand: str | None = None) -> IngestResult:
    """Record one raw mail; see the module docstring for the guarantees."""
    item = Received(raw, source, envelope_from, tuple(envelope_to), received_at, mailbox_brand)
    return ingest_batch(app, [item])[0]


def ingest_batch(app: App, items: Sequence[Received]) -> list[IngestResult]:
    """Record several mails in one transaction (see `_commit_many`)."""
    return record(app, prepare(app, items))


def ingest_stream(app: App, batches: Iterable[Sequence[Received]]
                  ) -> Iterator[tuple[Sequence[Received], list[IngestResult]]]:
    """`ingest_batch` over a stream of batches, pipelined: batch k+1 is analysed (in
    worker processes, see mailbot.ingest.analysis) while batch k is written. Yields each
    batch with its results once it is committed."""
    pending: analysis.Pending | None = None
    for items in batches:
        upcoming = prepare(app, items)
        if pending is not None:
            yield pending.items, record(app, pending)
        pending = upcoming
    if pending is not None:
        yield pending.items, record(app, pending)


def prepare(app: App, items: Sequence[Received]) -> analysis.Pending:
    """Start the CPU half of ingesting a batch (in worker processes when configured):
    a channel can fetch the next batch, or write the previous one, meanwhile."""
    now = app.now()
    stamped = [replace(it, received_at=clamp_date(it.received_at) if it.received_at else now) for it in items]
    return analysis.submit(app.config, stamped)


def record(app: App, pending: analysis.Pending) -> list[IngestResult]:
    """Write an analysed batch in one transaction; returns once it is committed."""
    results = pending.result()
    return _record_works(app, [_Work(it, a) for it, a in zip(pending.items, results, strict=True)])


class GroupCommit:
    """One mail per caller, written together with the mails other threads hand in at
    the same time (SMTP sessions): each call returns once its own mail is committed,
    but concurrent mails share one transaction instead of queueing for one each.

    The caller analyses its mail itself; then, if no group is being written, it
    writes every mail waiting (its own included) as one batch, with the batch's
    fallbacks (a mail that breaks the batch is recorded alone, and only it is
    quarantined); otherwise it waits for the writer and, unless the writer took its
    mail, writes the next group. A failure of the whole transaction (database down
    or locked) is every caller's `TemporaryFailure`: nothing of the group is recorded.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self._cond = threading.Condition()
        self._waiting: list[_Slot] = []
        self._writing = False
        self.groups = 0  # transactions written (groups of one included): for tests and metrics

    def ingest(self, item: Received) -> IngestResult:
        pending = prepare(self.app, [item])  # a single mail: analysed here, at once
        slot = _Slot(_Work(pending.items[0], pending.result()[0]))
        with self._cond:
            self._waiting.append(slot)
            while self._writing and not slot.settled:
                self._cond.wait()
            if slot.settled:
                return slot.outcome()
            group, self._waiting, self._writing = self._waiting, [], True
        try:
            results = _record_works(self.app, [s.work for s in group])
            for s, result in zip(group, results, strict=True):
                s.result = result
        except BaseException as exc:  # every caller of the group hears it
            for s in group:
                s.error = exc
        finally:
            with self._cond:
                self.groups += 1
                for s in group:
                    s.settled = True
                self._writing = False
                self._cond.notify_all()
        return slot.outcome()


@dataclass
class _Slot:
    work: _Work
    settled: bool = False
    result: IngestResult | None = None
    error: BaseException | None = None

    def outcome(self) -> IngestResult:
        """The mail's result, or the group's failure (a new exception per caller)."""
        if isinstance(self.error, TemporaryFailure):
            raise TemporaryFailure(str(self.error)) from self.error
        if self.error is not None:
            raise RuntimeError(f"writing the group failed: {type(self.error).__name__}: {self.error}") from self.error
        assert self.result is not None
        return self.result


def _record_works(app: App, works: list[_Work]) -> list[IngestResult]:
    try:
        results = _commit_with_retries(app, works)
        log_results(works, results)
        _count(app, results)
        return results
    except IntegrityError:
        raise  # never transient: the same delivery would collide again, forever
    except db.TRANSIENT_DB_ERRORS as exc:
        cause = _transient_cause(exc) or exc  # name the real cause (e.g. disk full)
        raise TemporaryFailure(str(cause).splitlines()[0][:300]) from exc


def _count(app: App, results: list[IngestResult]) -> None:
    """The committed outcomes, for /metrics (mailbot.counters)."""
    brand_of = {b.prefix: b.key for b in app.config.brands}
    for r in results:
        counters.MAILS_IN.labels(outcome=r.outcome.value).inc()
        if r.outcome is Outcome.CASE_OPENED:
            for ref in r.case_refs:
                counters.CASES_OPENED.labels(brand=brand_of.get(ref.split("-", 1)[0], "")).inc()


def _commit_with_retries(app: App, works: list[_Work], attempts: int = 6) -> list[IngestResult]:
    """Concurrent writers may collide (same mail delivered twice at once, a new
    counter row, a deadlock): redo; a mail recorded meanwhile is a duplicate. A
    batch that collides is recorded mail by mail; a mail that still collides after
    the retries is quarantined (a constraint it breaks every time is not "retry
    later": the source would deliver it again forever)."""
    collision: IntegrityError | None = None
    for attempt in range(attempts):
        try:
            return _commit(app, works)
        except IntegrityError as exc:
            if len(works) > 1:
                return [r for w in works for r in _commit_with_retries(app, [w])]
            if _already_recorded(app, works[0]):
                return _duplicate(works[0])
            collision = exc
        except OperationalError as exc:
            if attempt == attempts - 1 or not _is_retryable(exc):
                raise
        time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
    assert collision is not None
    with db.session_scope(app.engine) as session:
        _quarantine_after_error(session, app, works[0], collision)
    return works[0].results


def _is_retryable(exc: BaseException) -> bool:
    """Worth an immediate retry. A locked SQLite database is not: the busy timeout
    already waited, and the source should hear "retry later" now."""
    text = str(exc).lower()
    return any(s in text for s in ("deadlock", "could not serialize"))


def _duplicate(work: _Work) -> list[IngestResult]:
    return [IngestResult(Outcome.DUPLICATE, "recorded concurrently", None, (), work.a.digest)]


def _already_recorded(app: App, work: _Work) -> bool:
    with db.session_scope(app.engine) as session:
        return _find_recorded(session, work) is not None


def _commit(app: App, works: list[_Work]) -> list[IngestResult]:
    for w in works:
        w.results = []
    if len(works) == 1:
        return _commit_one(app, works[0])
    return _commit_many(app, works)


def _commit_many(app: App, works: list[_Work]) -> list[IngestResult]:
    """All mails in one transaction, no savepoints, indexed for search once at the end
    (the fast path, mailbot.cases.search_index). If handling one of them fails for a
    reason that is not the database's, the transaction is rolled back and each mail is
    recorded on its own, so only the faulty one is quarantined."""
    try:
        with (db.session_scope(app.engine) as session, search_index.deferred(session),
              db.batched_writes(session)):
            _write_batch(session, app, works)
        return [w.results[0] for w in works]
    except IntegrityError:
        raise
    except Exception as exc:
        if _is_transient(exc) or (isinstance(exc, OperationalError) and _is_retryable(exc)):
            raise
        log.warning("batch of %d failed (%s: %s); recording its mails one by one",
                    len(works), type(exc).__name__, str(exc)[:200])
    return [r for w in works for r in _commit_one(app, w)]


def _write_batch(session: Session, app: App, works: list[_Work]) -> None:
    known = _prefetch_known(session, works)
    # Only the senders whose mail will be handled: a duplicate or a mail for no
    # brand must not clear a bounce mark (as on the one-mail path).
    prepare_batch(session, app, [w.a.parsed.from_addr for w in works  # type: ignore[union-attr]
                                 if w.is_new_customer_mail(app, known)])
    with references.reserving(session, len(works)):
        for w in works:
            w.results = [_record(session, app, w)]


def _commit_one(app: App, work: _Work) -> list[IngestResult]:
    """One mail, one transaction (no savepoint); a bug quarantines it in a new one."""
    work.results = []
    try:
        with db.session_scope(app.engine) as session, db.batched_writes(session):
            work.results = [_record(session, app, work)]
        return work.results
    except (IntegrityError, OperationalError):
        raise
    except Exception as exc:
        with db.session_scope(app.engine) as session:
            _quarantine_after_error(session, app, work, exc)
        return work.results


def _is_transient(exc: BaseException) -> bool:
    """The database cannot take writes now (down, locked, full): the whole delivery is
    retried later; the mail itself is fine and must not be quarantined.

    Looks down the exception chain: on SQLITE_FULL SQLite rolls the whole transaction
    back, so leaving the savepoint fails with "no such savepoint" whose context is
    the real cause."""
    return _transient_cause(exc) is not None


def _transient_cause(exc: BaseException) -> BaseException | None:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if _is_transient_one(cur):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def _is_transient_one(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    if str(getattr(orig, "sqlite_errorname", "") or "").startswith((
            "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN",
            "SQLITE_READONLY")):  # extended codes too, e.g. SQLITE_IOERR_WRITE
        return True
    # PostgreSQL: 08 connection exception, 53 insufficient resources (disk full), 57P shutdown
    if str(getattr(orig, "sqlstate", "") or "").startswith(("08", "53", "57P")):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("database is locked", "unable to open", "connection", "disk i/o",
                                   "server closed", "terminating", "could not connect", "readonly",
                                   "database or disk is full", "no space left"))


def _quarantine_after_error(session: Session, app: App, work: _Work, exc: BaseException) -> None:
    log.error("ingest failed, quarantining sha256=%s", work.a.digest[:12], exc_info=exc)
    reason = f"internal error while handling: {type(exc).__name__}: {db.without_values(str(exc))[:300]}"
    work.results[:] = [_quarantine(session, app, work, reason, key_suffix=_ERROR)]


_FIND_INBOUNDS = select(Inbound.dedupe_key, Inbound.id).where(
    col(Inbound.dedupe_key).in_(bindparam("keys", expanding=True)))
_ERROR = "|error"  # the key's suffix when the mail was quarantined after handling it failed


def _keys(work: _Work) -> tuple[str, str]:
    """The keys under which this mail may be recorded already: handled, or quarantined
    after an error (its redelivery is then a duplicate, not the same failure again)."""
    return work.a.dedupe_key, work.a.dedupe_key + _ERROR


def _find_recorded(session: Session, work: _Work) -> int | None:
    rows = dict(session.connection().execute(_FIND_INBOUNDS, {"keys": list(_keys(work))}).all())
    return next((rows[k] for k in _keys(work) if k in rows), None)


def _prefetch_known(session: Session, works: list[_Work]) -> dict[str, int]:
    """One query for the whole batch instead of one per mail; `_inbound` adds each key
    it writes, so a mail twice in one batch is still recorded once."""
    keys = sorted({k for w in works for k in _keys(w)})
    known = session.info["known_inbound"] = dict(session.connection().execute(_FIND_INBOUNDS, {"keys": keys}).all())
    return dict(known)


def _record(session: Session, app: App, work: _Work) -> IngestResult:
    known = session.info.get("known_inbound")
    if known is not None:  # the batch's keys were looked up at once
        existing = next((known[k] for k in _keys(work) if k in known), None)
    else:
        existing = _find_recorded(session, work)
    if existing is not None:
        return IngestResult(Outcome.DUPLICATE, f"already recorded as inbound #{existing}", existing,
                            (), work.a.digest)
    if work.a.parsed is None:
        return _quarantine(session, app, work, f"unparseable: {work.a.parse_error}")
    parsed, item = work.a.parsed, work.item
    routes = work.routes(app)
    if not routes:
        return _quarantine(session, app, work, "no brand address among the recipients")
    verdict = work.a.verdict or classify(parsed.message, envelope_from=item.envelope_from,
                                       own_addresses=app.config.own_addresses)
    inbound = _inbound(session, app, work, "pending", verdict.reason)
    received_at = item.received_at or app.now()
    if verdict.kind == "own":
        _finish(session, inbound, "own")
        return IngestResult(Outcome.OWN, verdict.reason, inbound.id, (), work.a.digest)
    if verdict.automatic:
        refs = handle_automatic(session, app, inbound, parsed, routes, verdict, received_at)
        _finish(session, inbound, "automatic")
        return IngestResult(Outcome.AUTOMATIC, verdict.reason, inbound.id, refs, work.a.digest)
    opened, refs = handle_customer(session, app, inbound, parsed, routes, received_at, work.a.facts,
                                   work.a.openings, item.envelope_from)
    _finish(session, inbound, "case" if opened else "followup")
    outcome = Outcome.CASE_OPENED if opened else Outcome.FOLLOWUP
    return IngestResult(outcome, inbound.reason if inbound.handled else _why(verdict, routes), inbound.id, refs,
                        work.a.digest, inbound.handled)


def _why(verdict: Verdict, routes: Sequence) -> str:
    return f"{verdict.reason}; brands: {', '.join(r.brand.key for r in routes)}"


def _no_nul(text: str) -> str:
    """PostgreSQL rejects NUL in text columns, and no database takes a lone surrogate (an
    SMTP client's 8-bit envelope address, decoded with surrogateescape): a channel value
    must not make a mail unrecordable (the parsed fields are already clean, see
    parsing._storable)."""
    return _UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


_INSERT_INBOUND = Prepared(insert(Inbound).returning(Inbound.id))
_FINISH_INBOUND = Prepared(update(Inbound).where(Inbound.id == bindparam("row_id")).values(
    outcome=bindparam("outcome"), reason=bindparam("reason")))


def _inbound(session: Session, app: App, work: _Work, outcome: str, reason: str,
             key_suffix: str = "") -> InboundRow:
    """The raw blob and the `inbound` row (prepared statements: one per mail received)."""
    blobs.put(session, work.item.raw, work.a.digest)
    row = InboundRow(id=0, source=_no_nul(work.item.source)[:200],
                     envelope_to=[_no_nul(a) for a in work.item.envelope_to], reason=_no_nul(reason)[:1000])
    row.id = int(_INSERT_INBOUND.scalar(session, {
        "dedupe_key": work.a.dedupe_key + key_suffix,
        "message_id": work.a.parsed.message_id if work.a.parsed else None,
        "sha256": work.a.digest, "source": row.source,
        "envelope_from": _no_nul(work.item.envelope_from or "")[:500] or None,
        "envelope_to": row.envelope_to, "outcome": outcome, "reason": row.reason,
        "received_at": work.item.received_at or app.now(),
    }))
    if "known_inbound" in session.info:
        session.info["known_inbound"][work.a.dedupe_key + key_suffix] = row.id
    return row


def _finish(session: Session, inbound: InboundRow, outcome: str) -> None:
    """Write what became of the mail (and any reason added while handling it)."""
    db.write(session, _FINISH_INBOUND, {"row_id": inbound.id, "outcome": outcome,
                                                   "reason": _no_nul(inbound.reason)[:1000]})


def _quarantine(session: Session, app: App, work: _Work, reason: str, key_suffix: str = "") -> IngestResult:
    inbound = _inbound(session, app, work, "quarantined", reason, key_suffix)
    session.add(Quarantine(inbound_id=inbound.id, sha256=work.a.digest, source=inbound.source,
                           envelope_to=list(inbound.envelope_to), reason=_no_nul(reason)[:2000]))
    return IngestResult(Outcome.QUARANTINED, reason, inbound.id, (), work.a.digest)
