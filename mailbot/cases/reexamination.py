"""Re-examination: a customer who is not satisfied with the final response asks for the
case to be examined again (Divikeys §4; the bank's procedure and the regulator expect it).

A customer's mail to an answered or closed case opens a re-examination only when it asks
for one (`asked_for`: its new text — quoted history stripped, so our own "you can ask for a
re-examination" quoted back does not count — or its subject holds words such as conteste,
réexamen, pas satisfait, not satisfied, appeal), or when an agent says so (`#reexamine`,
`by_agent`). Any other mail ("Merci, ça marche !") is attached to the case and its staff are
told; the customer gets nothing and the case stays as it is.

A re-examination is a new round of the case (mailbot.cases.rounds) with its own
acknowledgement, deadline (`sla.reexamination_days` business days from its receipt),
reminders and escalation (its SLA points span from its own receipt); its final response
offers mediation and no further re-examination.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlmodel import Session, col, select

from mailbot import caselocks
from mailbot.app import App
from mailbot.cases import rounds, sla
from mailbot.cases.records import log_event, set_status
from mailbot.cases.responses import acknowledge
from mailbot.mail.extract import fold
from mailbot.models import Case, Inbound, Message, StoredMessage

REOPENABLE = ("answered", "closed")

# Folded (lower case, no accents). A negated form ("je ne conteste pas") is not a request.
_ASKS = re.compile(
    r"(?<!ne )\bcontest(?:e|es|ons|ez|ent|er|ation)\b(?! pas)"
    r"|\bre-?examen\b|\bre-?examin\w*|\breconsider\w*"
    r"|\bpas (?:du tout )?(?:satisfait|satisfaite|d'accord|content|contente)\b|\binsatisfait\w*"
    r"|\bmecontent\w*|\ben desaccord\b|\bdesaccord\b|\brevoir (?:ma|mon|votre|la|le) \w+"
    r"|\bfaire appel\b"
    r"|\bnot (?:at all )?(?:satisfied|happy)\b|\bunsatisfied\b|\bdissatisfied\b|\bdisagree\w*"
    r"|\bi dispute\b|\bappeal\b|\breview (?:my|the|your) (?:case|complaint|decision)\b"
)


def asked_for(subject: str, new_text: str) -> str | None:
    """The words by which a customer's mail asks for a re-examination, or None. `new_text`:
    the mail's own text, quoted history stripped (mailbot.mail.quotes.strip_reply)."""
    for text in (new_text, subject):
        found = _ASKS.search(fold(text or ""))
        if found:
            return found.group(0)
    return None


def reopen(session: Session, app: App, case: Case, msg: Message | StoredMessage | None, received_at: datetime, *,
           actor: str, reason: str) -> None:
    """Open the re-examination round: status, deadlines, acknowledgement, SLA clock."""
    caselocks.lock(session, case)
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


def after_answer(session: Session, app: App, case: Case, msg: StoredMessage, *, subject: str, new_text: str,
                 received_at: datetime) -> bool:
    """A customer wrote to an answered or closed case: a re-examination if the mail asks for
    one (returns True), else only recorded (the staff's notification says so)."""
    words = asked_for(subject, new_text)
    if words is None:
        log_event(session, case, "message_after_answer", actor=case.customer_email, at=app.now(),
                  message=msg.id, reason="no request for a re-examination in it; #reexamine opens one")
        return False
    reopen(session, app, case, msg, received_at, actor=case.customer_email,
           reason=f"the customer asks for it ({words!r})")
    return True


class NotReopenable(ValueError):
    """`#reexamine` on a case that has no final response yet."""


def by_agent(session: Session, app: App, case: Case, actor: str, reason: str = "") -> None:
    """`#reexamine`: the agent reads a customer's mail as a request for a re-examination. It
    counts from that mail (the customer's last one after the answer), else from now."""
    caselocks.lock(session, case)
    if case.status not in REOPENABLE:
        raise NotReopenable(f"case {case.ref} is {case.status}: only an answered or closed case is re-examined")
    last = session.exec(select(Message).where(Message.case_id == case.id, Message.direction == "in",
                                              Message.kind == "customer").order_by(col(Message.id).desc())).first()
    answered = rounds.current(session, case).answered_at or case.answered_at
    inbound = session.get(Inbound, last.inbound_id) if last is not None and last.inbound_id else None
    got = inbound.received_at if inbound is not None else last.created_at if last is not None else None
    if last is not None and got is not None and answered is not None and got > answered:
        received, about = got, last
    else:
        received, about = app.now(), None
    reopen(session, app, case, about, received, actor=actor,
           reason="re-examination opened by an agent" + (f": {reason}" if reason else ""))
