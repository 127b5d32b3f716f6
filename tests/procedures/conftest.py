"""The desk a scenario works at: the shipped config on a fresh database, a clock set by the
scenario, the mails that went out (read from the Maildir the outbound transport writes), the
letters to post, and two ways to run a `mailbot` command:

- `desk.fresh(...)`: a new `python -m mailbot.cli` process, its clock set to the scenario's
  time by libfaketime (`faketime`, a Debian package: nothing in mailbot knows about it);
- `desk.run(...)`: the same command's handler in this process, on an App whose clock is the
  scenario's.

Every step that changes something is a fresh process, as in production (issue 22: the
procedures are driven through fresh `mailbot` processes): each mail in (`mailbot ingest -r
ADDRESS`, as Postfix's pipe runs it, the customer's and the agent's alike), each `tick --now`
(as cron or the daemon's scheduler runs the jobs) and each `cases …`/`letters posted` action.
Reading (`cases show`, `register export`, `stats`, `letters list`) and sending what is queued
(the daemon's dispatcher) run in this process. A fresh process's clock starts at the
scenario's time and runs on (a second or so): times it records may be a few seconds past it.

Times in scenarios are written in the brand's local time with their offset.
"""

from __future__ import annotations

import email
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from email.utils import parseaddr
from itertools import takewhile
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import func, select

from mailbot import db
from mailbot.cases.deliveries import dispatch
from mailbot.cli import case_commands, reports
from mailbot.cli.main import _parser
from mailbot.config import load_config
from mailbot.models import Outbox
from mailbot.ops.jobs import run_all_jobs
from tests.conftest import ROOT, Clock, config_data, open_app
from tests.desk import is_daily_digest
from tests.mails import mail
from tests.procs import to_toml

FAKETIME = shutil.which("faketime")
_REF = re.compile(r"[A-Z]{2,}-\d{4}-\d{6}")
_READINGS = ("show", "list", "search", "attachment")


@dataclass
class Sent:
    """A mail as its reader gets it."""

    to: str
    subject: str
    text: str
    html: str
    msg: EmailMessage

    @property
    def reply_to(self) -> str:
        return str(self.msg["Reply-To"] or "")

    @property
    def message_id(self) -> str:
        return str(self.msg["Message-ID"])

    def __repr__(self) -> str:
        return f"<Sent to {self.to} {self.subject!r}>"


