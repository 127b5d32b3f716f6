"""Mail as it really comes (issue 26): international addresses, undecodable bytes,
broken address headers, no-reply senders and Reply-To, read receipts, obsolete
header syntax, and the traceback of a quarantined mail in the log.

Each class goes through the real `ingest` (SQLite and PostgreSQL) and, where a reader
would see it, through the dispatcher into the Maildir transport: what is asserted is
what the customer or the agent gets.
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import logging
import smtplib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from itertools import takewhile
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from mailbot import db
from mailbot.app import App
from mailbot.caselocks import lock
from mailbot.cases import conversations
from mailbot.cases.deliveries import dispatch
from mailbot.ingest.pipeline import Outcome, ingest
from mailbot.mail.parsing import _REPAIR_LINES, _REPAIR_SCAN, header_lines, parse, repair_headers
from mailbot.mail.senders import is_noreply, loose_address, valid_address
from mailbot.models import Case, Event, Inbound, Message, Outbox
from mailbot.ops.logs import JsonFormatter
from tests.mails import mail
from tests.procs import free_port


def raw_mail(*headers: bytes, body: bytes = b"Mon virement de 250 EUR du 3 novembre n'est pas arrive.\r\n") -> bytes:
    """A mail from literal header lines (bytes as they come, 8-bit included)."""
    defaults = {b"to": b"To: support@kalra-plus.com", b"message-id": b"Message-ID: <%d@example.org>" % id(headers),
                b"date": b"Date: Mon, 23 Nov 2026 10:00:00 +0100"}
    names = {h.split(b":", 1)[0].strip().lower() for h in headers}
    lines = [*headers, *(v for k, v in defaults.items() if k not in names)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def the_case(app: App) -> Case:
    with db.session_scope(app.engine) as s:
        return s.exec(select(Case)).one()


def events(app: App, type_: str) -> list[Event]:
    with db.session_scope(app.engine) as s:
        return list(s.exec(select(Event).where(Event.type == type_).order_by(col(Event.id))).all())


def outbox(app: App, kind: str | None = None) -> list[Outbox]:
    with db.session_scope(app.engine) as s:
        stmt = select(Outbox).order_by(col(Outbox.id))
        return list(s.exec(stmt.where(Outbox.kind == kind) if kind else stmt).all())


def sent(app: App) -> list[EmailMessage]:
    """Dispatch what is due and read back every mail the Maildir transport holds."""
    dispatch(app)
    new = Path(app.config.resolve_path(app.config.outbound.path)) / "new"
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted(new.iterdir())] if new.is_dir() else []


def text_of(msg: EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


# ------------------------------------------------------------------ 1. RFC 6532 addresses


def test_a_raw_utf8_sender_opens_a_case_and_is_acknowledged(app: App) -> None:
    raw = raw_mail("From: Jürgen Dö <jdö@mächine.example>".encode(), b"Subject: Virement non re\xc3\xa7u")
    r = ingest(app, raw, "test")
    assert r.outcome is Outcome.CASE_OPENED, r.reason
    case = the_case(app)
    assert (case.customer_email, case.customer_name) == ("jdö@mächine.example", "Jürgen Dö")
    assert [row.to_addr for row in outbox(app, "acknowledgement")] == ["jdö@mächine.example"]


def test_the_listener_offers_smtputf8_and_takes_an_internationalised_mail(app: App) -> None:
    from tests.test_smtp import listening

    raw = raw_mail("From: Jürgen Dö <jdö@mächine.example>".encode(), b"Subject: Virement")
    with listening(app) as port, smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("smtputf8")
        client.sendmail("jdö@mächine.example", ["support@kalra-plus.com"], raw, mail_options=["SMTPUTF8"])
    case = the_case(app)
    assert case.customer_email == "jdö@mächine.example"
    with db.session_scope(app.engine) as s:
        assert s.exec(select(Inbound.envelope_from)).one() == "jdö@mächine.example"


@contextmanager
def relay(smtputf8: bool) -> Iterator[tuple[int, list[Envelope]]]:
    """A real SMTP relay (aiosmtpd) on loopback, offering SMTPUTF8 or not."""
    received: list[Envelope] = []

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
            received.append(envelope)
            return "250 OK"

    port = free_port()
    ctl = Controller(Sink(), hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8)
    ctl.start()
    try:
        yield port, received
    finally:
        ctl.stop()


def _through_relay(make_app: Callable[..., App], port: int) -> App:
    return make_app(outbound={"transport": "smtp", "host": "127.0.0.1", "port": port, "timeout": 5})


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_acknowledgement_to_an_internationalised_address_goes_out_with_smtputf8(
        make_app: Callable[..., App]) -> None:
    with relay(smtputf8=True) as (port, received):
        app = _through_relay(make_app, port)
        ingest(app, raw_mail("From: Jürgen Dö <jdö@mächine.example>".encode(), b"Subject: Virement"), "test")
        dispatch(app)
    (ack,) = [e for e in received if e.rcpt_tos == ["jdö@mächine.example"]]
    assert ack.smtp_utf8 and "SMTPUTF8" in ack.mail_options
    raw = ack.original_content.decode("utf-8")  # type: ignore[union-attr] # RFC 6532: UTF-8 headers
    msg = email.message_from_string(raw, policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == "jdö@mächine.example"
    assert msg["To"].addresses[0].display_name == "Jürgen Dö"
    assert [r.status for r in outbox(app, "acknowledgement")] == ["sent"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_without_smtputf8_at_the_relay_the_case_records_why(make_app: Callable[..., App]) -> None:
    with relay(smtputf8=False) as (port, received):
        app = _through_relay(make_app, port)
        ingest(app, raw_mail("From: Jürgen Dö <jdö@mächine.example>".encode(), b"Subject: Virement"), "test")
        dispatch(app)
    (ack,) = outbox(app, "acknowledgement")
    assert ack.status == "failed" and ack.attempts == 1  # not retried: the relay will not take it later
    (failed,) = events(app, "mail_failed")
    assert "does not offer SMTPUTF8" in failed.data["error"] and "jdö@mächine.example" in failed.data["error"]
    assert not [e for e in received if "jdö@mächine.example" in e.rcpt_tos]
    notices = [e for e in received if e.rcpt_tos == ["agent@kalra-plus.com"]
               and "SMTPUTF8" in email.message_from_bytes(e.original_content, policy=email.policy.default)
               .get_body(("plain",)).get_content()]  # type: ignore[arg-type, union-attr]
    assert notices  # the staff are told, with the reason


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_internationalised_domain_alone_needs_no_smtputf8(make_app: Callable[..., App]) -> None:
    with relay(smtputf8=False) as (port, received):
        app = _through_relay(make_app, port)
        ingest(app, raw_mail("From: Jean <jean@mächine.example>".encode(), b"Subject: Virement"), "test")
        dispatch(app)
    (ack,) = [e for e in received if e.rcpt_tos == ["jean@xn--mchine-bua.example"]]
    assert not ack.smtp_utf8
    msg = email.message_from_bytes(ack.original_content, policy=email.policy.default)  # type: ignore[arg-type]
    assert msg["To"].addresses[0].addr_spec == "jean@xn--mchine-bua.example"


# ------------------------------------------------------------------ 2. undecodable bytes


@pytest.mark.parametrize(("header", "expected"), [
    (b"Subject: =?iso-8859-1?Q?Fr\xf6sche?= im Teich", "Frösche im Teich"),  # 8-bit byte inside an encoded-word
    (b"Subject: =?utf-8?Q?Fr\xc3\xb6sche?=", "Frösche"),
    (b"Subject: =?utf-7?Q?Fr+APY-sche?=", "Frösche"),
    (b"Subject: =?UTF-7?B?RnIrQVBZLXNjaGU=?=", "Frösche"),
    (b"Subject: Fr\xc3\xb6sche", "Frösche"),  # raw UTF-8 (RFC 6532)
    (b"Subject: Fr\xf6sche", "Frösche"),  # raw Latin-1: the fallback
    (b"Subject: =?utf-8?Q?a=ED=A0=80b?=", None),  # an encoded lone surrogate: not UTF-8, any text will do
])
def test_header_bytes_are_decoded_never_escaped(header: bytes, expected: str | None) -> None:
    parsed = parse(raw_mail(b"From: Marie <marie@example.org>", header))
    assert parsed.subject == expected or expected is None
    assert "\\udc" not in parsed.subject and not any(0xD800 <= ord(c) <= 0xDFFF for c in parsed.subject)


def test_an_8bit_subject_reaches_the_customer_and_the_agent_decoded(app: App) -> None:
    raw = raw_mail(b"From: Marie <marie@example.org>", b"Subject: =?iso-8859-1?Q?Fr\xf6sche?=",
                   b'Content-Type: text/plain; charset="iso-8859-1"', body=b"Le virement \xe0 Fr\xf6sche.\r\n")
    assert ingest(app, raw, "test").outcome is Outcome.CASE_OPENED
    assert the_case(app).subject == "Frösche"
    mails = sent(app)
    assert {m["To"].addresses[0].addr_spec for m in mails} == {"marie@example.org", "agent@kalra-plus.com"}
    for m in mails:
        assert "Frösche" in m["Subject"] and "\\udc" not in m["Subject"]
        assert "\\udc" not in text_of(m)


# ------------------------------------------------------------------ 3. broken address headers


@pytest.mark.parametrize(("value", "expected"), [
    ("jean@example.fr", True), ("jdö@mächine.example", True), ('"a b"@example.fr', True),
    ("a@[192.0.2.1]", True), ("a@b", True),
    ("@y.example", False), ("big bug bb@bug.example", False), ("a..b@example.fr", False),
    ("a@-x.example", False), ("a@x.example.", False), ("a@x.example b@y.example", False),
    ("", False), ("jean@exa\nmple.fr", False), ("x" * 65 + "@example.fr", False),
])
def test_valid_address(value: str, expected: bool) -> None:
    assert valid_address(value) is expected


def test_loose_address_takes_the_only_candidate() -> None:
    assert loose_address("big bug bb@bug.example") == ("big bug", "bb@bug.example")
    assert loose_address('"Clement" <Claudia.Shu@yahoo.com.>') == ("Clement", "Claudia.Shu@yahoo.com")
    assert loose_address('"your past" <power quadrant system@example.com>') == ("your past", "system@example.com")
    assert loose_address("a@x.example b@y.example") is None


def test_two_addresses_without_a_comma_give_no_customer_address(app: App) -> None:
    r = ingest(app, raw_mail(b"From: a@x.example b@y.example", b"Subject: Virement"), "test")
    assert r.outcome is Outcome.CASE_OPENED
    assert the_case(app).customer_email == ""
    assert outbox(app, "acknowledgement") == []
    (suppressed,) = events(app, "ack_suppressed")
    assert "a@x.example b@y.example" in suppressed.data["reason"]
    (notification,) = sent(app)  # the agent is told, in the brand's language
    assert notification["To"].addresses[0].addr_spec == "agent@kalra-plus.com"
    body = text_of(notification)
    assert "l'adresse de l'expéditeur n'est pas valide (en-tête From : a@x.example b@y.example)" in body
    assert "(sans adresse e-mail valide)" in body


@pytest.mark.parametrize("raw", [b"Subject: Virement non recu", b"From:\r\nSubject: Virement non recu\r\n\r\n"])
def test_a_mail_without_a_from_header_gets_no_acknowledgement_and_the_agent_is_told(app: App, raw: bytes) -> None:
    """A single header line, no From (or an empty one): a case without an address, nothing
    queued to the customer, and the agent's notification says the mail named no sender."""
    r = ingest(app, raw, "test", mailbox_brand="kalra-plus")
    assert r.outcome is Outcome.CASE_OPENED, r.reason
    assert the_case(app).customer_email == ""
    assert [row.kind for row in outbox(app)] == ["agent_notification"]
    (suppressed,) = events(app, "ack_suppressed")
    assert suppressed.data["reason"] == "no sender address"
    (notification,) = sent(app)
    assert notification["To"].addresses[0].addr_spec == "agent@kalra-plus.com"
    body = text_of(notification)
    assert "ATTENTION : le message n'indique aucune adresse d'expéditeur (en-tête From absent ou vide). " \
           "Aucun accusé de réception n'a été envoyé" in body
    assert "n'est pas valide" not in body


