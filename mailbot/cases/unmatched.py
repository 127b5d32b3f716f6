"""Automatic mail that matches no case: kept, listed, and flagged to staff when it reads
as a complaint.

A form mailer sending `Auto-Submitted: auto-generated` with a customer's report of a
900 EUR fraud vanished from every view (issue #20, item 13): automatic mail never
opens a case and is never answered (loops, backscatter), and this one concerned no
case. It is kept (its inbound row and raw bytes; `mailbot inbound list --automatic`
lists them) and, when an auto-generated or bulk mail to a brand address — not a reply
to some mail — reads as a complaint (`reads_as_complaint`), the brand's team (else its
supervisor) gets an `automatic_complaint` mail saying where it is (at most
FLAGS_PER_HOUR an hour). Still no case and no answer: staff
decide (`mailbot cases new` when it is a customer's complaint).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import bindparam
from sqlmodel import Session, col, func, select

from mailbot.app import App
from mailbot.cases.records import log_case_event
from mailbot.config import BrandConfig
from mailbot.mail.classify import Kind, Verdict
from mailbot.mail.extract import Extracted, extract_for
from mailbot.mail.masking import stored_body
from mailbot.mail.parsing import ParsedMail
from mailbot.models import InboundRow, Outbox
from mailbot.outgoing import outbox, templating
from mailbot.outgoing.compose import Outgoing, build, new_message_id
from mailbot.outgoing.templating import brand_context

FLAGGED_KINDS = (Kind.AUTO_REPLY, Kind.LIST)  # bounces, receipts and abuse reports are about our mail
FLAGS_PER_HOUR = 20  # automatic_complaint mails at most, all brands: an auto-reply storm floods no one
EXCERPT = 2000  # characters of the mail the staff's mail quotes


def reads_as_complaint(brand: BrandConfig, facts: Extracted) -> bool:
    """An urgent word (fraud, unrecognised operation…), or a category of the brand named and
    a fact a complaint gives (an amount, an operation, a date). A vacation notice has none."""
    named = facts.category is not None and facts.category != brand.default_category
    return facts.urgent or (named and bool(facts.amounts or facts.operation_types or facts.fact_dates))


ENCLOSED_TYPES = ("message/", "text/rfc822-headers")
# a header block quoted in the text ("Original mail as follows:" then its Return-Path, Received…)
QUOTED_HEADER = re.compile(r"^[ \t>]*(?:Return-Path|Received|Message-ID|X-Original-To):", re.IGNORECASE | re.MULTILINE)


def _answers_something(parsed: ParsedMail) -> bool:
    """An auto-reply to some mail (a vacation notice quoting it), or a report enclosing a mail
    (a list server's loop alert, a delivery report): about that mail, not a report of its own."""
    if parsed.in_reply_to or parsed.header("Auto-Submitted").strip().lower().startswith("auto-replied"):
        return True
    if any(a.content_type.lower().startswith(ENCLOSED_TYPES) for a in parsed.attachments):
        return True
    return len(QUOTED_HEADER.findall(parsed.text[:64_000])) >= 2


_FLAGGED_SINCE = select(func.count()).select_from(Outbox).where(
    Outbox.kind == "automatic_complaint", col(Outbox.created_at) > bindparam("since"))


def _flagged_last_hour(session: Session, now: datetime) -> int:
    return int(session.connection().execute(_FLAGGED_SINCE, {"since": now - timedelta(hours=1)}).scalar_one())


def flag_to_staff(session: Session, app: App, inbound: InboundRow, parsed: ParsedMail, brand: BrandConfig,
                  verdict: Verdict, received_at: datetime) -> list[str]:
    """Tell the brand's team (else its supervisor) about an unmatched automatic mail that
    reads as a complaint; returns the addresses written to (none: it does not read as one)."""
    if verdict.kind not in FLAGGED_KINDS or _answers_something(parsed) \
            or not reads_as_complaint(brand, extract_for(brand, parsed, received_at)):
        return []
    now = app.now()
    if _flagged_last_hour(session, now) >= FLAGS_PER_HOUR:  # an auto-reply storm: listed, not mailed
        log_case_event(session, None, "automatic_not_flagged", at=now, inbound=inbound.id, brand=brand.key,
                       reason=f"{FLAGS_PER_HOUR} automatic_complaint mails in the last hour")
        return []
    cfg = app.config
    team = [a for a in brand.team if cfg.receives_staff_mail(a, brand.key)]
    to = team or [a for a in (brand.supervisor,) if a and cfg.receives_staff_mail(a, brand.key)]
    text = parsed.masked_text if parsed.masked_text is not None else stored_body(parsed.text)
    for address in to:
        member = cfg.staff(address, brand.key)
        name = member.name if member else ""
        language = (member.language if member else None) or brand.language
        ctx = {"brand": brand_context(brand), "agent": {"name": name, "email": address},
               "inbound": {"id": inbound.id, "from": parsed.from_addr or parsed.from_header, "subject": parsed.subject,
                           "received_at": app.calendar(brand).local(received_at).isoformat(),
                           "reason": verdict.reason, "excerpt": text[:EXCERPT]}}
        rendered = templating.renderer(app).render(brand.key, language, "automatic_complaint", ctx)
        mid = new_message_id(brand.addresses[0])
        raw = build(Outgoing(from_addr=brand.addresses[0], from_name=brand.name, to_addr=address, to_name=name,
                             subject=rendered.subject, text=rendered.text, html=rendered.html, message_id=mid,
                             auto_submitted="auto-generated"), now)
        outbox.queue(session, case=None, kind="automatic_complaint", from_addr=brand.addresses[0], to_addr=address,
                     message_id=mid, now=now, raw=raw, to_name=name, language=language)
    log_case_event(session, None, "automatic_flagged", at=now, inbound=inbound.id, brand=brand.key, to=to)
    return to
