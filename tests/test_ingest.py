"""The one write path: each classification and routing rule, dedupe, quarantine."""

from __future__ import annotations

import email
import threading
import time
from collections.abc import Callable
from email.policy import default

import pytest
from sqlalchemy import event, text
from sqlmodel import col, select

from mailbot import blobs, db
from mailbot.app import App
from mailbot.ingest import pipeline as ingest_module
from mailbot.ingest.pipeline import (
    GroupCommit,
    Outcome,
    Received,
    TemporaryFailure,
    ingest,
    ingest_batch,
)
from mailbot.ingest.quarantine import retry
from mailbot.models import Attachment, Case, Event, Inbound, Message, Outbox, Quarantine
from tests.mails import mail


def all_cases(app: App) -> list[Case]:
    with db.session_scope(app.engine) as s:
        return list(s.exec(select(Case).order_by(col(Case.id))).all())


def messages_of(app: App, ref: str) -> list[Message]:
    with db.session_scope(app.engine) as s:
        case = s.exec(select(Case).where(Case.ref == ref)).one()
        return list(s.exec(select(Message).where(Message.case_id == case.id).order_by(col(Message.id))).all())


def outbox_rows(app: App, kind: str | None = None) -> list[Outbox]:
    with db.session_scope(app.engine) as s:
        stmt = select(Outbox).order_by(col(Outbox.id))
        if kind:
            stmt = stmt.where(Outbox.kind == kind)
        return list(s.exec(stmt).all())


def test_new_complaint_opens_a_case_with_its_fields(app: App) -> None:
    r = ingest(app, mail(body="Bonjour,\nmon virement de 1 250,00 € du 3 novembre 2026 n'est pas arrivé.\n"
                            "Référence VIR-2026-11-0042.\nMarie Dupont"), "test")
    assert r.outcome is Outcome.CASE_OPENED
    (case,) = all_cases(app)
    assert case.ref == "KP-2026-000001" and r.case_refs == (case.ref,)
    assert case.brand == "kalra-plus" and case.customer_email == "marie.dupont@example.org"
    assert case.customer_name == "Marie Dupont"
    assert case.category == "transaction" and case.priority == "normal" and case.tier == "simple"
    assert case.status == "acknowledged"
    assert {"value": "1250.00", "currency": "EUR"} in case.extracted["amounts"]
    assert "2026-11-03" in case.extracted["fact_dates"]
    assert "VIR-2026-11-0042" in case.extracted["references"]
    assert case.ack_due_at is not None and case.due_at is not None and case.due_at > case.received_at
    (msg,) = messages_of(app, case.ref)[:1]
    assert msg.route_signal == "new" and msg.direction == "in" and msg.kind == "customer"


def test_references_are_sequential_and_per_brand(app: App) -> None:
    for i in range(3):
        ingest(app, mail(frm=f"c{i}@example.org"), "test")
    ingest(app, mail(frm="d@example.org", to="info@divikeys.com"), "test")
    refs = [c.ref for c in all_cases(app)]
    assert refs == ["KP-2026-000001", "KP-2026-000002", "KP-2026-000003", "DK-2026-000001"]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_counter_connection_lost_means_retry_later_then_the_next_number(app: App) -> None:
    """On PostgreSQL case numbers are taken on a connection of their own (autocommit).
    When the server drops it, the mail is refused for now (retry later), nothing is
    half recorded, and the next delivery gets a fresh connection and the next number."""
    assert ingest(app, mail(frm="a@example.org"), "test").case_refs == ("KP-2026-000001",)
    with app.engine.connect() as c:
        c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                       "AND query LIKE 'INSERT INTO ref_counters%'"))
    raw = mail(frm="b@example.org")
    with pytest.raises(TemporaryFailure):
        ingest(app, raw, "test")
    assert [c.ref for c in all_cases(app)] == ["KP-2026-000001"]
    assert ingest(app, raw, "test").case_refs == ("KP-2026-000002",)
    assert len(outbox_rows(app, "acknowledgement")) == 2


def test_same_mail_twice_is_recorded_once(app: App) -> None:
    raw = mail()
    first = ingest(app, raw, "smtp")
    again = ingest(app, raw, "imap")
    # The same mail relayed with an extra transport header is still the same mail.
    relayed = ingest(app, b"Received: from mx by us; Mon, 23 Nov 2026 09:00:01 +0000\r\n" + raw, "imap")
    assert first.outcome is Outcome.CASE_OPENED
    assert again.outcome is Outcome.DUPLICATE and relayed.outcome is Outcome.DUPLICATE
    assert len(all_cases(app)) == 1
    with db.session_scope(app.engine) as s:
        assert len(s.exec(select(Inbound)).all()) == 1
    assert len(outbox_rows(app, "acknowledgement")) == 1


