"""Supervisors act by email (issue #23 item 8): #assign tells the new assignee, #reopen,
#merge REF (one thread, one deadline, the customer told once), #link REF; a resent
complaint or a second address quoting a reference is linked, with no second deadline."""

from __future__ import annotations

import pytest
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.cases import actions, duplicates
from mailbot.cases.actions import Rejected
from mailbot.cases.queue import QueueFilter, list_cases
from mailbot.ingest.pipeline import Received, ingest_batch
from mailbot.models import Case
from tests.desk import AGENT, CUSTOMER, SUPERVISOR, Desk, only, reply_to, text_of, to
from tests.mails import mail

COMPLAINT = "Bonjour,\nmon virement de 1 250,00 € du 3 novembre 2026 n'est toujours pas arrivé sur mon compte.\nMarie"


@pytest.fixture
def desk(app: App) -> Desk:
    return Desk(app)


def test_the_same_complaint_sent_again_is_linked_and_gets_no_second_deadline(desk: Desk) -> None:
    first = desk.complaint(body=COMPLAINT)
    desk.receive(mail(message_id="<again@example.org>", subject="Virement non reçu (2e envoi)",
                      body="Je vous renvoie ma réclamation :\n\n" + COMPLAINT))
    mails = desk.new_mail()
    short = only(to(mails, CUSTOMER))
    assert "semble se rapporter à une réclamation déjà en cours" in text_of(short)
    assert "au plus tard" not in text_of(short)  # no new deadline promised
    notif = only(to(mails, AGENT))
    a, b = desk.case("KP-2026-000001"), desk.case("KP-2026-000002")
    assert (b.linked_case_id, a.linked_case_id) == (a.id, b.id)
    assert "PROBABLE DOUBLON" in text_of(notif) and "#merge KP-2026-000001" in text_of(notif)
    # the agent merges from the duplicate's notification: the older case is kept
    desk.reply(notif, "#merge KP-2026-000001")
    mails = desk.new_mail()
    told = only(to(mails, CUSTOMER))
    assert told["Subject"].startswith("[KP-2026-000001]") and "KP-2026-000002" in text_of(told)
    a, b = desk.case("KP-2026-000001"), desk.case("KP-2026-000002")
    assert (b.status, b.outcome) == ("closed", "merged") and a.status != "closed"
    assert {m.case_id for m in desk.messages("customer")} == {a.id}  # one thread
    with db.read_scope(desk.app.engine) as s:
        assert [r.ref for r in list_cases(s, desk.app, QueueFilter()).rows] == ["KP-2026-000001"]
    # the customer answers the second case's acknowledgement: it reaches the kept case
    second_ack = [m for m in desk.inbox if "KP-2026-000002" in m["Subject"] and m["To"].addresses[0].addr_spec == CUSTOMER]
    desk.receive(mail(to=reply_to(second_ack[0]), body="Merci, j'attends votre réponse.",
                      In_Reply_To=second_ack[0]["Message-ID"]), reply_to(second_ack[0]))
    assert desk.messages("customer")[-1].case_id == a.id and desk.case("KP-2026-000001").status != "reexamination"
    assert first


def test_a_complaint_resent_within_one_fetched_batch_is_linked(desk: Desk) -> None:
    """Both mails come in one IMAP batch (one transaction): the second finds the first."""
    ingest_batch(desk.app, [Received(mail(message_id="<one@example.org>", body=COMPLAINT), "imap:x"),
                            Received(mail(message_id="<two@example.org>", body="Pour rappel :\n" + COMPLAINT),
                                     "imap:x")])
    a, b = desk.case("KP-2026-000001"), desk.case("KP-2026-000002")
    assert (b.linked_case_id, a.linked_case_id) == (a.id, b.id)
    assert "semble se rapporter" in text_of(to(desk.new_mail(), CUSTOMER)[-1])


def test_a_resend_in_a_later_batch_is_linked_and_other_senders_are_not(desk: Desk) -> None:
    """The batch reads at once which of its senders have a case open (duplicates.prefetch_open_cases):
    the resend finds the case opened before the batch; a sender with none is left alone."""
    desk.complaint(body=COMPLAINT)
    desk.new_mail()
    ingest_batch(desk.app, [Received(mail(frm="Paul <paul@example.org>", message_id="<p@example.org>", body=COMPLAINT),
                                     "imap:x"),
                            Received(mail(message_id="<again@example.org>", body="Pour rappel :\n" + COMPLAINT),
                                     "imap:x")])
    first, paul, again = (desk.case(f"KP-2026-00000{n}") for n in (1, 2, 3))
    assert paul.linked_case_id is None  # the same words from someone else: not a resend
    assert (again.linked_case_id, first.linked_case_id) == (first.id, again.id)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # (PostgreSQL's plan depends on the table's size)
