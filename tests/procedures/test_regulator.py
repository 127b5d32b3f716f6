"""The regulator's rules (issue 22): a register that tells the truth, legal caps on the
answer date, mediation named in every final answer. Bank cases (Kalra-plus, Paris time)."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import load_workbook

from tests.procedures.conftest import Desk, minute, only

pytestmark = pytest.mark.slow  # fresh `mailbot` processes at every step: left out by `make test-fast`

FINAL_KP = """Explication : le virement a été bloqué par un contrôle automatique.
Mesures correctives : le contrôle a été corrigé.
Solution : les fonds ont été crédités.
Issue : accepté
"""


def answer(desk: Desk, ref: str, text: str = FINAL_KP, agent: str = "agent@kalra-plus.com") -> None:
    f = desk.tmp / "answer.txt"
    f.write_text(text)
    desk.run("cases", "reply", ref, "--file", str(f), "--as", agent, "--final")


# -- the register ------------------------------------------------------------------------


def test_a_late_extension_never_makes_a_late_answer_on_time(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00+01:00")  # Monday; simple tier: 5 business days, due Mon 30 Nov
    ref = desk.mail_in()
    desk.at("2026-12-02T10:00:00+01:00")  # the deadline passed two days ago
    desk.run("cases", "extend", ref, "10", "analyse complémentaire")
    desk.at("2026-12-03T10:00:00+01:00")
    answer(desk, ref)
    desk.tick("2026-12-03T10:01:00+01:00")
    [line] = desk.register()
    assert line["promised_at"] == "2026-11-30T23:59:59+01:00"
    assert line["extended_to"] == "2026-12-14T23:59:59+01:00"
    assert minute(line["answered_at"]) == "2026-12-03T10:00+01:00"
    assert (line["answer_met"], line["late_extension"]) == ("no", "yes")
    assert (line["ack_met"], line["cap_met"]) == ("yes", "yes")
    stats = desk.run("stats")
    assert "answered 1, on time 0: 0.0 %" in stats


def test_stats_count_open_overdue_cases_against_the_on_time_rate(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00+01:00")
    on_time = desk.mail_in()
    desk.mail_in(frm="Paul <paul@example.org>", subject="Carte refusée", body="Mon paiement par carte est refusé.")
    answer(desk, on_time)
    desk.tick("2026-12-07T09:00:00+01:00")  # the other is a week past its date, unanswered
    text = desk.run("stats")
    assert text.startswith("2 cases (2 rounds); open 1, overdue 1; answered 1, on time 1: 50.0 %")
    # acknowledgements left at once: a median of 0 hours is a figure, not "-"
    assert "ack median     0.0 h" in text
    import json

    s = json.loads(desk.run("stats", "--json"))
    assert s["by"]["agent"]["(unassigned)"]["overdue"] == 1
    assert s["by"]["brand"]["kalra-plus"]["answered_within_deadline"] == 0.5


def test_a_scheduled_final_counts_as_an_answer_when_it_is_sent(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00+01:00")
    ref = desk.mail_in()
    desk.agent_reply(ref, "#final at 2026-11-25T09:00\n" + FINAL_KP, agent="agent@kalra-plus.com")
    desk.tick("2026-11-24T09:00:00+01:00")
    assert desk.register()[0]["answered_at"] == ""
    desk.tick("2026-11-25T09:00:00+01:00")
    [line] = desk.register()
    assert (line["answered_at"], line["answer_via"], line["answer_met"]) == ("2026-11-25T09:00:00+01:00", "email", "yes")


def test_a_reexamination_is_a_round_of_its_own_and_rewrites_nothing(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00+01:00")
    ref = desk.mail_in(message_id="<first@example.org>")
    desk.at("2026-11-23T10:05:00+01:00")
    answer(desk, ref)
    acknowledged = desk.show(ref)["acknowledged_at"]
    desk.at("2026-11-26T10:00:00+01:00")
    desk.mail_in(subject="Re: votre réponse", In_Reply_To="<first@example.org>",
                 body="Je conteste cette réponse et demande un réexamen de mon dossier.")
    desk.tick("2026-11-26T10:01:00+01:00")
    assert desk.show(ref)["acknowledged_at"] == acknowledged
    first, second = desk.register()
    assert (first["round"], first["round_kind"], second["round"], second["round_kind"]) == (
        "1", "complaint", "2", "reexamination")
    assert minute(first["answered_at"]) == "2026-11-23T10:05+01:00" and first["outcome"] == "accepted"
    assert minute(second["received_at"]) == "2026-11-26T10:00+01:00"
    assert minute(second["acknowledged_at"]) == "2026-11-26T10:00+01:00"
    assert second["answered_at"] == "" and second["answer_met"] == ""


@pytest.mark.slow
def test_the_register_as_a_spreadsheet(desk: Desk, tmp_path: Path) -> None:
    desk.at("2026-11-23T10:00:00+01:00")
    ref = desk.mail_in()
    answer(desk, ref)
    desk.tick("2026-11-23T10:05:00+01:00")
    out = tmp_path / "register.xlsx"
    desk.fresh("register", "export", "--format", "xlsx", "--out", str(out))
    sheet = load_workbook(out).active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0][:3] == ["reference", "round", "round_kind"]
    line = dict(zip(rows[0], rows[1], strict=True))
    assert (line["reference"], line["answer_met"], line["cap_met"], line["mediation_offered"]) == (
        ref, "yes", "yes", "yes")
    assert sheet.freeze_panes == "A2"


# -- mediation in every final answer (ACPR 2022-R-01) --------------------------------------


def test_a_partial_answer_names_the_mediator(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00+01:00")
    ref = desk.mail_in()
    desk.new_mails()
    answer(desk, ref, FINAL_KP.replace("Issue : accepté", "Issue : partiellement accepté"))
    [final] = desk.new_mails()
    assert final.to == "marie.dupont@example.org"
    assert final.subject.startswith(f"[{ref}] Réponse à votre réclamation")
    assert "Nous donnons une suite partiellement favorable à votre réclamation." in final.text
    mediator = desk.app.config.brand("kalra-plus").mediator
    assert mediator is not None
    paragraph = final.text[final.text.index("vous pouvez saisir le médiateur indépendant"):]
    for value in (mediator.name, mediator.postal_address, mediator.website):
        assert f"\n  {value}\n" in paragraph
        assert value in final.html
    assert desk.register()[0]["mediation_offered"] == "yes"


def test_an_english_answer_gets_the_english_mediation_paragraph(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00+01:00")
    ref = desk.mail_in(subject="Transfer not received", body=(
        "Hello,\nmy transfer of EUR 1,250.00 made on 3 November 2026 has not arrived.\nPlease check.\nMary Smith"))
    desk.new_mails()
    answer(desk, ref, "Explanation: the transfer was held by a check.\nCorrective measures: the check was fixed.\n"
                      "Solution: the funds were credited.\nOutcome: rejected\n")
    [final] = desk.new_mails()
    assert "you can refer the matter to the independent mediator, as a last resort and free of charge:" in final.text
    assert "saisir" not in final.text and "Vos recours" not in final.text
    assert desk.app.config.brand("kalra-plus").mediator.website in final.text  # type: ignore[union-attr]


# -- the promised date moves only with a notice, and only within the law ----------------------


def test_a_tier_change_tells_the_customer_the_new_date_and_why(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00+01:00")
    ref = desk.mail_in()  # simple tier: due Monday 30 November
    desk.new_mails()
    desk.at("2026-11-24T10:00:00+01:00")
    desk.agent_reply(ref, "#tier exceptional", agent="agent@kalra-plus.com")
    [notice] = desk.new_mails()
    assert notice.to == "marie.dupont@example.org"
    assert notice.subject == f"[{ref}] Prolongation du délai de traitement de votre réclamation"
    assert "Raison de ce délai supplémentaire : votre réclamation relève d'une situation exceptionnelle ou " \
           "complexe." in notice.text
    assert "Vous recevrez notre réponse au plus tard le mercredi 6 janvier 2027, au lieu du lundi 30 novembre " \
           "2026 annoncé." in notice.text
    assert desk.show(ref)["due_at"] == "2027-01-06T23:59:59+01:00"
    desk.agent_reply(ref, "#tier simple", agent="agent@kalra-plus.com")  # and back: sooner, also told
    [sooner] = desk.new_mails()
    assert sooner.subject == f"[{ref}] Nouvelle date de réponse à votre réclamation"
    assert "nous vous répondrons au plus tard le lundi 30 novembre 2026, et non plus le mercredi 6 janvier " \
           "2027" in sooner.text


def test_an_extension_past_the_payment_services_cap_is_refused_and_changes_nothing(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00+01:00")
    ref = desk.mail_in()
    desk.new_mails()
    desk.at("2026-11-24T10:00:00+01:00")
    p = desk.fresh("cases", "extend", ref, "40", "analyse complémentaire", rc=65)
    assert "the new date 2027-01-27 is past the legal limit of 35 business days for payment services (PSD2): " \
           "the latest allowed date is 2027-01-13" in p.stderr
    assert desk.show(ref)["due_at"] == "2026-11-30T23:59:59+01:00" and desk.new_mails() == []
    desk.run("cases", "extend", ref, "25", "analyse complémentaire")  # 30 business days: allowed, with its reason
    [notice] = desk.new_mails()
    assert "Raison de ce délai supplémentaire : analyse complémentaire" in notice.text
    assert "au plus tard le mercredi 6 janvier 2027" in notice.text
    desk.agent_reply(ref, "#extend 10 encore une vérification", agent="agent@kalra-plus.com")
    [rejection] = desk.new_mails()
    assert rejection.to == "agent@kalra-plus.com"
    assert "the latest allowed date is 2027-01-13" in rejection.text
    assert desk.show(ref)["due_at"] == "2027-01-06T23:59:59+01:00"


def test_a_platform_complaint_is_answered_within_two_months(desk: Desk) -> None:
    desk.at("2026-11-23T10:00:00-04:00")
    ref = desk.mail_in(to="info@divikeys.com")  # 15 business days: due 14 December
    desk.new_mails()
    desk.agent_reply(ref, "#extend 30 audit du porteur de projet", agent="agent@divikeys.com")
    [rejection] = desk.new_mails()
    assert "past the legal limit of 2 months from receipt (ACPR): the latest allowed date is 2027-01-23" \
           in rejection.text
    desk.agent_reply(ref, "#extend 20 audit du porteur de projet", agent="agent@divikeys.com")
    [notice] = desk.new_mails()
    assert notice.to == "marie.dupont@example.org"
    assert "Raison de ce délai supplémentaire : audit du porteur de projet" in notice.text


# -- re-examination only when asked for ---------------------------------------------------------


def answered_case(desk: Desk) -> str:
    desk.at("2026-11-23T10:00:00+01:00")
    ref = desk.mail_in(message_id="<first@example.org>")
    desk.at("2026-11-24T10:00:00+01:00")
    answer(desk, ref)
    desk.new_mails()
    return ref


def test_a_thank_you_after_the_answer_is_attached_and_answers_nothing(desk: Desk) -> None:
    ref = answered_case(desk)
    desk.at("2026-11-25T10:00:00+01:00")
    desk.mail_in(subject="Re: Réponse à votre réclamation", In_Reply_To="<first@example.org>",
                 body="Merci, ça marche maintenant !\n\nLe 24 nov. 2026, Kalra-plus a écrit :\n"
                      "> Si cette réponse ne vous satisfait pas, vous pouvez demander un réexamen")
    [note] = desk.new_mails()  # the staff are told; the customer gets nothing
    assert note.to == "agent@kalra-plus.com"
    assert "Ce message ne demande pas de réexamen : il est seulement rattaché au dossier, et le client n'a " \
           "rien reçu. S'il en demande un, ouvrez le réexamen par la commande #reexamine." in note.text
    assert desk.show(ref)["status"] == "answered" and len(desk.register()) == 1
    desk.agent_reply(ref, "#reexamine", agent="agent@kalra-plus.com")  # the agent reads it otherwise
    [ack] = desk.new_mails()
    assert ack.to == "marie.dupont@example.org"
    assert ack.subject == f"[{ref}] Votre demande de réexamen a bien été reçue"
    # counted from the customer's mail: 15 business days from Wednesday 25 November
    assert "au plus tard le mercredi 16 décembre 2026" in ack.text
    assert [minute(line["received_at"]) for line in desk.register()] == ["2026-11-23T10:00+01:00",
                                                                       "2026-11-25T10:00+01:00"]


def test_a_reexamination_has_its_own_deadline_reminders_escalation_and_mediation(desk: Desk) -> None:
    ref = answered_case(desk)
    desk.at("2026-11-25T10:00:00+01:00")
    desk.mail_in(subject="Re: Réponse à votre réclamation", In_Reply_To="<first@example.org>",
                 body="Bonjour,\nje ne suis pas satisfait de cette réponse et je la conteste.\nMarie")
    mails = desk.new_mails()
    ack, note = only(mails, "marie.dupont@example.org"), only(mails, "agent@kalra-plus.com")
    assert "au plus tard le mercredi 16 décembre 2026" in ack.text
    assert "Nous avons bien reçu le mercredi 25 novembre 2026 à 10:00 (heure de Paris) votre demande de réexamen" \
        in ack.text
    assert "Réclamation en réexamen : réponse attendue au plus tard le mercredi 16 décembre 2026" in note.text
    assert desk.show(ref)["status"] == "reexamination"
    desk.tick("2026-12-07T09:00:00+01:00")  # past half of the re-examination's 15 business days
    assert desk.new_mails() == []  # no reminder of its own: the agent's daily digest lists it, with the new date
    digest = desk.digest_to("agent@kalra-plus.com").text
    assert "Échéance : mercredi 16 décembre 2026" in digest[digest.index(ref):]
    desk.tick("2026-12-17T09:00:00+01:00")
    escalation = [m for m in desk.new_mails() if m.to == "supervisor@kalra-plus.com"]
    assert len(escalation) == 1 and "mercredi 16 décembre 2026" in escalation[0].text
    answer(desk, ref, FINAL_KP.replace("accepté", "rejeté"))
    [final] = desk.new_mails()
    assert "Suite à votre demande de réexamen, voici notre réponse définitive" in final.text
    assert "Cette réponse conclut le réexamen de votre dossier." in final.text
    assert "demander un réexamen" not in final.text
    assert "Si cette réponse ne vous satisfait pas, ou si vous n'avez pas reçu de réponse dans les deux mois" \
           in final.text
    second = desk.register()[1]
    assert (second["answer_met"], second["mediation_offered"], second["outcome"]) == ("no", "yes", "rejected")
