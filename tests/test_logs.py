"""Logs that tell an administrator what happened: one event name and level per outcome,
every sent mail (kind, case, recipient's domain, Message-ID; never the text), relay
errors with host and port, `--log-format text|json` and its default.

The daemon's own lines (ready, JSON under a pipe, nothing secret) are in test_ops.py.
"""

from __future__ import annotations

import email
import json
import logging
import os
import pty
import subprocess
import sys
from email.policy import default
from pathlib import Path

import pytest
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.cases.deliveries import dispatch
from mailbot.ingest.pipeline import ingest
from mailbot.models import Outbox
from tests.conftest import ROOT, config_data
from tests.mails import mail
from tests.procs import free_port, to_toml

SUPPORT = "support@kalra-plus.com"
BODY_WORDS = "Phrase-témoin-7f3a9"


def events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, logging.LogRecord]]:
    return [(r.event, r.levelno, r) for r in caplog.records if hasattr(r, "event")]  # type: ignore[attr-defined]


def last_event(caplog: pytest.LogCaptureFixture) -> tuple[str, int, logging.LogRecord]:
    found = events(caplog)
    assert found, "no event logged"
    caplog.clear()
    return found[-1]


def sent_mails(app: App) -> list[email.message.EmailMessage]:
    new = app.config.resolve_path(app.config.outbound.path) / "new"
    return [email.message_from_bytes(p.read_bytes(), policy=default)  # type: ignore[misc]
            for p in sorted(new.iterdir())]


