"""Security, as an outsider attacks it (issue #20): each test is one threat of
docs/security.md, and fails on the code before its fix.

In-process on both databases where the database matters; the daemon and the
command line run as real processes where the threat is about them
(tests/test_security_daemon.py).
"""

from __future__ import annotations

import logging
import mailbox
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select

from mailbot import db
from mailbot.app import App
from mailbot.cases import conversations
from mailbot.ingest import pipeline
from mailbot.ingest.pipeline import Outcome, Received, TemporaryFailure, ingest, ingest_batch
from mailbot.models import Case, Inbound, Outbox, Quarantine
from tests.conftest import ROOT, TEST_SECRET, config_data
from tests.desk import AGENT, CUSTOMER, SUPERVISOR, Desk, only, reply_to, text_of, to
from tests.mails import mail
from tests.procs import to_toml

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def cases(app: App) -> list[Case]:
    with db.session_scope(app.engine) as s:
        return list(s.exec(select(Case).order_by(col(Case.id))).all())


def run_cli(cfg: Path, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[bytes]:
    """`mailbot --config CFG ARGS…` as a fresh process."""
    import os

    return subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(cfg), *args], input=stdin,
                          cwd=ROOT, capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


# --------------------------------------------------------------------------- 1. no built-in secret

NO_SECRET = {"security": {"secret": None, "secret_env": "MAILBOT_TEST_NO_SUCH_VARIABLE", "secret_file": None}}
PUBLIC_KEY = "mailbot-insecure-default-secret"  # the key every install had when MAILBOT_SECRET was unset


