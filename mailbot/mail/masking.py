"""Masking of bank identifiers (IBANs, payment card numbers) in free text.

The policy (docs/security.md): a card number is never stored nor shown whole (last
four digits only, in subjects, names and bodies alike); an IBAN is stored whole and
shown whole only to the brand's own staff (they investigate with it), masked to the
customer, in logs and in exports (`for_customer`, `mask_sensitive`).

Every pattern here is linear-time: repetitions are bounded and candidates are
validated in Python (country length table, mod-97, Luhn), never by
backtracking.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

MASK = "*"

# Length of the IBAN (without spaces) per country code (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
    "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# The separators people write between the groups of an IBAN or a card number: spaces
# (plain, no-break, narrow no-break), hyphens, dots; slashes too for cards.
_IBAN_SEP = "[ \u00a0\u202f.-]"
# Per country: code, check digits, then exactly the country's number of
# alphanumerics, each optionally preceded by one separator ("FR76 3000 …",
# "FR76-3000-…", "FR76.3000…"); a separator may also part the code from the check
# digits ("FR 76 3000 …"), which then must pass the mod-97 check (see _iban_span).
_IBAN_RE = re.compile(
    rf"(?<![0-9A-Za-z])(?=[A-Za-z]{{2}}{_IBAN_SEP}?[0-9]{{2}})(?:"
    + "|".join(
        rf"{country}{_IBAN_SEP}?[0-9]{{2}}(?:{_IBAN_SEP}?[0-9A-Za-z]){{{length - 4}}}"
        for country, length in IBAN_LENGTHS.items()
    )
    + r")(?![0-9A-Za-z])",
    re.IGNORECASE,
)
# Where an IBAN match can start: two letters, perhaps a separator, then two digits (what
# the lookahead of _IBAN_RE asks, with the same IGNORECASE meaning of a letter). Found from
# the digits, which are rare in text, this is much cheaper than trying _IBAN_RE at every
# letter. The scan starts three characters before the first digit found.
_IBAN_HINT = re.compile(
    rf"[0-9](?:(?<=[A-Za-z]{{2}}[0-9])|(?<=[A-Za-z]{{2}}{_IBAN_SEP}[0-9]))[0-9]", re.IGNORECASE)
_SEP = "[ \u00a0\u202f./-]"
# Only card-shaped runs: compact, Amex-like 4-6-5, two groups of eight, or groups of four
# (last one shorter). The start check comes after the first digit (`[0-9](?<![0-9A-Za-z][0-9])`,
# the same as a leading `(?<![0-9A-Za-z])`) so that the pattern starts with a digit class:
# the regex engine then skips straight to digits instead of trying it at every position.
_CARD_RE = re.compile(
    rf"[0-9](?<![0-9A-Za-z][0-9])(?:[0-9]{{12,18}}|[0-9]{{3}}{_SEP}[0-9]{{6}}{_SEP}[0-9]{{4,5}}"
    rf"|[0-9]{{7}}{_SEP}[0-9]{{8}}"
    rf"|[0-9]{{3}}(?:{_SEP}[0-9]{{4}}){{2,4}}(?:{_SEP}[0-9]{{1,3}})?)(?![0-9])"
)
_SEP_RE = re.compile(_SEP)
_SEPARATORS = " \u00a0\u202f./-"


@dataclass(frozen=True)
class Span:
    """A half-open slice ``text[start:end]`` found by a scanner."""

    start: int
    end: int


_ASCII_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _is_alnum(ch: str) -> bool:
    return ch in _ASCII_ALNUM  # ch.isascii() and ch.isalnum(), as one set lookup


def iban_checksum_ok(compact: str) -> bool:
    """True when ``compact`` (no spaces) passes the ISO 13616 mod-97 check."""
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
    except ValueError:
        return False


def _iban_span(text: str, match: re.Match[str]) -> Span | None:
    """The IBAN matched. An upper-case country code written against its check digits is
    enough (typos are masked too); a lower-case one, or one set apart ("FR 76 …"), must
    also pass the mod-97 check."""
    found = match.group(0)
    if (found[:2].isupper() and found[2].isdigit()) or iban_checksum_ok(_compact(found).upper()):
        return Span(match.start(), match.end())
    return None


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn check."""
    reverse = digits[::-1]
    total = sum(map(int, reverse[::2])) + sum(_LUHN_DOUBLED[int(ch)] for ch in reverse[1::2])
    return total % 10 == 0


_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _card_layout_ok(groups: list[str]) -> bool:
    """Compact, groups of four (last one shorter), Amex-like 4-6-5/4-6-4, or 8-8."""
    if len(groups) == 1:
        return True
    sizes = [len(g) for g in groups]
    if sizes[:-1] == [4] * (len(sizes) - 1) and 1 <= sizes[-1] <= 4:
        return True
    return sizes in ([4, 6, 5], [4, 6, 4], [8, 8])


def _looks_like_card(digits: str) -> bool:
    """13–19 Luhn-valid digits; non-16-digit lengths must start with an issuer digit."""
    if not 13 <= len(digits) <= 19 or not luhn_ok(digits):
        return False
    return len(digits) == 16 or digits[0] in "23456"


