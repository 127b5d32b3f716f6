"""Alerts to a brand's supervisors: the first at once, the next ones in a digest.

Thirty forged agent mails made thirty alerts (issue #20, item 11): an attacker can
bury the supervisors. Each kind of alert has a mark (`AlertMark`, keyed by kind and
brand): when none went in the last hour, the alert goes at once; otherwise the
occurrence waits, and `send_digests` (a periodic job) sends one mail listing every
occurrence since, an hour after the last alert or digest. So a kind of alert makes
at most one mail an hour per brand, and nothing is left out.

Kinds: `security:<brand>` (forged or misdirected agent mail, listed from the
`security` events) and `first_contact_cap` (the hourly cap on acknowledgements to
first-time addresses, listed from the `ack_suppressed` events it caused).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mailbot import db
from mailbot.app import App
from mailbot.cases.staff_mail import send_to_role
from mailbot.models import AlertMark, Case, Event

WINDOW = timedelta(hours=1)
DIGEST_ITEMS = 100  # occurrences a digest lists (the count says how many there were)
FIRST_CONTACT_CAP = "first_contact_cap"


def security_key(brand: str) -> str:
    return f"security:{brand}"


def alert(session: Session, app: App, key: str, case: Case, security: dict[str, Any]) -> bool:
    """Alert the case's supervisors now (security_alert mail, `security` its details) unless
    an alert of `key` went within the hour or occurrences wait for a digest: then this one
    waits too. True when the mail went now."""
    now = app.now()
    mark = _mark(session, key, now)
    if mark is None:  # the first ever
        send_to_role(session, app, case, "security_alert", "supervisor", ctx_extra={"security": security})
        return True
    mark.case_id = case.id
    if mark.pending == 0 and mark.last_at <= now - WINDOW:
        mark.last_at = now
        session.add(mark)
        send_to_role(session, app, case, "security_alert", "supervisor", ctx_extra={"security": security})
        return True
    mark.pending += 1
    session.add(mark)
    return False


def _mark(session: Session, key: str, now: datetime) -> AlertMark | None:
    """The mark of `key`, locked (PostgreSQL) for this transaction; None when there was
    none (it is then made, as of now: another process making it at once wins)."""
    mark = session.exec(select(AlertMark).where(AlertMark.key == key).with_for_update()).first()
    if mark is not None:
        return mark
    try:
        with db.writes_now(session), session.begin_nested():
            session.add(AlertMark(key=key, last_at=now, pending=0))
            session.flush()
    except IntegrityError:
        return session.exec(select(AlertMark).where(AlertMark.key == key).with_for_update()).one()
    return None


def send_digests(app: App) -> int:
    """Send each digest due (occurrences waiting, the last alert an hour ago or more);
    returns how many were sent."""
    now = app.now()
    sent = 0
    with db.session_scope(app.engine) as session:
        due = session.exec(select(AlertMark).where(AlertMark.pending > 0, col(AlertMark.last_at) <= now - WINDOW)
                           .with_for_update(skip_locked=True)).all()
        for mark in due:
            case = session.get(Case, mark.case_id) if mark.case_id else None
            if case is not None:
                items = _occurrences(session, app, mark)
                send_to_role(session, app, case, "security_alert", "supervisor", ctx_extra={"security": {
                    "what": "digest", "kind": "first_contact_cap" if mark.key == FIRST_CONTACT_CAP else "security",
                    "count": mark.pending, "since": app.calendar(case.brand).local(mark.last_at).isoformat(),
                    "digest": items}})
                sent += 1
            mark.last_at, mark.pending = now, 0
            session.add(mark)
    return sent


def _occurrences(session: Session, app: App, mark: AlertMark) -> list[dict[str, str]]:
    """The mark's waiting occurrences (the latest `pending`, at most DIGEST_ITEMS), oldest first."""
    if mark.key == FIRST_CONTACT_CAP:
        type_, brand = "ack_suppressed", None
    else:
        type_, brand = "security", mark.key.partition(":")[2]
    stmt = (select(Event, Case.ref, Case.brand, Case.customer_email).outerjoin(Case, col(Case.id) == Event.case_id)
            .where(Event.type == type_, col(Event.at) >= mark.last_at).order_by(col(Event.id).desc()))
    out: list[dict[str, str]] = []
    for event, ref, case_brand, customer in session.exec(stmt):
        if len(out) >= min(mark.pending, DIGEST_ITEMS):
            break
        reason = str(event.data.get("reason", ""))
        if brand is not None and event.data.get("brand", case_brand) != brand:
            continue
        if type_ == "ack_suppressed" and not reason.startswith("first_contact_acks"):
            continue
        zone_brand = case_brand or brand or app.config.brands[0].key
        out.append({"at": app.calendar(zone_brand).local(event.at).isoformat(), "ref": ref or "",
                    "sender": (customer or "") if type_ == "ack_suppressed" else event.actor, "reason": reason})
    return out[::-1]
