"""Letters from the case's side: rendering those waiting, listing them, and what posting
one means (`mailbot letters list|posted`).

A letter counts when it is posted, on the day it was posted: an acknowledgement letter
acknowledges the case (its deadline is met only if posted in time), a final response
letter answers it (until then the case stays open and its SLA clock runs: a letter left
unposted past the deadline is escalated like an unanswered case). In the register a
letter's time is the start of the local day it was posted (mailbot.cases.rounds).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from mailbot import caselocks, db
from mailbot.app import App
from mailbot.cases import rounds, sla
from mailbot.cases.records import log_event, set_status
from mailbot.models import Case, Letter
from mailbot.outgoing import letter_pdf, letters


def letters_dir(app: App) -> Path:
    return app.config.resolve_path(app.config.letters.path)


def render_pending(app: App) -> int:
    """Render every letter not rendered yet and write its PDF file; returns how many. A
    letter that cannot be rendered keeps its error (shown by `letters list`)."""
    with db.session_scope(app.engine) as s:
        pending = [(letter, s.get(Case, letter.case_id))
                   for letter in s.exec(select(Letter).where(col(Letter.pdf).is_(None),
                                                             col(Letter.posted_on).is_(None)))]
        done = 0
        for letter, case in pending:
            assert case is not None
            try:
                letter_pdf.stamp(letter, letter_pdf.render(app, case, letter), app.now())
            except Exception as exc:  # noqa: BLE001 - one letter's error is that letter's
                letter.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                s.add(letter)
                continue
            letters.write_file(letters_dir(app), letter, case.ref)
            s.add(letter)
            done += 1
    return done


@dataclass(frozen=True)
class LetterRow:
    id: int
    ref: str
    kind: str
    to_name: str
    to_address: str
    created_on: str
    posted_on: str | None
    file: str | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def list_letters(session: Session, app: App, *, all_: bool = False) -> list[LetterRow]:
    """Letters to post (with `all_`: posted ones too), oldest first."""
    stmt = select(Letter, Case).join(Case, col(Case.id) == col(Letter.case_id)).order_by(col(Letter.id))
    if not all_:
        stmt = stmt.where(col(Letter.posted_on).is_(None))
    out = []
    for letter, case in session.exec(stmt):
        cal = app.calendar(case.brand)
        path = letters_dir(app) / letters.file_name(letter, case.ref)
        out.append(LetterRow(letter.id or 0, case.ref, letter.kind, letter.to_name, letter.to_address,
                             cal.local(letter.created_at).date().isoformat(),
                             letter.posted_on.isoformat() if letter.posted_on else None,
                             str(path) if letter.pdf is not None else None, letter.last_error))
    return out


class NotPostable(ValueError):
    """The letter does not exist, was posted already, or the date is not possible."""


def posted(session: Session, app: App, letter_id: int, *, on: date | None, by: str) -> Letter:
    """Record a letter as posted on `on` (default: today, the brand's local day)."""
    letter = session.get(Letter, letter_id)
    if letter is None:
        raise NotPostable(f"no letter #{letter_id} (see mailbot letters list)")
    if letter.posted_on is not None:
        raise NotPostable(f"letter #{letter_id} was recorded as posted on {letter.posted_on.isoformat()}")
    case = session.get(Case, letter.case_id)
    assert case is not None
    caselocks.lock(session, case)
    cal = app.calendar(case.brand)
    today = cal.local(app.now()).date()
    day = on or today
    created = cal.local(letter.created_at).date()
    if not created <= day <= today:
        raise NotPostable(f"--on {day.isoformat()}: a letter is posted between the day it was written "
                          f"({created.isoformat()}) and today ({today.isoformat()})")
    now = app.now()
    letters.mark_posted(session, letter, on=day, by=by, now=now)
    at = rounds.start_of_day(cal, day)
    number = int((letter.context or {}).get("round") or case.round_number)
    rounds.delivered(session, case_id=case.id, kind=letter.kind, round_number=number, at=at, via="letter")
    log_event(session, case, "letter_posted", actor=by, at=now, letter=letter.id, kind=letter.kind,
              on=day.isoformat())
    _case_after_posting(session, app, case, letter.kind, at)
    return letter


def _case_after_posting(session: Session, app: App, case: Case, kind: str, at: datetime) -> None:
    if kind in rounds.ACK_KINDS:
        if case.acknowledged_at is None:
            case.acknowledged_at = at
        if case.status == "new":
            set_status(session, case, "acknowledged", at=app.now(), reason=f"{kind} letter posted")
    elif kind in rounds.ANSWER_KINDS:
        case.answered_at = at
        set_status(session, case, "answered", at=app.now(), reason="final response letter posted")
    else:
        return
    session.add(case)
    sla.reschedule(session, case, app.config.brand(case.brand))
