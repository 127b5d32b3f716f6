"""Agent commands by email: notes, questions, closing (issue #23 items 2 and 3)."""

from __future__ import annotations

import pytest

from mailbot.app import App
from tests.desk import AGENT, CUSTOMER, SUPERVISOR, Desk, only, text_of, to
from tests.mails import mail

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
    assert "raison" in text_of(only(to(desk.new_mail(), SUPERVISOR))) and desk.case().status != "closed"
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


# -- help that fits the brand, in the agent's language (item 9) -------------------------------


def test_the_help_lists_the_brands_own_tiers_categories_and_headings(app: App) -> None:
    desk = Desk(app)
    kp = text_of(desk.complaint())
    assert "#tier simple|complex|exceptional" in kp and "#category transaction|compte|frais" in kp
    assert "« Explication : », « Mesures correctives : », « Solution : »" in kp
    desk.receive(mail(to="info@divikeys.com", frm="Luc <luc@example.org>", message_id="<dk@example.org>"),
                 "info@divikeys.com")
    dk = text_of(only(to(desk.new_mail(), "agent@divikeys.com")))
    assert "#tier standard" in dk and "#category technique|transaction|projet|autre" in dk
    assert "« Résumé : », « Étapes suivies : », « Solution : »" in dk and "exceptional" not in dk
    assert "#reply documents|interim" in dk


def test_a_rejection_is_in_the_agents_language(make_app) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import SHIPPED

    agents = [{**a, "language": "en"} if a["email"] == AGENT else a for a in SHIPPED["agents"]]
    desk = Desk(make_app(agents=agents))
    notif = desk.complaint()
    assert "Commands (one per line" in text_of(notif) or "#note text" in text_of(notif)
    desk.reply(notif, "#final\nSolution : remboursé.")
    text = text_of(only(to(desk.new_mail(), AGENT)))
    assert 'missing section: "Explication :"' in text and "section manquante" not in text


# -- replies that read well (item 10) ---------------------------------------------------------


def test_an_agents_own_greeting_and_closing_are_not_doubled_and_an_interim_reply_is_not_a_final(app: App) -> None:
    desk = Desk(app)
    notif = desk.complaint()
    desk.reply(notif, "Bonjour Madame Dupont,\nNous avons relancé la banque émettrice.\nBien à vous,\nPaul")
    reply = only(to(desk.new_mail(), CUSTOMER))
    text = text_of(reply)
    assert text.count("Bonjour") == 1 and "Cordialement" not in text and "Bien à vous" in text
    assert "Suivi de votre réclamation" in reply["Subject"] and "Réponse à votre réclamation" not in reply["Subject"]
    desk.reply(notif, "Nous avons relancé la banque.")
    plain = text_of(only(to(desk.new_mail(), CUSTOMER)))
    assert plain.startswith("Bonjour Marie Dupont,") and "Cordialement," in plain


def test_a_follow_up_notification_does_not_repeat_the_quoted_acknowledgement(app: App) -> None:
    desk = Desk(app)
    desk.complaint()
    ack = only(to(desk.inbox, CUSTOMER))
    quoted = "\n".join("> " + line for line in text_of(ack).splitlines())
    desk.receive(mail(body=f"Voici le relevé demandé.\n\nLe 23/11/2026 à 10:00, Kalra-plus a écrit :\n{quoted}\n",
                      In_Reply_To=ack["Message-ID"]))
    notif = text_of(only(to(desk.new_mail(), AGENT)))
    assert "Voici le relevé demandé." in notif and "lignes citées (historique) omises" in notif
    assert "Nous accusons" not in notif and "> " not in notif.split("----- Message")[1]


def test_later_notifications_repeat_the_notes(app: App) -> None:
    desk = Desk(app)
    notif = desk.complaint()
    desk.reply(notif, "#note Client connu : deuxième réclamation cette année.")
    desk.receive(mail(body="Des nouvelles ?", In_Reply_To="<cust-1@example.org>"))
    text = text_of(only(to(desk.new_mail(), AGENT)))
    assert "Notes internes (jamais envoyées au client)" in text and "deuxième réclamation cette année" in text
    assert all("deuxième réclamation" not in text_of(m) for m in to(desk.inbox, CUSTOMER))


# -- saved replies (item 11) ------------------------------------------------------------------


def test_a_saved_reply_by_mail_and_its_errors(app: App) -> None:
    desk = Desk(app)
    notif = desk.complaint(body="Bonjour, on m'a prélevé des frais.")
    desk.reply(notif, "#ask\n#reply documents\nBonjour Madame,\nsuite à notre appel :")
    ask = text_of(only(to(desk.new_mail(), CUSTOMER)))
    assert "suite à notre appel :" in ask and "pourriez-vous nous transmettre les éléments suivants" in ask
    assert ask.index("suite à notre appel") < ask.index("pourriez-vous") and desk.case().status == "waiting_customer"
    desk.reply(notif, "#reply nope")
    rejection = text_of(only(to(desk.new_mail(), AGENT)))
    assert "pas de réponse enregistrée « nope »" in rejection and "documents, interim" in rejection


def test_a_broken_saved_reply_is_a_check_config_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil
    from pathlib import Path

    from mailbot.outgoing.templating import Renderer
    from tests.conftest import ROOT

    shutil.copytree(ROOT / "templates", tmp_path / "t")
    Path(tmp_path / "t/_default/fr/replies/broken.txt").write_text("{{ case.nope }}")
    from tests.conftest import make_config

    kalra = make_config(tmp_path).brand("kalra-plus").model_copy(update={"languages": ["fr"]})
    errors = Renderer(tmp_path / "t").check([kalra])
    assert any("broken.txt" in e for e in errors), errors