def test_without_a_usable_from_the_envelope_sender_is_the_customer(app: App) -> None:
    ingest(app, raw_mail(b"From: a@x.example b@y.example", b"Subject: Virement"), "test",
           envelope_from="marie@example.org")
    assert the_case(app).customer_email == "marie@example.org"
    assert [r.to_addr for r in outbox(app, "acknowledgement")] == ["marie@example.org"]


def test_a_name_without_angle_brackets_keeps_the_address_and_the_name(app: App) -> None:
    ingest(app, raw_mail(b"From: big bug bb@bug.example", b"Subject: Virement"), "test")
    case = the_case(app)
    assert (case.customer_email, case.customer_name) == ("bb@bug.example", "big bug")


def test_no_mail_is_ever_queued_to_an_invalid_address(app: App) -> None:
    """Whatever a case's customer address became (here: edited by hand), an agent's
    answer to it is not queued; the case says why."""
    from mailbot.cases import actions

    ingest(app, mail(), "test")
    with db.session_scope(app.engine) as s:
        case = lock(s, s.exec(select(Case)).one())
        case.customer_email = "big bug bb@bug.example"
        s.add(case)
    with db.session_scope(app.engine) as s:
        case = s.exec(select(Case)).one()
        actions.reply(s, app, case, "agent@kalra-plus.com", "Bonjour, nous regardons.", about=None)
    assert all(valid_address(r.to_addr) for r in outbox(app))
    (refused,) = events(app, "mail_not_queued")
    assert refused.data["to"] == "big bug bb@bug.example"


