"""Raw bytes → `ParsedMail`: mail-parser first, the standard library as fallback.

Parsing is pure. A mail that neither parser can read raises `Unparseable`,
which ingest turns into a quarantine row with the reason. A large mail's large
attachments are decoded from the raw bytes and cut out before parsing ("Large parts").
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import logging
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.header import Header, decode_header
from email.message import Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime, unquote
from functools import lru_cache
from itertools import takewhile

import mailparser

from mailbot.mail.addresses import simple_address
from mailbot.mail.headers import clean_header
from mailbot.mail.htmltext import html_to_text
from mailbot.mail.senders import loose_address, valid_address

logging.getLogger("mailparser").setLevel(logging.ERROR)
log = logging.getLogger("mailbot.parsing")

_MSGID = re.compile(r"<[^<>\s]{1,900}>")
MAX_TEXT = 2_000_000  # characters of body text kept for extraction and display
MAX_TEXT_BYTES = 4 * MAX_TEXT  # bytes of a text part decoded (UTF-8: ≤ 4 bytes a character)
MAILPARSER_MAX_BYTES = 20_000_000  # larger mails are parsed by the standard library only
# Beyond this (more than any sane max_message_size), only the first bytes are parsed: the
# stdlib parser needs ≈7× a mail's size in memory. The raw mail is still stored whole.
MAX_PARSE_BYTES = 40_000_000
# In a mail larger than CUT_MIN_MAIL_BYTES, every non-text leaf part whose body exceeds
# CUT_MIN_PART_BYTES is decoded straight from the raw bytes and replaced by a tiny
# placeholder before any parser sees the mail (see "Large parts" below).
CUT_MIN_MAIL_BYTES = 2_000_000
CUT_MIN_PART_BYTES = 1_000_000


class Unparseable(Exception):
    """Neither parser could make sense of the bytes."""


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ParsedMail:
    message: Message
    message_id: str | None
    subject: str
    from_addr: str
    from_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str
    html: str | None
    attachments: tuple[ParsedAttachment, ...]
    parser: str
    masked_text: str | None = None  # masking.stored_body(text), when the analysis did it ahead
    reply_to: tuple[str, ...] = ()  # the valid addresses of Reply-To, lower case
    from_header: str = ""  # the From header as sent (one line): shown when it holds no valid address

    def header(self, name: str) -> str:
        """A header's decoded value ('' when absent), never raising."""
        return header_str(self.message.get(name))


Parser = Callable[[bytes], ParsedMail]


# Charsets that senders declare for text written in a superset (GB2312 for GBK/GB18030,
# ISO-2022-JP for Shift_JIS…): tried, in order, after the declared one fails.
_SUPERSETS = {
    "gb2312": ("gb18030",), "gbk": ("gb18030",), "x-gbk": ("gb18030",), "cn-gb": ("gb18030",),
    "euc-cn": ("gb18030",), "big5": ("big5hkscs", "cp950"), "iso-2022-jp": ("cp932", "euc-jp"),
    "shift_jis": ("cp932",), "sjis": ("cp932",), "x-sjis": ("cp932",), "euc-jp": ("cp932",),
    "ks_c_5601-1987": ("cp949",), "euc-kr": ("cp949",), "iso-8859-1": ("cp1252",),
    "us-ascii": ("utf-8", "cp1252"), "ascii": ("utf-8", "cp1252"), "iso-8859-8-i": ("iso-8859-8",),
}  # fmt: skip
_SURROGATES = re.compile("[\udc80-\udcff]")
_FOLD = re.compile(r"\r?\n(?=[ \t])")  # a line end inside a folded header (RFC 5322 3.2.2)
_ANY_SURROGATE = re.compile("[\ud800-\udfff]")
# An RFC 2047 encoded-word, possibly holding raw 8-bit bytes (as surrogates) that the
# sender should have encoded: "=?iso-8859-1?Q?Fr\xf6sche?=".
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[QqBb]\?[^?\s]*\?=")


def _codec(charset: str) -> str | None:
    try:
        return codecs.lookup(charset).name
    except (LookupError, ValueError, TypeError):
        return None


def _first_decoding(data: bytes, charsets: Sequence[str], tried: set[str], declared: str | None = None
                    ) -> str | None:
    """``data`` decoded with the first of ``charsets`` that works, skipping codecs in
    ``tried`` (and adding those it tries); None if none does. UTF-7 is only ever the
    ``declared`` codec: as a guess it would turn any ASCII text with a "+" into garbage."""
    for name in charsets:
        codec = _codec(name) if name else None
        if codec is None or codec in tried or (codec in ("utf-7", "rot-13") and codec != declared):
            continue
        tried.add(codec)
        try:
            return data.decode(codec)
        except (UnicodeError, LookupError, ValueError):
            continue
    return None


