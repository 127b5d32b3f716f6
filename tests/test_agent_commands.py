"""Agent commands by email: notes, questions, closing (issue #23 items 2 and 3)."""

from __future__ import annotations

import pytest

from mailbot.app import App
from tests.desk import AGENT, CUSTOMER, SUPERVISOR, Desk, only, text_of, to

FINAL_OK = ("#final\nExplication : un contrôle anti-fraude a retenu le virement.\n"
            "Mesures correctives : le seuil du contrôle a été revu.\n"
            "Solution : le virement a été exécuté le 24 novembre.\n")


@pytest.fixture
def desk(app: App) -> Desk:
    return Desk(app)


def test_a_one_line_note_keeps_its_text_and_the_rest_of_the_mail_still_counts(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, "#note Client connu, deuxième réclamation cette année.\nBonjour Madame,\nNous regardons.")
    assert [m.body_text for m in desk.messages("note")] == ["Client connu, deuxième réclamation cette année."]
    (reply,) = to(desk.new_mail(), CUSTOMER)
    assert "Nous regardons." in text_of(reply) and "Client connu" not in text_of(reply)


def test_a_note_block_is_the_whole_text_and_reaches_no_customer(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, "#note\nAppelé la cliente.\nElle renvoie le relevé demain.")
    assert [m.body_text for m in desk.messages("note")] == ["Appelé la cliente.\nElle renvoie le relevé demain."]
    assert to(desk.new_mail(), CUSTOMER) == []


def test_an_empty_note_is_refused(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, "#note")
    assert "note" in text_of(only(to(desk.new_mail(), AGENT))).lower() and not desk.messages("note")


def test_a_one_line_question_goes_to_the_customer(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, "#ask Pouvez-vous nous envoyer le relevé de novembre ?")
    (ask,) = to(desk.new_mail(), CUSTOMER)
    assert "Pouvez-vous nous envoyer le relevé de novembre ?" in text_of(ask)
    assert desk.case().status == "waiting_customer"


def test_an_agent_cannot_close_an_unanswered_case_and_a_supervisor_must_give_a_reason(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, "#close le client a retiré sa réclamation")
    rejection = only(to(desk.new_mail(), AGENT))
    assert "superviseur" in text_of(rejection) or "supervisor" in text_of(rejection)
    assert desk.case().status != "closed"
    desk.reply(notif, "#close", frm=SUPERVISOR)
    assert "reason" in text_of(only(to(desk.new_mail(), SUPERVISOR))) and desk.case().status != "closed"
    desk.reply(notif, "#close\nLe client nous a confirmé par téléphone que le virement est arrivé.",
               frm=SUPERVISOR)
    case = desk.case()
    assert case.status == "closed"
    (told,) = to(desk.new_mail(), CUSTOMER)
    assert "est close" in text_of(told) and "virement est arrivé" in text_of(told)
    assert desk.events("status")[-1].data["reason"].startswith("Le client nous a confirmé")


def test_a_brand_may_let_agents_close_unanswered_cases(make_app) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import SHIPPED

    desk = Desk(make_app(brands=[{**SHIPPED["brands"][0], "close_without_final": "agents"}, SHIPPED["brands"][1]]))
    notif = desk.complaint()
    desk.reply(notif, "#close doublon de KP-2026-000009")
    assert desk.case().status == "closed"
    assert "doublon de KP-2026-000009" in text_of(to(desk.new_mail(), CUSTOMER)[-1])


def test_closing_after_the_final_response_needs_no_reason_and_sends_nothing(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, FINAL_OK)
    desk.new_mail()
    desk.reply(notif, "#close")
    assert desk.case().status == "closed" and desk.new_mail() == []
