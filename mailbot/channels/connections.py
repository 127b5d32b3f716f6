"""Sessions at once, and idle ones closed: for each channel that listens on a socket.

Both such channels use this: the SMTP/LMTP listener (mailbot.channels.smtp, `[smtp]
max_sessions` and `idle_timeout`) and the daemon's local socket (mailbot.channels.local,
`[pipe] max_sessions` and `idle_timeout`), each with a count of its own. At most
`max_sessions` sessions at once: one more is answered `BUSY` (421 4.3.2) and closed
before aiosmtpd starts on it, so idle connections cannot take every file descriptor
(and with them new sessions of every channel, the database, IMAP and /healthz). A
session that sends no command for `idle_timeout` seconds is closed (aiosmtpd's timer,
reset at each command: the DATA of a mail, its turn included, must end within it).

Both limits are read from the running config at each new session, so a reload applies
them to the sessions that open after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

BUSY = "421 4.3.2 Too many connections, try again later"
BUSY_LOG_INTERVAL = 60.0  # seconds between two warnings that sessions are refused


class SessionLimits(Protocol):
    """What a channel's config section gives (`[smtp]`, `[pipe]`)."""

    @property
    def max_sessions(self) -> int: ...

    @property
    def idle_timeout(self) -> float: ...


class Sessions:
    """The sessions of one channel open now, against the limits of its live config section."""

    def __init__(self, channel: str, limits: Callable[[], SessionLimits]) -> None:
        self.channel = channel  # "smtp", "pipe": the prefix of the log event
        self._log = logging.getLogger(f"mailbot.{channel}")
        self.limits = limits
        self.open = 0
        self.refused = 0  # sessions refused for the cap since the last warning
        self._warned_at = -BUSY_LOG_INTERVAL

    def opening(self) -> bool:
        """A session starts: False (and a warning, at most one a minute) when at the cap."""
        if self.open < self.limits().max_sessions:
            self.open += 1
            return True
        self.refused += 1
        now = time.monotonic()
        if now - self._warned_at >= BUSY_LOG_INTERVAL:
            self._log.warning("%s: %d sessions open, the limit: refused %d with 421", self.channel, self.open,
                              self.refused, extra={"event": f"{self.channel}.busy", "sessions": self.open,
                                                   "refused": self.refused})
            self._warned_at, self.refused = now, 0
        return False

    def closed(self) -> None:
        self.open -= 1

    def protocol(self, cls: type, handler: Any, **kwargs: Any) -> Callable[[], Any]:
        """The server's protocol factory: a `cls` session of `handler`, idle for at most the
        `idle_timeout` in force when it opens."""
        return lambda: cls(handler, timeout=self.limits().idle_timeout, **kwargs)


class SessionCounter(Protocol):
    """What `Capped` needs of an aiosmtpd handler."""

    sessions: Sessions


class Capped:
    """Mixed into an aiosmtpd protocol class (first): a session counted against its
    handler's `sessions` (asyncio's protocol calls); over the cap, the connection hears
    `BUSY` and is closed before aiosmtpd starts on it."""

    event_handler: SessionCounter  # (aiosmtpd's name for the handler it was given)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._counted = self.event_handler.sessions.opening()
        if not self._counted:
            transport.write(f"{BUSY}\r\n".encode())  # type: ignore[attr-defined]
            transport.close()
            return
        super().connection_made(transport)  # type: ignore[misc]

    def connection_lost(self, error: Exception | None) -> None:
        if not self._counted:
            return
        self.event_handler.sessions.closed()
        super().connection_lost(error)  # type: ignore[misc]
