"""Security against a running daemon (issue #20): what an outsider on the network can do
to `mailbot run` — freeze it with one mail, read its state from SMTP replies, exhaust
its file descriptors. One daemon for the module (a real process on loopback); each test
leaves it as it found it. docs/security.md lists the threats and these tests.
"""

from __future__ import annotations

import base64
import smtplib
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from tests.mails import mail
from tests.procs import StderrReader, free_port, start_daemon, wait_until

SUPPORT = "support@kalra-plus.com"
MAX_FILES = 256  # the daemon's RLIMIT_NOFILE here (systemd's default soft limit is 1024)
MAX_SESSIONS = 50
IDLE_TIMEOUT = 4.0


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
    proc = start_daemon(workdir, port, max_files=MAX_FILES, http={"enabled": True, "host": "127.0.0.1", "port": hport},
                        smtp={"port": port, "max_sessions": MAX_SESSIONS, "idle_timeout": IDLE_TIMEOUT})
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


# --------------------------------------------------------------------------- 6. replies leak state

def test_every_accepted_mail_gets_the_same_reply(daemon: Daemon) -> None:
    """`250 followup KP-…`, `duplicate`, `own` let an outsider test Message-IDs and
    reference/address pairs; the outcome is logged, the peer hears only OK."""
    first = mail(message_id="<leak-1@example.org>", frm="leak@example.org")
    replies = {
        "new case": daemon.send(first),
        "duplicate": daemon.send(first),
        "follow-up": daemon.send(mail(frm="leak@example.org", In_Reply_To="<leak-1@example.org>")),
        "own address": daemon.send(mail(frm="support@kalra-plus.com")),
        "stranger quoting a reference": daemon.send(mail(subject="Re: [KP-2026-000001]")),
        "unparseable": daemon.send(b"\x00\xff" * 10),
    }
    assert set(replies.values()) == {(250, b"2.0.0 OK")}, replies
    wait_until(lambda: daemon.log.has("mail.duplicate") or any(
        r.get("event") == "mail.duplicate" for r in daemon.log.records()), what="the outcome in the log")


# --------------------------------------------------------------------------- 8. idle connections

def _greeting(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    try:
        return sock.recv(200)
    except OSError:
        return b""


def test_idle_connections_cannot_take_every_file_descriptor(daemon: Daemon) -> None:
    """1,100 idle connections (over systemd's default of 1,024 descriptors) stopped new
    SMTP sessions and /healthz, and asyncio logged a traceback in a tight loop."""
    lines_before = len(daemon.log.lines)
    socks = [socket.create_connection(("127.0.0.1", daemon.smtp), timeout=5) for _ in range(MAX_FILES + 50)]
    try:
        greetings = [_greeting(s) for s in socks]
        assert sum(g.startswith(b"220") for g in greetings) <= MAX_SESSIONS
        assert all(g.startswith((b"220", b"421 4.3.2")) for g in greetings), set(greetings)
        assert daemon.healthz() < 2  # still answering
        with pytest.raises(smtplib.SMTPConnectError) as refused:  # a new session: told to come back
            smtplib.SMTP("127.0.0.1", daemon.smtp, timeout=5)
        assert refused.value.smtp_code == 421
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: _delivers(daemon), what="a new session once the idle ones are gone")
    logged = daemon.log.lines[lines_before:]
    assert len(logged) < 50, logged[:5]  # a warning or two, not a traceback per connection
    assert sum("out of system resource" in line for line in logged) <= 1


def _delivers(d: Daemon) -> bool:
    try:
        return d.send(mail(), timeout=5)[0] == 250
    except (OSError, smtplib.SMTPException):
        return False


