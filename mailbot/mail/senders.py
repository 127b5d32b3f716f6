"""Who wrote a mail, and where an answer to it may go (pure).

* `valid_address`: an addr-spec (RFC 5322 §3.4.1, with RFC 6532's UTF-8) that a
  mail can be sent to: dot-atom or quoted local part, a host name or address
  literal as domain, within SMTP's length limits. Nothing else is ever a
  customer address or a recipient of ours.
* `loose_address`: the one address in a broken header value such as
  ``big bug bb@bug.example`` (no angle brackets); None when there is not
  exactly one candidate (``a@x.example b@y.example``: which one?).
* `is_noreply`: an address that says nobody reads it (``noreply@``,
  ``gmail-noreply@``, ``do-not-reply@``, ``bounce-123@``, ``mailer-daemon@``…).
* `customer_contact`: the address a case's customer is answered at (see
  docs/decisions.md, "Who gets the acknowledgement").
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Printable ASCII atext (RFC 5322 §3.2.3) or any non-ASCII character (RFC 6532 §3.2).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"')
_LABEL = re.compile(r"(?!-)[A-Za-z0-9\-\u0080-\U0010ffff]{1,63}(?<!-)")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f\u0080-\u009f\ud800-\udfff]")


def valid_address(addr: str) -> bool:
    """True for an addr-spec a mail can be sent to (``local@domain``, no display name,
    no angle brackets, no comment)."""
    if not addr or len(addr) > 254 or _CONTROLS.search(addr):
        return False
    local, at, domain = addr.rpartition("@")
    if not at or not local or len(local.encode("utf-8")) > 64:
        return False
    if not (_DOT_ATOM.fullmatch(local) or _QUOTED.fullmatch(local)):
        return False
    return _valid_domain(domain)


def _valid_domain(domain: str) -> bool:
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        if literal[:5].lower() == "ipv6:":
            literal = literal[5:]
            kind: type = ipaddress.IPv6Address
        else:
            kind = ipaddress.IPv4Address
        try:
            kind(literal)
        except ValueError:
            return False
        return True
    labels = domain.split(".")
    return 0 < len(domain) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\],;:\"]+@[^\s<>()\[\],;:\"]+")


def loose_address(value: str) -> tuple[str, str] | None:
    """``(display name, address)`` from a header value the address parser could not read
    (``Name Words local@domain``, ``"Name" <a b@c.example.>``): its only address-like
    word, if that is a valid address (trailing dots dropped); None otherwise. The name is
    what comes before the ``<``, or the other words."""
    found = list(_ADDRESS_LIKE.finditer(value or ""))
    if len(found) != 1:
        return None
    word = found[0]
    addr = word.group().strip(".")
    if not valid_address(addr):
        return None
    bracket = value.find("<")
    head = value[:bracket] if 0 <= bracket < word.start() else value[:word.start()] + " " + value[word.end():]
    name = " ".join(head.split()).strip('"').strip()
    return name, addr


def idna_address(addr: str) -> str:
    """The address with its domain in IDNA A-labels (``jean@mächine.example`` →
    ``jean@xn--mchine-kva.example``): an ASCII address needs no SMTPUTF8. A non-ASCII
    local part stays as it is (only SMTPUTF8 can carry it); so does a domain IDNA
    refuses."""
    local, at, domain = addr.rpartition("@")
    if not at or domain.isascii():
        return addr
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return addr


def needs_smtputf8(*addresses: str) -> bool:
    """True when one of the addresses cannot be written in ASCII (a non-ASCII local part,
    RFC 6531), even with its domain in IDNA form."""
    return not all(idna_address(a).isascii() for a in addresses if a)


# Local parts nobody reads: no-reply in its spellings (anywhere in the local part:
# "gmail-noreply", "noreply.billing"), bounce handlers and mail daemons at its start.
_NOREPLY = re.compile(
    r"noreply|(?:^|[._+=-])no[._-]reply|do[._-]?not[._-]?reply|dont[._-]?reply|"
    r"^(?:bounces?|mailer-?daemon|mailer_daemon|postmaster)(?:$|[._+=\-0-9])|(?:^|[._+=-])bounces?(?:$|[._+=-])",
    re.IGNORECASE)


def is_noreply(addr: str) -> bool:
    """True when the address is one nobody reads (no-reply senders, bounce handlers)."""
    local = (addr or "").rpartition("@")[0]
    return bool(_NOREPLY.search(local))


@dataclass(frozen=True)
class Contact:
    """Where the customer of a mail is answered: `address` ('' when none is usable) and
    `source` (reply-to, from, envelope, none); `problem` says why none was usable."""

    address: str
    source: str
    problem: str = ""


def customer_contact(from_addr: str, reply_to: Sequence[str], envelope_from: str | None,
                     is_own: Callable[[str], bool], from_header: str = "") -> Contact:
    """The customer's address: the first usable Reply-To address (a valid address that is
    neither ours, by `is_own`, nor a no-reply one), else the From address, else the
    envelope sender (the return path, when it is a valid address), else none."""
    for addr in reply_to:
        if valid_address(addr) and not is_own(addr) and not is_noreply(addr):
            return Contact(addr.lower(), "reply-to")
    if from_addr and valid_address(from_addr):
        return Contact(from_addr.lower(), "from")
    env = (envelope_from or "").strip().strip("<>").strip()
    if env and valid_address(env):
        return Contact(env.lower(), "envelope")
    shown = " ".join(from_header.split())[:200]
    return Contact("", "none", f"no valid sender address in From: {shown!r}" if shown else "no From header")
