"""A real Postfix in front of mailbot, configured as docs/operations.md §2 a) and b)
tell the admin (its main.cf lines are read from that file, its tables are what
`mailbot postfix-maps` prints): mail is relayed to the listener, an unknown address
of a brand domain is refused at RCPT time (no backscatter), a 451 keeps the mail in
Postfix's queue until the database is back, `+token` replies reach their case, LMTP
answers per recipient. Needs the Debian package postfix (`make deps-system`)."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.models import Case, Inbound, Message
from tests.conftest import ROOT
from tests.mails import mail
from tests.postfix import Postfix, documented_blocks
from tests.test_smtp import count, listening

pytestmark = pytest.mark.slow  # processes, servers or corpora: left out by `make test-fast`

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
BRANDS = ("support@kalra-plus.com", "info@divikeys.com")


@contextmanager
def postfix_to(port: int, transport: str = "smtp:[127.0.0.1]:{port}") -> Iterator[Postfix]:
    """Postfix with the transport map of docs/operations.md, pointing at `port`."""
    with Postfix({addr: transport.format(port=port) for addr in BRANDS}) as p:
        yield p


@SQLITE_ONLY
def test_postfix_relays_to_the_listener_and_a_token_reply_reaches_its_case(app: App) -> None:
    with listening(app) as port, postfix_to(port) as p:
        p.send("marie.dupont@example.org", ["support@kalra-plus.com"],
               mail(message_id="<first@example.org>"))
        p.wait(lambda: count(app, Case) == 1, "the case")
        with db.session_scope(app.engine) as s:
            case = s.exec(select(Case)).one()
            token, ref = case.reply_token, case.ref
        # The customer answers the acknowledgement: Reply-To is support+<token>@, which
        # Postfix's transport map matches through `recipient_delimiter = +`.
        p.send("marie.dupont@example.org", [f"support+{token}@kalra-plus.com"],
               mail(subject="Re: votre réclamation", message_id="<second@example.org>",
                    body="Voici le relevé demandé."))
        p.wait(lambda: count(app, Inbound) == 2, "the reply")
        p.wait_queue_empty()
        assert p.log().count("status=sent (250") == 2
    assert count(app, Case) == 1  # the reply is a follow-up, not a new case
    with db.session_scope(app.engine) as s:
        msgs = s.exec(select(Message).where(Message.direction == "in")).all()
        assert {m.message_id for m in msgs} == {"<first@example.org>", "<second@example.org>"}
        assert {m.case_id for m in msgs} == {s.exec(select(Case.id).where(Case.ref == ref)).one()}


@SQLITE_ONLY
def test_postfix_keeps_the_mail_while_the_database_is_down_then_delivers_it_once(app: App) -> None:
    good_engine = app.engine
    with listening(app) as port, postfix_to(port) as p:
        app.engine = db.make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
        try:
            p.send("marie.dupont@example.org", ["support@kalra-plus.com"],
                   mail(message_id="<during-outage@example.org>"))
            p.wait(lambda: "451 4.3.0" in p.log(), "the 451 in the log")
            p.wait(lambda: [q["queue_name"] for q in p.queue()] == ["deferred"], "the mail in the deferred queue")
            queued = p.queue()
            assert "451 4.3.0" in queued[0]["recipients"][0]["delay_reason"]
        finally:
            app.engine = good_engine
        assert count(app, Inbound) == 0  # nothing half recorded
        p.flush()  # (Postfix retries by itself too: maximal_backoff_time is 2 s here)
        p.wait_queue_empty()
        assert p.log().count("status=sent (250") == 1
    assert count(app, Inbound) == 1 and count(app, Case) == 1


@SQLITE_ONLY
def test_postfix_over_lmtp_delivers_one_mail_to_two_brands(make_app: Callable[..., App]) -> None:
    app = make_app(smtp={"lmtp": True, "port": 0})
    with listening(app) as port, postfix_to(port, "lmtp:inet:127.0.0.1:{port}") as p:
        p.send("marie.dupont@example.org", list(BRANDS),
               mail(to=", ".join(BRANDS), message_id="<both@example.org>"))
        p.wait(lambda: count(app, Case) == 2, "a case per brand")
        p.wait_queue_empty()
        assert p.log().count("status=sent (250") == 2  # LMTP: one answer per recipient
    with db.session_scope(app.engine) as s:
        assert sorted(s.exec(select(Case.brand)).all()) == ["divikeys", "kalra-plus"]
    assert count(app, Inbound) == 1  # one mail, recorded once, a case per brand


def test_the_documented_tables_are_what_postfix_maps_prints(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text((ROOT / "config.toml").read_text().replace(
        'templates_dir = "templates"', f"templates_dir = {json.dumps(str(ROOT / 'templates'))}"))
    blocks = documented_blocks()

    def maps(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(config), "postfix-maps", *args],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert maps("transport") == blocks["/etc/postfix/mailbot_transport"]
    assert maps("recipients") == blocks["/etc/postfix/mailbot_recipients"]
    assert f"relay_domains = {maps('domains').strip()}\n" in blocks["/etc/postfix/main.cf"]
    assert "relay_recipient_maps = hash:/etc/postfix/mailbot_recipients" in blocks["/etc/postfix/main.cf"]


@SQLITE_ONLY
def test_postfix_refuses_unknown_addresses_of_the_brand_domains_at_rcpt_time(app: App) -> None:
    """No backscatter: Postfix answers 550 itself, queues nothing, bounces nothing; mailbot sees
    nothing. The brand addresses and their +token forms still pass. The rest of the brand
    domains is relayed to mailbot too (a domain-wide route, the case where backscatter
    happens); without relay_recipient_maps the same mail is accepted, refused by mailbot
    and bounced to the forged sender, which is what the documented line prevents."""
    with listening(app) as port, Postfix({a: f"smtp:[127.0.0.1]:{port}" for a in BRANDS},
                                         relay_transport=f"smtp:[127.0.0.1]:{port}") as p:
        for unknown in ("nobody@kalra-plus.com", "suport@divikeys.com"):
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                p.send("forged@victim.example", [unknown], mail(to=unknown))
            code, text = refused.value.recipients[unknown]
            assert code == 550 and b"User unknown in relay recipient table" in text, text
        assert p.queue() == [] and count(app, Inbound) == 0
        p.send("marie.dupont@example.org", ["support+sometoken@kalra-plus.com", "info@divikeys.com"],
               mail(message_id="<allowed@example.org>"))
        p.wait(lambda: count(app, Inbound) == 1, "the mail to the brand addresses")
        p.wait_queue_empty()
        assert "status=bounced" not in p.log()

        subprocess.run(["postconf", "-c", str(p.dir), "-X", "relay_recipient_maps"], check=True, timeout=30)
        p.postfix("reload")

        def accepted() -> bool:
            try:
                p.send("forged@victim.example", ["nobody@kalra-plus.com"], mail(to="nobody@kalra-plus.com"))
            except smtplib.SMTPRecipientsRefused:
                return False  # an smtpd started before the reload, still with the old maps: nothing queued
            return True

        p.wait(accepted, "the reloaded Postfix to accept the unknown address")
        p.wait(lambda: "status=bounced" in p.log(), "the bounce to the forged sender")
        bounced = [line for line in p.log().splitlines() if "to=<nobody@kalra-plus.com>" in line and "status=bounced" in line]
        assert len(bounced) == 1 and "550 5.1.1" in bounced[0], bounced  # mailbot's refusal, bounced by Postfix
        assert count(app, Inbound) == 1
