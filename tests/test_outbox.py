"""The one send path: acknowledgements with the right headers, retries, loop and flood protection."""

from __future__ import annotations

import email
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlmodel import col, select

from mailbot import db
from mailbot.app import App
from mailbot.caselocks import lock
from mailbot.cases.deliveries import dispatch
from mailbot.ingest.pipeline import Outcome, Received, ingest, ingest_batch
from mailbot.models import Case, Event, Message, Outbox
from mailbot.outgoing import templating
from tests.conftest import Clock
from tests.mails import mail
from tests.procs import free_port


def sent_mails(app: App) -> list[EmailMessage]:
    new = Path(app.config.resolve_path(app.config.outbound.path)) / "new"
    if not new.is_dir():
        return []
    files = sorted(new.iterdir())
    return [email.message_from_bytes(f.read_bytes(), policy=default) for f in files]  # type: ignore[misc]


def rows(app: App, kind: str | None = None) -> list[Outbox]:
    with db.session_scope(app.engine) as s:
        stmt = select(Outbox).order_by(col(Outbox.id))
        if kind:
            stmt = stmt.where(Outbox.kind == kind)
        return list(s.exec(stmt).all())


def the_case(app: App) -> Case:
    with db.session_scope(app.engine) as s:
        return s.exec(select(Case)).one()


def to_customer(app: App) -> list[EmailMessage]:
    return [m for m in sent_mails(app) if "marie.dupont@example.org" in str(m["To"])]


def test_acknowledgement_is_sent_once_with_threading_headers(app: App) -> None:
    raw = mail(message_id="<orig-1@example.org>", References="<older@example.org>")
    ingest(app, raw, "smtp")
    ingest(app, raw, "smtp")  # redelivered: still one acknowledgement
    report = dispatch(app)
    assert report.sent >= 1
    (ack,) = to_customer(app)
    case = the_case(app)
    assert ack["From"].addresses[0].addr_spec == "support@kalra-plus.com"
    assert ack["Subject"].startswith(f"[{case.ref}] ")
    assert ack["In-Reply-To"] == "<orig-1@example.org>"
    assert ack["References"].split()[-1] == "<orig-1@example.org>"
    assert ack["Message-ID"] == rows(app, "acknowledgement")[0].message_id
    assert ack["Reply-To"].addresses[0].addr_spec == f"support+{case.reply_token}@kalra-plus.com"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["Date"] is not None
    assert ack.get_content_type() == "multipart/alternative"
    text = ack.get_body(("plain",)).get_content()
    html = ack.get_body(("html",)).get_content()
    assert case.ref in text and case.ref in html
    assert ack.get_body(("plain",)).get_content_charset() == "utf-8"
    # A second dispatch sends nothing more.
    assert dispatch(app).sent == 0 and len(to_customer(app)) == 1


def test_each_mail_sent_is_on_the_case_timeline_and_its_record_has_what_went_out(app: App, clock: Clock) -> None:
    ingest(app, mail(message_id="<timeline-1@example.org>"), "smtp")
    assert dispatch(app).sent == 2
    case = the_case(app)
    with db.session_scope(app.engine) as s:
        events = s.exec(select(Event).where(Event.case_id == case.id, Event.type == "mail_sent")
                        .order_by(col(Event.id))).all()
        records = {m.message_id: m for m in s.exec(select(Message).where(Message.direction == "out")).all()}
    by_kind = {r.kind: r for r in rows(app)}
    assert [(e.data["kind"], e.data["to"], e.data["message_id"], e.data["outbox"]) for e in events] == [
        (r.kind, r.to_addr, r.message_id, r.id) for r in rows(app)]
    assert all(e.at == clock.now for e in events)
    (ack,) = to_customer(app)
    record = records[by_kind["acknowledgement"].message_id]
    assert record.subject == str(ack["Subject"])
    assert record.body_text == ack.get_body(("plain",)).get_content().replace("\r\n", "\n")


def test_acknowledgement_states_dates_and_missing_items(app: App) -> None:
    ingest(app, mail(body="Bonjour, j'ai un problème avec mon compte.\nMarie"), "smtp")
    dispatch(app)
    (ack,) = to_customer(app)
    text = ack.get_body(("plain",)).get_content()
    assert "2026" in text  # received and due dates are written out
    assert "date des faits" in text and "montant" in text
    assert "confidenti" in text.lower()


