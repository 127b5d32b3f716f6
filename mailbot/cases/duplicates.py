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

from sqlalchemy import bindparam, literal_column
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


# The open statuses written into the statement (code constants), rather than an expanding
# IN that SQLAlchemy renders again at every execution.
_OPEN = [literal_column(f"'{status}'") for status in sorted(OPEN_STATUSES)]
_BY_REF = (select(Case.id).where(Case.ref == bindparam("ref"), Case.brand == bindparam("brand"),
                                  col(Case.outcome).is_distinct_from("merged")).limit(1))
_FIRST_CUSTOMER_TEXT = (select(Message.body_text)
                        .where(Message.case_id == Case.id, Message.kind == "customer")
                        .order_by(col(Message.id)).limit(1).scalar_subquery())
_RECENT_OPEN = (select(Case.id, _FIRST_CUSTOMER_TEXT)
                .where(Case.brand == bindparam("brand"), Case.customer_email == bindparam("sender"),
                       col(Case.status).in_(_OPEN), col(Case.received_at) >= bindparam("since"))
                .order_by(col(Case.id).desc()).limit(20))


def related_case(session: Session, brand: str, sender: str, subject: str, text: str,
                 received_at: datetime) -> Related | None:
    """The existing case of `brand` this new complaint is probably about, if any.

    Read with Core statements on the session's connection: two queries at most, and no
    autoflush of the batch's pending changes (every case and message is INSERTed at once)."""
    conn = session.connection()
    for ref in refs_in(f"{subject}\n{text[:5000]}"):
        case_id = conn.execute(_BY_REF, {"ref": ref, "brand": brand}).scalar()
        if case_id is not None:
            return Related(_case(session, case_id), "quoted_ref")
    new = _normal(text)
    if len(new) < MIN_TEXT or not sender:
        return None
    rows = conn.execute(_RECENT_OPEN, {"brand": brand, "sender": sender.lower(),
                                       "since": received_at - LOOK_BACK})
    for case_id, first in rows:
        old = _normal(first or "")
        if len(old) >= MIN_TEXT and old in new:
            return Related(_case(session, case_id), "resent")
    return None


def _case(session: Session, case_id: int) -> Case:
    case = session.get(Case, case_id)
    assert case is not None
    return case


def link_to(session: Session, case: Case, related: Related, at: datetime) -> None:
    """Link the new case to the one it looks like (each names the other), with why."""
    caselocks.lock(session, related.case)
    for a, b in ((case, related.case), (related.case, case)):
        if a.linked_case_id is None or a is case:
            a.linked_case_id = b.id
            track(session, a)
    log_event(session, case, "probable_duplicate", at=at, other=related.case.ref, why=related.why)
    log_event(session, related.case, "linked", at=at, other=case.ref, why=related.why)
