"""The thin pipe: `mailbot ingest` hands the mail to the running daemon, as Request
Tracker's `rt-mailgate` does, instead of starting mailbot in every process.

An MTA's pipe transport starts one `mailbot ingest` per mail. In process, that is
the imports (SQLAlchemy, SQLModel, pydantic…), the config, the database and the
analysis of one mail: most of it start-up. When `mailbot run` is up, it listens on a
local unix socket (`[pipe] socket`, mode `[pipe] socket_mode`, 0600: only its own
user may connect) and speaks LMTP there (mailbot.channels.local); this module is the
client, importing nothing but the standard library's socket and TOML reader. The
daemon answers once the mail is committed, with the outcome `mailbot ingest` prints
in process ("case_opened: KP-2026-000001 …"), so the exit codes are the same either
way: 0 recorded, 65 quarantined, 75 try again later — also when the daemon is receiving
its `[pipe] max_data_sessions` mails and no turn came within `[pipe] data_wait` (the DATA
is answered 451 before any of the mail is sent), and when it holds its `[pipe]
max_sessions` sessions open already (the greeting is 421: a local process flooding the
socket, or a burst larger than the cap). When no daemon answers (no
socket, refused, a protocol surprise, no answer within `[pipe] timeout`), the caller
ingests in process as before; a mail the daemon had committed meanwhile is then
recorded once (ingest's dedupe).

The bytes travel exactly: lines are dot-stuffed where LMTP reads lines (after each
CRLF), and `MAIL FROM … SIZE=n` gives the exact size, so the daemon takes back the
CRLF that ends DATA when the mail did not end with one. An envelope the pipe does
not know travels as a placeholder address (`UNKNOWN_SENDER`, `NO_RECIPIENT`) that
the daemon turns back into "unknown" and "none".
"""

from __future__ import annotations

import os
import re
import socket
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_SOCKET = "var/mailbot.lmtp"  # relative paths are relative to the config file
DEFAULT_SOCKET_MODE = 0o600
DEFAULT_TIMEOUT = 60.0  # seconds the client waits for its turn (the 354), then for the answer to the mail
CONNECT_TIMEOUT = 2.0  # seconds for the greeting and each command before DATA
UNKNOWN_SENDER = "unknown-sender@pipe.mailbot.invalid"  # no -f given: the Return-Path header decides
NO_RECIPIENT = "no-recipient@pipe.mailbot.invalid"  # no -r given: the headers decide

_PLAIN = re.compile(r"[^\s<>]+")  # an envelope address the pipe can pass on as it is


def read_mail(name: str) -> bytes:
    """The mail of `mailbot ingest FILE|-`: the file's bytes, or standard input's."""
    if name == "-":
        return sys.stdin.buffer.read()
    with open(name, "rb") as fh:
        return fh.read()


def outcome_line(outcome: str, refs: Sequence[str], reason: str) -> str:
    """What `mailbot ingest` prints for a mail, in process or through the daemon (one line:
    it is also the daemon's LMTP reply text)."""
    return " ".join(f"{outcome}: {' '.join(refs)} {reason}".split())[:400]


@dataclass(frozen=True)
class PipeSettings:
    """What the client needs of the config file."""

    socket: str  # absolute path, or "" (no socket: ingest in process)
    timeout: float


def settings(config_path: str) -> PipeSettings | None:
    """`[pipe]` of the config file, read with tomllib only (not validated: the daemon that
    answers on the socket validated it). None when the file cannot be read; the full
    path then reports it."""
    try:
        with open(config_path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    pipe = data.get("pipe", {})
    path = pipe.get("socket", DEFAULT_SOCKET) if isinstance(pipe, dict) else DEFAULT_SOCKET
    timeout = pipe.get("timeout", DEFAULT_TIMEOUT) if isinstance(pipe, dict) else DEFAULT_TIMEOUT
    if not isinstance(path, str) or not isinstance(timeout, int | float) or timeout <= 0:
        return None
    if path and not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.realpath(config_path)), path)  # as Config.resolve_path
    return PipeSettings(path, float(timeout))


@dataclass(frozen=True)
class Answer:
    """The daemon's answer to DATA: `code` (250, 451…) and the text after the codes."""

    code: int
    text: str


