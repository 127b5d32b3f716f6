"""What the CLI prints reaches a terminal as text, never as terminal commands.

A customer controls much of what `cases list`, `cases show`, `quarantine list` and the
error messages print (addresses with quoted local parts, names, subjects, bodies, file
names). An escape sequence in any of them (`ESC ] 0 ; … BEL` retitles the window, `ESC [`
moves the cursor, erases lines or, on some terminals, writes to files) would be obeyed by
the terminal of the staff member reading it. So the CLI's stdout and stderr are wrapped:
every control character but newline, tab and CR LF is shown as U+FFFD, and the bidirectional
controls that reorder text on screen are dropped. Standard library only (the thin pipe
path of `mailbot ingest` imports this module).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

REPLACEMENT = "\ufffd"
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_TABLE: dict[int, str | None] = {c: REPLACEMENT for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]
                                 if chr(c) not in "\n\t"}
_TABLE.update({ord(c): None for c in _BIDI})


def printable(text: str) -> str:
    """`text` with no control character but newline, tab and CR LF line ends (CSV), and no
    bidirectional control."""
    if text.isprintable():
        return text
    if "\r\n" in text:
        return "\r\n".join(part.translate(_TABLE) for part in text.split("\r\n"))
    return text.translate(_TABLE)


class CleanStream:
    """A text stream that cleans what is written to it (`printable`) before passing it on.
    `uncleaned` is the stream itself, for the CLI's own cursor moves (the progress line)."""

    def __init__(self, stream: TextIO) -> None:
        self.uncleaned = stream

    def write(self, text: str) -> int:
        self.uncleaned.write(printable(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, buffer, encoding…
        return getattr(self.uncleaned, name)


def uncleaned(stream: TextIO) -> TextIO:
    """The stream under a CleanStream (or the stream itself)."""
    return getattr(stream, "uncleaned", stream) if isinstance(stream, CleanStream) else stream


@contextmanager
def cleaned_output() -> Iterator[None]:
    """sys.stdout and sys.stderr cleaned for the duration (restored after)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout = CleanStream(out) if not isinstance(out, CleanStream) else out  # type: ignore[assignment]
    sys.stderr = CleanStream(err) if not isinstance(err, CleanStream) else err  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