def decode_text(data: bytes, charset: str | None = None, hints: Sequence[str] = ()) -> str:
    """Bytes of a header or body in a declared (often wrong) charset → text, never raising:
    the declared charset and its usual supersets, UTF-8, the message's other charsets
    (multi-byte first), then cp1252/latin-1."""
    declared = (charset or "").strip().strip('"').lower()
    tried: set[str] = set()
    decoded = _first_decoding(data, [declared, *_SUPERSETS.get(declared, ()), "utf-8"], tried,
                              _codec(declared) if declared else None)
    if decoded is None:  # only now read the hints (`_LazyCharsets` walks the message)
        extra = [h for h in hints if h] + [s for h in hints for s in _SUPERSETS.get(h, ())]
        order = sorted(extra, key=lambda c: c in ("iso-8859-1", "latin-1", "cp1252", "windows-1252"))
        decoded = _first_decoding(data, order, tried)
    if decoded is not None:
        return decoded
    try:
        return data.decode("cp1252")
    except UnicodeError:
        return data.decode("latin-1")


def _undo_surrogates(value: str, hints: Sequence[str]) -> str:
    """compat32 keeps raw 8-bit header bytes as lone surrogates: decode them for real
    (UTF-8 first, as RFC 6532 says; then the message's charsets, then cp1252). Never
    returns a surrogate: any other one becomes U+FFFD."""
    if not _ANY_SURROGATE.search(value):
        return value
    if _SURROGATES.search(value):
        try:
            value = decode_text(value.encode("utf-8", "surrogateescape"), None, hints)
        except UnicodeError:  # other surrogates beside the escaped bytes
            pass
    return _ANY_SURROGATE.sub("\ufffd", value)


def _bytes_in_encoded_words(text: str) -> str:
    """Raw 8-bit bytes inside encoded-words as the characters U+0080-U+00FF, which
    `decode_header` turns back into those bytes (``raw-unicode-escape``), so the word is
    decoded with its declared charset; as surrogates they came out as the literal text
    "\\udcf6". Surrogates outside encoded-words are left for `_undo_surrogates`."""
    if not _SURROGATES.search(text):
        return text
    return _ENCODED_WORD.sub(lambda m: _SURROGATES.sub(lambda c: chr(ord(c.group()) - 0xDC00), m.group()), text)


def _text(value: object) -> str:
    """A header value as a str; compat32 hands 8-bit values over as `Header` objects
    whose str() is lossy: rebuild the raw text (8-bit bytes as surrogates) instead."""
    if isinstance(value, Header):
        try:
            chunks = decode_header(value)
            if all(cs in (None, "unknown-8bit", "us-ascii") for _, cs in chunks):
                return "".join(c.decode("ascii", "surrogateescape") if isinstance(c, bytes) else c
                               for c, _ in chunks)
        except Exception:
            pass
        return str(value)
    return value if isinstance(value, str) else str(value)


def header_str(value: object, hints: Sequence[str] = ()) -> str:
    """A header value decoded (RFC 2047 encoded-words, raw 8-bit bytes), never raising.

    ``hints``: the message's body charsets, used to read undeclared 8-bit headers.
    """
    if value is None:
        return ""
    try:
        # Unfolded first: the decoder drops the white space on either side of an
        # encoded-word, so "mon\r\n =?utf-8?q?relev=C3=A9?=" would read "monrelevé".
        text = _FOLD.sub("", _text(value))
        if "=?" not in text:
            return _undo_surrogates(text, hints)
        out: list[str] = []
        for chunk, charset in decode_header(_bytes_in_encoded_words(text)):
            if charset is None:  # plain text between encoded-words, as raw-unicode-escape bytes
                out.append(_undo_surrogates(chunk.decode("raw-unicode-escape"), hints))
            else:
                out.append(decode_text(chunk, charset, hints))
        return "".join(out)
    except Exception:
        return _undo_surrogates(value if isinstance(value, str) else str(value), hints)


def message_ids(value: str) -> tuple[str, ...]:
    """All <msg-id> tokens of a header value, in order, without duplicates."""
    seen: dict[str, None] = {}
    for m in _MSGID.findall(value or ""):
        seen.setdefault(m, None)
    return tuple(seen)


