"""The command line as a user runs it (DESIGN.md, "Command line"): exit codes, what is
printed, and what each command changes, read back through `cases show --json`.

Most tests call `mailbot.cli.main.main([...])` in-process on SQLite; `cases show --json` and
`import` also run on PostgreSQL; a few run `python -m mailbot.cli.main` as a real process to
check the exit codes end to end.
"""

from __future__ import annotations

import csv
import email
import io
import json
import logging
import mailbox
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mailbot.cli.main import main
from mailbot.ops.jobs import JOBS
from tests.conftest import ROOT, config_data
from tests.mails import mail
from tests.procs import to_toml

pytestmark = pytest.mark.slow  # processes, servers or corpora: left out by `make test-fast`

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
DB_DOWN = "postgresql+psycopg://postgres@127.0.0.1:1/x?connect_timeout=1"

FINAL_KP = """Explication : le virement a été bloqué par un contrôle automatique.
Mesures correctives : le contrôle a été corrigé.
Solution : les fonds ont été crédités le 2 décembre.
Issue : accepté
"""


# -- helpers -------------------------------------------------------------------------


@dataclass
class Result:
    rc: int
    out: str
    err: str
    raw_out: bytes

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`main` installs its own stderr handler on the root logger; put things back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(to_toml(data))
    return path


@pytest.fixture
def cfg(tmp_path: Path, db_url: str) -> Path:
    """tmp_path/config.toml: the shipped config on this test's database and outbound maildir."""
    return write_config(tmp_path / "config.toml", config_data(tmp_path, db_url))


@pytest.fixture
def cli(cfg: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> Callable[..., Result]:
    """cli("cases", "list", config=…, stdin=b"…") -> Result of `mailbot --config CFG …`."""

    def run(*args: str, config: Path | None = None, stdin: bytes | None = None) -> Result:
        capsysbinary.readouterr()
        saved = sys.stdin
        if stdin is not None:
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
        try:
            rc = main(["--config", str(config or cfg), *args])
        except SystemExit as exc:  # argparse: usage errors exit 2, as for a real process
            rc = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stdin = saved
        out, err = capsysbinary.readouterr()
        return Result(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), out)

    return run


def subprocess_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "mailbot.cli", *args], input=stdin, cwd=ROOT,
                          capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def ingest_mail(cli: Callable[..., Result], tmp_path: Path, raw: bytes, name: str = "mail.eml") -> str:
    """`mailbot ingest FILE`; returns the case reference printed."""
    f = tmp_path / name
    f.write_bytes(raw)
    r = cli("ingest", str(f))
    assert r.rc == 0, r.err
    return r.out.split()[1]


def show(cli: Callable[..., Result], ref: str) -> dict[str, Any]:
    r = cli("cases", "show", ref, "--json")
    assert r.rc == 0, r.err
    return r.json()


def event_types(detail: dict[str, Any]) -> list[str]:
    return [e["type"] for e in detail["events"]]


def config_lines(err: str, path: Path, *, warnings: bool = False) -> list[str]:
    """The lines of stderr about the config file (logging may add its own lines): its errors,
    or with `warnings` its warnings too (the shipped mediators are placeholders: a warning)."""
    return [line for line in err.splitlines()
            if line.startswith(f"{path}:") and (warnings or ": warning: " not in line)]


# -- check-config --------------------------------------------------------------------


def shipped_copy(tmp_path: Path, *, with_secret: bool = True) -> Path:
    """The shipped config.toml, copied as is, except that its templates are the repo's; with
    the token secret file `make run` creates beside it (var/secret), unless told otherwise."""
    text = (ROOT / "config.toml").read_text()
    assert 'templates_dir = "templates"' in text
    text = text.replace('templates_dir = "templates"', f"templates_dir = {json.dumps(str(ROOT / 'templates'))}", 1)
    path = tmp_path / "config.toml"
    path.write_text(text)
    if with_secret:
        (tmp_path / "var").mkdir(exist_ok=True)
        (tmp_path / "var" / "secret").write_text("0123456789abcdef0123456789abcdef\n")
        (tmp_path / "var" / "secret").chmod(0o600)
    return path


def test_check_config_accepts_the_shipped_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shipped_copy(tmp_path)
    assert main(["--config", str(path), "check-config"]) == 0
    out, err = capsys.readouterr()
    assert "OK" in out and str(path) in out
    assert "2 brands" in out
    assert "error" not in err.lower()


def _del(*keys: str | int) -> Callable[[dict[str, Any]], None]:
    def go(d: dict[str, Any]) -> None:
        node: Any = d
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
    return go


def _set(value: Any, *keys: str | int) -> Callable[[dict[str, Any]], None]:
    def go(d: dict[str, Any]) -> None:
        node: Any = d
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return go


# (change to the shipped config, key the error names, words saying what is expected).
BROKEN: list[Any] = [
    pytest.param(_del("brands", 0, "addresses"), "brands[0].addresses", ["required"], id="missing-key"),
    pytest.param(_set("abc", "smtp", "port"), "smtp.port", ["integer", "'abc'"], id="wrong-type"),
    pytest.param(_set(25, "smtp", "prot"), "smtp.prot", ["unknown key", "did you mean 'port'?"], id="unknown-key"),
    pytest.param(_set(100, "ingest", "workers"), "ingest.workers", ["64"], id="too-many-workers"),
    pytest.param(_set("Europe/Pariss", "brands", 0, "timezone"), "brands[0].timezone",
                 ["time zone", "Europe/Pariss", "did you mean 'Europe/Paris'?"], id="bad-timezone"),
    pytest.param(_set("complex", "brands", 1, "categories", 0, "tier"), "brands[1].categories[0].tier",
                 ["'complex'", "standard"], id="category-tier-not-in-brand-tiers"),
    pytest.param(_set("bogus", "brands", 0, "sla", "default_tier"), "brands[0].sla.default_tier",
                 ["'bogus'", "simple"], id="default-tier-not-in-tiers"),
    pytest.param(_set(["support@kalra-plus.com"], "brands", 1, "addresses"), "brands[1].addresses",
                 ["support@kalra-plus.com", "kalra-plus"], id="duplicate-address"),
]


