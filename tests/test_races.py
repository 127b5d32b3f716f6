"""Two instances on one PostgreSQL database change the same case at the same moment: no
change is lost (issue #27 item 4). Each race is made to happen, not hoped for: the first
instance stops just before its commit until the second is seen waiting on the database
(the case's row lock), then commits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlmodel import col, select

from mailbot import db
from mailbot.app import App
from mailbot.caselocks import UnlockedCaseChange, lock
from mailbot.ingest.pipeline import ingest
from mailbot.models import Case, Event
from mailbot.outgoing.templating import format_date
from tests.conftest import Clock, make_config
from tests.desk import AGENT, CUSTOMER, Desk, text_of, to
from tests.mails import mail
from tests.pg import PG_URL, throwaway_schema

FINAL_OK = ("#final\nExplication : un contrôle anti-fraude a retenu le virement.\n"
            "Mesures correctives : le seuil du contrôle a été revu.\n"
            "Solution : le virement a été exécuté le 24 novembre.\n")


@pytest.fixture
def two(tmp_path: Path, clock: Clock) -> Iterator[tuple[App, App, str]]:
    """Two Apps (two `mailbot run`) on one PostgreSQL schema; the second's connections
    are named, so the first can see it wait."""
    name = f"race{time.monotonic_ns() % 10**9}"
    with throwaway_schema("race") as url:
        first = App.open(make_config(tmp_path, url), upgrade=True, clock=clock)
        second = App.open(make_config(tmp_path, f"{url}&application_name={name}"), upgrade=False, clock=clock)
        try:
            yield first, second, name
        finally:
            first.close()
            second.close()


def _waiting(admin: Engine, name: str) -> bool:
    with admin.connect() as c:
        return bool(c.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n "
                                   "AND wait_event_type = 'Lock'"), {"n": name}).scalar())


def race(first: App, first_does: Callable[[], Any], second_does: Callable[[], Any], second_name: str) -> None:
    """`first_does` runs up to its commit; `second_does` starts then; the first commits once
    the second waits on a lock (or after 20 s: then the second never had to wait)."""
    admin = create_engine(PG_URL)
    at_commit, armed = threading.Event(), [True]
    second_done = threading.Event()

    def hold(_conn: object) -> None:
        if not armed[0]:
            return
        armed[0] = False
        at_commit.set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not second_done.is_set() and not _waiting(admin, second_name):
            time.sleep(0.05)

    errors: list[BaseException] = []

    def run(fn: Callable[[], Any], done: threading.Event | None = None) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)
        finally:
            if done is not None:
                done.set()

    event.listen(first.engine, "commit", hold)
    try:
        a = threading.Thread(target=run, args=(first_does,))
        a.start()
        assert at_commit.wait(60), "the first instance never reached its commit"
        b = threading.Thread(target=run, args=(second_does, second_done))
        b.start()
        a.join(120)
        b.join(120)
    finally:
        event.remove(first.engine, "commit", hold)
        admin.dispose()
    assert not errors, errors


def _case(app: App) -> Case:
    with db.read_scope(app.engine) as s:
        return s.exec(select(Case).order_by(col(Case.id))).one()


@pytest.mark.servers
def test_a_final_racing_a_customer_reply_leaves_the_case_answered(two: tuple[App, App, str]) -> None:
    first, second, name = two
    desk = Desk(first)
    notif = desk.complaint()
    desk.reply(notif, "#ask\nPouvez-vous nous envoyer le relevé du compte ?")
    asked = desk.new_mail()
    assert _case(first).status == "waiting_customer"
    customer = mail(message_id="<cust-2@example.org>", In_Reply_To="<cust-1@example.org>",
                    subject="Re: Virement non reçu", body="Voici le relevé demandé.\nMarie Dupont")
    race(first, lambda: desk.reply(notif, FINAL_OK),
         lambda: ingest(second, customer, "smtp", envelope_to=["support@kalra-plus.com"]), name)
    case = _case(first)
    # without the lock: the reply's "in_progress" overwrote "answered", answered_at set, no SLA clock
    assert case.status == "answered" and case.answered_at is not None
    sent = desk.new_mail()
    assert len(to(sent, CUSTOMER)) == 1 and asked  # the final response, once
    told = [m for m in to(sent, AGENT) if "Voici le relevé demandé" in text_of(m)]
    assert told, "the agent is told of the customer's mail that came after the final response"


@pytest.mark.servers
def test_two_extensions_at_once_add_up_and_the_notices_agree(two: tuple[App, App, str]) -> None:
    first, second, name = two
    desk, other = Desk(first), Desk(second)
    notif = desk.complaint()
    before = _case(first).due_at
    assert before is not None
    race(first, lambda: desk.reply(notif, "#extend 10 enquête auprès de la banque du bénéficiaire"),
         lambda: other.reply(notif, "#extend 5 attente du relevé de la banque correspondante"), name)
    cal = first.calendar("kalra-plus")
    after_10, after_15 = cal.add_business_days(before, 10), cal.add_business_days(before, 15)
    assert _case(first).due_at == after_15  # not 10, not 5: both extensions count
    with db.read_scope(first.engine) as s:
        moves = [(e.data["old"], e.data["new"]) for e in
                 s.exec(select(Event).where(Event.type == "deadline").order_by(col(Event.id))).all()]
    assert moves == [(before.isoformat(), after_10.isoformat()), (after_10.isoformat(), after_15.isoformat())]
    notices = [text_of(m) for m in to(desk.new_mail(), CUSTOMER)]
    assert len(notices) == 2
    day = {d: format_date(cal.local(d)) for d in (before, after_10, after_15)}
    assert day[after_10] in notices[0] and day[before] in notices[0]
    assert day[after_15] in notices[1] and day[after_10] in notices[1]  # the second starts where the first ended


def test_a_case_changed_without_its_lock_is_refused(make_app: Callable[..., App]) -> None:
    """The guard that keeps every path honest, on either database: a flush that writes a
    case the transaction did not lock fails; with the lock it goes through."""
    app = make_app()
    ingest(app, mail(), "smtp", envelope_to=["support@kalra-plus.com"])
    with pytest.raises(UnlockedCaseChange), db.session_scope(app.engine) as s:
        s.exec(select(Case)).one().priority = "urgent"
    with db.session_scope(app.engine) as s:
        lock(s, s.exec(select(Case)).one()).priority = "urgent"
    assert _case(app).priority == "urgent"