def normalise_message_id(value: str) -> str | None:
    ids = message_ids(value)
    if ids:
        return ids[0]
    value = (value or "").strip()
    return f"<{value}>" if value and " " not in value and len(value) < 900 else None


def _raw(value: object) -> str:
    """A header value as sent, encoded-words NOT decoded: addresses are parsed from
    this, so an encoded display name can never smuggle in another address. Raw UTF-8
    (RFC 6532: ``From: jdö@mächine.example``) is decoded; other 8-bit bytes stay
    surrogates here (they make no valid address)."""
    if value is None:
        return ""
    text = _text(value)
    if _SURROGATES.search(text):
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8")
        except UnicodeError:
            return text
    return text


@lru_cache(maxsize=1024)
def _getaddresses_cached(value: str) -> tuple[tuple[str, str], ...]:
    simple = simple_address(value)
    return (simple,) if simple is not None else tuple(getaddresses([value]))


def _getaddresses(values: Sequence[str]) -> Sequence[tuple[str, str]]:
    """``getaddresses(values)`` (which joins the values with ", " first), remembered for
    short values: the same recipients (our own addresses) come back in mail after mail,
    and the stdlib parser reads them character by character."""
    if not values:
        return ()
    joined = ", ".join(values)
    if len(joined) > 1000:  # a long list is parsed, not kept
        return getaddresses([joined])
    return _getaddresses_cached(joined)


def _addresses(msg: Message, name: str) -> tuple[str, ...]:
    values = [_raw(v) for v in msg.get_all(name, [])]
    return tuple(a.lower() for _, a in _getaddresses(values) if "@" in a)


# The Date header is the sender's word: one outside these bounds is clamped to the
# nearest (a `Date: 31 Dec 9999 23:59:59 -1200` is past datetime's range in UTC,
# and storing it failed; the mail must still become a case).
EARLIEST_DATE = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_DATE = datetime(2200, 1, 1, tzinfo=UTC)


def _date(msg: Message) -> datetime | None:
    try:
        d = parsedate_to_datetime(header_str(msg.get("Date")))
    except Exception:
        return None
    if d is None:
        return None
    return clamp_date(d.replace(tzinfo=UTC) if d.tzinfo is None else d)


def clamp_date(d: datetime) -> datetime:
    """`d` if it lies between EARLIEST_DATE and LATEST_DATE (and has a UTC time), else
    the nearer bound."""
    try:
        utc = d.astimezone(UTC)
    except OverflowError:
        return LATEST_DATE if d.year > 2000 else EARLIEST_DATE
    if utc < EARLIEST_DATE:
        return EARLIEST_DATE
    return LATEST_DATE if utc > LATEST_DATE else d


def _display_name(raw: str, name: str, addr: str, hints: Sequence[str]) -> str:
    """The display name before the one <address> of a header value, decoded; an
    encoded-word holding a comma ("=?…?Q?Dupont,=20Marie?=") otherwise splits it."""
    if raw.count("<") == 1 and raw.count(">") == 1:
        head, _, tail = raw.partition("<")
        if tail.partition(">")[0].strip().lower() == addr.strip().lower() and not tail.partition(">")[2].strip():
            return unquote(header_str(head.strip(), hints).strip())
    return header_str(name, hints)


def _from(msg: Message, hints: Sequence[str] = ()) -> tuple[str, str]:
    """The sender: the first valid address of the first From header that has one (a mail
    may carry a broken From before the real one, or "<>, real"), else of Sender, else of
    Reply-To. An address is a valid addr-spec or nothing (`senders.valid_address`); a
    value the parser cannot read but that holds one address-like word ("big bug
    bb@bug.example") gives that word. Addresses are parsed from the raw value, never
    from decoded encoded-words."""
    for header in ("From", "Sender", "Reply-To"):
        for value in msg.get_all(header, []):
            raw = _raw(value)
            for name, addr in _getaddresses([raw]):
                addr = addr.strip()
                if valid_address(addr):
                    return clean_header(_display_name(raw, name, addr, hints)), addr.lower()
            loose = loose_address(raw)
            if loose is not None:
                return clean_header(header_str(loose[0], hints)), loose[1].lower()
    name, _ = parseaddr(_raw(msg.get("From")))
    return clean_header(header_str(name, hints)), ""


def _reply_to(msg: Message) -> tuple[str, ...]:
    """The valid addresses of Reply-To, lower case, in order."""
    values = [_raw(v) for v in msg.get_all("Reply-To", [])]
    found = (a.strip().lower() for _, a in _getaddresses(values))
    return tuple(dict.fromkeys(a for a in found if valid_address(a)))


