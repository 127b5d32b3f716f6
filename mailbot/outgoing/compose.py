"""Building the MIME bytes of a mail we send (pure).

Every header value goes through `clean_header` (no CR/LF injection); non-ASCII
header text is sent as RFC 2047 encoded-words and the body as UTF-8, text alone
or multipart/alternative (text + HTML), in a multipart/mixed with the files attached.

The mails we send are written out directly (`build`): ASCII headers folded at
spaces, non-ASCII ones encoded by `email.header.Header`, each body encoded as the
standard library's `set_content` encodes it (its own `_encode_text`: 7bit, 8bit,
quoted-printable or base64, whichever it picks). The standard library's
`EmailMessage` (`build_with_email_message`) gives the same mail, decoded, but
costs over ten times as much in its header objects (bench/README.md); it still builds
the rare mail the direct path leaves to it (a non-ASCII address, extra headers,
attached files).
tests/test_compose.py checks that both give the same mail, header by header.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.contentmanager import _encode_text  # type: ignore[attr-defined]
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime, quote

from mailbot.mail.headers import clean_header
from mailbot.mail.senders import idna_address, needs_smtputf8

LOOP_HEADER = "X-Mailbot-Loop"


@dataclass(frozen=True)
class Outgoing:
    from_addr: str
    to_addr: str
    subject: str
    text: str
    html: str | None
    message_id: str
    from_name: str = ""
    to_name: str = ""
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    reply_to: str | None = None
    auto_submitted: str | None = "auto-replied"
    extra_headers: dict[str, str] = field(default_factory=dict)
    attachments: Sequence[OutFile] = ()


@dataclass(frozen=True)
class OutFile:
    """A file attached to a mail we send."""

    filename: str
    content_type: str
    data: bytes


def new_message_id(address: str) -> str:
    domain = address.rpartition("@")[2] or "mailbot.invalid"
    return f"<mb.{int(time.time() * 1000):x}.{secrets.token_hex(8)}@{domain}>"


def _address(name: str, addr: str) -> Address:
    local, _, domain = clean_header(addr).rpartition("@")
    return Address(display_name=clean_header(name), username=local, domain=domain)


def _set_text_header(msg: EmailMessage, name: str, value: str) -> None:
    """A free-text header. A customer's subject may carry a literal encoded-word that
    cannot be decoded (double-encoded, wrong charset); the header factory then fails
    to re-encode it, so such a sequence is defused rather than letting the mail fail."""
    try:
        msg[name] = value
        msg.policy.fold_binary(name, msg[name])  # what as_bytes() will do
        return
    except (UnicodeError, ValueError, LookupError):
        pass
    del msg[name]
    msg[name] = value.replace("=?", "= ?")


def build(out: Outgoing, date: datetime) -> bytes:
    """The full RFC 5322 message, CRLF line endings. An address with a non-ASCII local part
    makes the mail an internationalised one (RFC 6532: UTF-8 headers, addresses as
    written), which only a relay offering SMTPUTF8 takes (mailbot.outgoing.transports);
    otherwise a non-ASCII domain is written in its IDNA form and the mail is ASCII."""
    if needs_smtputf8(out.from_addr, out.to_addr, out.reply_to or ""):
        return build_with_email_message(out, date, utf8=True)
    out = replace(out, from_addr=idna_address(out.from_addr), to_addr=idna_address(out.to_addr),
                  reply_to=idna_address(out.reply_to) if out.reply_to else out.reply_to)
    if out.extra_headers or out.attachments:
        return build_with_email_message(out, date)
    head = [
        _address_line("From", out.from_name, out.from_addr),
        _address_line("To", out.to_name, out.to_addr),
        _text_line("Subject", clean_header(out.subject)[:900]),
        f"Date: {format_datetime(date)}",
        _text_line("Message-ID", clean_header(out.message_id)),
    ]
    if out.in_reply_to:
        head.append(_text_line("In-Reply-To", clean_header(out.in_reply_to)))
    refs = [clean_header(r) for r in out.references if r][-20:]
    if refs:
        head.append(_text_line("References", " ".join(refs)))
    if out.reply_to:
        head.append(_address_line("Reply-To", out.from_name, out.reply_to))
    if out.auto_submitted:
        head.append(_text_line("Auto-Submitted", clean_header(out.auto_submitted)))
        head.append("X-Auto-Response-Suppress: All")
    head.append(_text_line(LOOP_HEADER, clean_header(out.from_addr)))
    head.append("MIME-Version: 1.0")
    text = _text_part("plain", out.text)
    if not out.html:
        return _CRLF.join([*head, text]).encode("utf-8", "surrogateescape")
    html = _text_part("html", out.html)
    boundary = _boundary(text + html)
    head.append(f'Content-Type: multipart/alternative;{_CRLF} boundary="{boundary}"')
    return _CRLF.join([*head, "", f"--{boundary}", text, f"--{boundary}", html, f"--{boundary}--", ""]
                      ).encode("utf-8", "surrogateescape")


_CRLF = "\r\n"
_LINE = re.compile(r"\r\n|\r|\n")
_NEEDS_QUOTES = re.compile(r'[][\\()<>@,:;".]|=\?')


def _text_line(name: str, value: str) -> str:
    """`Name: value`, one header folded at spaces (lines of at most 78 characters where
    a space allows): ASCII words as they are, each run of non-ASCII words (with the
    spaces inside it) as encoded-words. A literal encoded-word in the ASCII text
    ("=?…?=", e.g. an undecodable one quoted from a customer's subject) is defused, so
    no reader decodes it into something else."""
    if value.isascii():
        return _fold(f"{name}: {value.replace('=?', '= ?')}")
    words: list[str] = []
    run: list[str] = []
    for word in value.split(" "):
        if word and word.isascii():
            if run:
                words.append(_encoded(" ".join(run), name))
                run = []
            words.append(word.replace("=?", "= ?"))
        elif word or run:
            run.append(word)
        else:
            words.append(word)
    if run:
        words.append(_encoded(" ".join(run), name))
    return _fold(f"{name}: {' '.join(words)}")


def _encoded(text: str, name: str) -> str:
    """`text` as encoded-words (each of at most 75 characters) separated by spaces: a
    reader joins adjacent encoded-words without the spaces between them."""
    return Header(text, "utf-8", header_name=name).encode(linesep=_CRLF).replace(f"{_CRLF} ", " ")


def _fold(line: str) -> str:
    if len(line) <= 78:
        return line
    name, _, value = line.partition(" ")
    out, cur = [], name
    for word in value.split(" "):
        if len(cur) > len(name) and len(cur) + 1 + len(word) > 78:
            out.append(cur)
            cur = " " + word  # the space stays: unfolding gives the value back
        else:
            cur = f"{cur} {word}" if cur else word
    out.append(cur)
    return _CRLF.join(out)


def _address_line(name: str, display: str, addr: str) -> str:
    """`Name: Display <addr>` (an ASCII address): the name quoted where it must be, or
    as encoded-words when it is not ASCII."""
    display, addr = clean_header(display), clean_header(addr)
    if not display:
        return _fold(f"{name}: {addr}")
    if not display.isascii():
        return _fold(f"{name}: {_encoded(display, name)} <{addr}>")
    if _NEEDS_QUOTES.search(display) or display != " ".join(display.split()):
        display = f'"{quote(display)}"'
    return _fold(f"{name}: {display} <{addr}>")


def _text_part(subtype: str, text: str) -> str:
    """A text/* part's headers and body, encoded as `set_content` encodes them."""
    cte, data = _encode_text(text, "utf-8", None, SMTP)
    lines = _LINE.split(data)
    if lines[-1] == "":  # (the encoded body ends with a line end)
        lines.pop()
    body = _CRLF.join(lines)
    return (f'Content-Type: text/{subtype}; charset="utf-8"{_CRLF}'
            f"Content-Transfer-Encoding: {cte}{_CRLF}{_CRLF}{body}{_CRLF}")


def _boundary(content: str) -> str:
    while True:
        boundary = f"=_mailbot_{secrets.token_hex(16)}"
        if boundary not in content:
            return boundary


def build_with_email_message(out: Outgoing, date: datetime, utf8: bool = False) -> bytes:
    """The same mail through the standard library's `EmailMessage` (see the module docstring);
    `utf8`: headers in raw UTF-8 (RFC 6532), for a recipient whose address needs it."""
    msg = EmailMessage(policy=SMTPUTF8 if utf8 else SMTP)
    msg["From"] = _address(out.from_name, out.from_addr)
    msg["To"] = _address(out.to_name, out.to_addr)
    _set_text_header(msg, "Subject", clean_header(out.subject)[:900])
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = out.message_id
    if out.in_reply_to:
        msg["In-Reply-To"] = clean_header(out.in_reply_to)
    refs = [clean_header(r) for r in out.references if r][-20:]
    if refs:
        msg["References"] = " ".join(refs)
    if out.reply_to:
        msg["Reply-To"] = _address(out.from_name, out.reply_to)
    if out.auto_submitted:
        msg["Auto-Submitted"] = out.auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"
    msg[LOOP_HEADER] = out.from_addr
    for name, value in out.extra_headers.items():
        msg[clean_header(name)] = clean_header(value)
    msg.set_content(out.text, charset="utf-8")
    if out.html:
        msg.add_alternative(out.html, subtype="html", charset="utf-8")
    for f in out.attachments:
        maintype, _, subtype = f.content_type.lower().partition("/")
        if not (maintype.isascii() and subtype.isascii() and maintype and subtype) or maintype == "multipart":
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(f.data, maintype=maintype, subtype=subtype, filename=clean_header(f.filename))
    return msg.as_bytes()
