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
closed; mailbot.channels.connections, shared with the daemon's local socket, which
has a count of its own.

At most `smtp.max_data_sessions` mails received at once (from DATA to its reply), so the
memory mail takes is bounded: a DATA over the cap waits for its turn before the 354, up
to `smtp.data_wait`, then hears 451 4.3.2 (its MTA retries later); mailbot.channels.turns,
shared with the daemon's local socket, which has turns of its own.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailbot.app import App
from mailbot.channels import connections, turns
from mailbot.ingest.pipeline import GroupCommit, IngestResult, Received, TemporaryFailure

log = logging.getLogger("mailbot.smtp")


class Reply:
    OK = "250 2.0.0 OK"
    RCPT_OK = "250 2.1.5 OK"
    NO_SUCH_USER = "550 5.1.1 <{}>: no such mailbox here"
    TOO_BIG = "552 5.3.4 Message too big for this system"
    TEMPFAIL = "451 4.3.0 Temporary failure, please retry later"
    DATA_BUSY = turns.BUSY  # (a DATA whose turn did not come: mailbot.channels.turns)
    BUSY = connections.BUSY  # (a session over the cap: mailbot.channels.connections)


class IngestHandler:
    """aiosmtpd handler: RCPT filtering and DATA → ingest in a worker thread."""

    def __init__(self, app: App, executor: ThreadPoolExecutor, lmtp: bool = False) -> None:
        self.app = app
        self.executor = executor
        self.lmtp = lmtp
        self.group = GroupCommit(app)  # concurrent sessions' mails share a transaction
        self.in_flight = 0
        self.sessions = connections.Sessions("smtp", lambda: app.config.smtp)  # (see Capped)
        self.turns = turns.DataTurns("smtp", app.config.smtp.max_data_sessions, executor)  # (see InTurns)

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
        self.turns.received(len(raw))
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

    @property
    def data_wait(self) -> float:
        """Seconds a DATA over `smtp.max_data_sessions` waits for its turn (read live: a reload changes it)."""
        return self.app.config.smtp.data_wait

    def _ingest(self, raw: bytes, mail_from: str | None, rcpts: list[str]) -> IngestResult:
        return self.group.ingest(Received(raw, "smtp", mail_from, tuple(rcpts)))

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


class CappedSMTP(connections.Capped, turns.InTurns, SMTP):
    pass


class CappedLMTP(connections.Capped, turns.InTurns, LMTP):
    pass


def protocol_factory(app: App, handler: IngestHandler) -> Any:
    cfg = app.config.smtp
    cls = CappedLMTP if cfg.lmtp else CappedSMTP
    ctx = tls_context(app)
    kwargs: dict[str, Any] = {"data_size_limit": cfg.max_message_size, "enable_SMTPUTF8": True,
                              "decode_data": False, "ident": "mailbot"}
    if ctx is not None:
        kwargs.update(tls_context=ctx, require_starttls=cfg.require_starttls)
    return handler.sessions.protocol(cls, handler, **kwargs)


async def start_listener(app: App, executor: ThreadPoolExecutor) -> tuple[asyncio.base_events.Server, IngestHandler]:
    """Bind the listener on the running loop; returns the server and its handler."""
    cfg = app.config.smtp
    handler = IngestHandler(app, executor, lmtp=cfg.lmtp)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol_factory(app, handler), host=cfg.host, port=cfg.port)
    log.info("listening", extra={"event": "smtp.listening", "host": cfg.host, "port": server.sockets[0].getsockname()[1],
                                 "protocol": "lmtp" if cfg.lmtp else "smtp"})
    return server, handler
