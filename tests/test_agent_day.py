"""An agent's and a supervisor's day by email alone (issue #23, "done means"): a case
worked from its first notification to its closure by replying only to the mails
staff receive — notification, urgent alert, reminder, rejection, security alert,
escalation, assignment, digest — and a supervisor who merges, reassigns and reopens
from their own mails."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from mailbot.app import App
from tests.conftest import SHIPPED, Clock
from tests.desk import (
    AGENT,
    CUSTOMER,
    ONCALL,
    SUPERVISOR,
    Desk,
    digest_line,
    only,
    reply_to,
    text_of,
    to,
)
from tests.mails import mail

PAUL = "paul@kalra-plus.com"
URGENT = "Bonjour, une opération non reconnue de 300 € est apparue sur mon compte le 20 novembre : fraude ?"
COMPLAINT = "Bonjour,\nmon virement de 1 250,00 € du 3 novembre 2026 n'est toujours pas arrivé sur mon compte.\nMarie"
FINAL = ("#final\nExplication : un contrôle anti-fraude a retenu l'opération.\n"
         "Mesures correctives : le seuil du contrôle a été revu.\n"
         "Solution : l'opération a été annulée et remboursée le 30 novembre.\n")


@pytest.fixture
def desk(make_app: Callable[..., App], clock: Clock) -> Desk:
    """The shipped config with a second Kalra-plus agent, Paul (in the team)."""
    agents = copy.deepcopy(SHIPPED["agents"]) + [{"email": PAUL, "name": "Paul", "brands": ["kalra-plus"]}]
    kp = {**SHIPPED["brands"][0], "team": [AGENT, PAUL]}
    clock.set("2026-11-23T07:00:00+00:00")  # Monday, 08:00 in Paris
    return Desk(make_app(agents=agents, brands=[kp, SHIPPED["brands"][1]]))


def mails_to(desk: Desk, address: str) -> list:  # type: ignore[type-arg]
    return to(desk.new_mail(), address)


def test_an_agent_works_a_case_to_its_closure_replying_only_to_the_mails_it_gets(desk: Desk, clock: Clock) -> None:
    # 1. the notification of an urgent complaint: the agent takes it
    notif = desk.complaint(frm=f"Marie Dupont <{CUSTOMER}>", body=URGENT)
    alert = only(to(desk.inbox, ONCALL))
    desk.reply(notif, "#note pris en charge, appel du client prévu")
    # 2. the urgent alert (on-call is a pager list: an agent answers the alert it was forwarded)
    desk.reply(alert, "#note carte bloquée par l'astreinte à 8h10")
    # 3. the reminder: a question to the customer
    desk.tick_at(0.55)
    reminder = only([m for m in mails_to(desk, AGENT) if "Rappel" in m["Subject"]])
    desk.reply(reminder, "#ask Pouvez-vous nous confirmer que vous n'avez pas fait ce paiement ?")
    assert desk.case().status == "waiting_customer"
    question = only(mails_to(desk, CUSTOMER))
    assert "pas fait ce paiement" in text_of(question) and "carte bloquée" not in text_of(question)
    # the customer answers: a new notification to the agent
    desk.receive(mail(to=reply_to(question), body="Je confirme, ce n'est pas moi.",
                      In_Reply_To=question["Message-ID"]), reply_to(question))
    follow_up = only(mails_to(desk, AGENT))
    assert "ce n'est pas moi" in text_of(follow_up)
    # 4. a rejection, answered with the corrected command
    desk.reply(follow_up, "#tier inconnu")
    rejection = only(mails_to(desk, AGENT))
    desk.reply(rejection, "#tier complex")
    assert desk.case().tier == "complex"
    # 5. a security alert to the supervisor, who answers it with a note
    desk.reply(notif, "#close", frm="agent@divikeys.com")
    security = only(mails_to(desk, SUPERVISOR))
    desk.reply(security, "#note tentative venue de Divikeys : signalée à la sécurité", frm=SUPERVISOR)
    # 6. the escalation at the deadline: the supervisor hands the case to Paul
    desk.tick_at(1.2)  # (the escalation waits for the next opening hour after the deadline)
    escalation = only(mails_to(desk, SUPERVISOR))
    desk.reply(escalation, f"#assign {PAUL}", frm=SUPERVISOR)
    # 7. the assignment: Paul reads the notes and answers with a note
    assignment = only(mails_to(desk, PAUL))
    assert "carte bloquée par l'astreinte" in text_of(assignment)
    desk.reply(assignment, "#note je reprends le dossier", frm=PAUL)
    # 8. the next morning's digest: Paul sends the final response from the case's line
    case = desk.case()
    clock.set(desk.app.calendar("kalra-plus").working_moment(clock.now, *desk.app.config.brand(
        "kalra-plus").sla.opening_hours).isoformat())
    desk.tick()
    digest = only(to(desk.new_digests(), PAUL))
    assert "== En retard (1) ==" in text_of(digest) and case.ref in text_of(digest)
    desk.write(digest_line(digest, case.ref), FINAL, frm=PAUL)
    final = only(mails_to(desk, CUSTOMER))
    assert "remboursée le 30 novembre" in text_of(final) and desk.case().status == "answered"
    # then the case is closed by a reply to the digest itself
    desk.reply(digest, f"{case.ref} #close", frm=PAUL)
    assert desk.case().status == "closed" and mails_to(desk, CUSTOMER) == []
    # the customer read nothing of the staff's words; no staff text was taken for the customer's
    for m in to(desk.inbox, CUSTOMER):
        assert not any(w in text_of(m) for w in ("astreinte", "tentative", "je reprends", "pris en charge"))
    assert len(desk.messages("customer")) == 2
    assert [m.body_text for m in desk.messages("note")] == [
        "pris en charge, appel du client prévu", "carte bloquée par l'astreinte à 8h10",
        "tentative venue de Divikeys : signalée à la sécurité", "je reprends le dossier"]


def test_a_supervisor_merges_reassigns_and_reopens_from_their_own_mails(desk: Desk, clock: Clock) -> None:
    desk.complaint(body=COMPLAINT)
    desk.receive(mail(message_id="<again@example.org>", subject="Virement non reçu (2e envoi)",
                      body="Je vous renvoie ma réclamation :\n\n" + COMPLAINT))
    desk.new_mail()
    clock.set("2026-11-23T08:00:00+00:00")  # 09:00 in Paris: the digest
    desk.tick()
    digest = only(to(desk.new_digests(), SUPERVISOR))
    assert "== Non assignées (à prendre) (2) ==" in text_of(digest)
    # merge the resent complaint into the first and hand it to Paul, in one reply to the digest
    desk.reply(digest, "KP-2026-000002 #merge KP-2026-000001\n\nKP-2026-000001\n#assign paul@kalra-plus.com",
               frm=SUPERVISOR)
    mails = desk.new_mail()
    told = only(to(mails, CUSTOMER))
    assert told["Subject"].startswith("[KP-2026-000001]") and "KP-2026-000002" in text_of(told)
    assert desk.case("KP-2026-000002").outcome == "merged" and desk.case("KP-2026-000001").assignee == PAUL
    assignment = only(to(mails, PAUL))
    assert "vous est assignée par supervisor@kalra-plus.com" in text_of(assignment)
    # reassign from the same line of the digest, written to directly
    desk.write(digest_line(digest, "KP-2026-000001"), f"#assign {AGENT}", frm=SUPERVISOR)
    assert desk.case("KP-2026-000001").assignee == AGENT
    notice = only(mails_to(desk, AGENT))
    desk.reply(notice, FINAL)
    desk.reply(notice, "#close")
    assert desk.case("KP-2026-000001").status == "closed"
    desk.new_mail()
    # the customer calls back: the supervisor reopens from the digest line
    desk.write(digest_line(digest, "KP-2026-000001"), "#reopen le client a rappelé : remboursement non reçu",
               frm=SUPERVISOR)
    case = desk.case("KP-2026-000001")
    assert case.status == "in_progress" and case.closed_at is None
    assert desk.events("status")[-1].data["reason"] == "le client a rappelé : remboursement non reçu"
    assert not desk.events("security")