def test_a_batch_records_a_mail_twice_in_it_once_and_knows_earlier_ones(app: App) -> None:
    earlier = mail(message_id="<earlier@x>", frm="e@example.org")
    ingest(app, earlier, "smtp")
    twice = mail(message_id="<twice@x>", frm="t@example.org")
    other = mail(message_id="<other@x>", frm="o@example.org")
    results = ingest_batch(app, [Received(r, "imap:x") for r in (twice, earlier, twice, other)])
    assert [r.outcome for r in results] == [Outcome.CASE_OPENED, Outcome.DUPLICATE, Outcome.DUPLICATE,
                                            Outcome.CASE_OPENED]
    assert results[2].inbound_id == results[0].inbound_id
    assert len(all_cases(app)) == 3
    assert len(outbox_rows(app, "acknowledgement")) == 3


def test_a_batch_takes_its_case_numbers_at_once_and_leaves_no_gap(app: App) -> None:
    """On SQLite a batch takes a block of numbers per brand with one statement and gives
    back what it did not use; on PostgreSQL one number per case. Either way the numbers
    are consecutive: duplicates, automatic mails and a second brand use none of a
    brand's block, and the next mail gets the next number."""
    counter_statements: list[str] = []

    def trace(conn) -> None:  # type: ignore[no-untyped-def]
        dbapi = conn.connection.dbapi_connection
        if hasattr(dbapi, "set_trace_callback"):
            dbapi.set_trace_callback(
                lambda sql: counter_statements.append(sql) if "ref_counters" in sql else None)

    ingest(app, mail(frm="first@example.org"), "smtp")
    twice = mail(frm="twice@example.org", message_id="<twice@x>")
    auto = mail(frm="out@example.org", subject="Absence", Auto_Submitted="auto-replied")
    raws = [mail(frm="a@example.org"), twice, mail(frm="d@example.org", to="info@divikeys.com"), twice, auto,
            mail(frm="b@example.org")]
    event.listen(app.engine, "begin", trace)
    try:
        results = ingest_batch(app, [Received(r, "imap:x") for r in raws])
    finally:
        event.remove(app.engine, "begin", trace)
    assert [r.case_refs for r in results] == [("KP-2026-000002",), ("KP-2026-000003",), ("DK-2026-000001",),
                                              (), (), ("KP-2026-000004",)]
    if app.engine.dialect.name == "sqlite":  # one block per brand, then each counter set past its last used
        assert len(counter_statements) == 4 and all(sql.startswith("INSERT") for sql in counter_statements)
    assert ingest(app, mail(frm="c@example.org"), "smtp").case_refs == ("KP-2026-000005",)
    assert ingest(app, mail(frm="e@example.org", to="info@divikeys.com"), "smtp").case_refs == ("DK-2026-000002",)


def test_batches_written_at_once_by_two_instances_take_distinct_numbers(make_app: Callable[..., App]) -> None:
    """Two instances (engines) on one database each write a batch of new complaints
    while the other's is under way (the first holds its commit): on SQLite the second
    waits for the write lock, then takes its block after the first's numbers; on
    PostgreSQL each number is taken on its own. Every reference is unique; on SQLite
    they are also consecutive."""
    first, second = make_app(), make_app()
    _slow_first_commit(first)
    batches = [[Received(mail(frm=f"i{i}-{k}@example.org"), "imap:x") for k in range(5)] for i in range(2)]
    results = _concurrently(2, lambda i: ingest_batch(first if i == 0 else second, batches[i]))
    refs = sorted(ref for batch in results for r in batch for ref in r.case_refs)
    assert len(refs) == len(set(refs)) == 10
    if first.engine.dialect.name == "sqlite":
        assert refs == [f"KP-2026-{n:06d}" for n in range(1, 11)]
    assert ingest(second, mail(frm="after@example.org"), "smtp").case_refs[0] > refs[-1]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # (blocks are taken on SQLite only)