class Desk:
    def __init__(self, tmp_path: Path, **over: Any) -> None:
        self.tmp = tmp_path
        data = config_data(tmp_path, ingest={"workers": 0}, **over)
        self.config_path = tmp_path / "config.toml"
        self.config_path.write_text(to_toml(data))
        self.clock = Clock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
        self.app = open_app(load_config(self.config_path), self.clock)
        self.sent_dir = tmp_path / "sent"
        self._seen: set[str] = set()

    def close(self) -> None:
        self.app.close()

    # -- time -------------------------------------------------------------------------
    def at(self, iso: str) -> None:
        self.clock.now = datetime.fromisoformat(iso).astimezone(UTC)

    # -- mail in ----------------------------------------------------------------------
    def mail_in(self, **kw: Any) -> str:
        """A customer's mail received now, by a fresh `mailbot ingest`; returns the case reference."""
        kw.setdefault("date", self.clock.now)
        refs = self.ingest(mail(**kw), parseaddr(kw.get("to", "support@kalra-plus.com"))[1])
        assert refs
        return refs[0]

    def ingest(self, raw: bytes, to: str) -> list[str]:
        """`mailbot ingest -r TO` (a fresh process, the mail on its standard input, as Postfix's
        pipe runs it), then what is queued is sent; returns the case references it printed."""
        p = self.fresh("ingest", "-r", to, stdin=raw)
        outcome, _, rest = p.stdout.partition(":")
        assert outcome in ("case_opened", "followup", "automatic"), p.stdout
        self.dispatch()
        return list(takewhile(_REF.fullmatch, rest.split()))

    def dispatch(self) -> None:
        """What the daemon's dispatcher does within seconds: send the mail that is due, with
        what a fresh process queued as it ran on a few seconds past the scenario's time (the
        mail is sent at that moment, as the daemon would)."""
        with db.read_scope(self.app.engine) as s:
            latest = s.exec(select(func.max(Outbox.not_before)).where(Outbox.status == "pending")).one()
        at = self.clock.now
        if latest is not None:
            latest = latest if latest.tzinfo else latest.replace(tzinfo=UTC)
            if at < latest <= at + timedelta(minutes=2):
                at = latest
        dispatch(self.app, now=at)

    # -- commands ---------------------------------------------------------------------
    def run(self, *argv: str, rc: int = 0) -> str:
        """The command at the scenario's time: an action in a fresh process (then what it
        queued is sent), a reading by its handler in this process."""
        if argv[0] in ("cases", "letters") and argv[1] not in _READINGS:
            out = self.fresh(*argv, rc=rc).stdout
            self.dispatch()
            return out
        args = _parser().parse_args(["--config", str(self.config_path), *argv])
        out = io.StringIO()
        with redirect_stdout(out):
            if args.command == "cases":
                code = case_commands.dispatch(args, self.app)
                self.dispatch()
            elif args.command == "tick":
                if args.now:
                    self.clock.now = args.now
                code = 0
                print("\n".join(run_all_jobs(self.app)))
            elif args.command == "stats":
                code = reports.print_stats(self.app, args.json)
            elif args.command == "register":
                code = reports.cmd_export(self.app, args.format, args.out)
            else:
                from mailbot.cli import letter_commands

                assert args.command == "letters", f"run {args.command} with desk.fresh"
                code = letter_commands.dispatch(args, self.app)
        assert code == rc, f"mailbot {' '.join(argv)}: exit {code}, expected {rc}\n{out.getvalue()}"
        return out.getvalue()

    def fresh(self, *argv: str, rc: int = 0, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
        """`mailbot ARGV` as a new process whose clock starts at the scenario's time."""
        assert FAKETIME, "faketime (Debian package) is needed; make deps-system installs it"
        when = self.clock.now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        p = subprocess.run([FAKETIME, when, sys.executable, "-m", "mailbot.cli", "--config",
                            str(self.config_path), *argv], input=stdin, cwd=ROOT, capture_output=True,
                           timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), "TZ": "UTC"})
        out = subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(), p.stderr.decode())
        assert p.returncode == rc, f"mailbot {' '.join(argv)}: exit {p.returncode}, expected {rc}\n{out.stderr}"
        assert "Traceback" not in out.stderr, out.stderr
        return out

    def tick(self, iso: str) -> None:
        """`mailbot tick --now ISO` in a fresh process (every scheduled job, the dispatcher's included)."""
        self.at(iso)
        self.fresh("tick", "--now", self.clock.now.isoformat())
        self.dispatch()

    def show(self, ref: str) -> dict[str, Any]:
        return json.loads(self.run("cases", "show", ref, "--json"))

    def register(self) -> list[dict[str, str]]:
        import csv

        return list(csv.DictReader(io.StringIO(self.run("register", "export"))))

    # -- mail out ---------------------------------------------------------------------
    def all_mails(self) -> list[Sent]:
        found = []
        for sub in ("new", "cur"):
            d = self.sent_dir / sub
            for f in sorted(d.iterdir()) if d.is_dir() else ():
                found.append((f.name, f.read_bytes()))
        return [_sent(raw) for _name, raw in found]

    def new_mails(self) -> list[Sent]:
        """The mails sent since the last call, by Date; but the staff's daily digests
        (tests/test_digest.py follows them), which a tick at any hour may send."""
        out = []
        for sub in ("new", "cur"):
            d = self.sent_dir / sub
            for f in sorted(d.iterdir()) if d.is_dir() else ():
                if f.name not in self._seen:
                    self._seen.add(f.name)
                    sent = _sent(f.read_bytes())
                    if not is_daily_digest(sent.msg):
                        out.append(sent)
        return sorted(out, key=lambda m: (email.utils.parsedate_to_datetime(m.msg["Date"]), m.to))

    def digest_to(self, address: str) -> Sent:
        """The latest daily digest sent to `address`."""
        found = [m for m in self.all_mails() if m.to == address and is_daily_digest(m.msg)]
        assert found, f"no digest to {address}"
        return max(found, key=lambda m: email.utils.parsedate_to_datetime(m.msg["Date"]))

    def agent_reply(self, ref: str, text: str, agent: str, frm: str | None = None) -> None:
        """The agent answers by replying to the last notification of the case they got (`frm`:
        someone else sends that reply, e.g. the agent forwarded the notification)."""
        notes = [m for m in self.all_mails() if m.to == agent and f"[{ref}]" in m.subject and "+a" in m.reply_to]
        assert notes, f"no notification of {ref} to {agent}"
        last = notes[-1]
        refs = self.ingest(mail(frm=frm or agent, to=last.reply_to, subject=f"Re: {last.subject}", body=text,
                                In_Reply_To=last.message_id, date=self.clock.now), last.reply_to)
        assert frm is not None or refs == [ref], refs


def _sent(raw: bytes) -> Sent:
    msg = email.message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    return Sent(to=str(msg["To"].addresses[0].addr_spec), subject=str(msg["Subject"]),
                text=text.get_content().replace("\r\n", "\n") if text else "",
                html=html.get_content() if html else "", msg=msg)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    d = Desk(tmp_path)
    yield d
    d.close()


def only(mails: list[Sent], to: str) -> Sent:
    """The one mail to `to` among `mails`."""
    found = [m for m in mails if m.to == to]
    assert len(found) == 1, f"expected one mail to {to}, got {found} (all: {mails})"
    return found[0]


def minute(iso: str) -> str:
    """A register time to the minute ("2026-11-23T10:00+01:00"): what a fresh process
    records runs on a few seconds past the scenario's time. The register gives whole
    seconds (no fraction: a spreadsheet's reader has no use for microseconds)."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", iso), iso
    return iso[:16] + iso[19:]
