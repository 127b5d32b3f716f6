"""IDLE (RFC 2177) read line by line, and what counts as new mail.

**New mail** (`MailboxWatch`) is a ``* n EXISTS`` higher than the count the
server last gave (SELECT's, less the EXPUNGEs since), or ``* n RECENT`` with
n > 0 during IDLE. A keep-alive (``* OK Still here``), an unchanged EXISTS
repeated after every command, flag changes: not new mail. (Until issue #28
any buffered line or any EXISTS woke the poller: against Exchange's
keep-alive sent with ``+ idling`` it looped SELECT/SEARCH/IDLE/DONE ~90 times
a second.)

**IDLE is sent and read here** (`Idle`), not by imapclient's ``idle()``,
``idle_check()`` and ``idle_done()``, which turned three ordinary habits into
an error and a reconnect: untagged data before the ``+`` continuation
(``idle()`` raises), a server ending IDLE itself with a tagged OK
(``idle_check()`` cannot parse a tagged line, and DONE then gets BAD), and a
line split across packets (``idle_check()`` reads a non-blocking socket and
takes half a line for an error). `Idle` waits until something can be read —
in imaplib's buffer, in the TLS layer, or on the socket — then reads whole
lines with the connection's normal read timeout, so a split line is simply
waited for.

**The loop detector** (`WakeUps`): should wake-ups keep bringing no mail
anyway, the poller falls back to one pass per ``poll_interval`` and says so.

Both use imaplib's documented methods (`send`, `readline`, `read`,
`response`) on the connection imapclient drives, reached in one place,
`_conn` (imapclient calls it ``_imap``); tests/test_imap_commands.py fails
loudly if that changes.
"""

from __future__ import annotations

import imaplib
import itertools
import logging
import re
import select
import ssl
import time
from collections.abc import Sequence

from imapclient import IMAPClient

_TAGS = itertools.count(1)  # "idle1", …: imaplib's own tags are upper-case letters and digits
_UPDATE = re.compile(rb"\* (\d+) (EXISTS|EXPUNGE|RECENT)\b", re.IGNORECASE)
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


def _conn(client: IMAPClient) -> imaplib.IMAP4:
    """The imaplib connection under imapclient (only its public methods are used)."""
    return client._imap  # noqa: SLF001


def _values(response: tuple[str, Sequence[bytes | None]]) -> list[bytes]:
    return [v for v in response[1] if v is not None]


class MailboxWatch:
    """The selected folder's message count as the server told it, to tell new mail apart."""

    def __init__(self) -> None:
        self.exists = 0
        self.new_mail = False  # a signal of new mail since the last SELECT
        self.signal = ""  # what was taken for new mail, for the log

    def selected(self, client: IMAPClient, exists: int) -> None:
        """After SELECT: its EXISTS is the count; what imaplib kept so far is old news."""
        conn = _conn(client)
        for code in ("EXISTS", "EXPUNGE", "RECENT"):
            conn.response(code)
        self.exists, self.new_mail, self.signal = exists, False, ""

    def after_commands(self, client: IMAPClient) -> bool:
        """Did the responses to the commands since SELECT announce new mail?

        imaplib keeps the EXISTS and EXPUNGE responses of each type together, so
        their order is lost: new mail is assumed when any EXISTS exceeds the
        count less every EXPUNGE (a new mail always does), and the count kept is
        the lowest it can be (a later EXISTS then errs towards one more pass)."""
        conn = _conn(client)
        expunged = len(_values(conn.response("EXPUNGE")))
        counts = [int(v) for v in _values(conn.response("EXISTS")) if v.isdigit()]
        conn.response("RECENT")  # outside IDLE it only repeats what EXISTS says
        floor = self.exists - expunged
        if counts and max(counts) > floor:
            self._new(f"* {max(counts)} EXISTS (count was {floor})")
        self.exists = max(0, counts[-1] - expunged) if counts else max(0, floor)
        return self.new_mail

    def update(self, kind: bytes, number: int) -> bool:
        """One EXISTS/EXPUNGE/RECENT read during IDLE, in the order sent: new mail?"""
        kind = kind.upper()
        if kind == b"EXPUNGE":
            self.exists = max(0, self.exists - 1)
            return False
        if kind == b"EXISTS":
            higher, before = number > self.exists, self.exists
            self.exists = number
            if higher:
                self._new(f"* {number} EXISTS (count was {before})")
            return higher
        if number > 0:  # RECENT
            self._new(f"* {number} RECENT")
            return True
        return False

    def _new(self, signal: str) -> None:
        self.new_mail, self.signal = True, signal


