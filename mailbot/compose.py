"""Building the MIME bytes of a mail we send (pure).

Every header value goes through `clean_header` (no CR/LF injection); the
standard library's `EmailMessage` encodes non-ASCII headers as RFC 2047
encoded-words and the body as UTF-8 multipart/alternative (text + HTML).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from mailbot.templating import clean_header

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
    """The full RFC 5322 message, CRLF line endings."""
    msg = EmailMessage(policy=SMTP)
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
    return msg.as_bytes()
