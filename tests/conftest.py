"""Shared fixtures: a config and an App on a fresh database (SQLite, or PostgreSQL
in its own schema when the test is parametrised with `db_backend`)."""

from __future__ import annotations

import atexit
import copy
import os
import resource
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailbot import db
from mailbot.app import App
from mailbot.config import Config, parse_config
from tests.pg import throwaway_schema

pytest_plugins = ["tests.dovecot", "tests.imapserver"]

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = tomllib.loads((ROOT / "config.toml").read_text())
TEST_SECRET = "test-secret-0123456789"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_data(tmp_path: Path, db_url: str | None = None, **over: Any) -> dict[str, Any]:
    """The shipped config.toml, pointed at tmp_path, with overrides."""
    data = deep_merge(SHIPPED, {
        "templates_dir": str(ROOT / "templates"),
        "database": {"url": db_url or f"sqlite:///{tmp_path}/mailbot.db"},
        "outbound": {"transport": "maildir", "path": str(tmp_path / "sent")},
        "smtp": {"port": 0},
        "security": {"secret": TEST_SECRET},
    })
    return deep_merge(data, over)


def make_config(tmp_path: Path, db_url: str | None = None, **over: Any) -> Config:
    return parse_config(config_data(tmp_path, db_url, **over), str(tmp_path / "config.toml"))


class Clock:
    """A settable clock for tests (aware UTC)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def set(self, iso: str) -> None:
        self.now = datetime.fromisoformat(iso)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every test that touches the database runs on SQLite and on PostgreSQL
    (its own schema in the `test` database at 127.0.0.1:5432)."""
    yield from _db_url(request.param, tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """For the few tests that are about SQLite itself (locking, disk full)."""
    return f"sqlite:///{tmp_path}/mailbot.db"


def _db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/mailbot.db"
        return
    with throwaway_schema("t") as url:
        yield url


_MIGRATED: list[Path] = []  # the database migrated once in this process


def copy_migrated_sqlite(url: str) -> bool:
    """When `url` names a SQLite file that does not exist yet, make it a copy of a database
    migrated to head once per process (the same bytes `db upgrade` writes; the migrations
    have tests of their own, tests/test_migrations.py), instead of running every migration
    again for each test. True when copied: the App needs no upgrade."""
    path = url.removeprefix("sqlite:///")
    if path == url or "?" in path or Path(path).exists():
        return False
    if not _MIGRATED:
        folder = Path(tempfile.mkdtemp(prefix="mailbot-migrated-"))
        atexit.register(shutil.rmtree, folder, True)
        engine = db.make_engine(f"sqlite:///{folder / 'mailbot.db'}")
        db.upgrade(engine)
        engine.dispose()  # the last connection closed: SQLite writes the WAL back into the file
        _MIGRATED.append(folder / "mailbot.db")
    shutil.copyfile(_MIGRATED[0], path)
    os.chmod(path, 0o600)  # as mailbot makes it (mailbot.filemodes)
    return True


def open_app(config: Config, clock: Callable[[], datetime] | None = None) -> App:
    """App.open on a migrated database (a copy, see copy_migrated_sqlite, when it is new)."""
    return App.open(config, upgrade=not copy_migrated_sqlite(config.database_url()),
                    **({"clock": clock} if clock else {}))


@pytest.fixture
def make_app(tmp_path: Path, clock: Clock, db_url: str) -> Iterator[Callable[..., App]]:
    """make_app(**config_overrides) -> App on a fresh, migrated database."""
    apps: list[App] = []

    def factory(url: str | None = None, **over: Any) -> App:
        cfg = make_config(tmp_path, url or db_url, **over)
        app = open_app(cfg, clock)
        apps.append(app)
        return app

    yield factory
    for a in apps:
        a.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()


# Tests that need a server beside the interpreter: a real Dovecot, Postfix or PostgreSQL
# (the `servers` marker, set here from what each test uses; `make test-fast` leaves them out).
_SERVER_FIXTURES = {"dovecot", "dovecot_fresh", "dovecot_user", "dovecot_tls"}
_SERVER_MODULES = {"test_postfix", "test_scaleout", "test_chaos", "test_faults", "test_dovecot_fixture",
                   "test_imap"}
# Tests that start processes are `slow` (left out by `make test-fast`): those using a fixture
# that starts `mailbot run`, and the scenarios of tests/procedures (a fresh process at each step).
_PROCESS_FIXTURES = {"daemon"}
_PROCESS_PACKAGES = {"procedures"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_pg = callspec is not None and callspec.params.get("db_url") == "postgresql"
        fixtures = set(getattr(item, "fixturenames", ()))
        if on_pg or _SERVER_FIXTURES & fixtures \
                or item.module.__name__.rpartition(".")[2] in _SERVER_MODULES:  # type: ignore[attr-defined]
            item.add_marker(pytest.mark.servers)
        if _PROCESS_FIXTURES & fixtures or item.path.parent.name in _PROCESS_PACKAGES:
            item.add_marker(pytest.mark.slow)


# `make test-fast` (MAILBOT_TEST_FAST=1) is the inner loop, under a minute: there a test that
# spends more than FAST_CPU_BUDGET seconds of CPU, with the processes it waited for, fails
# and asks for the `slow` marker (processes, corpora, generated runs, PDFs).
FAST_CPU_BUDGET = 3.0
_CPU_AT_SETUP = pytest.StashKey[float]()


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    item.stash[_CPU_AT_SETUP] = _cpu_seconds()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With MAILBOT_NO_SKIPS=1 (set by .ci/run) a skipped test fails: CI installs Dovecot
    and Postfix, runs as root and reaches PostgreSQL, so every test must run there. With
    MAILBOT_TEST_FAST=1 (`make test-fast`) a test over FAST_CPU_BUDGET fails at its teardown."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("MAILBOT_NO_SKIPS") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but MAILBOT_NO_SKIPS=1 requires every test to run: {report.longrepr}"
    if os.environ.get("MAILBOT_TEST_FAST") == "1" and call.when == "teardown" and report.passed \
            and _CPU_AT_SETUP in item.stash:
        spent = _cpu_seconds() - item.stash[_CPU_AT_SETUP]
        if spent > FAST_CPU_BUDGET:
            report.outcome = "failed"
            report.longrepr = (f"{spent:.1f} s of CPU (its processes included) in `make test-fast`, whose "
                               f"tests take {FAST_CPU_BUDGET} s at most: mark it @pytest.mark.slow")


@pytest.fixture(autouse=True)
def _umask_of_the_test_process() -> Iterator[None]:
    """`mailbot.cli.main.main` sets the process umask to 077, as a `mailbot` process should;
    called in this process by a test, it would leave later fixtures' files (Dovecot's
    configuration and password files, read by Dovecot's own users) unreadable to them."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)
