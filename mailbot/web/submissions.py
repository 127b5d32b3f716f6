"""Handing web submissions to `ingest`, within the rate limits.

A complaint (form or API) goes to the brand's address; a follow-up from the
status page (documents, a request for re-examination) goes to the case's secret
reply address, so routing puts it on that case by its token like a reply by
mail. The limits count the submissions of the last hour per customer address
and per client IP (`web_submissions`, in the database: every `mailbot web`
process sees the same counts); a refused submission records nothing. A
submission is counted when it is handed to ingest (a retried API call with the
same Idempotency-Key counts again, though ingest records it once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select

from mailbot import db
from mailbot.app import App
from mailbot.cases.conversations import WEB_SOURCE
from mailbot.config import BrandConfig
from mailbot.ingest.pipeline import IngestResult, ingest
from mailbot.models import Case, WebSubmission
from mailbot.outgoing.case_context import reply_address
from mailbot.outgoing.compose import new_message_id
from mailbot.web.intake import Complaint, Upload, complaint_mime, to_mime

WINDOW = timedelta(hours=1)


class RateLimited(Exception):
    """Too many submissions from this address or this client in the last hour."""


@dataclass(frozen=True)
class Filed:
    ref: str | None
    result: IngestResult


def reserve(app: App, email: str, ip: str | None) -> None:
    """Count this submission, unless the address or the client IP has used up its hour:
    then raise RateLimited and record nothing. The check and the count are one
    transaction (on SQLite, one writer at a time: a burst cannot slip past the limit)."""
    now = app.now()
    since = now - WINDOW
    web = app.config.web
    with db.session_scope(app.engine) as s:
        by_mail = s.execute(select(func.count()).select_from(WebSubmission)
                            .where(WebSubmission.email == email.lower(), WebSubmission.at > since)).scalar_one()
        by_ip = 0
        if ip:
            by_ip = s.execute(select(func.count()).select_from(WebSubmission)
                              .where(WebSubmission.ip == ip, WebSubmission.at > since)).scalar_one()
        if by_mail >= web.limit_per_address or by_ip >= web.limit_per_ip:
            raise RateLimited(f"{by_mail} submissions from this address, {by_ip} from this client in the last hour")
        s.add(WebSubmission(ip=(ip or "")[:64], email=email.lower()[:500], at=now))


def file_complaint(app: App, brand: BrandConfig, language: str, complaint: Complaint, *,
                   source: str, ip: str | None, message_id: str | None = None) -> Filed:
    """A new complaint through `ingest` (channel `form`); `message_id` lets an API client
    make its retries idempotent (the same id is recorded once)."""
    reserve(app, complaint.email, ip)
    mid = message_id or new_message_id(brand.addresses[0])
    raw = complaint_mime(complaint, brand, language, mid, app.now())
    result = ingest(app, raw, WEB_SOURCE + source, envelope_from=complaint.email,
                    envelope_to=[brand.addresses[0]])
    return Filed(result.case_refs[0] if result.case_refs else None, result)


def file_follow_up(app: App, case: Case, text: str, files: list[Upload], *, subject: str, ip: str | None) -> Filed:
    """The case's customer writes from the status page: a mail to the case's reply address."""
    reserve(app, case.customer_email, ip)
    brand = app.config.brand(case.brand)
    to = reply_address(brand, case.reply_token)
    raw = to_mime(sender_name=case.customer_name, sender=case.customer_email, to=to,
                  subject=f"[{case.ref}] {subject}", text=text, files=files,
                  message_id=new_message_id(brand.addresses[0]), at=app.now(), language=case.language)
    result = ingest(app, raw, WEB_SOURCE + f"status:{ip or '-'}", envelope_from=case.customer_email,
                    envelope_to=[to])
    return Filed(case.ref, result)
