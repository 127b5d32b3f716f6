"""Kalra-plus' complaint procedure (shared/seeds/kalra-plus-reclamations.txt), paragraph by
paragraph, Paris time. §5 and §6 (the final response and mediation) and the caps of §4 are
in test_regulator.py."""

from __future__ import annotations

import pytest

from tests.procedures.conftest import Desk, only

pytestmark = pytest.mark.slow  # fresh `mailbot` processes at every step: left out by `make test-fast`

FRAUD = ("Bonjour,\nje constate une opération non reconnue de 890,00 € sur ma carte le 3 décembre 2026.\n"
         "Je n'ai jamais fait ce paiement.\nMarie Dupont")


# §4 "un accusé de réception sous 24 heures ouvrées" ; "5 jours ouvrés pour les réclamations simples"
def test_the_acknowledgement_promises_the_tier_date(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00+01:00")
    ref = desk.mail_in()
    ack = only(desk.new_mails(), "marie.dupont@example.org")
    assert ack.subject == f"[{ref}] Accusé de réception de votre réclamation : Virement non reçu"
    # a time names its zone (issue 22 item 9); the dates promised stay dates
    assert "Nous avons bien reçu votre réclamation le lundi 23 novembre 2026 à 10:00 (heure de Paris)" in ack.text
    assert "Votre réclamation relève du délai de 5 jours ouvrés : vous recevrez notre réponse au plus tard le " \
           "lundi 30 novembre 2026." in ack.text
    assert desk.register()[0]["ack_met"] == "yes"


# §8 "fraude potentielle, opération non reconnue, suspicion d'accès non autorisé … intervention rapide"
def test_an_unrecognised_operation_alerts_on_call_again_then_the_supervisor(desk: Desk) -> None:
    desk.at("2026-12-04T17:30:00+01:00")  # Friday evening
    ref = desk.mail_in(subject="Opération non reconnue", body=FRAUD)
    mails = desk.new_mails()
    ack, alert = only(mails, "marie.dupont@example.org"), only(mails, "astreinte@kalra-plus.com")
    assert "faites immédiatement opposition à votre carte" in ack.text  # the immediate safety steps
    assert alert.subject.startswith(f"[{ref}] URGENT : nouvelle réclamation")
    desk.tick("2026-12-04T18:01:00+01:00")
    [again] = desk.new_mails()
    assert again.to == "astreinte@kalra-plus.com" and again.subject.startswith(f"[{ref}] RAPPEL URGENT")
    # 4 opening hours (09:00-18:00) from Friday 17:30: Monday 12:30
    assert "le superviseur sera alerté" in again.text and "lundi 7 décembre 2026 à 12:30" in again.text
    desk.tick("2026-12-04T18:31:00+01:00")
    assert [m.to for m in desk.new_mails()] == ["astreinte@kalra-plus.com"]
    desk.tick("2026-12-06T12:00:00+01:00")  # Sunday: nothing more
    assert desk.new_mails() == []
    desk.tick("2026-12-07T12:31:00+01:00")
    [escalation] = desk.new_mails()
    assert escalation.to == "supervisor@kalra-plus.com"
    assert escalation.subject.startswith(f"[{ref}] URGENT - Escalade : aucun agent n'a pris en charge")


def test_an_urgent_case_an_agent_takes_is_not_escalated(desk: Desk) -> None:
    desk.at("2026-12-04T10:00:00+01:00")
    ref = desk.mail_in(subject="Opération non reconnue", body=FRAUD)
    desk.new_mails()
    desk.at("2026-12-04T10:10:00+01:00")
    desk.agent_reply(ref, "#assign agent@kalra-plus.com", agent="agent@kalra-plus.com")
    desk.new_mails()
    desk.tick("2026-12-04T15:00:00+01:00")
    assert [m for m in desk.new_mails() if m.to in ("astreinte@kalra-plus.com", "supervisor@kalra-plus.com")] == []


# §2 the kinds of complaint, in the customer's language
def test_an_english_acknowledgement_shows_the_english_category(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00+01:00")
    desk.mail_in(subject="Transfer not received", body=(
        "Hello,\nmy transfer of EUR 1,250.00 made on 3 November 2026 has not arrived.\nPlease check.\nMary Smith"))
    ack = only(desk.new_mails(), "marie.dupont@example.org")
    assert "Category: Late or failed transaction, transfer or payment" in ack.text
    assert "We received your complaint on Monday 23 November 2026 at 10:00 (Paris time)" in ack.text
    assert "virement" not in ack.text.lower()


# §3 "nous recommandons d'indiquer : vos coordonnées, la date des faits, le type d'opération … montants"
def test_what_is_asked_for_fits_the_complaint_and_follows_what_the_customer_sends(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00+01:00")
    login = desk.mail_in(frm="Paul <paul@example.org>", subject="Connexion impossible",
                         body="Bonjour,\nje n'arrive plus à me connecter à l'application depuis hier.\nPaul")
    ack = only(desk.new_mails(), "paul@example.org")
    assert "vos coordonnées" in ack.text
    assert "le ou les montants" not in ack.text and "le type d'opération" not in ack.text  # a login problem
    ref = desk.mail_in(message_id="<first@example.org>", body="Bonjour,\nmon virement n'est pas arrivé.\nMarie")
    ack = only(desk.new_mails(), "marie.dupont@example.org")
    assert "le ou les montants" in ack.text and "tout justificatif utile" in ack.text
    desk.at("2026-11-23T11:00:00+01:00")
    desk.mail_in(subject="Re: Virement", In_Reply_To="<first@example.org>",
                 body="Il s'agit d'un virement de 1 250,00 € du 3 novembre 2026.",
                 attachments=(("releve.pdf", "application/pdf", b"%PDF-1.4 releve"),))
    missing = desk.show(ref)["extracted"]["missing"]
    assert "montant" not in missing and "pieces_jointes" not in missing and "date_faits" not in missing
    assert login != ref


# an imported backlog: no acknowledgement promises a date already past
def test_an_imported_old_mail_is_acknowledged_as_late_not_with_a_past_date(desk: Desk) -> None:
    import mailbox
    from datetime import UTC, datetime

    from tests.mails import mail

    box = mailbox.mbox(desk.tmp / "backlog.mbox")
    box.add(mail(date=datetime(2026, 10, 1, 9, 0, tzinfo=UTC)))
    box.close()
    desk.at("2026-11-23T10:00:00+01:00")
    desk.fresh("import", str(desk.tmp / "backlog.mbox"))
    desk.tick("2026-11-23T10:01:00+01:00")  # (the fresh process's clock ran on a little)
    ack = only(desk.new_mails(), "marie.dupont@example.org")
    assert "Le délai de réponse que nous nous étions fixé pour cette réclamation (le jeudi 8 octobre 2026) est " \
           "déjà dépassé" in ack.text
    assert "au plus tard le" not in ack.text


# §4 "Si des informations complémentaires sont nécessaires, nous vous en informerons par email"
def test_more_information_is_asked_by_email_and_the_customer_s_answer_resumes_the_case(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00+01:00")
    ref = desk.mail_in()
    desk.new_mails()
    desk.at("2026-11-24T10:00:00+01:00")
    desk.agent_reply(ref, "#ask\nPouvez-vous nous envoyer le relevé de novembre où figure le virement ?",
                     agent="agent@kalra-plus.com")
    ask = only(desk.new_mails(), "marie.dupont@example.org")
    assert ask.subject == f"[{ref}] Informations complémentaires nécessaires pour votre réclamation"
    assert "Pouvez-vous nous envoyer le relevé de novembre où figure le virement ?" in ask.text
    assert "#ask" not in ask.text and ask.reply_to  # the customer answers by replying
    assert desk.show(ref)["status"] == "waiting_customer"
    desk.at("2026-11-25T10:00:00+01:00")
    desk.mail_in(to=ask.reply_to, subject=f"Re: {ask.subject}", In_Reply_To=ask.message_id,
                 body="Voici le relevé demandé.", attachments=(("releve.pdf", "application/pdf", b"%PDF-1.4 r"),))
    [note] = desk.new_mails()  # the agent is told; the customer gets no second acknowledgement
    assert note.to == "agent@kalra-plus.com" and ref in note.subject
    assert desk.show(ref)["status"] == "in_progress"


# §7 "Seules les équipes habilitées peuvent accéder à votre dossier"
def test_only_the_brand_s_agents_act_on_a_case(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00+01:00")
    ref = desk.mail_in()
    ack = only(desk.new_mails(), "marie.dupont@example.org")
    assert "Votre réclamation est traitée de manière strictement confidentielle : seules les personnes " \
           "habilitées de Kalra-plus ont accès à votre dossier." in ack.text
    desk.at("2026-11-23T11:00:00+01:00")
    # the agent's notification forwarded to someone who is not one of the brand's agents
    desk.agent_reply(ref, "#final\nDossier clos.", agent="agent@kalra-plus.com", frm="Mallory <mallory@evil.example>")
    [alert] = desk.new_mails()
    assert alert.to == "supervisor@kalra-plus.com"
    assert alert.subject == f"[{ref}] Alerte de sécurité : message refusé sur une réclamation"
    assert "Expéditeur : mallory@evil.example" in alert.text
    assert desk.show(ref)["status"] == "acknowledged"  # nothing done, nothing sent to the customer
    desk.agent_reply(ref, "#close", agent="agent@kalra-plus.com", frm="agent@divikeys.com")  # the other brand's
    assert desk.new_mails() == []  # refused too: kept for the supervisor's digest, no second alert (#20)
    assert desk.show(ref)["status"] == "acknowledged"
