"""A fast path for the stdlib's address parser, on the one shape most headers have.

`email.utils.getaddresses` and `parseaddr` read a header value character by
character, and the analysis of a mail parses its From header twice (the parser's sender and
the classifier's rules) plus To and Cc. `simple_address` recognises, with one
regular expression, a value holding exactly one address in its plainest forms:

    jean@example.fr
    <jean@example.fr>
    Jean Dupont <jean@example.fr>
    "Dupont, Jean" <jean@example.fr>

and returns what the stdlib returns for it, ``(display name, address)``. For
anything else — comments, dots or encoded specials in the name, escapes, folded
lines, route addresses, domain literals, several addresses, a trailing dot — it
returns None and the caller asks the stdlib. tests/test_addresses.py checks the
fast path against the running Python's `getaddresses` and `parseaddr` on
generated values and on every header of the corpus mails.
"""

from __future__ import annotations

import re

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_ADDR = rf"{_DOT_ATOM}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
# A word of the display name: no RFC 5322 special, no dot, no space or control
# character (the stdlib treats any other character, non-ASCII included, as atom text).
_WORD = r"[^\x00-\x20\x7f()<>@,:;.\\\"\[\]]+"
_SIMPLE = re.compile(
    rf"[ \t]*(?:(?P<bare>{_ADDR})"
    rf"|(?:(?P<words>{_WORD}(?:[ \t]+{_WORD})*)|\"(?P<quoted>[^\"\\\x00-\x1f\x7f]*)\")?[ \t]*<(?P<addr>{_ADDR})>)[ \t]*")
_BLANKS = re.compile(r"[ \t]+")


def simple_address(value: str) -> tuple[str, str] | None:
    """``(name, address)`` as the stdlib parses a plain one-address value; None otherwise."""
    m = _SIMPLE.fullmatch(value)
    if m is None:
        return None
    bare = m.group("bare")
    if bare is not None:
        return "", bare
    words, quoted = m.group("words"), m.group("quoted")
    name = _BLANKS.sub(" ", words) if words is not None else quoted or ""
    return name, m.group("addr")
