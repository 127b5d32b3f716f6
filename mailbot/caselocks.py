"""Every change of a case is made under its row lock: two instances on one PostgreSQL
database (or an agent's mail, a customer's reply and the scheduler at once) never lose
each other's changes (issue #27 item 4).

`lock(session, case)` takes the case's row lock for the rest of the transaction
(`SELECT … FOR UPDATE`) and reloads the case as the lock found it: a writer that
read it before another one committed sees that one's change, and waits for one
still running. On SQLite it only notes the lock: every write transaction starts
with `BEGIN IMMEDIATE` (mailbot.db), so a case read inside one is already current
and no other writer runs meanwhile. `locked(session, cases)` notes cases read with
`FOR UPDATE` already (the scheduler's sweep); a case inserted by the transaction
is its own.

A flush that would write a case the transaction has not locked raises
`UnlockedCaseChange`: a path that forgets the lock fails in every test that takes
it, on SQLite as on PostgreSQL, instead of losing an update once in a while in
production.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import event
from sqlmodel import Session

from mailbot.models import Case

_LOCKED = "mailbot_locked_cases"


class UnlockedCaseChange(RuntimeError):
    """A case was about to be written without its row lock (a programming error)."""


def held(session: Session) -> set[int]:
    """The ids of the cases this transaction holds the lock of."""
    found: set[int] = session.info.setdefault(_LOCKED, set())
    return found


def lock(session: Session, case: Case) -> Case:
    """Take the case's row lock (once per transaction) and return it as it is now.
    Call it before changing anything of the case: a change made before would be lost
    by the reload."""
    if case.id is None or case.id in held(session):
        return case
    if session.get_bind().dialect.name == "postgresql":
        if case in session and session.is_modified(case):
            raise UnlockedCaseChange(f"case {case.ref} was changed before its lock was taken")
        session.refresh(case, with_for_update=True)
    held(session).add(case.id)
    return case


def locked(session: Session, cases: Iterable[Case]) -> None:
    """Note cases this transaction read `FOR UPDATE` (or inserted) as locked."""
    held(session).update(c.id for c in cases if c.id is not None)


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the database transaction ended: its locks with it
        session.info.pop(_LOCKED, None)


@event.listens_for(Session, "before_flush")
def _only_locked_cases_change(session: Session, _context: Any, _instances: Any) -> None:
    mine = session.info.get(_LOCKED, ())
    for obj in session.dirty:
        if isinstance(obj, Case) and obj.id not in mine and session.is_modified(obj):
            raise UnlockedCaseChange(f"case {obj.ref} changed without its row lock (mailbot.caselocks.lock)")
