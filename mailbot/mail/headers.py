"""Header text made safe to store and to write into a mail header."""

from __future__ import annotations

import unicodedata

_BIDI_CONTROLS = set("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean_header(value: str) -> str:
    """One line: CR, LF and other control characters become spaces, whitespace is collapsed."""
    # A printable str holds no character of the categories Cc, Cf (the bidi controls among
    # them), Zl or Zp: the general path would change none of its characters.
    if isinstance(value, str) and value.isprintable():
        return " ".join(value.split())
    return _clean_header_any(value)


def _clean_header_any(value: str) -> str:
    """clean_header for any text (the general path; tests check the fast path against it)."""
    out = []
    for ch in str(value):
        if ch in _BIDI_CONTROLS:
            continue
        out.append(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch)
    return " ".join("".join(out).split())