class _LazyCharsets(Sequence[str]):
    """``_charsets(msg)``, worked out on first use: the hints are only read when a
    header cannot be decoded otherwise (raw 8-bit bytes, a wrong declared charset),
    and walking the parts' Content-Type parameters costs more than the rest of the
    header decoding of a usual mail."""

    def __init__(self, msg: Message) -> None:
        self._msg = msg
        self._found: tuple[str, ...] | None = None

    def _values(self) -> tuple[str, ...]:
        if self._found is None:
            self._found = _charsets(self._msg)
        return self._found

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        return self._values()[index]

    def __len__(self) -> int:
        return len(self._values())

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())


def _charsets(msg: Message, limit: int = 50) -> tuple[str, ...]:
    """The charsets the message's parts declare: hints for undeclared 8-bit headers."""
    seen: dict[str, None] = {}
    try:
        for i, part in enumerate(msg.walk()):
            if i >= limit:
                break
            cs = part.get_content_charset()
            if cs and cs not in ("us-ascii", "ascii", "utf-8"):
                seen.setdefault(cs, None)
    except Exception:
        pass
    return tuple(seen)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(parsed: ParsedMail, hints: Sequence[str] = ()) -> ParsedMail:
    """No NUL and no surrogate in any text that may reach the database or a mail we send:
    PostgreSQL rejects NUL in text columns, and a lone surrogate (a raw 8-bit byte the
    decoders left escaped) cannot be encoded at all, so either would make a mail
    unrecordable or show "\\udcf6" to its reader. Escaped bytes are decoded
    (`_undo_surrogates`), other surrogates become U+FFFD, NUL is dropped."""
    texts = [parsed.message_id or "", parsed.subject, parsed.from_addr, parsed.from_name,
             *parsed.to, *parsed.cc, *parsed.in_reply_to, *parsed.references, parsed.text,
             parsed.html or "", *(t for a in parsed.attachments for t in (a.filename, a.content_type)),
             *parsed.reply_to, parsed.from_header]
    if not any(_UNSTORABLE.search(t) for t in texts):  # the usual case: nothing to rebuild
        return parsed

    def clean(s: str) -> str:
        return _undo_surrogates(s, hints).replace("\x00", "")

    return replace(
        parsed,
        message_id=clean(parsed.message_id) if parsed.message_id else parsed.message_id,
        subject=clean(parsed.subject), from_addr=clean(parsed.from_addr),
        from_name=clean(parsed.from_name), to=tuple(clean(a) for a in parsed.to),
        cc=tuple(clean(a) for a in parsed.cc),
        in_reply_to=tuple(clean(i) for i in parsed.in_reply_to),
        references=tuple(clean(i) for i in parsed.references),
        text=clean(parsed.text), html=clean(parsed.html) if parsed.html else parsed.html,
        attachments=tuple(replace(a, filename=clean(a.filename), content_type=clean(a.content_type))
                          for a in parsed.attachments),
        reply_to=tuple(clean(a) for a in parsed.reply_to), from_header=clean(parsed.from_header),
    )


def _common(msg: Message, text: str, html: str | None, atts: list[ParsedAttachment], parser: str) -> ParsedMail:
    hints = _LazyCharsets(msg)
    name, addr = _from(msg, hints)
    if not text.strip() and html:
        text = html_to_text(html[:MAX_TEXT])
    return _storable(ParsedMail(
        message=msg,
        message_id=normalise_message_id(header_str(msg.get("Message-ID"))),
        subject=clean_header(header_str(msg.get("Subject"), hints))[:998],
        from_addr=addr,
        from_name=name,
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        date=_date(msg),
        in_reply_to=message_ids(header_str(msg.get("In-Reply-To"))),
        references=message_ids(header_str(msg.get("References"))),
        text=text[:MAX_TEXT],
        html=html[:MAX_TEXT] if html else None,
        attachments=tuple(atts),
        parser=parser,
        reply_to=_reply_to(msg),
        from_header=clean_header(_raw(msg.get("From")))[:998],
    ), hints)


_RANDOM_NAME = re.compile(r"[a-z]{10}\.txt")