@pytest.mark.slow  # fresh processes: left out by `make test-fast`
def test_the_daemon_and_the_pipe_refuse_to_start_without_a_secret(tmp_path: Path) -> None:
    """As processes: no key to fall back on, a clear error naming the keys to set, nothing done."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(to_toml(config_data(tmp_path, **NO_SECRET)))
    run = run_cli(cfg, "run")
    ingest_ = run_cli(cfg, "ingest", "-r", "support@kalra-plus.com", "-", stdin=mail())
    for p in (run, ingest_):
        err = p.stderr.decode()
        assert p.returncode == 2, err
        assert "MAILBOT_TEST_NO_SUCH_VARIABLE" in err and "security.secret_env" in err, err
        assert "security.secret_file" in err and "Traceback" not in err, err
    assert not (tmp_path / "mailbot.db").exists()  # refused before touching anything


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`cli.main` installs its own stderr handler on the root logger; put things back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_every_command_that_signs_or_checks_a_token_needs_the_secret(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mailbot.cli.main import NEEDS_SECRET, main

    cfg = tmp_path / "config.toml"
    cfg.write_text(to_toml(config_data(tmp_path, **NO_SECRET)))
    (tmp_path / "mail.eml").write_bytes(mail())
    args = {"run": [], "ingest": [str(tmp_path / "mail.eml")], "import": ["x.mbox"], "tick": [], "cases": ["KP-2026-000001"],
            "quarantine": ["1"], "outbox": [], "web": []}
    extra = {("cases", "new"): ["--brand", "kalra-plus", "--received", "2026-12-01", "--name", "N",
                                "--summary", "S"], ("cases", "reply"): ["--file", "-", "--as", "a@b"],
             ("cases", "assign"): ["agent@kalra-plus.com"], ("cases", "extend"): ["5", "why"],
             ("cases", "merge"): ["KP-2026-000002"], ("cases", "link"): ["KP-2026-000002"]}
    for command, action in sorted(NEEDS_SECRET, key=str):
        argv = [command, *([action] if action else []), *args[command], *extra.get((command, action), [])]
        if command == "cases" and action == "new":
            argv = [command, action, *extra[(command, action)]]
        assert main(["--config", str(cfg), *argv]) == 2, argv
        assert "refuses to start" in capsys.readouterr().err, argv
    assert main(["--config", str(cfg), "cases", "list"]) == 0  # reading needs no secret


@pytest.mark.parametrize("secret", ["", "short-secret"])
def test_an_empty_or_short_secret_is_refused(tmp_path: Path, secret: str) -> None:
    from mailbot.config import MissingSecret, parse_config

    # No secret_file: the shipped config's var/secret is there once `make run` has made it,
    # and an empty variable falls back to the file (as documented).
    cfg = parse_config(config_data(tmp_path, security={"secret": None, "secret_env": "MAILBOT_TEST_SHORT",
                                                       "secret_file": None}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAILBOT_TEST_SHORT", secret)
        with pytest.raises(MissingSecret, match="MAILBOT_TEST_SHORT"):
            cfg.security.resolved_secret()


def test_a_token_signed_with_the_old_public_key_is_refused(app: App) -> None:
    """The attack of issue #20: a forged supervisor@ closing case 1 with a token signed by
    the key anyone could read. The key is the configured one, so the forgery fails."""
    from mailbot.cases.tokens import make_agent_token

    ingest(app, mail(), "smtp", envelope_to=["support@kalra-plus.com"])
    (case,) = cases(app)
    token = make_agent_token(PUBLIC_KEY, case.id or 0, "supervisor@kalra-plus.com",
                             datetime(2040, 1, 1, tzinfo=UTC))
    forged = mail(frm="supervisor@kalra-plus.com", to=f"support+{token}@kalra-plus.com", body="#close\n")
    ingest(app, forged, "smtp", envelope_to=[f"support+{token}@kalra-plus.com"])
    (case,) = cases(app)
    assert case.status != "closed"


@pytest.mark.slow
def test_make_run_creates_a_private_secret_that_the_shipped_config_reads(tmp_path: Path) -> None:
    """`make run` on a fresh clone: var/secret is made (0600), then the shipped config.toml
    runs commands that need it, without MAILBOT_SECRET."""
    import os
    import shutil
    import stat

    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    text = (tmp_path / "config.toml").read_text()
    text = text.replace('templates_dir = "templates"', f'templates_dir = "{ROOT / "templates"}"', 1)
    (tmp_path / "config.toml").write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "MAILBOT_SECRET"}
    made = subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), f"PY={sys.executable}", "var/secret"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    assert made.returncode == 0, made.stderr
    secret = tmp_path / "var" / "secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text().strip()) == 64
    p = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(tmp_path / "config.toml"), "tick"],
                       cwd=tmp_path, capture_output=True, timeout=60, env={**env, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr.decode()[-2000:]


def test_the_units_do_not_start_without_their_environment_file() -> None:
    for unit in ("mailbot.service", "mailbot-tick.service"):
        lines = (ROOT / "systemd" / unit).read_text().splitlines()
        assert "EnvironmentFile=/etc/mailbot/env" in lines, unit  # no "-": a missing file is an error


# --------------------------------------------------------------------------- 8. file descriptors

def test_the_daemon_unit_raises_the_file_limit_well_over_the_session_cap() -> None:
    from mailbot.config import SmtpConfig

    lines = (ROOT / "systemd" / "mailbot.service").read_text().splitlines()
    (limit,) = [int(line.split("=", 1)[1]) for line in lines if line.startswith("LimitNOFILE=")]
    assert limit >= 10 * SmtpConfig().max_sessions >= 1000


def test_loop_errors_of_one_kind_are_logged_once_a_minute() -> None:
    """Out of descriptors, asyncio reported every failed accept with a traceback: 16 MB in 20 s."""
    from mailbot.ops.loop_errors import ThrottledLoopErrors

    now = [0.0]
    logged: list[str] = []

    class Loop:
        def default_exception_handler(self, context: dict[str, object]) -> None:
            logged.append(str(context["message"]))

    throttle = ThrottledLoopErrors(clock=lambda: now[0])
    loop = Loop()
    for i in range(1000):
        now[0] = i * 0.02  # 50 a second for 20 s
        throttle(loop, {"message": "socket.accept() out of system resource\nsocket: <fd=9>"})  # type: ignore[arg-type]
        throttle(loop, {"message": f"Exception in callback BaseSelectorEventLoop._start_serving(<x>)\n{i}"})  # type: ignore[arg-type]
    assert len(logged) == 2
    now[0] = 61.0
    throttle(loop, {"message": "socket.accept() out of system resource\nsocket: <fd=9>"})  # type: ignore[arg-type]
    assert len(logged) == 3 and "999 more of this kind" in logged[-1]


# --------------------------------------------------------------------------- 3. one mail, two brands


def test_a_mail_delivered_once_per_brand_opens_a_case_at_each(app: App) -> None:
    """The pipe transport (one recipient per call) and one mailbox per brand deliver a
    mail to both brands twice: each delivery is for its own brand, not a duplicate."""
    both = mail(to="support@kalra-plus.com, info@divikeys.com", message_id="<both@example.org>")
    first = ingest(app, both, "pipe", envelope_to=["support@kalra-plus.com"])
    second = ingest(app, both, "pipe", envelope_to=["info@divikeys.com"])
    assert first.outcome is Outcome.CASE_OPENED and first.case_refs[0].startswith("KP-")
    assert second.outcome is Outcome.CASE_OPENED, second.reason
    assert second.case_refs[0].startswith("DK-")
    # an MTA's retry of either delivery is still one record
    again = ingest(app, both, "pipe", envelope_to=["info@divikeys.com"])
    assert again.outcome is Outcome.DUPLICATE
    imap = ingest_batch(app, [Received(both, "imap:kp", mailbox_brand="kalra-plus"),
                              Received(both, "imap:dk", mailbox_brand="divikeys")])
    assert [r.outcome for r in imap] == [Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert sorted(c.brand for c in cases(app)) == ["divikeys", "kalra-plus"]


# --------------------------------------------------------------------------- 4. thread hijack

def test_a_stranger_reusing_a_customers_message_id_does_not_take_the_thread(app: App) -> None:
    """A stranger's mail reused the customer's Message-ID; the customer's later reply
    (In-Reply-To their own mail) joined the stranger's case, and the agent's answers
    went to the stranger."""
    first = ingest(app, mail(frm="marie@example.org", message_id="<mine@example.org>"), "smtp",
                   envelope_to=["support@kalra-plus.com"])
    stolen = ingest(app, mail(frm="mallory@evil.example", message_id="<mine@example.org>",
                              body="Autre chose entièrement."), "smtp", envelope_to=["support@kalra-plus.com"])
    assert stolen.outcome is Outcome.CASE_OPENED  # (a different mail: kept, on a case of its own)
    reply = ingest(app, mail(frm="marie@example.org", subject="Re: Virement non reçu", body="Des nouvelles ?",
                             In_Reply_To="<mine@example.org>"), "smtp", envelope_to=["support@kalra-plus.com"])
    assert reply.case_refs == first.case_refs, reply.reason
    joined = ingest(app, mail(frm="mallory@evil.example", subject="Re: Virement non reçu", body="Moi aussi",
                              In_Reply_To="<mine@example.org>"), "smtp", envelope_to=["support@kalra-plus.com"])
    assert joined.case_refs == stolen.case_refs  # the stranger's own mail: their own case
    by_ref = {c.ref: c.customer_email for c in cases(app)}
    assert by_ref[first.case_refs[0]] == "marie@example.org"


def test_a_message_id_of_several_cases_opens_a_new_case(app: App) -> None:
    """The same sender's client reused one Message-ID for two complaints: a reply naming it
    is not guessed into either."""
    for body in ("Premier problème de virement.", "Second problème : des frais inconnus."):
        ingest(app, mail(message_id="<reused@example.org>", body=body), "smtp", envelope_to=["support@kalra-plus.com"])
    r = ingest(app, mail(subject="Re: ?", In_Reply_To="<reused@example.org>", body="Alors ?"), "smtp",
               envelope_to=["support@kalra-plus.com"])
    assert r.outcome is Outcome.CASE_OPENED and r.case_refs == ("KP-2026-000003",)


# --------------------------------------------------------------------------- 5. subject reference

FINAL_OK = ("#final\nExplication : un contrôle anti-fraude a retenu le virement.\n"
            "Mesures correctives : le seuil du contrôle a été revu.\n"
            "Solution : le virement a été exécuté le 24 novembre.\n")
MX = "mx.kalra-plus.com"


def answered_case(desk: Desk) -> str:
    """A case whose final response went out; returns its reference."""
    notif = desk.complaint()
    desk.reply(notif, FINAL_OK)
    desk.new_mail()
    assert desk.case().status == "answered"
    return desk.case().ref


def forged(ref: str, **headers: str) -> bytes:
    """The customer's address in From, the case's reference in the subject: nothing else."""
    return mail(frm=f"Marie Dupont <{CUSTOMER}>", subject=f"Re: [{ref}] votre réponse",
                body="Je conteste cette réponse et demande un réexamen.", **headers)


def test_a_subject_reference_alone_never_reopens_an_answered_case(app: App) -> None:
    """A forged From of the customer with `Re: [KP-…]` reopened the answered case and mailed
    the customer; now it is kept on the case, the agent is told, nothing else happens."""
    desk = Desk(app)
    ref = answered_case(desk)
    r = desk.receive(forged(ref))
    assert r.case_refs == (ref,)
    assert desk.case().status == "answered"
    sent = desk.new_mail()
    assert to(sent, CUSTOMER) == []  # no re-examination acknowledgement to the (real) customer
    note = text_of(only(to(sent, AGENT)))
    assert "usurpé" in note and "#reexamine" in note
    (event,) = desk.events("message_after_answer")
    assert "subject's reference alone" in event.data["reason"]


def test_with_a_trusted_mta_a_subject_reference_needs_an_aligned_from(make_app: Callable[..., App]) -> None:
    app = make_app(security={"secret": TEST_SECRET, "trusted_authserv_id": MX})
    desk = Desk(app)
    ref = answered_case(desk)
    assert desk.receive(forged(ref)).case_refs != (ref,)  # no header from our MTA
    spoofed = f"{MX}; dkim=pass header.d=evilexample.org; spf=fail smtp.mailfrom=mallory@evil.example"
    assert desk.receive(forged(ref, Authentication_Results=spoofed)).case_refs != (ref,)
    theirs = "mx.evil.example; dmarc=pass header.from=example.org"
    assert desk.receive(forged(ref, Authentication_Results=theirs)).case_refs != (ref,)
    genuine = f"{MX}; dkim=pass header.d=example.org; dmarc=pass header.from=example.org"
    r = desk.receive(forged(ref, Authentication_Results=genuine))
    assert r.case_refs == (ref,)
    assert desk.case(ref).status == "reexamination"  # vouched for: it asks, so it reopens


@pytest.mark.parametrize(("header", "from_addr", "verdict"), [
    ("mx.kalra-plus.com; dmarc=pass header.from=example.org", "a@example.org", None),
    ("mx.kalra-plus.com 1; spf=pass smtp.mailfrom=bounce@example.org", "a@example.org", None),
    ("mx.kalra-plus.com; dkim=pass (good sig) header.i=@example.org", "a@example.org", None),
    ("MX.Kalra-Plus.com; DKIM=Pass header.d=Example.ORG", "a@example.org", None),
    ("mx.kalra-plus.com; dkim=pass header.d=evilexample.org", "a@example.org", "no DKIM/SPF/DMARC pass"),
    ("mx.kalra-plus.com; dkim=pass header.d=mail.example.org", "a@example.org", "no DKIM/SPF/DMARC pass"),
    ("mx.kalra-plus.com; dkim=fail header.d=example.org; spf=softfail smtp.mailfrom=example.org",
     "a@example.org", "no DKIM/SPF/DMARC pass"),
    ("mx.kalra-plus.com; dmarc=pass header.from=evil.example", "a@example.org", "no DKIM/SPF/DMARC pass"),
    ("mx.evil.example; dmarc=pass header.from=example.org", "a@example.org", "no Authentication-Results"),
])
def test_authentication_results_of_the_trusted_mta_only(header: str, from_addr: str, verdict: str | None) -> None:
    from email import message_from_string

    from mailbot.mail.authresults import from_unverified

    msg = message_from_string(f"Authentication-Results: {header}\nFrom: {from_addr}\n\nx")
    why = from_unverified(msg, from_addr, MX)
    assert (why is None) if verdict is None else (why is not None and verdict in why), why


def test_only_the_topmost_header_of_the_trusted_mta_counts() -> None:
    """The MTA adds its header on top; one the sender wrote below it with the same id is not read."""
    from email import message_from_string

    from mailbot.mail.authresults import from_unverified

    msg = message_from_string(f"Authentication-Results: {MX}; dmarc=fail header.from=example.org\n"
                              f"Authentication-Results: {MX}; dmarc=pass header.from=example.org\n"
                              "From: a@example.org\n\nx")
    assert from_unverified(msg, "a@example.org", MX) is not None
    assert from_unverified(msg, "a@example.org", None) is not None  # no trusted MTA: nothing trusted


# --------------------------------------------------------------------------- 9. poison mail

POISON_DATE = b"Date: Fri, 31 Dec 9999 23:59:59 -1200"


def poison_mail(message_id: str = "<poison@example.org>") -> bytes:
    raw = mail(message_id=message_id)
    return raw.replace(b"Date: Mon, 23 Nov 2026 09:00:00 +0000", POISON_DATE)


def test_an_absurd_date_is_clamped_and_the_mail_becomes_a_case(app: App) -> None:
    raw = poison_mail()
    assert POISON_DATE in raw
    r = ingest(app, raw, "pipe", envelope_to=["support@kalra-plus.com"])
    assert r.outcome is Outcome.CASE_OPENED, r.reason
    assert ingest(app, raw, "pipe", envelope_to=["support@kalra-plus.com"]).outcome is Outcome.DUPLICATE


@pytest.fixture
def failing_subject(monkeypatch: pytest.MonkeyPatch) -> Callable[[BaseException], None]:
    """Make handling fail, every time, for the mails whose subject is "poison"."""

    def arm(exc: BaseException) -> None:
        real = conversations.handle_customer

        def handle(session, app, inbound, parsed, *args, **kwargs):  # type: ignore[no-untyped-def]
            if parsed.subject == "poison":
                raise exc
            return real(session, app, inbound, parsed, *args, **kwargs)

        monkeypatch.setattr(pipeline, "handle_customer", handle)

    return arm


def test_a_redelivered_quarantined_mail_is_a_duplicate(
        app: App, failing_subject: Callable[[BaseException], None]) -> None:
    failing_subject(OverflowError("date value out of range"))
    raw = mail(subject="poison", message_id="<bad@example.org>")
    first = ingest(app, raw, "smtp", envelope_to=["support@kalra-plus.com"])
    assert first.outcome is Outcome.QUARANTINED
    again = ingest(app, raw, "smtp", envelope_to=["support@kalra-plus.com"])  # was TemporaryFailure: 451 forever
    assert again.outcome is Outcome.DUPLICATE, again.reason
    with db.session_scope(app.engine) as s:
        assert s.exec(select(func.count()).select_from(Quarantine)).one() == 1


def test_an_integrity_error_is_never_transient_and_costs_no_other_mail(
        app: App, failing_subject: Callable[[BaseException], None]) -> None:
    failing_subject(IntegrityError("INSERT …", {}, Exception("UNIQUE constraint failed: demo")))
    items = [Received(mail(message_id=f"<good-{i}@example.org>"), "import:box", mailbox_brand="kalra-plus")
             for i in range(3)]
    items.insert(1, Received(mail(subject="poison", message_id="<bad@example.org>"), "import:box",
                             mailbox_brand="kalra-plus"))
    try:
        results = ingest_batch(app, items)
    except TemporaryFailure as exc:  # the old code: the whole batch "retry later", forever
        pytest.fail(f"an integrity error was taken for a temporary failure: {exc}")
    assert [r.outcome for r in results] == [Outcome.CASE_OPENED, Outcome.QUARANTINED,
                                            Outcome.CASE_OPENED, Outcome.CASE_OPENED]
    assert "IntegrityError" in results[1].reason
    assert len(cases(app)) == 3
    again = ingest_batch(app, items)
    assert [r.outcome for r in again] == [Outcome.DUPLICATE] * 4


@pytest.mark.slow
@SQLITE_ONLY
def test_import_of_an_mbox_with_a_poison_mail_records_every_mail(app: App, tmp_path: Path) -> None:
    """`mailbot import` as a process: the poison mail among three good ones, imported twice."""
    box = mailbox.mbox(tmp_path / "backlog.mbox")
    for raw in (mail(message_id="<g1@example.org>"), poison_mail(), mail(message_id="<g2@example.org>"),
                mail(message_id="<g3@example.org>")):
        box.add(raw)
    box.flush()
    cfg = tmp_path / "config.toml"
    cfg.write_text(to_toml(config_data(tmp_path, str(app.engine.url))))
    for expected in ("4 case_opened", "4 duplicate"):
        p = run_cli(cfg, "import", "--brand", "kalra-plus", str(tmp_path / "backlog.mbox"))
        assert p.returncode == 0, p.stderr.decode()[-2000:]
        assert expected in p.stdout.decode()
    with db.session_scope(app.engine) as s:
        assert s.exec(select(func.count()).select_from(Inbound)).one() == 4


# --------------------------------------------------------------------------- 7. reflected phishing

PHISHING_NAME = "client, votre carte est bloquée. Appelez le +33 1 84 88 12 34"
PHISHING_SUBJECT = "Carte bloquée : vérifiez sur https://kalra-secure.example/verif ou au 01 84 88 12 34"
VICTIM = "victime@example.org"


def everything_of(m: EmailMessage) -> str:
    """What the recipient of `m` sees: its headers and both parts."""
    html = m.get_body(("html",))
    return "\n".join([*(f"{k}: {v}" for k, v in m.items()), text_of(m), html.get_content() if html else ""])


def test_a_forged_name_and_subject_are_not_echoed_to_the_victim(app: App) -> None:
    """A forged From whose display name was a phishing text with a phone number, and a
    link in the subject: the genuine bank acknowledgement carried both to the victim."""
    desk = Desk(app)
    desk.receive(mail(frm=f'"{PHISHING_NAME}" <{VICTIM}>', subject=PHISHING_SUBJECT))
    sent = desk.new_mail()
    ack = everything_of(only(to(sent, VICTIM)))
    for bait in ("+33", "84 88 12 34", "https", "kalra-secure", "bloquée. Appelez", "votre carte est"):
        assert bait not in ack, bait
    assert "Bonjour Madame, Monsieur" in ack and "Carte bloquée : vérifiez sur […] ou au […]" in ack
    staff = text_of(only(to(sent, AGENT)))  # staff read what was written: they investigate with it
    assert PHISHING_SUBJECT in staff and "+33 1 84 88 12 34" in staff


@pytest.mark.parametrize(("name", "greeting"), [
    ("Marie Dupont", "Marie Dupont"), ("Dupont, Marie", "Marie Dupont"),
    ("Jean-Pierre de La Fontaine", "Jean-Pierre de La Fontaine"), ("M. O'Neil", "M. O'Neil"),
    ("Éloïse Ménard", "Éloïse Ménard"), ("marie dupont", ""), ("Support 24/7", ""), ("www.evil.example", ""),
    ("Gagnez Un Iphone Sur Evil Point Com Maintenant", ""), ("client, votre carte est bloquée", ""),
])
def test_greeting_by_name_only_when_it_looks_like_a_name(name: str, greeting: str) -> None:
    from mailbot.mail.reflection import greeting_name

    assert greeting_name(name) == greeting


@pytest.mark.parametrize(("subject", "echoed"), [
    ("Virement non reçu", "Virement non reçu"),
    ("Re: [KP-2026-000001] prélèvement du 03.11.2026 de 1 250,00 €",
     "Re: [KP-2026-000001] prélèvement du 03.11.2026 de 1 250,00 €"),
    ("Commande 123456789012 non livrée", "Commande 123456789012 non livrée"),
    ("Appelez le 0184881234 ou le 01.84.88.12.34 ou +44 20 7946 0958", "Appelez le […] ou le […] ou […]"),
    ("Voir www.evil.example, kalra-secure.fr/login ou http://x.y/z", "Voir […], […] ou […]"),
    ("Écrivez à secours@kalra-secure.fr", "Écrivez à […]"),
    ("M.Le Roy, Mr.de la Tour", "M.Le Roy, Mr.de la Tour"),
])
def test_subjects_are_echoed_without_links_or_phone_numbers(subject: str, echoed: str) -> None:
    from mailbot.mail.reflection import echo_safe

    assert echo_safe(subject) == echoed


def test_acknowledgements_to_first_time_addresses_are_capped_per_hour_with_one_alert(
        make_app: Callable[..., App]) -> None:
    """A forged-From run makes the genuine brand write to anyone: past the hourly cap a new
    sender's case opens without an acknowledgement, the staff are told why, the supervisor
    gets one alert, then one digest an hour later; known senders are not held back."""
    app = make_app(limits={"first_contact_acks": 3})
    desk = Desk(app)
    desk.receive(mail(frm="Ancienne Cliente <known@example.org>"))
    desk.new_mail()
    for n in range(6):
        desk.receive(mail(frm=f"Personne {chr(65 + n)} <new{n}@example.org>", subject=f"Plainte {n}"),
                     rcpt="support@kalra-plus.com" if n % 2 else "info@divikeys.com")
    desk.receive(mail(frm="Ancienne Cliente <known@example.org>", subject="Autre chose",
                      body="Des frais de tenue de compte inconnus ce mois-ci."))
    sent = desk.new_mail()
    acked = {m["To"].addresses[0].addr_spec for m in sent if "Accusé" in m["Subject"]}
    assert acked == {"new0@example.org", "new1@example.org", "known@example.org"}, acked
    assert len(cases(app)) == 8  # every complaint is a case
    notes = [text_of(m) for m in sent if m["To"].addresses[0].addr_spec.startswith("agent@")]
    assert sum("plafond horaire des accusés de réception" in t for t in notes) == 4
    alerts = [m for m in sent if m["To"].addresses[0].addr_spec.startswith("supervisor@")]
    assert len(alerts) == 1 and "plafond des accusés de réception" in alerts[0]["Subject"]
    assert "plafond de 3 accusés de réception par heure" in text_of(alerts[0])

    desk.receive(mail(frm="Personne G <new6@example.org>"))  # still within the hour: no second alert
    assert not [m for m in desk.new_mail() if "Accusé" in m["Subject"] or "supervisor@" in str(m["To"])]
    app.clock.now += timedelta(minutes=61)  # type: ignore[attr-defined]
    desk.tick()
    digest = only([m for m in desk.new_mail() if "supervisor@" in str(m["To"])])
    assert "Résumé : 4 nouveaux expéditeurs sans accusé de réception" in digest["Subject"]
    listed = text_of(digest)
    assert all(f"new{n}@example.org" in listed for n in (3, 4, 5, 6)), listed
    desk.receive(mail(frm="Personne H <new7@example.org>"))  # a new hour: acknowledged again
    assert to(desk.new_mail(), "new7@example.org")
    desk.tick()
    assert not [m for m in desk.new_mail() if "supervisor@" in str(m["To"])]  # nothing more to report


# --------------------------------------------------------------------------- 15. tokens in relayed text

def test_no_agent_token_or_staff_address_reaches_the_customer(app: App) -> None:
    """The agent's client pasted the notification below the answer without quote markers:
    the quote stripper keeps such text, and its token and staff addresses went out with it."""
    desk = Desk(app)
    notif = desk.complaint()
    token_address = reply_to(notif)
    pasted = (f"Bonjour Marie,\nVotre virement est parti hier.\nPaul\n\n"
              f"De : mailbot <{token_address}>\nÀ : Paul <{AGENT}>\nCopie : {SUPERVISOR}\n"
              f"{text_of(notif)}\nJeton : {token_address.partition('+')[2].partition('@')[0]}\n")
    desk.reply(notif, pasted)
    (answer,) = to(desk.new_mail(), CUSTOMER)
    seen = everything_of(answer)
    assert "Votre virement est parti hier." in seen
    token = token_address.partition("+")[2].partition("@")[0]
    for secret in (token, token_address, AGENT, SUPERVISOR):
        assert secret not in seen, secret
    (record,) = [m for m in desk.messages() if m.direction == "out" and m.kind == "agent_reply"]
    assert token not in record.body_text and AGENT not in record.body_text  # the case's record of what went out


def test_the_staff_scrub_keeps_other_addresses() -> None:
    from mailbot.mail.reflection import without_staff

    staff = frozenset({"agent@kalra-plus.com"})
    text = ("Écrivez à support@kalra-plus.com ou support+c0123456789abcdef0123@kalra-plus.com, "
            "pas à Agent@Kalra-Plus.com ni support+a12-2550-0123456789abcdef0123@kalra-plus.com (a12-2550-0123456789abcdef0123).")
    assert without_staff(text, staff) == ("Écrivez à support@kalra-plus.com ou support+c0123456789abcdef0123@kalra-plus.com, "
                                          "pas à […] ni […] ([…]).")


# --------------------------------------------------------------------------- 12. customer on a staff address

def test_a_customer_writing_to_a_staff_token_address_lands_on_the_case_and_the_agent_is_told(app: App) -> None:
    """An agent copied the customer; the customer's reply-all reached the agent's token
    address: it got 250 and nothing was recorded. It is the customer's message now."""
    desk = Desk(app)
    notif = desk.complaint()
    staff_address = reply_to(notif)
    r = desk.receive(mail(frm=f"Marie Dupont <{CUSTOMER}>", to=staff_address, subject=f"Re: {notif['Subject']}",
                          body="Voici le relevé demandé : le virement apparaît bien au débit."), rcpt=staff_address)
    assert r.case_refs == (desk.case().ref,)
    (msg,) = [m for m in desk.messages("customer") if "relevé demandé" in m.body_text]
    assert msg.from_addr == CUSTOMER and msg.route_signal == "staff_address"
    sent = desk.new_mail()
    assert "relevé demandé" in text_of(only(to(sent, AGENT)))
    assert to(sent, SUPERVISOR) == [] and not desk.events("security")  # no false alarm
    # anyone else with that address is still refused as a forgery
    desk.receive(mail(frm="Mallory <mallory@evil.example>", to=staff_address, body="#close"), rcpt=staff_address)
    assert desk.events("security") and desk.case().status != "closed"


