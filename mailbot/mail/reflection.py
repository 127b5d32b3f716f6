"""What of a sender's own words may be echoed back to them in our mail.

Anyone can write to a brand address with a forged `From:`: the acknowledgement then
goes, from the genuine brand, to the victim. A display name such as "client, votre
carte est bloquée. Appelez le +33 1 …" and a link in the subject were carried into
that mail, a phishing message signed by the bank (issue #20, item 7). So mail to a
customer echoes:

- a name only when it looks like a person's name (`greeting_name`): one to five
  capitalised words of letters (particles such as "de", "van" allowed), no digit,
  no punctuation but hyphens, apostrophes and initials' dots; "Dupont, Marie" is
  read as "Marie Dupont"; anything else greets "Madame, Monsieur";
- a subject without links, web or mail addresses and phone numbers (`echo_safe`):
  each is replaced by `[…]`. Dates, amounts and case references are kept.

Staff mail keeps what was written: staff investigate with it.

And whatever an agent's text carries (a quote of their notification that the quote
stripper kept: no `>` and no attribution line), mail to a customer never shows an
agent token, nor the address of a staff member (`without_staff`, issue #20, item 15):
a token lets its holder write on the case as the staff, and the customer has no use
for an internal address. Every pattern here is linear-time (tests/test_regex_fuzz.py runs them).
"""

from __future__ import annotations

import re

REMOVED = "[…]"

_LETTERS = r"[^\W\d_]"
_WORD = re.compile(rf"{_LETTERS}+(?:['’-]{_LETTERS}+){{0,3}}\.?")
_PARTICLES = frozenset("de du des d' da di del della der den van von le la y e bin ben al el".split())
MAX_NAME = 60
MAX_WORDS = 5

# Scheme or www. links, mail addresses, then bare host names with a path or a usual ending.
_LINK = re.compile(
    r"(?:\b(?:[a-z][a-z0-9+.-]{1,15}://|www\.)[^\s<>\"'»]{1,2000})"
    r"|(?:[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8})"
    r"|(?P<host>(?<![\w.@-])(?:[a-z0-9][a-z0-9-]{0,62}\.){1,8}"
    r"(?:[a-z]{2}|com|net|org|info|biz|io|app|xyz|online|site|top|shop|club|live|link|click|support|help"
    r"|secure|bank|finance|money|services?)\b(?![.-]?\w)(?:/[^\s<>\"'»]{0,2000})?)",
    re.IGNORECASE,
)
# A run of 8 to 15 digits, perhaps opened by + and parted by spaces, dots, hyphens or
# brackets: phone-shaped when it starts with + or 0, or is written in groups.
_DIGITS = re.compile(r"(?<![\w+-])\+?\(?\d(?:[ \u00a0.\-()]{0,2}\d){7,20}(?![\w-])")
_DATE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}")
_ADDRESS = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}", re.IGNORECASE)
# An agent token (mailbot.cases.tokens), alone or as the plus-part of an address.
_TOKEN = re.compile(r"(?<![0-9a-z])a\d{1,12}-\d{1,7}-[0-9a-f]{20}(?![0-9a-z])", re.IGNORECASE)


def greeting_name(name: str | None) -> str:
    """`name` when it reads as a person's name, else "" (the mail then greets no one by name)."""
    text = " ".join((name or "").split()).strip("\"' ")
    if not text or len(text) > MAX_NAME:
        return ""
    if text.count(",") == 1:  # "Dupont, Marie": the way some address books write it
        last, first = (p.strip() for p in text.split(","))
        text = f"{first} {last}" if first and last and len(first.split()) <= 2 and len(last.split()) <= 2 else ""
    words = text.split(" ")
    if not text or len(words) > MAX_WORDS or not all(_WORD.fullmatch(w) for w in words):
        return ""
    if not all(w[0].isupper() or w.lower() in _PARTICLES or w.lower().startswith("d'") for w in words):
        return ""
    return text if any(w[0].isupper() for w in words) else ""


def _link(match: re.Match[str]) -> str:
    found = match.group(0)
    if match.group("host") is not None:  # a bare host name: "Mr.de" or "M.Le" is no site, "ing.fr" is
        labels = found.split("/")[0].split(".")
        if len(labels) < 3 and len(labels[0]) < 3:
            return found
    link = found.rstrip(".,;:!?)]")  # the sentence's punctuation stays
    return REMOVED + found[len(link):]


def _phone(match: re.Match[str]) -> str:
    run = match.group(0)
    digits = sum(ch.isdigit() for ch in run)
    grouped = any(not ch.isdigit() for ch in run.lstrip("+"))
    if not 8 <= digits <= 15 or _DATE.fullmatch(run):
        return run
    return REMOVED if run.startswith(("+", "0", "(")) or grouped else run


def echo_safe(text: str | None) -> str:
    """`text` without its links, web and mail addresses and phone numbers (each `[…]`)."""
    if not text:
        return text or ""
    return _DIGITS.sub(_phone, _LINK.sub(_link, text))


def without_staff(text: str, staff: frozenset[str]) -> str:
    """`text` without agent tokens and without the addresses in `staff` (lower-case), each `[…]`."""
    if not text or "@" not in text and "-" not in text:
        return text

    def address(match: re.Match[str]) -> str:
        found = match.group(0)
        local = found.partition("@")[0]
        if found.lower() in staff or _TOKEN.fullmatch(local.rpartition("+")[2]):
            return REMOVED
        return found

    return _TOKEN.sub(REMOVED, _ADDRESS.sub(address, text))
