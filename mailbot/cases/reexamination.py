"""Re-examination: a customer who is not satisfied with the final response asks for the
case to be examined again. It is a new round of the case (mailbot.cases.rounds) with its
own acknowledgement, deadline (`sla.reexamination_days` business days), reminders and
escalation; its outcome offers mediation."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from mailbot.app import App
from mailbot.cases import rounds, sla
from mailbot.cases.records import log_event, set_status
from mailbot.models import Case, StoredMessage
from mailbot.outgoing.responses import acknowledge


def reopen(session: Session, app: App, case: Case, msg: StoredMessage | None, received_at: datetime, *,
           actor: str, reason: str) -> None:
    """Open the re-examination round: status, deadlines, acknowledgement, SLA clock."""
    brand = app.config.brand(case.brand)
    cal = app.calendar(brand)
    now = app.now()
    set_status(session, case, "reexamination", actor=actor, at=now, reason=reason)
    due = cal.add_business_days(received_at, brand.sla.reexamination_days)
    rounds.open_round(session, case, brand, cal, kind="reexamination", received_at=received_at,
                      ack_due_at=sla.ack_due(brand, cal, received_at), due_at=due)
    case.due_at = due
    session.add(case)
    log_event(session, case, "deadline", actor=actor, at=now, due_at=due.isoformat(), reason="reexamination",
              round=case.round_number)
    acknowledge(session, app, case, msg, kind="reexamination_ack")
    sla.reschedule(session, case, brand)