def _mp_filename(a: dict, ctype: str, data: bytes) -> str:
    """mail-parser names a part without a file name after its Content-ID, or randomly:
    use the Content-ID's local part ("<image001.jpg@01CD…>" → image001.jpg) and, for an
    attached mail, its subject (what other helpdesks show)."""
    name = a.get("filename") or ""
    cid = (a.get("content-id") or "").strip()
    if cid and name == cid:
        return cid.strip("<>").partition("@")[0] or name
    if ctype == "message/rfc822" and _RANDOM_NAME.fullmatch(name):
        try:
            inner = email.message_from_bytes(data[:200_000], policy=email.policy.compat32)
            subject = clean_header(header_str(inner.get("Subject")))
        except Exception:
            subject = ""
        return f"{subject[:100] or 'message'}.eml"
    return name


def _mp_attachment(a: dict) -> ParsedAttachment:
    payload = a.get("payload") or ""
    if a.get("binary"):
        try:
            data = base64.b64decode(payload)
        except (binascii.Error, ValueError):
            data = payload.encode("utf-8", "replace")
    else:
        data = payload.encode(a.get("charset") or "utf-8", "replace") if isinstance(payload, str) else bytes(payload)
    ctype = (a.get("mail_content_type") or "application/octet-stream").lower()
    return ParsedAttachment(filename=_mp_filename(a, ctype, data), content_type=ctype, data=data)


class _MailParts(mailparser.MailParser):
    """mail-parser's walk of the MIME tree (bodies decoded by their charsets, attachments
    extracted and named), without the summaries mailbot never reads: the diagnostics of
    the address, Date and Received headers that `_reset` works out for `defects`, and
    the `mail`/`mail_partial` dicts `parse` builds twice from every header (more than
    half of mail-parser's time on a usual mail, see bench/README.md). Bodies and
    attachments are the same: tests/test_corpora.py
    (`test_lean_mailparser_gives_mailparsers_bodies_and_attachments`) compares both
    on every corpus mail, and fails if mail-parser's methods change. mailbot reads
    headers from `message` itself (`_common`, classify)."""

    def _reset(self) -> None:
        self._attachments: list[dict] = []
        self._text_plain: list[str] = []
        self._text_html: list[str] = []
        self._text_not_managed: list[str] = []
        self._defects: list[dict] = []
        self._defects_categories: set[str] = set()
        self._has_defects = False
        self._mail: dict = {}
        self._mail_partial: dict = {}
        self._header_index: dict = {}  # only its header accessors read it; mailbot reads `message`
        self._address_header_defects: list[dict] = []
        self._address_headers: dict = {}
        self._date = None
        self._timezone = 0
        self._date_header_defects: list[dict] = []
        self._received_header_defects: list[dict] = []
        self._received: list[dict] = []

    def _make_mail(self, complete: bool = True) -> dict:
        return {}


def parse_with_mailparser(raw: bytes) -> ParsedMail:
    mp = _MailParts.from_bytes(raw)
    text = "\n".join(mp.text_plain)
    html = "\n".join(mp.text_html) or None
    atts = [_mp_attachment(a) for a in mp.attachments]
    return _common(mp.message, text, html, atts, "mail-parser")


def parse_with_stdlib(raw: bytes) -> ParsedMail:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    texts: list[str] = []
    htmls: list[str] = []
    atts: list[ParsedAttachment] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        payload = part.get_payload(decode=True) or b""
        filename = header_str(part.get_filename()) if part.get_filename() else ""
        if filename or part.get_content_disposition() == "attachment":
            atts.append(ParsedAttachment(filename, ctype, payload))
        elif ctype in ("text/plain", "text/html"):
            try:
                charset = part.get_content_charset() or "utf-8"
            except Exception:  # a hostile charset parameter
                charset = "utf-8"
            if len(payload) > MAX_TEXT_BYTES:  # only MAX_TEXT characters are kept anyway
                cut = payload.rfind(b"\n", 0, MAX_TEXT_BYTES)
                payload = payload[: cut if cut > 0 else MAX_TEXT_BYTES]
            (texts if ctype == "text/plain" else htmls).append(decode_text(payload, charset))
    return _common(msg, "\n".join(texts), "\n".join(htmls) or None, atts, "stdlib")


_HEADER_LINE = re.compile(rb"[!-9;-~]{1,200}[ \t]*:")
_OBS_HEADER_LINE = re.compile(rb"([!-9;-~]{1,200})[ \t]+:")  # RFC 5322 §4.5: blanks before the colon
_REPAIR_SCAN = 1_000_000  # bytes of the header block looked at
_REPAIR_LINES = 10_000
# The last byte of a line end and the first of an empty line ("\r\n" is one line end, as for
# `splitlines`: "\r\n" alone does not match).
_BEFORE_BLANK_LINE = re.compile(rb"\n[\r\n]|\r\r")