# --------------------------------------------------------------------------- 11. security alerts

def _forge(desk: Desk, token_address: str, n: int) -> None:
    desk.receive(mail(frm="Mallory <mallory@evil.example>", to=token_address, subject=f"Re: tentative {n}",
                      body=f"#close\nTentative numéro {n}."), rcpt=token_address)


def test_forged_agent_mail_makes_one_alert_then_a_digest_and_is_kept_in_the_history(app: App) -> None:
    """30 forged mails made 30 alerts, each saying the message was kept in the history,
    where only an event was."""
    desk = Desk(app)
    notif = desk.complaint()
    token_address = reply_to(notif)
    for n in range(30):
        _forge(desk, token_address, n)
    alerts = to(desk.new_mail(), SUPERVISOR)
    assert len(alerts) == 1 and "conservé dans l'historique" in text_of(alerts[0])
    kept = desk.messages("refused")
    assert [m.body_text.replace("\r\n", "\n").strip() for m in kept] == [f"#close\nTentative numéro {n}." for n in range(30)]
    assert all(m.from_addr == "mallory@evil.example" for m in kept)
    assert desk.case().status != "closed"
    desk.tick()
    assert to(desk.new_mail(), SUPERVISOR) == []  # the digest waits for the hour
    app.clock.now += timedelta(minutes=61)  # type: ignore[attr-defined]
    desk.tick()
    digest = only(to(desk.new_mail(), SUPERVISOR))
    assert "29 messages refusés" in digest["Subject"]
    listed = text_of(digest)
    lines = [ln for ln in listed.splitlines() if ln.startswith("- ")]
    assert len(lines) == 29 and all(desk.case().ref in ln and "mallory@evil.example" in ln for ln in lines), listed
    _forge(desk, token_address, 31)  # the digest just went: the next waits for the next digest
    assert to(desk.new_mail(), SUPERVISOR) == []
    app.clock.now += timedelta(minutes=61)  # type: ignore[attr-defined]
    desk.tick()
    assert "1 messages refusés" in only(to(desk.new_mail(), SUPERVISOR))["Subject"]
    app.clock.now += timedelta(minutes=61)  # type: ignore[attr-defined]
    _forge(desk, token_address, 32)  # a quiet hour later: an alert at once
    assert "message refusé sur une réclamation" in only(to(desk.new_mail(), SUPERVISOR))["Subject"]