# ------------------------------------------------------------------ 4. who gets the acknowledgement


@pytest.mark.parametrize("address", [
    "noreply@shop.example", "gmail-noreply@google.com", "no-reply@x.example", "no_reply@x.example",
    "do-not-reply@x.example", "donotreply@x.example", "notifications.noreply@x.example",
    "bounce-1234@lists.example", "bounces+abc@x.example", "MAILER-DAEMON@mx.example", "postmaster@x.example",
])
def test_no_reply_addresses(address: str) -> None:
    assert is_noreply(address)


@pytest.mark.parametrize("address", ["marie@example.org", "noreen@example.org", "bruno.reply@example.org",
                                     "bouncer@example.org", "norbert-eply@example.org"])
def test_people_are_not_no_reply(address: str) -> None:
    assert not is_noreply(address)


def test_a_no_reply_sender_gets_no_acknowledgement_and_the_agent_is_told(app: App) -> None:
    ingest(app, mail(frm="Google <gmail-noreply@google.com>"), "test")
    assert the_case(app).customer_email == "gmail-noreply@google.com"
    assert outbox(app, "acknowledgement") == []
    (notification,) = sent(app)
    assert "l'adresse de l'expéditeur (gmail-noreply@google.com) n'accepte pas de réponse" in text_of(notification)


