"""A new complaint that is probably an existing one: the same customer sending the same
text again (a new Message-ID, no thread), or someone writing from another address and
quoting an existing case's reference.

Neither proves the mail belongs to that case (guarantee 4: a From can be forged), so
it still opens a case of its own; but that case is linked to the existing one for an
agent to merge (`#merge`), the customer gets a short acknowledgement that promises no
new deadline (`linked_ack`), and the agents' notification says which case it looks like.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from mailbot import caselocks
from mailbot.cases.records import log_event
from mailbot.cases.sla import OPEN_STATUSES
from mailbot.mail.routing import refs_in
from mailbot.models import Case, Message, track

LOOK_BACK = timedelta(days=90)
MIN_TEXT = 30  # characters: shorter texts are too common to call a resend
_QUOTE_MARK = re.compile(r"^[>\s]+", re.MULTILINE)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Related:
    case: Case
    why: str  # "resent" | "quoted_ref"


def _normal(text: str) -> str:
    return _SPACES.sub(" ", _QUOTE_MARK.sub(" ", text)).strip().casefold()


def related_case(session: Session, brand: str, sender: str, subject: str, text: str,
                 received_at: datetime) -> Related | None:
    """The existing case of `brand` this new complaint is probably about, if any."""
    quoted = refs_in(f"{subject}\n{text[:5000]}")
    for ref in quoted:
        case = session.exec(select(Case).where(Case.ref == ref, Case.brand == brand)).first()
        if case is not None and case.outcome != "merged":
            return Related(case, "quoted_ref")
    new = _normal(text)
    if len(new) < MIN_TEXT or not sender:
        return None
    candidates = session.exec(
        select(Case).where(Case.brand == brand, Case.customer_email == sender.lower(),
                           col(Case.status).in_(OPEN_STATUSES), col(Case.received_at) >= received_at - LOOK_BACK)
        .order_by(col(Case.id).desc()).limit(20)).all()
    for case in candidates:
        first = session.exec(select(Message.body_text).where(Message.case_id == case.id, Message.kind == "customer")
                             .order_by(col(Message.id)).limit(1)).first()
        old = _normal(first or "")
        if len(old) >= MIN_TEXT and old in new:
            return Related(case, "resent")
    return None


def link_to(session: Session, case: Case, related: Related, at: datetime) -> None:
    """Link the new case to the one it looks like (each names the other), with why."""
    caselocks.lock(session, related.case)
    for a, b in ((case, related.case), (related.case, case)):
        if a.linked_case_id is None or a is case:
            a.linked_case_id = b.id
            track(session, a)
    log_event(session, case, "probable_duplicate", at=at, other=related.case.ref, why=related.why)
    log_event(session, related.case, "linked", at=at, other=case.ref, why=related.why)