def test_a_cross_brand_rejection_names_the_right_brands(app: App) -> None:
    desk = Desk(app)
    notif = desk.complaint()
    token_address = reply_to(notif)  # a kalra-plus case's token, issued to agent@kalra-plus.com
    # a divikeys agent uses it
    desk.receive(mail(frm="agent@divikeys.com", to=token_address, body="#close"), rcpt=token_address)
    # the right agent, but to the divikeys address (the token's plus-part on the other brand)
    elsewhere = "info+" + token_address.partition("+")[2].partition("@")[0] + "@divikeys.com"
    desk.receive(mail(frm=AGENT, to=elsewhere, body="#close"), rcpt=elsewhere)
    reasons = [e.data["reason"] for e in desk.events("security")]
    assert reasons == ["agent@divikeys.com is an agent of divikeys, not of kalra-plus",
                       f"a token of a kalra-plus case ({desk.case().ref}) sent to a divikeys address"], reasons
    assert [e.data["brand"] for e in desk.events("security")] == ["kalra-plus", "kalra-plus"]


# --------------------------------------------------------------------------- 13. automatic mail on no case

FORM_MAIL = ("Nouveau message du formulaire de contact\n\nNom : Camille Martin\nE-mail : camille@example.org\n"
             "Message : une opération non reconnue de 900 EUR a été débitée de mon compte le 2 décembre 2026, "
             "c'est une fraude.\n")


