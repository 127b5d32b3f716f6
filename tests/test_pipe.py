"""The thin pipe (issue 26 item 8): `mailbot ingest` hands its mail to the running
daemon over the local LMTP socket, and ingests in process when no daemon answers.

Real processes: `mailbot run` and `mailbot ingest` as a Postfix pipe would start
them, on SQLite. What is checked is what the MTA and the admin see: the printed
outcome, the exit code (0, 65, 75), the bytes stored, the socket's permissions,
and that the thin path never imports the database layer or the config's validation.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailbot import pipe
from mailbot.channels.local import bind_private
from tests.conftest import ROOT, config_data
from tests.mails import mail
from tests.procs import free_port, start_daemon, to_toml, wait_until

SUPPORT = "support@kalra-plus.com"


def ingest(cfg: Path, raw: bytes, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """`mailbot ingest` in a fresh interpreter, the mail on standard input."""
    return subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(cfg), "ingest", *args],
                          input=raw, cwd=ROOT, capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def answering(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
        return True


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A running `mailbot run` on SQLite: (its config file, its pipe socket)."""
    proc = start_daemon(tmp_path, free_port())
    cfg, sock = tmp_path / "config.toml", tmp_path / "var" / "mailbot.lmtp"
    try:
        wait_until(lambda: answering(sock), what="the pipe socket")
        yield cfg, sock
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert not sock.exists()  # removed at stop


def stored(tmp_path: Path) -> list[tuple[str, str, str, str | None]]:
    """(source, sha256, outcome, envelope_from) of each inbound row."""
    with sqlite3.connect(tmp_path / "mailbot.db") as db:
        return db.execute("SELECT source, sha256, outcome, envelope_from FROM inbound ORDER BY id").fetchall()


# Bytes as MTAs hand them over: CRLF, bare LF, a lone dot, dots at line starts, no final newline.
AWKWARD = [
    mail(body="Ligne 1\n.\n..deux points\n.trois\nfin"),
    mail(body="sans fin de ligne").rstrip(b"\r\n"),
    mail().replace(b"\r\n", b"\n") + b".\n",
    mail(body="un point\r\n.\r\npuis du texte") + b"\r\n\r\n.",
    mail(message_id="<cr@example.org>").replace(b"\r\n", b"\n")[:-1] + b"\r",
]


def test_the_daemon_takes_the_pipe_s_mail_and_answers_as_in_process(daemon: tuple[Path, Path],
                                                                    tmp_path: Path) -> None:
    cfg, sock = daemon
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    p = ingest(cfg, mail(message_id="<pipe-1@example.org>"))
    assert (p.returncode, p.stderr) == (0, b"")
    assert p.stdout.decode().startswith("case_opened: KP-2026-000001 no automatic sign; brands: kalra-plus")
    again = ingest(cfg, mail(message_id="<pipe-1@example.org>"))
    assert again.returncode == 0 and again.stdout.startswith(b"duplicate: already recorded as inbound #1")
    bad = ingest(cfg, mail(to="nobody@elsewhere.example"))
    assert bad.returncode == 65 and bad.stdout.startswith(b"quarantined: no brand address")
    # the envelope decides: a Bcc to the brand, a null return path (a DSN is automatic)
    bcc = ingest(cfg, mail(to="someone@elsewhere.example", message_id="<bcc@example.org>"), "-r", SUPPORT,
                 "-f", "marie@example.org")
    assert bcc.returncode == 0 and bcc.stdout.startswith(b"case_opened: KP-2026-000002"), bcc.stdout
    null = ingest(cfg, mail(subject="Undelivered Mail Returned to Sender", message_id="<dsn@example.org>"),
                  "-r", SUPPORT, "-f", "")
    assert null.returncode == 0 and null.stdout.startswith(b"automatic:"), null.stdout
    rows = stored(tmp_path)
    assert [r[0] for r in rows] == ["pipe"] * 4  # (the duplicate is not a row)
    assert rows[2][3] == "marie@example.org" and rows[3][3] == "<>" and rows[0][3] is None
    # the thin path never imports the database layer, the config's validation or the parsers
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "mailbot.cli", "--config", str(cfg), "ingest"],
                       input=mail(), cwd=ROOT, capture_output=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0 and p.stdout.startswith(b"case_opened"), p.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in p.stderr.decode().splitlines() if "|" in line}
    heavy = {m for m in imported if m.split(".")[0] in ("sqlalchemy", "sqlmodel", "pydantic", "aiosmtpd",
                                                        "mailparser", "jinja2")}
    assert not heavy, sorted(heavy)[:10]
    assert "mailbot.pipe" in imported


def test_a_single_line_mail_without_from_is_acknowledged_only_at_its_return_path(daemon: tuple[Path, Path],
                                                                                  tmp_path: Path) -> None:
    """One header line, no From, through the daemon: with no -f the case has no customer
    address and nothing is queued to anyone but the agent (the pipe's placeholder sender is
    never taken for the customer); with -f the return path is the customer."""
    cfg, _ = daemon
    p = ingest(cfg, b"Subject: Virement non recu", "-r", SUPPORT)
    assert p.returncode == 0 and p.stdout.startswith(b"case_opened: KP-2026-000001"), (p.stdout, p.stderr)
    p = ingest(cfg, b"Subject: Carte bloquee", "-r", SUPPORT, "-f", "marie@example.org")
    assert p.returncode == 0 and p.stdout.startswith(b"case_opened: KP-2026-000002"), (p.stdout, p.stderr)
    with sqlite3.connect(tmp_path / "mailbot.db") as db:
        emails = db.execute("SELECT ref, customer_email FROM cases ORDER BY id").fetchall()
        queued = db.execute("SELECT kind, to_addr FROM outbox ORDER BY id").fetchall()
    assert emails == [("KP-2026-000001", ""), ("KP-2026-000002", "marie@example.org")]
    assert sorted(queued) == [("acknowledgement", "marie@example.org"), ("agent_notification", "agent@kalra-plus.com"),
                              ("agent_notification", "agent@kalra-plus.com")]


