"""The SMTP (or LMTP) listener: aiosmtpd in front of `ingest`.

The protocol edge answers in protocol terms, from one table (`Reply`):
- RCPT: brand addresses and their plus-addressed forms only, else 550 5.1.1;
- DATA: 250 only after ingest committed (the mails of concurrent sessions are
  committed together: `ingest.GroupCommit`); a database failure answers
  451 4.3.0 (the sending MTA retries); a parse failure is still 250 (the mail
  is quarantined, not bounced); oversize mail gets 552 (aiosmtpd enforces
  `data_size_limit` even when the client ignores the advertised SIZE).
- LMTP answers one line per accepted recipient, as RFC 2033 requires.

An accepted mail gets the same reply whatever became of it (new case, follow-up,
duplicate, our own, quarantined): the outcome is in the log, not on the wire,
where it would tell an outsider which Message-IDs and references exist. (The
daemon's local socket, mailbot.channels.local, only its own user can reach, and
there the outcome is the point: `mailbot ingest` prints it.)

At most `smtp.max_sessions` sessions at once: one more is answered 421 and closed
at once, so idle connections cannot take every file descriptor (and with them new
sessions, the database and /healthz); a session idle for `smtp.idle_timeout` is
closed.

At most `smtp.max_data_sessions` mails received at once (from DATA to its reply: aiosmtpd
holds a mail in memory line by line, then whole, and ingest parses it — ~90 MB for a
20 MB mail), so the memory mail takes is bounded: a DATA over the cap waits for its turn
before the 354, up to `smtp.data_wait`, then hears 451 4.3.2 (its MTA retries later).
When the last of a burst that held a large mail ends, the C heaps' free memory is given
back to the system (mailbot.memory).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailbot import memory
from mailbot.app import App
from mailbot.ingest.pipeline import GroupCommit, IngestResult, Received, TemporaryFailure

log = logging.getLogger("mailbot.smtp")
BUSY_LOG_INTERVAL = 60.0  # seconds between two warnings that sessions are refused
LARGE_MAIL = 1_000_000  # bytes: a burst with a mail this large ends with memory.give_back()


class Reply:
    OK = "250 2.0.0 OK"
    RCPT_OK = "250 2.1.5 OK"
    NO_SUCH_USER = "550 5.1.1 <{}>: no such mailbox here"
    TOO_BIG = "552 5.3.4 Message too big for this system"
    TEMPFAIL = "451 4.3.0 Temporary failure, please retry later"
    DATA_BUSY = "451 4.3.2 Too many mails in transit, please retry later"
    BUSY = "421 4.3.2 Too many connections, try again later"


class IngestHandler:
    """aiosmtpd handler: RCPT filtering and DATA → ingest in a worker thread."""

    def __init__(self, app: App, executor: ThreadPoolExecutor, lmtp: bool = False) -> None:
        self.app = app
        self.executor = executor
        self.lmtp = lmtp
        self.group = GroupCommit(app)  # concurrent sessions' mails share a transaction
        self.in_flight = 0
        self.sessions = 0  # open now (see _Capped)
        self.refused = 0  # sessions refused for the cap since the last warning
        self._warned_at = -BUSY_LOG_INTERVAL
        self.receiving = 0  # mails between DATA and their reply (see data_turn)
        self.waiting = 0  # DATA commands waiting for their turn
        self._turns = asyncio.Semaphore(app.config.smtp.max_data_sessions)
        self._large_since_trim = False

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.app.config.brand_for_address(address) is None:
            return Reply.NO_SUCH_USER.format(address.replace(">", ""))
        envelope.rcpt_tos.append(address)
        return Reply.RCPT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if len(raw) > self.app.config.smtp.max_message_size:
            return self._per_rcpt(envelope, Reply.TOO_BIG)
        if len(raw) >= LARGE_MAIL:
            self._large_since_trim = True
        self.in_flight += 1
        try:
            await asyncio.get_running_loop().run_in_executor(
                self.executor, self._ingest, raw, envelope.mail_from, list(envelope.rcpt_tos))
        except TemporaryFailure as exc:
            log.warning("database unavailable, answering 451: %s", exc, extra={"event": "smtp.tempfail"})
            return self._per_rcpt(envelope, Reply.TEMPFAIL)
        except Exception:
            log.exception("unexpected failure in ingest, answering 451", extra={"event": "smtp.tempfail"})
            return self._per_rcpt(envelope, Reply.TEMPFAIL)
        finally:
            self.in_flight -= 1
        # The outcome is logged by ingest, as for every channel, and not told to the peer.
        return self._per_rcpt(envelope, Reply.OK)

    async def data_turn(self) -> bool:
        """Before the 354 of a DATA: wait for one of `smtp.max_data_sessions` turns, at most
        `smtp.data_wait` seconds; False (the caller answers 451) when none came."""
        self.waiting += 1
        try:
            await asyncio.wait_for(self._turns.acquire(), self.app.config.smtp.data_wait)
        except TimeoutError:
            log.warning("smtp: %d mails in transit, the limit: a DATA answered 451", self.receiving,
                        extra={"event": "smtp.data_busy", "receiving": self.receiving})
            return False
        finally:
            self.waiting -= 1
        self.receiving += 1
        return True

    def data_done(self) -> None:
        """A mail's DATA is over (answered, refused or cut off): its turn goes to the next. The
        last of a burst that held a large mail gives the freed memory back."""
        self.receiving -= 1
        self._turns.release()
        if self.receiving == 0 and self.waiting == 0 and self._large_since_trim:
            self._large_since_trim = False
            asyncio.get_running_loop().run_in_executor(self.executor, memory.give_back)

    def _ingest(self, raw: bytes, mail_from: str | None, rcpts: list[str]) -> IngestResult:
        return self.group.ingest(Received(raw, "smtp", mail_from, tuple(rcpts)))

    def opening(self) -> bool:
        """A session starts: False (and a warning, at most one a minute) when at the cap."""
        if self.sessions < self.app.config.smtp.max_sessions:
            self.sessions += 1
            return True
        self.refused += 1
        now = time.monotonic()
        if now - self._warned_at >= BUSY_LOG_INTERVAL:
            log.warning("smtp: %d sessions open, the limit: refused %d with 421", self.sessions, self.refused,
                        extra={"event": "smtp.busy", "sessions": self.sessions, "refused": self.refused})
            self._warned_at, self.refused = now, 0
        return False

    def closed(self) -> None:
        self.sessions -= 1

    def _per_rcpt(self, envelope: Envelope, line: str) -> str:
        if not self.lmtp:
            return line
        return "\r\n".join(line for _ in envelope.rcpt_tos) or line


def tls_context(app: App) -> ssl.SSLContext | None:
    cfg = app.config.smtp
    if not cfg.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(app.config.resolve_path(cfg.tls_cert)),
                        str(app.config.resolve_path(cfg.tls_key or cfg.tls_cert)))
    return ctx


class _Capped:
    """A session counted against `smtp.max_sessions` (asyncio's protocol calls): over
    the cap, the connection hears 421 and is closed before aiosmtpd starts on it."""

    event_handler: IngestHandler  # (aiosmtpd's name for the handler it was given)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._counted = self.event_handler.opening()
        if not self._counted:
            transport.write(f"{Reply.BUSY}\r\n".encode())  # type: ignore[attr-defined]
            transport.close()
            return
        super().connection_made(transport)  # type: ignore[misc]

    def connection_lost(self, error: Exception | None) -> None:
        if not self._counted:
            return
        self.event_handler.closed()
        super().connection_lost(error)  # type: ignore[misc]

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, in one of the handler's turns (`IngestHandler.data_turn`); a DATA
        aiosmtpd refuses anyway (no recipient, an argument) needs none."""
        envelope = getattr(self, "envelope", None)
        if envelope is None or not envelope.rcpt_tos or arg:
            await super().smtp_DATA(arg)  # type: ignore[misc]
            return
        if not await self.event_handler.data_turn():
            await self.push(Reply.DATA_BUSY)  # type: ignore[attr-defined]
            return
        try:
            if self.transport is not None:  # type: ignore[attr-defined]  # (not closed while it waited)
                await super().smtp_DATA(arg)  # type: ignore[misc]
        finally:
            self.event_handler.data_done()


class CappedSMTP(_Capped, SMTP):
    pass


class CappedLMTP(_Capped, LMTP):
    pass


def protocol_factory(app: App, handler: IngestHandler) -> Any:
    cfg = app.config.smtp
    cls = CappedLMTP if cfg.lmtp else CappedSMTP
    ctx = tls_context(app)
    kwargs: dict[str, Any] = {"data_size_limit": cfg.max_message_size, "enable_SMTPUTF8": True,
                              "decode_data": False, "ident": "mailbot", "timeout": cfg.idle_timeout}
    if ctx is not None:
        kwargs.update(tls_context=ctx, require_starttls=cfg.require_starttls)
    return lambda: cls(handler, **kwargs)


async def start_listener(app: App, executor: ThreadPoolExecutor) -> tuple[asyncio.base_events.Server, IngestHandler]:
    """Bind the listener on the running loop; returns the server and its handler."""
    cfg = app.config.smtp
    handler = IngestHandler(app, executor, lmtp=cfg.lmtp)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol_factory(app, handler), host=cfg.host, port=cfg.port)
    log.info("listening", extra={"event": "smtp.listening", "host": cfg.host, "port": server.sockets[0].getsockname()[1],
                                 "protocol": "lmtp" if cfg.lmtp else "smtp"})
    return server, handler
