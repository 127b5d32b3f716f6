"""A final response scheduled for later (`#final at …`, issue #27 item 6 and #20 item 14): in
the future and by the round's promised date, the case open until the mail goes out, held
by a customer's mail that comes before it."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.cases import register
from mailbot.models import Outbox
from tests.desk import AGENT, CUSTOMER, Desk, only, text_of, to
from tests.mails import mail

SECTIONS = ("Explication : un contrôle anti-fraude a retenu le virement.\n"
            "Mesures correctives : le seuil du contrôle a été revu.\n"
            "Solution : le virement a été exécuté le 24 novembre.\n")
AT = "2026-11-27T10:00"  # Paris time: a Friday, before the promised date (5 business days from Monday 23)


@pytest.fixture
def desk(app: App) -> Desk:
    return Desk(app)


def rejection(desk: Desk, notif: object, body: str) -> str:
    desk.reply(notif, body)  # type: ignore[arg-type]
    mails = desk.new_mail()
    assert to(mails, CUSTOMER) == []
    return text_of(only(to(mails, AGENT)))


def answer(desk: Desk) -> tuple[str, str]:
    with db.read_scope(desk.app.engine) as s:
        row = register.rows(s, desk.app)[-1]
    return row["answered_at"], row["answer_met"]


def test_a_final_in_the_past_is_refused(desk: Desk) -> None:
    """#20 item 14: `#final at 2020-01-01T00:00` dated the answer before the complaint."""
    notif = desk.complaint()
    assert "est passé" in rejection(desk, notif, f"#final at 2020-01-01T00:00\n{SECTIONS}")
    case = desk.case()
    assert case.status != "answered" and case.answered_at is None
    assert answer(desk) == ("", "")


def test_a_final_after_the_promised_date_is_refused(desk: Desk) -> None:
    """#27 item 6: `#final at 2030-01-15T09:00` stopped the clock for three years."""
    notif = desk.complaint()
    due = desk.app.calendar("kalra-plus").local(desk.case().due_at).strftime("%Y-%m-%d %H:%M")  # type: ignore[arg-type]
    text = rejection(desk, notif, f"#final at 2030-01-15T09:00\n{SECTIONS}")
    assert "au plus tard" in text and due in text
    case = desk.case()
    assert case.answered_at is None and case.next_sla_at is not None
    with db.read_scope(desk.app.engine) as s:
        assert s.exec(select(Outbox).where(Outbox.kind == "final_response")).all() == []


def test_the_case_stays_open_until_the_scheduled_final_goes_out(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, f"#final at {AT}\n{SECTIONS}")
    assert to(desk.new_mail(), CUSTOMER) == []
    case = desk.case()
    assert case.status != "answered" and case.answered_at is None and case.next_sla_at is not None
    assert answer(desk) == ("", "")
    desk.app.clock.set("2026-11-27T09:05:00+00:00")  # type: ignore[attr-defined]
    assert len(to(desk.new_mail(), CUSTOMER)) == 1
    case = desk.case()
    assert case.status == "answered" and case.answered_at == datetime.fromisoformat("2026-11-27T09:05:00+00:00")
    assert case.outcome == "accepted" and case.next_sla_at is None
    assert answer(desk)[1] == "yes"


def test_a_customer_mail_before_it_holds_the_scheduled_final_and_tells_the_agent(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, f"#final at {AT}\n{SECTIONS}")
    desk.new_mail()
    desk.app.clock.set("2026-11-24T09:00:00+00:00")  # type: ignore[attr-defined]
    desk.receive(mail(message_id="<cust-2@example.org>", In_Reply_To="<cust-1@example.org>",
                      subject="Re: Virement non reçu", body="Le virement vient d'être rejeté, je vous joins l'avis."))
    mails = desk.new_mail()
    assert to(mails, CUSTOMER) == []  # no re-examination acknowledgement: nothing was answered
    told = text_of(only(to(mails, AGENT)))
    assert "RÉPONSE FINALE SUSPENDUE" in told and "27 novembre 2026" in told and "vient d'être rejeté" in told
    assert desk.case().status not in ("answered", "closed")
    desk.app.clock.set("2026-11-27T12:00:00+00:00")  # type: ignore[attr-defined]
    assert to(desk.new_mail(), CUSTOMER) == []  # held: it never goes
    with db.read_scope(desk.app.engine) as s:
        assert [r.status for r in s.exec(select(Outbox).where(Outbox.kind == "final_response")).all()] == ["held"]
    assert desk.case().answered_at is None
    desk.reply(notif, "#final\n" + SECTIONS.replace("24 novembre", "25 novembre"))  # the agent answers anew
    (final,) = to(desk.new_mail(), CUSTOMER)
    assert "25 novembre" in text_of(final) and desk.case().status == "answered"


def test_a_new_final_replaces_a_scheduled_one_not_sent_yet(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, f"#final at {AT}\n{SECTIONS}")
    desk.reply(notif, "#final\n" + SECTIONS.replace("24 novembre", "25 novembre"))
    (final,) = to(desk.new_mail(), CUSTOMER)
    assert "25 novembre" in text_of(final)
    desk.app.clock.set("2026-11-27T12:00:00+00:00")  # type: ignore[attr-defined]
    assert to(desk.new_mail(), CUSTOMER) == []  # one final response
    assert "une seule par tour" in rejection(desk, notif, f"#final at 2026-11-30T10:00\n{SECTIONS}")
