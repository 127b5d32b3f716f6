"""The register can't be rewritten after the fact (issue #27 item 5): deadlines freeze once a
round is answered, one final response per round, one change of the deadline per mail,
the legal caps on the cumulative extension, nothing but reopening on a closed case."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailbot import db
from mailbot.app import App
from mailbot.cases import register
from tests.desk import AGENT, CUSTOMER, Desk, only, text_of, to
from tests.mails import mail

FINAL_OK = ("#final\nExplication : un contrôle anti-fraude a retenu le virement.\n"
            "Mesures correctives : le seuil du contrôle a été revu.\n"
            "Solution : le virement a été exécuté le 24 novembre.\n")


@pytest.fixture
def desk(app: App) -> Desk:
    return Desk(app)


def register_rows(app: App) -> list[dict[str, str]]:
    with db.read_scope(app.engine) as s:
        return register.rows(s, app)


def refused(desk: Desk, notif: object, body: str) -> str:
    """Send the agent's mail; the customer gets nothing, the agent a rejection: its text."""
    desk.reply(notif, body)  # type: ignore[arg-type]
    mails = desk.new_mail()
    assert to(mails, CUSTOMER) == [], [m["Subject"] for m in to(mails, CUSTOMER)]
    return text_of(only(to(mails, AGENT)))


def test_a_late_final_stays_late_whatever_comes_after(desk: Desk) -> None:
    notif = desk.complaint()
    desk.tick_at(1.2)  # past the promised date
    desk.new_mail()
    desk.reply(notif, FINAL_OK)
    assert len(to(desk.new_mail(), CUSTOMER)) == 1
    due = desk.case().due_at
    assert register_rows(desk.app)[0]["answer_met"] == "no"
    # the attack: a tier whose date would have covered the answer, then an extension
    assert "figé" in refused(desk, notif, "#tier exceptional dossier complexe")
    assert "figé" in refused(desk, notif, "#extend 10 analyse complémentaire")
    case = desk.case()
    assert case.due_at == due and case.tier == "simple"
    assert register_rows(desk.app)[0]["answer_met"] == "no"


def test_one_final_response_per_round_and_a_re_examination_gets_its_own(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, FINAL_OK)
    assert len(to(desk.new_mail(), CUSTOMER)) == 1
    assert "une seule par tour" in refused(desk, notif, FINAL_OK.replace("24 novembre", "25 novembre"))
    # the customer contests: a new round, with its own final response
    desk.receive(mail(message_id="<cust-2@example.org>", In_Reply_To="<cust-1@example.org>",
                      subject="Re: Virement non reçu", body="Je conteste cette réponse."))
    desk.new_mail()
    assert desk.case().status == "reexamination"
    desk.reply(notif, FINAL_OK)
    assert len(to(desk.new_mail(), CUSTOMER)) == 1
    assert [r["outcome"] for r in register_rows(desk.app)] == ["accepted", "accepted"]


def test_a_closed_case_keeps_its_tier_priority_category_and_assignee(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, FINAL_OK)
    desk.reply(notif, "#close")
    desk.new_mail()
    before = desk.case()
    assert before.status == "closed"
    for command in ("#tier complex raison", "#priority urgent", "#category technique",
                    "#assign paul@kalra-plus.com"):
        assert "close" in refused(desk, notif, command), command
    after = desk.case()
    assert (after.tier, after.priority, after.category, after.assignee, after.due_at) == (
        before.tier, before.priority, before.category, before.assignee, before.due_at)


def test_one_change_of_the_deadline_per_mail(desk: Desk) -> None:
    notif = desk.complaint()
    due = desk.case().due_at
    text = refused(desk, notif, "\n".join(["#extend 5 analyse auprès du partenaire"] * 30))
    assert "une seule modification du délai par message" in text and "30" in text
    assert desk.case().due_at == due
    assert "une seule modification" in refused(desk, notif, "#tier complex dossier complexe\n#extend 2 analyse")
    assert desk.case().due_at == due and desk.case().tier == "simple"


def test_the_legal_cap_bounds_the_extensions_added_up(desk: Desk) -> None:
    """Kalra-plus offers payment services: 35 business days from receipt at most (PSD2)."""
    notif = desk.complaint()
    case = desk.case()
    cal = desk.app.calendar(case.brand)
    for days in (10, 10, 10):  # 5 + 30: at the cap
        desk.reply(notif, f"#extend {days} analyse auprès du partenaire")
    assert len(to(desk.new_mail(), CUSTOMER)) == 3
    assert desk.case().due_at == cal.add_business_days(case.received_at, 35)
    assert "35" in refused(desk, notif, "#extend 1 encore un jour")
    assert desk.case().due_at == cal.add_business_days(case.received_at, 35)
    assert desk.case().due_at - case.received_at < timedelta(days=60)
