"""The daemon's local LMTP socket, where `mailbot ingest` hands over its mail (mailbot.pipe).

It is a trusted channel, unlike the network listener: only the daemon's own user
can connect (the socket's mode, `[pipe] socket_mode`, 0600 by default; it is bound
in a private directory and renamed into place, so it is never reachable with looser
permissions). So it takes any recipient (the pipe's `-r`, checked by routing as in
process) and answers with the mail's outcome ("250 2.0.0 case_opened: KP-…"), which
the client prints and turns into its exit code; a database that is down is "451",
exit 75. The mail is recorded as from the source "pipe", as in process.

At most `[pipe] max_data_sessions` mails are received at once (mailbot.channels.turns,
with turns of its own, not the SMTP listener's): an MTA's pipe starts one `mailbot
ingest` per mail, and each would have the daemon hold its mail in memory. A DATA over
the cap waits for its turn before the 354, up to `[pipe] data_wait` (under the client's
`[pipe] timeout`), then hears 451 4.3.2, which `mailbot ingest` turns into exit 75: the
MTA keeps the mail and retries.

At most `[pipe] max_sessions` sessions are open at once, and one idle for `[pipe]
idle_timeout` is closed (mailbot.channels.connections, with a count of its own): a local
process that opens connections and sends nothing cannot take the daemon's file
descriptors, which the SMTP listener, IMAP and the database need too. A session over
the cap hears 421 4.3.2 and is closed; `mailbot ingest` turns it into exit 75 (retried).

At start an old socket file left by a killed daemon is removed; a socket another
live daemon answers on is left alone (this one then runs without), as is any file
that is not a socket. A daemon that cannot bind logs why and runs on: the pipe then
ingests in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailbot.app import App
from mailbot.channels.connections import Capped, Sessions
from mailbot.channels.turns import DataTurns, InTurns
from mailbot.ingest.pipeline import GroupCommit, Received, TemporaryFailure
from mailbot.pipe import NO_RECIPIENT, UNKNOWN_SENDER, outcome_line, unframed

log = logging.getLogger("mailbot.pipe")


class LocalHandler:
    """aiosmtpd handler of the local socket: every recipient taken, DATA → ingest, the
    outcome in the reply."""

    def __init__(self, app: App, executor: ThreadPoolExecutor) -> None:
        self.app = app
        self.executor = executor
        self.group = GroupCommit(app)
        self.in_flight = 0
        self.turns = DataTurns("pipe", app.config.pipe.max_data_sessions, executor)  # (see InTurns)
        self.sessions = Sessions("pipe", lambda: app.config.pipe)  # (see Capped)

    @property
    def data_wait(self) -> float:
        """Seconds a DATA over `[pipe] max_data_sessions` waits for its turn (read live)."""
        return self.app.config.pipe.data_wait

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = unframed(envelope.original_content or b"", _declared_size(envelope.mail_options))
        sender = None if envelope.mail_from == UNKNOWN_SENDER else envelope.mail_from
        rcpts = tuple(r for r in envelope.rcpt_tos if r != NO_RECIPIENT)
        self.turns.received(len(raw))
        self.in_flight += 1
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.group.ingest, Received(raw, "pipe", sender, rcpts))
            line = f"250 2.0.0 {outcome_line(result.outcome, result.case_refs, result.reason)}"
        except TemporaryFailure as exc:
            line = f"451 4.3.0 temporary failure, retry later: {' '.join(str(exc).split())[:300]}"
        except Exception as exc:  # noqa: BLE001 - the pipe hears "retry later", the log has the rest
            log.exception("unexpected failure in ingest (pipe), answering 451", extra={"event": "pipe.tempfail"})
            line = f"451 4.3.0 internal error, retry later: {type(exc).__name__}"
        finally:
            self.in_flight -= 1
        return "\r\n".join(line for _ in envelope.rcpt_tos) or line


def _declared_size(options: list[str]) -> int | None:
    for option in options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


class _LocalLMTP(Capped, InTurns, LMTP):
    """LMTP with lines as long as a whole mail (the pipe's bytes are passed on as they
    are, and a mail with bare-LF line ends is one long "line" to an LMTP reader), each
    session counted against the handler's cap, each DATA in one of its turns."""

    def __init__(self, handler: Any, *, line_length_limit: int, **kwargs: Any) -> None:
        self.line_length_limit = line_length_limit  # (a documented class attribute of aiosmtpd)
        super().__init__(handler, **kwargs)


class LocalSocket:
    """The bound socket, its server and handler; `close()` removes the socket file."""

    def __init__(self, path: Path, server: asyncio.base_events.Server, handler: LocalHandler, inode: int) -> None:
        self.path, self.server, self.handler, self._inode = path, server, handler, inode

    async def close(self) -> None:
        self.server.close()
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self._inode:  # not a socket another daemon bound since
                os.unlink(self.path)


async def start_local_socket(app: App, executor: ThreadPoolExecutor) -> LocalSocket | None:
    """Listen on `[pipe] socket`; None (logged) when it is off or cannot be bound."""
    cfg = app.config.pipe
    if not cfg.socket:
        return None
    path = app.config.resolve_path(cfg.socket)
    handler = LocalHandler(app, executor)
    limit = app.config.smtp.max_message_size
    try:
        sock = bind_private(path, cfg.socket_mode)
        server = await asyncio.get_running_loop().create_unix_server(handler.sessions.protocol(
            _LocalLMTP, handler, line_length_limit=limit + 1024, data_size_limit=limit,
            enable_SMTPUTF8=True, decode_data=False, ident="mailbot"), sock=sock)
    except OSError as exc:
        log.error("local socket %s not available (%s): `mailbot ingest` will ingest in process", path, exc,
                  extra={"event": "pipe.unavailable", "path": str(path)})
        return None
    log.info("listening", extra={"event": "pipe.listening", "path": str(path), "mode": oct(cfg.socket_mode)})
    return LocalSocket(path, server, handler, os.lstat(path).st_ino)


def bind_private(path: Path, mode: int) -> socket.socket:
    """A listening unix socket at `path` with `mode`, never reachable with looser
    permissions: bound in a new private (0700) directory beside it, chmod-ed, then renamed
    into place. An old socket nobody answers on is replaced; anything else is an error."""
    _clear_stale(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=".mailbot-sock-", dir=path.parent))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(private / "s"))
        os.chmod(private / "s", mode)
        sock.listen(64)
        os.rename(private / "s", path)
    except OSError:
        sock.close()
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(private / "s")
        with contextlib.suppress(OSError):
            private.rmdir()
    return sock


def _clear_stale(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:  # left behind by a daemon that was killed
            os.unlink(path)
            return
    raise OSError(f"another process answers on {path}")