def test_non_ascii_headers_are_encoded_words(app: App) -> None:
    ingest(app, mail(frm="Élodie Lefèvre <marie.dupont@example.org>", subject="Réclamation frais injustifiés"),
           "smtp")
    dispatch(app)
    raw = (Path(app.config.resolve_path(app.config.outbound.path)) / "new")
    data = next(p for p in sorted(raw.iterdir())).read_bytes()
    head = data.split(b"\r\n\r\n", 1)[0]
    assert all(b < 128 for b in head), "headers must be 7-bit (RFC 2047 encoded-words)"
    assert b"=?utf-8?" in head.lower()


def test_jinja_syntax_from_the_customer_is_sent_back_verbatim(app: App) -> None:
    evil = "{{ 7*7 }} {% for x in range(3) %}X{% endfor %} {{ ''.__class__.__mro__ }}"
    ingest(app, mail(subject=f"Sujet {evil}", frm="\"{{config}}\" <marie.dupont@example.org>",
                     body=f"Texte {evil}"), "smtp")
    dispatch(app)
    (ack,) = to_customer(app)
    assert "{{ 7*7 }}" in ack["Subject"] and "49" not in ack["Subject"]
    for body in (ack.get_body(("plain",)).get_content(), ack.get_body(("html",)).get_content()):
        assert "__mro__" not in body or "{{ ''.__class__.__mro__ }}" in body.replace("&#39;", "'")
        assert "XXX" not in body


def test_encoded_word_crlf_never_reaches_an_outgoing_header(app: App) -> None:
    # "Hello\r\nBcc: evil@x" hidden in RFC 2047 encoded-words, in the name and the subject.
    name = "=?utf-8?b?" + __import__("base64").b64encode(b"Marie\r\nBcc: evil@attacker.example").decode() + "?="
    subj = "=?utf-8?q?Objet=0D=0ABcc=3A_evil2=40attacker.example?="
    ingest(app, f"From: {name} <marie.dupont@example.org>\r\nTo: support@kalra-plus.com\r\n"
                f"Subject: {subj}\r\nMessage-ID: <inj@example.org>\r\n\r\nBonjour\r\n".encode(), "smtp")
    dispatch(app)
    for path in sorted((Path(app.config.resolve_path(app.config.outbound.path)) / "new").iterdir()):
        head = path.read_bytes().split(b"\r\n\r\n", 1)[0]
        assert not any(line.lower().startswith(b"bcc:") for line in head.split(b"\r\n"))
        msg = email.message_from_bytes(path.read_bytes(), policy=default)
        assert msg["Bcc"] is None
        assert [a.addr_spec for a in msg["To"].addresses] in (["marie.dupont@example.org"],
                                                              ["agent@kalra-plus.com"])
        assert "\n" not in str(msg["Subject"]) and "\r" not in str(msg["Subject"])


def test_100_mails_from_one_sender_in_an_hour_give_at_most_ack_limit_acks(make_app: Callable[..., App],
                                                                         clock: Clock) -> None:
    app = make_app(limits={"ack_limit": 3})
    for i in range(100):
        r = ingest(app, mail(message_id=f"<flood-{i}@example.org>", subject=f"Plainte {i}", body=f"Plainte n°{i}"),
                   "smtp")
        assert r.outcome is Outcome.CASE_OPENED  # still recorded
        clock.now += timedelta(seconds=30)
    assert len(rows(app, "acknowledgement")) == 3
    with db.session_scope(app.engine) as s:
        assert len(s.exec(select(Event).where(Event.type == "ack_suppressed")).all()) == 97
    clock.now += timedelta(hours=1)  # a new window
    ingest(app, mail(message_id="<later@example.org>"), "smtp")
    assert len(rows(app, "acknowledgement")) == 4


def test_a_flood_in_one_imap_batch_gets_at_most_ack_limit_acks(make_app: Callable[..., App],
                                                                clock: Clock) -> None:
    """The batch path counts acknowledgements once for the whole batch plus those it
    queues itself: two earlier ones, then 10 mails in one batch, limit 3 → one more."""
    app = make_app(limits={"ack_limit": 3})
    for i in range(2):
        ingest(app, mail(message_id=f"<before-{i}@example.org>", subject=f"Plainte {i}", body=f"Plainte n°{i}"), "smtp")
    clock.now += timedelta(minutes=5)
    batch = [Received(mail(message_id=f"<batch-{i}@example.org>", subject=f"Relance {i}", body=f"Relance n°{i}"),
                      "imap:x")
             for i in range(10)]
    other = Received(mail(frm="autre@example.org", message_id="<other@example.org>"), "imap:x")
    results = ingest_batch(app, [*batch[:5], other, *batch[5:]])
    assert all(r.outcome is Outcome.CASE_OPENED for r in results)
    acks = rows(app, "acknowledgement")
    assert sorted(r.to_addr for r in acks).count("marie.dupont@example.org") == 3
    assert [r.to_addr for r in acks].count("autre@example.org") == 1
    with db.session_scope(app.engine) as s:
        assert len(s.exec(select(Event).where(Event.type == "ack_suppressed")).all()) == 9


