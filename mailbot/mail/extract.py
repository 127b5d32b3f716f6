"""Pure extraction of complaint facts from a mail body (French first, English too).

``extract`` never raises on a ``str`` and only scans the first ``MAX_SCAN_CHARS``
characters. Every pattern has bounded repetitions or unambiguous structure, so
matching is linear in the input: tests/test_regex_fuzz.py runs each one on
adversarial text and fails on any whose time grows faster than the text. IBANs and card numbers are masked before any
other extractor sees the text, so they can only come out masked.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from mailbot.config import BrandConfig
from mailbot.mail.masking import (
    IBAN_LENGTHS,
    mask_and_find,
    mask_card,
    mask_iban,
    mask_sensitive,
)
from mailbot.mail.parsing import ParsedMail

MAX_SCAN_CHARS = 64_000  # a complaint states its facts early; a body may be megabytes

OPERATION_TYPES = (
    "virement", "paiement", "prelevement", "carte", "retrait", "cheque", "frais",
    "remboursement", "investissement",
)  # fmt: skip
MISSING_KEYS = (
    "coordonnees", "date_faits", "type_operation", "montant", "references", "pieces_jointes",
)  # fmt: skip


@dataclass(frozen=True)
class Amount:
    """A money amount: normalised decimal string and ISO currency code."""

    value: str
    currency: str


@dataclass(frozen=True)
class Extracted:
    """Everything ``extract`` found in one complaint mail."""

    name: str | None
    email: str | None
    postal_address: str | None
    phone: str | None
    customer_number: str | None
    account_number: str | None
    ibans: tuple[str, ...]
    cards: tuple[str, ...]
    fact_dates: tuple[str, ...]
    amounts: tuple[Amount, ...]
    operation_types: tuple[str, ...]
    references: tuple[str, ...]
    category: str | None
    urgent: bool
    urgent_matches: tuple[str, ...]
    language: str
    missing: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable dict (tuples as lists, amounts as objects)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "amounts":
                value = [{"value": a.value, "currency": a.currency} for a in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


# --------------------------------------------------------------------------- folding


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    """One lower-case, accent-free character (the original if folding changes length)."""
    low = ch.lower()
    if len(low) != 1:
        return ch
    base = "".join(c for c in unicodedata.normalize("NFKD", low) if not unicodedata.combining(c))
    return base if len(base) == 1 else low


class _FoldMap(dict[int, str]):
    """``str.translate`` table folding any character, filled on demand (bounded)."""

    def __missing__(self, code: int) -> str:
        folded = _fold_char(chr(code))
        if len(self) < 4096:
            self[code] = folded
        return folded


_FOLD_MAP = _FoldMap()


def _cp1252_fold_table() -> tuple[bytes, bytes]:
    """The fold of every cp1252 character as a ``bytes.translate`` table, and the bytes
    whose fold is not a cp1252 character (only "µ", which folds to Greek "μ")."""
    table, outside = bytearray(range(256)), bytearray()
    for code in range(256):
        try:
            char = bytes([code]).decode("cp1252")
        except UnicodeError:  # undefined in cp1252: never in encoded text
            continue
        try:
            table[code] = _fold_char(char).encode("cp1252")[0]
        except UnicodeError:
            outside.append(code)
    return bytes(table), bytes(outside)


_CP1252_FOLD, _CP1252_OUTSIDE = _cp1252_fold_table()


def fold(text: str) -> str:
    """Lower-case and strip accents, keeping the length (indexes stay valid)."""
    # Written for speed: French and English mail text is nearly always cp1252 (accents,
    # €, œ...), and there folding is one bytes.translate at C speed (~8x faster than one
    # lookup per character); anything else goes through the per-character table.
    try:
        data = text.encode("cp1252")
    except UnicodeError:
        return text.translate(_FOLD_MAP)
    if any(code in data for code in _CP1252_OUTSIDE):
        return text.translate(_FOLD_MAP)
    return data.translate(_CP1252_FOLD).decode("cp1252")


# Odd spaces into spaces, typographic quotes into ', CR into LF. One str.replace per
# character that occurs is much faster than str.translate, which looks up every
# character of non-ASCII text in a dict; no replacement produces another one's target.
_REPLACEMENTS = (
    ("\r\n", "\n"), ("\xa0", " "), ("\u202f", " "), ("\u2009", " "), ("\u2019", "'"),
    ("\u2018", "'"), ("\r", "\n"),
)  # fmt: skip


def normalise(text: str) -> str:
    """Cap the length, turn odd spaces into spaces, quotes into ``'``, CR into LF."""
    text = text[:MAX_SCAN_CHARS]
    for old, new in _REPLACEMENTS:
        if old in text:
            text = text.replace(old, new)
    return text