def test_the_bytes_arrive_exactly(daemon: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, _ = daemon
    for raw in AWKWARD:
        p = ingest(cfg, raw, "-r", SUPPORT)
        assert p.returncode in (0, 65), p.stderr
    assert [r[1] for r in stored(tmp_path)] == [hashlib.sha256(raw).hexdigest() for raw in AWKWARD]


@pytest.mark.slow  # processes: left out by `make test-fast`
def test_a_locked_database_is_exit_75_through_the_daemon(tmp_path: Path) -> None:
    """The daemon answers 451 when its database stays locked past the busy timeout: the
    pipe exits 75 (the MTA retries), as in process."""
    proc = start_daemon(tmp_path, free_port(), database={"busy_timeout": 0.5})
    sock = tmp_path / "var" / "mailbot.lmtp"
    locker = sqlite3.connect(tmp_path / "mailbot.db", isolation_level=None, check_same_thread=False)
    try:
        wait_until(lambda: answering(sock), what="the pipe socket")
        locker.execute("BEGIN EXCLUSIVE")
        p = ingest(tmp_path / "config.toml", mail())
        assert p.returncode == 75, (p.stdout, p.stderr)
        assert p.stderr.startswith(b"mailbot: temporary failure, retry later")
        locker.execute("ROLLBACK")
        assert ingest(tmp_path / "config.toml", mail(message_id="<after@example.org>")).returncode == 0
    finally:
        locker.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.mark.slow  # a fresh process: left out by `make test-fast`
def test_without_a_daemon_the_pipe_ingests_in_process(tmp_path: Path) -> None:
    """No daemon (here: a socket file left by a killed one), or no socket configured: the
    mail is ingested in process, with the same output and exit codes."""
    data = config_data(tmp_path)
    cfg = tmp_path / "config.toml"
    cfg.write_text(to_toml(data))
    stale = bind_private(tmp_path / "var" / "mailbot.lmtp", 0o600)
    stale.close()  # the file stays; nobody answers on it
    p = ingest(cfg, mail(to="nobody@elsewhere.example"))
    assert p.returncode == 65 and p.stdout.startswith(b"quarantined: no brand address"), p.stderr
    assert stored(tmp_path)[0][0] == "pipe"
    cfg.write_text(to_toml({**data, "pipe": {"socket": ""}}))
    assert pipe.settings(str(cfg)) == pipe.PipeSettings("", 60.0)  # "": never tried
    cfg.write_text(to_toml({**data, "pipe": {"socket": "/run/mailbot/lmtp.sock", "timeout": 5}}))
    assert pipe.settings(str(cfg)) == pipe.PipeSettings("/run/mailbot/lmtp.sock", 5.0)


def test_a_daemon_that_does_not_answer_is_not_waited_for(tmp_path: Path) -> None:
    """Something accepts on the socket and says nothing: the pipe gives up after its
    greeting timeout (then `mailbot ingest` ingests in process)."""
    path = tmp_path / "mailbot.lmtp"
    mute = bind_private(path, 0o600)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(mute.accept()[0]), daemon=True).start()
    try:
        started = time.monotonic()
        assert pipe.deliver(str(path), mail(), None, []) is None
        assert time.monotonic() - started < pipe.CONNECT_TIMEOUT + 1
    finally:
        for s in (*accepted, mute):
            s.close()


# ---------------------------------------------------------------- the socket itself


def test_the_socket_is_never_reachable_with_looser_permissions(tmp_path: Path) -> None:
    path = tmp_path / "run" / "mailbot.lmtp"
    sock = bind_private(path, 0o600)
    try:
        assert stat.S_ISSOCK(path.lstat().st_mode) and stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert [p.name for p in path.parent.iterdir()] == ["mailbot.lmtp"]  # no private directory left
        with pytest.raises(OSError, match="another process answers"):
            bind_private(path, 0o600)  # a live daemon's socket is not taken over
    finally:
        sock.close()
    bind_private(path, 0o660).close()  # a stale one is replaced
    assert stat.S_IMODE(path.lstat().st_mode) == 0o660
    path.unlink()
    path.write_text("not a socket")
    with pytest.raises(OSError, match="not a socket"):
        bind_private(path, 0o600)
    assert path.read_text() == "not a socket"


@pytest.mark.parametrize("raw", AWKWARD)
def test_framing_round_trip(raw: bytes) -> None:
    """What the client writes after DATA, read back as LMTP reads it (lines end at CRLF;
    a lone "." line ends; one leading dot of each line is dropped), gives the mail."""
    data = pipe._framed(raw)  # noqa: SLF001 - the wire format itself
    lines = data.split(b"\r\n")
    assert lines[-2:] == [b".", b""]
    content = b"".join(line[1:] + b"\r\n" if line.startswith(b".") else line + b"\r\n" for line in lines[:-2])
    assert pipe.unframed(content, len(raw)) == raw


def test_the_client_finds_the_socket_where_the_daemon_binds_it(tmp_path: Path) -> None:
    """A relative `[pipe] socket` is relative to the config file, symlinks resolved, on
    both sides (the client reads it with tomllib alone)."""
    from mailbot.config import load_config

    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "config.toml").write_text(to_toml(config_data(etc)))
    link = tmp_path / "config.toml"
    link.symlink_to(etc / "config.toml")
    config = load_config(str(link))
    assert pipe.settings(str(link)) == pipe.PipeSettings(str(config.resolve_path(config.pipe.socket)), 60.0)
