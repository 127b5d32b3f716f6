"""asyncio's reports of errors in the event loop, at most one of a kind a minute.

When the process runs out of file descriptors, asyncio's listener reports every
failed `accept()` ("socket.accept() out of system resource") and every retry of it,
with a traceback each: 16 MB of log in 20 seconds, which buried everything else and
fed the disk. One report of each kind is logged, then at most one a minute, saying
how many were left out meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

INTERVAL = 60.0  # seconds between two reports of one kind


class ThrottledLoopErrors:
    """An event loop exception handler (`loop.set_exception_handler`) that passes on one
    report of each kind per `interval` to the loop's default handler (which logs it)."""

    def __init__(self, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.clock = interval, clock
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        kind = message.split("\n", 1)[0][:60]  # (later lines name sockets and timer handles)
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return
        self._last[kind] = now
        left_out = self._left_out.pop(kind, 0)
        if left_out:
            context = {**context, "message": f"{message} ({left_out} more of this kind in the last "
                                             f"{self.interval:g} s were not logged)"}
        loop.default_exception_handler(context)