@pytest.mark.slow  # fresh processes: left out by `make test-fast`
def test_automatic_mail_on_no_case_is_kept_listed_and_flagged_when_it_reads_as_a_complaint(
        app: App, tmp_path: Path) -> None:
    """A form mailer's `Auto-Submitted: auto-generated` report of a 900 EUR fraud matched no
    case and vanished from every view."""
    desk = Desk(app)
    form = desk.receive(mail(frm="Formulaire <formulaire@site.example>", subject="Nouveau message du formulaire",
                             body=FORM_MAIL, Auto_Submitted="auto-generated"))
    away = desk.receive(mail(frm="Paul <paul@example.net>", subject="Absence du bureau",
                             body="Je suis absent jusqu'au 8 décembre.", Auto_Submitted="auto-replied"))
    assert form.outcome is Outcome.AUTOMATIC and away.outcome is Outcome.AUTOMATIC and cases(app) == []
    sent = desk.new_mail()
    flag = only(to(sent, AGENT))  # the team; nothing to the form mailer, nothing about the vacation notice
    assert len(sent) == 1 and "ressemble à une réclamation" in flag["Subject"]
    assert f"mailbot inbound show {form.inbound_id}" in text_of(flag) and "900 EUR" in text_of(flag)
    cfg = tmp_path / "config.toml"
    cfg.write_text(to_toml(config_data(tmp_path, str(app.engine.url))))
    listed = run_cli(cfg, "inbound", "list", "--automatic")
    assert listed.returncode == 0, listed.stderr.decode()
    out = listed.stdout.decode()
    assert f"#{form.inbound_id} " in out and f"#{away.inbound_id} " in out
    assert "Nouveau message du formulaire" in out and "matched no case; flagged to staff" in out
    shown = run_cli(cfg, "inbound", "show", str(form.inbound_id))
    assert shown.returncode == 0 and "900 EUR" in shown.stdout.decode()


