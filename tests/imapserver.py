"""A scripted IMAP server for tests: real servers' habits, on demand.

`ScriptedImap` serves one in-memory mailbox on 127.0.0.1 and speaks the part
of IMAP4rev1 that the poller and `mailbot imap check` use (LOGIN, SELECT and
EXAMINE, LIST, CREATE, UID SEARCH, UID FETCH, UID STORE, UID MOVE/COPY,
EXPUNGE and UID EXPUNGE, IDLE, NOOP, LOGOUT). Where real servers legally
differ — Gmail's extra FETCH items, Exchange's keep-alives, Courier without
MOVE, a message the store cannot render — it answers the way a `Habits`
says, so a test replays one server's habit against the real poller. Every
command is recorded with the time it arrived (`commands`), so a test can count
what a client sent, and how fast.

Not a general server: one user (any password), flat folders, the search keys
and FETCH items mailbot sends. Messages can be made unreadable one by one
(`append(..., broken=...)`), as a damaged store makes them.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest

CRLF = b"\r\n"
REFUSED = b"Some messages could not be FETCHed (Failure)"  # Gmail's words


@dataclass(frozen=True)
class Habits:
    """How the server answers where the protocol leaves a choice (defaults: as Dovecot)."""

    capabilities: tuple[str, ...] = ("IMAP4rev1", "IDLE", "MOVE", "UIDPLUS", "LITERAL+")
    # FETCH
    body_first: bool = False  # BODY[] before UID and INTERNALDATE in each response
    gmail_items: bool = False  # X-GM-THRID, X-GM-MSGID and X-GM-LABELS (a label holding " UID n") first
    split_fetch: bool = False  # INTERNALDATE in one FETCH response, BODY[] in another (same message)
    quoted_bodies: bool = False  # a body that fits a quoted string is sent as one
    unsolicited_in_fetch: bool = False  # ALERT, EXPUNGE, EXISTS, FETCH FLAGS inside a FETCH reply
    bye_in_fetch: int | None = None  # the n-th body FETCH: one response, then * BYE and close
    cut_in_literal: int | None = None  # the n-th body FETCH: half a literal, then close
    write_size: int | None = None  # every response cut into writes of this many bytes
    line_limit: int | None = None  # longer command lines are refused (BAD)
    refusal: bytes = REFUSED  # the tagged NO's text when a FETCH holds a broken message
    # SEARCH
    exists_after_search: bool = False  # an unchanged "* n EXISTS" after every SEARCH
    # IDLE
    idle_continuation: bytes = b"+ idling\r\n"  # written at once (Exchange adds "* OK Still here")
    before_continuation: bytes = b""  # untagged data sent before the "+"
    idle_keepalive: float | None = None  # "* OK Still here" every so many seconds
    idle_ends_after: float | None = None  # the server ends IDLE itself with a tagged OK
    idle_split_writes: bool = False  # lines in IDLE written a byte at a time, 5 ms apart
    phantom_exists: float | None = None  # a buggy server: a higher EXISTS this often, no new mail
    # All: a delay before each tagged response (a slow server)
    delay: float = 0.0


@dataclass
class Message:
    uid: int
    raw: bytes
    internaldate: datetime
    flags: set[bytes] = field(default_factory=set)
    broken: str | None = None  # "no": any FETCH holding it is refused; "nil": BODY[] NIL;
    # "absent": left out of BODY[] replies; "no-body": only BODY[] is refused;
    # "vanishes": another client deletes it during the first body FETCH that is not for it


@dataclass(frozen=True)
class Command:
    at: float  # time.monotonic()
    session: int
    line: bytes

    @property
    def verb(self) -> str:
        if self.line.upper() == b"DONE":
            return "DONE"
        parts = self.line.split(b" ")
        verb = parts[1] if len(parts) > 1 else b""
        if verb.upper() == b"UID" and len(parts) > 2:
            verb = b"UID " + parts[2]
        return verb.decode("ascii", "replace").upper()


class _Folder:
    def __init__(self, uidvalidity: int) -> None:
        self.messages: list[Message] = []
        self.uidvalidity = uidvalidity
        self.uidnext = 1


class ScriptedImap:
    """The server; a context manager. `port` is where it listens."""

    def __init__(self, habits: Habits = Habits(), first_uid: int = 1) -> None:
        self.habits = habits
        self.commands: list[Command] = []
        self.folders: dict[str, _Folder] = {"INBOX": _Folder(1000)}
        self.folders["INBOX"].uidnext = first_uid
        self.changed = threading.Condition()
        self.body_fetches = 0
        self.logins = 0
        self._sessions: list[_Session] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", self._listener.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True, name="scripted-imap")
        self._thread.start()

    # -- what tests do ----------------------------------------------------------
    def append(self, raw: bytes, folder: str = "INBOX", *, broken: str | None = None,
               internaldate: datetime | None = None, flags: tuple[bytes, ...] = ()) -> int:
        with self.changed:
            f = self._folder(folder, create=True)
            uid = f.uidnext
            f.uidnext += 1
            f.messages.append(Message(uid, raw, internaldate or datetime.now(UTC).replace(microsecond=0),
                                      set(flags), broken))
            self.changed.notify_all()
        return uid

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.changed:
            f = self.folders.get(folder)
            return [m.uid for m in f.messages] if f else []

    def folder_count(self, folder: str) -> int:
        return len(self.uids(folder))

    def raws(self, folder: str = "INBOX") -> list[bytes]:
        with self.changed:
            f = self.folders.get(folder)
            return [m.raw for m in f.messages] if f else []

    def flags(self, folder: str = "INBOX") -> dict[int, set[bytes]]:
        with self.changed:
            f = self.folders.get(folder)
            return {m.uid: set(m.flags) for m in f.messages} if f else {}

    def repair(self, uid: int, folder: str = "INBOX") -> None:
        """The store heals: the message reads normally from now on."""
        with self.changed:
            for m in self._folder(folder).messages:
                if m.uid == uid:
                    m.broken = None

    def reset_uidvalidity(self, folder: str = "INBOX") -> None:
        """As after a restore: new UIDVALIDITY, every message numbered afresh."""
        with self.changed:
            f = self._folder(folder)
            f.uidvalidity += 1
            for i, m in enumerate(f.messages, 1):
                m.uid = i
            f.uidnext = len(f.messages) + 1

    def set_habits(self, **changes: object) -> None:
        self.habits = replace(self.habits, **changes)  # type: ignore[arg-type]

    def commands_per_second(self, since: float, verbs: tuple[str, ...] = ()) -> float:
        now = time.monotonic()
        n = sum(1 for c in list(self.commands) if c.at >= since and (not verbs or c.verb in verbs))
        return n / max(now - since, 1e-6)

    def verbs(self, since: float = 0.0) -> list[str]:
        return [c.verb for c in list(self.commands) if c.at >= since]

    def drop_connections(self) -> None:
        """Close every client connection at once (as a server restart does)."""
        for s in list(self._sessions):
            s.close()

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        except OSError:
            pass
        self._listener.close()
        self.drop_connections()
        with self.changed:
            self.changed.notify_all()
        self._thread.join(5)

    def __enter__(self) -> ScriptedImap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------
    def _folder(self, name: str, create: bool = False) -> _Folder:
        key = "INBOX" if name.upper() == "INBOX" else name
        if key not in self.folders:
            if not create:
                raise KeyError(name)
            self.folders[key] = _Folder(2000 + len(self.folders))
        return self.folders[key]

    def _accept(self) -> None:
        n = 0
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            n += 1
            session = _Session(self, conn, n)
            self._sessions.append(session)
            threading.Thread(target=session.serve, daemon=True, name=f"scripted-imap-{n}").start()


_SET = re.compile(rb"^[0-9:*,]+$")


def _in_set(uid: int, spec: bytes, top: int) -> bool:
    for part in spec.split(b","):
        lo, _, hi = part.partition(b":")
        a = top if lo == b"*" else int(lo)
        b = a if not hi else top if hi == b"*" else int(hi)
        if min(a, b) <= uid <= max(a, b):
            return True
    return False


def _quote(data: bytes) -> bytes | None:
    if b"\r" in data or b"\n" in data or b"\0" in data or any(c > 127 for c in data):
        return None
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _date(when: datetime) -> bytes:
    return when.strftime("%d-%b-%Y %H:%M:%S %z").encode()


class _Disconnect(Exception):
    pass


class _Session:
    def __init__(self, server: ScriptedImap, conn: socket.socket, n: int) -> None:
        self.server = server
        self.conn = conn
        self.n = n
        self.buf = b""
        self.selected: str | None = None
        self.view: list[int] = []  # the UIDs this session was told about, in sequence order
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def habits(self) -> Habits:
        return self.server.habits

    # -- I/O -------------------------------------------------------------------------
    def send(self, data: bytes, size: int | None = None, pause: float = 0.0) -> None:
        size = size or self.habits.write_size
        if not size:
            self.conn.sendall(data)
            return
        for i in range(0, len(data), size):
            self.conn.sendall(data[i:i + size])
            if pause:
                time.sleep(pause)

    def readable(self, timeout: float) -> bool:
        return bool(self.buf) or bool(select.select([self.conn], [], [], timeout)[0])

    def readline(self) -> bytes:
        while CRLF not in self.buf:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise _Disconnect
            self.buf += chunk
        line, _, self.buf = self.buf.partition(CRLF)
        return line

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise _Disconnect
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_command(self) -> bytes:
        """One command line, with its literals inlined (as quoted text)."""
        line = self.readline()
        while (m := re.search(rb"\{(\d+)(\+?)\}$", line)) is not None:
            if not m.group(2):
                self.send(b"+ go ahead\r\n")
            literal = self.read_exact(int(m.group(1)))
            line = line[:m.start()] + _quote(literal) if _quote(literal) else line[:m.start()] + literal
            line += self.readline()
        return line

    def close(self) -> None:
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()

    # -- the loop ----------------------------------------------------------------------
    def serve(self) -> None:
        try:
            caps = " ".join(self.habits.capabilities).encode()
            self.send(b"* OK [CAPABILITY " + caps + b"] scripted server ready\r\n")
            while True:
                line = self.read_command()
                self.server.commands.append(Command(time.monotonic(), self.n, line))
                tag, _, rest = line.partition(b" ")
                if self.habits.line_limit and len(line) + 2 > self.habits.line_limit:
                    self.send(tag + b" BAD Command line too long\r\n")
                    continue
                if not self.handle(tag, rest):
                    return
        except (_Disconnect, OSError):
            return
        finally:
            self.close()
            if self in self.server._sessions:
                self.server._sessions.remove(self)

    def ok(self, tag: bytes, text: bytes = b"done") -> None:
        if self.habits.delay:
            time.sleep(self.habits.delay)
        self.send(tag + b" OK " + text + CRLF)

    def handle(self, tag: bytes, rest: bytes) -> bool:
        verb, _, args = rest.partition(b" ")
        verb = verb.upper()
        if verb == b"UID":
            verb, _, args = args.partition(b" ")
            verb = b"UID " + verb.upper()
        handler = {
            b"CAPABILITY": self.capability, b"LOGIN": self.login, b"NOOP": self.noop,
            b"SELECT": self.select, b"EXAMINE": self.select, b"LIST": self.list,
            b"CREATE": self.create, b"UID SEARCH": self.search, b"UID FETCH": self.fetch,
            b"UID STORE": self.store, b"UID MOVE": self.move, b"UID COPY": self.copy,
            b"EXPUNGE": self.expunge, b"UID EXPUNGE": self.expunge, b"IDLE": self.idle,
            b"CLOSE": self.close_folder,
        }.get(verb)
        if verb == b"LOGOUT":
            self.send(b"* BYE logging out\r\n" + tag + b" OK bye\r\n")
            return False
        if handler is None:
            self.send(tag + b" BAD unknown command\r\n")
            return True
        handler(tag, args)
        return True

    def capability(self, tag: bytes, _args: bytes) -> None:
        self.send(b"* CAPABILITY " + " ".join(self.habits.capabilities).encode() + CRLF)
        self.ok(tag)

    def login(self, tag: bytes, _args: bytes) -> None:
        self.server.logins += 1
        self.ok(tag, b"[CAPABILITY " + " ".join(self.habits.capabilities).encode() + b"] logged in")

    def noop(self, tag: bytes, _args: bytes) -> None:
        self.sync()
        self.ok(tag)

    @staticmethod
    def _name(arg: bytes) -> str:
        return arg.strip().strip(b'"').decode()

    def select(self, tag: bytes, args: bytes) -> None:
        name = self._name(args)
        with self.server.changed:
            try:
                f = self.server._folder(name)
            except KeyError:
                self.send(tag + b" NO no such folder\r\n")
                return
            self.selected = "INBOX" if name.upper() == "INBOX" else name
            self.view = [m.uid for m in f.messages]
            out = (b"* FLAGS (\\Seen \\Deleted)\r\n* %d EXISTS\r\n* 0 RECENT\r\n"
                   b"* OK [UIDVALIDITY %d] ok\r\n* OK [UIDNEXT %d] ok\r\n") % (len(self.view), f.uidvalidity, f.uidnext)
        self.send(out)
        self.ok(tag, b"[READ-WRITE] selected")

    def close_folder(self, tag: bytes, _args: bytes) -> None:
        self.selected, self.view = None, []
        self.ok(tag)

    def list(self, tag: bytes, args: bytes) -> None:
        pattern = self._name(args.split(b" ", 1)[1]) if b" " in args else ""
        with self.server.changed:
            names = [n for n in self.server.folders if pattern in ("*", "%", n)]
        for n in names:
            self.send(b'* LIST (\\HasNoChildren) "/" "' + n.encode() + b'"\r\n')
        self.ok(tag)

    def create(self, tag: bytes, args: bytes) -> None:
        with self.server.changed:
            self.server._folder(self._name(args), create=True)
        self.ok(tag)

    def messages(self) -> list[Message]:
        if self.selected is None:
            return []
        return self.server._folder(self.selected).messages

    def chosen(self, spec: bytes) -> list[Message]:
        msgs = self.messages()
        top = msgs[-1].uid if msgs else 0
        return [m for m in msgs if _in_set(m.uid, spec, top)]

    def seq(self, uid: int) -> int:
        return self.view.index(uid) + 1 if uid in self.view else len(self.view)

    def changes(self, force_exists: bool = False) -> bytes:
        """What changed since the session last heard: EXPUNGE for what left, EXISTS for what came."""
        with self.server.changed:
            now = [m.uid for m in self.messages()]
        out = b""
        for uid in [u for u in self.view if u not in now]:
            out += b"* %d EXPUNGE\r\n" % (self.view.index(uid) + 1)
            self.view.remove(uid)
        new = [u for u in now if u not in self.view]
        if new or force_exists:
            self.view.extend(new)
            out += b"* %d EXISTS\r\n" % len(self.view)
        return out

    def sync(self, force_exists: bool = False, **how: float) -> None:
        if out := self.changes(force_exists):
            self.send(out, **how)  # type: ignore[arg-type]

    def search(self, tag: bytes, args: bytes) -> None:
        words = args.upper().split()
        with self.server.changed:
            found = []
            for m in self.messages():
                if b"NOT" in words and b"DELETED" in words and b"\\Deleted" in m.flags:
                    continue
                if b"LARGER" in words and len(m.raw) <= int(words[words.index(b"LARGER") + 1]):
                    continue
                if b"UID" in words:
                    spec = words[words.index(b"UID") + 1]
                    if not _in_set(m.uid, spec, self.messages()[-1].uid):
                        continue
                found.append(m.uid)
        self.send(b"* SEARCH" + b"".join(b" %d" % u for u in found) + CRLF)
        self.sync(force_exists=self.habits.exists_after_search)
        self.ok(tag)

    # -- FETCH ---------------------------------------------------------------------------
    def fetch(self, tag: bytes, args: bytes) -> None:
        spec, _, items = args.partition(b" ")
        items_u = items.upper()
        wants_body = b"BODY[]" in items_u or b"BODY.PEEK[]" in items_u
        with self.server.changed:
            chosen = self.chosen(spec)
        number = 0
        if wants_body:
            self.server.body_fetches += 1
            number = self.server.body_fetches
        refused = False
        out: list[bytes] = []
        if self.habits.unsolicited_in_fetch and chosen:
            out.append(b"* OK [ALERT] Mailbox is at 91%% of quota\r\n* 1 FETCH (FLAGS (\\Seen))\r\n"
                       b"* %d EXISTS\r\n* 0 RECENT\r\n" % len(self.view))
        if wants_body:
            with self.server.changed:
                f = self.server._folder(self.selected or "INBOX")
                f.messages = [m for m in f.messages if m.broken != "vanishes" or m in chosen]
            out.append(self.changes())  # its EXPUNGE, inside this FETCH reply
        for i, m in enumerate(chosen):
            if m.broken == "no" or (m.broken == "no-body" and wants_body):
                refused = True
                continue
            if m.broken == "absent" and wants_body:
                continue
            out.extend(self.responses(m, items_u, wants_body))
            if number and number == self.habits.bye_in_fetch and i == 0:
                self.send(b"".join(out) + b"* BYE server shutting down\r\n")
                raise _Disconnect
            if number and number == self.habits.cut_in_literal:
                data = b"".join(out)
                self.send(data[:len(data) - len(m.raw) // 2])
                raise _Disconnect
        self.send(b"".join(out))
        if refused:
            self.send(tag + b" NO " + self.habits.refusal + CRLF)
            return
        self.sync()
        self.ok(tag, b"Fetch completed.")

    def responses(self, m: Message, items: bytes, wants_body: bool) -> list[bytes]:
        seq = self.seq(m.uid)
        head: list[bytes] = []
        if self.habits.gmail_items:
            first = self.messages()[0].uid
            head.append(b'X-GM-THRID 1784 X-GM-MSGID 17%d X-GM-LABELS ("\\\\Inbox" "Ticket UID %d")'
                        % (m.uid, first))
        head.append(b"UID %d" % m.uid)
        meta: list[bytes] = []
        if b"INTERNALDATE" in items:
            meta.append(b'INTERNALDATE "' + _date(m.internaldate) + b'"')
        if b"RFC822.SIZE" in items:
            meta.append(b"RFC822.SIZE %d" % len(m.raw))
        body: list[bytes] = []
        if b"HEADER.FIELDS (MESSAGE-ID)" in items:
            header = b""
            for line in m.raw.split(CRLF):
                if not line:
                    break
                if line.lower().startswith(b"message-id:"):
                    header = line + CRLF
            header += CRLF
            body.append(b"BODY[HEADER.FIELDS (MESSAGE-ID)] {%d}\r\n" % len(header) + header)
        if wants_body:
            if m.broken == "nil":
                body.append(b"BODY[] NIL")
            elif self.habits.quoted_bodies and (q := _quote(m.raw)) is not None:
                body.append(b"BODY[] " + q)
            else:
                body.append(b"BODY[] {%d}\r\n" % len(m.raw) + m.raw)
        if self.habits.split_fetch and meta and body:
            return [b"* %d FETCH (%s)\r\n" % (seq, b" ".join(head + meta)),
                    b"* %d FETCH (%s)\r\n" % (seq, b" ".join(head + body))]
        parts = body + head + meta if self.habits.body_first else head + meta + body
        return [b"* %d FETCH (%s)\r\n" % (seq, b" ".join(parts))]

    # -- changes ---------------------------------------------------------------------------
    def store(self, tag: bytes, args: bytes) -> None:
        spec, _, rest = args.partition(b" ")
        what, _, flags = rest.partition(b" ")
        names = set(flags.strip(b"()").split())
        with self.server.changed:
            chosen = self.chosen(spec)
            for m in chosen:
                if what.upper().startswith(b"+FLAGS"):
                    m.flags |= names
                elif what.upper().startswith(b"-FLAGS"):
                    m.flags -= names
                else:
                    m.flags = set(names)
        if not what.upper().endswith(b".SILENT"):
            self.send(b"".join(b"* %d FETCH (UID %d FLAGS (%s))\r\n" % (self.seq(m.uid), m.uid,
                                                                         b" ".join(sorted(m.flags)))
                               for m in chosen))
        self.ok(tag)

    def _copy_to(self, spec: bytes, dest: bytes) -> list[Message] | None:
        with self.server.changed:
            try:
                target = self.server._folder(self._name(dest))
            except KeyError:
                return None
            chosen = self.chosen(spec)
            for m in chosen:
                target.messages.append(Message(target.uidnext, m.raw, m.internaldate, set(m.flags), m.broken))
                target.uidnext += 1
            self.server.changed.notify_all()
        return chosen

    def copy(self, tag: bytes, args: bytes) -> None:
        spec, _, dest = args.partition(b" ")
        if self._copy_to(spec, dest) is None:
            self.send(tag + b" NO [TRYCREATE] no such folder\r\n")
            return
        self.ok(tag)

    def move(self, tag: bytes, args: bytes) -> None:
        spec, _, dest = args.partition(b" ")
        chosen = self._copy_to(spec, dest)
        if chosen is None:
            self.send(tag + b" NO [TRYCREATE] no such folder\r\n")
            return
        self._remove({m.uid for m in chosen})
        self.ok(tag)

    def expunge(self, tag: bytes, args: bytes) -> None:
        with self.server.changed:
            gone = {m.uid for m in (self.chosen(args) if args else self.messages()) if b"\\Deleted" in m.flags}
        self._remove(gone)
        self.ok(tag)

    def _remove(self, uids: set[int]) -> None:
        with self.server.changed:
            f = self.server._folder(self.selected or "INBOX")
            f.messages = [m for m in f.messages if m.uid not in uids]
            self.server.changed.notify_all()
        self.sync()

    # -- IDLE ------------------------------------------------------------------------------
    def idle(self, tag: bytes, _args: bytes) -> None:
        h = self.habits
        if h.before_continuation:
            self.send(h.before_continuation)
        self.send(h.idle_continuation)
        started = last_alive = time.monotonic()
        split = dict(size=1, pause=0.005) if h.idle_split_writes else {}
        while True:
            if self.readable(0.02):
                line = self.readline()
                self.server.commands.append(Command(time.monotonic(), self.n, line))
                if line.upper() == b"DONE":
                    self.sync()
                    self.ok(tag, b"Idle completed.")
                    return
                self.send(b"* BAD expected DONE\r\n")
            with self.server.changed:
                now = [m.uid for m in self.messages()]
            if now != self.view:
                self.sync(**split)
            t = time.monotonic()
            if h.idle_keepalive and t - last_alive >= h.idle_keepalive:
                self.send(b"* OK Still here\r\n", **split)  # type: ignore[arg-type]
                last_alive = t
            if h.phantom_exists and t - last_alive >= h.phantom_exists:
                self.send(b"* %d EXISTS\r\n" % (len(self.view) + 1))
                last_alive = t
            if h.idle_ends_after is not None and t - started >= h.idle_ends_after:
                self.send(tag + b" OK IDLE terminated (timeout)\r\n")
                return


@pytest.fixture
def scripted_imap() -> Iterator[Callable[..., ScriptedImap]]:
    """scripted_imap(first_uid=1, **habits) -> a running `ScriptedImap` with those `Habits`,
    closed after the test."""
    made: list[ScriptedImap] = []

    def factory(first_uid: int = 1, **habits: object) -> ScriptedImap:
        made.append(ScriptedImap(Habits(**habits), first_uid=first_uid))  # type: ignore[arg-type]
        return made[-1]

    yield factory
    for server in made:
        server.close()
