"""Letters: the one send path's other output, for customers answered by post.

A customer with no email address (a complaint received on paper or by phone), or who asked
for paper, gets letters instead of mails: acknowledgement, extension notice, holding reply,
final response — every mail the case sends its customer (`send_case_mail` routes it here).
A letter is a row written in the transaction of the case change that causes it, like an
outbox row; it is rendered to a PDF from the same templates as the mail
(mailbot.outgoing.letter_pdf), printed and posted by hand, and recorded as posted with the
day it left (`mailbot letters posted ID [--on DATE]`). What posting means for the case
(acknowledged, answered) is mailbot.cases.postal's.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from mailbot import filemodes
from mailbot.models import Case, Letter


def by_post(case: Case) -> bool:
    """The case's customer is answered by post: asked for paper, or came by another channel
    than email (post, phone, form) without an email address. A mail whose sender address
    was unusable (issue 26: `From: a@x.example b@y.example`) is not: no postal address is
    known either, so nothing is queued and the staff's notification says so."""
    if (case.extracted or {}).get("by_post"):
        return True
    return not case.customer_email and case.channel != "email"


def postal_address(case: Case) -> str:
    return str((case.extracted or {}).get("postal_address") or "")


def queue(session: Session, case: Case, kind: str, *, language: str | None, to_name: str,
          context: dict[str, Any], now: datetime) -> Letter:
    """A letter to post, in the caller's transaction."""
    letter = Letter(case_id=case.id or 0, kind=kind, language=language, to_name=to_name[:500],
                    to_address=postal_address(case)[:1000], context=context, created_at=now)
    session.add(letter)
    session.flush()
    return letter


def file_name(letter: Letter, ref: str) -> str:
    return f"{ref}-{letter.id:05d}-{letter.kind}.pdf"


def write_file(directory: Path, letter: Letter, ref: str) -> Path:
    filemodes.private_dir(directory)  # 0700 and 0600: a customer's postal address (mailbot.filemodes)
    path = directory / file_name(letter, ref)
    tmp = path.with_suffix(".tmp")
    filemodes.write_private(tmp, letter.pdf or b"")
    tmp.replace(path)
    return path


def mark_posted(session: Session, letter: Letter, *, on: date, by: str, now: datetime) -> None:
    letter.posted_on, letter.posted_at, letter.posted_by = on, now, by[:500]
    session.add(letter)