@SQLITE_ONLY
@pytest.mark.parametrize(("change", "key", "words"), BROKEN)
def test_check_config_names_file_key_and_expectation(
    tmp_path: Path, db_url: str, cli: Callable[..., Result],
    change: Callable[[dict[str, Any]], None], key: str | None, words: list[str],
) -> None:
    data = config_data(tmp_path, db_url)
    change(data)
    path = write_config(tmp_path / "broken.toml", data)
    r = cli("check-config", config=path)
    assert r.rc == 2
    (line,) = config_lines(r.err, path)  # the file, then one problem
    if key is not None:
        assert f"key {key}" in line
    for w in words:
        assert w in line, line


@SQLITE_ONLY
@pytest.mark.parametrize(("change", "key"), [
    pytest.param(_set(["support@kalra-plus.com"], "brands", 1, "addresses"), "brands[1].addresses",
                 id="duplicate-address"),
    pytest.param(_set("bogus", "brands", 0, "sla", "default_tier"), "brands[0].sla.default_tier",
                 id="default-tier"),
])
def test_check_config_names_the_exact_key_of_cross_field_errors(
    tmp_path: Path, db_url: str, cli: Callable[..., Result],
    change: Callable[[dict[str, Any]], None], key: str,
) -> None:
    data = config_data(tmp_path, db_url)
    change(data)
    path = write_config(tmp_path / "broken.toml", data)
    r = cli("check-config", config=path)
    assert r.rc == 2
    assert f"key {key} (brand " in r.err


@SQLITE_ONLY
def test_check_config_accepts_a_category_tier_of_the_brands_own_tiers(
    tmp_path: Path, db_url: str, cli: Callable[..., Result],
) -> None:
    data = config_data(tmp_path, db_url)
    data["brands"][1]["categories"][0]["tier"] = "standard"
    path = write_config(tmp_path / "config.toml", data)
    r = cli("check-config", config=path)
    assert r.rc == 0, r.err


