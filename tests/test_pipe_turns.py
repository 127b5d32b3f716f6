"""The daemon's local socket receives at most `[pipe] max_data_sessions` mails at once, and
holds at most `[pipe] max_sessions` sessions open, none idle past `[pipe] idle_timeout`.

A running `mailbot run` on SQLite and its real socket: raw LMTP sessions hold the turns
(the test knows exactly when each has sent its DATA), and `mailbot ingest` processes in
fresh interpreters, many at once, as Postfix's pipe starts them. What is checked is what
the MTA sees (354 or not, the exit code, 75 to retry) and that no mail is lost: every
mail is recorded once, by the daemon (its log), none in the pipe's own process.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.mails import mail
from tests.procs import StderrReader, free_port, start_daemon, wait_until

pytestmark = pytest.mark.slow  # processes: left out by `make test-fast`

SUPPORT = "support@kalra-plus.com"
CAP = 2
FLOOD = 8
SESSIONS = 3  # [pipe] max_sessions
BUSY = b"421 4.3.2 Too many connections, try again later\r\n"


class Daemon:
    """A running `mailbot run` with `[pipe]` overrides: its config, socket and log."""

    def __init__(self, tmp_path: Path, **pipe_over: object) -> None:
        self.proc = start_daemon(tmp_path, free_port(), pipe={"max_data_sessions": CAP, **pipe_over})
        self.log = StderrReader(self.proc)
        self.cfg, self.sock, self.db = tmp_path / "config.toml", tmp_path / "var" / "mailbot.lmtp", tmp_path / "mailbot.db"
        wait_until(self.sock.exists, what="the pipe socket")

    def recorded_by_daemon(self) -> int:
        """Mails the daemon itself recorded from the pipe (one log line each)."""
        return sum(1 for r in self.log.records() if r.get("source") == "pipe" and r.get("event") == "mail.case_opened")

    def events(self, name: str) -> int:
        return sum(1 for r in self.log.records() if r.get("event") == name)

    def cases(self) -> int:
        with sqlite3.connect(self.db) as db:
            return int(db.execute("SELECT count(*) FROM cases").fetchone()[0])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(30) == 0, self.log.join()[-3000:]
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[type[Daemon]]:
    started: list[Daemon] = []

    def start(**pipe_over: object) -> Daemon:
        d = Daemon(tmp_path, **pipe_over)
        started.append(d)
        return d

    yield start  # type: ignore[misc]
    for d in started:
        d.stop()


class Session:
    """A raw LMTP session on the socket, up to its DATA command."""

    def __init__(self, path: Path, sender: str) -> None:
        self.sender = sender
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.replies = self.sock.makefile("rb")
        assert self.reply().startswith(b"220")
        for line in ("LHLO test", f"MAIL FROM:<{sender}>", f"RCPT TO:<{SUPPORT}>"):
            self.sock.sendall(line.encode() + b"\r\n")
            assert self.reply().startswith(b"250")
        self.sock.sendall(b"DATA\r\n")

    def reply(self) -> bytes:
        while (line := self.replies.readline())[3:4] == b"-":
            pass
        return line

    def silent_for(self, seconds: float) -> bool:
        """No reply within `seconds` (the DATA waits for its turn)."""
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(1, socket.MSG_PEEK)  # (a byte, or the end of the connection)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(10)
        return False

    def send_mail(self) -> bytes:
        """The mail after a 354; the daemon's answer."""
        self.sock.sendall(mail(frm=self.sender, message_id=f"<{self.sender}>") + b".\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.sendall(b"QUIT\r\n")
        self.sock.close()


def pipes(d: Daemon, names: list[str]) -> list[subprocess.Popen[bytes]]:
    """`mailbot ingest` for each sender, all at once, each in a fresh interpreter."""
    procs = [subprocess.Popen([sys.executable, "-m", "mailbot.cli", "--config", str(d.cfg), "ingest"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) for _ in names]
    for p, name in zip(procs, names, strict=True):
        assert p.stdin is not None
        p.stdin.write(mail(frm=name, message_id=f"<{name}>"))
        p.stdin.close()
    return procs


def finished(procs: list[subprocess.Popen[bytes]]) -> list[tuple[int, bytes, bytes]]:
    out = []
    for p in procs:
        assert p.stdout is not None and p.stderr is not None
        stdout, stderr = p.stdout.read(), p.stderr.read()
        out.append((p.wait(120), stdout, stderr))
    return out


def test_at_most_max_data_sessions_mails_are_received_from_the_socket_at_once(make_daemon: type[Daemon]) -> None:
    """With the cap at 2, two sessions get their 354 at once; a third gets none while they
    send their mails, and gets it as soon as one of them is answered."""
    d = make_daemon(data_wait=60, timeout=90, idle_timeout=120)
    holders = []
    for i in range(CAP):
        holders.append(Session(d.sock, f"holder{i}@example.org"))
        assert holders[-1].reply().startswith(b"354")
    third = Session(d.sock, "third@example.org")
    assert third.silent_for(2.0)  # no 354: nothing of its mail is read
    assert holders[0].send_mail().startswith(b"250 2.0.0 case_opened")
    assert third.reply().startswith(b"354")  # the turn went to the one waiting
    assert third.send_mail().startswith(b"250 2.0.0 case_opened")
    assert holders[1].send_mail().startswith(b"250 2.0.0 case_opened")
    for s in (*holders, third):
        s.close()
    assert d.cases() == CAP + 1


def test_a_flood_of_pipes_waits_for_its_turns_through_the_daemon(make_daemon: type[Daemon]) -> None:
    """8 `mailbot ingest` at once while both turns are held longer than the client's
    greeting timeout: none finishes before a turn is free, then all are recorded, by the
    daemon (none gave up and ingested in process)."""
    d = make_daemon(data_wait=60, timeout=90, idle_timeout=120)
    holders = [Session(d.sock, f"holder{i}@example.org") for i in range(CAP)]
    for h in holders:
        assert h.reply().startswith(b"354")
    procs = pipes(d, [f"flood{i}@example.org" for i in range(FLOOD)])
    held_until = time.monotonic() + 6.0  # > the 2 s a client waits for each reply before DATA
    while time.monotonic() < held_until:
        assert all(p.poll() is None for p in procs), "a pipe finished while every turn was taken"
        time.sleep(0.1)
    for h in holders:
        assert h.send_mail().startswith(b"250")
        h.close()
    results = finished(procs)
    assert [code for code, _, _ in results] == [0] * FLOOD, results
    assert all(out.startswith(b"case_opened: KP-2026-") and err == b"" for _, out, err in results), results
    wait_until(lambda: d.recorded_by_daemon() == CAP + FLOOD, what="the daemon's log of each mail")
    assert d.cases() == CAP + FLOOD


def test_a_pipe_whose_turn_does_not_come_exits_75_and_its_retry_is_recorded(make_daemon: type[Daemon]) -> None:
    """Both turns held past `[pipe] data_wait`: every `mailbot ingest` hears 451 4.3.2
    and exits 75 (Postfix keeps the mail and retries), nothing of it recorded; retried once
    the turns are free, each is recorded once."""
    d = make_daemon(data_wait=1.5)
    holders = [Session(d.sock, f"holder{i}@example.org") for i in range(CAP)]
    for h in holders:
        assert h.reply().startswith(b"354")
    names = [f"later{i}@example.org" for i in range(FLOOD)]
    results = finished(pipes(d, names))
    assert [code for code, _, _ in results] == [75] * FLOOD, results
    assert all(err == b"mailbot: Too many mails in transit, please retry later\n" for _, _, err in results), results
    assert d.cases() == 0 and d.events("pipe.data_busy") == FLOOD
    for h in holders:
        assert h.send_mail().startswith(b"250")
        h.close()
    results = finished(pipes(d, names))  # Postfix's retry
    assert [code for code, _, _ in results] == [0] * FLOOD, results
    wait_until(lambda: d.recorded_by_daemon() == CAP + FLOOD, what="the daemon's log of each mail")
    assert d.cases() == CAP + FLOOD


# --------------------------------------------------------------------------- sessions at once, idle sessions

def greeted(path: Path) -> tuple[socket.socket, bytes]:
    """A connection to the socket and its greeting; then silent (idle)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return sock, sock.recv(200)


def until_closed(sock: socket.socket) -> bytes:
    """Everything the daemon sends until it closes the connection."""
    got = b""
    while chunk := sock.recv(200):
        got += chunk
    return got


def greets(path: Path) -> bool:
    sock, greeting = greeted(path)
    sock.close()
    return greeting.startswith(b"220")


def test_sessions_over_max_sessions_hear_421_while_a_mail_in_its_turn_goes_through(
        make_daemon: type[Daemon]) -> None:
    """Three sessions open (one sending its mail, two idle): five more are each answered
    421 4.3.2 and closed at once, one warning logged for them; the mail in its turn is
    recorded, and once the sessions are gone a new one is greeted."""
    d = make_daemon(max_sessions=SESSIONS)
    holder = Session(d.sock, "holder@example.org")
    assert holder.reply().startswith(b"354")
    idle = [greeted(d.sock) for _ in range(SESSIONS - 1)]
    assert all(greeting.startswith(b"220") for _, greeting in idle)
    for _ in range(5):
        sock, greeting = greeted(d.sock)
        assert greeting + until_closed(sock) == BUSY
        sock.close()
    assert holder.send_mail().startswith(b"250 2.0.0 case_opened: KP-2026-")
    holder.close()
    for sock, _ in idle:
        sock.close()
    wait_until(lambda: greets(d.sock), what="a new session once the others are gone")
    assert d.cases() == 1 and d.events("pipe.busy") == 1


def test_an_idle_session_on_the_socket_is_closed_and_its_place_freed(make_daemon: type[Daemon]) -> None:
    """`[pipe] idle_timeout` 2 s, one session at most: an idle session is closed after
    about 2 s (meanwhile another hears 421), then a new session is greeted."""
    d = make_daemon(max_sessions=1, idle_timeout=2, data_wait=1)
    sock, greeting = greeted(d.sock)
    assert greeting.startswith(b"220")
    started = time.monotonic()
    other, refused = greeted(d.sock)
    assert refused + until_closed(other) == BUSY
    assert until_closed(sock) == b""  # closed without a word
    assert 1.5 < time.monotonic() - started < 7
    sock.close()
    wait_until(lambda: greets(d.sock), what="a new session after the idle one was closed")


def test_a_pipe_over_max_sessions_exits_75_and_its_retry_is_recorded(make_daemon: type[Daemon]) -> None:
    """Every session taken by idle connections: `mailbot ingest` hears 421 at the greeting
    and exits 75 (the MTA keeps the mail and retries), nothing recorded, not even in its
    own process; retried once the idle connections are gone, the mail is recorded once,
    by the daemon."""
    d = make_daemon(max_sessions=SESSIONS)
    idle = [greeted(d.sock) for _ in range(SESSIONS)]
    assert all(greeting.startswith(b"220") for _, greeting in idle)
    results = finished(pipes(d, ["over@example.org"]))
    assert results == [(75, b"", b"mailbot: Too many connections, try again later\n")], results
    assert d.cases() == 0
    for sock, _ in idle:
        sock.close()
    wait_until(lambda: greets(d.sock), what="a free session")
    results = finished(pipes(d, ["over@example.org"]))  # Postfix's retry
    assert [code for code, _, _ in results] == [0], results
    wait_until(lambda: d.recorded_by_daemon() == 1, what="the daemon's log of the mail")
    assert d.cases() == 1


def test_a_reload_applies_a_new_max_sessions_to_the_next_sessions(make_daemon: type[Daemon]) -> None:
    """`[pipe] max_sessions` raised from 1 to 2 in the file, then SIGHUP: a second session
    is greeted where it heard 421 before, without a restart."""
    d = make_daemon(max_sessions=1)
    first, greeting = greeted(d.sock)
    assert greeting.startswith(b"220")
    second, refused = greeted(d.sock)
    assert refused + until_closed(second) == BUSY
    second.close()
    text = d.cfg.read_text()
    d.cfg.write_text(text.replace('"max_sessions" = 1\n', '"max_sessions" = 2\n'))
    assert d.cfg.read_text() != text
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: d.events("daemon.reloaded") == 1, what="the reload")
    second, greeting = greeted(d.sock)
    assert greeting.startswith(b"220")
    for sock in (first, second):
        sock.close()
