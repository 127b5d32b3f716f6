"""The daily digest instead of a storm of reminders (issue #23 item 7): each agent and
supervisor gets one mail a business day at the brand's hour, once however many
instances tick; each line is replyable through its own case token; per-case reminders
stay for urgent cases."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from mailbot.app import App
from mailbot.cases.digest import send_digests
from mailbot.cases.tokens import check_agent_token
from tests.conftest import SHIPPED, TEST_SECRET, Clock
from tests.desk import AGENT, CUSTOMER, SUPERVISOR, Desk, digest_line, only, reply_to, text_of, to
from tests.mails import mail

URGENT = "Bonjour, une opération non reconnue de 300 € est apparue sur mon compte le 20 novembre : fraude ?"
MONDAY_0800_PARIS = "2026-11-23T07:00:00+00:00"  # before the Kalra-plus digest (08:30)


@pytest.fixture
def desk(app: App, clock: Clock) -> Desk:
    clock.set(MONDAY_0800_PARIS)
    return Desk(app)


def test_each_agent_and_supervisor_gets_one_digest_a_business_day_from_the_brands_hour(
        desk: Desk, clock: Clock) -> None:
    desk.complaint(frm=f"Marie Dupont <{CUSTOMER}>", subject="Virement non reçu")
    desk.tick()
    assert desk.new_digests() == []  # 08:00 in Paris: not yet
    clock.set("2026-11-23T07:30:00+00:00")  # 08:30 in Paris
    desk.tick()
    desk.tick()  # a second tick (or a second instance) the same day sends nothing more
    mails = desk.new_digests()
    assert sorted(m["To"].addresses[0].addr_spec for m in mails) == [AGENT, SUPERVISOR]
    mine = only(to(mails, AGENT))
    assert "KP-2026-000001" in text_of(mine) and "Marie Dupont" in text_of(mine)
    assert "non assignée" in text_of(mine)
    # Divikeys' digest is at 08:00 in Saint-Martin (12:00 UTC): its staff got nothing yet
    clock.set("2026-11-23T12:00:00+00:00")
    desk.tick()
    assert sorted(m["To"].addresses[0].addr_spec for m in desk.new_digests()) == [
        "agent@divikeys.com", "supervisor@divikeys.com"]
    clock.set("2026-11-28T10:00:00+00:00")  # Saturday: no digest
    desk.tick()
    assert desk.new_digests() == []
    clock.set("2026-11-30T08:00:00+00:00")  # Monday 09:00 in Paris: the deadline day
    desk.tick()
    monday = only(to(desk.new_digests(), AGENT))
    assert "== À rendre aujourd'hui (1) ==" in text_of(monday)
    clock.set("2026-12-01T08:00:00+00:00")
    desk.tick()
    tuesday = only(to(desk.new_digests(), AGENT))
    assert "== En retard (1) ==" in text_of(tuesday) and "en retard de 1 j" in text_of(tuesday)


def test_each_line_carries_the_token_of_its_case_for_its_reader(desk: Desk, clock: Clock) -> None:
    notif = desk.complaint()
    desk.receive(mail(frm="Paul <paul@example.org>", message_id="<paul@example.org>", body="Mes frais."))
    desk.reply(notif, "#assign agent@kalra-plus.com", frm=SUPERVISOR)
    clock.set("2026-11-23T08:00:00+00:00")
    desk.tick()
    mails = desk.new_digests()
    # the agent: the case assigned to them and the one nobody took; the supervisor: the latter
    # (a case assigned to an agent reaches the supervisor's digest when it is due or overdue)
    for reader, refs in ((AGENT, ("KP-2026-000001", "KP-2026-000002")), (SUPERVISOR, ("KP-2026-000002",))):
        digest = only(to(mails, reader))
        assert ("KP-2026-000001" in text_of(digest)) == (reader == AGENT)
        for ref in refs:
            token = digest_line(digest, ref).split("@")[0].split("+", 1)[1]
            case = desk.case(ref)
            assert check_agent_token(TEST_SECRET, token, reader, desk.app.now()).case_id == case.id
            assert case.reply_token not in digest.as_string()
        assert reply_to(digest) not in (digest_line(digest, "KP-2026-000002"), "support@kalra-plus.com")
    html = only(to(mails, AGENT)).get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert f'href="mailto:{digest_line(only(to(mails, AGENT)), "KP-2026-000001")}' in html


def test_writing_to_a_line_and_replying_to_the_digest_act_on_the_cases(desk: Desk, clock: Clock) -> None:
    desk.complaint()
    desk.receive(mail(frm="Paul <paul@example.org>", message_id="<paul@example.org>", body="Mes frais."))
    clock.set("2026-11-23T08:00:00+00:00")
    desk.tick()
    digest = only(to(desk.new_digests(), AGENT))
    # a line's address: as a reply to the case's notification (here, a question to the customer)
    address = digest_line(digest, "KP-2026-000001")
    desk.receive(mail(frm=AGENT, to=address, subject="Re: [KP-2026-000001]",
                      body="#ask Pouvez-vous nous envoyer le relevé de novembre ?"), address)
    assert desk.case("KP-2026-000001").status == "waiting_customer"
    asked = only(to(desk.new_mail(), CUSTOMER))
    assert "relevé de novembre" in text_of(asked)
    # replying to the digest itself: each paragraph starting with a reference acts on that case
    desk.reply(digest, "KP-2026-000001 #note relance prévue jeudi\n\n"
                       "KP-2026-000002\n#assign agent@kalra-plus.com\n#note frais à vérifier")
    assert [m.body_text for m in desk.messages("note")] == ["relance prévue jeudi", "frais à vérifier"]
    assert desk.case("KP-2026-000002").assignee == AGENT
    assert not desk.events("security") and to(desk.new_mail(), CUSTOMER) == []
    # a reply naming no case is answered with a fresh digest saying why, and nothing else happens
    desk.reply(digest, "Merci, bien reçu.")
    again = only(to(desk.new_mail(), AGENT))
    assert "n'a pas pu être appliquée" in text_of(again) and "KP-2026-000002" in text_of(again)
    assert len(desk.messages("customer")) == 2 and not desk.events("security")
    # a reference of another brand is not reached through a Kalra-plus digest
    desk.reply(digest, "DK-2026-000001 #note x")
    assert "DK-2026-000001" in text_of(only(to(desk.new_mail(), AGENT)))


def test_the_digest_token_is_refused_to_anyone_else(desk: Desk, clock: Clock) -> None:
    desk.complaint()
    clock.set("2026-11-23T08:00:00+00:00")
    desk.tick()
    digest = only(to(desk.new_digests(), AGENT))
    desk.reply(digest, "KP-2026-000001 #priority urgent", frm="intrus@example.net")
    assert desk.case().priority == "normal" and desk.events("security")


def test_per_case_reminders_only_for_urgent_cases_unless_configured(make_app: Callable[..., App],
                                                                     clock: Clock) -> None:
    desk = Desk(make_app())
    desk.complaint(subject="Virement non reçu")
    desk.tick_at(0.6)
    assert [m for m in to(desk.new_mail(), AGENT) if "Rappel" in m["Subject"]] == []
    assert desk.events("reminder") == []
    desk.receive(mail(message_id="<urgent@example.org>", frm="Luc <luc@example.org>", body=URGENT))
    desk.new_mail()
    desk.tick_at(0.6, "KP-2026-000002")
    assert [m["Subject"] for m in to(desk.new_mail(), AGENT) if "Rappel" in m["Subject"]]
    # a brand that keeps per-case reminders for every case (the same database, the config changed)
    kp = {**SHIPPED["brands"][0], "digest": {"case_reminders": "all"}}
    every = Desk(make_app(brands=[kp, SHIPPED["brands"][1]]))
    every.seen = set(desk.seen)
    every.receive(mail(message_id="<paul@example.org>", frm="Paul <paul@example.org>", subject="Frais"))
    every.tick_at(0.9, "KP-2026-000003")  # (its 50 % point fell on a weekend: Monday 09:00)
    assert [m for m in to(every.new_mail(), AGENT) if "Rappel" in m["Subject"] and "KP-2026-000003" in m["Subject"]]


def test_two_instances_ticking_at_once_send_one_digest_each(make_app: Callable[..., App], clock: Clock) -> None:
    first, second = make_app(), make_app()  # two instances on one database
    Desk(first).complaint()
    clock.set("2026-11-23T08:00:00+00:00")
    go = threading.Barrier(2)
    counts: list[int] = []

    def run(app: App) -> None:
        go.wait()
        counts.append(send_digests(app))

    threads = [threading.Thread(target=run, args=(a,)) for a in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 2  # the agent's and the supervisor's, once each
    mails = Desk(first).new_digests()
    assert sorted(m["To"].addresses[0].addr_spec for m in mails) == [AGENT, SUPERVISOR]