def header_lines(raw: bytes) -> list[bytes]:
    """The lines of the header block (each with its line end, as `splitlines` cuts them),
    up to the first empty line, within the first _REPAIR_SCAN bytes and _REPAIR_LINES
    lines. Only the header block is split, not a whole mail and its attachments."""
    blank = _BEFORE_BLANK_LINE.search(raw, 0, _REPAIR_SCAN)
    lines = raw[: blank.start() + 1 if blank else _REPAIR_SCAN].splitlines(keepends=True)[:_REPAIR_LINES]
    return list(takewhile(lambda line: line.strip(b"\r\n"), lines))


def repair_headers(raw: bytes) -> bytes:
    """Mend a header block that the parsers would cut short, losing From/Subject:

    * obsolete syntax (RFC 5322 §4.5.1): blanks between a field name and its colon
      (``From  : …``). The stdlib parser takes such a line for the start of the body
      (and a first line ``From  :`` for an mbox separator): the blanks are removed;
    * a line that is neither a header nor a continuation (an MTA that forgot to indent
      a folded Received:) ends the headers for the stdlib parser: such lines are
      indented when real headers follow them;
    * leading lines that are not headers ("---- Original email message ----") are
      dropped when headers follow.

    Only the header block is touched (the second mend: only before the last real
    header line); otherwise ``raw`` is returned unchanged (the stored raw bytes are
    never modified).
    """
    lines = header_lines(raw)
    kinds: list[str] = []
    for i, line in enumerate(lines):
        if _OBS_HEADER_LINE.match(line):
            kinds.append("obs")
        elif i == 0 and line.startswith(b"From "):
            kinds.append("mbox")
        elif line[:1] in (b" ", b"\t"):
            kinds.append("cont")
        elif _HEADER_LINE.match(line):
            kinds.append("header")
        else:
            kinds.append("bad")
    if "obs" not in kinds and ("bad" not in kinds or "header" not in kinds):
        return raw
    headers = [i for i, kind in enumerate(kinds) if kind in ("header", "obs")]
    first, last = headers[0], headers[-1]
    out: list[bytes] = []
    for i, (kind, line) in enumerate(zip(kinds, lines, strict=True)):
        if kind in ("bad", "cont") and i < first:
            continue
        if kind == "obs":
            out.append(_OBS_HEADER_LINE.sub(rb"\1:", line, count=1))
        else:
            out.append(b" " + line if kind == "bad" and i < last else line)
    consumed = sum(map(len, lines))
    return b"".join([*out, memoryview(raw)[consumed:]])  # one copy of the rest, not two


# ---------------------------------------------------------------- large parts
#
# The parsers need several times a mail's size in memory (the stdlib ≈12× a 34 MB
# mail). So before parsing a large mail, its large non-text leaf parts are found at
# the byte level, following the stdlib parser's rules exactly (lines ending in CRLF,
# CR or LF; a part ends at the first line that is a boundary of its multipart or of
# any enclosing one; doubled boundary lines are skipped; the newline before a boundary
# belongs to it). Each such body is decoded from the raw bytes as
# `Message.get_payload(decode=True)` would, and replaced by a placeholder that decodes
# to a unique token. The shortened mail is parsed as usual, so the parsers still name,
# type and order every part; the attachment whose data is a token gets the decoded
# body back. Text parts are never cut (body text and classification read them), nor
# message/* parts; anything unexpected leaves the mail to the normal path.

_HEADER_RE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")  # email.feedparser.headerRE
_EOL = re.compile(rb"\r\n|\r|\n")
_NON_ASCII = re.compile(rb"[\x80-\xff]")
_CUT_CTES = ("base64", "quoted-printable", "7bit", "8bit", "binary", "")
_MAX_HEAD_BYTES = 256_000
_MAX_DEPTH = 20
_MAX_ENTITIES = 5_000
_MAX_MISSES = 10_000  # boundary texts in mid-line looked at, per search
_TOKEN_PREFIX = b"mailbot-cut-"


@dataclass(frozen=True)
class _Cut:
    start: int  # the part's payload in the raw mail: raw[start:end]
    end: int
    placeholder: bytes  # what replaces it; decodes to `token`
    token: bytes
    data: bytes  # the payload decoded


