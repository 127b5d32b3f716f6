"""Retention: `retention_years` after a case is closed, the customer's words are erased
from the database file itself (raw mail, attachments, messages, the mails we sent),
not only from the columns the commands show; the register line stays."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.cases.deliveries import dispatch
from mailbot.cases.digest import send_digests
from mailbot.cli.reports import export_register
from mailbot.ingest.pipeline import ingest
from mailbot.models import Case, Event
from tests.conftest import Clock, config_data, make_config
from tests.mails import mail
from tests.procs import to_toml

pytestmark = pytest.mark.slow  # processes, servers or corpora: left out by `make test-fast`

WORDS = b"Zorglub-quartz-4242 my savings vanished"
NAME = "Hortense Zylberstein"
ATTACHED = b"%PDF-1.4 releve-secret-7788 " + bytes(range(256))


def _files(db_path: Path) -> bytes:
    """Every byte SQLite keeps for the database: the file, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in (db_path, db_path.with_name(db_path.name + "-wal"))
                    if p.exists())


def _found(data: bytes) -> list[str]:
    needles = {"words": WORDS, "name": NAME.encode(), "attachment": b"releve-secret-7788",
               "attachment in the raw mail": base64.b64encode(ATTACHED)[:40]}
    return [what for what, needle in needles.items() if needle in data]


def test_the_purge_leaves_no_customer_word_in_the_database_file(tmp_path: Path, clock: Clock) -> None:
    db_path = tmp_path / "mailbot.db"
    config = tmp_path / "config.toml"
    config.write_text(to_toml(config_data(tmp_path, f"sqlite:///{db_path}")))
    app = App.open(make_config(tmp_path, f"sqlite:///{db_path}"), upgrade=True, clock=clock)
    ingest(app, mail(frm=f"{NAME} <hortense@example.org>", body=WORDS.decode() + "\n",
                     attachments=(("releve.pdf", "application/pdf", ATTACHED),)), "smtp")
    ingest(app, mail(frm="Other Customer <other@example.org>", body="Autre réclamation, ouverte.\n"), "smtp")
    dispatch(app)  # the acknowledgement and the agent notification quote the customer
    clock.set("2026-11-24T08:00:00+00:00")  # the next morning's digests name the customer
    assert send_digests(app) == 2
    dispatch(app)
    with db.session_scope(app.engine) as s:
        s.exec(update(Case).where(Case.ref == "KP-2026-000001").values(  # type: ignore[call-overload]
            status="closed", closed_at=clock.now))
    app.close()
    assert set(_found(_files(db_path))) == {"words", "name", "attachment", "attachment in the raw mail"}

    years_later = (clock.now + timedelta(days=365 * 5 + 2)).isoformat()
    out = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(config), "tick", "--now",
                          years_later], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "retention: 1 purged" in out.stdout

    assert _found(_files(db_path)) == []
    app = App.open(make_config(tmp_path, f"sqlite:///{db_path}"), clock=clock)
    register = io.StringIO()
    export_register(app, register)
    assert "KP-2026-000001" in register.getvalue() and "KP-2026-000002" in register.getvalue()
    with db.read_scope(app.engine) as s:
        other = s.exec(select(Case).where(Case.ref == "KP-2026-000002")).one()
        assert other.customer_email == "other@example.org" and other.purged_at is None
        purged = s.exec(select(Case).where(Case.ref == "KP-2026-000001")).one()
        events = s.exec(select(Event).where(Event.case_id == purged.id, Event.type == "purged")).all()
        assert purged.purged_at is not None and len(events) == 1
    app.close()
