"""The production install, as docs/operations.md §1 tells an admin to do it: `make install`
into a prefix (here temporary directories), then the installed `mailbot` — not this
checkout — runs behind a private Postfix configured as §2 a) says.

One install for the module; every test below reads what it left. The dependencies come from
the wheels `make setup` fetched for this checkout's own virtualenv (.venv/wheels: the same
files, fetched once in a CI run), with `--no-index`: pip still makes a new virtualenv, builds
mailbot from the checkout and resolves and installs every runtime dependency, and a
dependency missing from pyproject.toml still fails the tests below. Without that folder (a
virtualenv made otherwise) pip asks the package index, as an admin's install does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import ROOT
from tests.postfix import Postfix
from tests.procs import StderrReader, free_port, wait_until
from tests.test_ops import Sink

pytestmark = pytest.mark.slow  # builds wheels, installs, runs Postfix: left out by `make test-fast`

TEST_TOOLS = ("pytest", "hypothesis", "ruff")


@dataclass
class Installed:
    opt: Path
    etc: Path
    units: Path
    state: Path
    output: str

    @property
    def mailbot(self) -> Path:
        return self.opt / "bin" / "mailbot"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The installed mailbot on the installed config, as the units run it: no checkout on
        the path, no secret in the environment (it is in ETC/secret)."""
        return subprocess.run([str(self.mailbot), "--config", str(self.etc / "config.toml"), *args],
                              capture_output=True, text=True, timeout=timeout, cwd=self.state, env=clean_env())


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "MAILBOT_SECRET", "MAILBOT_WEB_SECRET", "VIRTUAL_ENV", "MAILBOT_CONFIG")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    dirs = {name: root / name for name in ("opt", "etc", "units", "state")}
    dirs["state"].mkdir()
    wheels = Path(sys.prefix) / "wheels"
    offline = [f"PIP_ARGS=--no-index --find-links {wheels}"] if wheels.is_dir() else []
    done = subprocess.run(
        ["make", "-C", str(ROOT), "install", f"PREFIX={dirs['opt']}", f"ETCDIR={dirs['etc']}",
         f"UNITDIR={dirs['units']}", f"STATEDIR={dirs['state']}", *offline],
        capture_output=True, text=True, timeout=900, env=clean_env())
    assert done.returncode == 0, done.stdout + done.stderr
    return Installed(**dirs, output=done.stdout + done.stderr)


def test_make_install_puts_mailbot_alone_into_the_prefix(installed: Installed) -> None:
    version = subprocess.run([str(installed.mailbot), "--version"], capture_output=True, text=True, timeout=60,
                             env=clean_env())
    shipped = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert version.returncode == 0 and shipped and version.stdout.strip() == f"mailbot {shipped.group(1)}"
    python = installed.opt / "bin" / "python"
    where = subprocess.run([str(python), "-c", "import mailbot; print(mailbot.__file__)"], capture_output=True,
                           text=True, timeout=60, env=clean_env(), cwd=installed.state)
    assert where.stdout.startswith(str(installed.opt)), where  # the installed copy, not this checkout
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            timeout=120, env=clean_env())
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "mailbot" in names and not names & set(TEST_TOOLS), names & set(TEST_TOOLS)


def test_the_secrets_are_made_once_and_readable_by_their_owner_and_group_only(installed: Installed) -> None:
    for name in ("secret", "web-secret"):
        path = installed.etc / name
        assert path.stat().st_mode & 0o777 in (0o600, 0o640)  # 0640 with a group `mailbot`
        assert re.fullmatch(r"[0-9a-f]{64}\n", path.read_text())
    assert installed.etc.stat().st_mode & 0o007 == 0  # nothing for other users
    assert (installed.etc / "config.toml").stat().st_mode & 0o007 == 0


def test_installing_again_keeps_what_the_admin_edited(installed: Installed) -> None:
    config = installed.etc / "config.toml"
    edited = config.read_text().replace('name = "Divikeys"', 'name = "Divikeys SAS"')
    config.write_text(edited)
    secret = (installed.etc / "secret").read_text()
    (installed.units / "mailbot.service").write_text("stale")
    again = subprocess.run([str(installed.opt / "bin" / "python"), "-m", "mailbot.ops.install", "--source", str(ROOT),
                            "--prefix", str(installed.opt), "--etc", str(installed.etc), "--units",
                            str(installed.units), "--state", str(installed.state)],
                           capture_output=True, text=True, timeout=120, env=clean_env())
    assert again.returncode == 0, again.stderr
    assert config.read_text() == edited and (installed.etc / "secret").read_text() == secret
    assert f"kept {config}" in again.stdout
    assert "ExecStart=" in (installed.units / "mailbot.service").read_text()  # the release's units


