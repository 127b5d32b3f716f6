"""Read-only work reads in a read transaction: on SQLite it neither takes nor waits for
the write lock, so a metrics scrape, `stats`, the register, `cases list|show`, the
outbox and quarantine listings and the IMAP reconciliation never stall ingest, and
are not stalled by it."""

from __future__ import annotations

import io
import sqlite3
import time
from argparse import Namespace
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mailbot.app import App
from mailbot.channels.imap_check import _held, _outcomes
from mailbot.cli import case_commands
from mailbot.cli.reports import compute_stats, export_register
from mailbot.ingest import quarantine
from mailbot.ingest.pipeline import ingest
from mailbot.models import Inbound
from mailbot.ops.metrics import collect
from mailbot.outgoing.outbox import outbox_rows
from tests.conftest import Clock, make_config, open_app
from tests.mails import mail


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another process's writer in the middle of a transaction (as ingest is)."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.fixture
def busy_app(tmp_path: Path, clock: Clock) -> Iterator[App]:
    cfg = make_config(tmp_path, f"sqlite:///{tmp_path}/mailbot.db", database={"busy_timeout": 1.0})
    app = open_app(cfg, clock)
    ingest(app, mail(message_id="<ro-1@example.org>"), "test")
    ingest(app, b"not a mail at all", "test", envelope_to=["nobody@example.org"])
    yield app
    app.close()


def _cases(action: str, **extra: object) -> Callable[[App], object]:
    args = Namespace(action=action, json=True, status="open", brand=None, limit=50, mine=None, assignee=None,
                     overdue=False, due_today=False, sort="due", page=1, full=False, **extra)
    return lambda app: case_commands.dispatch(args, app)


def _register(app: App) -> str:
    out = io.StringIO()
    export_register(app, out)
    return out.getvalue()


READERS: dict[str, Callable[[App], object]] = {
    "metrics scrape": collect,
    "stats": compute_stats,
    "register export": lambda app: _register(app),
    "cases list": _cases("list"),
    "cases show": _cases("show", ref="KP-2026-000001"),
    "outbox list": outbox_rows,
    "quarantine list": quarantine.held,
    "quarantine show": lambda app: quarantine.held_mail(app, 1),
    "imap reconciliation": lambda app: _outcomes(app, Inbound.message_id, {"ro-1@example.org"}),
    "imap reconciliation, unfetchable mail": lambda app: _held(app, "support@x:993/INBOX", 1),
}


@pytest.mark.parametrize("name", READERS)
def test_read_only_work_goes_on_while_another_process_writes(busy_app: App, tmp_path: Path,
                                                             name: str) -> None:
    with write_lock_held(tmp_path / "mailbot.db"):
        started = time.monotonic()
        result = READERS[name](busy_app)
        took = time.monotonic() - started
    assert result is not None and result != []
    assert took < 0.8, f"{name} waited {took:.2f} s for the write lock"


def test_what_the_readers_read_is_the_database(busy_app: App, capsys: pytest.CaptureFixture[str]) -> None:
    with write_lock_held(Path(str(busy_app.engine.url.database))):
        assert collect(busy_app)["mailbot_cases_open"] == 1
        assert compute_stats(busy_app)["total"]["count"] == 1
        assert [r["kind"] for r in outbox_rows(busy_app)] == ["acknowledgement", "agent_notification"]
        assert [q.reason[:11] for q in quarantine.held(busy_app)] == ["unparseable"]
        assert "KP-2026-000001" in _register(busy_app)
        assert _cases("list")(busy_app) == 0
    assert "KP-2026-000001" in capsys.readouterr().out