def test_reply_to_is_where_the_customer_is_answered(app: App) -> None:
    ingest(app, mail(frm="Marie Dupont <m.dupont@employer.example>", Reply_To="Marie <marie@home.example>"), "test")
    case = the_case(app)
    assert case.customer_email == "marie@home.example"
    assert [r.to_addr for r in outbox(app, "acknowledgement")] == ["marie@home.example"]
    (taken,) = events(app, "customer_address")
    assert taken.data["source"] == "reply-to"
    # the customer writes again from the first address, quoting the reference: same case
    again = ingest(app, mail(frm="Marie Dupont <m.dupont@employer.example>", Reply_To="marie@home.example",
                             subject=f"Re: [{case.ref}] Virement"), "test")
    assert again.outcome is Outcome.FOLLOWUP


@pytest.mark.parametrize("reply_to", ["noreply@shop.example", "support@kalra-plus.com", "not an address"])
def test_an_unusable_reply_to_is_ignored(app: App, reply_to: str) -> None:
    ingest(app, mail(Reply_To=reply_to), "test")
    assert the_case(app).customer_email == "marie.dupont@example.org"
    assert [r.to_addr for r in outbox(app, "acknowledgement")] == ["marie.dupont@example.org"]


def test_a_null_return_path_gets_no_answer_whatever_reply_to_says(app: App) -> None:
    r = ingest(app, mail(Reply_To="marie@home.example"), "test", envelope_from="")
    assert r.outcome is Outcome.AUTOMATIC
    # nothing to the sender; it reads as a complaint, so the team is told (#20 item 13)
    assert [(o.kind, o.to_addr) for o in outbox(app)] == [("automatic_complaint", "agent@kalra-plus.com")]


