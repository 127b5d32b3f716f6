"""The SLA clock over time: reminders, escalations, acknowledgement breaches,
auto-close and retention.

Each case carries `next_sla_at`, the next moment the sweep has something to
do for it (indexed), so a sweep over 100,000 open cases reads only the few
that are due. Every reminder/escalation is guarded by an `SlaMark` row
(primary key: case, point) written in the same transaction as the mail it
causes: a point fires once per case, however often the sweep runs, across
restarts and across instances.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select
from sqlmodel.sql.expression import SelectOfScalar

from mailbot import caselocks, counters, db
from mailbot.app import App
from mailbot.cases import scheduled
from mailbot.cases.records import log_event, set_status
from mailbot.cases.responses import send_case_mail
from mailbot.cases.search import forget_erased
from mailbot.cases.sla import SlaPoint, marked, reschedule, round_start, sla_points
from mailbot.cases.staff_mail import send_to_role
from mailbot.config import BrandConfig
from mailbot.models import (
    Attachment,
    Blob,
    Case,
    Event,
    Inbound,
    Message,
    Outbox,
    Quarantine,
    SlaMark,
)

log = logging.getLogger("mailbot.sla")
SWEEP_BATCH = 500


def sla_sweep(app: App) -> str:
    """Fire every due SLA point once. Returns a short report."""
    now = app.now()
    fired = 0
    while True:
        with db.session_scope(app.engine) as session:
            stmt = (select(Case).where(col(Case.next_sla_at) <= now).order_by(col(Case.next_sla_at))
                    .limit(SWEEP_BATCH))
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            cases = list(session.exec(stmt).all())
            caselocks.locked(session, cases)
            for case in cases:
                fired += _sweep_case(session, app, case, now)
        if len(cases) < SWEEP_BATCH:
            return f"{fired} reminders/escalations"


def _for_update(session: Session, stmt: SelectOfScalar[Case]) -> SelectOfScalar[Case]:
    """The cases locked as they are read (PostgreSQL); those another transaction holds are
    left for the next run."""
    if session.get_bind().dialect.name == "postgresql":
        return stmt.with_for_update(skip_locked=True)
    return stmt


def _sweep_case(session: Session, app: App, case: Case, now: datetime) -> int:
    brand = app.config.brand(case.brand)
    done = marked(session, case)
    points = sla_points(case, brand, app.calendar(brand), round_start(session, case))
    due = [p for p in points if p.key not in done and p.at <= now]
    # Only the latest reminder (and on-call alert) is worth sending when several came due at once.
    latest = {p.kind: p for p in due}
    final = scheduled.states(session, [case.id]).get(case.id) if due and case.id is not None else None
    fired = 0
    for point in due:
        skip = point.kind in ("reminder", "urgent_alert") and (
            point is not latest[point.kind] or case.due_at is not None and now >= case.due_at)
        if _fire(session, app, case, brand, point, final, send=not skip):
            fired += 0 if skip else 1
    reschedule(session, case, brand)
    return fired


def _fire(session: Session, app: App, case: Case, brand: BrandConfig, point: SlaPoint,
          final: scheduled.FinalState | None, *, send: bool) -> bool:
    """Fire one point (once: its SlaMark). A deadline that a scheduled final response meets
    (not held, due by then) is no breach: no escalation, no holding reply; the dispatcher
    sends the final response (a failure tells the staff: mailbot.cases.deliveries)."""
    try:
        with session.begin_nested():
            session.add(SlaMark(case_id=case.id or 0, point=point.key, at=app.now()))
            session.flush()
    except IntegrityError:
        return False  # another instance fired it
    if not send:
        log_event(session, case, "sla_point_skipped", at=app.now(), point=point.key)
        return True
    cal = app.calendar(brand)
    deadline = point.deadline or case.due_at
    due_local = cal.local(deadline).isoformat() if deadline else ""
    if point.kind in ("escalation", "holding") and final is not None and not final.held \
            and deadline is not None and final.at <= deadline:
        log_event(session, case, "sla_point_skipped", at=app.now(), point=point.key,
                  reason=f"final response scheduled for {cal.local(final.at).isoformat()}, by the deadline")
        return True
    if point.kind == "holding":
        if case.acknowledged_at and deadline and case.acknowledged_at >= deadline:
            log_event(session, case, "sla_point_skipped", at=app.now(), point=point.key,
                      reason="acknowledged after the deadline: the acknowledgement said so")
            return True
        send_case_mail(session, app, case, "holding_reply", to_addr=case.customer_email, to_name=case.customer_name,
                       ctx_extra={"reminder": {"percent": 100, "due_at": due_local}})
        log_event(session, case, "holding_reply", at=app.now(), point=point.key)
        return True
    kind, role = {"reminder": ("reminder", "assignee"), "urgent_alert": ("urgent_alert", "oncall")}.get(
        point.kind, ("escalation", "supervisor"))
    assignee = app.config.agent(case.assignee) if case.assignee else None
    sent = send_to_role(session, app, case, kind, role, ctx_extra={
        "reminder": {"percent": point.percent, "due_at": due_local, "urgent": point.kind.startswith("urgent")},
        "assignee": {"name": assignee.name if assignee else "", "email": case.assignee or ""},
        "scheduled_final": scheduled.context(final, cal)})
    if not sent:
        log_event(session, case, "sla_point_no_recipient", at=app.now(), point=point.key)
        return True
    log_event(session, case, point.kind, at=app.now(), point=point.key, to=", ".join(sent))
    if point.kind in _BREACHES:
        _BREACHES[point.kind].labels(brand=case.brand).inc()
    return True


_BREACHES = {"escalation": counters.SLA_BREACHES, "ack_breach": counters.ACK_BREACHES}


def autoclose(app: App) -> int:
    """Close answered cases after `autoclose_days` of silence."""
    now = app.now()
    closed = 0
    with db.session_scope(app.engine) as session:
        for case in session.exec(_for_update(session, select(Case).where(Case.status == "answered"))).all():
            caselocks.locked(session, [case])
            brand = app.config.brand(case.brand)
            if case.answered_at and now >= case.answered_at + timedelta(days=brand.sla.autoclose_days):
                set_status(session, case, "closed", at=now,
                           reason=f"no reply {brand.sla.autoclose_days} days after the final response")
                case.closed_at = now
                reschedule(session, case, brand)
                closed += 1
    return closed


def purge_retention(app: App) -> int:
    """Erase the personal data of cases closed more than `retention_years` ago: the
    customer's words and addresses wherever they are kept (messages, the raw mails and
    attachments, the mails we sent and their context, the trail's addresses). The
    register line (reference, dates, category, outcome) stays.

    On SQLite the erased bytes are overwritten, not only unlinked (`secure_delete`
    for the purge), and the WAL is checkpointed and truncated after it: nothing of
    them is left in the database's files. (PostgreSQL frees the old row versions
    at its next VACUUM, which autovacuum runs.)"""
    now = app.now()
    purged = 0
    with db.session_scope(app.engine) as session, _overwriting_deletes(session):
        rows = session.exec(_for_update(session, select(Case).where(Case.status == "closed",
                                                                  col(Case.purged_at).is_(None)))).all()
        caselocks.locked(session, rows)
        for case in rows:
            brand = app.config.brand(case.brand)
            if case.closed_at and now >= case.closed_at + timedelta(days=365 * brand.retention_years):
                _purge(session, case, now)
                purged += 1
        if purged:
            forget_erased(session)
        digests = _forget_old_digests(session, now)
    if (purged or digests) and app.engine.dialect.name == "sqlite":
        _truncate_wal(app)
    return purged


DIGEST_COPY_DAYS = 30


def _forget_old_digests(session: Session, now: datetime) -> int:
    """The daily digests (mailbot.cases.digest) name many cases' customers and are kept on no
    case: their sent bytes are erased after DIGEST_COPY_DAYS days, so no digest outlives the
    retention of the cases it listed."""
    result = session.exec(update(Outbox).where(  # type: ignore[call-overload]
        col(Outbox.kind) == "digest", col(Outbox.case_id).is_(None), col(Outbox.status) != "pending",
        col(Outbox.raw).is_not(None), col(Outbox.created_at) < now - timedelta(days=DIGEST_COPY_DAYS))
        .values(raw=None, context={}, to_name=""))
    return int(result.rowcount or 0)


@contextmanager
def _overwriting_deletes(session: Session) -> Iterator[None]:
    """SQLite: deleted and replaced content is overwritten with zeros (for this transaction)."""
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    conn = session.connection()
    conn.exec_driver_sql("PRAGMA secure_delete=ON")
    try:
        yield
        session.flush()  # the ORM's changes are written while it is on
    finally:
        conn.exec_driver_sql("PRAGMA secure_delete=OFF")


def _truncate_wal(app: App) -> None:
    """Copy the WAL into the database file and empty it: its frames still hold the pages
    as they were before the purge. Best effort: a reader in the way only delays it."""
    raw = app.engine.raw_connection()
    try:
        raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def _purge(session: Session, case: Case, now: datetime) -> None:
    messages = list(session.exec(select(Message).where(Message.case_id == case.id)).all())
    msg_ids = [m.id for m in messages]
    inbound_ids = [m.inbound_id for m in messages if m.inbound_id]
    inbounds = list(session.exec(select(Inbound).where(col(Inbound.id).in_(inbound_ids))).all())
    attachment_blobs = set(session.exec(select(Attachment.sha256).where(
        col(Attachment.message_id).in_(msg_ids), col(Attachment.sha256).is_not(None))).all())
    session.exec(delete(Attachment).where(col(Attachment.message_id).in_(msg_ids)))  # type: ignore[call-overload]
    for m in messages:
        m.body_text, m.from_name, m.from_addr, m.subject, m.route_detail = "", "", "", "", ""
        session.add(m)
    for inbound in inbounds:
        inbound.envelope_from, inbound.envelope_to = None, []
        session.add(inbound)
    _erase_blobs(session, case, {i.sha256 for i in inbounds} | attachment_blobs)
    session.exec(update(Outbox).where(col(Outbox.case_id) == case.id).values(  # type: ignore[call-overload]
        raw=None, context={}, to_addr="", to_name="", reply_to=None, last_error=None))
    for event in session.exec(select(Event).where(Event.case_id == case.id)).all():
        scrubbed = {k: ("" if isinstance(v, str) and "@" in v else v) for k, v in event.data.items()}
        if scrubbed != event.data:
            event.data = scrubbed
            session.add(event)
    case.customer_name, case.customer_email, case.subject, case.extracted = "", "", "", {}
    case.purged_at = now
    session.add(case)
    log_event(session, case, "purged", at=now, reason="retention period over")


def _erase_blobs(session: Session, case: Case, digests: set[str]) -> None:
    """Empty the raw mails and attachments of the case, except those another case not
    purged yet, or a held quarantine row, still needs (blobs are shared by content)."""
    if not digests:
        return
    still_needed = set(session.exec(
        select(Inbound.sha256).join(Message, col(Message.inbound_id) == Inbound.id)
        .join(Case, col(Case.id) == Message.case_id)
        .where(col(Inbound.sha256).in_(digests), Message.case_id != case.id, col(Case.purged_at).is_(None))).all())
    still_needed |= set(session.exec(
        select(Attachment.sha256).where(col(Attachment.sha256).in_(digests))).all())
    still_needed |= set(session.exec(
        select(Quarantine.sha256).where(col(Quarantine.sha256).in_(digests), Quarantine.status == "held")).all())
    if erase := digests - still_needed:
        session.exec(update(Blob).where(col(Blob.sha256).in_(erase)).values(  # type: ignore[call-overload]
            data=b"", size=0))