def test_each_outcome_of_a_mail_has_its_own_event_and_level(app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailbot")
    complaint = mail(body=f"Mon virement n'est pas arrivé. {BODY_WORDS}", message_id="<c1@example.org>")
    ref = ingest(app, complaint, "smtp", envelope_to=[SUPPORT]).case_refs[0]
    event, level, record = last_event(caplog)
    assert (event, level) == ("mail.case_opened", logging.INFO)
    assert record.refs == [ref] and record.source == "smtp"  # type: ignore[attr-defined]

    # every mail sent is logged: kind, case, recipient's domain, Message-ID, never the text
    assert dispatch(app).sent == 2
    sent = [r for e, _, r in events(caplog) if e == "outbox.sent"]
    with db.session_scope(app.engine) as s:
        rows = {r.kind: r for r in s.exec(select(Outbox)).all()}
    assert sorted(r.kind for r in sent) == sorted(rows) == ["acknowledgement", "agent_notification"]
    for r in sent:
        row = rows[r.kind]  # type: ignore[attr-defined]
        assert r.case == ref and r.message_id == row.message_id and r.outbox == row.id  # type: ignore[attr-defined]
        assert r.to_domain == row.to_addr.rpartition("@")[2] and r.levelno == logging.INFO  # type: ignore[attr-defined]
        assert row.to_addr not in r.getMessage() and "marie.dupont" not in str(vars(r))
    caplog.clear()
    notification = next(m for m in sent_mails(app) if m["To"].addresses[0].addr_spec == "agent@kalra-plus.com")
    token_address = notification["Reply-To"].addresses[0].addr_spec

    def agent(body: str, frm: str = "Paul Agent <agent@kalra-plus.com>") -> tuple[str, int, logging.LogRecord]:
        raw = mail(frm=frm, to=token_address, subject=f"Re: {notification['Subject']}", body=body,
                   In_Reply_To=notification["Message-ID"])
        ingest(app, raw, "smtp", envelope_to=[token_address])
        return last_event(caplog)

    assert agent("#note\nClient connu.")[:2] == ("mail.agent_mail", logging.INFO)
    event, level, record = agent("#frobnicate\nBonjour.")
    assert (event, level) == ("mail.command_rejected", logging.WARNING) and "#frobnicate" in record.reason  # type: ignore[attr-defined]
    event, level, record = agent("#close", frm="Intrus <intrus@evil.example>")
    assert (event, level) == ("mail.forgery_refused", logging.WARNING)
    assert "not a configured agent" in record.reason and "intrus" not in record.reason  # type: ignore[attr-defined]
    assert record.refs == []  # type: ignore[attr-defined]

    ack = next(m for m in sent_mails(app) if m["To"].addresses[0].addr_spec == "marie.dupont@example.org")
    reply = mail(subject=f"Re: {ack['Subject']}", body="Voici le relevé.", In_Reply_To=ack["Message-ID"])
    ingest(app, reply, "imap:support", envelope_to=[SUPPORT])
    event, level, record = last_event(caplog)
    assert (event, level, record.source) == ("mail.customer_reply", logging.INFO, "imap:support")  # type: ignore[attr-defined]
    ingest(app, reply, "imap:support", envelope_to=[SUPPORT])
    assert last_event(caplog)[:2] == ("mail.duplicate", logging.INFO)
    ooo = mail(subject="Absence du bureau", body="Je suis absente.", Auto_Submitted="auto-replied",
               In_Reply_To=ack["Message-ID"])
    ingest(app, ooo, "smtp", envelope_to=[SUPPORT])
    assert last_event(caplog)[:2] == ("mail.automatic", logging.INFO)
    ingest(app, b"\x00\x01 not a mail " + BODY_WORDS.encode(), "pipe", envelope_to=[SUPPORT])
    event, level, record = last_event(caplog)
    assert (event, level) == ("mail.quarantined", logging.WARNING) and "unparseable" in record.reason  # type: ignore[attr-defined]
    assert not any(BODY_WORDS in r.getMessage() or BODY_WORDS in str(vars(r)) for r in caplog.records)


def test_relay_errors_name_the_relay_and_the_retry(make_app, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    port = free_port()  # nothing listens there
    app = make_app(outbound={"transport": "smtp", "host": "127.0.0.1", "port": port, "timeout": 2,
                             "max_attempts": 2, "backoff_seconds": 0})
    ingest(app, mail(), "smtp", envelope_to=[SUPPORT])
    caplog.set_level(logging.INFO, logger="mailbot")
    caplog.clear()
    dispatch(app)
    retries = [r for e, lvl, r in events(caplog) if e == "outbox.retry" and lvl == logging.WARNING]
    assert retries and all(r.via == f"relay 127.0.0.1:{port}" for r in retries)  # type: ignore[attr-defined]
    assert f"relay 127.0.0.1:{port}" in retries[0].getMessage() and "refused" in retries[0].getMessage().lower()
    caplog.clear()
    dispatch(app, now=app.now().replace(year=app.now().year + 1))
    failed = [r for e, lvl, r in events(caplog) if e == "outbox.failed"]
    assert failed and all(r.levelno == logging.ERROR and r.case for r in failed)  # type: ignore[attr-defined]
    with db.session_scope(app.engine) as s:
        rows = s.exec(select(Outbox)).all()
    assert rows and all((r.last_error or "").startswith(f"relay 127.0.0.1:{port}: ") for r in rows)


# -- --log-format -------------------------------------------------------------------------

def run_ingest(tmp_path: Path, *options: str, env: dict[str, str] | None = None, tty: bool = False
               ) -> list[str]:
    """`mailbot [options] ingest FILE` in a fresh interpreter; its stderr lines."""
    cfg = tmp_path / "config.toml"
    if not cfg.exists():
        cfg.write_text(to_toml(config_data(tmp_path)))
    raw = tmp_path / f"m{len(list(tmp_path.glob('m*.eml')))}.eml"
    raw.write_bytes(mail())
    base = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "INVOCATION_ID")}
    cmd = [sys.executable, "-m", "mailbot.cli", "--config", str(cfg), *options, "ingest", str(raw)]
    if not tty:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT, env={**base, **(env or {})})
        assert done.returncode == 0, done.stderr
        return done.stderr.splitlines()
    leader, follower = pty.openpty()  # stderr is a terminal, as for a person
    try:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=follower, timeout=60, cwd=ROOT,
                              env={**base, **(env or {})})
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0, out
    return out.decode().splitlines()


@pytest.mark.slow
def test_log_format_json_under_a_pipe_or_systemd_text_at_a_terminal(tmp_path: Path) -> None:
    piped = run_ingest(tmp_path)
    (line,) = [json.loads(x) for x in piped if "case_opened" in x]
    assert line["event"] == "mail.case_opened" and line["level"] == "info" and line["refs"]

    terminal = run_ingest(tmp_path, tty=True)
    (line_t,) = [x for x in terminal if "mail.case_opened" in x]
    assert line_t.split()[2] == "INFO" and "case opened: KP-2026-000002" in line_t
    with pytest.raises(json.JSONDecodeError):
        json.loads(line_t)

    under_systemd = run_ingest(tmp_path, tty=True, env={"JOURNAL_STREAM": "8:12345"})
    assert json.loads(next(x for x in under_systemd if "case_opened" in x))["event"] == "mail.case_opened"

    forced = run_ingest(tmp_path, "--log-format", "text")
    assert any("case opened: KP-2026-000004" in x and "[mail.case_opened" in x for x in forced)
