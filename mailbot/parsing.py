"""Raw bytes → `ParsedMail`: mail-parser first, the standard library as fallback.

Parsing is pure. A mail that neither parser can read raises `Unparseable`,
which ingest turns into a quarantine row with the reason.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

import mailparser

from mailbot.htmltext import html_to_text
from mailbot.templating import clean_header

logging.getLogger("mailparser").setLevel(logging.ERROR)

_MSGID = re.compile(r"<[^<>\s]{1,900}>")
MAX_TEXT = 2_000_000  # characters of body text kept for extraction and display


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

    def header(self, name: str) -> str:
        """A header's decoded value ('' when absent), never raising."""
        return header_str(self.message.get(name))


def header_str(value: object) -> str:
    if value is None:
        return ""
    try:
        if isinstance(value, str) and "=?" not in value:
            return value
        return str(make_header(decode_header(str(value))))
    except Exception:
        return str(value)


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
    this, so an encoded display name can never smuggle in another address."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _addresses(msg: Message, name: str) -> tuple[str, ...]:
    values = [_raw(v) for v in msg.get_all(name, [])]
    return tuple(a.lower() for _, a in getaddresses(values) if "@" in a)


def _date(msg: Message) -> datetime | None:
    try:
        d = parsedate_to_datetime(header_str(msg.get("Date")))
    except Exception:
        return None
    if d is None:
        return None
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d


def _from(msg: Message) -> tuple[str, str]:
    name, addr = parseaddr(_raw(msg.get("From")))
    return clean_header(header_str(name)), addr.strip().lower()


def _common(msg: Message, text: str, html: str | None, atts: list[ParsedAttachment], parser: str) -> ParsedMail:
    name, addr = _from(msg)
    if not text.strip() and html:
        text = html_to_text(html[:MAX_TEXT])
    return ParsedMail(
        message=msg,
        message_id=normalise_message_id(header_str(msg.get("Message-ID"))),
        subject=clean_header(header_str(msg.get("Subject")))[:998],
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
    )


def _mp_attachment(a: dict) -> ParsedAttachment:
    payload = a.get("payload") or ""
    if a.get("binary"):
        try:
            data = base64.b64decode(payload)
        except (binascii.Error, ValueError):
            data = payload.encode("utf-8", "replace")
    else:
        data = payload.encode(a.get("charset") or "utf-8", "replace") if isinstance(payload, str) else bytes(payload)
    return ParsedAttachment(
        filename=a.get("filename") or "",
        content_type=(a.get("mail_content_type") or "application/octet-stream").lower(),
        data=data,
    )


def parse_with_mailparser(raw: bytes) -> ParsedMail:
    mp = mailparser.parse_from_bytes(raw)
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
            charset = part.get_content_charset() or "utf-8"
            try:
                s = payload.decode(charset, "replace")
            except LookupError:
                s = payload.decode("utf-8", "replace")
            (texts if ctype == "text/plain" else htmls).append(s)
    return _common(msg, "\n".join(texts), "\n".join(htmls) or None, atts, "stdlib")


def parse(raw: bytes) -> ParsedMail:
    """Parse raw bytes; raise `Unparseable` with a reason when nothing works."""
    if not raw.strip():
        raise Unparseable("empty message")
    errors = []
    for parser in (parse_with_mailparser, parse_with_stdlib):
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
