"""What the web side receives from customers, turned into mail for `ingest`.

The complaint form, the intake API and the status page's uploads do not write
cases themselves: each submission becomes one MIME message (the customer as
sender, the brand's address — or the case's secret reply address for a
follow-up — as recipient, the files as attachments) handed to `ingest` with a
`web:` source, so it is stored, deduplicated, extracted, acknowledged and
audited exactly like an email (DESIGN.md: one write path). Its case gets the
channel `form` (mailbot.cases.conversations.channel_of).

`validate` is pure: field name -> error key (mailbot.web.i18n words them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from mailbot.config import BrandConfig, Config, WebConfig
from mailbot.mail.attachments import sanitise_filename

EMAIL_RE = re.compile(r"^[^@\s<>\",;]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
OPERATION_TYPES = ("virement", "paiement", "prelevement", "carte", "retrait", "investissement", "autre")
MAX_TEXT = 20_000
MAX_LINE = 300


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Complaint:
    """The fields the seeds recommend: identity and contact, facts, amounts, references,
    steps already taken, and the customer's own words."""

    name: str = ""
    email: str = ""
    phone: str = ""
    customer_number: str = ""
    subject: str = ""
    description: str = ""
    fact_date: str = ""  # YYYY-MM-DD (the browser's date field)
    operation_type: str = ""
    amount: str = ""
    currency: str = "EUR"
    references: str = ""
    steps_taken: str = ""
    files: list[Upload] = field(default_factory=list)

    def fields(self) -> dict[str, str]:
        """What the customer typed (to show the form again, as it was)."""
        return {k: v for k, v in self.__dict__.items() if isinstance(v, str)}


def _clean(value: str, limit: int) -> str:
    return value.replace("\x00", "").strip()[:limit]


def from_fields(values: dict[str, str], files: list[Upload]) -> Complaint:
    """A complaint from posted fields (unknown keys ignored, lengths capped)."""
    c = Complaint(files=files)
    for key in c.fields():
        if key in values:
            limit = MAX_TEXT if key in ("description", "steps_taken") else MAX_LINE
            setattr(c, key, _clean(str(values[key]), limit))
    c.email = c.email.lower()
    c.currency = (c.currency or "EUR").upper()[:3]
    return c


def validate(c: Complaint, config: Config, web: WebConfig, today: date) -> dict[str, str]:
    """Field -> error key; empty when the complaint can be filed (`today`: the brand's date)."""
    errors: dict[str, str] = {}
    if not c.name:
        errors["name"] = "required"
    if not c.email:
        errors["email"] = "required"
    elif not EMAIL_RE.match(c.email):
        errors["email"] = "bad_email"
    elif config.brand_for_address(c.email) is not None:
        errors["email"] = "own_address"
    if not c.subject:
        errors["subject"] = "required"
    if len(c.description) < 10:
        errors["description"] = "too_short"
    if c.fact_date:
        try:
            if date.fromisoformat(c.fact_date) > today:
                errors["fact_date"] = "future_date"
        except ValueError:
            errors["fact_date"] = "bad_date"
    if c.operation_type and c.operation_type not in OPERATION_TYPES:
        errors["operation_type"] = "bad_choice"
    if c.amount and not re.fullmatch(r"\d{1,12}([.,]\d{1,2})?", c.amount.replace(" ", "")):
        errors["amount"] = "bad_amount"
    if c.currency and not re.fullmatch(r"[A-Z]{3}", c.currency):
        errors["currency"] = "bad_choice"
    file_error = files_problem(c.files, web)
    if file_error:
        errors["files"] = file_error
    return errors


def files_problem(files: list[Upload], web: WebConfig) -> str | None:
    """The error key of the first file the web side refuses (type, count)."""
    if len(files) > web.max_files:
        return "too_many_files"
    allowed = {e.lower() for e in web.allowed_extensions}
    for f in files:
        ext = "." + f.filename.rsplit(".", 1)[-1].lower() if "." in f.filename else ""
        if ext not in allowed:
            return "file_type"
        if not f.data:
            return "empty_file"
    return None


_LABELS = {
    "fr": {"name": "Nom", "email": "Adresse e-mail", "phone": "Téléphone", "customer_number": "Numéro client",
           "fact_date": "Date des faits", "operation_type": "Type d'opération", "amount": "Montant",
           "references": "Références", "steps_taken": "Démarches déjà effectuées",
           "intro": "Réclamation déposée avec le formulaire en ligne."},
    "en": {"name": "Name", "email": "Email address", "phone": "Phone", "customer_number": "Customer number",
           "fact_date": "Date of the facts", "operation_type": "Type of operation", "amount": "Amount",
           "references": "References", "steps_taken": "Steps already taken",
           "intro": "Complaint filed with the online form."},
}


def _fact_date(value: str, language: str) -> str:
    d = date.fromisoformat(value)
    return d.strftime("%d/%m/%Y") if language == "fr" else d.isoformat()


def complaint_text(c: Complaint, language: str) -> str:
    """The body of the mail: the customer's words, then each filled field on a labelled
    line (the extractor reads dates, amounts and references from it like from a mail)."""
    lab = _LABELS.get(language, _LABELS["en"])
    lines = [c.description.strip(), "", "--", lab["intro"]]
    for key in ("name", "email", "phone", "customer_number"):
        if getattr(c, key):
            lines.append(f"{lab[key]} : {getattr(c, key)}" if language == "fr" else f"{lab[key]}: {getattr(c, key)}")
    extra = {
        "fact_date": _fact_date(c.fact_date, language) if c.fact_date else "",
        "operation_type": c.operation_type,
        "amount": f"{c.amount} {c.currency}" if c.amount else "",
        "references": c.references,
    }
    for key, value in extra.items():
        if value:
            lines.append(f"{lab[key]} : {value}" if language == "fr" else f"{lab[key]}: {value}")
    if c.steps_taken:
        lines += ["", f"{lab['steps_taken']} :" if language == "fr" else f"{lab['steps_taken']}:", c.steps_taken]
    return "\n".join(lines) + "\n"


def to_mime(*, sender_name: str, sender: str, to: str, subject: str, text: str, files: list[Upload],
            message_id: str, at: datetime, language: str, extra_headers: dict[str, str] | None = None) -> bytes:
    """One mail as a customer's mail program would send it."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _address(sender_name, sender)
    msg["To"] = to
    msg["Subject"] = " ".join(subject.split())[:MAX_LINE]
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = message_id
    msg["Content-Language"] = language
    for k, v in (extra_headers or {}).items():
        msg[k] = v
    msg.set_content(text)
    for i, f in enumerate(files, 1):
        maintype, _, subtype = (f.content_type or "application/octet-stream").partition("/")
        if not re.fullmatch(r"[\w.+-]+", maintype) or not re.fullmatch(r"[\w.+-]+", subtype or "x"):
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(f.data, maintype=maintype, subtype=subtype or "octet-stream",
                           filename=sanitise_filename(f.filename, fallback=f"document-{i}"))
    return msg.as_bytes()


def _address(name: str, addr: str) -> str:
    from email.headerregistry import Address

    local, _, domain = addr.rpartition("@")
    clean = " ".join(name.replace('"', "'").split())[:200]
    return str(Address(display_name=clean, username=local, domain=domain))


def complaint_mime(c: Complaint, brand: BrandConfig, language: str, message_id: str, at: datetime) -> bytes:
    return to_mime(sender_name=c.name, sender=c.email, to=brand.addresses[0], subject=c.subject,
                   text=complaint_text(c, language), files=c.files, message_id=message_id, at=at,
                   language=language)