@SQLITE_ONLY
def test_check_config_invalid_toml(tmp_path: Path, cli: Callable[..., Result]) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[smtp\nport = 2525\n')
    r = cli("check-config", config=path)
    assert r.rc == 2
    (line,) = config_lines(r.err, path)
    assert "TOML" in line and "line 1" in line


@SQLITE_ONLY
def test_check_config_renders_templates_and_names_the_broken_file(
    tmp_path: Path, db_url: str, cli: Callable[..., Result],
) -> None:
    tdir = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", tdir)
    ack = tdir / "kalra-plus" / "fr" / "acknowledgement.txt"
    text = ack.read_text()
    assert "{{ case.tier_days }}" in text
    ack.write_text(text.replace("{{ case.tier_days }}", "{{ case.no_such_variable }}"))
    path = write_config(tmp_path / "config.toml", config_data(tmp_path, db_url, templates_dir=str(tdir)))
    r = cli("check-config", config=path)
    assert r.rc == 2
    lines = config_lines(r.err, path)
    assert lines and all("kalra-plus/fr/acknowledgement.txt" in line for line in lines), r.err
    assert "no_such_variable" in lines[0] and "Undefined" in lines[0]


@SQLITE_ONLY
def test_check_config_reports_all_errors_at_once(
    tmp_path: Path, db_url: str, cli: Callable[..., Result],
) -> None:
    # two problems found while loading
    data = config_data(tmp_path, db_url)
    data["smtp"]["port"] = "abc"
    data["smtp"]["prot"] = 25
    path = write_config(tmp_path / "two.toml", data)
    r = cli("check-config", config=path)
    assert r.rc == 2
    lines = config_lines(r.err, path)
    assert len(lines) == 2, r.err
    assert "smtp.port" in lines[0] and "smtp.prot" in lines[1]

    # two problems found by the checks after loading (a team member who is no agent, a template)
    tdir = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", tdir)
    final = tdir / "divikeys" / "en" / "final_response.txt"
    text = final.read_text()
    assert "{{ title }}" in text
    final.write_text(text.replace("{{ title }}", "{{ title }} {{ nope.nothing }}"))
    data = config_data(tmp_path, db_url, templates_dir=str(tdir))
    data["brands"][1]["team"] = ["nobody@divikeys.com"]
    path = write_config(tmp_path / "two-checks.toml", data)
    r = cli("check-config", config=path)
    assert r.rc == 2
    lines = config_lines(r.err, path)
    assert len(lines) == 2, r.err
    assert "brands[1].team[0] (brand divikeys)" in lines[0]  # in the order of the file...
    assert "divikeys/en/final_response.txt" in lines[1] and "nope" in lines[1]  # ...templates last


@SQLITE_ONLY
@pytest.mark.parametrize(("change", "words"), [
    pytest.param(_set(45, "brands", 0, "sla", "tiers", "exceptional"), ["sla.tiers.exceptional", "45", "two months"],
                 id="tier-45-days"),
    pytest.param(_set(300, "brands", 1, "sla", "ack_hours"), ["brands[1].sla", "acknowledgement", "10 business days"],
                 id="ack-300-hours"),
    pytest.param(_set(20, "brands", 0, "sla", "tiers", "simple"), ["sla.tiers.simple", "20", "payment", "15"],
                 id="payment-services-simple-20"),
])
def test_check_config_warns_beyond_the_regulators_limits(
    tmp_path: Path, db_url: str, cli: Callable[..., Result],
    change: Callable[[dict[str, Any]], None], words: list[str],
) -> None:
    data = config_data(tmp_path, db_url)
    change(data)
    path = write_config(tmp_path / "config.toml", data)
    r = cli("check-config", config=path)
    assert r.rc == 0, r.err
    assert "OK" in r.out
    warnings = [line for line in config_lines(r.err, path, warnings=True)
                if "warning:" in line and ".mediator" not in line]  # (the shipped placeholders)
    assert len(warnings) >= 1, r.err
    for w in words:
        assert w in warnings[0], warnings


@SQLITE_ONLY
def test_shipped_config_needs_its_secret_and_warns_only_of_its_placeholder_mediators(
    tmp_path: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = shipped_copy(tmp_path, with_secret=False)
    monkeypatch.delenv("MAILBOT_SECRET", raising=False)
    r = cli("check-config", config=path)
    assert r.rc == 2  # there is no built-in key (issue #20): the only thing a fresh install must do
    (error,) = [line for line in r.err.splitlines() if "security" in line]
    assert "MAILBOT_SECRET" in error and "security.secret_file" in error and "var/secret" in error
    monkeypatch.setenv("MAILBOT_SECRET", "a-long-random-secret")
    r = cli("check-config", config=path)
    assert r.rc == 0
    warnings = [line for line in r.err.splitlines() if "warning:" in line]
    assert len(warnings) == 2  # the mediators, which the seeds do not name
    for i, (warning, name) in enumerate(zip(warnings, ("Kalra-plus", "Divikeys"), strict=True)):
        assert f"key brands[{i}].mediator (brand {name.lower()}): name, postal_address, website still " \
               "hold a placeholder" in warning
        assert f"mediator of {name}" in warning
    text = path.read_text().replace("[À REMPLACER] Le médiateur de Kalra-plus", "Médiateur de la consommation FBF")
    text = text.replace("[À REMPLACER] adresse postale du médiateur", "CS 151, 75422 Paris Cedex 09")
    text = text.replace("[À REMPLACER] https://mediateur.kalra-plus.example", "https://lemediateur.fbf.fr")
    text = text.replace("[À REMPLACER] Le médiateur de Divikeys", "Le médiateur de l'AMF")
    text = text.replace("[À REMPLACER] https://mediateur.divikeys.example", "https://www.amf-france.org")
    path.write_text(text)
    r = cli("check-config", config=path)
    assert r.rc == 0 and "warning:" not in r.err
    monkeypatch.delenv("MAILBOT_SECRET")
    path = shipped_copy(tmp_path)  # the file `make run` makes
    r = cli("check-config", config=path)
    assert r.rc == 0 and [w for w in r.err.splitlines() if "warning:" in w and "mediator" not in w] == []
    (tmp_path / "var" / "secret").chmod(0o644)
    r = cli("check-config", config=path)
    assert r.rc == 0 and "readable by every user" in r.err


@SQLITE_ONLY
def test_check_config_refuses_a_brand_without_a_mediator(
    tmp_path: Path, cli: Callable[..., Result],
) -> None:
    data = config_data(tmp_path)
    del data["brands"][1]["mediator"]
    r = cli("check-config", config=write_config(tmp_path / "config.toml", data))
    assert r.rc == 2
    (error,) = [line for line in config_lines(r.err, tmp_path / "config.toml") if "mediator" in line]
    assert "key brands[1] (brand divikeys): names no mediator" in error
    data["brands"][1]["mediator"] = {"name": "Médiateur"}  # and one nobody can reach
    r = cli("check-config", config=write_config(tmp_path / "config.toml", data))
    assert r.rc == 2
    assert "key brands[1].mediator (brand divikeys): give the mediator's website or email" in r.err


def test_check_config_exit_code_as_a_process(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    data["smtp"]["prot"] = 25
    path = write_config(tmp_path / "config.toml", data)
    p = subprocess_cli("--config", str(path), "check-config")
    assert p.returncode == 2
    assert b": key smtp.prot: unknown key 'prot' in smtp; did you mean 'port'?" in p.stderr
    p = subprocess_cli("--config", str(shipped_copy(tmp_path)), "check-config")
    assert p.returncode == 0, p.stderr
    assert b"OK" in p.stdout


# -- ingest --------------------------------------------------------------------------


@SQLITE_ONLY
def test_ingest_file_and_stdin(tmp_path: Path, cli: Callable[..., Result]) -> None:
    f = tmp_path / "one.eml"
    f.write_bytes(mail(message_id="<cli-1@example.org>"))
    r = cli("ingest", str(f))
    assert r.rc == 0, r.err
    assert r.out.startswith("case_opened: KP-2026-000001")

    r = cli("ingest", "-", stdin=mail(to="info@divikeys.com", message_id="<cli-2@example.org>"))
    assert r.rc == 0, r.err
    assert r.out.startswith("case_opened: DK-2026-000001")

    r = cli("ingest", stdin=mail(message_id="<cli-1@example.org>"))  # `-` is the default
    assert r.rc == 0
    assert r.out.startswith("duplicate")
    assert sorted(c["ref"] for c in cli("cases", "list", "--json").json()) == ["DK-2026-000001", "KP-2026-000001"]


@SQLITE_ONLY
def test_ingest_quarantined_mail_exits_65(tmp_path: Path, cli: Callable[..., Result]) -> None:
    r = cli("ingest", "-", stdin=mail(to="someone@elsewhere.example"))
    assert r.rc == 65
    assert r.out.startswith("quarantined") and "no brand" in r.out
    r = cli("ingest", "-", stdin=b"\x00\x01\x02 not a mail at all")
    assert r.rc == 65
    assert cli("cases", "list", "--json").json() == []


def test_ingest_exit_codes_as_a_process(tmp_path: Path) -> None:
    """The MTA pipe transport sees 0 (done), 65 (quarantined) and 75 (retry later)."""
    good = write_config(tmp_path / "config.toml", config_data(tmp_path))
    p = subprocess_cli("--config", str(good), "ingest", "-", stdin=mail())
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"case_opened: KP-2026-000001")
    p = subprocess_cli("--config", str(good), "ingest", "-", stdin=mail(to="nobody@elsewhere.example"))
    assert p.returncode == 65, p.stderr

    down = write_config(tmp_path / "down.toml", config_data(tmp_path, DB_DOWN))
    p = subprocess_cli("--config", str(down), "ingest", "-", stdin=mail())
    assert p.returncode == 75, p.stderr
    assert b"temporary failure" in p.stderr
    assert b"Traceback" not in p.stderr


@SQLITE_ONLY
def test_tick_with_the_database_down_exits_75(tmp_path: Path, cli: Callable[..., Result]) -> None:
    down = write_config(tmp_path / "down.toml", config_data(tmp_path, DB_DOWN))
    r = cli("tick", config=down)
    assert r.rc == 75
    assert "temporary failure" in r.err


# -- import --------------------------------------------------------------------------


def _backlog_mails() -> list[tuple[bytes, datetime]]:
    dates = [datetime(2026, 11, 2, 8, 15, tzinfo=UTC), datetime(2026, 11, 3, 16, 40, tzinfo=UTC),
             datetime(2026, 10, 30, 7, 5, tzinfo=UTC)]
    return [
        (mail(frm="Claire Petit <claire@example.org>", date=dates[0], message_id="<bk-1@example.org>"), dates[0]),
        (mail(frm="Paul Roux <paul@example.org>", subject="Frais prélevés à tort", date=dates[1],
              body="Des frais de 12 € ont été prélevés à tort sur mon relevé.", message_id="<bk-2@example.org>"),
         dates[1]),
        (mail(frm="Ana Lima <ana@example.org>", to="info@divikeys.com", subject="Remboursement du projet",
              body="Le remboursement de mon investissement n'est pas arrivé.", date=dates[2],
              message_id="<bk-3@example.org>"), dates[2]),
    ]


@pytest.mark.parametrize("kind", ["mbox", "maildir"])
def test_import_keeps_original_dates_and_records_nothing_twice(
    tmp_path: Path, cli: Callable[..., Result], kind: str,
) -> None:
    mails = _backlog_mails()
    if kind == "mbox":
        path = tmp_path / "backlog.mbox"
        box: mailbox.Mailbox = mailbox.mbox(path)
        for raw, _ in mails:
            box.add(mailbox.mboxMessage(email.message_from_bytes(raw)))
    else:
        path = tmp_path / "Maildir"
        box = mailbox.Maildir(path, create=True)
        for raw, _ in mails:
            box.add(mailbox.MaildirMessage(raw))
    box.flush()
    box.close()

    r = cli("import", str(path))
    assert r.rc == 0, r.err
    assert "3 case_opened" in r.out
    cases = cli("cases", "list", "--json").json()
    assert len(cases) == 3
    by_email = {c["customer"]["email"]: c for c in cases}
    for raw, when in mails:
        sender = email.message_from_bytes(raw)["From"].split("<")[1].rstrip(">")
        ref = by_email[sender]["ref"]
        assert datetime.fromisoformat(show(cli, ref)["received_at"]) == when
    assert by_email["ana@example.org"]["brand"] == "divikeys"

    outbox = cli("outbox", "list", "--json").json()
    events = {c["ref"]: show(cli, c["ref"])["events"] for c in cases}

    again = cli("import", str(path))
    assert again.rc == 0, again.err
    assert "3 duplicate" in again.out and "case_opened" not in again.out
    assert len(cli("cases", "list", "--json").json()) == 3
    assert cli("outbox", "list", "--json").json() == outbox  # nobody is acknowledged twice
    assert {ref: show(cli, ref)["events"] for ref in events} == events


@SQLITE_ONLY
def test_import_of_a_missing_path_is_a_usage_error(tmp_path: Path, cli: Callable[..., Result]) -> None:
    r = cli("import", str(tmp_path / "nope.mbox"))
    assert r.rc == 2
    assert "nope.mbox" in r.err


# -- cases list / show ---------------------------------------------------------------


def test_cases_show_json_carries_the_documented_keys(tmp_path: Path, cli: Callable[..., Result]) -> None:
    ref = ingest_mail(cli, tmp_path, mail(message_id="<first@example.org>"))
    r = cli("cases", "show", ref, "--json")
    assert r.rc == 0, r.err
    d = r.json()
    for key in ("ref", "brand", "status", "category", "priority", "customer", "extracted",
                "ack_due_at", "due_at", "messages", "events", "received_at"):
        assert key in d, key
    assert d["ref"] == ref == "KP-2026-000001"
    assert (d["brand"], d["status"], d["category"], d["priority"]) == (
        "kalra-plus", "acknowledged", "transaction", "normal")
    assert d["customer"] == {"name": "Marie Dupont", "email": "marie.dupont@example.org", "failing_since": None}
    assert {"value": "1250.00", "currency": "EUR"} in d["extracted"]["amounts"]
    assert "virement" in d["extracted"]["operation_types"]
    for ts in ("ack_due_at", "due_at", "received_at"):
        assert datetime.fromisoformat(d[ts]).tzinfo is not None
    assert datetime.fromisoformat(d["ack_due_at"]) < datetime.fromisoformat(d["due_at"])
    assert d["messages"]
    for m in d["messages"]:
        assert {"direction", "kind", "message_id", "subject", "at"} <= m.keys()
    first = d["messages"][0]
    assert (first["direction"], first["kind"], first["message_id"]) == ("in", "customer", "<first@example.org>")
    assert any(m["direction"] == "out" and m["kind"] == "acknowledgement" for m in d["messages"])
    for e in d["events"]:
        assert {"type", "at", "actor"} <= e.keys()
    assert event_types(d)[0] == "case_opened"


@SQLITE_ONLY
def test_cases_show_text_explains_routing_and_timeline(tmp_path: Path, cli: Callable[..., Result]) -> None:
    ref = ingest_mail(cli, tmp_path, mail(message_id="<orig@example.org>"))
    ack = next(m for m in show(cli, ref)["messages"] if m["kind"] == "acknowledgement")
    followup = mail(subject="Re: " + ack["subject"], body="Voici le relevé demandé.",
                    message_id="<followup@example.org>", In_Reply_To=ack["message_id"],
                    References=ack["message_id"])
    f = tmp_path / "followup.eml"
    f.write_bytes(followup)
    r = cli("ingest", str(f))
    assert r.rc == 0 and r.out.startswith(f"followup: {ref}"), r.out

    r = cli("cases", "show", ref)
    assert r.rc == 0, r.err
    text = r.out
    assert text.startswith(ref)
    assert "routed by new" in text
    assert "routed by in_reply_to" in text
    assert "timeline:" in text
    timeline = text.split("timeline:", 1)[1]
    assert "case_opened" in timeline and "message_in" in timeline
    assert "Marie Dupont <marie.dupont@example.org>" in text


@SQLITE_ONLY
def test_cases_show_unknown_ref(cli: Callable[..., Result]) -> None:
    r = cli("cases", "show", "KP-2026-999999")
    assert r.rc == 2
    assert "no case KP-2026-999999" in r.err


@SQLITE_ONLY
def test_cases_list_filters(tmp_path: Path, cli: Callable[..., Result]) -> None:
    kp = ingest_mail(cli, tmp_path, mail(), "a.eml")
    dk = ingest_mail(cli, tmp_path, mail(to="info@divikeys.com", frm="Luc <luc@example.org>"), "b.eml")
    assert cli("cases", "close", dk, "--reason", "réclamation retirée par le client").rc == 0

    r = cli("cases", "list")  # the open cases: a header, a line each, a count
    assert r.rc == 0
    header, *lines, count = r.out.splitlines()
    assert header.split()[:4] == ["REF", "CUSTOMER", "CATEGORY", "STATUS"]
    assert len(lines) == 1 and lines[0].startswith(kp) and "acknowledged" in lines[0]
    assert count.startswith("1 case (status open)")
    everything = cli("cases", "list", "--status", "all").out.splitlines()
    assert any(line.startswith(dk) and "closed" in line for line in everything)

    assert [c["ref"] for c in cli("cases", "list", "--brand", "kalra-plus", "--json").json()] == [kp]
    assert [c["ref"] for c in cli("cases", "list", "--status", "closed", "--json").json()] == [dk]
    assert cli("cases", "list", "--status", "closed", "--brand", "kalra-plus", "--json").json() == []
    only = cli("cases", "list", "--brand", "divikeys", "--status", "all").out.splitlines()
    assert len(only) == 3 and only[1].startswith(dk)
    rows = cli("cases", "list", "--json").json()
    assert {"ref", "brand", "status", "category", "priority", "customer", "due_at", "assignee", "overdue"} <= rows[0].keys()
    bad = cli("cases", "list", "--status", "bogus")
    assert bad.rc == 2 and "open" in bad.err and "waiting_customer" in bad.err


# -- cases new (postal) --------------------------------------------------------------


@SQLITE_ONLY
def test_cases_new_registers_a_paper_complaint(cli: Callable[..., Result]) -> None:
    r = cli("cases", "new", "--brand", "divikeys", "--channel", "postal", "--received", "2026-12-23",
            "--name", "Jean Martin", "--address", "3 rue de la Poste, 97150 Marigot",
            "--summary", "Mon remboursement de 500 € sur le projet Soleil n'est jamais arrivé.")
    assert r.rc == 0, r.err
    ref = r.out.strip()
    assert ref == "DK-2026-000001"
    d = show(cli, ref)
    tz = ZoneInfo("America/Marigot")
    assert d["channel"] == "postal"
    assert d["customer"] == {"name": "Jean Martin", "email": "", "failing_since": None}
    assert datetime.fromisoformat(d["received_at"]).astimezone(tz).date() == date(2026, 12, 23)
    # 15 business days in Saint-Martin (25 Dec and 1 Jan are holidays): 15 January 2027
    assert datetime.fromisoformat(d["due_at"]).astimezone(tz).date() == date(2027, 1, 15)
    assert d["extracted"]["postal_address"] == "3 rue de la Poste, 97150 Marigot"
    assert "letter_queued" in event_types(d)  # the acknowledgement is a letter (tests/procedures/test_divikeys.py)
    assert d["messages"][0]["direction"] == "in"
    assert not any(m["kind"] == "acknowledgement" for m in d["messages"])
    assert json.loads(cli("outbox", "list", "--json").out) == []


@SQLITE_ONLY
def test_cases_new_with_an_email_is_acknowledged_by_mail(cli: Callable[..., Result]) -> None:
    r = cli("cases", "new", "--brand", "divikeys", "--channel", "postal", "--received", "2026-12-23",
            "--name", "Jean Martin", "--email", "Jean.Martin@example.org",
            "--summary", "Mon remboursement n'est jamais arrivé.", "--json")
    assert r.rc == 0, r.err
    summary = r.json()
    d = show(cli, summary["ref"])
    assert d["customer"]["email"] == "jean.martin@example.org"
    assert d["status"] == "acknowledged"
    assert "letter_queued" not in event_types(d)
    rows = json.loads(cli("outbox", "list", "--json").out)
    assert [(o["kind"], o["to"]) for o in rows] == [("acknowledgement", "jean.martin@example.org")]


@SQLITE_ONLY
@pytest.mark.parametrize(("args", "words"), [
    (["--brand", "nope"], "unknown brand"),
    (["--brand", "divikeys", "--received", "23/12/2026"], "--received"),
])
def test_cases_new_usage_errors(cli: Callable[..., Result], args: list[str], words: str) -> None:
    base = {"--brand": "divikeys", "--received": "2026-12-23", "--name": "X", "--summary": "Y",
            "--address": "1 rue X, 97150 Marigot"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    r = cli("cases", "new", *[x for kv in base.items() for x in kv])
    assert r.rc == 2
    assert words in r.err
    assert cli("cases", "list", "--json").json() == []


# -- agent actions -------------------------------------------------------------------


@SQLITE_ONLY
def test_reply_assign_extend_close(tmp_path: Path, cli: Callable[..., Result]) -> None:
    ref = ingest_mail(cli, tmp_path, mail())
    before = show(cli, ref)
    text = tmp_path / "reply.txt"

    text.write_text("Note interne : vérifier le virement avec la compta.")
    r = cli("cases", "reply", ref, "--file", str(text), "--as", "agent@kalra-plus.com", "--note")
    assert r.rc == 0, r.err
    d = show(cli, ref)
    assert d["status"] == "acknowledged"
    assert d["events"][-1]["type"] == "note" and d["events"][-1]["actor"] == "agent@kalra-plus.com"

    text.write_text("Pouvez-vous nous envoyer la référence du virement ?")
    r = cli("cases", "reply", ref, "--file", str(text), "--as", "agent@kalra-plus.com", "--ask")
    assert r.rc == 0, r.err
    d = show(cli, ref)
    assert d["status"] == "waiting_customer"
    assert any(m["kind"] == "request_info" and m["direction"] == "out" for m in d["messages"])

    r = cli("cases", "reply", ref, "--file", "-", "--as", "agent@kalra-plus.com",
            stdin="Nous vérifions votre virement.".encode())
    assert r.rc == 0, r.err
    d = show(cli, ref)
    assert d["status"] == "in_progress"
    assert any(m["kind"] == "agent_reply" for m in d["messages"])

    r = cli("cases", "assign", ref, "agent@kalra-plus.com", "--as", "supervisor@kalra-plus.com")
    assert r.rc == 0, r.err
    d = show(cli, ref)
    assert d["assignee"] == "agent@kalra-plus.com"
    assigned = [e for e in d["events"] if e["type"] == "assigned"]
    assert assigned and assigned[-1]["actor"] == "supervisor@kalra-plus.com"

    r = cli("cases", "extend", ref, "5", "analyse complémentaire avec notre partenaire")
    assert r.rc == 0, r.err
    assert r.out.startswith(f"{ref}: deadline moved from ") and "is told why" in r.out  # says what it did
    d = show(cli, ref)
    assert datetime.fromisoformat(d["due_at"]) > datetime.fromisoformat(before["due_at"])
    deadline = [e for e in d["events"] if e["type"] == "deadline"][-1]
    assert deadline["data"]["days"] == 5 and "partenaire" in deadline["data"]["reason"]
    assert datetime.fromisoformat(deadline["data"]["old"]) == datetime.fromisoformat(before["due_at"])
    assert datetime.fromisoformat(deadline["data"]["new"]) == datetime.fromisoformat(d["due_at"])
    assert any(m["kind"] == "extension" for m in d["messages"])

    r = cli("cases", "close", ref)  # before the final response a reason is required
    assert r.rc != 0 and "reason" in r.err
    r = cli("cases", "close", ref, "--reason", "le client a retiré sa réclamation")
    assert r.rc == 0, r.err
    d = show(cli, ref)
    assert d["status"] == "closed" and d["closed_at"]

    r = cli("cases", "close", ref, "--reason", "encore")  # already closed: refused, not a crash
    assert r.rc != 0
    assert "closed" in r.err


@SQLITE_ONLY
def test_final_response_with_every_section(tmp_path: Path, cli: Callable[..., Result]) -> None:
    ref = ingest_mail(cli, tmp_path, mail())
    f = tmp_path / "final.txt"
    f.write_text(FINAL_KP)
    r = cli("cases", "reply", ref, "--file", str(f), "--as", "agent@kalra-plus.com", "--final")
    assert r.rc == 0, r.err
    d = show(cli, ref)
    assert d["status"] == "answered" and d["answered_at"] and d["outcome"] == "accepted"
    assert "final_response" in event_types(d)
    assert any(m["kind"] == "final_response" for m in d["messages"])


@SQLITE_ONLY
def test_final_response_missing_sections_is_refused(tmp_path: Path, cli: Callable[..., Result]) -> None:
    ref = ingest_mail(cli, tmp_path, mail())
    before = show(cli, ref)
    f = tmp_path / "final.txt"
    f.write_text("Explication : le virement a été bloqué par un contrôle.\n")
    r = cli("cases", "reply", ref, "--file", str(f), "--as", "agent@kalra-plus.com", "--final")
    assert r.rc != 0
    assert "Mesures correctives :" in r.err and "Solution :" in r.err
    assert "explanation" not in r.err
    assert show(cli, ref) == before


@SQLITE_ONLY
def test_agent_of_the_other_brand_is_refused(tmp_path: Path, cli: Callable[..., Result]) -> None:
    ref = ingest_mail(cli, tmp_path, mail())
    before = show(cli, ref)
    outbox_before = cli("outbox", "list", "--json").out
    f = tmp_path / "reply.txt"
    f.write_text(FINAL_KP)
    for mode in ([], ["--note"], ["--ask"], ["--final"]):
        r = cli("cases", "reply", ref, "--file", str(f), "--as", "agent@divikeys.com", *mode)
        assert r.rc != 0, mode
        assert "agent@divikeys.com" in r.err and "kalra-plus" in r.err
    r = cli("cases", "reply", ref, "--file", str(f), "--as", "stranger@example.org")
    assert r.rc != 0
    r = cli("cases", "assign", ref, "agent@divikeys.com")
    assert r.rc != 0
    assert "agent@divikeys.com" in r.err
    assert show(cli, ref) == before
    assert cli("outbox", "list", "--json").out == outbox_before


@SQLITE_ONLY
def test_extend_refuses_bad_input(tmp_path: Path, cli: Callable[..., Result]) -> None:
    ref = ingest_mail(cli, tmp_path, mail())
    before = show(cli, ref)
    assert cli("cases", "extend", ref, "0", "raison").rc != 0
    assert cli("cases", "extend", ref, "5", "  ").rc != 0
    assert cli("cases", "extend", "KP-2026-999999", "5", "raison").rc == 2
    assert show(cli, ref) == before


# -- outbox --------------------------------------------------------------------------


@SQLITE_ONLY
def test_outbox_list_and_flush(tmp_path: Path, cli: Callable[..., Result]) -> None:
    ref = ingest_mail(cli, tmp_path, mail())
    r = cli("outbox", "list")
    assert r.rc == 0
    lines = r.out.splitlines()
    assert len(lines) == 2  # the acknowledgement and the agent's notification
    assert all("pending" in line and "attempts=0" in line and ref in line for line in lines)
    assert any("acknowledgement" in line and "marie.dupont@example.org" in line for line in lines)

    r = cli("outbox", "flush")
    assert r.rc == 0, r.err
    assert r.out.strip() == "2 sent, 0 to retry, 0 failed"
    sent = sorted((tmp_path / "sent" / "new").iterdir())
    assert len(sent) == 2
    msgs = [email.message_from_bytes(p.read_bytes()) for p in sent]
    assert {m["To"].split("<")[-1].rstrip(">") for m in msgs} == {"marie.dupont@example.org",
                                                                   "agent@kalra-plus.com"}
    rows = json.loads(cli("outbox", "list", "--json").out)
    assert [(o["status"], o["attempts"]) for o in rows] == [("sent", 1), ("sent", 1)]
    assert {o["message_id"] for o in rows} == {m["Message-ID"] for m in msgs}
    assert all("sent" in line for line in cli("outbox", "list").out.splitlines())
    assert json.loads(cli("outbox", "list", "--status", "pending", "--json").out) == []

    again = cli("outbox", "flush")
    assert again.out.strip() == "0 sent, 0 to retry, 0 failed"
    assert len(list((tmp_path / "sent" / "new").iterdir())) == 2


# -- quarantine ----------------------------------------------------------------------


RAW_Q = (b"From: Jos\xe9 <jose@example.org>\r\nTo: plaintes@kalra-plus.com\r\n"
         b"Subject: virement bloqu\xe9\r\nMessage-ID: <q-1@example.org>\r\n"
         b"Date: Mon, 23 Nov 2026 09:00:00 +0000\r\n\r\n"
         b"Mon virement de 300 EUR est bloqu\xe9 depuis le 2 novembre.\r\n")


def _config_with_new_address(tmp_path: Path, db_url: str) -> Path:
    """The admin's fix: the address the mail was sent to now belongs to kalra-plus."""
    data = config_data(tmp_path, db_url)
    data["brands"][0]["addresses"].append("plaintes@kalra-plus.com")
    return write_config(tmp_path / "fixed.toml", data)


@SQLITE_ONLY
def test_quarantine_list_and_show(cli: Callable[..., Result]) -> None:
    r = cli("ingest", "-", stdin=RAW_Q)
    assert r.rc == 65

    r = cli("quarantine", "list")
    assert r.rc == 0
    (line,) = r.out.splitlines()
    assert line.startswith("#1 ") and "held" in line and "pipe" in line and "no brand" in line

    r = cli("quarantine", "show", "1")
    assert r.rc == 0
    assert "reason: no brand" in r.out and f"size: {len(RAW_Q)} bytes" in r.out and "sha256:" in r.out

    r = cli("quarantine", "show", "1", "--raw")
    assert r.rc == 0
    assert r.raw_out == RAW_Q  # byte for byte: CRLF and Latin-1 untouched, nothing added

    assert cli("quarantine", "show", "99").rc == 2
    assert cli("quarantine", "show").rc == 2
    assert cli("quarantine", "retry").rc == 2


@SQLITE_ONLY
def test_quarantine_retry_after_a_config_fix(tmp_path: Path, db_url: str, cli: Callable[..., Result]) -> None:
    assert cli("ingest", "-", stdin=RAW_Q).rc == 65
    fixed = _config_with_new_address(tmp_path, db_url)
    r = cli("quarantine", "retry", "1", config=fixed)
    assert r.rc == 0, r.out + r.err
    assert r.out.startswith("case_opened: KP-2026-000001")
    (line,) = cli("quarantine", "list", config=fixed).out.splitlines()
    assert "retried" in line
    assert show(cli, "KP-2026-000001")["customer"]["email"] == "jose@example.org"


@SQLITE_ONLY
def test_quarantine_retry_that_fails_can_be_retried_later(
    tmp_path: Path, db_url: str, cli: Callable[..., Result],
) -> None:
    assert cli("ingest", "-", stdin=RAW_Q).rc == 65
    r = cli("quarantine", "retry", "1")  # the config is not fixed yet
    assert r.rc == 65
    fixed = _config_with_new_address(tmp_path, db_url)
    r = cli("quarantine", "retry", "1", config=fixed)
    assert r.rc == 0 and r.out.startswith("case_opened: KP-2026-000001"), r.out
    assert len(cli("quarantine", "list").out.splitlines()) == 1


# -- stats and the register ----------------------------------------------------------


def _answered_and_open_cases(tmp_path: Path, cli: Callable[..., Result]) -> tuple[str, str, str]:
    kp1 = ingest_mail(cli, tmp_path, mail(), "a.eml")
    kp2 = ingest_mail(cli, tmp_path, mail(frm="Paul <paul@example.org>", subject="Frais de tenue de compte",
                                          body="Des frais de 12 € apparaissent sur mon relevé."), "b.eml")
    dk = ingest_mail(cli, tmp_path, mail(to="info@divikeys.com", frm="Ana <ana@example.org>",
                                         subject="Bug sur le site", body="Le site affiche une erreur."),
                     "c.eml")
    f = tmp_path / "final.txt"
    f.write_text(FINAL_KP)
    assert cli("cases", "reply", kp1, "--file", str(f), "--as", "agent@kalra-plus.com", "--final").rc == 0
    assert cli("outbox", "flush").rc == 0  # answered once the final response is sent
    return kp1, kp2, dk


@SQLITE_ONLY
def test_stats_json(tmp_path: Path, cli: Callable[..., Result]) -> None:
    _answered_and_open_cases(tmp_path, cli)
    r = cli("stats", "--json")
    assert r.rc == 0, r.err
    s = r.json()
    total = s["total"]
    assert total["count"] == 3
    assert total["answered"] == 1
    assert total["answered_within_deadline"] == 1.0
    assert total["median_hours_to_ack"] is not None and 0 <= total["median_hours_to_ack"] < 1
    assert total["median_hours_to_answer"] is not None and total["median_hours_to_answer"] >= 0
    by = s["by"]
    assert {k: v["count"] for k, v in by["brand"].items()} == {"divikeys": 1, "kalra-plus": 2}
    assert {k: v["count"] for k, v in by["status"].items()} == {"acknowledged": 2, "answered": 1}
    assert by["category"]["transaction"]["count"] == 1
    assert by["category"]["frais"]["count"] == 1
    assert {k: v["count"] for k, v in by["tier"].items()} == {"simple": 1, "complex": 1, "standard": 1}
    for groups in by.values():
        for g in groups.values():
            assert {"count", "median_hours_to_ack", "median_hours_to_answer",
                    "answered_within_deadline"} <= g.keys()

    text = cli("stats")
    assert text.rc == 0
    assert text.out.startswith("3 cases (3 rounds); open 2, overdue 0; answered 1, on time 1: 100.0 %")
    assert "by brand:" in text.out and "by tier:" in text.out


@SQLITE_ONLY
def test_register_export_csv(tmp_path: Path, cli: Callable[..., Result]) -> None:
    kp1, kp2, dk = _answered_and_open_cases(tmp_path, cli)
    r = cli("register", "export", "--csv")
    assert r.rc == 0, r.err
    rows = list(csv.DictReader(io.StringIO(r.out)))
    header = r.out.splitlines()[0].split(",")
    for col in ("reference", "round", "received_at", "acknowledged_at", "answered_at", "category", "outcome",
                "ack_met", "answer_met", "cap_met", "mediation_offered"):
        assert col in header
    assert [row["reference"] for row in rows] == [kp1, kp2, dk]
    first = rows[0]
    assert first["category"] == "transaction"
    assert first["outcome"] == "accepted" and first["answer_met"] == "yes" and first["cap_met"] == "yes"
    assert first["received_at"] and first["acknowledged_at"] and first["answered_at"]
    assert rows[1]["answered_at"] == "" and rows[1]["answer_met"] == ""
    assert rows[2]["brand"] == "divikeys"


# -- tick and db ---------------------------------------------------------------------


@SQLITE_ONLY
def test_tick_runs_every_job_once(tmp_path: Path, cli: Callable[..., Result]) -> None:
    # received on 23 November: due 5 business days later, breached on 31 December
    r = cli("cases", "new", "--brand", "kalra-plus", "--received", "2026-11-23", "--name", "Marie Dupont",
            "--email", "marie.dupont@example.org", "--summary", "Mon virement de 1 250 € n'est pas arrivé.")
    assert r.rc == 0, r.err
    ref = r.out.strip()
    r = cli("tick", "--now", "2026-12-31T12:00:00+00:00")
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert len(lines) == len(JOBS)
    assert lines[0].startswith("sla sweep:")
    assert any(line.startswith("outbox:") for line in lines)
    d = show(cli, ref)
    assert "escalation" in event_types(d)
    assert list((tmp_path / "sent" / "new").iterdir())

    again = cli("tick", "--now", "2026-12-31T12:00:00+00:00")
    assert again.rc == 0
    assert show(cli, ref)["events"] == d["events"]  # nothing more to do at the same time


@SQLITE_ONLY
def test_tick_rejects_a_bad_time(cli: Callable[..., Result]) -> None:
    r = cli("tick", "--now", "yesterday")
    assert r.rc == 2
    assert "--now" in r.err


@SQLITE_ONLY
def test_db_upgrade_on_a_fresh_database_twice(tmp_path: Path, cli: Callable[..., Result]) -> None:
    fresh = tmp_path / "fresh.db"
    data = config_data(tmp_path, f"sqlite:///{fresh}", database={"auto_upgrade": False})
    path = write_config(tmp_path / "fresh.toml", data)
    for _ in range(2):
        r = cli("db", "upgrade", config=path)
        assert r.rc == 0, r.err
        assert "database at head" in r.out
    assert fresh.exists()
    assert cli("cases", "list", "--json", config=path).json() == []
