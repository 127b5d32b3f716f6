"""Security against a running daemon (issue #20): what an outsider on the network can do
to `mailbot run` — freeze it with one mail, read its state from SMTP replies, exhaust
its file descriptors. One daemon for the module (a real process on loopback); each test
leaves it as it found it. docs/security.md lists the threats and these tests.
"""

from __future__ import annotations

import base64
import smtplib
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.mails import mail
from tests.procs import StderrReader, free_port, start_daemon, wait_until

SUPPORT = "support@kalra-plus.com"


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    smtp: int
    http: int
    log: StderrReader
    workdir: Path

    def healthz(self, timeout: float = 5.0) -> float:
        """Seconds /healthz took to answer 200."""
        start = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=timeout) as r:
            assert r.status == 200
        return time.monotonic() - start

    def send(self, raw: bytes, rcpt: str = SUPPORT, sender: str = "marie.dupont@example.org",
             timeout: float = 60) -> tuple[int, bytes]:
        """One mail over SMTP; the server's reply to DATA."""
        with smtplib.SMTP("127.0.0.1", self.smtp, timeout=timeout) as c:
            c.ehlo()
            c.mail(sender)
            c.rcpt(rcpt)
            return c.data(raw)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("daemon")
    port, hport = free_port(), free_port()
    proc = start_daemon(workdir, port, http={"enabled": True, "host": "127.0.0.1", "port": hport})
    d = Daemon(proc, port, hport, StderrReader(proc), workdir)
    wait_until(lambda: _answers(d), what="/healthz")
    try:
        yield d
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(d: Daemon) -> bool:
    try:
        d.healthz(timeout=1)
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- 2. one mail freezes it

def test_one_mail_does_not_freeze_the_daemon(daemon: Daemon) -> None:
    """`'123 ' * 32000` as a base64 body cost 38 s of CPU in the amount extractor, and
    /healthz and new sessions timed out meanwhile."""
    body = base64.encodebytes(("123 " * 32000).encode()).replace(b"\n", b"\r\n")
    raw = (b"From: x@example.org\r\nTo: support@kalra-plus.com\r\nSubject: montant\r\n"
           b"Message-ID: <freeze@example.org>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body)
    health: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            try:
                health.append(daemon.healthz())
            except OSError:  # timed out: the daemon is frozen
                health.append(float("inf"))
            time.sleep(0.1)

    prober = threading.Thread(target=probe)
    prober.start()
    started = time.monotonic()
    try:
        code, reply = daemon.send(raw)
    finally:
        done.set()
        prober.join()
    assert code == 250, reply
    assert time.monotonic() - started < 10
    assert health and max(health) < 2
    assert daemon.send(mail())[0] == 250  # and the next mail is taken at once
