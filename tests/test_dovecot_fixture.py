"""The private Dovecot fixture (tests/dovecot.py) behaves like a real IMAP server."""

from __future__ import annotations

import os
import socket
import ssl
import time

import imapclient
import pytest
from imapclient.exceptions import LoginError

from tests.dovecot import Dovecot, fresh_mailbox

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

SUPPORT = "support@kalra-plus.com"


def mail(n: int = 1, subject: str = "Réclamation") -> bytes:
    return (
        f"From: client{n}@example.test\r\nTo: {SUPPORT}\r\nSubject: {subject} {n}\r\n"
        f"Message-ID: <m{n}-{time.monotonic_ns()}@example.test>\r\n\r\nbody {n}\r\n"
    ).encode()


def test_plain_login_and_default_users(dovecot: Dovecot) -> None:
    assert dovecot.host == "127.0.0.1"
    assert set(dovecot.users) >= {SUPPORT, "info@divikeys.com", "agent@kalra-plus.com"}
    with dovecot.client("info@divikeys.com") as c:
        assert b"IDLE" in c.capabilities()
        assert b"MOVE" in c.capabilities()
        assert b"UIDPLUS" in c.capabilities()
        c.select_folder("INBOX")


def test_tls_login_verifies_self_signed_cert(dovecot: Dovecot) -> None:
    ctx = ssl.create_default_context(cafile=dovecot.cert_path)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    with imapclient.IMAPClient(
        dovecot.host, dovecot.ssl_port, ssl=True, ssl_context=ctx, timeout=10
    ) as c:
        c.login(SUPPORT, dovecot.users[SUPPORT])
        c.select_folder("INBOX")
    # without the cert as trust anchor, verification fails
    with pytest.raises(ssl.SSLCertVerificationError):
        imapclient.IMAPClient(
            dovecot.host,
            dovecot.ssl_port,
            ssl=True,
            ssl_context=ssl.create_default_context(),
            timeout=10,
        )


def test_append_uids_flags_and_folders(dovecot: Dovecot) -> None:
    user, _pw = dovecot.new_user("append")
    assert dovecot.uids(user) == []
    u1 = dovecot.append(user, mail(1))
    u2 = dovecot.append(user, mail(2), flags=[b"\\Seen"])
    assert dovecot.uids(user) == [u1, u2]
    assert dovecot.uids(user, criteria="UNSEEN") == [u1]
    assert dovecot.fetch_flags(user) == {u1: (), u2: (b"\\Seen",)}

    assert dovecot.folder_count(user, "Traité") == 0
    dovecot.create_folder(user, "Traité")
    dovecot.create_folder(user, "Traité")  # idempotent
    assert dovecot.folder_count(user, "Traité") == 0
    uids = dovecot.append_many(user, (mail(i) for i in range(250)), folder="Traité")
    assert uids == list(range(1, 251))
    assert dovecot.folder_count(user, "Traité") == 250


def test_new_user_is_isolated_and_fresh_mailbox_empties(dovecot: Dovecot) -> None:
    a, pw = dovecot.new_user("iso")
    b, _ = dovecot.new_user("iso")
    assert a != b and dovecot.users[a] == pw
    dovecot.append(a, mail(1))
    dovecot.append(a, mail(2), folder="Archive")
    assert dovecot.uids(b) == []
    fresh_mailbox(dovecot, a)
    assert dovecot.uids(a) == []
    assert dovecot.folders(a) == ["INBOX"]


def test_dovecot_user_fixture(dovecot: Dovecot, dovecot_user: tuple[str, str]) -> None:
    user, password = dovecot_user
    assert dovecot.users[user] == password
    with imapclient.IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10) as c:
        c.login(user, password)
        assert c.select_folder("INBOX")[b"EXISTS"] == 0


def test_write_password_file(dovecot: Dovecot, tmp_path) -> None:
    path = dovecot.write_password_file(SUPPORT, tmp_path / "pw")
    with open(path) as f:
        assert f.read().strip() == dovecot.users[SUPPORT]
    assert os.stat(path).st_mode & 0o077 == 0


def test_idle_sees_append_from_other_connection(dovecot: Dovecot) -> None:
    user, _ = dovecot.new_user("idle")
    with dovecot.client(user) as watcher:
        watcher.select_folder("INBOX")
        watcher.idle()
        try:
            t0 = time.monotonic()
            dovecot.append(user, mail(1))
            seen = []
            while time.monotonic() - t0 < 2 and not seen:
                seen = [r for r in watcher.idle_check(timeout=0.2) if b"EXISTS" in r]
            elapsed = time.monotonic() - t0
        finally:
            watcher.idle_done()
    assert seen, "IDLE did not report the APPEND"
    assert elapsed < 2


def test_bad_password_is_login_error_quickly(dovecot: Dovecot) -> None:
    for _ in range(3):  # no growing per-IP penalty either
        t0 = time.monotonic()
        with imapclient.IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10) as c:
            with pytest.raises(LoginError):
                c.login(SUPPORT, "wrong")
        assert time.monotonic() - t0 < 1.5
    dovecot.client(SUPPORT).logout()  # the good password still works


def test_restart_keeps_mail_and_ports(dovecot_fresh: Dovecot) -> None:
    d = dovecot_fresh
    uid = d.append(SUPPORT, mail(1))
    ports, pid = (d.port, d.ssl_port), d.pid
    c = d.client(SUPPORT)
    c.select_folder("INBOX")
    d.restart()
    assert (d.port, d.ssl_port) == ports and d.pid != pid
    with pytest.raises((OSError, imapclient.exceptions.IMAPClientError)):
        c.noop()  # the old connection was dropped
    assert d.uids(SUPPORT) == [uid]


def test_reset_uidvalidity_keeps_messages(dovecot_fresh: Dovecot) -> None:
    d = dovecot_fresh
    d.append_many(SUPPORT, [mail(i) for i in range(3)])
    d.append_many(SUPPORT, [mail(i) for i in range(2)], folder="Archive")
    for folder, count in (("INBOX", 3), ("Archive", 2)):
        with d.client(SUPPORT) as c:
            before = c.select_folder(folder, readonly=True)[b"UIDVALIDITY"]
        d.reset_uidvalidity(SUPPORT, folder)
        with d.client(SUPPORT) as c:
            info = c.select_folder(folder, readonly=True)
        assert info[b"UIDVALIDITY"] != before
        assert info[b"EXISTS"] == count
        assert d.folder_count(SUPPORT, folder) == count


def test_stop_leaves_no_process(dovecot_fresh: Dovecot) -> None:
    d = dovecot_fresh
    pid = d.pid
    assert pid is not None and d.running
    d.stop()
    d.stop()  # safe twice
    assert d.pid is None and not d.running
    assert d.leftover_processes() == []  # no imap/log/auth child left behind either
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(OSError):
        socket.create_connection((d.host, d.port), timeout=1).close()
