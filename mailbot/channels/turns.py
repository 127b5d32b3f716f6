"""Turns to receive a mail: at most N mails at once between DATA and its reply.

aiosmtpd holds a mail in memory line by line, then whole, and ingest parses it (~90 MB
for a 20 MB mail), so a channel that takes mail whole over a socket bounds how many it
receives at once. Both such channels use this: the SMTP/LMTP listener
(mailbot.channels.smtp, `[smtp] max_data_sessions` and `data_wait`) and the daemon's
local socket (mailbot.channels.local, `[pipe] max_data_sessions` and `data_wait`), each
with turns of its own, so a network peer holding the listener's turns never makes the
pipe wait, nor a pipe flood the network listener (docs/decisions.md).

A DATA over the cap waits for its turn before the 354 (nothing of the mail is read),
at most the channel's wait, then hears `BUSY` (451 4.3.2: retry later). When the last
mail of a burst that held a large one is answered, the C heaps' free memory is given
back to the system (mailbot.memory).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from mailbot import memory

BUSY = "451 4.3.2 Too many mails in transit, please retry later"
LARGE_MAIL = 1_000_000  # bytes: a burst with a mail this large ends with memory.give_back()


class DataTurns:
    """At most `limit` mails received at once; the others wait in order for a turn."""

    def __init__(self, channel: str, limit: int, executor: ThreadPoolExecutor) -> None:
        self.channel = channel  # "smtp", "pipe": the prefix of the log event
        self._log = logging.getLogger(f"mailbot.{channel}")
        self.limit = limit
        self.receiving = 0  # mails between DATA and their reply
        self.waiting = 0  # DATA commands waiting for their turn
        self._turns = asyncio.Semaphore(limit)
        self._executor = executor
        self._large_since_trim = False

    async def take(self, wait: float) -> bool:
        """Before the 354 of a DATA: a turn within `wait` seconds, or False (and a warning):
        the caller answers `BUSY`."""
        self.waiting += 1
        try:
            await asyncio.wait_for(self._turns.acquire(), wait)
        except TimeoutError:
            self._log.warning("%s: %d mails in transit, the limit: a DATA answered 451", self.channel,
                              self.receiving, extra={"event": f"{self.channel}.data_busy", "receiving": self.receiving})
            return False
        finally:
            self.waiting -= 1
        self.receiving += 1
        return True

    def received(self, size: int) -> None:
        """A mail of `size` bytes came in its turn (a large one: memory given back after the burst)."""
        if size >= LARGE_MAIL:
            self._large_since_trim = True

    def done(self) -> None:
        """A mail's DATA is over (answered, refused or cut off): its turn goes to the next."""
        self.receiving -= 1
        self._turns.release()
        if self.receiving == 0 and self.waiting == 0 and self._large_since_trim:
            self._large_since_trim = False
            asyncio.get_running_loop().run_in_executor(self._executor, memory.give_back)


class TurnTaker(Protocol):
    """What `InTurns` needs of an aiosmtpd handler."""

    turns: DataTurns

    @property
    def data_wait(self) -> float: ...


class InTurns:
    """Mixed into an aiosmtpd protocol class (before it): its DATA runs in one of the handler's
    turns. A DATA aiosmtpd refuses anyway (no recipient, an argument) needs none."""

    event_handler: TurnTaker  # (aiosmtpd's name for the handler it was given)

    async def smtp_DATA(self, arg: str) -> None:
        envelope = getattr(self, "envelope", None)
        if envelope is None or not envelope.rcpt_tos or arg:
            await super().smtp_DATA(arg)  # type: ignore[misc]
            return
        turns = self.event_handler.turns
        if not await turns.take(self.event_handler.data_wait):
            await self.push(BUSY)  # type: ignore[attr-defined]
            return
        try:
            if self.transport is not None:  # type: ignore[attr-defined]  # (not closed while it waited)
                await super().smtp_DATA(arg)  # type: ignore[misc]
        finally:
            turns.done()
