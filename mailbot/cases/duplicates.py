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
from mailbot.cases import records
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
                       col(Case.status).in_(_OPEN), col(Case.received_at) >= bindparam("since"),
                       Case.id != bindparam("new"))
                .order_by(col(Case.id).desc()).limit(20))


def related_case(session: Session, case: Case, subject: str, text: str) -> Related | None:
    """The existing case of the new `case`'s brand this complaint is probably about, if any.

    Read with Core statements on the session's connection, and no autoflush of the
    batch's pending changes (every case and message is INSERTed at once). In a batch
    (`prefetch_open_cases`), a sender known to have no other open case skips the resend
    query: most complaints come from someone with no case open."""
    conn = session.connection()
    for ref in refs_in(f"{subject}\n{text[:5000]}"):
        case_id = conn.execute(_BY_REF, {"ref": ref, "brand": case.brand}).scalar()
        if case_id is not None and case_id != case.id:
            return Related(_case(session, case_id), "quoted_ref")
    sender = case.customer_email.lower()
    if not sender or not records.may_have_open_case(session, sender, besides=case.id):
        return None
    new = _normal(text)
    if len(new) < MIN_TEXT:
        return None
    rows = conn.execute(_RECENT_OPEN, {"brand": case.brand, "sender": sender, "new": case.id,
                                       "since": case.received_at - LOOK_BACK})
    for case_id, first in rows:
        old = _normal(first or "")
        if len(old) >= MIN_TEXT and old in new:
            return Related(_case(session, case_id), "resent")
    return None


# By address alone, the status read back: with a status condition, SQLite read every open
# case through ix_cases_open_due (status first) for a batch of a hundred addresses, a
# scan that grew with the database; by address it seeks each one in ix_cases_customer_email.
_SENDERS_CASES = (select(Case.customer_email, Case.id, Case.status)
                  .where(col(Case.customer_email).in_(bindparam("senders", expanding=True))))


def prefetch_open_cases(session: Session, senders: list[str]) -> None:
    """Which of a batch's senders (lower-case) have an open case, in one query: the
    others skip `related_case`'s resend query (records.may_have_open_case)."""
    found: dict[str, set[int]] = {a: set() for a in senders}
    for address, case_id, status in session.connection().execute(_SENDERS_CASES, {"senders": senders}):
        if status in OPEN_STATUSES:
            found.setdefault(address, set()).add(case_id)
    records.remember_open_cases(session, found)


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
