"""Where an IMAP drain's time goes, step by step (`bench/imap.py --timeline`).

Wraps, in the benchmark's process only, the steps of `ImapPoller._pass`: the
FETCH of a batch and the MOVE of a committed one (the helper thread), the wait
for a batch's analysis (`Pending.result`, during which the daemon analyses
chunks itself) and its write (`ingest._record_works`); before them the
connection, the UIDVALIDITY check and the RFC822.SIZE FETCH, and after each
batch the saving of the last UID. Prints one line per
step, in ms since the drain started, and how many mails the daemon analysed
itself. Nothing of mailbot is changed outside this process.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mailbot.channels import imap
from mailbot.ingest import analysis
from mailbot.ingest import pipeline as ingest


class Timeline:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.steps: list[tuple[str, float, float, str]] = []  # (what, start, end, detail)
        self.analysed_here = 0
        self._lock = threading.Lock()

    def add(self, what: str, start: float, end: float, detail: str = "") -> None:
        with self._lock:
            self.steps.append((what, (start - self.t0) * 1000, (end - self.t0) * 1000, detail))

    def lines(self) -> Iterator[str]:
        for what, start, end, detail in sorted(self.steps, key=lambda s: s[1]):
            yield f"  {start:8.1f} → {end:8.1f} ms  {end - start:7.1f}  {what:<7} {detail}"
        yield f"  mails analysed by the daemon itself: {self.analysed_here}"


@contextmanager
def recording() -> Iterator[Timeline]:
    """Record the steps of the drains run inside the block."""
    line = Timeline()
    saved: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, what: str, detail: Callable[..., str]) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = original(*args, **kwargs)
            line.add(what, start, time.perf_counter(), detail(*args, result=result))
            return result

        saved.append((owner, name, original))
        setattr(owner, name, timed)

    wrap(imap.ImapPoller, "_connection", "connect", lambda _self, result: "connect, LOGIN (or the open connection)")
    wrap(imap, "_sizes", "sizes", lambda _client, uids, _small, result: f"sizes of {len(uids)} mails")
    wrap(imap.ImapPoller, "_check_uidvalidity", "state", lambda _self, _v, result: "UIDVALIDITY checked")
    wrap(imap.ImapPoller, "_save_state", "state", lambda _self, _v, top, result: f"last UID ({top}) saved")
    wrap(imap.ImapPoller, "_fetch", "fetch", lambda _self, _client, uids, result, **_kw: f"{len(uids)} mails")
    wrap(imap.ImapPoller, "_file_away", "move", lambda _self, _client, uids, *_a, result: f"{len(uids)} mails")
    wrap(ingest, "_record_works", "write", lambda _app, works, result: f"{len(works)} mails")

    def analysed(pending: analysis.Pending, *_a: Any, result: list[analysis.Analysis]) -> str:
        here = sum(1 for a in result if a.analysed_by == os.getpid())
        if not getattr(pending, "_timeline_counted", False):
            pending._timeline_counted = True  # type: ignore[attr-defined]
            line.analysed_here += here
        return f"{len(result)} mails, {here} analysed here"

    wrap(analysis.Pending, "result", "analyse", analysed)
    try:
        yield line
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)