def test_the_batch_reads_its_senders_cases_by_address_not_every_open_case(app: App) -> None:
    """A batch's hundred senders are each sought in the address index: a status condition
    made SQLite read every open case through ix_cases_open_due instead."""
    senders = [f"client{n}@example.org" for n in range(100)]
    with app.engine.connect() as conn:
        query = duplicates._SENDERS_CASES.params(senders=senders)  # noqa: SLF001
        sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert "ix_cases_customer_email" in plan, plan


def test_a_case_reopened_in_a_batch_is_found_by_a_resend_later_in_it(desk: Desk) -> None:
    """A case that opens again inside the batch counts for the resends after it, though
    its sender had no open case when the batch began."""
    notif = desk.complaint(body=COMPLAINT)
    desk.reply(notif, "#close le client a retiré sa réclamation", frm=SUPERVISOR)
    desk.new_mail()
    rcpt = reply_to(notif)
    reopen = mail(frm=SUPERVISOR, to=rcpt, subject=f"Re: {notif['Subject']}", body="#reopen il a réécrit",
                  In_Reply_To=notif["Message-ID"])
    ingest_batch(desk.app, [Received(reopen, "imap:x", envelope_to=(rcpt,)),
                            Received(mail(message_id="<again@example.org>", body="Pour rappel :\n" + COMPLAINT),
                                     "imap:x")])
    first, again = desk.case("KP-2026-000001"), desk.case("KP-2026-000002")
    assert first.status == "in_progress"
    assert again.linked_case_id == first.id


def test_a_second_address_quoting_a_reference_is_linked_for_the_agent(desk: Desk) -> None:
    desk.complaint()
    desk.receive(mail(frm="Marie Pro <marie@travail.example>", message_id="<pro@example.org>",
                      subject="Réclamation KP-2026-000001", body="J'écris depuis mon adresse professionnelle."))
    mails = desk.new_mail()
    assert "semble se rapporter" in text_of(only(to(mails, "marie@travail.example")))
    assert "cite la réclamation KP-2026-000001" in text_of(only(to(mails, AGENT)))
    assert desk.case("KP-2026-000002").linked_case_id == desk.case("KP-2026-000001").id


def test_merge_refuses_two_customers_and_link_relates_them(desk: Desk) -> None:
    notif = desk.complaint()
    desk.receive(mail(frm="Paul <paul@example.org>", message_id="<paul@example.org>", body="Autre sujet : mes frais."))
    desk.new_mail()
    desk.reply(notif, "#merge KP-2026-000002")
    assert "pas du même client" in text_of(only(to(desk.new_mail(), AGENT)))
    desk.reply(notif, "#link KP-2026-000002", frm=SUPERVISOR)
    assert desk.case("KP-2026-000001").linked_case_id == desk.case("KP-2026-000002").id
    assert desk.new_mail() == []  # linking tells nobody


def test_a_supervisor_reopens_a_closed_case_by_email(desk: Desk) -> None:
    notif = desk.complaint()
    desk.reply(notif, "#close le client a retiré sa réclamation", frm=SUPERVISOR)
    assert desk.case().status == "closed"
    desk.new_mail()
    desk.reply(notif, "#reopen nouvelle pièce reçue par courrier", frm=SUPERVISOR)
    case = desk.case()
    assert case.status == "in_progress" and case.closed_at is None
    assert desk.events("status")[-1].data["reason"] == "nouvelle pièce reçue par courrier"


def test_a_merged_case_is_not_reopened_the_case_it_went_into_is_named(desk: Desk) -> None:
    """Reopening the merged case would split the thread again, with a second deadline."""
    desk.complaint(body=COMPLAINT)
    desk.receive(mail(message_id="<again@example.org>", body="Je vous renvoie ma réclamation :\n\n" + COMPLAINT))
    notif = only(to(desk.new_mail(), AGENT))
    desk.reply(notif, "#merge KP-2026-000001")
    desk.new_mail()
    with db.session_scope(desk.app.engine) as s:
        merged = s.exec(select(Case).where(Case.ref == "KP-2026-000002")).one()
        with pytest.raises(Rejected) as refused:
            actions.reopen(s, desk.app, merged, SUPERVISOR, "nouvelle pièce")
    assert refused.value.reasons == ["KP-2026-000002 was merged into KP-2026-000001: reopen KP-2026-000001"]
    assert (desk.case("KP-2026-000002").status, desk.case("KP-2026-000002").outcome) == ("closed", "merged")
