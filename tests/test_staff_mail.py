"""Staff mail: every kind carries a token bound to its case and its recipient, replying to
any of them acts on the case, and staff mail goes only to current agents of the brand
(issue #23 item 1, issue #27 item 3)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from email.message import EmailMessage

import pytest
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.cases.tokens import check_agent_token
from mailbot.models import Outbox
from tests.conftest import SHIPPED, TEST_SECRET, Clock
from tests.desk import AGENT, CUSTOMER, ONCALL, SUPERVISOR, Desk, only, reply_to, text_of, to
from tests.mails import mail

FINAL_OK = ("#final\nExplication : un contrôle anti-fraude a retenu le virement.\n"
            "Mesures correctives : le seuil du contrôle a été revu.\n"
            "Solution : le virement a été exécuté le 24 novembre.\n")
URGENT = "Bonjour, une opération non reconnue de 300 € est apparue sur mon compte le 20 novembre : fraude ?"
COLLEAGUE = "paul@kalra-plus.com"


@pytest.fixture
def desk(app: App) -> Desk:
    return Desk(app)


def agents_with(*extra: dict[str, object], without: str = "") -> list[dict[str, object]]:
    """The shipped [[agents]], less `without`, plus `extra`."""
    return [a for a in copy.deepcopy(SHIPPED["agents"]) if a["email"] != without] + list(extra)


def assert_staff_token(desk: Desk, m: EmailMessage, recipient: str) -> None:
    """Reply-To is a token for this case and this recipient; the customer's token is nowhere."""
    case = desk.case()
    address = reply_to(m)
    local, _, domain = address.partition("@")
    assert domain == "kalra-plus.com" and local.startswith(f"support+a{case.id}-"), address
    token = local.split("+", 1)[1]
    assert check_agent_token(TEST_SECRET, token, recipient, desk.app.now()).case_id == case.id
    assert not check_agent_token(TEST_SECRET, token, CUSTOMER, desk.app.now()).ok
    assert case.reply_token not in m.as_string()
    assert address in text_of(m)  # the text says where to reply, and it is that address


def test_every_kind_of_staff_mail_carries_a_token_of_its_case_and_recipient(desk: Desk, clock: Clock) -> None:
    notif = desk.complaint(body=URGENT)
    assert_staff_token(desk, notif, AGENT)
    assert_staff_token(desk, only(to(desk.inbox, ONCALL)), ONCALL)  # the urgent alert
    desk.tick_at(0.6)
    assert_staff_token(desk, only(to(desk.new_mail(), AGENT)), AGENT)  # reminder
    desk.tick_at(1.3)
    assert_staff_token(desk, only(to(desk.new_mail(), SUPERVISOR)), SUPERVISOR)  # escalation
    desk.reply(notif, "#tier inconnu")
    assert_staff_token(desk, only(to(desk.new_mail(), AGENT)), AGENT)  # command rejection
    desk.reply(notif, "#close", frm="agent@divikeys.com")  # an agent of the other brand: refused
    assert_staff_token(desk, only(to(desk.new_mail(), SUPERVISOR)), SUPERVISOR)  # security alert


def test_replying_to_any_staff_mail_acts_on_the_case(desk: Desk, clock: Clock) -> None:
    notif = desk.complaint(body=URGENT)
    alert = only(to(desk.inbox, ONCALL))
    # the on-call address is a pager list (external staff): an agent of the brand answers its alert
    desk.reply(alert, "#note Appel du client à 10h, carte bloquée par l'astreinte.")
    desk.tick_at(0.6)
    reminder = only(to(desk.new_mail(), AGENT))
    desk.reply(reminder, "#tier complexe\n#note analyse en cours")
    desk.reply(notif, "#tier inconnu")
    rejection = only(to(desk.new_mail(), AGENT))
    desk.reply(rejection, "#category securite")
    desk.tick_at(1.3)
    escalation = only(to(desk.new_mail(), SUPERVISOR))
    desk.reply(escalation, f"#assign {AGENT}", frm=SUPERVISOR)
    case = desk.case()
    assert (case.tier, case.category) == ("complex", "securite")
    assert [m.body_text for m in desk.messages("note")] == [
        "Appel du client à 10h, carte bloquée par l'astreinte.", "analyse en cours"]
    assert desk.messages("customer")[1:] == []  # no staff text was taken for the customer's
    assert not desk.events("security")
    for m in to(desk.inbox, CUSTOMER):  # the acknowledgement and the new date of #tier; no staff words
        assert "analyse en cours" not in text_of(m) and "astreinte" not in text_of(m)
    assignment = only(to(desk.new_mail(), AGENT))
    assert "vous est assignée par supervisor@kalra-plus.com" in text_of(assignment)
    assert_staff_token(desk, assignment, AGENT)


@pytest.fixture
def colleague_app(make_app: Callable[..., App]) -> App:
    return make_app(agents=agents_with({"email": COLLEAGUE, "name": "Paul", "brands": ["kalra-plus"]}))


