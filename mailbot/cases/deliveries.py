"""What became of the mail a case sent, written on the case: the dispatcher
(`mailbot.outgoing.outbox.dispatch`) hands each row sent or failed for good to
`record_delivery`, in the transaction that marks the row.

A mail sent is a `mail_sent` event; an acknowledgement or final response sent is also
the time its round of the register was acknowledged or answered (mailbot.cases.rounds). A mail that failed for good — refused by the
relay with a 5xx answer (at once: a permanent refusal is not retried) or out of
attempts — is a `mail_failed` event and a `delivery_failure` notice to the staff
of the case (its assignee, else the brand's team, else its supervisor), never to
the address that failed, and never about a notice that itself failed. A staff
mail withheld because its recipient left the brand goes to whoever stands in
(`mailbot.cases.staff_mail.redirect_withheld`).
"""

from __future__ import annotations

from sqlalchemy import bindparam
from sqlmodel import Session, select

from mailbot import counters
from mailbot.app import App
from mailbot.cases import rounds, scheduled
from mailbot.cases.records import log_case_event, log_event
from mailbot.cases.staff_mail import Role, recipients, redirect_withheld, send_staff_mail
from mailbot.models import Case
from mailbot.outgoing import outbox
from mailbot.outgoing.outbox import Delivery, DispatchReport

_CASE_BRAND = select(Case.brand).where(Case.id == bindparam("case_id"))


def record_delivery(session: Session, app: App, d: Delivery) -> None:
    """The case's trail says what became of the mail (the case may have been purged)."""
    brand = session.connection().execute(_CASE_BRAND, {"case_id": d.case_id}).scalar() if d.case_id else None
    if d.sent or not d.withheld:
        (counters.MAILS_SENT if d.sent else counters.MAILS_FAILED).labels(brand=brand or "", kind=d.kind).inc()
    if d.case_id is None:
        return
    if d.sent:
        if brand is not None:
            log_case_event(session, d.case_id, "mail_sent", at=d.at, outbox=d.row_id, kind=d.kind,
                           to=d.to_addr, message_id=d.message_id)
            rounds.delivered(session, case_id=d.case_id, kind=d.kind, round_number=d.round_number, at=d.at,
                             via="email")
            if d.kind == scheduled.KIND:
                scheduled.sent(session, app.config.brand(brand), d.case_id, d.message_id, d.round_number, d.at)
        return
    case = session.get(Case, d.case_id)
    if case is None:
        return
    if d.withheld:
        log_event(session, case, "staff_mail_withheld", at=d.at, outbox=d.row_id, kind=d.kind, to=d.to_addr,
                  reason=d.error)
        redirect_withheld(session, app, case, d.row_id)
        return
    log_event(session, case, "mail_failed", at=d.at, outbox=d.row_id, kind=d.kind, to=d.to_addr,
              error=d.error, attempts=d.attempts, permanent=d.permanent)
    _notify_staff(session, app, case, d)


def _notify_staff(session: Session, app: App, case: Case, d: Delivery) -> None:
    """A staff mail (with its token) to the case's staff, none to the address that failed."""
    if d.kind == "delivery_failure":
        return
    ctx = {"delivery": {"to": d.to_addr, "kind": d.kind, "error": d.error.removeprefix("PermanentError: ")[:500],
                        "permanent": d.permanent}}
    role: Role = "assignee"
    staff = [a for a in recipients(app, case, role) if a != d.to_addr]
    if not staff:
        role = "supervisor"
        staff = [a for a in recipients(app, case, role) if a != d.to_addr]
    for address in staff:
        send_staff_mail(session, app, case, "delivery_failure", address, ctx_extra=ctx, role=role)


def dispatch(app: App, **kwargs: object) -> DispatchReport:
    """`mailbot.outgoing.outbox.dispatch`, each outcome written on its case."""
    return outbox.dispatch(app, record=record_delivery, **kwargs)  # type: ignore[arg-type]