# ------------------------------------------------------------------ 5. read receipts


def _mdn(original_id: str, disposition: str = "displayed") -> bytes:
    return (
        "From: Marie Dupont <marie.dupont@example.org>\r\nTo: support@kalra-plus.com\r\n"
        "Subject: Read: [KP-2026-000001] Accuse de reception\r\nMessage-ID: <mdn-1@example.org>\r\n"
        "Date: Mon, 23 Nov 2026 11:00:00 +0100\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThe message was displayed on the recipient's computer.\r\n"
        "--b\r\nContent-Type: message/disposition-notification\r\n\r\n"
        "Reporting-UA: mail.example.org; Thunderbird\r\nFinal-Recipient: rfc822;marie.dupont@example.org\r\n"
        f"Original-Message-ID: {original_id}\r\nDisposition: manual-action/MDN-sent-manually; {disposition}\r\n"
        "\r\n--b--\r\n").encode()


def _outlook_receipt(in_reply_to: str) -> bytes:
    body = ("Votre message\r\n\r\n  À : support@kalra-plus.com\r\n  Objet : Virement non reçu\r\n"
            "  Envoyé : lundi 23 novembre 2026 10:00:00 (UTC+01:00) Bruxelles, Copenhague, Madrid, Paris\r\n\r\n"
            "a été lu le lundi 23 novembre 2026 10:05:12 (UTC+01:00) Bruxelles, Copenhague, Madrid, Paris.\r\n")
    return raw_mail(b"From: Marie Dupont <marie.dupont@example.org>", "Subject: Lu : Virement non reçu".encode(),
                    b"In-Reply-To: " + in_reply_to.encode(), b"Content-Type: text/plain; charset=utf-8",
                    body=body.encode())


def _ack_id(app: App) -> str:
    (ack,) = outbox(app, "acknowledgement")
    return ack.message_id


@pytest.mark.parametrize("receipt", [_mdn, _outlook_receipt])
def test_a_read_receipt_is_recorded_as_read_and_answered_by_nothing(app: App, receipt) -> None:  # type: ignore[no-untyped-def]
    ingest(app, mail(), "test")
    before = len(outbox(app))
    r = ingest(app, receipt(_ack_id(app)), "test")
    assert r.outcome is Outcome.AUTOMATIC and r.case_refs == (the_case(app).ref,)
    assert len(outbox(app)) == before  # no acknowledgement, no agent notification
    (read,) = events(app, "read")
    assert read.data["message_id"] == _ack_id(app)
    assert the_case(app).status == "acknowledged"


def test_a_read_receipt_does_not_reopen_an_answered_case(app: App) -> None:
    ingest(app, mail(), "test")
    with db.session_scope(app.engine) as s:
        case = lock(s, s.exec(select(Case)).one())
        case.status = "answered"
        s.add(case)
    assert ingest(app, _mdn(_ack_id(app)), "test").outcome is Outcome.AUTOMATIC
    assert the_case(app).status == "answered"
    assert events(app, "read") and outbox(app, "reexamination_ack") == []


def test_a_receipt_for_an_unread_deletion_is_not_read(app: App) -> None:
    ingest(app, mail(), "test")
    ingest(app, _mdn(_ack_id(app), "deleted"), "test")
    assert events(app, "read") == [] and events(app, "receipt")[0].data["disposition"] == "deleted"


