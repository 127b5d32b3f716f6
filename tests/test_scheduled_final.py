"""A final response scheduled for later (`#final at …`, issue #27 item 6 and #20 item 14): in
the future and by the round's promised date, the case open until the mail goes out, held
by a customer's mail that comes before it; what staff are told of it (reminders, escalations,
digest lines, the assignment mail, `mailbot cases show`) and the deadline it meets, not escalated."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.cases import register
from mailbot.cli.main import main
from mailbot.models import Outbox
from mailbot.outgoing.templating import format_datetime
from tests.conftest import ROOT, SHIPPED, config_data
from tests.desk import AGENT, CUSTOMER, ONCALL, SUPERVISOR, Desk, only, text_of, to
from tests.mails import mail
from tests.procs import to_toml

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


# What staff are told of a scheduled final response: the reminders, escalations and digest
# lines of its case say when it goes (or that it was held and waits for the agent), and a
# deadline it meets is no breach.

def hold_the_final(desk: Desk) -> None:
    """The customer writes before the scheduled final response goes: it is held."""
    desk.app.clock.set("2026-11-24T09:00:00+00:00")  # type: ignore[attr-defined]
    desk.receive(mail(message_id="<cust-2@example.org>", In_Reply_To="<cust-1@example.org>",
                      subject="Re: Virement non reçu", body="Le virement vient d'être rejeté."))
    desk.new_mail()


def reminding_desk(make_app: Callable[..., App], supervisor_language: str = "fr") -> Desk:
    """Per-case reminders for every case (`case_reminders = "all"`), the supervisor's staff mail
    in `supervisor_language`."""
    agents = [{**a, "language": supervisor_language} if a["email"] == SUPERVISOR else a
              for a in copy.deepcopy(SHIPPED["agents"])]
    brands = [{**SHIPPED["brands"][0], "digest": {"case_reminders": "all"}}, SHIPPED["brands"][1]]
    return Desk(make_app(agents=agents, brands=brands))


def local_minute(desk: Desk, at: datetime) -> str:
    return desk.app.calendar("kalra-plus").local(at).strftime("%Y-%m-%dT%H:%M")


def latest_digest_to(desk: Desk, address: str) -> str:
    desk.new_digests()
    return text_of(to(desk.digests, address)[-1])


def test_reminders_and_digests_say_when_the_final_goes_and_its_deadline_is_not_escalated(
        make_app: Callable[..., App]) -> None:
    desk = reminding_desk(make_app)
    notif = desk.complaint()
    case = desk.case()
    assert case.due_at is not None
    at = local_minute(desk, case.due_at)  # the latest it may be: the deadline itself
    desk.reply(notif, f"#final at {at}\n{SECTIONS}")
    assert to(desk.new_mail(), CUSTOMER) == []
    when = format_datetime(datetime.fromisoformat(at), "fr")  # e.g. "lundi 30 novembre 2026 à 23:59"
    desk.tick_at(0.6)
    reminder = text_of(only(to(desk.new_mail(), AGENT)))
    assert f"RÉPONSE FINALE PROGRAMMÉE : une réponse finale est déjà programmée pour partir au client le {when} " \
           "(heure de Paris)" in reminder
    assert "N'y répondez pas une seconde fois" in reminder and "un nouveau #final" in reminder
    line = latest_digest_to(desk, AGENT).split(case.ref, 1)[1].split("Agir sur ce dossier", 1)[0]
    assert f"Réponse finale programmée pour le {when} (heure de Paris)" in line
    # The first run after the deadline (a mailer stopped overnight): the sweep finds the escalation
    # and the holding reply due before the dispatcher sends the final response, in the same run.
    desk.tick_at(1.3)
    mails = desk.new_mail()
    assert to(mails, SUPERVISOR) == []  # no escalation: the customer is answered by the deadline
    assert [m["Subject"] for m in to(mails, CUSTOMER)] == [only(to(mails, CUSTOMER))["Subject"]]
    assert "Explication" in text_of(only(to(mails, CUSTOMER)))  # the final response, no holding reply
    skipped = [e.data for e in desk.events("sla_point_skipped")]
    assert {d["point"].split("@")[0] for d in skipped} >= {"escalation", "holding"}
    assert all("final response scheduled" in d["reason"] for d in skipped if d["point"].startswith("escalation"))
    assert desk.case().status == "answered"
    assert answer(desk)[1] == "no"  # it went out late, and the register says so
    desk.tick_at(2.0)
    assert desk.new_mail() == []


def test_a_held_final_is_named_held_in_reminders_escalations_and_digests(make_app: Callable[..., App]) -> None:
    desk = reminding_desk(make_app, supervisor_language="en")
    notif = desk.complaint()
    ref = desk.case().ref
    desk.reply(notif, f"#final at {AT}\n{SECTIONS}")
    desk.new_mail()
    hold_the_final(desk)
    desk.tick_at(0.6)
    reminder = text_of(only(to(desk.new_mail(), AGENT)))
    assert "RÉPONSE FINALE SUSPENDUE, EN ATTENTE DE L'AGENT : la réponse finale programmée pour le " \
           "vendredi 27 novembre 2026 à 10:00 (heure de Paris) a été suspendue" in reminder
    assert "RÉPONSE FINALE PROGRAMMÉE" not in reminder
    desk.tick_at(1.3)
    escalation = text_of(only(to(desk.new_mail(), SUPERVISOR)))  # held: nothing answers the deadline
    assert "has passed" in escalation
    assert "FINAL RESPONSE HELD, WAITING FOR THE AGENT: the final response scheduled for " \
           "Friday 27 November 2026 at 10:00 (Paris time) was held" in escalation
    line = latest_digest_to(desk, SUPERVISOR).split(ref, 1)[1].split("Act on this case", 1)[0]
    assert "Final response held, waiting for the agent: it was to go on Friday 27 November 2026 at 10:00 " \
           "(Paris time)" in line


def test_a_final_scheduled_on_an_urgent_case_takes_it_in_hand(desk: Desk) -> None:
    """No on-call re-alert nor supervisor escalation saying no agent took the case: the
    agent who scheduled its final response did."""
    notif = desk.complaint(body="Une opération non reconnue de 300 € est apparue sur mon compte : fraude ?")
    assert desk.case().priority == "urgent"
    desk.new_mail()
    desk.reply(notif, f"#final at {AT}\n{SECTIONS}")
    desk.new_mail()
    assert desk.case().status == "in_progress"
    desk.tick_at(0.3)
    mails = desk.new_mail()
    assert to(mails, ONCALL) == [] and to(mails, SUPERVISOR) == []


# Where staff look at a case: the assignment mail, `mailbot cases show`, the staff console
# (tests/test_web_console.py) say when its final response goes, or that it was held.

def test_a_case_reassigned_while_its_final_is_scheduled_tells_the_new_assignee(
        make_app: Callable[..., App]) -> None:
    desk = reminding_desk(make_app, supervisor_language="en")
    notif = desk.complaint()
    desk.reply(notif, f"#final at {AT}\n{SECTIONS}")
    desk.new_mail()
    desk.reply(notif, f"#assign {SUPERVISOR}")
    assignment = only(to(desk.new_mail(), SUPERVISOR))
    assert "assigned to you" in text_of(assignment)
    assert "FINAL RESPONSE SCHEDULED: a final response is already scheduled to go to the customer on " \
           "Friday 27 November 2026 at 10:00 (Paris time)" in text_of(assignment)
    html = assignment.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<strong>Final response scheduled</strong>" in html
    hold_the_final(desk)
    desk.reply(assignment, f"#assign {AGENT}", frm=SUPERVISOR)  # back to the agent, in French
    told = text_of(only(to(desk.new_mail(), AGENT)))
    assert "vous est assignée par supervisor@kalra-plus.com" in told
    assert "RÉPONSE FINALE SUSPENDUE, EN ATTENTE DE L'AGENT : la réponse finale programmée pour le " \
           "vendredi 27 novembre 2026 à 10:00 (heure de Paris) a été suspendue" in told


def test_an_assignment_without_a_scheduled_final_says_nothing_of_one(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, f"#assign {SUPERVISOR}")
    told = text_of(only(to(desk.new_mail(), SUPERVISOR)))
    assert "vous est assignée" in told and "RÉPONSE FINALE" not in told


@pytest.mark.slow  # starts two `mailbot cases show` processes
def test_cases_show_says_when_the_final_goes_or_that_it_was_held(
        app: App, tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    desk = Desk(app)
    notif = desk.complaint()
    ref = desk.case().ref
    cfg = tmp_path / "config.toml"
    cfg.write_text(to_toml(config_data(tmp_path, db_url)))
    assert "final response" not in cases_show_in_a_fresh_process(cfg, ref)
    desk.reply(notif, f"#final at {AT}\n{SECTIONS}")
    desk.new_mail()
    shown = cases_show_in_a_fresh_process(cfg, ref)
    assert "  final response scheduled for 2026-11-27 10:00 CET (answered when it goes" in shown
    hold_the_final(desk)
    assert main(["--config", str(cfg), "cases", "show", ref]) == 0
    shown = capsys.readouterr().out
    assert "final response held, waiting for the agent: it was scheduled for 2026-11-27 10:00 CET" in shown
    assert "\n  final response scheduled for" not in shown
    assert main(["--config", str(cfg), "cases", "show", ref, "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["scheduled_final"] == {"at": "2026-11-27T10:00:00+01:00", "held": True}


def cases_show_in_a_fresh_process(cfg: Path, ref: str) -> str:
    p = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(cfg), "cases", "show", ref],
                       cwd=ROOT, capture_output=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr
    return p.stdout.decode()
