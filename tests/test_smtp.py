"""The SMTP/LMTP listener over real sockets, with smtplib as the peer."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.channels.smtp import start_listener
from mailbot.models import Case, Inbound, Outbox, Quarantine
from tests.mails import mail
from tests.procs import free_port, start_daemon

pytestmark = pytest.mark.slow  # processes, servers or corpora: left out by `make test-fast`


@contextmanager
def listening(app: App) -> Iterator[int]:
    """Run the listener on its own event loop thread; yield its port."""
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(max_workers=8)
    started = threading.Event()
    holder: dict[str, object] = {}

    def runner() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            server, _handler = await start_listener(app, executor)
            holder["server"] = server
            started.set()

        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    assert started.wait(10)
    server = holder["server"]
    try:
        yield server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    finally:
        async def shutdown() -> None:
            server.close()  # type: ignore[attr-defined]
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        executor.shutdown(wait=True)


def count(app: App, model: type) -> int:
    with db.session_scope(app.engine) as s:
        return s.exec(select(func.count()).select_from(model)).one()


def test_mail_to_a_brand_address_is_accepted_after_commit(app: App) -> None:
    with listening(app) as port, smtplib.SMTP("127.0.0.1", port) as c:
        refused = c.sendmail("marie@example.org", ["support@kalra-plus.com"], mail())
        assert refused == {}
        code, msg = c.noop()
        assert code == 250
    assert count(app, Case) == 1 and count(app, Inbound) == 1


def test_unknown_recipient_gets_550(app: App) -> None:
    with listening(app) as port, smtplib.SMTP("127.0.0.1", port) as c:
        c.ehlo()
        c.mail("marie@example.org")
        code, msg = c.rcpt("nobody@kalra-plus.com")
        assert code == 550 and b"5.1.1" in msg
        code, _ = c.rcpt("support+anything@kalra-plus.com")
        assert code == 250


def test_size_is_advertised_and_oversize_mail_refused_even_without_size(make_app: Callable[..., App]) -> None:
    app = make_app(smtp={"max_message_size": 10_000, "port": 0})
    with listening(app) as port, smtplib.SMTP("127.0.0.1", port) as c:
        c.ehlo()
        assert c.has_extn("size") and c.esmtp_features["size"] == "10000"
        c.mail("marie@example.org")  # no SIZE= parameter: the client ignores the limit
        c.rcpt("support@kalra-plus.com")
        code, _ = c.data(mail(body="x" * 20_000))
        assert code == 552
    assert count(app, Inbound) == 0


def test_database_down_answers_451_and_nothing_is_half_recorded(app: App) -> None:
    good_engine = app.engine
    app.engine = db.make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
    try:
        with listening(app) as port, smtplib.SMTP("127.0.0.1", port) as c:
            with pytest.raises(smtplib.SMTPDataError) as err:
                c.sendmail("marie@example.org", ["support@kalra-plus.com"], mail())
            assert err.value.smtp_code == 451 and b"4.3.0" in err.value.smtp_error
    finally:
        app.engine = good_engine
    assert count(app, Inbound) == 0
    with listening(app) as port, smtplib.SMTP("127.0.0.1", port) as c:  # the MTA retries later
        c.sendmail("marie@example.org", ["support@kalra-plus.com"], mail())
    assert count(app, Case) == 1


def test_unparseable_mail_is_still_250_and_quarantined(app: App) -> None:
    with listening(app) as port, smtplib.SMTP("127.0.0.1", port) as c:
        assert c.sendmail("x@example.org", ["support@kalra-plus.com"], b"\x00\x00\x00") == {}
    assert count(app, Quarantine) == 1 and count(app, Case) == 0


def test_envelope_recipient_decides_the_brand_for_bcc(app: App) -> None:
    with listening(app) as port, smtplib.SMTP("127.0.0.1", port) as c:
        c.sendmail("marie@example.org", ["info@divikeys.com"], mail(to="friends@example.org"))
    with db.session_scope(app.engine) as s:
        assert s.exec(select(Case.brand)).one() == "divikeys"


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_50_concurrent_clients_each_sending_20_mails_are_recorded_once(app: App) -> None:
    def client(n: int) -> int:
        sent = 0
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
            for i in range(20):
                c.sendmail(f"c{n}@example.org", ["support@kalra-plus.com"],
                           mail(frm=f"c{n}@example.org", message_id=f"<c{n}-{i}@example.org>"))
                sent += 1
        return sent

    with listening(app) as port, ThreadPoolExecutor(50) as pool:
        assert sum(pool.map(client, range(50))) == 1000
    assert count(app, Inbound) == 1000 and count(app, Case) == 1000
    with db.session_scope(app.engine) as s:
        refs = s.exec(select(Case.ref)).all()
        assert len(set(refs)) == 1000
        acks = s.exec(select(Outbox.to_addr).where(Outbox.kind == "acknowledgement")).all()
        # ack_limit per sender per hour (default 5) bounds each sender's acknowledgements.
        assert all(acks.count(a) <= 5 for a in set(acks)) and len(set(acks)) == 50


def test_lmtp_answers_once_per_recipient(make_app: Callable[..., App]) -> None:
    app = make_app(smtp={"lmtp": True, "port": 0})
    with listening(app) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        f = sock.makefile("rwb")

        def cmd(line: bytes) -> list[bytes]:
            if line:
                f.write(line + b"\r\n")
                f.flush()
            out = [f.readline()]
            while out[-1][3:4] == b"-":
                out.append(f.readline())
            return out

        assert cmd(b"")[0].startswith(b"220")
        assert cmd(b"LHLO test")[-1].startswith(b"250")
        assert cmd(b"MAIL FROM:<marie@example.org>")[0].startswith(b"250")
        assert cmd(b"RCPT TO:<support@kalra-plus.com>")[0].startswith(b"250")
        assert cmd(b"RCPT TO:<info@divikeys.com>")[0].startswith(b"250")
        assert cmd(b"DATA")[0].startswith(b"354")
        f.write(mail(to="support@kalra-plus.com, info@divikeys.com").replace(b"\r\n.", b"\r\n..") + b".\r\n")
        f.flush()
        replies = [f.readline(), f.readline()]
        assert all(r.startswith(b"250") for r in replies)
    assert count(app, Case) == 2


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "tls.crt", tmp / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_starttls_with_a_configured_certificate(make_app: Callable[..., App], tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    app = make_app(smtp={"tls_cert": str(cert), "tls_key": str(key), "require_starttls": True, "port": 0})
    ctx = ssl.create_default_context(cafile=str(cert))
    with listening(app) as port, smtplib.SMTP("127.0.0.1", port) as c:
        c.ehlo()
        assert c.has_extn("starttls")
        c.starttls(context=ctx)
        c.ehlo()
        assert c.sendmail("marie@example.org", ["support@kalra-plus.com"], mail()) == {}
    assert count(app, Case) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_mail_is_stored_when_the_daemon_is_killed_right_after_250(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    proc = start_daemon(tmp_path, port)
    try:
        with smtplib.SMTP("127.0.0.1", port) as c:
            c.sendmail("marie@example.org", ["support@kalra-plus.com"], mail(message_id="<killed@example.org>"))
            os.kill(proc.pid, signal.SIGKILL)  # the instant after 250
    finally:
        proc.kill()
        proc.wait(10)
    engine = db.make_engine(f"sqlite:///{tmp_path}/mailbot.db")
    with db.session_scope(engine) as s:
        assert s.exec(select(Inbound.message_id)).all() == ["<killed@example.org>"]
        assert len(s.exec(select(Case)).all()) == 1
    engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sigterm_drains_and_exits_0(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    proc = start_daemon(tmp_path, port)
    with smtplib.SMTP("127.0.0.1", port) as c:
        c.sendmail("marie@example.org", ["support@kalra-plus.com"], mail())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert '"msg": "stopped"' in err
    assert "Bonjour" not in err  # logs carry no bodies


# --------------------------------------------------------------------------- #27 item 7: mails in transit

def _in_data(port: int, sender: str) -> smtplib.SMTP:
    """A session that has sent DATA (its reply not read yet)."""
    c = smtplib.SMTP("127.0.0.1", port, timeout=60)
    c.ehlo()
    c.mail(sender)
    c.rcpt("support@kalra-plus.com")
    c.putcmd("data")
    return c


def _nothing_to_read(c: smtplib.SMTP, wait: float) -> bool:
    assert c.sock is not None
    c.sock.settimeout(wait)
    try:
        c.sock.recv(1, socket.MSG_PEEK)  # a reply (or the end of the connection): not waiting
        return False
    except TimeoutError:
        return True
    finally:
        c.sock.settimeout(60)


def _body(c: smtplib.SMTP, raw: bytes) -> tuple[int, bytes]:
    c.send(raw.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n") + b"\r\n.\r\n")
    return c.getreply()


def test_a_mail_over_the_cap_of_mails_in_transit_waits_for_its_turn(make_app: Callable[..., App]) -> None:
    """With `max_data_sessions = 1`, a second DATA gets no 354 while the first mail is still
    coming in (its bytes are not read into memory); it gets it once the first is answered."""
    app = make_app(smtp={"port": 0, "max_data_sessions": 1, "data_wait": 120})
    with listening(app) as port:
        first = _in_data(port, "first@example.org")
        assert first.getreply()[0] == 354
        first.send(b"From: first@example.org\r\nTo: support@kalra-plus.com\r\nSubject: un\r\n\r\n"
                   + (b"x" * 76 + b"\r\n") * 1000)
        second = _in_data(port, "second@example.org")
        assert _nothing_to_read(second, 2.0)  # no 354: waiting for its turn
        assert _body(first, b"\r\nfin")[0] == 250
        assert second.getreply()[0] == 354
        assert _body(second, mail(frm="second@example.org"))[0] == 250
        first.quit()
        second.quit()
    assert count(app, Case) == 2


def test_a_mail_over_the_cap_hears_451_when_its_turn_does_not_come(make_app: Callable[..., App]) -> None:
    """`data_wait` passed with the only turn taken: 451 4.3.2 (its MTA retries), nothing read;
    the same session is served once the turn is free."""
    app = make_app(smtp={"port": 0, "max_data_sessions": 1, "data_wait": 0.5})
    with listening(app) as port:
        first = _in_data(port, "first@example.org")
        assert first.getreply()[0] == 354
        first.send(b"From: first@example.org\r\nTo: support@kalra-plus.com\r\nSubject: un\r\n\r\n")
        second = _in_data(port, "second@example.org")
        code, reply = second.getreply()
        assert (code, reply[:5]) == (451, b"4.3.2"), reply
        assert _body(first, b"fin")[0] == 250
        second.putcmd("data")
        assert second.getreply()[0] == 354
        assert _body(second, mail(frm="second@example.org"))[0] == 250
        first.quit()
        second.quit()
    assert count(app, Case) == 2