def test_a_receipt_subject_alone_is_a_human(app: App) -> None:
    r = ingest(app, mail(subject="Lu : votre courrier du 3 novembre", body="Bonjour, je conteste ces frais."), "test")
    assert r.outcome is Outcome.CASE_OPENED


# ------------------------------------------------------------------ 6. obsolete header syntax


def test_blanks_before_the_colon_are_parsed(app: App) -> None:
    raw = raw_mail(b"From  : Marie Dupont <marie.dupont@example.org>", b"Subject\t: Virement non recu",
                   b"To  : support@kalra-plus.com", b"Message-ID : <obs-1@example.org>")
    r = ingest(app, raw, "test")
    assert r.outcome is Outcome.CASE_OPENED, r.reason
    case = the_case(app)
    assert (case.customer_email, case.subject) == ("marie.dupont@example.org", "Virement non recu")
    with db.session_scope(app.engine) as s:
        assert s.exec(select(Message.message_id).where(Message.direction == "in")).one() == "<obs-1@example.org>"


def test_repair_leaves_an_mbox_separator_and_the_body_alone() -> None:
    raw = b"From marie@example.org Mon Nov 23 10:00:00 2026\nFrom: a@b.example\nSubject: x\n\nTo  : nobody\n"
    assert repair_headers(raw) == raw


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"From: a", b"X :", b" b", b"\t", b"\r", b"\n", b"\r\n", b"bad"]), max_size=40))
def test_only_the_header_block_is_split_into_lines(pieces: list[bytes]) -> None:
    """`header_lines` splits only up to the first empty line: the lines are those of the
    whole mail split (`splitlines`), up to that line, for any mix of line ends."""
    raw = b"".join(pieces) + b"\n\nbody\r\n\r\nmore"
    whole = raw[:_REPAIR_SCAN].splitlines(keepends=True)[:_REPAIR_LINES]
    assert header_lines(raw) == list(takewhile(lambda line: line.strip(b"\r\n"), whole))


# ------------------------------------------------------------------ 7. the whole traceback in the log


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("mailbot.ingest")
    logger.addHandler(handler)
    try:
        yield out
    finally:
        logger.removeHandler(handler)


def test_a_quarantined_mail_logs_its_whole_traceback(app: App, json_log: io.StringIO,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def down(n: int) -> None:
        if n == 0:
            raise RuntimeError("the innermost failure")
        further(n - 1)

    def further(n: int) -> None:  # two functions: the traceback shows every frame
        down(n)

    def failing_open(*args: object, **kwargs: object) -> None:
        down(30)  # a traceback of several thousand characters

    monkeypatch.setattr(conversations, "open_case", failing_open)
    assert ingest(app, mail(), "test").outcome is Outcome.QUARANTINED
    (line,) = [json.loads(x) for x in json_log.getvalue().splitlines() if "quarantining" in x]
    exc = line["exc"]
    assert len(exc) > 5000
    assert exc.startswith("Traceback (most recent call last):")
    assert "in _commit_one" in exc.splitlines()[1]  # the first frame
    assert exc.rstrip().endswith("RuntimeError: the innermost failure")


@pytest.mark.slow
def test_cases_new_refuses_an_invalid_email(tmp_path: Path) -> None:
    """`mailbot cases new --email` (a fresh interpreter): an invalid address is a usage error,
    and nothing is recorded."""
    from tests.conftest import config_data
    from tests.test_cli import subprocess_cli, write_config

    cfg = write_config(tmp_path / "config.toml", config_data(tmp_path))
    p = subprocess_cli("--config", str(cfg), "cases", "new", "--brand", "kalra-plus", "--received", "2026-11-23",
                       "--name", "Marie Dupont", "--summary", "Frais contestés", "--email", "big bug bb@bug.example")
    assert p.returncode == 2, p.stderr
    assert b"is not a valid address" in p.stderr
    assert subprocess_cli("--config", str(cfg), "cases", "list", "--json").stdout.strip() in (b"[]", b"")
