"""The one send path: outbox rows, and the dispatcher that sends what is due.

A row is written in the same transaction as the case change that causes it,
with its Message-ID fixed at creation. `dispatch` claims due rows (`FOR UPDATE
SKIP LOCKED` on PostgreSQL, so several instances never send a row twice),
sends them through the configured transport, and marks them `sent`, or
schedules a retry with exponential backoff and jitter, or marks them `failed`
with the last error: at once when the relay refuses the mail for good (5xx),
else after `max_attempts`. What became of each row is handed to the `record`
function the caller gives (`mailbot.cases.deliveries` writes it on the case).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlmodel import Session, col, select

from mailbot import db
from mailbot.app import App
from mailbot.models import Case, Message, Outbox, utcnow
from mailbot.outgoing.audiences import RecipientNotStaff
from mailbot.outgoing.drafts import Draft, render_drafts
from mailbot.outgoing.transports import PermanentError, Transport, make_transport
from mailbot.prepared import Prepared

log = logging.getLogger("mailbot.outbox")


INSERT = Prepared(insert(Outbox))


def queue(session: Session, *, case: Case | None, kind: str, from_addr: str, to_addr: str,
          message_id: str, not_before: datetime | None = None, now: datetime | None = None, raw: bytes | None = None, to_name: str = "",
          reply_to: str | None = None, language: str | None = None, automatic: bool = True,
          about_id: int | None = None, context: dict[str, Any] | None = None) -> str:
    """Add a mail to send, in the caller's transaction; returns its Message-ID.
    Without `raw`, the dispatcher renders it from (kind, case, context) before the
    first attempt."""
    now = now or utcnow()
    db.write(session, INSERT, {
        "case_id": case.id if case else None, "kind": kind, "message_id": message_id,
        "from_addr": from_addr, "to_addr": to_addr.lower(), "to_name": to_name[:500],
        "reply_to": reply_to, "language": language, "automatic": automatic, "about_id": about_id,
        "context": context or {}, "raw": raw, "status": "pending", "attempts": 0,
        "not_before": not_before or now, "last_error": None, "created_at": now, "sent_at": None,
    })
    return message_id


@dataclass(frozen=True)
class Delivery:
    """What became of one outbox row: sent, or failed for good (`permanent`: the relay
    refused it with a 5xx answer, so it was not tried again)."""

    row_id: int
    case_id: int | None
    kind: str
    to_addr: str
    message_id: str
    at: datetime
    sent: bool
    error: str = ""
    attempts: int = 0
    permanent: bool = False
    withheld: bool = False  # a staff mail not sent: its recipient is no longer staff of the brand
    round_number: int | None = None  # the case's round the mail belongs to (mailbot.cases.rounds)


# Called in the transaction that records the outcome (the case's trail, a notice to staff).
RecordDelivery = Callable[[Session, App, Delivery], None]


@dataclass
class DispatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    withheld: int = 0

    def __str__(self) -> str:
        withheld = f", {self.withheld} withheld" if self.withheld else ""
        return f"{self.sent} sent, {self.retried} to retry, {self.failed} failed{withheld}"


def _claim(session: Session, now: datetime, limit: int, skip: set[int] | None = None) -> list[Outbox]:
    stmt = (select(Outbox).where(Outbox.status == "pending", col(Outbox.not_before) <= now)
            .order_by(col(Outbox.not_before), col(Outbox.id)).limit(limit))
    if skip:
        stmt = stmt.where(col(Outbox.id).notin_(skip))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.exec(stmt).all())


def backoff(cfg_seconds: float, cfg_max: float, attempts: int) -> timedelta:
    base = min(cfg_max, cfg_seconds * (2 ** max(0, attempts - 1)))
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


CLAIM_ROWS = 50  # due rows taken at once, at most


@dataclass(frozen=True)
class _Job:
    """A claimed row, as the send needs it (no ORM object outlives its transaction)."""

    row_id: int
    case_id: int | None
    kind: str
    message_id: str
    from_addr: str
    to_addr: str
    raw: bytes
    case_ref: str | None = None  # for the log
    round_number: int | None = None  # the case's round the mail belongs to (mailbot.cases.rounds)


def dispatch(app: App, *, record: RecordDelivery, now: datetime | None = None,
             transport: Transport | None = None, limit: int | None = None) -> DispatchReport:
    """Send every due row once; `record` is told each row sent or failed for good.

    Rows are claimed CLAIM_ROWS at a time (`_claim_batch`): leased (the attempt
    counted, `not_before` moved forward), then rendered outside any write transaction
    if they were not yet, their bytes stored. Each is then sent with no transaction open — no
    database lock is held during network I/O, so ingest never waits on a slow relay
    — and its outcome recorded in a transaction of its own, before the next is sent.
    A crash after the relay accepted a mail and before its outcome is recorded makes
    that row due again when its lease ends: at most that one mail is sent twice (the
    Maildir transport even replaces the first copy); the claimed rows not sent yet
    are sent after their lease. A batch whose sends grow slow (half the lease gone)
    gives its unsent rows back at once, and so does a run when the daemon stops
    (`app.stopping`): what is left is sent after the restart. A row that fails is not
    tried again in the same run.
    """
    transport = transport or make_transport(app.config)
    report = DispatchReport()
    remaining = limit or 1_000_000
    tried: set[int] = set()  # failed (or could not be rendered) in this run
    budget = lease(app).total_seconds() / 2
    try:
        while remaining > 0 and not app.stopping.is_set():
            at = now or app.now()
            claimed = _claim_batch(app, at, tried, report, min(CLAIM_ROWS, remaining), record)
            if claimed is None:
                break
            taken, jobs = claimed
            remaining -= taken
            since = time.monotonic()
            for i, job in enumerate(jobs):
                if i and (time.monotonic() - since > budget or app.stopping.is_set()):
                    _give_back(app, jobs[i:], at)
                    remaining += len(jobs) - i
                    break
                try:
                    transport.send(job.from_addr, job.to_addr, job.raw)
                except Exception as exc:
                    tried.add(job.row_id)
                    with db.session_scope(app.engine) as session:
                        _record_failure(session, app, session.get(Outbox, job.row_id), at, exc, report, record,
                                        where=_where(transport))
                    continue
                _record_sent(app, job, at, report, record, where=_where(transport))
    finally:
        transport.close()
    return report


def outbox_rows(app: App, status: str | None = None) -> list[dict[str, Any]]:
    """The outbox for `outbox list [--json]`, oldest first, with each row's case
    reference (read without the write lock)."""
    with db.read_scope(app.engine) as s:
        stmt = select(Outbox).order_by(col(Outbox.id))
        if status:
            stmt = stmt.where(Outbox.status == status)
        rows = s.exec(stmt).all()
        refs = {c.id: c.ref for c in s.exec(select(Case).where(col(Case.id).in_({r.case_id for r in rows}))).all()}
        return [{"id": r.id, "case": refs.get(r.case_id), "kind": r.kind, "to": r.to_addr, "status": r.status,
                 "attempts": r.attempts, "not_before": r.not_before.isoformat(),
                 "sent_at": r.sent_at.isoformat() if r.sent_at else None, "last_error": r.last_error,
                 "message_id": r.message_id} for r in rows]


def lease(app: App) -> timedelta:
    """How long a claimed row is left alone before another run may take it again: longer
    than a send can take (twice the relay timeout), 10 s for the local Maildir."""
    cfg = app.config.outbound
    return timedelta(seconds=cfg.timeout * 2 if cfg.transport == "smtp" else 10.0)


def _claim_batch(app: App, at: datetime, tried: set[int], report: DispatchReport, limit: int,
                 record: RecordDelivery) -> tuple[int, list[_Job]] | None:
    """Claim due rows: (how many were taken, the jobs to send), None if none is due.

    Three steps, so that no transaction holding the write lock renders anything: lease
    the rows (count the attempt, move `not_before` forward); render those without
    bytes yet in a read-only transaction; store the bytes (and the case's record of
    each mail) with one statement each. A row that cannot be rendered is taken (its
    attempt counted and failed) but not sent. A crash between the steps leaves the
    rows leased: they are due again, and rendered then, when the lease ends."""
    with db.session_scope(app.engine) as session:
        rows = _claim(session, at, limit, tried)
        if not rows:
            return None
        for row in rows:
            row.attempts += 1
            row.not_before = at + lease(app)
            session.add(row)
        refs = _case_refs(session, {row.case_id for row in rows})
    drafts: dict[int, Draft | Exception] = {}
    if unrendered := [row for row in rows if row.raw is None]:
        with db.read_scope(app.engine) as session:
            drafts = render_drafts(session, app, unrendered, at)
        with db.session_scope(app.engine) as session:
            _store_drafts(session, app, at, drafts, tried, report, record)
    jobs = []
    for row in rows:
        assert row.id is not None
        draft = drafts.get(row.id)
        raw = row.raw if draft is None or isinstance(draft, Exception) else draft.raw
        if raw is not None:
            jobs.append(_Job(row.id, row.case_id, row.kind, row.message_id, row.from_addr, row.to_addr, raw,
                             refs.get(row.case_id), (row.context or {}).get("round")))
    return len(rows), jobs


def _case_refs(session: Session, case_ids: set[int | None]) -> dict[int | None, str]:
    """The references of these cases (for the log lines of the mails they send)."""
    ids = [i for i in case_ids if i is not None]
    if not ids:
        return {}
    return dict(session.exec(select(Case.id, Case.ref).where(col(Case.id).in_(ids))).all())  # type: ignore[arg-type]


_STORE_RAW = Prepared(update(Outbox).where(Outbox.id == bindparam("row_id")).values(raw=bindparam("new_raw")))
_STORE_RECORD = Prepared(update(Message).where(Message.id == bindparam("record_id")).values(
    subject=bindparam("new_subject"), body_text=bindparam("new_text")))


def _store_drafts(session: Session, app: App, at: datetime, drafts: dict[int, Draft | Exception],
                  tried: set[int], report: DispatchReport, record: RecordDelivery) -> None:
    """Keep each draft's bytes on its row and its subject and text on the case's record
    of the mail; a row that could not be rendered gets the error (a template error shows
    on the row and the case)."""
    done = {row_id: d for row_id, d in drafts.items() if not isinstance(d, Exception)}
    conn = session.connection()
    if done:
        _STORE_RAW.executemany(conn, [{"row_id": row_id, "new_raw": d.raw} for row_id, d in done.items()])
        if records := [{"record_id": d.record_id, "new_subject": d.subject, "new_text": d.text}
                       for d in done.values() if d.record_id is not None]:
            _STORE_RECORD.executemany(conn, records)
    for row_id, failure in drafts.items():
        if isinstance(failure, RecipientNotStaff):
            tried.add(row_id)
            _withhold(session, app, session.get(Outbox, row_id), at, failure, report, record)
        elif isinstance(failure, Exception):
            tried.add(row_id)
            _record_failure(session, app, session.get(Outbox, row_id), at, failure, report, record,
                            where="rendering")


def _withhold(session: Session, app: App, row: Outbox | None, at: datetime, why: RecipientNotStaff,
              report: DispatchReport, record: RecordDelivery) -> None:
    """A staff mail whose recipient left the brand is not sent: `withheld`, and `record`
    is told (mailbot.cases.deliveries sends it to the case's current staff instead)."""
    if row is None:
        return
    row.status, row.last_error = "withheld", str(why)[:2000]
    session.add(row)
    report.withheld += 1
    assert row.id is not None
    record(session, app, Delivery(row.id, row.case_id, row.kind, row.to_addr, row.message_id, at,
                                  sent=False, error=row.last_error, withheld=True))


_GIVE_BACK = (update(Outbox).where(col(Outbox.id).in_(bindparam("ids", expanding=True)), Outbox.status == "pending")
              .values(attempts=Outbox.attempts - 1, not_before=bindparam("at")))


def _give_back(app: App, jobs: list[_Job], at: datetime) -> None:
    """Unsend rows claimed but not sent: due again at once, their attempt not counted."""
    with db.session_scope(app.engine) as session:
        session.connection().execute(_GIVE_BACK, {"ids": [j.row_id for j in jobs], "at": at})


_MARK_SENT = Prepared(update(Outbox).where(Outbox.id == bindparam("row_id"))
                      .values(status="sent", sent_at=bindparam("at"), last_error=None))


def _where(transport: Transport) -> str:
    # test doubles of the Transport protocol may not say where they send
    return getattr(transport, "where", type(transport).__name__)


def _record_sent(app: App, job: _Job, at: datetime, report: DispatchReport, record: RecordDelivery,
                 where: str) -> None:
    """The row is sent, and `record` is told (in the same transaction). The log names the
    kind, case, recipient's domain and Message-ID, never the text."""
    with db.session_scope(app.engine) as session:
        _MARK_SENT.scalar(session, {"row_id": job.row_id, "at": at})
        record(session, app, Delivery(job.row_id, job.case_id, job.kind, job.to_addr, job.message_id, at,
                                      sent=True, round_number=job.round_number))
    report.sent += 1
    domain = job.to_addr.rpartition("@")[2]
    log.info("sent %s of %s to …@%s", job.kind, job.case_ref or "no case", domain, extra={
        "event": "outbox.sent", "kind": job.kind, "case": job.case_ref, "to_domain": domain,
        "message_id": job.message_id, "outbox": job.row_id, "via": where})


def _record_failure(session: Session, app: App, row: Outbox | None, at: datetime, exc: Exception,
                    report: DispatchReport, record: RecordDelivery, where: str) -> None:
    """A retry later, or — refused for good by the relay, or out of attempts — `failed`.
    `where`: the transport (`relay HOST:PORT`) or "rendering"; it leads `last_error`."""
    if row is None:
        return
    cfg = app.config.outbound
    error = f"{type(exc).__name__}: {exc}"[:2000]
    row.last_error = f"{where}: {error}"[:2000]
    permanent = isinstance(exc, PermanentError)
    fields = {"kind": row.kind, "outbox": row.id, "attempts": row.attempts, "via": where, "error": error[:300]}
    if permanent or row.attempts >= cfg.max_attempts:
        row.status = "failed"
        report.failed += 1
        ref = _case_refs(session, {row.case_id}).get(row.case_id)
        log.error("outbox row %s failed for good after %s attempt(s) (%s): %s", row.id, row.attempts, where,
                  error[:300], extra={"event": "outbox.failed", "case": ref, "permanent": permanent, **fields})
        assert row.id is not None
        session.add(row)
        record(session, app, Delivery(row.id, row.case_id, row.kind, row.to_addr, row.message_id, at,
                                      sent=False, error=error, attempts=row.attempts,
                                      permanent=permanent))
    else:
        row.not_before = at + backoff(cfg.backoff_seconds, cfg.backoff_max_seconds, row.attempts)
        report.retried += 1
        log.warning("outbox row %s attempt %s failed (%s), retry at %s: %s", row.id, row.attempts, where,
                    row.not_before.isoformat(timespec="seconds"), error[:300],
                    extra={"event": "outbox.retry", "retry_at": row.not_before.isoformat(), **fields})
    session.add(row)

