"""Operations: systemd units, /healthz and /metrics, sd_notify, JSON logs, SIGHUP.

The daemon runs as a real process (tests/procs.start_daemon) wherever the
behaviour is about the process: readiness, watchdog, signals, what it logs.
"""

from __future__ import annotations

import email
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.policy import default
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import update

from mailbot import db
from mailbot.app import App
from mailbot.ingest.pipeline import ingest
from mailbot.models import Case
from mailbot.ops import jobs
from mailbot.ops.http_listener import start_http
from mailbot.ops.metrics import collect
from tests.conftest import ROOT, Clock, make_config
from tests.mails import mail
from tests.procs import StderrReader, free_port, start_daemon, to_toml, wait_until

pytestmark = pytest.mark.slow  # processes, servers or corpora: left out by `make test-fast`

SUPPORT = "support@kalra-plus.com"
UNITS = ("mailbot.service", "mailbot-tick.service", "mailbot-tick.timer", "mailbot-web@.service")
INSTALLED_BINARY = "/opt/mailbot/bin/mailbot"


def send(port: int, raw: bytes, sender: str = "marie.dupont@example.org") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        assert c.sendmail(sender, [SUPPORT], raw) == {}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], int, StderrReader]]]:
    """daemon(**config_overrides) -> (process, smtp port, stderr reader); stopped afterwards."""
    procs: list[subprocess.Popen[bytes]] = []

    def factory(**over: object) -> tuple[subprocess.Popen[bytes], int, StderrReader]:
        port = free_port()
        proc = start_daemon(tmp_path, port, **over)
        procs.append(proc)
        return proc, port, StderrReader(proc)

    yield factory
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


# ---------------------------------------------------------------- systemd units
def unit_text(name: str) -> str:
    return (ROOT / "systemd" / name).read_text()


