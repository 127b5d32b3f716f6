"""Every command of the command line, run as an administrator runs it: a fresh Python
process each time (`python -m mailbot.cli`), nothing imported or configured beforehand
by other tests. A command that works only after something else ran in the same process
(the ORM's mappers configured by an earlier query: `cases new --channel postal` crashed
with "'NoneType' object has no attribute 'supports_population'") fails here.

One walk over one database, each step reading what the previous ones left.
"""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, config_data
from tests.mails import mail
from tests.procs import to_toml

pytestmark = pytest.mark.slow  # processes, servers or corpora: left out by `make test-fast`

FINAL_DK = """Résumé : virement non reçu.
Étapes suivies : vérification auprès de notre partenaire de paiement.
Solution : les fonds ont été crédités.
"""


class Mailbot:
    """`mailbot --config CFG ARGS…` in a fresh interpreter; asserts the exit code."""

    def __init__(self, config: Path) -> None:
        self.config = config

    def __call__(self, *args: str, rc: int = 0, stdin: bytes = b"") -> str:
        p = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(self.config), *args],
                           input=stdin, cwd=ROOT, capture_output=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        err = p.stderr.decode("utf-8", "replace")
        assert p.returncode == rc, f"mailbot {' '.join(args)}: exit {p.returncode}, expected {rc}\n{err}"
        assert "Traceback" not in err, err
        return p.stdout.decode("utf-8")


@pytest.fixture
def mailbot(tmp_path: Path) -> Mailbot:
    cfg = tmp_path / "config.toml"
    cfg.write_text(to_toml(config_data(tmp_path)))
    return Mailbot(cfg)


def test_every_command_in_a_fresh_process(tmp_path: Path, mailbot: Mailbot) -> None:
    assert "database at head" in mailbot("db", "upgrade")
    assert "OK (2 brands" in mailbot("check-config")

    # A paper complaint, first thing in a fresh process (the crash of issue 22, item 1).
    ref = mailbot("cases", "new", "--brand", "divikeys", "--channel", "postal", "--received", "2026-12-04",
                  "--name", "Jeanne Martin", "--address", "3 rue de la Poste, 97150 Marigot",
                  "--summary", "Virement non reçu").strip()
    assert ref == "DK-2026-000001"
    detail = json.loads(mailbot("cases", "show", ref, "--json"))
    assert (detail["channel"], detail["customer"]["name"]) == ("postal", "Jeanne Martin")
    assert "DK-2026-000001-00001-acknowledgement.pdf" in mailbot("letters", "list")  # a letter, not a mail
    assert "posted on" in mailbot("letters", "posted", "1")

    # Mail in: by the pipe, and a backlog.
    assert "DK-2026-000002" in mailbot("ingest", "-", stdin=mail(to="info@divikeys.com"))
    box = mailbox.mbox(tmp_path / "backlog.mbox")
    box.add(mail(subject="Frais de tenue de compte"))
    box.close()
    assert "1 case" in mailbot("import", str(tmp_path / "backlog.mbox"))
    mailbot("ingest", "-", stdin=mail(to="nobody@elsewhere.example"), rc=65)

    listed = mailbot("cases", "list")
    assert "DK-2026-000002" in listed and "KP-2026-000001" in listed
    assert "received" in mailbot("cases", "show", "DK-2026-000002")

    # An agent's work on the mailed case.
    answer = tmp_path / "final.txt"
    answer.write_text(FINAL_DK)
    mailbot("cases", "assign", "DK-2026-000002", "agent@divikeys.com")
    mailbot("cases", "extend", "DK-2026-000002", "5", "analyse auprès de notre partenaire")
    mailbot("cases", "reply", "DK-2026-000002", "--file", str(answer), "--as", "agent@divikeys.com", "--final")
    mailbot("cases", "close", "KP-2026-000001", "--reason", "réglé par téléphone", "--as", "supervisor@kalra-plus.com")
    assert "closed" in mailbot("cases", "list", "--status", "closed")
    assert "1 case (status open" in mailbot("cases", "list", "--mine", "agent@divikeys.com")
    mailbot("cases", "list", "--status", "bogus", rc=2)
    proof = mail(to="info@divikeys.com", subject="Justificatif", attachments=(("releve.pdf", "application/pdf",
                                                                                 b"%PDF-1.4 releve"),))
    assert "DK-2026-000003" in mailbot("ingest", "-", stdin=proof)
    assert "attachment #1 releve.pdf" in mailbot("cases", "show", "DK-2026-000003")
    assert "written to" in mailbot("cases", "attachment", "DK-2026-000003", "1", "--out", str(tmp_path / "r.pdf"))
    assert (tmp_path / "r.pdf").read_bytes() == b"%PDF-1.4 releve"
    assert "DK-2026-000003" in mailbot("cases", "search", "justificatif")
    assert "reopened" in mailbot("cases", "reopen", "KP-2026-000001", "--as", "supervisor@kalra-plus.com")
    assert "reply queued" in mailbot("cases", "reply", "KP-2026-000001", "--as", "agent@kalra-plus.com",
                                     "--template", "interim")
    assert "are linked" in mailbot("cases", "link", "DK-2026-000001", "DK-2026-000002")
    assert "DK-2026-000003 merged into DK-2026-000002" in mailbot("cases", "merge", "DK-2026-000003", "DK-2026-000002")
    assert "was merged into DK-2026-000002: reopen DK-2026-000002" in _stderr_of(
        mailbot, "cases", "reopen", "DK-2026-000003", "--as", "supervisor@divikeys.com", rc=65)

    outbox = json.loads(mailbot("outbox", "list", "--json"))
    assert {"acknowledgement", "extension", "final_response"} <= {r["kind"] for r in outbox}
    assert "sent" in mailbot("outbox", "flush")
    assert "not a failed row" in _stderr_of(mailbot, "outbox", "retry", "1", rc=2)

    quarantined = mailbot("quarantine", "list")
    assert "#1" in quarantined
    assert "reason:" in mailbot("quarantine", "show", "1")
    mailbot("quarantine", "retry", "1", rc=65)  # still for nobody we serve

    assert json.loads(mailbot("stats", "--json"))["total"]["count"] == 4
    assert mailbot("register", "export").count("\n") == 5  # header and one line per case
    mailbot("imap", "check")
    assert "sla sweep" in mailbot("tick", "--now", "2027-01-15T12:00:00+00:00")


def _stderr_of(mailbot: Mailbot, *args: str, rc: int) -> str:
    p = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(mailbot.config), *args],
                       cwd=ROOT, capture_output=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == rc, p.stderr
    return p.stderr.decode()


def test_check_config_warns_of_an_smtp_turn_longer_than_the_idle_timeout(tmp_path: Path) -> None:
    """A warning, in a fresh process: the config works (exit 0), stderr names the key to lower."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(to_toml(config_data(tmp_path, smtp={"idle_timeout": 60})))
    p = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(cfg), "check-config"],
                       cwd=ROOT, capture_output=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 0, err
    assert "key smtp.data_wait" in err and "not under smtp.idle_timeout (60 s)" in err, err
    assert "Traceback" not in err
