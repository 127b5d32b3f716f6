"""The one write path: raw bytes from any channel → a recorded, routed message.

    store raw bytes → dedupe → parse → classify → route (brand, case) → extract
    → write message, attachments, events and outgoing mail in ONE transaction

`ingest` never raises for a bad mail: whatever cannot be parsed or handled
becomes a quarantine row holding the raw bytes and a reason. It raises
`TemporaryFailure` only when the database itself is unavailable — the caller
then answers "retry later" (SMTP 451, sysexit 75, IMAP leaves the mail).
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, select

from mailbot import blobs, db
from mailbot.app import App
from mailbot.classify import Verdict, classify
from mailbot.conversations import handle_automatic, handle_customer
from mailbot.models import Inbound, Quarantine
from mailbot.parsing import ParsedMail, Unparseable, parse
from mailbot.routing import route_brands

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
class Received:
    """One unit of work: a raw mail as a channel handed it over."""

    raw: bytes
    source: str
    envelope_from: str | None = None
    envelope_to: tuple[str, ...] = ()
    received_at: datetime | None = None
    mailbox_brand: str | None = None


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    reason: str
    inbound_id: int | None = None
    case_refs: tuple[str, ...] = ()
    sha256: str = ""

    @property
    def quarantined(self) -> bool:
        return self.outcome is Outcome.QUARANTINED


@dataclass
class _Work:
    item: Received
    digest: str
    parsed: ParsedMail | None
    parse_error: str | None
    dedupe_key: str
    results: list[IngestResult] = field(default_factory=list)


def content_fingerprint(parsed: ParsedMail) -> str:
    """Identity of a mail independent of transport headers (Received, Return-Path…)."""
    h = hashlib.sha256()
    for part in (parsed.from_addr, parsed.subject, parsed.text, parsed.html or ""):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    for att in parsed.attachments:
        h.update(att.filename.encode("utf-8", "surrogatepass") + b"\0")
        h.update(hashlib.sha256(att.data).digest())
    return h.hexdigest()[:32]


def dedupe_key(digest: str, parsed: ParsedMail | None) -> str:
    """Message-ID plus content: the same mail twice (MTA retry, IMAP re-fetch) is one
    record, but two different mails that reuse a Message-ID are both kept."""
    if parsed is not None and parsed.message_id:
        return f"mid:{parsed.message_id[:900]}|{content_fingerprint(parsed)}"
    return f"sha:{digest}"


def _prepare(item: Received) -> _Work:
    digest = blobs.sha256(item.raw)
    try:
        parsed: ParsedMail | None = parse(item.raw)
        error = None
    except Unparseable as exc:
        parsed, error = None, str(exc)
    except Exception as exc:  # defensive: parsing must never take ingest down
        parsed, error = None, f"parser crashed: {type(exc).__name__}: {exc}"[:1000]
    return _Work(item, digest, parsed, error, dedupe_key(digest, parsed))


def ingest(app: App, raw: bytes, source: str, *, envelope_from: str | None = None,
           envelope_to: Sequence[str] = (), received_at: datetime | None = None,
           mailbox_brand: str | None = None) -> IngestResult:
    """Record one raw mail; see the module docstring for the guarantees."""
    item = Received(raw, source, envelope_from, tuple(envelope_to), received_at, mailbox_brand)
    return ingest_batch(app, [item])[0]


def ingest_batch(app: App, items: Sequence[Received]) -> list[IngestResult]:
    """Record several mails in one transaction (one savepoint each)."""
    works = [_prepare(it) for it in items]
    try:
        return _commit_with_retries(app, works)
    except db.TRANSIENT_DB_ERRORS as exc:
        cause = _transient_cause(exc) or exc  # name the real cause (e.g. disk full)
        raise TemporaryFailure(str(cause).splitlines()[0][:300]) from exc


def _commit_with_retries(app: App, works: list[_Work], attempts: int = 6) -> list[IngestResult]:
    """Concurrent writers may collide (same mail delivered twice at once, a new
    counter row, a deadlock): redo; a mail recorded meanwhile is a duplicate."""
    for attempt in range(attempts):
        try:
            return _commit(app, works)
        except IntegrityError:
            if len(works) > 1:
                return [r for w in works for r in _commit_with_retries(app, [w])]
            if _already_recorded(app, works[0]):
                return _duplicate(works[0])
        except OperationalError as exc:
            if attempt == attempts - 1 or not _is_retryable(exc):
                raise
        time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
    return _commit(app, works)


def _is_retryable(exc: BaseException) -> bool:
    """Worth an immediate retry. A locked SQLite database is not: the busy timeout
    already waited, and the source should hear "retry later" now."""
    text = str(exc).lower()
    return any(s in text for s in ("deadlock", "could not serialize"))


def _duplicate(work: _Work) -> list[IngestResult]:
    return [IngestResult(Outcome.DUPLICATE, "recorded concurrently", None, (), work.digest)]


def _already_recorded(app: App, work: _Work) -> bool:
    with db.session_scope(app.engine) as session:
        return session.exec(select(Inbound.id).where(Inbound.dedupe_key == work.dedupe_key)).first() is not None


def _commit(app: App, works: list[_Work]) -> list[IngestResult]:
    for w in works:
        w.results = []
    if len(works) == 1:
        return _commit_one(app, works[0])
    with db.session_scope(app.engine) as session:
        for w in works:
            _record_contained(session, app, w)
    return [w.results[0] for w in works]


def _commit_one(app: App, work: _Work) -> list[IngestResult]:
    """One mail, one transaction (no savepoint); a bug quarantines it in a new one."""
    try:
        with db.session_scope(app.engine) as session:
            work.results = [_record(session, app, work)]
        return work.results
    except (IntegrityError, OperationalError):
        raise
    except Exception as exc:
        with db.session_scope(app.engine) as session:
            _quarantine_after_error(session, app, work, exc)
        return work.results


def _record_contained(session: Session, app: App, work: _Work) -> None:
    """Record one mail in a savepoint; a bug while handling it quarantines that mail only."""
    try:
        with session.begin_nested():
            work.results.append(_record(session, app, work))
    except IntegrityError:
        raise
    except OperationalError as exc:
        if _is_transient(exc):
            raise
        _quarantine_after_error(session, app, work, exc)
    except Exception as exc:  # contain the failure to this message
        _quarantine_after_error(session, app, work, exc)


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
    log.exception("ingest failed, quarantining sha256=%s", work.digest[:12])
    reason = f"internal error while handling: {type(exc).__name__}: {str(exc)[:300]}"
    with session.begin_nested():
        work.results[:] = [_quarantine(session, app, work, reason, key_suffix="|error")]


def _record(session: Session, app: App, work: _Work) -> IngestResult:
    existing = session.exec(select(Inbound.id).where(Inbound.dedupe_key == work.dedupe_key)).first()
    if existing is not None:
        return IngestResult(Outcome.DUPLICATE, f"already recorded as inbound #{existing}", existing,
                            (), work.digest)
    if work.parsed is None:
        return _quarantine(session, app, work, f"unparseable: {work.parse_error}")
    parsed, item = work.parsed, work.item
    routes = route_brands(app.config, parsed, item.envelope_to, item.mailbox_brand)
    if not routes:
        return _quarantine(session, app, work, "no brand address among the recipients")
    verdict = classify(parsed.message, envelope_from=item.envelope_from,
                       own_addresses=app.config.own_addresses)
    inbound = _inbound(session, app, work, "pending", verdict.reason)
    received_at = item.received_at or app.now()
    if verdict.kind == "own":
        inbound.outcome = "own"
        return IngestResult(Outcome.OWN, verdict.reason, inbound.id, (), work.digest)
    if verdict.automatic:
        refs = handle_automatic(session, app, inbound, parsed, routes, verdict, received_at)
        inbound.outcome = "automatic"
        return IngestResult(Outcome.AUTOMATIC, verdict.reason, inbound.id, refs, work.digest)
    opened, refs = handle_customer(session, app, inbound, parsed, routes, received_at)
    inbound.outcome = "case" if opened else "followup"
    outcome = Outcome.CASE_OPENED if opened else Outcome.FOLLOWUP
    return IngestResult(outcome, _why(verdict, routes), inbound.id, refs, work.digest)


def _why(verdict: Verdict, routes: Sequence) -> str:
    return f"{verdict.reason}; brands: {', '.join(r.brand.key for r in routes)}"


def _no_nul(text: str) -> str:
    """PostgreSQL rejects NUL in text columns: a channel value must not make a mail unrecordable
    (the parsed fields are already NUL-free, see parsing._nul_free)."""
    return text.replace("\x00", "")


def _inbound(session: Session, app: App, work: _Work, outcome: str, reason: str,
             key_suffix: str = "") -> Inbound:
    blobs.put(session, work.item.raw, work.digest)
    inbound = Inbound(
        dedupe_key=work.dedupe_key + key_suffix,
        message_id=work.parsed.message_id if work.parsed else None,
        sha256=work.digest, source=_no_nul(work.item.source)[:200],
        envelope_from=_no_nul(work.item.envelope_from or "")[:500] or None,
        envelope_to=[_no_nul(a) for a in work.item.envelope_to], outcome=outcome,
        reason=_no_nul(reason)[:1000],
        received_at=work.item.received_at or app.now(),
    )
    session.add(inbound)
    session.flush()
    return inbound


def _quarantine(session: Session, app: App, work: _Work, reason: str, key_suffix: str = "") -> IngestResult:
    inbound = _inbound(session, app, work, "quarantined", reason, key_suffix)
    session.add(Quarantine(inbound_id=inbound.id, sha256=work.digest, source=inbound.source,
                           envelope_to=list(inbound.envelope_to), reason=_no_nul(reason)[:2000]))
    log.warning("quarantined inbound=%s reason=%s", inbound.id, reason[:200])
    return IngestResult(Outcome.QUARANTINED, reason, inbound.id, (), work.digest)