def test_an_idle_session_is_closed(daemon: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", daemon.smtp), timeout=IDLE_TIMEOUT + 10) as s:
        assert _greeting(s).startswith(b"220")
        s.settimeout(IDLE_TIMEOUT + 10)
        started = time.monotonic()
        rest = b""
        while chunk := s.recv(200):
            rest += chunk
        assert time.monotonic() - started < IDLE_TIMEOUT + 5


# --------------------------------------------------------------------------- 7. reflected phishing

def _sent_to(d: Daemon, address: str) -> list[EmailMessage]:
    new = d.workdir / "sent" / "new"
    found = [message_from_bytes(p.read_bytes(), policy=default) for p in new.iterdir()] if new.is_dir() else []
    return [m for m in found if isinstance(m, EmailMessage) and address in str(m["To"])]


def test_a_forged_sender_gets_no_phishing_text_from_the_bank(daemon: Daemon) -> None:
    """The attack as it came, by SMTP: a forged From whose name is a phishing text with a
    phone number, a link in the subject; the acknowledgement to the victim carries neither."""
    raw = mail(frm='"client, votre carte est bloquée. Appelez le +33 1 84 88 12 34" <victim-smtp@example.org>',
               subject="Carte bloquée : https://kalra-secure.example/verif ou 01 84 88 12 34",
               message_id="<phishing@example.org>")
    assert daemon.send(raw, sender="victim-smtp@example.org")[0] == 250
    wait_until(lambda: _sent_to(daemon, "victim-smtp@example.org"), timeout=60, what="the acknowledgement")
    (ack,) = _sent_to(daemon, "victim-smtp@example.org")
    text = ack.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    seen = "\n".join([*(f"{k}: {v}" for k, v in ack.items()), text,
                      ack.get_body(("html",)).get_content()])  # type: ignore[union-attr]
    assert "Carte bloquée" in seen  # (decoded: the checks below read what the victim reads)
    for bait in ("+33", "84 88 12 34", "kalra-secure", "https", "est bloquée"):
        assert bait not in seen, bait
    assert "Bonjour Madame, Monsieur" in text


# --------------------------------------------------------------------------- #27 item 11. the HTTP listener

HALF_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # no blank line: never ends
HTTP_MAX_CONNECTIONS = 64  # `[http] max_connections`, its default


def _still_open(socks: list[socket.socket]) -> int:
    """How many of these connections the daemon has not closed (nothing to read, no EOF)."""
    n = 0
    for s in socks:
        s.settimeout(0)  # (with a timeout, recv would wait for data first)
        try:
            n += s.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def test_half_sent_http_requests_leave_healthz_and_ingest_working(daemon: Daemon) -> None:
    """1,010 half-sent requests to the listener held a thread and a descriptor each, queued
    scrapes at 100 % CPU and stalled ingest until SMTP clients timed out. Here 300 (over the
    daemon's 256 descriptors): /healthz answers, mail is taken, 40 scrapes at once are
    answered, and the half-sent connections are closed by the daemon."""
    lines_before = len(daemon.log.lines)
    socks: list[socket.socket] = []
    try:
        for n in range(1, MAX_FILES + 45):
            s = socket.create_connection(("127.0.0.1", daemon.http), timeout=10)
            s.sendall(HALF_REQUEST)
            socks.append(s)
            if n % 50 == 0:  # during the flood: health checks and mail go on
                assert daemon.healthz(timeout=5) < 5
            if n == 150:  # at most `[http] max_connections` held: each new one closed the oldest half-sent one
                wait_until(lambda: _still_open(socks) <= HTTP_MAX_CONNECTIONS + 8, timeout=4,
                           what="the daemon to keep no more than its cap of connections")
        assert daemon.send(mail(frm="half.sent@example.org"), timeout=10)[0] == 250
        codes: list[int] = []

        def scrape() -> None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{daemon.http}/metrics", timeout=30) as r:
                    codes.append(r.status)
            except OSError:
                codes.append(0)

        scrapers = [threading.Thread(target=scrape) for _ in range(40)]
        for t in scrapers:
            t.start()
        for t in scrapers:
            t.join(60)
        assert codes.count(200) == 40, codes
        closed = 0
        for s in socks:  # each is closed by the daemon: evicted at once, or at the request deadline
            s.settimeout(30)
            try:
                closed += s.recv(100) == b""
            except TimeoutError:
                pass
            except OSError:  # reset
                closed += 1
        assert closed == len(socks)
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: _delivers(daemon), what="mail after the flood")
    logged = daemon.log.lines[lines_before:]
    assert len(logged) < 50, logged[:5]  # no traceback per connection


# --------------------------------------------------------------------------- 11, 12. staff token addresses

def _notification_for(d: Daemon, customer: str) -> EmailMessage:
    """The agent's notification of a new complaint from `customer` (its Reply-To is a staff token)."""
    def found() -> list[EmailMessage]:
        return [m for m in _sent_to(d, "agent@kalra-plus.com") if customer in m.get_body(("plain",)).get_content()]  # type: ignore[union-attr]
    wait_until(found, timeout=60, what="the agent's notification")
    return found()[0]


def test_a_customer_on_a_staff_address_reaches_the_agent_and_forgers_make_one_alert(daemon: Daemon) -> None:
    """By SMTP, as the issue found it: the customer's reply-all to an agent's token address got
    250 and vanished; 30 forged mails to it made 30 alerts."""
    customer = "reply-all@example.org"
    assert daemon.send(mail(frm=f"Camille <{customer}>", message_id="<reply-all-1@example.org>",
                            body="Mon virement de 300 EUR du 2 novembre n'est jamais arrivé."), sender=customer)[0] == 250
    token_address = _notification_for(daemon, customer)["Reply-To"].addresses[0].addr_spec
    assert daemon.send(mail(frm=f"Camille <{customer}>", to=token_address, body="Voici mon relevé de novembre."),
                       rcpt=token_address, sender=customer)[0] == 250

    def relayed() -> bool:
        return any("Voici mon relevé de novembre." in m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
                   for m in _sent_to(daemon, "agent@kalra-plus.com"))
    wait_until(relayed, timeout=60, what="the customer's message, relayed to the agent")
    alerts_before = len(_sent_to(daemon, "supervisor@kalra-plus.com"))
    for n in range(30):
        raw = mail(frm="mallory@evil.example", to=token_address, body=f"#close\nTentative {n}")
        assert daemon.send(raw, rcpt=token_address, sender="mallory@evil.example")[0] == 250
    wait_until(lambda: len(_sent_to(daemon, "supervisor@kalra-plus.com")) > alerts_before, timeout=60,
               what="the security alert")
    time.sleep(6)  # an outbox pass (5 s) more: a second alert would be there by now
    assert len(_sent_to(daemon, "supervisor@kalra-plus.com")) == alerts_before + 1