def test_an_agent_mail_inside_a_batch_does_not_reset_the_ack_count(make_app: Callable[..., App]) -> None:
    """An agent mail inside a batch (its commands run in a savepoint):
    the acknowledgements queued before it still count: 3 + agent + 3 mails, limit 3 → 3."""
    app = make_app(limits={"ack_limit": 3})
    ingest(app, mail(frm="autre@example.org", message_id="<other@example.org>"), "smtp")
    (notif,) = rows(app, "agent_notification")
    assert notif.reply_to
    agent = Received(mail(frm="Paul Agent <agent@kalra-plus.com>", to=notif.reply_to, subject="Re: suivi",
                          body="#note\nDossier connu.", message_id="<agent-1@kalra-plus.com>"), "imap:x")
    flood = [Received(mail(message_id=f"<f-{i}@example.org>", subject=f"Relance {i}", body=f"Relance n°{i}"),
                      "imap:x")
             for i in range(6)]
    results = ingest_batch(app, [*flood[:3], agent, *flood[3:]])
    assert [r.outcome for r in results] == [Outcome.CASE_OPENED] * 3 + [Outcome.FOLLOWUP] + [
        Outcome.CASE_OPENED] * 3
    with db.session_scope(app.engine) as s:  # the agent mail went the savepoint way
        assert s.exec(select(Event).where(Event.type == "note")).all()
        assert len(s.exec(select(Event).where(Event.type == "ack_suppressed")).all()) == 3
    assert [r.to_addr for r in rows(app, "acknowledgement")].count("marie.dupont@example.org") == 3


def test_a_sender_marked_failing_is_cleared_when_it_writes_in_a_batch(app: App) -> None:
    from mailbot.cases.conversations import mark_failing
    from mailbot.models import FailingRecipient

    with db.session_scope(app.engine) as s:
        mark_failing(s, "marie.dupont@example.org", "bounced", app.now())
    ingest_batch(app, [Received(mail(message_id=f"<b-{i}@example.org>", subject=f"P {i}", body=f"Plainte n°{i}"),
                                "imap:x")
                       for i in range(3)])
    with db.session_scope(app.engine) as s:
        assert s.get(FailingRecipient, "marie.dupont@example.org") is None
    assert len(rows(app, "acknowledgement")) == 3


def test_a_duplicate_or_unroutable_mail_in_a_batch_does_not_clear_a_bounce_mark(app: App) -> None:
    """Only a new mail the sender wrote to us says the address works again: an IMAP
    re-fetch of an old one, or a mail for none of our brands, does not."""
    from mailbot.cases.conversations import mark_failing
    from mailbot.models import FailingRecipient

    old = mail(message_id="<old@example.org>")
    ingest(app, old, "smtp")
    with db.session_scope(app.engine) as s:
        mark_failing(s, "marie.dupont@example.org", "bounced", app.now())
    results = ingest_batch(app, [Received(old, "imap:x"),
                                 Received(mail(message_id="<elsewhere@example.org>", to="x@elsewhere.example"),
                                          "imap:x"),
                                 Received(mail(frm="autre@example.org", message_id="<o@example.org>"), "imap:x")])
    assert [r.outcome for r in results] == [Outcome.DUPLICATE, Outcome.QUARANTINED, Outcome.CASE_OPENED]
    with db.session_scope(app.engine) as s:
        assert s.get(FailingRecipient, "marie.dupont@example.org") is not None