def test_a_block_of_case_numbers_survives_a_savepoint_that_took_it_away(app: App) -> None:
    """If the statement that took a block is rolled back with a savepoint (no ingest
    path opens a case inside one today), the counter is still right at the end: it is
    set to the first number not used, not moved back by the numbers left."""
    from mailbot.cases import references

    with db.session_scope(app.engine) as s, references.reserving(s, 10):
        with s.begin_nested() as savepoint:
            assert references.next_seq(s, "kalra-plus", 2026) == 1  # takes 1..10, then undone
            savepoint.rollback()
        assert references.next_seq(s, "kalra-plus", 2026) == 2
    with db.session_scope(app.engine) as s:
        assert references.next_seq(s, "kalra-plus", 2026) == 3


def _break_on_boom(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Handling a customer mail whose subject is "boom" raises (a bug in the handler)."""
    from mailbot.cases import conversations

    real = conversations.handle_customer

    def fragile(session, app_, inbound, parsed, *args, **kw):  # type: ignore[no-untyped-def]
        if parsed.subject == "boom":
            raise RuntimeError("handler bug")
        return real(session, app_, inbound, parsed, *args, **kw)

    monkeypatch.setattr(ingest_module, "handle_customer", fragile)


def _slow_first_commit(app: App) -> None:
    """The engine's first commit takes 0.5 s: concurrent callers queue meanwhile."""
    first = threading.Event()

    def slow(_conn) -> None:  # type: ignore[no-untyped-def]
        if not first.is_set():
            first.set()
            time.sleep(0.5)

    event.listen(app.engine, "commit", slow)


def test_a_mail_that_breaks_its_batch_is_quarantined_alone(app: App, monkeypatch) -> None:
    """A bug while handling one mail of a batch: the others are recorded, that one is
    quarantined with its raw bytes, nothing is lost."""
    _break_on_boom(monkeypatch)
    raws = [mail(frm=f"c{i}@example.org", subject="boom" if i == 2 else f"Virement {i}") for i in range(5)]
    results = ingest_batch(app, [Received(r, "imap:x") for r in raws])
    assert [r.outcome for r in results] == [Outcome.CASE_OPENED] * 2 + [Outcome.QUARANTINED] + [
        Outcome.CASE_OPENED] * 2
    assert "handler bug" in results[2].reason
    refs = [c.ref for c in all_cases(app)]
    if app.engine.dialect.name == "sqlite":  # the batch's numbers went back with its rollback: no gap
        assert refs == [f"KP-2026-00000{i}" for i in range(1, 5)]
    else:  # taken outside the transaction (references.next_seq): unique, gaps allowed
        assert len(set(refs)) == 4 and refs == sorted(refs)
    with db.session_scope(app.engine) as s:
        (q,) = s.exec(select(Quarantine)).all()
        assert blobs.get(s, q.sha256) == raws[2]
        assert len(s.exec(select(Inbound)).all()) == 5


def _concurrently(n: int, call) -> list:  # type: ignore[no-untyped-def]
    """`call(i)` in n threads released together; their results (or exceptions), in order."""
    barrier = threading.Barrier(n)
    out: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = call(i)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_concurrent_mails_share_one_transaction_and_each_caller_gets_its_own_result(app: App) -> None:
    """Group commit (SMTP sessions): while one group is being committed, the mails
    handed in meanwhile wait and go together in the next transaction."""
    _slow_first_commit(app)
    group = GroupCommit(app)
    raws = [mail(frm=f"c{i}@example.org", subject=f"Virement {i}") for i in range(12)]
    results = _concurrently(12, lambda i: group.ingest(Received(raws[i], "smtp")))
    assert all(r.outcome is Outcome.CASE_OPENED for r in results), results
    assert group.groups == 2  # the first caller's mail alone, then the eleven others together
    by_sender = {c.customer_email: c.ref for c in all_cases(app)}
    assert [r.case_refs for r in results] == [(by_sender[f"c{i}@example.org"],) for i in range(12)]
    assert len(outbox_rows(app, "acknowledgement")) == 12


def test_the_same_mail_written_at_once_by_two_instances_is_recorded_once(
        make_app: Callable[..., App]) -> None:
    """Two instances (engines) on one database: the first holds its commit while the
    second writes the same mail. On PostgreSQL the second hits the unique dedupe key
    (IntegrityError from the INSERT) and finds the row; on SQLite it waits
    for the lock and finds it. Either way: one case, one duplicate, one acknowledgement."""
    first, second = make_app(), make_app()
    _slow_first_commit(first)
    raw = mail(message_id="<twice-at-once@example.org>")
    results = _concurrently(2, lambda i: ingest(first if i == 0 else second, raw, "smtp"))
    assert sorted(r.outcome for r in results) == sorted([Outcome.CASE_OPENED, Outcome.DUPLICATE]), results
    assert len(all_cases(first)) == 1
    with db.session_scope(first.engine) as s:
        assert len(s.exec(select(Inbound)).all()) == 1
    assert len(outbox_rows(first, "acknowledgement")) == 1


def test_a_mail_that_breaks_a_group_is_quarantined_alone_and_the_same_mail_twice_is_one(
        app: App, monkeypatch) -> None:
    _break_on_boom(monkeypatch)
    _slow_first_commit(app)
    group = GroupCommit(app)
    same = mail(frm="twice@example.org", subject="Deux fois")
    raws = [mail(frm="c0@example.org"), same, mail(frm="c2@example.org", subject="boom"), same,
            mail(frm="c4@example.org")]
    results = _concurrently(5, lambda i: group.ingest(Received(raws[i], "smtp")))
    outcomes = sorted(r.outcome for r in results)
    assert outcomes == sorted([Outcome.CASE_OPENED] * 3 + [Outcome.DUPLICATE, Outcome.QUARANTINED])
    assert results[2].outcome is Outcome.QUARANTINED and "handler bug" in results[2].reason
    assert len(all_cases(app)) == 3
    with db.session_scope(app.engine) as s:
        (q,) = s.exec(select(Quarantine)).all()
        assert blobs.get(s, q.sha256) == raws[2]


def test_reused_message_id_with_other_content_is_not_dropped(app: App) -> None:
    ingest(app, mail(message_id="<same@x>", frm="a@example.org"), "test")
    r = ingest(app, mail(message_id="<same@x>", frm="b@example.org", body="Autre réclamation"), "test")
    assert r.outcome is Outcome.CASE_OPENED
    assert len(all_cases(app)) == 2


def test_same_message_id_with_other_attachment_names_is_not_a_duplicate(app: App) -> None:
    data = (("application/pdf", b"%PDF-1.4 same bytes"),)
    ingest(app, mail(message_id="<att@x>", attachments=(("releve.pdf", *data[0]),)), "test")
    r = ingest(app, mail(message_id="<att@x>", attachments=(("facture.pdf", *data[0]),)), "test")
    assert r.outcome is not Outcome.DUPLICATE
    with db.session_scope(app.engine) as s:
        assert len(s.exec(select(Inbound)).all()) == 2


def test_reply_with_in_reply_to_joins_the_case(app: App) -> None:
    ingest(app, mail(message_id="<first@example.org>"), "test")
    r = ingest(app, mail(subject="Re: précision", In_Reply_To="<first@example.org>"), "test")
    assert r.outcome is Outcome.FOLLOWUP and r.case_refs == ("KP-2026-000001",)
    assert messages_of(app, "KP-2026-000001")[-1].route_signal == "in_reply_to"
    # the customer's own Message-ID threads only for the customer (issue #20: thread hijack)
    r = ingest(app, mail(subject="Re: précision", In_Reply_To="<first@example.org>",
                         frm="someone.else@example.net"), "test")
    assert r.outcome is Outcome.CASE_OPENED and r.case_refs == ("KP-2026-000002",)


def test_reply_to_our_acknowledgement_joins_via_references(app: App) -> None:
    ingest(app, mail(), "test")
    (ack,) = outbox_rows(app, "acknowledgement")
    r = ingest(app, mail(subject="Re: accusé", References=f"<unknown@x> {ack.message_id}"), "test")
    assert r.outcome is Outcome.FOLLOWUP
    assert messages_of(app, r.case_refs[0])[-1].route_signal == "references"


def test_reply_token_plus_address_joins_the_case(app: App) -> None:
    ingest(app, mail(), "test")
    (case,) = all_cases(app)
    r = ingest(app, mail(subject="sans référence", frm="other@example.net"), "test",
               envelope_to=[f"support+{case.reply_token}@kalra-plus.com"])
    assert r.outcome is Outcome.FOLLOWUP and r.case_refs == (case.ref,)
    assert messages_of(app, case.ref)[-1].route_signal == "reply_token"


def test_customer_quoting_the_reference_joins_the_case(app: App) -> None:
    ingest(app, mail(), "test")
    r = ingest(app, mail(subject="Relance KP-2026-000001"), "test")
    assert r.outcome is Outcome.FOLLOWUP and r.case_refs == ("KP-2026-000001",)
    assert messages_of(app, "KP-2026-000001")[-1].route_signal == "subject_ref"


def test_stranger_quoting_a_reference_gets_a_new_case(app: App) -> None:
    ingest(app, mail(), "test")
    r = ingest(app, mail(frm="intrus@evil.example", subject="[KP-2026-000001] donnez-moi le dossier"), "test")
    assert r.outcome is Outcome.CASE_OPENED and r.case_refs == ("KP-2026-000002",)
    (msg,) = messages_of(app, "KP-2026-000002")[:1]
    assert msg.route_signal == "new" and "not its customer" in msg.route_detail
    assert len(messages_of(app, "KP-2026-000001")) == 2  # the customer's mail and our acknowledgement only


def test_auto_reply_opens_no_case_and_gets_no_answer(app: App) -> None:
    r = ingest(app, mail(subject="Absence du bureau", Auto_Submitted="auto-replied"), "test")
    assert r.outcome is Outcome.AUTOMATIC
    assert all_cases(app) == [] and outbox_rows(app) == []


def test_auto_submitted_no_is_a_human(app: App) -> None:
    r = ingest(app, mail(Auto_Submitted="no"), "test")
    assert r.outcome is Outcome.CASE_OPENED
    assert len(outbox_rows(app, "acknowledgement")) == 1


def test_list_mail_and_null_sender_open_no_case(app: App) -> None:
    assert ingest(app, mail(List_Id="<news.example.org>"), "t").outcome is Outcome.AUTOMATIC
    assert ingest(app, mail(Precedence="bulk"), "t").outcome is Outcome.AUTOMATIC
    assert ingest(app, mail(), "t", envelope_from="").outcome is Outcome.AUTOMATIC
    assert all_cases(app) == []


def test_mail_from_our_own_address_is_ignored(app: App) -> None:
    r = ingest(app, mail(frm="Kalra-plus <support@kalra-plus.com>"), "test")
    assert r.outcome is Outcome.OWN and all_cases(app) == [] and outbox_rows(app) == []


def test_auto_reply_to_our_ack_is_attached_without_changing_the_case(app: App) -> None:
    ingest(app, mail(), "test")
    (ack,) = outbox_rows(app, "acknowledgement")
    (case,) = all_cases(app)
    r = ingest(app, mail(subject="Réponse automatique : absent", In_Reply_To=ack.message_id,
                         Auto_Submitted="auto-replied"), "test")
    assert r.outcome is Outcome.AUTOMATIC and r.case_refs == (case.ref,)
    (after,) = all_cases(app)
    assert after.status == case.status
    assert messages_of(app, case.ref)[-1].kind == "auto_reply"
    assert len(outbox_rows(app, "acknowledgement")) == 1


def test_bounce_of_our_mail_marks_the_recipient_failing(app: App) -> None:
    ingest(app, mail(), "test")
    (ack,) = outbox_rows(app, "acknowledgement")
    dsn = (
        "From: MAILER-DAEMON@mx.example.org\r\nTo: support@kalra-plus.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn1@mx.example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
        "--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
        "Final-Recipient: rfc822; marie.dupont@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {ack.message_id}\r\n"
        "Subject: accuse\r\n\r\n--B--\r\n"
    ).encode()
    r = ingest(app, dsn, "test", envelope_from="")
    assert r.outcome is Outcome.AUTOMATIC and r.case_refs == ("KP-2026-000001",)
    with db.session_scope(app.engine) as s:
        ev = s.exec(select(Event).where(Event.type == "delivery_failed")).one()
        assert ev.data["recipients"] == ["marie.dupont@example.org"]
    assert messages_of(app, "KP-2026-000001")[-1].kind == "bounce"
    with db.session_scope(app.engine) as s:
        from mailbot.cases.views import case_detail
        from mailbot.models import FailingRecipient

        assert s.get(FailingRecipient, "marie.dupont@example.org") is not None
        case = s.exec(select(Case)).one()
        assert case_detail(s, app, case).failing_since
    # The customer writes again: the address works, the mark goes.
    ingest(app, mail(message_id="<again@example.org>", In_Reply_To=ack.message_id), "test")
    with db.session_scope(app.engine) as s:
        from mailbot.models import FailingRecipient

        assert s.get(FailingRecipient, "marie.dupont@example.org") is None


def test_mail_to_two_brands_opens_two_linked_cases(app: App) -> None:
    r = ingest(app, mail(to="support@kalra-plus.com, info@divikeys.com"), "test")
    assert r.outcome is Outcome.CASE_OPENED and len(r.case_refs) == 2
    kp, dk = all_cases(app)
    assert {kp.brand, dk.brand} == {"kalra-plus", "divikeys"}
    assert kp.linked_case_id == dk.id and dk.linked_case_id == kp.id


def test_envelope_recipient_decides_the_brand(app: App) -> None:
    r = ingest(app, mail(to="support@kalra-plus.com"), "smtp", envelope_to=["info@divikeys.com"])
    assert r.case_refs == ("DK-2026-000001",)


def test_unparseable_mail_is_quarantined_with_its_raw_bytes(app: App) -> None:
    raw = b"\x00\x01\x02 not a mail at all"
    r = ingest(app, raw, "pipe")
    assert r.outcome is Outcome.QUARANTINED and r.reason
    with db.session_scope(app.engine) as s:
        (q,) = s.exec(select(Quarantine)).all()
        assert blobs.get(s, q.sha256) == raw
        assert q.reason == r.reason


def test_mail_for_no_brand_is_quarantined_and_can_be_retried(app: App) -> None:
    raw = mail(to="someone@elsewhere.example")
    r = ingest(app, raw, "pipe")
    assert r.outcome is Outcome.QUARANTINED and "no brand" in r.reason
    with db.session_scope(app.engine) as s:
        q = s.exec(select(Quarantine)).one()
        q.envelope_to = ["support@kalra-plus.com"]
        s.add(q)
    again = retry(app, q.id or 0, raw)
    assert again.outcome is Outcome.CASE_OPENED
    with db.session_scope(app.engine) as s:
        assert s.exec(select(Quarantine)).one().status == "retried"


def test_attachments_are_kept_with_sanitised_names(app: App) -> None:
    raw = mail(attachments=(("../../etc/passwd\t.pdf", "application/pdf", b"%PDF-1.4 data"),
                            ("virus.exe", "application/octet-stream", b"MZ...")))
    r = ingest(app, raw, "test")
    with db.session_scope(app.engine) as s:
        atts = s.exec(select(Attachment).order_by(col(Attachment.id))).all()
        assert [a.filename for a in atts][0] in ("passwd_.pdf", "passwd.pdf", "passwd__.pdf")
        assert "/" not in atts[0].filename and "\n" not in atts[0].filename
        assert blobs.get(s, atts[0].sha256 or "") == b"%PDF-1.4 data"
        assert atts[1].sha256 is None and "blocked" in (atts[1].dropped_reason or "")
    assert r.outcome is Outcome.CASE_OPENED


def test_html_only_mail_becomes_text(app: App) -> None:
    ingest(app, mail(body=None, html="<p>Mon <b>virement</b> de 50&nbsp;€ a disparu</p><script>x()</script>"),
           "test")
    (case,) = all_cases(app)
    body = messages_of(app, case.ref)[0].body_text
    assert "virement" in body and "<b>" not in body and "x()" not in body


def test_cards_are_masked_in_stored_text_and_ibans_kept_for_the_staff(app: App) -> None:
    ingest(app, mail(body="Mon IBAN FR76 3000 6000 0112 3456 7890 189, carte 4111 1111 1111 1111."), "test")
    (case,) = all_cases(app)
    stored = messages_of(app, case.ref)[0].body_text
    assert "4111 1111 1111 1111" not in stored and "**** 1111" in stored
    assert "FR76 3000 6000 0112 3456 7890 189" in stored  # masked only in what leaves the staff (#27 item 1)


def test_english_mail_gets_an_english_case(app: App) -> None:
    ingest(app, mail(subject="Transfer not received", body="Hello, my transfer of €50 made yesterday "
                     "has not arrived. Could you please check? Thank you, John Smith"), "test")
    (case,) = all_cases(app)
    assert case.language == "en"


def test_urgent_keyword_flags_the_case_and_alerts_on_call(app: App) -> None:
    ingest(app, mail(subject="Opération non reconnue", body="Je constate une fraude sur mon compte."), "test")
    (case,) = all_cases(app)
    assert case.priority == "urgent"
    (alert,) = outbox_rows(app, "urgent_alert")
    assert alert.to_addr == "astreinte@kalra-plus.com"


def test_raw_is_stored_before_anything_else_and_parsed_view_matches(app: App) -> None:
    raw = mail(subject="Sujet accentué éà")
    r = ingest(app, raw, "test")
    with db.session_scope(app.engine) as s:
        inbound = s.get(Inbound, r.inbound_id)
        assert inbound is not None and blobs.get(s, inbound.sha256) == raw
    parsed = email.message_from_bytes(raw, policy=default)
    assert all_cases(app)[0].subject == str(parsed["Subject"])