def test_the_installed_units_name_the_prefix_and_pass_systemd_analyze(installed: Installed) -> None:
    units = ["mailbot.service", "mailbot-tick.service", "mailbot-tick.timer"]
    for name in units:
        text = (installed.units / name).read_text()
        assert "/opt/mailbot" not in text and "/etc/mailbot/" not in text, name
    service = (installed.units / "mailbot.service").read_text()
    assert f"ExecStart={installed.mailbot} --config {installed.etc}/config.toml run" in service
    assert f"EnvironmentFile={installed.etc}/env" in service
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze not found (Debian: apt-get install systemd)"
    done = subprocess.run([tool, "verify", *(str(installed.units / n) for n in units)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.fixture
def relay() -> Iterator[tuple[int, Sink]]:
    """The outgoing relay the installed config names (Postfix on port 25 in production)."""
    sink, port = Sink(), free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield port, sink
    finally:
        ctl.stop()


def test_the_installed_mailbot_runs_behind_postfix_as_documented(installed: Installed,
                                                                 relay: tuple[int, Sink]) -> None:
    """§1: edit the config (here: free ports), check-config, db upgrade, run; §2 a): Postfix
    relays the brand addresses to it and refuses the others."""
    relay_port, sink = relay
    smtp_port = free_port()
    config = installed.etc / "config.toml"
    text = config.read_text()
    assert f'url = "sqlite:///{installed.state}/mailbot.db"' in text and 'transport = "smtp"' in text
    assert f'socket = "{installed.state}/mailbot.lmtp"' in text  # the pipe's socket, where the daemon may write
    text = text.replace("port = 2525", f"port = {smtp_port}", 1).replace("port = 25\n", f"port = {relay_port}\n", 1)
    config.write_text(text.replace("port = 9925", "port = 0", 1))
    check = installed.run("check-config")
    assert check.returncode == 0 and "OK" in check.stdout, check.stderr
    assert installed.run("db", "upgrade").returncode == 0
    maps = {table: installed.run("postfix-maps", table).stdout for table in ("transport", "recipients")}
    transport = dict(line.split() for line in maps["transport"].splitlines())
    assert set(transport.values()) == {f"smtp:[127.0.0.1]:{smtp_port}"}

    daemon = subprocess.Popen([str(installed.mailbot), "--config", str(config), "run"], cwd=installed.state,
                              env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = StderrReader(daemon)
    try:
        wait_until(lambda: any(r.get("event") == "daemon.ready" for r in log.records()) or daemon.poll() is not None,
                   timeout=60, what="the installed daemon's ready line")
        assert daemon.poll() is None, log.join()
        (ready,) = [r for r in log.records() if r.get("event") == "daemon.ready"]
        assert f"pipe {installed.state}/mailbot.lmtp" in ready["listeners"]
        with Postfix(transport, recipients=[line.split()[0] for line in maps["recipients"].splitlines()]) as p:
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                p.send("forged@victim.example", ["nobody@kalra-plus.com"], b"Subject: x\r\n\r\nx\r\n")
            p.send("marie.dupont@example.org", ["support@kalra-plus.com"],
                   b"From: Marie Dupont <marie.dupont@example.org>\r\nTo: support@kalra-plus.com\r\n"
                   b"Subject: Virement non recu\r\nMessage-ID: <installed-1@example.org>\r\n\r\n"
                   b"Mon virement de 1 250,00 EUR du 3 novembre n'est pas arrive.\r\n")
            p.wait(lambda: any(r.get("event") == "mail.case_opened" for r in log.records()), "the case")
            p.wait_queue_empty()
        wait_until(lambda: any(e.rcpt_tos == ["marie.dupont@example.org"] for e in sink.received), timeout=60,
                   what="the acknowledgement through the relay")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, log.join()
    listed = installed.run("cases", "list", "--json")
    assert listed.returncode == 0 and [c["ref"] for c in json.loads(listed.stdout)] == ["KP-2026-000001"]


def test_a_wheel_of_mailbot_alone_builds(tmp_path: Path) -> None:
    import zipfile

    done = subprocess.run([os.environ.get("PYTHON", "python3"), "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600, env=clean_env())
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("mailbot-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    package = {str(p.relative_to(ROOT)) for p in (ROOT / "mailbot").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert package <= set(names), sorted(package - set(names))  # every file: templates, CSS, migrations
    assert not any(n.startswith("tests/") for n in names)
    metadata = next(n for n in names if n.endswith("METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    assert all("extra ==" in line for line in requires if any(t in line for t in TEST_TOOLS)), requires