class Idle:
    """One IDLE command: `start`, then `wait` until it gives a reason to stop, then `done`.

    Reasons: "new mail", "ended by the server" (a tagged OK), "refused: …" (a
    tagged NO/BAD). ``* BYE`` and the connection closing raise ConnectionError.
    """

    def __init__(self, client: IMAPClient, watch: MailboxWatch) -> None:
        self.conn = _conn(client)
        self.watch = watch
        self.tag = b"idle%d" % next(_TAGS)
        self.idling = False
        self.running = False  # IDLE sent, its tagged answer not yet read

    def start(self) -> str | None:
        """Send IDLE and read up to the ``+``: None once idling, else the reason it is not.
        Untagged data before the ``+`` is read like any other."""
        self.conn.send(self.tag + b" IDLE\r\n")
        self.running = True
        reason = None
        while self.running:
            line = self._line()
            if line.startswith(b"+"):
                self.idling = True
                return reason  # "new mail" already (announced before the "+"): the caller ends it
            reason = self._handle(line) or reason
        return reason

    def wait(self, timeout: float) -> str | None:
        """Read what the server sends within `timeout` seconds; a reason to stop, or None."""
        if not self._readable(timeout):
            return None
        reason = None
        while self.running:
            reason = self._handle(self._line()) or reason
            if not self._readable(0):
                break
        return reason

    def done(self) -> None:
        """End IDLE (DONE) unless the server ended it; read up to its tagged answer."""
        if self.running:
            self.conn.send(b"DONE\r\n")
            self.idling = False
            while self.running:
                self._handle(self._line())

    def _handle(self, line: bytes) -> str | None:
        if line.startswith(self.tag + b" "):
            self.running = self.idling = False
            status = line[len(self.tag) + 1:].split(b" ", 1)[0].upper()
            return "ended by the server" if status == b"OK" else f"refused: {_text(line)}"
        if line[:5].upper() == b"* BYE":
            raise ConnectionError(f"server closed the connection ({_text(line)})")
        m = _UPDATE.match(line)
        if m is not None and self.watch.update(m.group(2), int(m.group(1))):
            return "new mail"
        return None  # keep-alives, flag changes, alerts, a stray "+": nothing to do

    def _line(self) -> bytes:
        line = self.conn.readline()
        if not line.endswith(b"\n"):
            raise ConnectionError("server closed the connection during IDLE")
        while (m := _LITERAL.search(line)) is not None:  # a literal inside a FETCH (flags, labels)
            size = int(m.group(1))
            literal = self.conn.read(size)
            rest = self.conn.readline()
            if len(literal) != size or not rest:
                raise ConnectionError("server closed the connection during IDLE")
            line = line[:m.start()] + rest
        return line.rstrip(b"\r\n")

    def _readable(self, timeout: float) -> bool:
        """Is a line there, or coming? imaplib's buffer and TLS's are looked at first:
        a poll of the socket does not see what they already hold."""
        if _buffered(self.conn):
            return True
        sock = self.conn.socket()
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(timeout * 1000))


def _buffered(conn: imaplib.IMAP4) -> bool:
    """Has imaplib already read server data into its buffer? (A peek that does not wait.)"""
    reader = getattr(conn, "file", None)
    if not hasattr(reader, "peek"):
        return False
    sock = conn.socket()
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return bool(reader.peek())
    except OSError:  # nothing buffered and nothing to read (TLS: SSLWantReadError)
        return False
    finally:
        sock.settimeout(timeout)


def _text(line: bytes) -> str:
    return line.decode("ascii", "replace")[:200]


class WakeUps:
    """The loop detector: passes that found no new mail, each soon after the one before.

    A pass that finds nothing after a wake-up happens (a mail deleted by another
    client before we looked); a string of them is a server whose signals we
    misread, or a bug, and each costs the server a SELECT, a SEARCH and an IDLE.
    After `limit` such passes in a row, each less than `interval` after the one
    before, `pause` answers `interval` — the poller then waits that long before
    every next pass, without IDLE — until a pass finds mail. Logged once, at
    WARNING, with what woke the poller; the return to normal at INFO.
    """

    def __init__(self, interval: float, limit: int = 3,
                 log: logging.Logger | logging.LoggerAdapter | None = None, extra: dict | None = None) -> None:
        self.interval = interval
        self.limit = limit
        self.empty = 0  # passes without new mail in a row, each soon after the one before
        self.throttled = False
        self._last: float | None = None
        self._log = log or logging.getLogger("mailbot.imap")
        self._extra = extra or {}

    def pause(self, found: bool, woken_by: str, now: float | None = None) -> float:
        """After the passes of a cycle: how long to wait before the next (0: go on)."""
        now = time.monotonic() if now is None else now
        fast = self._last is not None and now - self._last < self.interval
        self._last = now
        if found:
            if self.throttled:
                self._log.info("imap wake-ups bring mail again: back to IDLE",
                               extra={**self._extra, "event": "imap.wakeups_normal"})
            self.empty, self.throttled = 0, False
            return 0.0
        self.empty = self.empty + 1 if fast or self.throttled else 0
        if self.empty >= self.limit and not self.throttled:
            self.throttled = True
            self._log.warning(
                "imap: %d passes in a row found no new mail, less than %g s apart (last woken by: %s); "
                "polling every %g s until mail comes", self.empty, self.interval, woken_by, self.interval,
                extra={**self._extra, "event": "imap.wakeups_throttled", "woken_by": woken_by})
        return self.interval if self.throttled else 0.0
