"""A dependency-free progress line for long imports (stderr, only on a terminal)."""

from __future__ import annotations

import sys
import time

from mailbot.cli.terminal import uncleaned


class Progress:
    def __init__(self, label: str, total: int | None = None) -> None:
        self.label, self.total, self.count = label, total, 0
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()

    def advance(self, n: int = 1) -> None:
        self.count += n
        if self.tty:
            rate = self.count / max(time.monotonic() - self.started, 1e-6)
            of = f"/{self.total}" if self.total else ""
            tty = uncleaned(sys.stderr)  # our own carriage return
            tty.write(f"\r{self.label}: {self.count}{of} mails ({rate:.0f}/s)")
            tty.flush()

    def done(self) -> None:
        elapsed = time.monotonic() - self.started
        if self.tty:
            sys.stderr.write("\n")
        print(f"{self.label}: {self.count} mails in {elapsed:.1f}s", file=sys.stderr)