def directives(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit_text(name).splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def verify_units(tmp_path: Path, texts: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on copies whose ExecStart points at this checkout's venv
    (the units name the installed path /opt/mailbot/bin/mailbot, absent here)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze not found (Debian: apt-get install systemd)", pytrace=False)
    binary = ROOT / ".venv" / "bin" / "mailbot"
    assert binary.exists(), f"{binary} missing: run `make setup`"
    paths = []
    for name, text in texts.items():
        p = tmp_path / name
        p.write_text(text.replace(INSTALLED_BINARY, str(binary)))
        paths.append(str(p))
    return subprocess.run([tool, "verify", *paths], capture_output=True, text=True, timeout=60)


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    done = verify_units(tmp_path, {n: unit_text(n) for n in UNITS})
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stderr


def test_systemd_analyze_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above is meaningful: a typo or a bad value is reported."""
    texts = {n: unit_text(n) for n in UNITS}
    texts["mailbot.service"] = texts["mailbot.service"].replace("Type=notify", "Type=notifyy")
    texts["mailbot-tick.service"] = texts["mailbot-tick.service"].replace(
        f"{INSTALLED_BINARY} --config", "/nonexistent/mailbot --config")
    done = verify_units(tmp_path, texts)
    assert done.returncode != 0 or done.stderr.strip()
    assert "notifyy" in done.stderr and "/nonexistent/mailbot" in done.stderr


def test_daemon_unit_is_notify_with_watchdog_and_hardened() -> None:
    d = directives("mailbot.service")
    assert d["Type"] == ["notify"]
    assert d.get("WatchdogSec") and int(d["WatchdogSec"][0].rstrip("s")) > 0
    assert d["User"] == ["mailbot"] and d["StateDirectory"] == ["mailbot"]
    assert d["ProtectSystem"] == ["strict"]
    assert d["NoNewPrivileges"] == ["yes"] and d["PrivateTmp"] == ["yes"]
    families = set(d["RestrictAddressFamilies"][0].split())
    assert families <= {"AF_INET", "AF_INET6", "AF_UNIX"} and "AF_UNIX" in families  # sd_notify
    assert d["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]  # port 25 only
    assert any("check-config" in v for v in d["ExecStartPre"])
    assert any(v.endswith(" run") for v in d["ExecStart"])
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # the comment above it tells the admin how to drop the capability (port > 1024)
    comment = unit_text("mailbot.service").split("CapabilityBoundingSet=CAP_NET_BIND_SERVICE")[0]
    comment = "\n".join(line for line in comment.splitlines()[-10:] if line.startswith("#"))
    assert "port = 25" in comment and "#   CapabilityBoundingSet=\n" in comment + "\n"


def test_tick_timer_runs_the_tick_service() -> None:
    t = directives("mailbot-tick.timer")
    s = directives("mailbot-tick.service")
    assert t.get("OnUnitActiveSec") and t["WantedBy"] == ["timers.target"]
    assert s["Type"] == ["oneshot"] and any(v.endswith(" tick") for v in s["ExecStart"])
    assert s["User"] == ["mailbot"] and s["ProtectSystem"] == ["strict"]
    assert s["NoNewPrivileges"] == ["yes"] and s["PrivateTmp"] == ["yes"]
    assert s["CapabilityBoundingSet"] == [""]  # no capability at all


# ---------------------------------------------------------------- /healthz and /metrics
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$")
EXPECTED = ("mailbot_mails_in_total", "mailbot_cases_opened_total", "mailbot_mails_sent_total",
            "mailbot_outbox_depth", "mailbot_outbox_oldest_age_seconds", "mailbot_quarantine_size",
            "mailbot_sla_breaches_total", "mailbot_ack_breaches_total", "mailbot_cases_open",
            "mailbot_cases_overdue")


def parse_prometheus(text: str) -> dict[str, float]:
    """Strict reading of the text exposition format 0.0.4 (what we emit): each series by
    name, summed over its labels, and by `name{labels}`."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4, line
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, f"TYPE twice for {name}"
            types[name] = kind
        else:
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            name = m.group(1)
            family = name.removesuffix("_total") if name.removesuffix("_total") in types else name
            assert family in types, f"{name} has no TYPE line before it"
            assert types[family] != "counter" or name.endswith("_total")
            values[name] = values.get(name, 0.0) + float(m.group(3))
            if m.group(2):
                values[name + m.group(2)] = float(m.group(3))
    return values


def http_get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


class Sink:
    def __init__(self) -> None:
        self.received: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 OK"


def test_healthz_and_metrics_of_the_running_daemon(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hport, relay_port = free_port(), free_port()
    proc, port, log = daemon(
        http={"enabled": True, "port": hport, "metrics_cache": 0},  # (each scrape reads the database)
        scheduler={"outbox_interval": 0.2},
        outbound={"transport": "smtp", "host": "127.0.0.1", "port": relay_port, "timeout": 2,
                  "max_attempts": 1000, "backoff_seconds": 0.1, "backoff_max_seconds": 0.3})
    wait_until(lambda: any(r.get("event") == "daemon.ready" for r in log.records()), what="ready")
    (ready,) = [r for r in log.records() if r.get("event") == "daemon.ready"]
    sock = tmp_path / "var" / "mailbot.lmtp"
    assert ready["listeners"] == [f"smtp 127.0.0.1:{port}", f"pipe {sock}", f"http 127.0.0.1:{hport}"]  # all
    assert ready["msg"] == f"ready: smtp 127.0.0.1:{port}, pipe {sock}, http 127.0.0.1:{hport}"
    assert http_get(hport, "/healthz")[0] == 200
    assert http_get(hport, "/nope")[0] == 404

    def metrics() -> dict[str, float]:
        code, ctype, body = http_get(hport, "/metrics")
        assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
        return parse_prometheus(body)

    m0 = metrics()
    assert set(EXPECTED) <= set(m0)
    assert all(m0[k] == 0 for k in EXPECTED)

    # The relay is down: a complaint comes in, its acknowledgement waits in the outbox.
    send(port, mail(message_id="<m1@example.org>"))
    send(port, b"\x00\x00 not a mail", sender="x@example.org")  # quarantined, still 250
    wait_until(lambda: metrics()["mailbot_outbox_oldest_age_seconds"] > 0.5, what="outbox age")
    m1 = metrics()
    assert m1["mailbot_mails_in_total"] == 2 and m1["mailbot_cases_opened_total"] == 1
    assert m1["mailbot_quarantine_size"] == 1
    assert m1["mailbot_outbox_depth"] >= 1 and m1["mailbot_mails_sent_total"] == 0
    assert m1['mailbot_cases_open{brand="kalra-plus"}'] == 1 and m1['mailbot_cases_open{brand="divikeys"}'] == 0
    time.sleep(0.3)
    assert metrics()["mailbot_outbox_oldest_age_seconds"] > m1["mailbot_outbox_oldest_age_seconds"]

    # The relay comes back: the acknowledgement leaves, the outbox drains.
    ctl = Controller(Sink(), hostname="127.0.0.1", port=relay_port)
    ctl.start()
    try:
        ack = 'mailbot_mails_sent_total{brand="kalra-plus",kind="acknowledgement"}'
        wait_until(lambda: metrics()[ack] == 1, what="the ack")
        wait_until(lambda: metrics()["mailbot_outbox_depth"] == 0, what="an empty outbox")
    finally:
        ctl.stop()
    m2 = metrics()
    assert m2["mailbot_outbox_oldest_age_seconds"] == 0 and m2["mailbot_sla_breaches_total"] == 0
    assert stop(proc) == 0


def test_sla_breaches_are_counted(tmp_path: Path, sqlite_url: str) -> None:
    clock = Clock()
    app = App.open(make_config(tmp_path, sqlite_url), upgrade=True, clock=clock)
    ingest(app, mail(), "smtp")
    before = collect(app)
    assert before["mailbot_cases_overdue"] == 0
    clock.now += timedelta(days=60)
    jobs.run_all_jobs(app)
    after = collect(app)
    breaches = 'mailbot_sla_breaches_total{brand="kalra-plus"}'
    assert after[breaches] == before[breaches] + 1 and after['mailbot_cases_overdue{brand="kalra-plus"}'] == 1
    # counters never go down: the retention purge (years later) takes nothing off them
    with db.session_scope(app.engine) as s:
        s.exec(update(Case).values(status="closed", closed_at=clock.now))  # type: ignore[call-overload]
    clock.now += timedelta(days=365 * 6)
    jobs.run_all_jobs(app)
    final = collect(app)
    assert final[breaches] == after[breaches] and final["mailbot_mails_in_total"] >= after["mailbot_mails_in_total"]
    app.close()


def test_healthz_503_and_metrics_503_when_the_database_is_unavailable(tmp_path: Path,
                                                                      sqlite_url: str) -> None:
    hport = free_port()
    app = App.open(make_config(tmp_path, sqlite_url, http={"enabled": True, "port": hport}), upgrade=True)
    good = app.engine
    server = start_http(app)
    try:
        assert http_get(hport, "/healthz")[0] == 200
        app.engine = db.make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
        code, _, body = http_get(hport, "/healthz")
        assert code == 503 and "database unavailable" in body
        code, _, body = http_get(hport, "/metrics")  # a failed scrape, not stale zeros
        assert code == 503
        app.engine.dispose()
        app.engine = good
        assert http_get(hport, "/healthz")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
        app.close()


# ---------------------------------------------------------------- sd_notify
def test_sd_notify_ready_watchdog_and_stopping(daemon, tmp_path: Path,  # type: ignore[no-untyped-def]
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.2)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "200000")
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        proc, _port, _log = daemon()
        got: list[tuple[float, str]] = []

        def receive(until: Callable[[], bool], timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while not until() and time.monotonic() < deadline:
                try:
                    got.append((time.monotonic(), sock.recv(4096).decode()))
                except TimeoutError:
                    pass

        receive(lambda: sum(m == "WATCHDOG=1" for _, m in got) >= 5, 10)
        messages = [m for _, m in got]
        assert messages[0] == "READY=1"
        pings = [t for t, m in got if m == "WATCHDOG=1"]
        assert len(pings) >= 5, messages
        # at least every WATCHDOG_USEC/2 = 0.1 s (generous bound for a loaded machine)
        assert max(b - a for a, b in zip(pings, pings[1:], strict=False)) < 0.5

        proc.send_signal(signal.SIGTERM)
        receive(lambda: "STOPPING=1" in [m for _, m in got], 10)
        assert "STOPPING=1" in [m for _, m in got]
        assert proc.wait(30) == 0


# ---------------------------------------------------------------- logs
IBAN = "FR76 3000 6000 0112 3456 7890 189"
CARD = "4111 1111 1111 1111"


def test_logs_are_json_lines_without_bodies_or_card_data(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc, port, log = daemon(scheduler={"outbox_interval": 0.2})
    body = (f"Bonjour, un prélèvement inconnu sur mon compte {IBAN}, avec la carte {CARD}.\n"
            f"IBAN compact {IBAN.replace(' ', '')}, carte {CARD.replace(' ', '')}.\n"
            "Phrase-témoin-du-corps-7f3a9.\nMarie Dupont")
    send(port, mail(subject=f"Opération non reconnue {IBAN} carte {CARD}", body=body))
    send(port, f"From: x@example.org\r\n\r\n\x00 Phrase-témoin-du-corps-7f3a9 {CARD}".encode(),
         sender="x@example.org")  # quarantined
    wait_until(lambda: (tmp_path / "sent" / "new").is_dir()
               and any((tmp_path / "sent" / "new").iterdir()), what="the ack sent")
    assert stop(proc) == 0
    text = log.join()
    records = log.records()  # every line parses as JSON
    assert len(records) == len([line for line in text.splitlines() if line.strip()])
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    opened = [r for r in records if r.get("event") == "mail.case_opened"]
    ref = opened[0]["refs"][0]  # the case reference
    assert any(r.get("event") == "outbox.sent" and r["kind"] == "acknowledgement" and r["case"] == ref
               and r["to_domain"] == "example.org" for r in records)
    for secret in (IBAN, IBAN.replace(" ", ""), CARD, CARD.replace(" ", ""), "Phrase-témoin-du-corps",
                   "prélèvement inconnu", "Opération non reconnue", "marie.dupont@example.org"):
        assert secret not in text, f"{secret!r} leaked into the log"


# ---------------------------------------------------------------- SIGHUP
def ack_texts(tmp_path: Path) -> list[str]:
    new = tmp_path / "sent" / "new"
    out = []
    for f in sorted(new.iterdir()) if new.is_dir() else []:
        msg = email.message_from_bytes(f.read_bytes(), policy=default)
        if "client" in str(msg["To"]):
            out.append(msg.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    return out


def test_sighup_reloads_config_and_refuses_an_invalid_one(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc, port, log = daemon(scheduler={"outbox_interval": 0.2})
    cfg = tmp_path / "config.toml"
    data = tomllib.loads(cfg.read_text())
    kp = next(b for b in data["brands"] if b["key"] == "kalra-plus")
    kp["name"] = "Kalra-plus Rechargée"
    data["limits"] = {**data.get("limits", {}), "ack_limit": 7}
    cfg.write_text(to_toml(data))
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: log.has("config reloaded"), what="config reloaded")
    send(port, mail(frm="client1@example.org", message_id="<hup-1@example.org>"), "client1@example.org")
    wait_until(lambda: len(ack_texts(tmp_path)) == 1, what="the first ack")
    assert "Kalra-plus Rechargée" in ack_texts(tmp_path)[0]

    invalid = {**data, "limits": {**data["limits"], "ack_limit": -1}}
    for broken in (to_toml(invalid), to_toml(data) + "this is = = not toml\n"):
        cfg.write_text(broken)
        refusals = sum(r["msg"].startswith("reload refused") for r in log.records())
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda n=refusals: sum(r["msg"].startswith("reload refused")
                                          for r in log.records()) > n, what="the refusal")
        assert proc.poll() is None
    refused = [r for r in log.records() if r["msg"].startswith("reload refused")]
    assert any("ack_limit" in r["msg"] for r in refused) and any("TOML" in r["msg"] for r in refused)
    assert all(r["level"] == "error" for r in refused)
    # still running, on the last good config
    send(port, mail(frm="client2@example.org", message_id="<hup-2@example.org>"), "client2@example.org")
    wait_until(lambda: len(ack_texts(tmp_path)) == 2, what="the second ack")
    assert all("Kalra-plus Rechargée" in t for t in ack_texts(tmp_path))
    assert stop(proc) == 0


def test_web_unit_runs_one_process_per_port_without_privilege() -> None:
    d = directives("mailbot-web@.service")
    [start] = d["ExecStart"]
    assert start.endswith(" web --host 127.0.0.1 --port %i")
    assert d["User"] == ["mailbot"] and d["ProtectSystem"] == ["strict"] and d["NoNewPrivileges"] == ["yes"]
    assert d["CapabilityBoundingSet"] == [""] and d["AmbientCapabilities"] == [""]
    assert d["EnvironmentFile"] == ["/etc/mailbot/env"]  # no "-": without its secret file it does not start
    assert d["MemoryDenyWriteExecute"] == ["yes"] and d["ProtectProc"] == ["invisible"]


def test_sighup_refuses_a_template_that_does_not_render_and_the_running_ones_go_on(
        daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A reload checks what check-config checks: a template that fails to render is
    refused (it was "config reloaded", then the extension notice failed at dispatch).
    The running templates were all compiled at start, so the broken file is not read."""
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    proc, port, log = daemon(templates_dir=str(templates), scheduler={"outbox_interval": 0.2})
    wait_until(lambda: log.has("templates compiled"), timeout=60, what="the templates compiled")
    send(port, mail(frm="client1@example.org", message_id="<hup-t@example.org>"), "client1@example.org")
    wait_until(lambda: len(ack_texts(tmp_path)) == 1, what="the ack")
    broken = templates / "_default" / "fr" / "extension.txt"
    text = broken.read_text()
    assert text.count("{% block content %}") == 1  # (the test breaks the file, whatever its wording)
    broken.write_text(text.replace("{% block content %}", "{% block content %}{{ extension.no_such_key }}"))
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: any(r["msg"].startswith("reload refused") for r in log.records()), timeout=60,
               what="the refusal")
    (refusal,) = [r for r in log.records() if r["msg"].startswith("reload refused")]
    assert "extension.txt" in refusal["msg"] and not log.has("config reloaded")
    cfg = str(tmp_path / "config.toml")
    out = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", cfg, "cases", "extend",
                          "KP-2026-000001", "10", "analyse approfondie"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    wait_until(lambda: any("analyse approfondie" in t for t in ack_texts(tmp_path)), what="the extension notice")
    assert stop(proc) == 0


def test_the_daemons_scheduler_runs_every_job_that_tick_runs(app: App) -> None:
    """A job `tick` runs but the daemon never schedules is work done only by hand: postal
    letters waited for a `tick` to be rendered."""
    from mailbot.ops.daemon import start_scheduler

    sched = start_scheduler(app)
    try:
        scheduled = {job.id for job in sched.get_jobs()}
    finally:
        sched.shutdown(wait=True)
    assert {name for name, _fn in jobs.JOBS} <= scheduled
    assert "letters" in scheduled