def _whole_words(words: Sequence[str]) -> str:
    r"""Pattern for ``words`` (already folded) separated by whitespace, as whole words:
    no word character just before or just after.

    Written for speed: the start check is not a leading ``(?<!\w)`` but comes after the
    first character, as ``c(?<!\wc)`` (same meaning: the character before ``c`` is not a
    word character). A pattern, or an alternation of them, that starts with a literal lets
    the regex engine skip to the positions holding one of those characters instead of
    running the whole pattern at every position (10-15x faster on a mail body).
    """
    if not words:
        return r"(?<!\w)(?!\w)"
    first = re.escape(words[0][0])
    rest = re.escape(words[0][1:]) + "".join(r"\s+" + re.escape(w) for w in words[1:])
    return rf"{first}(?<!\w{first}){rest}(?!\w)"


def _literals_not_after(words: Iterable[str], before: str) -> str:
    """An alternation of the literal ``words`` where the character before a match is not
    in the class ``before``: ``(?<!before)(?:w1|w2...)``, written with the check after the
    first character for the same speed-up as ``_whole_words``. Words are grouped by first
    character (keeping their order), so a position is tested once per distinct first
    character, not once per word."""
    by_first: dict[str, list[str]] = {}
    for word in words:
        by_first.setdefault(word[0], []).append(re.escape(word[1:]))
    return "|".join(
        f"{re.escape(first)}(?<!{before}{re.escape(first)})(?:{'|'.join(rests)})"
        for first, rests in by_first.items()
    )


_TOKEN_RE = re.compile(r"\w+")


def _tokens(text: str) -> frozenset[str]:
    """The words (runs of word characters) of ``text``."""
    return frozenset(_TOKEN_RE.findall(text))


@dataclass(frozen=True)
class _Phrase:
    """A whole-word phrase, with a set lookup that rules it out in most texts.

    When every word of the phrase is a run of word characters, each of them is one of
    the text's ``_tokens`` wherever the phrase matches, and a one-word phrase matches
    exactly where it is a token. So a few set lookups (one ``_tokens`` per text) replace
    a regex scan of the whole text per phrase; the pattern only runs to confirm a
    multi-word phrase whose words are all there, or a phrase with other characters.
    """

    words: frozenset[str]  # each must be a token of the text (none when unknown)
    pattern: re.Pattern[str] | None  # None: the words being tokens is a match

    def found(self, text: str, tokens: AbstractSet[str]) -> bool:
        if not self.words.issubset(tokens):
            return False
        return self.pattern is None or self.pattern.search(text) is not None


def _phrase(words: Sequence[str], pattern: str) -> _Phrase:
    if words and all(_TOKEN_RE.fullmatch(word) for word in words):
        return _Phrase(frozenset(words), re.compile(pattern) if len(words) > 1 else None)
    return _Phrase(frozenset(), re.compile(pattern))


@lru_cache(maxsize=512)
def _keyword_phrase(keyword: str) -> _Phrase:
    """A configured keyword, accent/case-insensitive (matched on folded text), its words
    separated by any whitespace."""
    words = fold(keyword).split()
    return _phrase(words, _whole_words(words))


@lru_cache(maxsize=256)
def _literal_phrase(phrase: str) -> _Phrase:
    """``phrase`` exactly as written (one space between words), as a whole word."""
    return _phrase(phrase.split(" "), _whole_words([phrase]))


@dataclass(frozen=True)
class _PhraseList:
    """Phrases (each with the name it is reported under), the one-word ones also as a
    set: one ``isdisjoint`` call rules them all out."""

    phrases: tuple[tuple[str, _Phrase], ...]
    single: frozenset[str]  # the words of the one-word phrases
    multi: tuple[_Phrase, ...]  # the others

    @classmethod
    def of(cls, phrases: Iterable[tuple[str, _Phrase]]) -> _PhraseList:
        named = tuple(phrases)
        single = frozenset(word for _, p in named if p.pattern is None for word in p.words)
        return cls(named, single, tuple(p for _, p in named if p.pattern is not None))

    def any_found(self, text: str, tokens: AbstractSet[str]) -> bool:
        if not tokens.isdisjoint(self.single):
            return True
        for phrase in self.multi:
            if phrase.found(text, tokens):
                return True
        return False

    def found(self, text: str, tokens: AbstractSet[str]) -> list[str]:
        if not self.any_found(text, tokens):
            return []
        return [name for name, phrase in self.phrases if phrase.found(text, tokens)]


@lru_cache(maxsize=256)
def _keyword_list(keywords: tuple[str, ...]) -> _PhraseList:
    return _PhraseList.of((kw, _keyword_phrase(kw)) for kw in keywords if kw.strip())


@lru_cache(maxsize=64)
def _literal_list(phrases: tuple[str, ...]) -> _PhraseList:
    return _PhraseList.of((phrase, _literal_phrase(phrase)) for phrase in phrases)


def _matches_any(folded: str, keywords: Iterable[str], tokens: AbstractSet[str] | None = None) -> list[str]:
    """The keywords (as given) found in ``folded`` text (``tokens``: its ``_tokens``)."""
    if tokens is None:
        tokens = _tokens(folded)
    return _keyword_list(tuple(keywords)).found(folded, tokens)


