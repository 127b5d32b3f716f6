"""Relating cases: `#link REF` (two cases to read together) and `#merge REF` (one
customer's two cases about one thing become one).

A merge keeps the case received first, whichever of the two the command is sent on
(`#merge KP-2026-000123` from the duplicate's notification and from the original's do the
same thing). The other case's messages (and their files) move to it, so its thread —
replies to its mails, its reply address — leads to the kept case (mailbot.mail.routing
follows a merged case to the one it was merged into); the kept case keeps the earlier
deadline; the other is closed with the outcome `merged`. The customer is told once, by
one mail on the kept case.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from mailbot import caselocks
from mailbot.app import App
from mailbot.cases import sla
from mailbot.cases.messages import say
from mailbot.cases.records import log_event, set_status
from mailbot.cases.responses import send_case_mail
from mailbot.models import Case, Message, track

MERGED = "merged"


def other_case(session: Session, case: Case, ref: str, command: str) -> Case:
    """The case `ref` names, of the same brand and not `case` itself (else Rejected)."""
    from mailbot.cases.actions import Rejected

    ref = ref.strip().upper()
    if not ref:
        raise Rejected(command, [say("ref_usage", command=command)])
    other = session.exec(select(Case).where(Case.ref == ref, Case.brand == case.brand)).first()
    if other is None:
        raise Rejected(command, [say("no_such_case", ref=ref, brand=case.brand)])
    if other.id == case.id:
        raise Rejected(command, [say("same_case", ref=ref)])
    return caselocks.lock(session, other)


def link(session: Session, app: App, case: Case, actor: str, ref: str) -> Case:
    """Relate the two cases (each names the other); nothing is sent."""
    caselocks.lock(session, case)
    other = other_case(session, case, ref, "#link")
    for a, b in ((case, other), (other, case)):
        if a.linked_case_id != b.id:
            log_event(session, a, "linked", actor=actor, at=app.now(), other=b.ref)
            a.linked_case_id = b.id
            track(session, a)
    return other


def merge(session: Session, app: App, case: Case, actor: str, ref: str) -> tuple[Case, Case]:
    """Make `case` and case `ref` one (see the module docstring); returns (kept, merged)."""
    from mailbot.cases.actions import Rejected, last_customer_message

    caselocks.lock(session, case)
    other = other_case(session, case, ref, "#merge")
    for c in (case, other):
        if c.outcome == MERGED:
            into = session.get(Case, c.linked_case_id) if c.linked_case_id else None
            raise Rejected("#merge", [say("already_merged", ref=c.ref, into=into.ref if into else "?")])
    related = other.linked_case_id == case.id or case.linked_case_id == other.id
    if not related and other.customer_email.lower() != case.customer_email.lower():
        raise Rejected("#merge", [say("other_customer", other=other.ref, customer=case.customer_email, ref=case.ref)])
    if (other.received_at, other.id or 0) < (case.received_at, case.id or 0):
        case, other = other, case  # the one received first is kept
    now = app.now()
    brand = app.config.brand(case.brand)
    session.flush()
    session.connection().execute(update(Message).where(col(Message.case_id) == other.id).values(case_id=case.id))
    if other.due_at is not None and (case.due_at is None or other.due_at < case.due_at):
        log_event(session, case, "deadline", actor=actor, at=now, old=case.due_at.isoformat() if case.due_at else None,
                  new=other.due_at.isoformat(), reason=f"merged with {other.ref}, due earlier")
        case.due_at = other.due_at
    track(session, case)
    other.outcome, other.linked_case_id, other.closed_at = MERGED, case.id, now
    set_status(session, other, "closed", actor=actor, at=now, reason=f"merged into {case.ref}")
    log_event(session, other, "merged", actor=actor, at=now, into=case.ref)
    log_event(session, case, "merged_in", actor=actor, at=now, other=other.ref)
    sla.reschedule(session, other, brand)
    sla.reschedule(session, case, brand)
    if case.customer_email:
        send_case_mail(session, app, case, "merge_notice", to_addr=case.customer_email, to_name=case.customer_name,
                       about=last_customer_message(session, case), automatic=False,
                       ctx_extra={"merge": {"other_ref": other.ref}})
    return case, other