def test_two_autoresponders_do_not_loop(app: App) -> None:
    """Our acknowledgement reaches a vacation responder, whose reply reaches us: it stops there."""
    ingest(app, mail(frm="boss@example.org"), "smtp")
    dispatch(app)
    (ack,) = [m for m in sent_mails(app) if "boss@" in str(m["To"])]
    # The simulated responder answers our ack (RFC 3834 compliant and a sloppy one).
    for headers in ({"Auto_Submitted": "auto-replied"}, {"X_Autoreply": "yes"}, {}):
        vacation = mail(frm="boss@example.org", subject=f"Absent: {ack['Subject']}",
                        In_Reply_To=ack["Message-ID"], message_id=None, **headers)
        ingest(app, vacation, "smtp", envelope_from="" if not headers else "boss@example.org")
    dispatch(app)
    acks = [r for r in rows(app) if r.to_addr == "boss@example.org" and r.kind == "acknowledgement"]
    assert len(acks) == 1


def test_no_automatic_mail_to_mailer_daemon_or_noreply(app: App) -> None:
    ingest(app, mail(frm="no-reply@shop.example"), "smtp")
    ingest(app, mail(frm="MAILER-DAEMON@mx.example"), "smtp")
    assert rows(app, "acknowledgement") == []


def test_per_case_cap_on_automatic_mail(make_app: Callable[..., App]) -> None:
    app = make_app(limits={"auto_per_case": 2, "ack_limit": 100})
    ingest(app, mail(message_id="<cap-0@example.org>"), "smtp")
    case = the_case(app)
    for i in range(5):  # follow-ups after the final response would each ask for an acknowledgement
        with db.session_scope(app.engine) as s:
            c = lock(s, s.get(Case, case.id))  # type: ignore[arg-type]
            c.status = "answered"  # type: ignore[union-attr]
            s.add(c)
        ingest(app, mail(message_id=f"<cap-{i + 1}@example.org>", In_Reply_To="<cap-0@example.org>"), "smtp")
    with db.session_scope(app.engine) as s:
        c = s.get(Case, case.id)
        assert c is not None and c.auto_mail_count <= 2
    assert len([r for r in rows(app) if r.to_addr == "marie.dupont@example.org"]) <= 2


# -- SMTP relay transport ---------------------------------------------------------------------


