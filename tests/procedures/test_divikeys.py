"""Divikeys' complaint procedure (shared/seeds/divikeys-reclamations.txt), paragraph by
paragraph, Saint-Martin time (AST, UTC-4; Saint-Martin's holidays)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.procedures.conftest import Desk, only

pytestmark = pytest.mark.slow  # fresh `mailbot` processes at every step: left out by `make test-fast`

FINAL_DK = """Résumé : votre virement de 500 EUR n'est pas arrivé.
Étapes suivies : vérification auprès de notre partenaire de paiement.
Solution : les fonds ont été crédités le 18 décembre.
"""


def pdf_text(path: str) -> str:
    return " ".join(" ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(Path(path).read_bytes())).pages)


def letters(desk: Desk, *args: str) -> list[dict]:
    return json.loads(desk.run("letters", "list", "--json", *args))


# §2.2 "Par Courrier Postal", §3.1 "un accusé de réception par email ou par courrier postal dans un
# délai de 48 heures", §3.4 "une réponse finale par email ou par courrier postal".
def test_a_complaint_by_post_is_acknowledged_and_answered_by_letters(desk: Desk) -> None:
    desk.at("2026-12-04T10:00:00-04:00")  # Friday
    p = desk.fresh("cases", "new", "--brand", "divikeys", "--channel", "postal", "--received", "2026-12-04",
                   "--name", "Jeanne Martin", "--address", "3 rue de la Poste, 97150 Marigot",
                   "--summary", "Mon virement de 500 EUR du 2 décembre n'est pas arrivé.")
    ref = p.stdout.strip()
    assert ref == "DK-2026-000001" and "letter to post" in p.stderr
    assert desk.new_mails() == []  # nothing is ever queued to an empty address
    [ack] = letters(desk)
    assert (ack["ref"], ack["kind"], ack["posted_on"]) == (ref, "acknowledgement", None)
    text = pdf_text(ack["file"])
    for words in ("Divikeys SAS, 14 rue Anegada, Hope estate, 97150 Saint Martin", "Jeanne Martin",
                  "3 rue de la Poste", "97150 Marigot", "Saint Martin, le vendredi 4 décembre 2026",
                  "Référence : DK-2026-000001", "Objet : Accusé de réception de votre réclamation",
                  "Nous avons bien reçu votre réclamation le vendredi 4 décembre 2026 et nous vous en remercions",
                  "au plus tard le lundi 28 décembre 2026",
                  "adressez votre courrier à Divikeys SAS, 14 rue Anegada, Hope estate, 97150 Saint Martin"):
        assert words in text, words
    assert "12:00" not in text and "répondez simplement à ce message" not in text
    assert desk.show(ref)["status"] == "new"  # acknowledged when the letter is posted, not before

    desk.at("2026-12-07T09:00:00-04:00")
    desk.run("letters", "posted", str(ack["id"]), "--on", "2026-12-05")
    assert desk.show(ref)["status"] == "acknowledged"
    [line] = desk.register()
    assert (line["received_at"], line["acknowledged_at"], line["ack_via"], line["ack_met"]) == (
        "2026-12-04", "2026-12-05", "letter", "yes")
    assert desk.run("letters", "posted", str(ack["id"]), rc=65) == ""  # once

    desk.at("2026-12-21T11:00:00-04:00")
    f = desk.tmp / "final.txt"
    f.write_text(FINAL_DK)
    desk.run("cases", "reply", ref, "--file", str(f), "--as", "agent@divikeys.com", "--final")
    assert desk.new_mails() == []
    assert desk.show(ref)["status"] != "answered" and desk.register()[0]["answered_at"] == ""
    [final] = letters(desk)
    text = pdf_text(final["file"])
    mediator = desk.app.config.brand("divikeys").mediator
    assert mediator is not None
    for words in ("Objet : Réponse à votre réclamation", "Résumé de votre réclamation",
                  "Étapes suivies pour résoudre le problème", "les fonds ont été crédités le 18 décembre",
                  "vous pouvez demander un réexamen", mediator.name):
        assert words in text, words
    desk.at("2026-12-22T09:00:00-04:00")
    desk.fresh("letters", "posted", str(final["id"]))
    line = desk.register()[0]
    assert (line["answered_at"], line["answer_via"], line["answer_met"]) == ("2026-12-22", "letter", "yes")
    assert desk.show(ref)["status"] == "answered"
    assert letters(desk) == [] and len(letters(desk, "--all")) == 2


def test_a_final_letter_left_unposted_is_escalated_like_an_unanswered_case(desk: Desk) -> None:
    desk.at("2026-12-04T10:00:00-04:00")
    out = desk.run("cases", "new", "--brand", "divikeys", "--received", "2026-12-04", "--name", "Jeanne Martin",
                   "--address", "3 rue de la Poste, 97150 Marigot", "--summary", "Virement non reçu")
    ref = out.strip()
    desk.at("2026-12-05T10:00:00-04:00")
    desk.run("letters", "posted", str(letters(desk)[0]["id"]))
    f = desk.tmp / "final.txt"
    f.write_text(FINAL_DK)
    desk.run("cases", "reply", ref, "--file", str(f), "--as", "agent@divikeys.com", "--final")
    desk.new_mails()
    desk.tick("2026-12-29T09:00:00-04:00")  # the deadline was 28 December: the letter is still here
    escalation = only(desk.new_mails(), "supervisor@divikeys.com")
    assert ref in escalation.subject


def test_paper_without_an_address_is_refused(desk: Desk) -> None:
    desk.run("cases", "new", "--brand", "divikeys", "--received", "2026-12-04", "--name", "X",
             "--summary", "Y", rc=2)


# §3.2 "vous tenir informé de l'avancement de votre dossier"; §3.3 "dans un délai de 15 jours ouvrés"
def test_a_deadline_passed_unanswered_brings_the_customer_a_holding_reply(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00-04:00")
    ref = desk.mail_in(to="info@divikeys.com")  # due Monday 14 December
    desk.new_mails()
    desk.tick("2026-12-11T17:00:00-04:00")
    assert desk.new_mails() == []  # no reminder of its own: the agent's daily digest lists it
    assert ref in desk.digest_to("agent@divikeys.com").text
    desk.tick("2026-12-12T12:00:00-04:00")  # Saturday
    assert desk.new_mails() == []
    desk.tick("2026-12-15T08:00:00-04:00")  # the deadline passed overnight; opening hours start at 9
    assert desk.new_mails() == []
    desk.tick("2026-12-15T09:00:00-04:00")
    mails = desk.new_mails()
    holding, escalation = only(mails, "marie.dupont@example.org"), only(mails, "supervisor@divikeys.com")
    assert holding.subject == f"[{ref}] Votre réclamation est toujours en cours de traitement"
    assert "Nous nous étions engagés à vous répondre au plus tard le lundi 14 décembre 2026" in holding.text
    assert "vous pourrez saisir le médiateur" in holding.text
    assert "Escalade" in escalation.subject
    desk.tick("2026-12-16T09:00:00-04:00")
    assert desk.new_mails() == []  # once


# §2.1 "Les étapes déjà suivies pour tenter de résoudre le problème"
def test_the_acknowledgement_asks_for_the_steps_already_taken(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00-04:00")
    ref = desk.mail_in(to="info@divikeys.com", message_id="<dk1@example.org>")
    ack = only(desk.new_mails(), "marie.dupont@example.org")
    assert "les étapes déjà suivies pour tenter de résoudre le problème" in ack.text
    # Saint-Martin's time, named (issue 22 item 9)
    assert "reçu votre réclamation le lundi 23 novembre 2026 à 10:00 (heure de Saint-Martin)" in ack.text
    desk.mail_in(to="info@divikeys.com", subject="Re: Virement", In_Reply_To="<dk1@example.org>",
                 body="J'ai déjà contacté ma banque, qui ne voit rien.")
    assert "etapes" not in desk.show(ref)["extracted"]["missing"]
    desk.mail_in(to="info@divikeys.com", frm="Ana <ana@example.org>",
                 body="Bonjour, j'ai déjà contacté le porteur du projet sans réponse. Mon remboursement manque.")
    assert "les étapes déjà suivies" not in only(desk.new_mails(), "ana@example.org").text


# §2.2 "Par Email … Nous accuserons réception de votre email dans les 48 heures"; §3.3 the reasons
def test_an_email_complaint_is_acknowledged_at_once_and_an_extension_needs_its_reasons(desk: Desk) -> None:
    desk.at("2026-12-04T17:30:00-04:00")  # a Friday evening
    ref = desk.mail_in(to="info@divikeys.com")
    ack = only(desk.new_mails(), "marie.dupont@example.org")
    assert ack.subject == f"[{ref}] Accusé de réception de votre réclamation : Virement non reçu"
    assert "au plus tard le lundi 28 décembre 2026" in ack.text
    line = desk.register()[0]
    assert (line["ack_via"], line["ack_met"]) == ("email", "yes")
    desk.at("2026-12-07T10:00:00-04:00")
    desk.agent_reply(ref, "#extend 5", agent="agent@divikeys.com")  # no reason: Divikeys owes one
    [rejection] = desk.new_mails()
    assert rejection.to == "agent@divikeys.com"
    assert "une raison est requise : elle est envoyée au client" in rejection.text
    assert desk.show(ref)["due_at"].startswith("2026-12-28")
