"""Files holding customer data are the daemon user's alone, whatever the umask (#27 item 10).

With umask 022 the database, its -wal/-shm and the Maildir files were 0644; the units did
not agree on UMask and StateDirectoryMode. mailbot/filemodes.py; docs/security.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mailbot import db
from mailbot.filemodes import private_sqlite
from mailbot.ops.install import install_units
from tests.conftest import ROOT, config_data
from tests.mails import mail
from tests.procs import StderrReader, free_port, to_toml, wait_until

UNITS = ROOT / "systemd"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _umask_022() -> None:
    os.umask(0o022)


@pytest.mark.slow  # processes: left out by `make test-fast`
def test_a_daemon_started_with_umask_022_makes_every_file_private(tmp_path: Path) -> None:
    """A real `mailbot run` (umask 022, as from a login shell): the database, its -wal and
    -shm while it runs, and the acknowledgement in the Maildir are 0600, their directories
    (var/, the Maildir's) 0700."""
    port = free_port()
    var = tmp_path / "var"
    data = config_data(tmp_path, db_url=f"sqlite:///{var}/mailbot.db", smtp={"port": port},
                       outbound={"transport": "maildir", "path": str(var / "sent")},
                       scheduler={"outbox_interval": 1})
    cfg = tmp_path / "config.toml"
    cfg.write_text(to_toml(data))
    proc = subprocess.Popen([sys.executable, "-m", "mailbot.cli", "--config", str(cfg), "run"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_umask_022,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    log = StderrReader(proc)
    try:
        wait_until(lambda: any(r.get("event") == "daemon.ready" for r in log.records()) or proc.poll() is not None,
                   timeout=60, what="the daemon's ready line")
        assert proc.poll() is None, log.join()
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
            c.sendmail("marie.dupont@example.org", ["support@kalra-plus.com"], mail())
        wait_until(lambda: list((var / "sent" / "new").glob("*")), timeout=60, what="the acknowledgement")
        live = {p.name: mode(p) for p in var.glob("mailbot.db*")}
        assert {"mailbot.db", "mailbot.db-wal", "mailbot.db-shm"} <= set(live), live
        assert set(live.values()) == {0o600}, {k: oct(v) for k, v in live.items()}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.join()
    files = [p for p in var.rglob("*") if p.is_file()]
    dirs = [var, *(p for p in var.rglob("*") if p.is_dir())]
    assert any(p.parent.name == "new" for p in files)
    assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in files if mode(p) != 0o600} == {}
    assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in dirs if mode(p) != 0o700} == {}


def test_a_database_readable_by_others_is_tightened_when_opened(tmp_path: Path) -> None:
    """A database an older mailbot (or a copy) left 0644: the next open makes it 0600, and
    SQLite gives its new -wal and -shm the file's mode."""
    path = tmp_path / "old.db"
    old = os.umask(0o022)
    try:
        engine = db.make_engine(f"sqlite:///{path}")
        with engine.connect() as c:
            c.exec_driver_sql("CREATE TABLE t (x)")
            c.commit()
        engine.dispose()
        os.chmod(path, 0o644)
        engine = db.make_engine(f"sqlite:///{path}")
        with engine.connect() as c:
            c.exec_driver_sql("INSERT INTO t VALUES (1)")
            c.commit()
            modes = {p.name: oct(mode(p)) for p in tmp_path.glob("old.db*")}
        engine.dispose()
    finally:
        os.umask(old)
    assert modes == {"old.db": "0o600", "old.db-wal": "0o600", "old.db-shm": "0o600"}


def test_a_new_database_directory_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        private_sqlite(tmp_path / "a" / "b" / "mailbot.db")
    finally:
        os.umask(old)
    assert [oct(mode(p)) for p in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "mailbot.db")] \
        == ["0o700", "0o700", "0o600"]


@pytest.mark.slow  # a fresh process: left out by `make test-fast`
def test_db_upgrade_run_by_hand_with_umask_022_makes_a_private_database(tmp_path: Path) -> None:
    """The documented `mb db upgrade` creates the database before any unit runs: with the
    admin's umask 022 it is still 0600."""
    data = config_data(tmp_path, db_url=f"sqlite:///{tmp_path}/state/mailbot.db")
    cfg = tmp_path / "config.toml"
    cfg.write_text(to_toml(data))
    done = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(cfg), "db", "upgrade"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, preexec_fn=_umask_022,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert oct(mode(tmp_path / "state" / "mailbot.db")) == "0o600"
    assert oct(mode(tmp_path / "state")) == "0o700"


def _settings(unit: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, value)
    return out


def test_every_unit_runs_as_the_dedicated_user_with_private_files() -> None:
    """Every service unit: User/Group mailbot (not root), UMask=0077, and the state directory
    0700 — the same in each, since systemd sets its mode at each start of any of them."""
    services = sorted(UNITS.glob("*.service"))
    assert {p.name for p in services} >= {"mailbot.service", "mailbot-tick.service", "mailbot-web@.service"}
    for unit in services:
        s = _settings(unit)
        assert s.get("User") == s.get("Group") == "mailbot", unit.name
        assert "DynamicUser" not in s, unit.name
        assert s.get("UMask") == "0077", unit.name
        assert s.get("StateDirectory") == "mailbot" and s.get("StateDirectoryMode") == "0700", unit.name


def test_the_documented_setup_makes_a_system_user_and_runs_every_command_as_it() -> None:
    """docs/operations.md: a system user without a shell; the state directory 0700 and
    owned by it; every mailbot command of the guide run through `mb` (sudo -u mailbot) or
    by Postfix's pipe as user=mailbot — never as root."""
    guide = (ROOT / "docs" / "operations.md").read_text()
    assert re.search(r"useradd --system [^\n]*--shell /usr/sbin/nologin mailbot", guide)
    assert "sudo install -d -m 0700 -o mailbot -g mailbot /var/lib/mailbot" in guide
    assert re.search(r"mb\(\) \{ sudo -u mailbot ", guide)
    assert "user=mailbot argv=/opt/mailbot/bin/mailbot" in guide
    blocks = [re.sub(r"mb\(\) \{ sudo -u mailbot .*?; \}", "", b, flags=re.S)  # the helper itself
              for b in re.findall(r"```sh\n(.*?)```", guide, re.S)]
    as_root = [line for b in blocks for line in b.splitlines()
               if re.search(r"(^|\s)(sudo\s+)?(/opt/mailbot/bin/)?mailbot\s+--config", line.strip())
               and "sudo -u mailbot" not in line and not line.strip().startswith("#")]
    assert as_root == []
    assert "0750" not in guide.split("## 4. Backups")[0]


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze not found (Debian: apt-get install systemd)")
    etc, units = tmp_path / "etc", tmp_path / "units"
    etc.mkdir()
    (etc / "env").write_text("")
    install_units(UNITS, units, Path(sys.prefix), etc)
    if not (Path(sys.prefix) / "bin" / "mailbot").exists():
        pytest.fail("no bin/mailbot in this interpreter's prefix (make setup)")
    done = subprocess.run([tool, "verify", *map(str, sorted(units.iterdir()))], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