def test_a_staff_reply_by_the_customers_way_is_held_and_its_sender_told(colleague_app: App) -> None:
    desk = Desk(colleague_app)
    notif = desk.complaint()
    desk.reply(notif, FINAL_OK)
    desk.new_mail()
    ack, final = to(desk.inbox, CUSTOMER)
    # the agent answers the customer's thread (the final response, reply-all) instead of the notification
    raw = mail(frm=AGENT, to=reply_to(final), subject=f"Re: {final['Subject']}",
               body="Pour info : dossier vu avec le back-office.", In_Reply_To=final["Message-ID"])
    desk.receive(raw, reply_to(final))
    case = desk.case()
    assert case.status == "answered"  # no re-examination opened by our own agent
    mails = desk.new_mail()
    assert to(mails, CUSTOMER) == []  # no acknowledgement of a re-examination, nothing relayed
    told = only(to(mails, AGENT))
    assert "PAS été envoyé au client" in text_of(told)
    assert_staff_token(desk, told, AGENT)
    assert [m.body_text.strip() for m in desk.messages("staff_held")] == ["Pour info : dossier vu avec le back-office."]
    assert len(desk.messages("customer")) == 1
    # the told mail's token works: the agent acts through it
    desk.reply(told, "#note vu")
    assert [m.body_text for m in desk.messages("note")] == ["vu"]


def test_a_staff_reply_to_the_from_address_of_a_notification_is_held_on_its_case(desk: Desk) -> None:
    notif = desk.complaint()
    raw = mail(frm=AGENT, to="support@kalra-plus.com", subject=f"Re: {notif['Subject']}",
               body="#close", In_Reply_To=notif["Message-ID"])
    desk.receive(raw)
    with db.session_scope(desk.app.engine) as s:
        assert len(s.exec(select(Outbox.case_id).distinct()).all()) == 1  # no case opened for the agent
    assert desk.case().status != "closed" and [m.kind for m in desk.messages()].count("staff_held") == 1
    assert only(to(desk.new_mail(), AGENT))["Subject"].endswith("par l'adresse du client")


def test_a_removed_assignee_gets_nothing_and_the_team_gets_the_case(make_app: Callable[..., App],
                                                                   clock: Clock) -> None:
    team_of_two = {"brands": [{**SHIPPED["brands"][0], "team": ["agent@kalra-plus.com", COLLEAGUE],
                               "digest": {"case_reminders": "all"}},  # a reminder for this normal case
                              SHIPPED["brands"][1]]}
    before = make_app(agents=agents_with({"email": COLLEAGUE, "name": "Paul", "brands": ["kalra-plus"]}),
                      **team_of_two)
    desk = Desk(before)
    notif = desk.complaint(frm=f"Marie <{CUSTOMER}>")
    desk.reply(notif, f"#assign {COLLEAGUE}")
    desk.new_mail()
    # Paul leaves the brand (moved to Divikeys); the config is reloaded, team unchanged by mistake
    after = make_app(agents=agents_with({"email": COLLEAGUE, "name": "Paul", "brands": ["divikeys"]}), **team_of_two)
    desk.app = after
    desk.receive(mail(frm=CUSTOMER, body="Des nouvelles ?", In_Reply_To="<cust-1@example.org>"))
    mails = desk.new_mail()
    assert to(mails, COLLEAGUE) == []
    assert_staff_token(desk, only(to(mails, AGENT)), AGENT)
    desk.tick_at(0.6)
    mails = desk.new_mail()
    assert to(mails, COLLEAGUE) == [] and only(to(mails, AGENT))["Subject"].count("Rappel")


def test_a_staff_mail_queued_before_its_recipient_left_is_withheld_and_redirected(
        make_app: Callable[..., App]) -> None:
    with_paul = make_app(agents=agents_with({"email": COLLEAGUE, "name": "Paul", "brands": ["kalra-plus"]}))
    desk = Desk(with_paul)
    desk.complaint()
    with db.session_scope(with_paul.engine) as s:
        from mailbot.cases.actions import assign
        from mailbot.models import Case

        case = s.exec(select(Case)).one()
        assign(s, with_paul, case, SUPERVISOR, COLLEAGUE)  # queues Paul's assignment notice
    desk.app = make_app(agents=agents_with())  # Paul is removed before the dispatcher runs
    mails = desk.new_mail()
    assert to(mails, COLLEAGUE) == [] and desk.events("staff_mail_withheld")
    assert "vous est assignée" in text_of(only(to(mails, AGENT)))  # whoever stands in (the team) gets it
    assert desk.events("staff_mail_redirected")


def test_a_supervisor_answering_a_forwarded_notification_acts_and_raises_no_alert(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, "#priority urgent\n#note vu par le superviseur", frm=f"Sophie <{SUPERVISOR}>")
    assert desk.case().priority == "urgent"
    assert not desk.events("security") and to(desk.new_mail(), SUPERVISOR) == []
    (msg,) = desk.messages("agent")
    assert msg.route_detail == f"signed token issued to {AGENT}, forwarded to {SUPERVISOR}"


def test_a_forwarded_token_is_still_refused_to_anyone_outside_the_brand(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, "#priority urgent", frm="supervisor@divikeys.com")
    assert desk.case().priority == "normal" and desk.events("security")


def test_staff_mail_does_not_count_against_the_cap_on_automatic_mail(make_app: Callable[..., App]) -> None:
    desk = Desk(make_app(limits={"auto_per_case": 1}))
    desk.complaint()
    for n in range(3):
        desk.receive(mail(frm=CUSTOMER, body=f"Relance {n}", In_Reply_To="<cust-1@example.org>"))
    assert desk.case().auto_mail_count == 1  # the cap is reached (the acknowledgement) …
    assert len(to(desk.new_mail(), AGENT)) == 3  # … and each customer message still reaches the agent