class Sink:
    """A real SMTP relay (aiosmtpd) recording what it receives; can refuse with a code."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []
        self.refuse: str | None = None
        self.unknown: set[str] = set()  # recipients refused with 550 at RCPT
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.unknown:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse:
            return self.refuse
        with self.lock:
            self.received.append(envelope)
        return "250 OK"


@contextmanager
def relay(port: int) -> Iterator[Sink]:
    sink = Sink()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield sink
    finally:
        ctl.stop()


def smtp_app(make_app: Callable[..., App], port: int, **limits: object) -> App:
    return make_app(outbound={"transport": "smtp", "host": "127.0.0.1", "port": port, "timeout": 5,
                              "max_attempts": 4, "backoff_seconds": 60, **limits})


def test_acknowledgement_through_a_real_smtp_relay(make_app: Callable[..., App]) -> None:
    port = free_port()
    app = smtp_app(make_app, port)
    ingest(app, mail(), "smtp")
    with relay(port) as sink:
        dispatch(app)
    acks = [e for e in sink.received if e.rcpt_tos == ["marie.dupont@example.org"]]
    assert len(acks) == 1
    msg = email.message_from_bytes(acks[0].original_content, policy=default)  # type: ignore[arg-type]
    assert msg["Auto-Submitted"] == "auto-replied" and msg["Subject"].startswith("[KP-")
    assert acks[0].mail_from == "support@kalra-plus.com"


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_relay_down_then_back_delivers_each_of_100_acks_once(make_app: Callable[..., App], clock: Clock,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    app = smtp_app(make_app, port)
    for i in range(100):
        ingest(app, mail(frm=f"client{i}@example.org", message_id=f"<down-{i}@example.org>"), "smtp")
    # Nothing listens on the relay port: every row is retried later, none lost.
    report = dispatch(app)
    assert report.sent == 0 and report.retried >= 100
    assert all(r.status == "pending" and r.attempts == 1 and r.last_error for r in rows(app))
    from mailbot.cli.main import main

    assert main(["--config", str(app.config.source_path), "outbox", "list"]) in (0, 2)
    clock.now += timedelta(minutes=5)
    with relay(port) as sink:
        report = dispatch(app)
    assert report.sent == len(rows(app))
    acks = [e.rcpt_tos[0] for e in sink.received if e.rcpt_tos[0].startswith("client")]
    assert sorted(acks) == sorted(f"client{i}@example.org" for i in range(100))
    assert all(r.status == "sent" and r.attempts == 2 for r in rows(app))


def test_relay_answering_4xx_marks_the_row_failed_after_the_limit(make_app: Callable[..., App],
                                                                  clock: Clock) -> None:
    port = free_port()
    app = smtp_app(make_app, port)
    ingest(app, mail(), "smtp")
    with relay(port) as sink:
        sink.refuse = "451 4.3.0 try again later"
        for _ in range(4):
            dispatch(app)
            clock.now += timedelta(hours=2)
    ack = rows(app, "acknowledgement")[0]
    assert ack.status == "failed" and ack.attempts == 4 and "451" in (ack.last_error or "")
    with db.session_scope(app.engine) as s:
        ev = s.exec(select(Event).where(Event.type == "mail_failed")).all()
        assert {e.data["kind"]: e.data["permanent"] for e in ev}["acknowledgement"] is False


def test_a_permanent_refusal_fails_at_once_and_the_staff_hear_of_it(make_app: Callable[..., App]) -> None:
    """A 5xx from the relay is not retried for hours: the row fails at the first attempt,
    the case's trail says so, and the brand's team gets a notice (in the brand's
    language) naming the address that failed, sent in the same run."""
    port = free_port()
    app = smtp_app(make_app, port)
    ingest(app, mail(), "smtp")
    with relay(port) as sink:
        sink.unknown = {"marie.dupont@example.org"}
        report = dispatch(app)
    ack = rows(app, "acknowledgement")[0]
    assert ack.status == "failed" and ack.attempts == 1 and "550" in (ack.last_error or "")
    assert report.failed == 1
    with db.session_scope(app.engine) as s:
        (ev,) = s.exec(select(Event).where(Event.type == "mail_failed")).all()
        assert ev.data["permanent"] is True and ev.data["to"] == "marie.dupont@example.org"
    team = set(app.config.brand("kalra-plus").team)
    received = [(e.rcpt_tos[0], email.message_from_bytes(e.original_content, policy=default))  # type: ignore[arg-type]
                for e in sink.received]
    notices = [(to, m) for to, m in received if "Échec d'envoi" in m["Subject"]]
    assert {to for to, _ in notices} == team
    notice = notices[0][1]
    text = notice.get_body(("plain",)).get_content()
    assert "marie.dupont@example.org" in text and "refusé définitivement" in text and "KP-2026-000001" in text
    assert notice["Auto-Submitted"] is None  # written for people, answered by people


# -- the dispatcher holds no database lock while it talks to the relay --------------------------


class SlowRelay:
    """A transport that, while 'sending', checks that the database is free for ingest."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.ingested_while_sending: list[str] = []

    def send(self, from_addr: str, to_addr: str, raw: bytes) -> None:
        done: list[str] = []

        def receive() -> None:
            r = ingest(self.app, mail(frm=f"during-{len(self.ingested_while_sending)}@example.org"), "smtp")
            done.append(r.outcome)

        t = threading.Thread(target=receive)
        t.start()
        t.join(5)
        assert done, "ingest waited for the dispatcher: a database lock is held during relay I/O"
        self.ingested_while_sending.append(done[0])

    def close(self) -> None:
        pass


def test_ingest_goes_on_while_the_dispatcher_talks_to_the_relay(make_app: Callable[..., App]) -> None:
    app = make_app(database={"busy_timeout": 2})
    ingest(app, mail(), "smtp")
    relay_ = SlowRelay(app)
    report = dispatch(app, transport=relay_, limit=2)
    assert report.sent == 2
    assert relay_.ingested_while_sending == ["case_opened", "case_opened"]


class CrashingRelay:
    """Accepts the mail, then the process 'dies' before the outcome is recorded."""

    def send(self, from_addr: str, to_addr: str, raw: bytes) -> None:
        raise KeyboardInterrupt  # stands for SIGKILL: nothing after this line runs

    def close(self) -> None:
        pass


def test_a_row_in_flight_at_a_crash_is_sent_again_after_its_lease(app: App, clock: Clock) -> None:
    ingest(app, mail(), "smtp")
    with pytest.raises(KeyboardInterrupt):
        dispatch(app, transport=CrashingRelay(), limit=1)
    (row,) = [r for r in rows(app) if r.attempts == 1]
    assert row.status == "pending" and row.raw is not None  # leased, not lost
    assert dispatch(app).sent == 1  # the other row; the leased one is not due yet
    clock.now += timedelta(seconds=11)  # Maildir lease: 10 s
    assert dispatch(app).sent == 1
    assert all(r.status == "sent" for r in rows(app))
    assert len([m for m in sent_mails(app) if m["Message-ID"] == row.message_id]) == 1