def test_a_report_enclosing_another_mail_is_not_flagged_as_a_complaint(app: App) -> None:
    """A list server's loop alert quoting the original mail (Sisimai's neko ML), or a report
    carrying it as message/rfc822, is about that mail: kept and listed, never flagged."""
    from mailbot.ingest.received import listed

    desk = Desk(app)
    quoted = ("Duplicated Message-ID in <neko@example.co.jp>.\n\nOriginal mail as follows:\n\n"
              "   Return-Path: <owner-neko@example.co.jp>\n   Received: from mx.example.co.jp\n"
              "   Message-ID: <neko@example.co.jp>\n\n   " + FORM_MAIL)
    desk.receive(mail(frm="neko-admin@example.co.jp", subject="Loop Alert: Duplicated Message-ID (neko ML)",
                      body=quoted, X_MLServer="fml [fml 4.0]", Precedence="bulk"))
    form = desk.receive(mail(frm="Formulaire <formulaire@site.example>", subject="Nouveau message du formulaire",
                             body=FORM_MAIL, Auto_Submitted="auto-generated"))
    assert cases(app) == [] and len(listed(app, automatic=True)) == 2
    (flag,) = to(desk.new_mail(), AGENT)  # the form mailer's report only
    assert f"mailbot inbound show {form.inbound_id}" in text_of(flag)


