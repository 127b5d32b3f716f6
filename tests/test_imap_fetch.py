"""The poller's FETCH reader (mailbot.channels.imap_fetch): against a real Dovecot,
it gives the same bytes and dates as imapclient; against a scripted server, it
copes with what Dovecot never sends (items after the body, a body as a quoted
string, unsolicited responses, a goodbye, a connection cut mid-mail)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from mailbot.channels import imap as imap_module
from mailbot.channels.imap_fetch import fetch_bodies
from mailbot.config import ImapConfig
from tests.dovecot import Dovecot

pytestmark = pytest.mark.dovecot

CORPUS = Path(__file__).parent / "corpora" / "sisimai" / "set-of-emails" / "maildir" / "bsd"


def tricky_mails() -> list[bytes]:
    """Mails whose bytes look like IMAP protocol, 8-bit and binary bodies, a big one."""
    head = b"From: a@example.test\r\nTo: support@kalra-plus.com\r\nSubject: s\r\n"
    return [
        head + b"\r\nBonjour,\r\nmy line ends like a literal {12}\r\n"
               b"BODY[] {3}\r\n* 1 FETCH (UID 9 BODY[] {1}\r\n)\r\nmbf1 OK done\r\n* BYE\r\n",
        head + b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nR\xe9clamation \xe0 traiter\r\n",
        head + "Content-Type: text/plain; charset=utf-8\r\n\r\nRéclamation 😀\r\n".encode(),
        head + b"Content-Type: application/octet-stream\r\n\r\n" + bytes(b for b in range(1, 256) if b not in b"\r\n") * 40 + b"\r\n",
        head + b"\r\n" + b"x" * 76 + b"\r\n" + (b"A" * 76 + b"\r\n") * 40_000,  # ~3 MB
        head + b"\r\nno final newline",
        head + b"\r\n",
    ]


def corpus_mails(n: int = 40) -> list[bytes]:
    """Real mails, with CRLF line ends (as an IMAP server gives every mail back)."""
    return [p.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            for p in sorted(CORPUS.glob("*.eml"))[:n]]


@pytest.fixture
def connect(dovecot: Dovecot, tmp_path: Path) -> Iterator[Callable[..., tuple[IMAPClient, str]]]:
    """connect(transport) -> (a logged-in client as the poller makes it, its user)."""
    made: list[IMAPClient] = []

    def factory(transport: str = "plain") -> tuple[IMAPClient, str]:
        user, pw = dovecot.new_user("fetch")
        (tmp_path / "pw").write_text(pw + "\n")
        over = {"plain": {}, "imaps": {"tls": True, "port": dovecot.ssl_port, "ca_file": dovecot.cert_path},
                "starttls": {"starttls": True, "ca_file": dovecot.cert_path}}[transport]
        cfg = ImapConfig(**{"host": dovecot.host, "port": dovecot.port, "tls": False, "username": user,
                            "password_file": str(tmp_path / "pw"), **over})
        client = imap_module.connect(cfg)
        made.append(client)
        return client, user

    yield factory
    for c in made:
        c.shutdown()


@pytest.mark.parametrize("transport", ["plain", "imaps", "starttls"])
def test_same_bytes_and_dates_as_imapclient(dovecot: Dovecot, connect, transport: str) -> None:
    client, user = connect(transport)
    raws = tricky_mails() + corpus_mails()
    dovecot.append_many(user, raws)
    client.select_folder("INBOX")
    uids = sorted(client.search(["ALL"]))
    assert len(uids) == len(raws)

    got = fetch_bodies(client, uids)

    expected = client.fetch(uids, [b"BODY.PEEK[]", b"INTERNALDATE"])
    assert sorted(got) == uids
    for uid in uids:
        assert got[uid] == (expected[uid][b"BODY[]"], expected[uid][b"INTERNALDATE"])
    assert {got[uid][0] for uid in uids} == set(raws)  # what was appended, byte for byte
    assert all(got[uid][1].tzinfo is not None for uid in uids)
    assert dovecot.fetch_flags(user) == {uid: () for uid in uids}  # PEEK: nothing marked read
    client.noop()  # the connection is in step afterwards (imapclient would raise otherwise)
    assert client.search(["ALL"]) == uids


def test_uids_no_longer_there_are_absent(dovecot: Dovecot, connect) -> None:
    client, user = connect()
    dovecot.append_many(user, tricky_mails()[:2])
    client.select_folder("INBOX")
    first, second = sorted(client.search(["ALL"]))
    with dovecot.client(user) as other:  # another session deletes one
        other.select_folder("INBOX")
        other.delete_messages([second])
        other.expunge()

    got = fetch_bodies(client, [first, second, second + 100])

    assert list(got) == [first]
    assert fetch_bodies(client, []) == {}


def test_new_mail_announced_during_the_fetch_is_kept_for_the_poller(dovecot: Dovecot, connect) -> None:
    """The poller goes back to IDLE only when no EXISTS came meanwhile: one that
    arrives inside the FETCH response must not be swallowed."""
    client, user = connect()
    dovecot.append(user, tricky_mails()[0])
    client.select_folder("INBOX")
    uid, = client.search(["ALL"])
    imap_module._forget_new_mail_signals(client)
    dovecot.append(user, tricky_mails()[1])  # from another session

    assert list(fetch_bodies(client, [uid])) == [uid]

    assert imap_module._new_mail_signalled(client)


def test_a_refused_fetch_raises_and_leaves_the_connection_usable(dovecot: Dovecot, connect) -> None:
    client, _ = connect()  # no folder selected: the server answers BAD
    with pytest.raises(IMAPClientError, match="UID FETCH failed"):
        fetch_bodies(client, [1])
    assert client.select_folder("INBOX")[b"EXISTS"] == 0


# ---------------------------------------------------------------- a scripted server
class Scripted:
    """A one-connection IMAP server on 127.0.0.1: greets, answers CAPABILITY and
    LOGOUT, and answers the n-th FETCH with `fetches[n]` (its tag put in for {tag});
    the connection is closed after a reply ending with CLOSE, and instead of a reply
    of None."""

    def __init__(self, fetches: list[bytes | None]) -> None:
        self.fetches = fetches
        self.commands: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn, conn.makefile("rb") as reader:
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1] scripted\r\n")
            while line := reader.readline():
                tag, _, command = line.rstrip(b"\r\n").partition(b" ")
                self.commands.append(command)
                verb = command.split(b" ")[0].upper()
                if verb == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
                elif verb == b"UID" and self.fetches:
                    reply = self.fetches.pop(0)
                    if reply is None:
                        return
                    conn.sendall(reply.replace(b"{tag}", tag).removesuffix(CLOSE))
                    if reply.endswith(CLOSE):
                        return
                else:
                    conn.sendall(tag + b" OK done\r\n")

    def client(self) -> IMAPClient:
        c = IMAPClient("127.0.0.1", self.port, ssl=False, timeout=5)
        c.normalise_times = False
        c.login("user", "pw")
        c.select_folder("INBOX")
        return c

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def scripted() -> Iterator[Callable[[list[bytes | None]], Scripted]]:
    servers: list[Scripted] = []

    def factory(fetches: list[bytes | None]) -> Scripted:
        servers.append(Scripted(fetches))
        return servers[-1]

    yield factory
    for s in servers:
        s.close()


CLOSE = b"\0close"
MAIL = b"Subject: hi\r\n\r\nbody {5}\r\n"
DATE = b'"04-Dec-2026 10:00:00 +0100"'
WHEN = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def lit(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def test_items_in_any_order_and_unsolicited_responses(scripted) -> None:
    server = scripted([
        b"* 3 EXPUNGE\r\n* 1 FETCH (FLAGS (\\Seen))\r\n"
        b"* 1 FETCH (BODY[] " + lit(MAIL) + b" UID 7 INTERNALDATE " + DATE + b")\r\n"
        b"* 2 FETCH (UID 8 BODY[] " + lit(b"other") + b" INTERNALDATE \"garbage\")\r\n"
        b"* OK [ALERT] note\r\n* 4 EXISTS\r\n{tag} OK Fetch completed.\r\n"])
    client = server.client()

    got = fetch_bodies(client, [7, 8])

    assert got == {7: (MAIL, WHEN), 8: (b"other", None)}
    assert got[7][1].utcoffset() == timedelta(hours=1)  # as the server gave it
    assert imap_module._new_mail_signalled(client)
    assert server.commands[-1] == b"UID FETCH 7,8 (UID INTERNALDATE BODY.PEEK[])"


def test_a_body_not_sent_as_a_literal_is_fetched_again_by_imapclient(scripted) -> None:
    server = scripted([
        b'* 1 FETCH (UID 7 INTERNALDATE ' + DATE + b' BODY[] "short")\r\n'
        b"* 2 FETCH (UID 8 INTERNALDATE " + DATE + b" BODY[] " + lit(MAIL) + b")\r\n{tag} OK done\r\n",
        b'* 1 FETCH (UID 7 INTERNALDATE ' + DATE + b' BODY[] "short")\r\n{tag} OK done\r\n'])
    client = server.client()

    got = fetch_bodies(client, [7, 8])

    assert got == {7: (b"short", WHEN), 8: (MAIL, WHEN)}
    assert server.commands[-1].upper().startswith(b"UID FETCH 7 (BODY.PEEK[] INTERNALDATE)")


@pytest.mark.parametrize("reply, error", [
    (b"* BYE shutting down\r\n", "goodbye"),
    (b"* 1 FETCH (UID 7 BODY[] {500}\r\n" + MAIL + CLOSE, "closed in the middle"),
    (None, "closed in the middle"),
    (b"+ go ahead\r\n{tag} OK done\r\n", "continuation"),
])
def test_a_connection_that_breaks_off_raises_an_abort(scripted, reply: bytes | None, error: str) -> None:
    """The poller drops the connection on an abort: nothing half-read is ever reused."""
    client = scripted([reply]).client()
    with pytest.raises(IMAPClientAbortError, match=error):
        fetch_bodies(client, [7])