def _card_span(text: str, match: re.Match[str]) -> Span | None:
    """The longest card number at the start of a candidate match, group-aligned."""
    groups = _SEP_RE.split(match.group(0))
    ends: list[int] = []
    pos = match.start()
    for group in groups:
        pos += len(group)
        ends.append(pos)
        pos += 1  # separators are one character
    for k in range(len(groups), 0, -1):
        if 13 <= ends[k - 1] - match.start() - (k - 1) <= 19 and _card_layout_ok(groups[:k]):
            if _looks_like_card("".join(groups[:k])):
                return Span(match.start(), ends[k - 1])
    return None


Validator = Callable[[str, re.Match[str]], Span | None]


def _scan(text: str, pattern: re.Pattern[str], validate: Validator, pos: int = 0) -> list[Span]:
    """Non-overlapping validated spans from ``pos`` on; a rejected candidate resumes one
    char later."""
    spans: list[Span] = []
    while (match := pattern.search(text, pos)) is not None:
        span = validate(text, match)
        if span is None:
            pos = match.start() + 1
        else:
            spans.append(span)
            pos = span.end
    return spans


_NOT_ALNUM = re.compile("[^0-9A-Za-z]")  # what _is_alnum is not


def _compact(s: str) -> str:
    return _NOT_ALNUM.sub("", s)


def iban_spans(text: str) -> list[Span]:
    """Spans of the IBANs in ``text``."""
    hint = _IBAN_HINT.search(text)
    if hint is None:
        return []
    return _scan(text, _IBAN_RE, _iban_span, max(0, hint.start() - 3))


def card_spans(text: str) -> list[Span]:
    """Spans of the payment card numbers in ``text``."""
    return _scan(text, _CARD_RE, _card_span)


def find_ibans(text: str) -> list[str]:
    """IBANs in ``text``, as written."""
    return [text[s.start : s.end] for s in iban_spans(text)]


def find_cards(text: str) -> list[str]:
    """Payment card numbers (13–19 digits, Luhn-valid) in ``text``, as written."""
    return [text[s.start : s.end] for s in card_spans(text)]


def mask_iban(s: str) -> str:
    """Keep country code, check digits and the last 3 characters; keep the spacing."""
    total = len(_compact(s))
    out: list[str] = []
    seen = 0
    for ch in s:
        if _is_alnum(ch):
            seen += 1
            out.append(ch.upper() if seen <= 4 or seen > total - 3 else MASK)
        else:
            out.append(ch)
    return "".join(out)


def mask_card(s: str) -> str:
    """Keep the last 4 digits, e.g. ``**** **** **** 1234``.

    A written layout with separators is kept; a compact number is grouped by
    four from the right.
    """
    digits = "".join(ch for ch in s if ch.isascii() and ch.isdigit())
    masked = MASK * max(len(digits) - 4, 0) + digits[-4:]
    if any(ch in _SEPARATORS for ch in s.strip()):
        it = iter(masked)
        return "".join(next(it, "") if ch.isdigit() else ch for ch in s.strip())
    head = len(masked) % 4
    groups = ([masked[:head]] if head else []) + [
        masked[i : i + 4] for i in range(head, len(masked), 4)
    ]
    return " ".join(groups)


def _replace(text: str, spans: list[Span], mask: Callable[[str], str]) -> str:
    """``text`` with each span replaced by ``mask(span text)``."""
    parts: list[str] = []
    pos = 0
    for span in spans:
        parts.append(text[pos : span.start])
        parts.append(mask(text[span.start : span.end]))
        pos = span.end
    parts.append(text[pos:])
    return "".join(parts)


def mask_ibans(text: str) -> str:
    """``text`` with every IBAN masked."""
    return _replace(text, iban_spans(text), mask_iban)


def mask_cards(text: str) -> str:
    """``text`` with every payment card number masked."""
    return _replace(text, card_spans(text), mask_card)


def mask_sensitive(text: str) -> str:
    """Mask every IBAN and payment card number in ``text``; leave everything else."""
    return mask_cards(mask_ibans(text))


def stored_body(text: str) -> str:
    """A message body as it is stored: card numbers masked (never kept whole, PCI DSS),
    IBANs whole (the brand's staff investigate with them: `for_customer` masks them in
    what leaves for anyone else), no NUL (which PostgreSQL refuses in text)."""
    return mask_cards(text).replace("\x00", "")


def stored_line(text: str) -> str:
    """A subject or a name as it is stored: the same policy as `stored_body`."""
    return mask_cards(text).replace("\x00", "")


def for_customer(text: str) -> str:
    """What a customer, a log or an export may read of stored text: IBANs masked too."""
    return mask_ibans(text)


def mask_and_find(text: str) -> tuple[str, list[str], list[str]]:
    """``mask_sensitive(text)``, ``find_ibans(text)`` and ``find_cards(mask_ibans(text))``
    at once: the text is scanned for IBANs once and for cards once, not twice each."""
    ibans = iban_spans(text)
    without_ibans = _replace(text, ibans, mask_iban)
    cards = card_spans(without_ibans)
    return (
        _replace(without_ibans, cards, mask_card),
        [text[s.start : s.end] for s in ibans],
        [without_ibans[s.start : s.end] for s in cards],
    )
