"""Multipart boundary lines without a regex compiled per mail.

The standard library's `email.feedparser` compiles one regular expression per
multipart it parses, around that part's boundary:

    '(?P<sep>' + re.escape(separator) + r')(?P<end>--)?(?P<ws>[ \\t]*)(?P<linesep>\\r\\n|\\r|\\n)?$'

Boundaries are unique per mail, so `re`'s cache never helps: ~0.15 ms per
multipart (measured on 2 cores; a text + HTML mail has one, a mail with an
attachment and an HTML alternative two), about as much as parsing the rest of
a small mail. `install()` gives the feedparser a `re` whose `compile` returns,
for exactly that pattern, a matcher that does the same thing in plain string
operations (same match or no match, same `end`, `ws` and `linesep` groups;
tests/test_mime_boundary.py compares both on every combination of the
characters that matter, and the parse trees of the corpora), and hands every
other pattern to the real `re.compile`. If a later Python builds the pattern
differently, nothing matches the template and the feedparser gets real
regexes, as before.

It also replaces the feedparser's `NLCRE_eol` (``(\\r\\n|\\r|\\n)\\Z``), with which it
takes the line end before each boundary off the part that precedes it:
`search` tries that pattern at every position of the part's whole payload, so a
50 KB base64 attachment is scanned to its end to find its last two characters
(~5 % of parsing a usual mail). A match must end at the end of the string and is
at most two characters long, so searching from two characters before the end
finds the same match (tests/test_mime_boundary.py compares both exhaustively).
"""

from __future__ import annotations

import email.feedparser
import re
from collections.abc import Callable
from typing import Any

_PREFIX = "(?P<sep>"
_SUFFIX = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)  # re.escape puts one backslash before a character


class BoundaryMatch:
    """What the feedparser reads of a match: `group(name)`."""

    __slots__ = ("_groups",)

    def __init__(self, groups: dict[str, str | None]) -> None:
        self._groups = groups

    def group(self, name: str) -> str | None:
        return self._groups[name]


def boundary_matcher(separator: str) -> Callable[[str], BoundaryMatch | None]:
    """`re.compile(_PREFIX + re.escape(separator) + _SUFFIX).match`, without compiling.

    The pattern reads: the separator, then `--` (greedy), blanks and tabs, an
    optional line end (CRLF before CR), then `$`: the end of the line, or just
    before a final newline. The feedparser calls this on every line of a
    multipart's body, so lines that do not start with the separator return first.
    """
    n = len(separator)

    def match(line: str) -> BoundaryMatch | None:
        if not line.startswith(separator):
            return None
        rest, end = line[n:], None
        if rest[:2] == "--":
            end, rest = "--", rest[2:]
        after_ws = rest.lstrip(" \t")
        ws = rest[:len(rest) - len(after_ws)]
        linesep: str | None
        if after_ws[:2] == "\r\n":
            linesep, tail = "\r\n", after_ws[2:]
        elif after_ws[:1] in ("\r", "\n"):
            linesep, tail = after_ws[:1], after_ws[1:]
        else:
            linesep, tail = None, after_ws
        if tail not in ("", "\n"):  # `$`: the end, or just before a final newline
            return None
        return BoundaryMatch({"sep": separator, "end": end, "ws": ws, "linesep": linesep})

    return match


class _Matcher:
    """Stands for the compiled pattern: the feedparser only calls its `match`."""

    __slots__ = ("match",)

    def __init__(self, separator: str) -> None:
        self.match = boundary_matcher(separator)


class _FeedparserRe:
    """The `re` module as `email.feedparser` sees it after `install()`."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    def compile(self, pattern: Any, flags: int = 0) -> Any:
        if (flags == 0 and isinstance(pattern, str) and pattern.startswith(_PREFIX)
                and pattern.endswith(_SUFFIX)):
            return _Matcher(_UNESCAPE.sub(r"\1", pattern[len(_PREFIX):-len(_SUFFIX)]))
        return re.compile(pattern, flags)


_EOL_PATTERN = r"(\r\n|\r|\n)\Z"
_ORIGINAL_EOL = getattr(email.feedparser, "NLCRE_eol", None)  # the feedparser's own, put back by uninstall


class LineEndAtEnd:
    """`email.feedparser.NLCRE_eol`, searching only where a match can start."""

    __slots__ = ()

    def search(self, text: str) -> re.Match[str] | None:
        assert _ORIGINAL_EOL is not None  # installed only over that pattern
        return _ORIGINAL_EOL.search(text, max(0, len(text) - 2))


def install() -> None:
    """Give `email.feedparser` the boundary matcher and the line-end search (idempotent;
    the whole process). A Python whose feedparser has another line-end pattern keeps it."""
    email.feedparser.re = _FeedparserRe()  # type: ignore[attr-defined,assignment]
    if isinstance(_ORIGINAL_EOL, re.Pattern) and _ORIGINAL_EOL.pattern == _EOL_PATTERN:
        email.feedparser.NLCRE_eol = LineEndAtEnd()  # type: ignore[attr-defined]


def uninstall() -> None:
    """The real `re` and the feedparser's own line-end pattern again (tests compare both)."""
    email.feedparser.re = re  # type: ignore[attr-defined]
    email.feedparser.NLCRE_eol = _ORIGINAL_EOL  # type: ignore[attr-defined]
