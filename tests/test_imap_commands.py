"""The poller's IMAP commands (mailbot.channels.imap_commands) and IDLE reader
(mailbot.channels.imap_idle): against a real Dovecot, mails come back byte for
byte and new mail announced during a command is noticed; against the scripted
server, refusals are narrowed down; the UID sets are tables of literals."""

from __future__ import annotations

import imaplib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from mailbot.channels import imap as imap_module
from mailbot.channels import imap_idle
from mailbot.channels.imap_commands import fetch, fetch_bodies, uid_chunks, uid_ranges
from mailbot.channels.imap_idle import Idle, MailboxWatch
from mailbot.config import ImapConfig
from tests.dovecot import Dovecot
from tests.imapserver import REFUSED, ScriptedImap

CORPUS = Path(__file__).parent / "corpora" / "sisimai" / "set-of-emails" / "maildir" / "bsd"


@pytest.mark.parametrize(("uids", "ranges"), [
    ([], []),
    ([7], ["7"]),
    ([1, 2, 3, 5, 7, 8], ["1:3", "5", "7:8"]),
    ([9, 3, 4, 4, 10], ["3:4", "9:10"]),
    (list(range(100_000, 102_000)), ["100000:101999"]),
])
def test_uid_ranges(uids: list[int], ranges: list[str]) -> None:
    assert uid_ranges(uids) == ranges


def test_uid_chunks_keep_each_fetch_line_short() -> None:
    uids = list(range(100_000, 102_000))
    chunks = list(uid_chunks(uids))
    assert [u for c in chunks for u in c] == uids
    assert max(len(",".join(map(str, c))) for c in chunks) <= 900
    assert list(uid_chunks([1, 2, 3], limit=4)) == [[1, 2], [3]]


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


@pytest.mark.dovecot
@pytest.mark.parametrize("transport", ["plain", "imaps", "starttls"])
def test_mails_come_back_byte_for_byte_with_their_dates(dovecot: Dovecot, connect, transport: str) -> None:
    client, user = connect(transport)
    raws = tricky_mails() + corpus_mails()
    dovecot.append_many(user, raws)
    client.select_folder("INBOX")
    uids = sorted(client.search(["ALL"]))

    got = fetch_bodies(client, uids)

    assert sorted(got.mails) == uids and got.refused == {}
    assert sorted(raw for raw, _ in got.mails.values()) == sorted(raws)
    assert all(date is not None and date.tzinfo is not None for _, date in got.mails.values())
    assert dovecot.fetch_flags(user) == {uid: () for uid in uids}  # PEEK: nothing marked read


@pytest.mark.dovecot
def test_uids_no_longer_there_are_neither_mails_nor_refused(dovecot: Dovecot, connect) -> None:
    client, user = connect()
    dovecot.append_many(user, tricky_mails()[:2])
    client.select_folder("INBOX")
    first, second = sorted(client.search(["ALL"]))
    with dovecot.client(user) as other:  # another session deletes one
        other.select_folder("INBOX")
        other.delete_messages([second])
        other.expunge()

    got = fetch_bodies(client, [first, second, second + 100])

    assert list(got.mails) == [first] and got.refused == {}


@pytest.mark.dovecot
def test_new_mail_announced_during_a_fetch_is_noticed(dovecot: Dovecot, connect) -> None:
    """The poller goes back to IDLE only when no new mail was announced meanwhile: an
    EXISTS that arrives inside a command's answer must not be swallowed."""
    client, user = connect()
    dovecot.append(user, tricky_mails()[0])
    watch = MailboxWatch()
    info = client.select_folder("INBOX")
    watch.selected(client, info[b"EXISTS"])
    uid, = client.search(["ALL"])
    assert not watch.after_commands(client)
    dovecot.append(user, tricky_mails()[1])  # from another session

    assert list(fetch_bodies(client, [uid]).mails) == [uid]

    assert watch.after_commands(client) and "EXISTS" in watch.signal
    watch.selected(client, client.select_folder("INBOX")[b"EXISTS"])  # the next pass
    assert not watch.after_commands(client)


@pytest.mark.dovecot
def test_idle_reads_on_the_connection_imapclient_drives(dovecot: Dovecot, connect) -> None:
    """`imap_idle` reaches imaplib under imapclient in one place (`_conn`): this fails
    loudly if imapclient stops keeping it there."""
    client, user = connect()
    conn = imap_idle._conn(client)
    assert isinstance(conn, imaplib.IMAP4) and hasattr(conn.file, "peek")
    watch = MailboxWatch()
    watch.selected(client, client.select_folder("INBOX")[b"EXISTS"])
    idle = Idle(client, watch)
    assert idle.start() is None and idle.wait(0.05) is None
    dovecot.append(user, tricky_mails()[1])
    assert idle.wait(5) == "new mail"
    idle.done()
    assert client.noop()  # in step afterwards


def test_a_refused_fetch_is_narrowed_down_to_the_refused_mail(scripted_imap: Callable[..., ScriptedImap]) -> None:
    server = scripted_imap()
    uids = [server.append(b"Subject: %d\r\n\r\nbody\r\n" % i, broken="no" if i in (5, 6) else None)
            for i in range(1, 21)]
    client = IMAPClient(server.host, server.port, ssl=False, timeout=5)
    client.login("u", "pw")
    client.select_folder("INBOX")

    got = fetch(client, uids, [b"BODY.PEEK[]"])

    assert sorted(got.data) == [u for u in uids if u not in (5, 6)]
    assert got.refused == {5: REFUSED.decode(), 6: REFUSED.decode()}
    assert server.verbs().count("UID FETCH") < len(uids)  # halves, not one command per mail
    client.logout()