def _has_any(folded: str, keywords: Iterable[str], tokens: AbstractSet[str]) -> bool:
    """Whether ``_matches_any`` would find anything."""
    return _keyword_list(tuple(keywords)).any_found(folded, tokens)


# --------------------------------------------------------------------------- language

_FR_WORDS = frozenset(
    "le la les des est et pour une un du je vous mon ma mes pas que qui sur avec dans au aux "
    "ce cette bonjour merci madame monsieur depuis mais ai suis compte votre nous".split()
)
_EN_WORDS = frozenset(
    "the and is for you my i to of in on was have this that with your please hello dear "
    "thanks been account from it not has are".split()
)
_WORD_RE = re.compile(r"[a-z]{1,20}")


def detect_language(text: str) -> str:
    """``"fr"`` or ``"en"`` by counting common words; French when unsure."""
    return _language_of_folded(fold(text[:_LANGUAGE_CHARS]))


_LANGUAGE_CHARS = 20_000


def _language_of_folded(folded: str) -> str:
    """``detect_language`` of text already folded (folding is per character, so the fold
    of a concatenation is the concatenation of the folds)."""
    words = _WORD_RE.findall(folded[:_LANGUAGE_CHARS])
    fr = sum(map(_FR_WORDS.__contains__, words))
    en = sum(map(_EN_WORDS.__contains__, words))
    return "en" if en > fr else "fr"


# --------------------------------------------------------------------------- identity

_LETTERS = r"[^\W\d_]"
_UPPER = "[A-ZÀ-Þ]"
_NAME_TOKEN = rf"{_UPPER}{_LETTERS}*(?:-{_UPPER}{_LETTERS}*)?"
_PARTICLE = r"(?:(?:de|du|des|van|von|le|la|di|da|del) )?"
_NAME_RE = re.compile(rf"{_NAME_TOKEN}(?: {_PARTICLE}{_NAME_TOKEN}){{0,3}}")
_NAME_LABEL_RE = re.compile(
    r"^[ \t]*(?:nom et prenom|prenom et nom|nom complet|full name|nom|name)[ \t]*:[ \t]*(.{2,80})$",
    re.MULTILINE,
)
_LABEL_NAME_RE = re.compile(rf"{_LETTERS}+(?:[ '-]{_LETTERS}+){{0,5}}")
_CALLED_RE = re.compile(r"(?:je m'appelle|je me nomme|my name is)\s+(.{2,80})")
_CLOSINGS = (
    "cordialement", "bien cordialement", "bien a vous", "salutations", "sincerement",
    "merci d'avance", "merci", "regards", "best regards", "kind regards", "sincerely",
    "yours sincerely", "yours faithfully", "thanks", "thank you", "--",
)  # fmt: skip
_EMAIL_RE = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")


def _as_name(candidate: str) -> str | None:
    """The leading person name of ``candidate`` (1–4 words), if it looks like one."""
    match = _NAME_RE.match(candidate.strip())
    if match is None or "@" in candidate:
        return None
    return match.group(0)


def _name_from_display(display_name: str | None) -> str | None:
    if not display_name or "@" in display_name:
        return None
    cleaned = " ".join(display_name.strip().strip("\"'").split())
    return cleaned if any(ch.isalpha() for ch in cleaned) else None


def _name_from_label(text: str, folded: str) -> str | None:
    """ "Nom : Jean DUPONT" (the whole value if it is only letters), "je m'appelle ..."."""
    match = _NAME_LABEL_RE.search(folded)
    if match:
        value = text[match.start(1) : match.end(1)].strip()
        return value if _LABEL_NAME_RE.fullmatch(value) else _as_name(value)
    match = _CALLED_RE.search(folded)
    return _as_name(text[match.start(1) : match.end(1)]) if match else None


_CLOSING_STARTS = frozenset(closing[0] for closing in _CLOSINGS)


def _is_closing(line: str) -> bool:
    stripped = line.strip()
    # Cheap first: a closing's first character (folding is per character) rules out
    # almost every line without folding it.
    if not stripped or _fold_char(stripped[0]) not in _CLOSING_STARTS:
        return False
    folded = fold(stripped).rstrip(",.! ")
    return bool(folded) and len(folded) < 40 and folded.startswith(_CLOSINGS)