@dataclass
class _Plan:
    raw: bytes
    nonce: bytes
    cuts: list[_Cut]
    entities: int = 0

    @property
    def markers(self) -> tuple[bytes, bytes]:
        """What every placeholder holds: the nonce, and its token's start base64-encoded."""
        head = _TOKEN_PREFIX + self.nonce
        return self.nonce, base64.b64encode(head[: len(head) // 3 * 3])


def _head_end(raw: bytes, start: int, end: int, top: bool) -> tuple[int, int] | None:
    """(end of the header lines, start of the body) of the entity raw[start:end], or None
    when the headers do not end in a blank line the way the stdlib parser reads them."""
    pos = start
    limit = min(end, start + _MAX_HEAD_BYTES)
    while pos < limit:
        eol = _EOL.search(raw, pos, end)
        if eol is None:
            return None
        if eol.start() == pos:  # the blank separator line
            return pos, eol.end()
        if not _HEADER_RE.match(raw, pos, eol.start()):
            return None
        if raw.startswith(b"From ", pos) and not (top and pos == start):
            return None  # the stdlib may take a later "From " line for the body
        pos = eol.end()
    return None


def _headers(raw: bytes, start: int, end: int, default_type: str) -> Message:
    msg = email.message_from_bytes(raw[start:end], policy=email.policy.compat32)
    msg.set_default_type(default_type)
    return msg


def _boundary_re(msg: Message) -> re.Pattern[bytes] | None:
    """The stdlib parser's boundary line (`boundaryre`) of a multipart, as bytes."""
    boundary = msg.get_boundary()
    if not boundary:
        return None
    try:
        sep = boundary.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None
    return re.compile(b"--" + re.escape(sep) + rb"(--)?[ \t]*(?:\r\n|\r|\n|\Z)")


class _Unsafe(Exception):
    """The mail is not worth cutting (the normal path parses it)."""


def _boundary_line(raw: bytes, rx: re.Pattern[bytes], pos: int, end: int) -> re.Match[bytes] | None:
    """The first boundary line in raw[pos:end] (a match at the start of a line)."""
    for _ in range(_MAX_MISSES):
        m = rx.search(raw, pos, end)
        if m is None or m.start() == 0 or raw[m.start() - 1] in b"\r\n":
            return m
        pos = m.start() + 1
    raise _Unsafe("boundary text in mid-line too often")


def _part_spans(raw: bytes, rx: re.Pattern[bytes], pos: int, end: int) -> list[tuple[int, int]]:
    """The subparts of a multipart whose body is raw[pos:end]: none without a first
    separator line; after a separator, further boundary lines (even a closing one) are
    skipped; the last part runs to `end` when no closing boundary comes."""
    spans: list[tuple[int, int]] = []
    m = _boundary_line(raw, rx, pos, end)
    while m is not None and not m.group(1):
        pos = m.end()
        while (dup := rx.match(raw, pos, end)) is not None:
            pos = dup.end()
        m = _boundary_line(raw, rx, pos, end)
        spans.append((pos, m.start() if m else end))
    return spans


def _cuttable(msg: Message) -> str | None:
    """The transfer encoding of a part that may be cut (None: keep it): not text (the body
    text and classification read text parts), not a container, a plain known encoding."""
    if msg.get_content_maintype() in ("text", "message", "multipart"):
        return None
    if msg.get_content_subtype() in ("plain", "html"):  # mail-parser reads x/plain as text
        return None
    cte = str(msg.get("content-transfer-encoding", "")).lower()
    return cte if cte in _CUT_CTES and cte == cte.strip() else None


def _decode(raw: bytes, start: int, end: int, cte: str) -> bytes | None:
    """The body raw[start:end] decoded as `get_payload(decode=True)` does (and mail-parser,
    which also reads base64 as ASCII text), without a copy of the encoded bytes."""
    view = memoryview(raw)[start:end]
    if cte == "quoted-printable":
        return binascii.a2b_qp(view)
    if cte != "base64":
        return bytes(view)
    if _NON_ASCII.search(raw, start, end):
        return None
    try:
        return binascii.a2b_base64(view)
    except binascii.Error:  # the stdlib fixes missing padding, mail-parser does not
        return None


def _strip_eol(raw: bytes, start: int, end: int) -> int:
    """`end` less the one newline that belongs to the next boundary line."""
    if end - start >= 2 and raw[end - 2:end] == b"\r\n":
        return end - 2
    return end - 1 if end > start and raw[end - 1] in b"\r\n" else end


def _cut_leaf(plan: _Plan, msg: Message, start: int, end: int) -> None:
    cte = _cuttable(msg)
    if cte is None or end - start <= CUT_MIN_PART_BYTES:
        return
    data = _decode(plan.raw, start, end, cte)
    if data is None:
        return
    token = b"%s%s-%07d" % (_TOKEN_PREFIX, plan.nonce, len(plan.cuts))
    placeholder = base64.b64encode(token) if cte == "base64" else token
    plan.cuts.append(_Cut(start, end, placeholder, token, data))


def _scan(plan: _Plan, start: int, end: int, depth: int, default_type: str = "text/plain") -> None:
    """Find the parts to cut in the entity (headers and body) raw[start:end]."""
    plan.entities += 1
    bounds = _head_end(plan.raw, start, end, depth == 0)
    if bounds is None or plan.entities > _MAX_ENTITIES:
        return
    msg = _headers(plan.raw, start, bounds[0], default_type)
    if msg.get_content_maintype() != "multipart":
        _cut_leaf(plan, msg, bounds[1], _strip_eol(plan.raw, bounds[1], end) if depth else end)
        return
    rx = _boundary_re(msg)
    if rx is None or depth >= _MAX_DEPTH:
        return
    child_type = "message/rfc822" if msg.get_content_subtype() == "digest" else "text/plain"
    for part_start, part_end in _part_spans(plan.raw, rx, bounds[1], end):
        _scan(plan, part_start, part_end, depth + 1, child_type)


def _plan(raw: bytes) -> _Plan:
    plan = _Plan(raw, secrets.token_hex(8).encode(), [])
    _scan(plan, 0, len(raw), 0)
    return plan


def _shortened(plan: _Plan) -> bytes:
    pieces: list[bytes | memoryview] = []
    view, pos = memoryview(plan.raw), 0
    for cut in plan.cuts:
        pieces += [view[pos:cut.start], cut.placeholder]
        pos = cut.end
    pieces.append(view[pos:])
    return b"".join(pieces)


def _restored(parsed: ParsedMail, plan: _Plan) -> ParsedMail | None:
    """`parsed` (of the shortened mail) with each placeholder attachment given its data
    back; None when a placeholder ended up anywhere else."""
    data = {cut.token: cut.data for cut in plan.cuts}
    if any(m.decode() in text for m in plan.markers for text in (parsed.text, parsed.html or "")):
        return None
    atts: list[ParsedAttachment] = []
    for att in parsed.attachments:
        if att.data in data:
            atts.append(replace(att, data=data.pop(att.data)))
        elif any(m in att.data for m in plan.markers):  # e.g. mail-parser's multipart attachment
            return None
        else:
            atts.append(att)
    return replace(parsed, attachments=tuple(atts))


def _parse_cut(raw: bytes, parsers: Sequence[Parser]) -> ParsedMail | None:
    """Parse a large mail with its large parts cut out (None: no part to cut, or the
    result could not be put back together; the caller parses the whole mail)."""
    try:
        plan = _plan(raw)
    except Exception:  # _Unsafe, or a hostile header: the normal path copes with it
        log.debug("large mail not cut", exc_info=True)
        return None
    if not plan.cuts:
        return None
    try:
        parsed = _parse_with(_shortened(plan), parsers)
    except Unparseable:
        return None
    return _restored(parsed, plan)


def _parse_with(raw: bytes, parsers: Sequence[Parser]) -> ParsedMail:
    errors = []
    for parser in parsers:
        try:
            parsed = parser(raw)
        except Exception as exc:  # a hostile mail must not crash ingest
            errors.append(f"{parser.__name__}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        if not parsed.message.keys():
            errors.append(f"{parser.__name__}: no header found")
            continue
        return parsed
    raise Unparseable("; ".join(errors))


def parse(raw: bytes) -> ParsedMail:
    """Parse raw bytes; raise `Unparseable` with a reason when nothing works."""
    if not raw or raw.isspace():  # not raw.strip(): a copy of the whole mail
        raise Unparseable("empty message")
    if len(raw) > MAX_PARSE_BYTES:  # the raw bytes are stored whole; only a prefix is read
        cut = raw.rfind(b"\n", 0, MAX_PARSE_BYTES)
        raw = raw[: cut + 1 if cut > 0 else MAX_PARSE_BYTES]
    raw = repair_headers(raw)
    # mail-parser keeps several decoded copies of a mail (≈9× its size in memory): a huge
    # one goes to the leaner stdlib path only (chosen on the whole mail's size, cut or not).
    parsers: tuple[Parser, ...] = (parse_with_mailparser, parse_with_stdlib) \
        if len(raw) <= MAILPARSER_MAX_BYTES else (parse_with_stdlib,)
    if len(raw) > CUT_MIN_MAIL_BYTES:
        parsed = _parse_cut(raw, parsers)
        if parsed is not None:
            return parsed
    return _parse_with(raw, parsers)