def test_an_automatic_mail_on_a_case_is_not_listed_as_on_no_case(app: App) -> None:
    from mailbot.ingest.received import listed

    desk = Desk(app)
    desk.complaint()
    (ack,) = to(desk.inbox, CUSTOMER)
    reply = desk.receive(mail(frm=f"Marie <{CUSTOMER}>", subject=f"Réponse automatique : {ack['Subject']}",
                              body="Je suis absente.", Auto_Submitted="auto-replied", In_Reply_To=ack["Message-ID"]))
    assert reply.outcome is Outcome.AUTOMATIC and reply.case_refs
    assert [r.id for r in listed(app, automatic=True)] == []


def test_a_storm_of_automatic_complaints_flags_at_most_twenty_an_hour(app: App) -> None:
    from mailbot.cases.unmatched import FLAGS_PER_HOUR
    from mailbot.ingest.received import listed

    desk = Desk(app)
    for n in range(FLAGS_PER_HOUR + 5):
        desk.receive(mail(frm="Formulaire <formulaire@site.example>", subject=f"Formulaire {n}", body=FORM_MAIL,
                          Auto_Submitted="auto-generated"))
    assert len(to(desk.new_mail(), AGENT)) == FLAGS_PER_HOUR
    assert len(listed(app, automatic=True)) == FLAGS_PER_HOUR + 5  # every one kept and listed


def test_the_cap_on_first_time_addresses_holds_within_one_imap_batch(make_app: Callable[..., App]) -> None:
    """The batch path reads which senders we wrote to once for the whole batch, and counts
    what it queues itself."""
    app = make_app(limits={"first_contact_acks": 2})
    ingest(app, mail(frm="known@example.org", subject="Première", body="Frais inconnus."), "smtp")
    batch = [Received(mail(frm=f"new{n}@example.org", subject=f"Plainte {n}", body=f"Plainte n°{n}"), "imap:x",
                      mailbox_brand="kalra-plus") for n in range(4)]
    batch.append(Received(mail(frm="known@example.org", subject="Seconde", body="Un virement perdu."), "imap:x",
                          mailbox_brand="kalra-plus"))
    assert {r.outcome for r in ingest_batch(app, batch)} == {Outcome.CASE_OPENED}
    with db.session_scope(app.engine) as s:
        acked = sorted(s.exec(select(Outbox.to_addr).where(Outbox.kind == "acknowledgement")).all())
    assert acked == ["known@example.org", "known@example.org", "new0@example.org"], acked