def _name_from_signature(text: str) -> str | None:
    """The first name-like line within two lines after a closing formula."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not _is_closing(line):
            continue
        following = [ln.strip() for ln in lines[i + 1 : i + 4] if ln.strip()][:2]
        for candidate in following:
            name = _as_name(candidate)
            if name and name == candidate.rstrip(".") and not _is_closing(candidate):
                return name
    return None


def extract_name(text: str, folded: str, display_name: str | None) -> str | None:
    """Display name, else "Nom : ...", "je m'appelle ...", else the signature."""
    return (
        _name_from_display(display_name)
        or _name_from_label(text, folded)
        or _name_from_signature(text)
    )


def extract_email(text: str, from_addr: str | None) -> str | None:
    """The sender address, else the first address in the text."""
    if from_addr and "@" in from_addr:
        return from_addr.strip().strip("<>")
    match = _EMAIL_RE.search(text)
    return match.group(0) if match else None


# --------------------------------------------------------------------------- address

_FR_STREET = (
    r"rue|avenue|av\.|boulevard|bd|place|chemin|all[ée]e|impasse|route|quai|cours|square|"
    r"passage|r[ée]sidence|lotissement|voie|cit[ée]|hameau|chauss[ée]e|faubourg|rond-point"
)
_CITY = rf"[A-ZÀ-Ý]{_LETTERS}*(?:-{_LETTERS}+|'{_LETTERS}+| [A-ZÀ-Ý]{_LETTERS}*){{0,4}}"
_FR_ADDRESS_RE = re.compile(
    rf"(\d(?<![\w*]\d)\d{{0,3}}(?: ?(?i:bis|ter))?),? +((?i:{_FR_STREET})(?!\w)[^\n,\d]{{0,60}}?)"
    rf" *+[,\n]? *+(\d{{5}}) +({_CITY})"  # possessive: two greedy runs split n spaces n ways
)
_EN_STREET = (
    r"Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Close|Way|Court|Ct|Place|Pl|Square|"
    r"Terrace|Boulevard|Blvd|Crescent|Gardens|Grove|Row"
)
_EN_ADDRESS_RE = re.compile(
    rf"\d(?<![\w*]\d)\d{{0,4}}[A-Z]? (?:[A-Z][a-z]+ ){{1,4}}(?:{_EN_STREET})\b\.?,? *+\n? *+"
    r"[A-Z][a-z]+(?: [A-Z][a-z]+){0,2}"
    r"(?:,? (?:[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|[A-Z]{2} \d{5}(?:-\d{4})?))?"
)


def _collapse(s: str) -> str:
    return " ".join(s.split())


def extract_postal_address(text: str) -> str | None:
    """A French ("12 rue des Lilas, 75011 Paris") or English street address."""
    match = _FR_ADDRESS_RE.search(text)
    if match:
        number, street, postcode, city = match.groups()
        return f"{_collapse(number)} {_collapse(street)}, {postcode} {city.strip()}"
    match = _EN_ADDRESS_RE.search(text)
    if match:
        return ", ".join(_collapse(part).rstrip(",") for part in match.group(0).split("\n"))
    return None


# --------------------------------------------------------------------------- phone

_FR_PHONE_RE = re.compile(
    r"(?:\+(?<![\w+*.,/-]\+) ?33 ?(?:\(0\) ?)?|0(?<![\w+*.,/-]0)0 ?33 ?(?:\(0\) ?)?|0(?<![\w+*.,/-]0))"
    r"([1-9])((?:[ .-]?\d{2}){4})(?![\d])"
)
_INTL_PHONE_RE = re.compile(r"\+(?<![\w+]\+)(?!33)\d{1,3}(?:(?:[ .-]\d{1,6}){2,6}|\d{6,12})(?!\d)")


# Overseas departments and communities dialled with a French national number but their own
# country code (ARCEP numbering plan): 0590/0690/0691 Guadeloupe, Saint-Martin, Saint-
# Barthélemy; 0594/0694 French Guiana; 0596/0696/0697 Martinique; 0262/0263/0692/0693 La
# Réunion; 0269/0639 Mayotte.
_OVERSEAS = {"590": "590", "690": "590", "691": "590", "594": "594", "694": "594", "596": "596",
             "696": "596", "697": "596", "262": "262", "263": "262", "692": "262", "693": "262",
             "269": "262", "639": "262"}


def extract_phone(text: str) -> str | None:
    """A French number as ``+33 6 12 34 56 78`` (an overseas one with its own code:
    ``+590 690 12 34 56`` in Saint-Martin), else an international one as written."""
    match = _FR_PHONE_RE.search(text)
    if match:
        national = match.group(1) + re.sub(r"\D", "", match.group(2))  # 9 digits after the 0
        code = _OVERSEAS.get(national[:3])
        if code:
            rest = national[3:]
            return f"+{code} {national[:3]} " + " ".join(rest[i : i + 2] for i in range(0, 6, 2))
        pairs = " ".join(national[1 + i : 3 + i] for i in range(0, 8, 2))
        return f"+33 {national[0]} {pairs}"
    match = _INTL_PHONE_RE.search(text)
    return match.group(0) if match else None


# --------------------------------------------------------------------------- identifiers

# The whitespace runs between a label and its value are possessive (`\s*+`): nothing after
# them can match whitespace, and three greedy runs in a row split a run of n spaces in n³
# ways before failing ("identifiant" and 1,000 spaces took 34 s).
_FILLER = r"(?:(?:is|est|est le) )?"
_VALUE = rf"{_FILLER}([a-z0-9*][a-z0-9*-]{{3,30}})"
_CUSTOMER_RE = re.compile(
    r"(?:numero (?:de )?client|n[°o] ?(?:de )?client|client n[°o]\.?|reference client"
    r"|identifiant(?: client)?|customer (?:number|no\.?|id)|client (?:number|id))"
    rf"\s*+(?:n[°o]\.?|#)?\s*+:?\s*+{_VALUE}"
)
_ACCOUNT_RE = re.compile(
    r"(?:numero de compte|n[°o] de compte|compte n[°o]\.?|account (?:number|no\.?))"
    rf"\s*+(?:n[°o]\.?|#)?\s*+:?\s*+{_FILLER}((?:[a-z]{{2}}[0-9]{{2}}|[0-9*])(?: ?[a-z0-9*]){{2,40}})"
)


def _labelled_value(text: str, folded: str, pattern: re.Pattern[str]) -> str | None:
    """The original-case value captured by ``pattern`` on the folded text."""
    match = pattern.search(folded)
    if match is None:
        return None
    value = text[match.start(1) : match.end(1)].strip()
    return value if any(ch.isdigit() for ch in value) else None


def extract_customer_number(text: str, folded: str) -> str | None:
    """ "numéro client 12345678", "client n° ...", "customer number ...", "identifiant ..."."""
    return _labelled_value(text, folded, _CUSTOMER_RE)


def extract_account_number(text: str, folded: str) -> str | None:
    """ "numéro de compte ..." / "account number ..." (already masked if an IBAN)."""
    value = _labelled_value(text, folded, _ACCOUNT_RE)
    if value is None:
        return None
    return _masked_iban_prefix(value) or value.split(" ")[0]


def _masked_iban_prefix(value: str) -> str | None:
    """The masked IBAN at the start of ``value`` (cut at its country's length), if any."""
    length = IBAN_LENGTHS.get(value[:2].upper())
    if length is None or "*" not in value[:length + 8]:
        return None
    count = 0
    for i, ch in enumerate(value):
        count += ch != " "
        if count == length:
            return value[: i + 1]
    return None


# --------------------------------------------------------------------------- dates

_MONTHS = {
    "janvier": 1, "janv": 1, "jan": 1, "january": 1,
    "fevrier": 2, "fevr": 2, "fev": 2, "february": 2, "feb": 2,
    "mars": 3, "march": 3, "mar": 3,
    "avril": 4, "avr": 4, "april": 4, "apr": 4,
    "mai": 5, "may": 5,
    "juin": 6, "june": 6, "jun": 6,
    "juillet": 7, "juil": 7, "july": 7, "jul": 7,
    "aout": 8, "august": 8, "aug": 8,
    "septembre": 9, "september": 9, "sept": 9, "sep": 9,
    "octobre": 10, "october": 10, "oct": 10,
    "novembre": 11, "november": 11, "nov": 11,
    "decembre": 12, "december": 12, "dec": 12,
}  # fmt: skip
_MONTH_ALT = "|".join(sorted(_MONTHS, key=len, reverse=True))
_ORD = r"(?:er|st|nd|rd|th)?"
# The patterns below that must not follow some character check it after their first
# character (`\d(?<![\w.,/-]\d)` for a leading `(?<![\w.,/-])\d`): a pattern that starts
# with a digit or a literal is only tried where one occurs, not at every position.
_DAY_MONTH_RE = re.compile(
    rf"(\d(?<![\w.,/-]\d)\d?){_ORD} (?:of )?({_MONTH_ALT})\b\.?(?:,? (\d{{4}}))?(?!\d)"
)
_MONTH_DAY_RE = re.compile(  # \b before a month (a letter) is (?<!\w)
    "(" + _literals_not_after(sorted(_MONTHS, key=len, reverse=True), r"\w") + ")"
    rf"\b\.? (\d{{1,2}}){_ORD}(?!\d)(?:,? (\d{{4}}))?(?!\d)"
)
_DMY_RE = re.compile(r"(\d(?<![\w/.-]\d)\d?)([/.-])(\d{1,2})\2(\d{4}|\d{2})(?![\d]|[/.-]\d)")
_ISO_RE = re.compile(r"(\d(?<![\w/.-]\d)\d{3})-(\d{2})-(\d{2})(?![\w]|[/.-]\d)")
_RELATIVE_DAYS = {
    "avant-hier": 2, "avant hier": 2, "day before yesterday": 2, "hier": 1, "yesterday": 1,
    "aujourd'hui": 0, "aujourd hui": 0, "ce matin": 0, "ce soir": 0, "cet apres-midi": 0,
    "today": 0, "this morning": 0, "this afternoon": 0, "tonight": 0,
}  # fmt: skip
_RELATIVE_RE = re.compile(
    "(" + _literals_not_after(sorted(_RELATIVE_DAYS, key=len, reverse=True), r"[\w-]") + r")(?![\w-])"
)
_WEEKDAYS = {
    "lundi": 0, "mardi": 1, "mercredi": 2, "jeudi": 3, "vendredi": 4, "samedi": 5, "dimanche": 6,
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5,
    "sunday": 6,
}  # fmt: skip
_WEEKDAY_ALT = "|".join(_WEEKDAYS)
# "<weekday> dernier" or "last <weekday>" after a non-word character (\b before a letter);
# every alternative starts with a literal, for the same speed-up as _literals_not_after.
_LAST_WEEKDAY_RE = re.compile(
    "(?:" + _literals_not_after([f"{day} dernier" for day in _WEEKDAYS], r"\w")
    + rf"|l(?<!\wl)ast (?:{_WEEKDAY_ALT}))\b"
)


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _full_year(raw: str | None, month: int, day: int, today: date) -> int:
    """Year of a date: written (2 or 4 digits), else the latest not in the future."""
    if raw is None:
        guess = _safe_date(today.year, month, day)
        return today.year - 1 if guess is not None and guess > today else today.year
    year = int(raw)
    if len(raw) == 2:
        year += 2000 if year <= today.year % 100 + 1 else 1900
    return year


Hit = tuple[int, int, date]


def _dated(match: re.Match[str], ymd: tuple[int, int, int]) -> Hit | None:
    found = _safe_date(*ymd)
    return None if found is None else (match.start(), match.end(), found)


def _numeric_dates(folded: str, today: date) -> Iterable[Hit | None]:
    for m in _DMY_RE.finditer(folded):
        day, month = int(m.group(1)), int(m.group(3))
        yield _dated(m, (_full_year(m.group(4), month, day, today), month, day))
    for m in _ISO_RE.finditer(folded):
        yield _dated(m, (int(m.group(1)), int(m.group(2)), int(m.group(3))))


def _text_dates(folded: str, today: date) -> Iterable[Hit | None]:
    for m in _DAY_MONTH_RE.finditer(folded):
        day, month = int(m.group(1)), _MONTHS[m.group(2)]
        yield _dated(m, (_full_year(m.group(3), month, day, today), month, day))
    for m in _MONTH_DAY_RE.finditer(folded):
        if m.group(1) == "may" and m.group(3) is None:
            continue  # "I may 3 times..." is not a date
        day, month = int(m.group(2)), _MONTHS[m.group(1)]
        yield _dated(m, (_full_year(m.group(3), month, day, today), month, day))


def _relative_dates(folded: str, today: date) -> Iterable[Hit]:
    for m in _RELATIVE_RE.finditer(folded):
        yield m.start(), m.end(), today - timedelta(days=_RELATIVE_DAYS[m.group(1)])
    for m in _LAST_WEEKDAY_RE.finditer(folded):
        found = m.group(0)
        weekday = _WEEKDAYS[found[5:] if found.startswith("last ") else found[: -len(" dernier")]]
        back = (today.weekday() - weekday - 1) % 7 + 1
        yield m.start(), m.end(), today - timedelta(days=back)


def extract_fact_dates(folded: str, today: date) -> tuple[str, ...]:
    """ISO dates of the facts, in order of appearance; none after ``today``."""
    hits = sorted(
        hit
        for finder in (_numeric_dates, _text_dates, _relative_dates)
        for hit in finder(folded, today)
        if hit is not None and hit[2] <= today
    )
    dates: list[str] = []
    taken_until = -1
    for start, end, found in hits:
        if start >= taken_until:
            dates.append(found.isoformat())
            taken_until = end
    return tuple(dict.fromkeys(dates))


# --------------------------------------------------------------------------- amounts

_CURRENCIES = {
    "€": "EUR", "eur": "EUR", "euro": "EUR", "euros": "EUR",
    "$": "USD", "usd": "USD", "us$": "USD", "dollar": "USD", "dollars": "USD",
    "£": "GBP", "gbp": "GBP", "pound": "GBP", "pounds": "GBP", "livre": "GBP", "livres": "GBP",
    "chf": "CHF", "francs suisses": "CHF", "franc suisse": "CHF",
}  # fmt: skip
_CUR_ALT = "|".join(map(re.escape, sorted(_CURRENCIES, key=len, reverse=True)))
# At most five groups of thousands (999 999 999 999 999 999): an unbounded `+` here made a
# body of "123 123 123 …" cost the square of its length (every group a new start, each
# running to the end of the text before the currency failed to follow).
_NUMBER = r"(\d{1,3}(?:[ .,]\d{3}){1,5}(?:[.,]\d{1,2})?|\d{1,12}(?:[.,]\d{1,2})?)"
# _NUMBER not after [\w.,*], with that check after the first digit (as for the dates).
_SUFFIX_AMOUNT_RE = re.compile(
    r"(\d(?<![\w.,*]\d)(?:\d{0,2}(?:[ .,]\d{3}){1,5}(?:[.,]\d{1,2})?|\d{0,11}(?:[.,]\d{1,2})?))"
    rf" ?({_CUR_ALT})(?![a-z])"
)
_PREFIX_AMOUNT_RE = re.compile(
    rf"({_literals_not_after(('us$', '€', '$', '£', 'usd', 'eur', 'gbp', 'chf'), '[a-z]')}) ?{_NUMBER}(?![\d])"
)


def parse_number(raw: str) -> str | None:
    """ "1 250,00" / "1.250,00" / "1,200.00" / "12.50" -> "1250.00" (two decimals)."""
    raw = raw.replace(" ", "")
    last = max(raw.rfind(","), raw.rfind("."))
    if last != -1 and len(raw) - last - 1 in (1, 2):
        whole, cents = raw[:last], raw[last + 1 :]
    else:
        whole, cents = raw, "0"
    try:
        value = Decimal(whole.replace(",", "").replace(".", "") + "." + cents)
    except InvalidOperation:
        return None
    return str(value.quantize(Decimal("0.01")))


def _amount_hits(folded: str) -> Iterable[tuple[int, int, str, str]]:
    for m in _SUFFIX_AMOUNT_RE.finditer(folded):
        yield m.start(), m.end(), m.group(1), m.group(2)
    for m in _PREFIX_AMOUNT_RE.finditer(folded):
        yield m.start(), m.end(), m.group(2), m.group(1)


def extract_amounts(folded: str) -> tuple[Amount, ...]:
    """Amounts with a currency sign or code, in order of appearance, deduplicated."""
    amounts: list[Amount] = []
    taken_until = -1
    for start, end, number, currency in sorted(_amount_hits(folded)):
        value = parse_number(number)
        if start < taken_until or value is None:
            continue
        taken_until = end
        amount = Amount(value, _CURRENCIES[currency])
        if amount not in amounts:
            amounts.append(amount)
    return tuple(amounts)


# --------------------------------------------------------------------------- operations

_OPERATION_WORDS: dict[str, tuple[str, ...]] = {
    "virement": ("virement", "virements", "transfer", "transfers", "wire transfer", "wire"),
    "paiement": ("paiement", "paiements", "payment", "payments", "achat", "purchase"),
    "prelevement": ("prelevement", "prelevements", "direct debit", "direct debits", "prlv"),
    "carte": ("carte", "carte bancaire", "cb", "card", "debit card", "credit card"),
    "retrait": ("retrait", "retraits", "withdrawal", "withdrawals", "distributeur", "dab", "atm"),
    "cheque": ("cheque", "cheques"),
    "frais": ("frais", "commission", "commissions", "agios", "fee", "fees", "bank charges"),
    "remboursement": ("remboursement", "remboursements", "rembourser", "refund", "reimbursement", "repayment"),
    "investissement": (
        "investissement", "investissements", "investi", "investir", "dividende", "dividendes",
        "investment", "investments", "invested", "dividend", "dividends", "souscription",
    ),
}  # fmt: skip


def extract_operation_types(folded: str, tokens: AbstractSet[str] | None = None) -> tuple[str, ...]:
    """Canonical operation keys mentioned, in ``OPERATION_TYPES`` order (``tokens``: the
    text's ``_tokens``, when already known)."""
    if tokens is None:
        tokens = _tokens(folded)
    return tuple(
        key for key in OPERATION_TYPES if _literal_list(_OPERATION_WORDS[key]).any_found(folded, tokens)
    )


# --------------------------------------------------------------------------- references

_CODE_REF_RE = re.compile(
    r"[A-Z](?<![\w/-][A-Z])(?:[A-Z0-9]{1,9}(?:[-/_][A-Z0-9]{1,15}){1,6}|[A-Z]{1,4}\d{5,20})(?![\w/-])"
)
_FILE_REF_RE = re.compile(
    "(" + _literals_not_after(("dossier", "ticket", "case", "claim", "cheque"), r"\w") + ")"
    r"\s?(?:n[°o]\.?|number|#)?\s?:?\s?(\d[\w/-]{1,30})"
)
_LABEL_REF_RE = re.compile(
    r"(?:r(?<!\wr)eference(?! client)|r(?<!\wr)ef\.?|n(?<!\wn)umero d'operation|n(?<!\wn)umero de transaction"
    r"|t(?<!\wt)ransaction(?: id| number)?|o(?<!\wo)rder(?: number)?|c(?<!\wc)ommande)"
    r"\s?(?:n[°o]\.?|#)?\s?:?\s?([a-z0-9][a-z0-9/_-]{3,30})"
)


def _digit_count(token: str) -> int:
    return sum(map(str.isdigit, token))


def _references(text: str, folded: str) -> Iterable[tuple[int, str]]:
    for m in _CODE_REF_RE.finditer(text):
        if _digit_count(m.group(0)) >= 3:
            yield m.start(), m.group(0)
    for m in _FILE_REF_RE.finditer(folded):
        yield m.start(), f"{m.group(1)} {text[m.start(2) : m.end(2)].rstrip('.-/')}"
    for m in _LABEL_REF_RE.finditer(folded):
        value = text[m.start(1) : m.end(1)].rstrip(".-/")
        if _digit_count(value) >= 3:
            yield m.start(1), value


def extract_references(
    text: str, folded: str, exclude: Iterable[str | None] = ()
) -> tuple[str, ...]:
    """Operation and file references (``VIR-2026-11-0042``, ``dossier 2026/1234``...).

    Values in ``exclude`` (the customer's own identifiers) are not references.
    """
    refs: list[str] = [x for x in exclude if x]
    skipped = len(refs)
    for _, ref in sorted(_references(text, folded)):
        if not any(ref in known or known in ref for known in refs):
            refs.append(ref)
    return tuple(refs[skipped:])


# --------------------------------------------------------------------------- decisions


def choose_category(
    folded: str, categories: Sequence[tuple[str, Sequence[str]]], default: str | None,
    tokens: AbstractSet[str] | None = None,
) -> str | None:
    """The first category (priority order) with a keyword in the text, else ``default``
    (``tokens``: the text's ``_tokens``, when already known)."""
    if tokens is None:
        tokens = _tokens(folded)
    for key, keywords in categories:
        if _has_any(folded, keywords, tokens):
            return key
    return default


def missing_items(
    *, has_contact: bool, dates: bool, operations: bool, amounts: bool, refs: bool,
    attachments: bool,
) -> tuple[str, ...]:  # fmt: skip
    """The ``MISSING_KEYS`` whose information is absent, in their order."""
    present = (has_contact, dates, operations, amounts, refs, attachments)
    return tuple(key for key, ok in zip(MISSING_KEYS, present, strict=True) if not ok)


def _masked_once(found: Iterable[str], mask: Callable[[str], str]) -> tuple[str, ...]:
    """Masked forms of ``found``, one per distinct number however it was spaced."""
    unique: dict[str, str] = {}
    for raw in found:
        unique.setdefault("".join(raw.split()).replace("-", "").upper(), mask(raw))
    return tuple(unique.values())


def extract(
    text: str,
    *,
    subject: str = "",
    sent_at: datetime,
    display_name: str | None = None,
    from_addr: str | None = None,
    categories: Sequence[tuple[str, Sequence[str]]] = (),
    default_category: str | None = None,
    urgent_keywords: Sequence[str] = (),
    attachment_count: int = 0,
) -> Extracted:
    """Extract the complaint facts of one mail; pure, never raises on ``str`` input."""
    body, found_ibans, found_cards = mask_and_find(normalise(text))
    folded = fold(body)
    both = fold(mask_sensitive(normalise(subject))) + "\n" + folded
    today = sent_at.date()
    phone = extract_phone(body)
    address = extract_postal_address(body)
    customer = extract_customer_number(body, folded)
    account = extract_account_number(body, folded)
    dates = extract_fact_dates(folded, today)
    amounts = extract_amounts(folded)
    tokens = _tokens(both)  # shared by the keyword look-ups below
    operations = extract_operation_types(both, tokens)
    refs = extract_references(body, folded, exclude=(customer, account))
    urgent_matches = tuple(dict.fromkeys(_matches_any(both, urgent_keywords, tokens)))
    return Extracted(
        name=extract_name(body, folded, display_name),
        email=extract_email(body, from_addr),
        postal_address=address,
        phone=phone,
        customer_number=customer,
        account_number=account,
        ibans=_masked_once(found_ibans, mask_iban),
        cards=_masked_once(found_cards, mask_card),
        fact_dates=dates,
        amounts=amounts,
        operation_types=operations,
        references=refs,
        category=choose_category(both, categories, default_category, tokens),
        urgent=bool(urgent_matches),
        urgent_matches=urgent_matches,
        language=_language_of_folded(fold(subject[:_LANGUAGE_CHARS]) + "\n" + folded[:_LANGUAGE_CHARS]),
        missing=missing_items(
            has_contact=bool(phone or address or customer), dates=bool(dates),
            operations=bool(operations), amounts=bool(amounts), refs=bool(refs),
            attachments=attachment_count > 0,
        ),
    )  # fmt: skip


_STEPS_TAKEN = re.compile(
    r"\bj'?ai (?:deja |aussi |egalement )?(?:contacte|essaye|appele|ecrit|tente|relance|verifie|signale|"
    r"fait opposition|redemarre|reinstalle|reinitialise)\b|\bdeja (?:contacte|essaye|appele|ecrit|tente|relance)"
    r"|\bi(?: have|'ve)? (?:already |also )?(?:contacted|tried|called|written|checked|reported|reset|restarted)\b"
    r"|\balready (?:contacted|tried|called|written)")


def mentions_steps_taken(text: str) -> bool:
    """Whether a complaint says what was already tried to solve the problem (Divikeys §2.1
    asks for it): "j'ai déjà contacté…", "I have tried…"."""
    return bool(_STEPS_TAKEN.search(fold(text or "")))


def extract_for(brand: BrandConfig, parsed: ParsedMail, sent_at: datetime) -> Extracted:
    """The facts of a parsed mail for a brand (its categories and urgent keywords)."""
    return extract(
        parsed.text, subject=parsed.subject, sent_at=parsed.date or sent_at,
        display_name=parsed.from_name or None, from_addr=parsed.from_addr or None,
        categories=[(c.key, c.keywords) for c in brand.categories],
        default_category=brand.default_category, urgent_keywords=brand.urgent_keywords,
        attachment_count=len(parsed.attachments),
    )
