"""Small builders of literal test mails."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

_counter = itertools.count(1)


def mail(
    *,
    frm: str = "Marie Dupont <marie.dupont@example.org>",
    to: str = "support@kalra-plus.com",
    subject: str = "Virement non reçu",
    body: str = "Bonjour,\nmon virement de 1 250,00 € du 3 novembre 2026 n'est pas arrivé.\nMarie Dupont",
    message_id: str | None = None,
    date: datetime | None = None,
    html: str | None = None,
    attachments: tuple[tuple[str, str, bytes], ...] = (),
    **headers: str,
) -> bytes:
    """A complaint mail; extra headers as keyword arguments (In_Reply_To=… → In-Reply-To)."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = frm
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    msg["Message-ID"] = message_id or f"<test-{next(_counter)}-{id(msg)}@example.org>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    if body is not None:
        msg.set_content(body)
    if html is not None:
        if body is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    for filename, ctype, data in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()