# -- rows are claimed in batches, rendered with no write lock held ------------------------------


def test_ingest_goes_on_while_the_dispatcher_renders(make_app: Callable[..., App],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering (templates, MIME) happens in a read-only transaction: a mail received
    meanwhile is committed at once instead of waiting for the dispatcher's write lock."""
    app = make_app(database={"busy_timeout": 2})
    ingest(app, mail(), "smtp")
    render, during = templating.renderer(app).render, []

    def render_and_receive(*args: object, **kw: object) -> object:
        done: list[str] = []
        t = threading.Thread(target=lambda: done.append(
            ingest(app, mail(frm=f"during-{len(during)}@example.org"), "smtp").outcome))
        t.start()
        t.join(5)
        assert done, "ingest waited for the dispatcher: a write lock is held while rendering"
        during.append(done[0])
        return render(*args, **kw)

    monkeypatch.setattr(templating.renderer(app), "render", render_and_receive)
    assert dispatch(app, limit=2).sent == 2
    assert during == [Outcome.CASE_OPENED, Outcome.CASE_OPENED]


class CrashOnSecond:
    """A transport that delivers the first mail and 'dies' (SIGKILL) in the second send."""

    def __init__(self, path: Path) -> None:
        from mailbot.outgoing.transports import MaildirTransport

        self.maildir, self.sends = MaildirTransport(path), 0

    def send(self, from_addr: str, to_addr: str, raw: bytes) -> None:
        self.sends += 1
        self.maildir.send(from_addr, to_addr, raw)
        if self.sends == 2:
            raise KeyboardInterrupt  # after the relay took it, before the outcome is recorded

    def close(self) -> None:
        pass


def test_a_crash_in_a_batch_sends_each_mail_once_after_the_lease(app: App, clock: Clock) -> None:
    """Rows are claimed several at once and their outcomes recorded one by one: a crash
    re-sends at most the mail in flight (the Maildir replaces that copy), and the rows
    claimed but not sent yet go out when their lease ends, with one attempt counted."""
    for i in range(3):
        ingest(app, mail(frm=f"c{i}@example.org", message_id=f"<batch-{i}@example.org>"), "smtp")
    maildir = Path(app.config.resolve_path(app.config.outbound.path))
    with pytest.raises(KeyboardInterrupt):
        dispatch(app, transport=CrashOnSecond(maildir))
    assert [r.status for r in rows(app)] == ["sent"] + ["pending"] * 5  # claimed (leased), one in flight
    assert all(r.attempts == 1 and r.raw is not None for r in rows(app))
    assert dispatch(app).sent == 0  # leased: not due yet
    clock.now += timedelta(seconds=11)  # Maildir lease: 10 s
    assert dispatch(app).sent == 5
    assert all(r.status == "sent" and r.attempts == 2 for r in rows(app)[1:])
    sent = [str(m["Message-ID"]) for m in sent_mails(app)]
    assert sorted(sent) == sorted(r.message_id for r in rows(app))  # six mails, each once


class SlowFirstSend:
    """A transport whose first send takes longer than half the lease."""

    def __init__(self, path: Path, delay: float) -> None:
        from mailbot.outgoing.transports import MaildirTransport

        self.maildir, self.delay, self.sends = MaildirTransport(path), delay, 0

    def send(self, from_addr: str, to_addr: str, raw: bytes) -> None:
        self.sends += 1
        if self.sends == 1:
            time.sleep(self.delay)
        self.maildir.send(from_addr, to_addr, raw)

    def close(self) -> None:
        pass


def test_a_batch_whose_sends_grow_slow_gives_its_other_rows_back(app: App,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Half the lease gone before a row is sent: the batch's unsent rows are given back
    (due again, the attempt not counted) rather than sent after their lease could
    have let another instance take them; the same run sends them in a new claim."""
    from mailbot.outgoing import outbox

    monkeypatch.setattr(outbox, "lease", lambda _app: timedelta(seconds=0.4))
    for i in range(3):
        ingest(app, mail(frm=f"c{i}@example.org", message_id=f"<slow-{i}@example.org>"), "smtp")
    maildir = Path(app.config.resolve_path(app.config.outbound.path))
    claims: list[int] = []
    claim = outbox._claim  # noqa: SLF001

    def counted(*args: object, **kw: object) -> list[Outbox]:
        claimed = claim(*args, **kw)  # type: ignore[arg-type]
        claims.append(len(claimed))
        return claimed

    monkeypatch.setattr(outbox, "_claim", counted)
    report = dispatch(app, transport=SlowFirstSend(maildir, delay=0.3))
    assert report.sent == 6 and claims == [6, 5, 0]
    assert all(r.status == "sent" and r.attempts == 1 for r in rows(app))
    assert len(sent_mails(app)) == 6


def test_a_mail_the_owner_has_read_is_not_written_again(tmp_path: Path) -> None:
    """The Maildir transport: a re-sent mail (same Message-ID and recipient) replaces its
    copy in new/, and is not written again once the owner moved it to cur/."""
    from mailbot.outgoing.transports import MaildirTransport

    raw = mail(message_id="<read-once@example.org>")
    MaildirTransport(tmp_path).send("support@kalra-plus.com", "marie@example.org", raw)
    MaildirTransport(tmp_path).send("support@kalra-plus.com", "marie@example.org", raw)
    (first,) = (tmp_path / "new").iterdir()
    first.rename(tmp_path / "cur" / f"{first.name}:2,S")
    MaildirTransport(tmp_path).send("support@kalra-plus.com", "marie@example.org", raw)
    assert not list((tmp_path / "new").iterdir()) and len(list((tmp_path / "cur").iterdir())) == 1
    MaildirTransport(tmp_path).send("support@kalra-plus.com", "someone@example.org", raw)  # another recipient
    assert len(list((tmp_path / "new").iterdir())) == 1


class StopAfterFirst:
    """A transport that delivers, and has the daemon told to stop during its first send."""

    def __init__(self, app: App, path: Path) -> None:
        from mailbot.outgoing.transports import MaildirTransport

        self.app, self.maildir = app, MaildirTransport(path)

    def send(self, from_addr: str, to_addr: str, raw: bytes) -> None:
        self.app.stopping.set()  # SIGTERM
        self.maildir.send(from_addr, to_addr, raw)

    def close(self) -> None:
        pass


def test_a_stopping_daemon_ends_its_dispatch_after_the_mail_it_is_sending(app: App) -> None:
    """SIGTERM with a backlog: the run ends after the mail being sent; the rows it had
    claimed are given back (due at once, no attempt counted) and sent after the restart."""
    for i in range(3):
        ingest(app, mail(frm=f"c{i}@example.org", message_id=f"<stop-{i}@example.org>"), "smtp")
    maildir = Path(app.config.resolve_path(app.config.outbound.path))
    assert dispatch(app, transport=StopAfterFirst(app, maildir)).sent == 1
    assert [(r.status, r.attempts) for r in rows(app)] == [("sent", 1)] + [("pending", 0)] * 5
    app.stopping.clear()  # the restart
    assert dispatch(app).sent == 5
    assert all(r.status == "sent" and r.attempts == 1 for r in rows(app)) and len(sent_mails(app)) == 6


def test_our_own_mail_coming_back_verbatim_is_not_answered(app: App) -> None:
    """No loops: an acknowledgement as the dispatcher built it, delivered back to a brand
    address (a forward, a misconfigured alias), is recognised as ours and answered by nothing."""
    ingest(app, mail(frm="boss@example.org"), "smtp")
    dispatch(app)
    new = Path(app.config.resolve_path(app.config.outbound.path)) / "new"
    for path in sorted(new.iterdir()):
        raw = path.read_bytes().split(b"\r\n", 2)[2]  # without the Maildir transport's envelope lines
        result = ingest(app, raw, "smtp", envelope_to=("support@kalra-plus.com",))
        assert result.outcome is Outcome.OWN, result
    before = len(rows(app))
    assert dispatch(app).sent == 0 and len(rows(app)) == before


def test_a_folded_subject_is_stored_and_echoed_with_its_space(app: App) -> None:
    raw = mail(subject="x").replace(b"Subject: x", b"Subject: Erreur sur mon\r\n =?utf-8?q?relev=C3=A9?=")
    ingest(app, raw, "smtp")
    assert the_case(app).subject == "Erreur sur mon relevé"
    dispatch(app)
    (ack,) = to_customer(app)
    assert ack["Subject"].endswith("Erreur sur mon relevé")
