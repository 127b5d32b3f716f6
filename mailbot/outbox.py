"""The one send path: outbox rows, and the dispatcher that sends what is due.

A row is written in the same transaction as the case change that causes it,
with its Message-ID fixed at creation. `dispatch` claims due rows (`FOR UPDATE
SKIP LOCKED` on PostgreSQL, so several instances never send a row twice),
sends them through the configured transport, and marks them `sent`, or
schedules a retry with exponential backoff and jitter, or — after
`max_attempts` — marks them `failed` with the last error and an event.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, select

from mailbot import db, writes
from mailbot.app import App
from mailbot.cases import log_event
from mailbot.models import Case, Outbox, utcnow
from mailbot.prepared import Prepared
from mailbot.transports import Transport, make_transport

log = logging.getLogger("mailbot.outbox")


INSERT = Prepared(insert(Outbox))


def queue(session: Session, *, case: Case | None, kind: str, from_addr: str, to_addr: str,
          message_id: str, not_before: datetime | None = None, dedupe_key: str | None = None,
          now: datetime | None = None, raw: bytes | None = None, to_name: str = "",
          reply_to: str | None = None, language: str | None = None, automatic: bool = True,
          about_id: int | None = None, context: dict[str, Any] | None = None) -> str:
    """Add a mail to send, in the caller's transaction; returns its Message-ID.
    Without `raw`, the dispatcher renders it from (kind, case, context) before the
    first attempt. A prepared INSERT: this runs for every mail received (deferred in
    ingest batches, see mailbot.writes)."""
    now = now or utcnow()
    writes.write(session, INSERT, {
        "case_id": case.id if case else None, "kind": kind, "message_id": message_id,
        "dedupe_key": dedupe_key, "from_addr": from_addr, "to_addr": to_addr.lower(), "to_name": to_name[:500],
        "reply_to": reply_to, "language": language, "automatic": automatic, "about_id": about_id,
        "context": context or {}, "raw": raw, "status": "pending", "attempts": 0,
        "not_before": not_before or now, "last_error": None, "created_at": now, "sent_at": None,
    })
    return message_id


@dataclass
class DispatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return f"{self.sent} sent, {self.retried} to retry, {self.failed} failed"


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


def dispatch(app: App, *, now: datetime | None = None, transport: Transport | None = None,
             limit: int | None = None) -> DispatchReport:
    """Send every due row once.

    Each row goes through three short transactions: claim it (render it if
    needed, count the attempt, and lease it by moving `not_before` forward),
    send it with no transaction open — no database lock is held during network
    I/O, so ingest never waits on a slow relay — then record the outcome. A crash
    after the relay accepted the mail and before the outcome is recorded makes
    the row due again when the lease ends: at most that one mail is sent twice
    (the Maildir transport even replaces the first copy). A row that fails is
    not tried again in the same run.
    """
    transport = transport or make_transport(app.config)
    report = DispatchReport()
    remaining = limit or 1_000_000
    tried: set[int] = set()
    try:
        while remaining > 0:
            at = now or app.now()
            job = _claim_one(app, at, tried, report)
            if job is None:
                break
            remaining -= 1
            if job is _SKIP:
                continue
            row_id, from_addr, to_addr, raw = job
            tried.add(row_id)
            try:
                transport.send(from_addr, to_addr, raw)
            except Exception as exc:
                with db.session_scope(app.engine) as session:
                    _record_failure(session, app, session.get(Outbox, row_id), at, exc, report)
                continue
            with db.session_scope(app.engine) as session:
                _record_sent(session, session.get(Outbox, row_id), at, report)
    finally:
        transport.close()
    return report


_SKIP: Any = object()


def lease(app: App) -> timedelta:
    """How long a claimed row is left alone before another run may take it again: longer
    than a send can take (twice the relay timeout), 10 s for the local Maildir."""
    cfg = app.config.outbound
    return timedelta(seconds=cfg.timeout * 2 if cfg.transport == "smtp" else 10.0)


def _claim_one(app: App, at: datetime, tried: set[int], report: DispatchReport) -> Any:
    """(id, from, to, raw) of the next due row, _SKIP if it could not be rendered, None if none."""
    with db.session_scope(app.engine) as session:
        rows = _claim(session, at, 1, tried)
        if not rows:
            return None
        row = rows[0]
        row.attempts += 1
        if row.raw is None:
            try:
                from mailbot.drafts import materialise

                row.raw = materialise(session, app, row, at)
            except Exception as exc:  # a template error shows on the row and the case
                tried.add(row.id or 0)
                _record_failure(session, app, row, at, exc, report)
                return _SKIP
        row.not_before = at + lease(app)
        session.add(row)
        return (row.id, row.from_addr, row.to_addr, row.raw)


def _record_failure(session: Session, app: App, row: Outbox | None, at: datetime, exc: Exception,
                    report: DispatchReport) -> None:
    if row is None:
        return
    cfg = app.config.outbound
    row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
    if row.attempts >= cfg.max_attempts:
        row.status = "failed"
        report.failed += 1
        log.error("outbox row %s failed for good: %s", row.id, row.last_error[:200])
        _case_event(session, row, "mail_failed", at, error=row.last_error, attempts=row.attempts)
    else:
        row.not_before = at + backoff(cfg.backoff_seconds, cfg.backoff_max_seconds, row.attempts)
        report.retried += 1
        log.warning("outbox row %s attempt %s failed: %s", row.id, row.attempts, row.last_error[:200])
    session.add(row)


def _record_sent(session: Session, row: Outbox | None, at: datetime, report: DispatchReport) -> None:
    if row is None:
        return
    row.status = "sent"
    row.sent_at = at
    row.last_error = None
    session.add(row)
    report.sent += 1
    _case_event(session, row, "mail_sent", at, to=row.to_addr, message_id=row.message_id)


def _case_event(session: Session, row: Outbox, type_: str, at: datetime, **data: object) -> None:
    case = session.get(Case, row.case_id) if row.case_id else None
    if case is not None:
        log_event(session, case, type_, at=at, outbox=row.id, **{"kind": row.kind, **data})