class _NoDaemon(Exception):
    """Nothing usable answered: ingest in process."""


def deliver(path: str, raw: bytes, sender: str | None, recipients: Sequence[str],
            timeout: float = DEFAULT_TIMEOUT) -> Answer | None:
    """Hand `raw` to the daemon listening on `path`; its answer, or None when no daemon
    answered usefully (the caller then ingests in process)."""
    if not path or not all(_PLAIN.fullmatch(a) for a in [*recipients, *([sender] if sender else [])]):
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(path)
            return _session(sock, raw, sender, recipients or [NO_RECIPIENT], timeout)
    except (OSError, _NoDaemon, UnicodeError, ValueError):
        return None


def _session(sock: socket.socket, raw: bytes, sender: str | None, recipients: Sequence[str],
             timeout: float) -> Answer:
    replies = sock.makefile("rb")
    greeting = _reply(replies)
    if 400 <= greeting.code < 500:  # its `[pipe] max_sessions` are open: nothing sent, the MTA retries later
        return greeting
    if greeting.code != 220:
        raise _NoDaemon(f"{greeting.code} {greeting.text}")
    _command(sock, replies, "LHLO mailbot-pipe", 250)
    mail_from = "<>" if sender in ("", "<>") else f"<{sender or UNKNOWN_SENDER}>"
    options = f" SIZE={len(raw)} BODY=8BITMIME"
    if not all(a.isascii() for a in [mail_from, *recipients]):
        options += " SMTPUTF8"
    _command(sock, replies, f"MAIL FROM:{mail_from}{options}", 250)
    for rcpt in recipients:
        _command(sock, replies, f"RCPT TO:<{rcpt}>", 250)
    sock.settimeout(timeout)  # the daemon may hold the 354 until a turn is free (`[pipe] data_wait`)
    sock.sendall(b"DATA\r\n")
    turn = _reply(replies)
    if 400 <= turn.code < 500:  # no turn came: the mail was not sent, the MTA retries it later
        _quit(sock)
        return turn
    if turn.code != 354:
        raise _NoDaemon(f"{turn.code} {turn.text}")
    sock.sendall(_framed(raw))
    answers = [_reply(replies) for _ in recipients]  # LMTP: one per recipient; the first tells
    _quit(sock)
    return answers[0]


def _quit(sock: socket.socket) -> None:
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.sendall(b"QUIT\r\n")
    except OSError:
        pass


def _framed(raw: bytes) -> bytes:
    """DATA for `raw`: each line (as LMTP reads lines: up to a CRLF) that starts with a dot
    gets one more, and the end is CRLF "." CRLF."""
    stuffed = raw.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + (b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n")


def unframed(content: bytes, declared_size: int | None) -> bytes:
    """The daemon's side of `_framed`: the mail as it was, when the client said its size
    (the CRLF before the final dot was added by the client, not part of the mail)."""
    if declared_size is not None and len(content) == declared_size + 2 and content.endswith(b"\r\n"):
        return content[:-2]
    return content


def _command(sock: socket.socket, replies: object, line: str, want: int) -> None:
    sock.sendall(line.encode("utf-8", "surrogateescape") + b"\r\n")
    _expect(replies, want)


def _expect(replies: object, want: int) -> None:
    answer = _reply(replies)
    if answer.code != want:
        raise _NoDaemon(f"{answer.code} {answer.text}")


def _reply(replies: object) -> Answer:
    """One reply, multi-line ones included ("250-…" lines, then "250 …")."""
    text: list[str] = []
    while True:
        line = replies.readline(4096)  # type: ignore[attr-defined]
        if not line.endswith(b"\n"):
            raise _NoDaemon("connection closed")
        decoded = line.decode("utf-8", "replace").rstrip("\r\n")
        if len(decoded) < 3 or not decoded[:3].isdigit():
            raise _NoDaemon(f"not a reply: {decoded[:80]!r}")
        text.append(decoded[4:])
        if decoded[3:4] != "-":
            return Answer(int(decoded[:3]), _without_status(text[-1]))


_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3} ")


def _without_status(text: str) -> str:
    """The text of a reply without its enhanced status code ("2.0.0 ")."""
    m = _ENHANCED.match(text)
    return text[m.end():] if m else text
