"""Mail templates: a Jinja2 sandbox that turns a case context into a subject, a text and an HTML body.

Files
-----
Saved replies (texts an agent sends with ``#reply NAME`` or ``cases reply --template NAME``) are
``templates/<brand>/<language>/replies/NAME.txt`` (or ``templates/_default/<language>/replies/``):
a body only, no ``Subject:`` line, rendered with the same context and sandbox.

``templates/<brand>/<language>/<kind>.txt|.html`` are looked up first, then the shared wording in
``templates/_default/<language>/``, then the same two directories for the default language
(``fr``).  A brand template usually
only overrides blocks of the shared one: ``{% extends "_default/acknowledgement.txt" %}`` (the
``_default/`` prefix always reaches ``templates/_default/<language>/``).  Files whose name starts with
``_`` are layouts, partials and macros, not kinds.

The first line of every ``.txt`` kind is ``Subject: ...``, then one blank line, then the body.  The
subject must not carry the case reference: the mail builder prefixes ``[REF] ``.

Safety
------
``ImmutableSandboxedEnvironment`` + ``StrictUndefined``; autoescape is on for ``.html`` and off for
``.txt``.  Customer text is only ever *data* in the context, never template source.  Subjects go
through :func:`clean_header` (no CR/LF or other control characters).

Context keys (every template must render with :func:`sample_context`)
---------------------------------------------------------------------
``check-config`` renders each brand's templates with a sample case built from that brand's config
(:func:`sample_context`): no brand is known to the code.

- ``brand``: {key, name, address, postal_address, mediator: {name, postal_address, website, email}}
- ``case``: {ref, subject, status, category, category_label, priority, urgent (bool), tier,
  tier_days (int), received_at, ack_due_at, due_at (ISO 8601 strings in the brand's local time,
  with offset), overdue (bool: the answer date has passed, e.g. an imported backlog mail),
  ack_late (bool: so has the acknowledgement's), customer_name, customer_email, language, channel, missing (list of keys, see
  ``MISSING_LABELS``), extracted: {amounts: [{value, currency}], fact_dates: [ISO dates],
  references: [str], operation_types: [str], phone, customer_number}}
- ``message``: {subject, text, from_name, from_addr, at, quoted_lines (lines of quoted history
  folded out of ``text`` in staff mail), own_greeting, own_closing (bools: the agent's text has
  its own greeting / closing, so the mail adds none), routed_by (what joined it to the case:
  reply_token, in_reply_to, references, subject_ref, new…)} - the message the mail is about (the
  customer's mail for acknowledgement / agent_notification / urgent_alert / reexamination_ack,
  the agent's text for request_info / final_response)
- ``reply_address``: the address replies must go to (the case's secret plus-address; for mails to
  agents, the agent token address)
- ``status_url``: the case's status page for the customer (signed link; "" without a web side)
- ``signin``: {url, expires_at, zone, minutes} (the staff sign-in link, ``staff_signin`` only)
- ``inbound``: {id, from, subject, received_at, reason, excerpt} (``automatic_complaint`` only: an
  automatic mail that matched no case and reads as a complaint; ``id`` for `mailbot inbound show`)
- ``letter``: {date, place, to_name, to_address} - set when the mail is a letter to post (a PDF:
  mailbot.outgoing.letter_pdf); empty strings otherwise
- ``extension``: {new_due_at, old_due_at, reason, days, earlier (bool: the new date comes sooner),
  tier (the new tier when a tier change moved the date, else "")}
- ``reminder``: {percent (0-100, share of the time elapsed), due_at, urgent (bool: about an urgent
  case's first-response deadline: an on-call alert repeated, the supervisor's alert)}
- ``final``: {sections: {summary, explanation, steps, corrective_measures, solution} (strings; when
  all are empty the agent's ``message.text`` is shown instead), outcome ("accepted" |
  "partially_accepted" | "rejected" | ""), reexamination (bool: this response concludes a
  re-examination, so no further re-examination is offered), include_mediation (bool: the brand
  has a mediator; every final response then names it)}
- ``rejection``: {command, reasons: [str]}
- ``commands``: [{name, help}] (see :func:`command_help`)
- ``agent``: {name, email} (the staff member the mail is for; may be empty strings)
- ``assignee``: {name, email} (the agent the case is assigned to; empty strings when none)
- ``assigned_by``: who assigned the case (assignment)
- ``closure``: {reason} (closure_notice: why a case is closed before any final response)
- ``merge``: {other_ref} (merge_notice: the case merged into this one)
- ``notes``: [{at, author, text}] - the case's latest internal notes (staff mail only)
- ``related``: {ref, why ("resent" | "quoted_ref")} - the existing case a new one probably repeats
- ``attachments``: [{n (its number in the case: `mailbot cases attachment REF N`), filename,
  content_type, size (bytes), kept (bool), attached (bool: the file is attached to this mail),
  dropped_reason}] - the files of the message a staff notification is about
- ``security``: {what ("forgery": a refused agent mail; "first_contact_cap": the hourly cap on
  acknowledgements to first-time addresses reached, ``count`` the cap; "digest": what happened since
  the last alert, ``kind`` "security" or "first_contact_cap", ``count`` occurrences since ``since``,
  ``digest`` [{at, ref, sender, reason}]), sender, reason, kind, count, since, digest}
- ``digest``: {day (ISO date, the brand's), zone, supervisor (bool), problem (why a reply to the
  digest could not be used: this digest answers it; "" otherwise), total, counts: {overdue,
  due_today, waiting, assigned}, sections: [{key (overdue | due_today | waiting | assigned), total,
  more (cases not listed), command (the `mailbot cases list` listing them all), lines: [{ref,
  customer, subject, category_label, status, urgent (bool), assignee, due_at, overdue_days,
  reply_address (this case's staff token for the recipient)}]}]} (``digest`` only: the daily
  digest, mailbot.cases.digest; no ``case`` nor ``message`` keys)
- ``delivery``: {to, kind, error, permanent (bool: refused for good by the relay, not retried)} - the
  mail that failed, for ``delivery_failure``
- ``ack``: {why, detail} - for agent_notification, why the customer got no acknowledgement:
  ``why`` is "" (one was sent), "no_address" (``detail``: the From header), "noreply", "failing"
  (``detail``: the address), "own", "limit", "cap" or "first_contact_cap"
- ``scheduled_final``: {at (the brand's local time, ISO; "" when none), held (bool: a customer's mail
  held it, it waits for the agent)} - the case's final response scheduled for later (`#final at`), for
  reminder, escalation and assignment (mailbot.cases.scheduled.context; the ``_scheduled_final`` include)

The kind-specific keys (extension, reminder, final, rejection, commands, agent, security, delivery,
ack) get empty defaults when the caller leaves them out.  The renderer adds ``language`` (the language actually
rendered), ``kind`` and, for the HTML part, ``subject``.

Filters: ``date`` ("mardi 1er décembre 2026" / "Tuesday 1 December 2026"), ``datetime`` (the same
plus " à 14:00 (heure de Paris)" / " at 14:00 (Paris time)": a time always names its zone, the
brand's ``timezone``, by :func:`zone_label`; a date alone stays a date), ``filesize`` (12345 -> "12 Ko" / "12 KB"), ``missing_label`` (missing-item key -> human label), ``money``
({value, currency} -> "1 234,56 EUR" / "EUR 1,234.56").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from mailbot.app import App
from mailbot.config import BrandConfig, Config
from mailbot.mail.headers import clean_header

KINDS = (
    "acknowledgement",
    "agent_reply",
    "request_info",
    "extension",
    "agent_notification",
    "reminder",
    "escalation",
    "final_response",
    "reexamination_ack",
    "holding_reply",
    "command_rejection",
    "urgent_alert",
    "security_alert",
    "delivery_failure",
    "staff_held",
    "assignment",
    "closure_notice",
    "staff_signin",
    "automatic_complaint",
    "merge_notice",
    "linked_ack",
    "digest",
)
CASELESS_KINDS = ("staff_signin", "digest", "automatic_complaint")  # about no case: rendered without case keys in their text

DEFAULT_DIR = "_default"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_LANG_RE = re.compile(r"^[a-z]{2,3}(-[a-zA-Z0-9]{2,8})?$")
_REPLY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")
# Line breaks that come from *data* ({{ ... }} output) are swapped for private-use sentinels while
# rendering, so only a line break written in the template file can end the "Subject:" line.
_DATA_LF, _DATA_CR = "\ue000", "\ue001"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class TemplateError(Exception):
    """A template could not be found, compiled or rendered; the message names the file."""


class TemplateSecurityError(TemplateError):
    """A template tried something the sandbox forbids (unsafe attribute, unsafe call)."""


def _finalize(value: Any) -> Any:
    """Every {{ expression }}: hide its line breaks from the subject split (see _restore)."""
    if isinstance(value, str):
        value = value.replace(_DATA_LF, "\ufffd").replace(_DATA_CR, "\ufffd")
        return value.replace("\n", _DATA_LF).replace("\r", _DATA_CR)
    return value


def _restore(text: str) -> str:
    return text.replace(_DATA_LF, "\n").replace(_DATA_CR, "\r")


# ---------------------------------------------------------------------------
# Filters (language-bound)

_MONTHS = {
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
           "septembre", "octobre", "novembre", "décembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}
_DAYS = {
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_AT = {"fr": " à ", "en": " at "}

MISSING_LABELS: dict[str, dict[str, str]] = {
    "fr": {
        "coordonnees": "vos coordonnées (adresse postale ou téléphone, numéro client)",
        "date_faits": "la date des faits",
        "type_operation": "le type d'opération concerné",
        "montant": "le ou les montants",
        "references": "les références de l'opération",
        "pieces_jointes": "tout justificatif utile (captures d'écran, relevés, e-mails)",
        "etapes": "les étapes déjà suivies pour tenter de résoudre le problème",
    },
    "en": {
        "coordonnees": "your contact details (postal address or phone number, customer number)",
        "date_faits": "the date of the facts",
        "type_operation": "the type of operation concerned",
        "montant": "the amount or amounts",
        "references": "the references of the operation",
        "pieces_jointes": "any useful evidence (screenshots, statements, e-mails)",
        "etapes": "the steps you have already taken to solve the problem",
    },
}


def _table_lang(language: str) -> str:
    return language if language in _MONTHS else "en"


def _to_datetime(value: Any) -> datetime | date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime | date):
        return value
    text = str(value).strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 date: {text!r}") from exc


def format_date(value: Any, language: str = "fr") -> str:
    """'mardi 1er décembre 2026' / 'Tuesday 1 December 2026'; '' for an empty value."""
    d = _to_datetime(value)
    if d is None:
        return ""
    lang = _table_lang(language)
    day = "1er" if lang == "fr" and d.day == 1 else str(d.day)
    return f"{_DAYS[lang][d.weekday()]} {day} {_MONTHS[lang][d.month - 1]} {d.year}"


# Zones their people call by a place ("heure de Paris"); any other is named by its IANA name.
_ZONE_NAMES: dict[str, dict[str, str]] = {
    "Europe/Paris": {"fr": "heure de Paris", "en": "Paris time"},
    "America/Marigot": {"fr": "heure de Saint-Martin", "en": "Saint-Martin time"},
    "America/St_Barthelemy": {"fr": "heure de Saint-Barthélemy", "en": "Saint-Barthélemy time"},
    "America/Guadeloupe": {"fr": "heure de la Guadeloupe", "en": "Guadeloupe time"},
    "America/Martinique": {"fr": "heure de la Martinique", "en": "Martinique time"},
    "America/Cayenne": {"fr": "heure de la Guyane", "en": "French Guiana time"},
    "Indian/Reunion": {"fr": "heure de La Réunion", "en": "Réunion time"},
    "Indian/Mayotte": {"fr": "heure de Mayotte", "en": "Mayotte time"},
}


def zone_label(zone: str, language: str = "fr") -> str:
    """How a reader is told the zone of a time: 'heure de Paris' / 'Paris time' for the
    zones known by a place, the IANA name ('America/New_York') otherwise."""
    names = _ZONE_NAMES.get(zone)
    return names.get(_table_lang(language), names["en"]) if names else zone


def format_datetime(value: Any, language: str = "fr", zone: str = "") -> str:
    """format_date plus ' à 14:00' / ' at 14:00', in `zone` and naming it
    (' à 14:00 (heure de Paris)') when one is given; a date alone stays a date."""
    d = _to_datetime(value)
    if d is None:
        return ""
    if zone and isinstance(d, datetime) and d.tzinfo is not None:
        d = d.astimezone(ZoneInfo(zone))
    text = format_date(d, language)
    if isinstance(d, datetime):
        text += f"{_AT[_table_lang(language)]}{d:%H:%M}"
        if zone:
            text += f" ({zone_label(zone, language)})"
    return text


def format_filesize(size: Any, language: str = "fr") -> str:
    """12345 -> '12 Ko' (fr) / '12 KB' (en); bytes below 1 kB, one decimal from 1 MB."""
    n = int(size or 0)
    units = ("o", "Ko", "Mo", "Go") if language == "fr" else ("B", "KB", "MB", "GB")
    if n < 1000:
        return f"{n} {units[0]}"
    value, unit = n / 1000, 1
    while value >= 1000 and unit < 3:
        value, unit = value / 1000, unit + 1
    text = f"{value:.0f}" if unit == 1 else f"{value:.1f}"
    return f"{text.replace('.', ',') if language == 'fr' else text} {units[unit]}"


def missing_label(key: Any, language: str = "fr") -> str:
    labels = MISSING_LABELS.get(language, MISSING_LABELS["en"])
    return labels.get(str(key), str(key).replace("_", " "))


def format_money(amount: Any, language: str = "fr") -> str:
    """{value, currency} (or a bare number) -> '1 234,56 EUR' (fr) / 'EUR 1,234.56' (en)."""
    if isinstance(amount, Mapping):
        value, currency = amount.get("value", ""), str(amount.get("currency", "") or "")
    else:
        value, currency = amount, ""
    try:
        number = f"{Decimal(str(value)):,.2f}"
    except (InvalidOperation, ValueError):
        return " ".join(p for p in (str(value), currency) if p)
    if language == "fr":
        number = number.replace(",", "\u202f").replace(".", ",")
        return f"{number} {currency}".strip()
    return f"{currency} {number}".strip()


# ---------------------------------------------------------------------------
# Commands help (agent_notification, command_rejection)

_COMMANDS = (
    ("#note", "note interne, jamais envoyée au client", "internal note, never sent to the customer"),
    ("#ask", "demande d'informations au client (le texte suit)",
     "ask the customer for information (the text follows)"),
    ("#final", "réponse finale au client (le texte suit)",
     "final response to the customer (the text follows)"),
    ("#extend N raison", "prolonge le délai de N jours ouvrés, la raison est envoyée au client",
     "extend the deadline by N business days; the reason is sent to the customer"),
    ("#tier", "change le niveau de délai, le client reçoit la nouvelle date et la raison "
     "(ex. : #tier complex analyse des relevés)",
     "change the deadline tier; the customer is sent the new date and the reason "
     "(e.g. #tier complex review of the statements)"),
    ("#category", "change la catégorie (ex. : #category frais)",
     "change the category (e.g. #category frais)"),
    ("#priority", "change la priorité (ex. : #priority urgent)",
     "change the priority (e.g. #priority urgent)"),
    ("#assign", "assigne la réclamation (ex. : #assign agent@exemple.com)",
     "assign the case (e.g. #assign agent@example.com)"),
    ("#close", "clôt la réclamation sans autre envoi", "close the case without sending anything"),
    ("#reexamine", "ouvre un réexamen (réclamation déjà répondue) : accusé de réception et nouveau délai",
     "open a re-examination (case already answered): acknowledgement and a new deadline"),
)


def command_help(language: str) -> list[dict[str, str]]:
    """The agent commands with a one-line help in ``language`` (fr, otherwise en)."""
    return [{"name": n, "help": fr if language == "fr" else en} for n, fr, en in _COMMANDS]


# ---------------------------------------------------------------------------
# Sample context


def mediator_context(brand: BrandConfig) -> dict[str, str]:
    m = brand.mediator
    return {"name": m.name if m else "", "postal_address": m.postal_address if m else "",
            "website": m.website if m else "", "email": m.email if m else ""}


def brand_context(brand: BrandConfig) -> dict[str, Any]:
    """The ``brand`` key of every context, from the brand's config."""
    return {"key": brand.key, "name": brand.name, "address": brand.addresses[0],
            "postal_address": brand.postal_address, "mediator": mediator_context(brand)}


def _weekdays_after(day: date, n: int) -> date:
    """`n` days after `day` that are not Saturdays or Sundays (a sample's deadline: holidays
    are the calendar's business, mailbot.business_days)."""
    while n > 0:
        day += timedelta(days=1)
        n -= day.weekday() < 5
    return day


def sample_context(brand: BrandConfig, language: str) -> dict[str, Any]:
    """A complete, realistic context for every kind (used by :meth:`Renderer.check` and tests):
    the brand's own data from its config (name, addresses, mediator, time zone, default tier,
    reference prefix, first category), a sample customer and case around 1 December 2026."""
    b = brand_context(brand)
    received = datetime(2026, 12, 1, 9, 30, tzinfo=ZoneInfo(brand.timezone))
    off = received.isoformat()[-6:]
    tier = brand.sla.default_tier
    tier_days = brand.sla.tiers.get(tier, 0)
    due_day = _weekdays_after(received.date(), tier_days)
    due = f"{due_day}T18:00:00{off}"
    new_due = f"{_weekdays_after(due_day, 10)}T18:00:00{off}"
    category = brand.categories[0] if brand.categories else None
    ref = partial("{}-2026-{:06d}".format, brand.prefix)
    fr = language == "fr"
    local, _, domain = b["address"].partition("@")
    text = (
        "Bonjour,\n\nLe 27 novembre j'ai fait un virement de 250,00 EUR (réf. VIR-88213) qui "
        "n'est jamais arrivé.\nMerci de vérifier.\n\nCamille Martin"
        if fr
        else "Hello,\n\nOn 27 November I made a transfer of EUR 250.00 (ref. VIR-88213) that "
        "never arrived.\nPlease check.\n\nCamille Martin"
    )
    return {
        "brand": b,
        "case": {
            "ref": ref(123),
            "subject": "Virement non reçu" if fr else "Transfer not received",
            "status": "acknowledged",
            "category": category.key if category else "",
            "category_label": category.labels.get(language, category.label) if category else "",
            "priority": "normal",
            "urgent": False,
            "tier": tier,
            "tier_days": tier_days,
            "received_at": f"2026-12-01T09:30:00{off}",
            "ack_due_at": f"2026-12-02T09:30:00{off}",
            "due_at": due,
            "customer_name": "Camille Martin",
            "customer_email": "camille.martin@example.org",
            "language": language,
            "channel": "email", "overdue": False, "ack_late": False,
            "missing": ["date_faits", "montant", "pieces_jointes"],
            "extracted": {
                "amounts": [{"value": "250.00", "currency": "EUR"}],
                "fact_dates": ["2026-11-27"],
                "references": ["VIR-88213"],
                "operation_types": ["virement"],
                "phone": "+33 6 12 34 56 78",
                "customer_number": "C-004512",
            },
        },
        "message": {
            "subject": "Virement non reçu" if fr else "Transfer not received",
            "text": text,
            "from_name": "Camille Martin",
            "from_addr": "camille.martin@example.org",
            "at": f"2026-12-01T09:30:00{off}",
            "quoted_lines": 6,
            "own_greeting": False,
            "own_closing": True,
            "routed_by": "reply_token",
        },
        "reply_address": f"{local}+r7k2q9x4m1@{domain}",
        "status_url": f"https://reclamations.{domain}/status/{ref(123)}/0f3c9a2be1d4",
        "signin": {"url": f"https://reclamations.{domain}/staff/signin/x7Qm2", "minutes": 15,
                   "expires_at": f"2026-12-01T09:45:00{off}", "zone": brand.timezone},
        "inbound": {"id": 4312, "from": "formulaire@site.example", "subject": "Nouveau message du formulaire",
                    "received_at": f"2026-12-01T09:30:00{off}", "reason": "Auto-Submitted: auto-generated",
                    "excerpt": "Nom : Camille Martin\nMessage : 900 EUR débités par une opération non reconnue."},
        "extension": {
            "new_due_at": new_due,
            "reason": "analyse approfondie des opérations avec notre partenaire de paiement"
            if fr
            else "in-depth analysis of the operations with our payment partner",
            "days": 10,
            "old_due_at": due,
            "earlier": False,
            "tier": "",
        },
        "reminder": {"percent": 80, "due_at": due, "urgent": False},
        "final": {
            "sections": _sample_sections(fr),
            "outcome": "accepted",
            "reexamination": False,
            "include_mediation": True,
        },
        "rejection": {
            "command": "#extend dix jours",
            "reasons": ["le nombre de jours doit être un entier" if fr
                        else "the number of days must be an integer"],
        },
        "commands": command_help(language),
        "agent": {"name": "Alex Dupont", "email": f"agent@{domain}"},
        "assignee": {"name": "Alex Dupont", "email": f"agent@{domain}"},
        "assigned_by": f"supervisor@{domain}",
        "closure": {"reason": "vous nous avez indiqué que le virement est bien arrivé" if fr
                    else "you told us the transfer has arrived"},
        "merge": {"other_ref": ref(124)},
        "related": {"ref": ref(101), "why": "resent"},
        "notes": [{"at": f"2026-12-01T11:00:00{off}", "author": f"agent@{domain}",
                   "text": "Cliente rappelée : le relevé arrive demain." if fr
                   else "Called the customer back: the statement comes tomorrow."}],
        "attachments": [
            {"n": 1, "filename": "releve-novembre.pdf", "content_type": "application/pdf", "size": 182_344,
             "kept": True, "attached": True, "dropped_reason": ""},
            {"n": 2, "filename": "video-ecran.mp4", "content_type": "video/mp4", "size": 48_000_000,
             "kept": True, "attached": False, "dropped_reason": ""},
            {"n": 3, "filename": "setup.exe", "content_type": "application/octet-stream", "size": 90_000,
             "kept": False, "attached": False, "dropped_reason": "blocked file type .exe"},
        ],
        "digest": _sample_digest(brand, b["address"], off, fr),
        "security": {
            "what": "forgery", "kind": "", "count": 0, "since": "", "digest": [],
            "sender": "intrus@example.net",
            "reason": "commande d'agent envoyée depuis une adresse non autorisée"
            if fr
            else "agent command sent from an address that is not an agent of this brand",
        },
        "delivery": {"to": "camille.martin@example.org", "kind": "acknowledgement",
                     "error": "550 5.1.1 <camille.martin@example.org>: Recipient address rejected: User unknown",
                     "permanent": True},
        "ack": {"why": "no_address", "detail": "camille.martin@example.org camille@example.net"},
        "held_final": {"at": f"2026-12-04T09:00:00{off}"},
        "scheduled_final": {"at": f"2026-12-04T09:00:00{off}", "held": False},
    }


def _sample_digest(brand: BrandConfig, address: str, off: str, fr: bool) -> dict[str, Any]:
    local, _, domain = address.partition("@")

    def line(n: int, status: str, due: str, late: int, assignee: str = "") -> dict[str, Any]:
        return {"ref": f"{brand.prefix}-2026-{n:06d}", "customer": "Camille Martin", "status": status,
                "subject": "Virement non reçu" if fr else "Transfer not received", "urgent": n == 201,
                "category_label": "Virement" if fr else "Transfer", "assignee": assignee,
                "due_at": f"{due}T23:59:59{off}", "overdue_days": late,
                "reply_address": f"{local}+a{n}-2650-3f9c0a1b2c3d4e5f6a7b@{domain}",
                "scheduled_final": {"at": f"2026-12-0{n - 200}T10:00:00{off}" if n in (201, 202) else "",
                                    "held": n == 201}}

    me = f"agent@{domain}"
    sections = [
        {"key": "overdue", "total": 3, "more": 2, "command": f"mailbot cases list --brand {brand.key} --overdue",
         "lines": [line(201, "in_progress", "2026-12-01", 2, me)]},
        {"key": "due_today", "total": 1, "more": 0, "command": "", "lines": [line(202, "acknowledged", "2026-12-03", 0)]},
        {"key": "waiting", "total": 0, "more": 0, "command": "", "lines": []},
        {"key": "assigned", "total": 1, "more": 0, "command": "",
         "lines": [line(203, "waiting_customer", "2026-12-10", 0, me)]},
        {"key": "unassigned", "total": 1, "more": 0, "command": "", "lines": [line(204, "new", "2026-12-14", 0)]},
    ]
    return {"day": "2026-12-03", "zone": brand.timezone, "supervisor": False, "problem": "", "total": 6,
            "counts": {s["key"]: s["total"] for s in sections}, "sections": sections}


def _sample_sections(fr: bool) -> dict[str, str]:
    if fr:
        return {
            "summary": "Vous nous avez signalé qu'un virement de 250,00 EUR du 27 novembre "
            "n'était pas arrivé.",
            "explanation": "Le virement a été bloqué par un contrôle automatique.",
            "steps": "Nous avons vérifié l'opération avec notre partenaire de paiement.",
            "corrective_measures": "Le contrôle a été ajusté pour ce type d'opération.",
            "solution": "Le virement a été exécuté le 3 décembre.",
        }
    return {
        "summary": "You told us that a transfer of EUR 250.00 made on 27 November never arrived.",
        "explanation": "The transfer was held by an automatic check.",
        "steps": "We checked the operation with our payment partner.",
        "corrective_measures": "The check has been adjusted for this type of operation.",
        "solution": "The transfer was executed on 3 December.",
    }


def _empty_kind_context() -> dict[str, Any]:
    return {
        "status_url": "",
        "signin": {"url": "", "minutes": 0, "expires_at": "", "zone": ""},
        "digest": {"day": "", "zone": "", "supervisor": False, "problem": "", "total": 0,
                   "counts": dict.fromkeys(("overdue", "due_today", "waiting", "assigned", "unassigned"), 0),
                   "sections": []},
        "inbound": {"id": 0, "from": "", "subject": "", "received_at": "", "reason": "", "excerpt": ""},
        "extension": {"new_due_at": "", "reason": "", "days": 0, "old_due_at": "", "earlier": False,
                      "tier": ""},
        "letter": {"date": "", "place": "", "to_name": "", "to_address": ""},
        "reminder": {"percent": 0, "due_at": "", "urgent": False},
        "final": {
            "sections": dict.fromkeys(
                ("summary", "explanation", "steps", "corrective_measures", "solution"), ""
            ),
            "outcome": "",
            "reexamination": False,
            "include_mediation": False,
        },
        "rejection": {"command": "", "reasons": []},
        "commands": [],
        "agent": {"name": "", "email": ""},
        "assignee": {"name": "", "email": ""},
        "assigned_by": "",
        "closure": {"reason": ""},
        "merge": {"other_ref": ""},
        "related": {"ref": "", "why": ""},
        "notes": [],
        "attachments": [],
        "security": {"what": "forgery", "sender": "", "reason": "", "kind": "", "count": 0, "since": "",
                     "digest": []},
        "delivery": {"to": "", "kind": "", "error": "", "permanent": False},
        "ack": {"why": "", "detail": ""},
        "held_final": {"at": ""},
        "scheduled_final": {"at": "", "held": False},
    }


# ---------------------------------------------------------------------------
# Renderer


class Renderer:
    """Renders ``<kind>.txt`` + ``<kind>.html`` for a brand and a language."""

    def __init__(self, templates_dir: Path, default_language: str = "fr",
                 zones: Mapping[str, str] | None = None) -> None:
        """`zones`: each brand's time zone (its ``timezone``): the ``datetime`` filter shows
        a time in it and names it; a brand without one gets times as given, unnamed."""
        self.root = Path(templates_dir).resolve()
        self.default_language = default_language
        self.zones = dict(zones or {})
        self._envs: dict[tuple[str, str], ImmutableSandboxedEnvironment] = {}

    # -- discovery ---------------------------------------------------------

    def languages(self, brand: str) -> list[str]:
        """Languages with templates for ``brand`` (its own directory or the shared one)."""
        found: set[str] = set()
        for base in (self.root / brand, self.root / DEFAULT_DIR):
            if _NAME_RE.match(brand) and base.is_dir():
                found.update(
                    p.name for p in base.iterdir() if p.is_dir() and _LANG_RE.match(p.name)
                )
        return sorted(found)

    def resolve_language(self, brand: str, language: str) -> str:
        """The requested language when it has templates, else the default language."""
        return language if language in self.languages(brand) else self.default_language

    def _search_path(self, brand: str, language: str) -> list[str]:
        dirs = [self.root / brand / language, self.root / DEFAULT_DIR / language]
        if language != self.default_language:
            dirs += [
                self.root / brand / self.default_language,
                self.root / DEFAULT_DIR / self.default_language,
            ]
        return [str(d) for d in dirs]

    def _env(self, brand: str, language: str) -> ImmutableSandboxedEnvironment:
        key = (brand, language)
        if key not in self._envs:
            self._envs[key] = self._make_env(brand, language)
        return self._envs[key]

    def _make_env(self, brand: str, language: str) -> ImmutableSandboxedEnvironment:
        default_dirs = [str(self.root / DEFAULT_DIR / language)]
        if language != self.default_language:
            default_dirs.append(str(self.root / DEFAULT_DIR / self.default_language))
        loader = jinja2.ChoiceLoader([
            jinja2.PrefixLoader({DEFAULT_DIR: jinja2.FileSystemLoader(default_dirs)}),
            jinja2.FileSystemLoader(self._search_path(brand, language)),
        ])
        env = ImmutableSandboxedEnvironment(
            loader=loader,
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html", "htm"), default_for_string=False, default=False
            ),
            keep_trailing_newline=True,
            auto_reload=False,  # no stat() of every template file at each mail: a reload (SIGHUP) reads them again
            finalize=_finalize,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["date"] = partial(format_date, language=language)
        env.filters["datetime"] = partial(format_datetime, language=language, zone=self.zones.get(brand, ""))
        env.filters["missing_label"] = partial(missing_label, language=language)
        env.filters["money"] = partial(format_money, language=language)
        env.filters["filesize"] = partial(format_filesize, language=language)
        return env

    # -- rendering ---------------------------------------------------------

    def render(
        self, brand: str, language: str, kind: str, context: Mapping[str, Any]
    ) -> Rendered:
        if kind not in KINDS:
            raise ValueError(f"unknown template kind {kind!r}; expected one of {KINDS}")
        if not _NAME_RE.match(brand):
            raise ValueError(f"invalid brand key {brand!r}")
        lang = self.resolve_language(brand, language)
        env = self._env(brand, lang)
        ctx: dict[str, Any] = {**_empty_kind_context(), **context, "language": lang, "kind": kind}
        txt_name = f"{kind}.txt"
        raw = self._render_one(env, brand, lang, txt_name, ctx)
        subject, text = self._split_subject(env, brand, lang, txt_name, raw)
        html = _restore(
            self._render_one(env, brand, lang, f"{kind}.html", {**ctx, "subject": subject})
        )
        return Rendered(subject=subject, text=text, html=html)

    def _render_one(
        self,
        env: ImmutableSandboxedEnvironment,
        brand: str,
        lang: str,
        name: str,
        ctx: Mapping[str, Any],
    ) -> str:
        try:
            return env.get_template(name).render(ctx)
        except jinja2.TemplateNotFound as exc:
            where = self._where(exc) or self._candidates(brand, lang, name)
            raise TemplateError(f"{where}: template not found: {exc.name}") from exc
        except jinja2.TemplateSyntaxError as exc:
            where = self._display(exc.filename) if exc.filename else name
            raise TemplateError(f"{where}:{exc.lineno}: syntax error: {exc.message}") from exc
        except SecurityError as exc:
            where = self._where(exc) or self._top_file(env, name)
            raise TemplateSecurityError(f"{where}: sandbox security violation: {exc}") from exc
        except Exception as exc:  # UndefinedError, filter errors, TypeError ...
            where = self._where(exc) or self._top_file(env, name)
            raise TemplateError(f"{where}: {type(exc).__name__}: {exc}") from exc

    def _split_subject(
        self, env: ImmutableSandboxedEnvironment, brand: str, lang: str, name: str, raw: str
    ) -> tuple[str, str]:
        first, sep, rest = raw.partition("\n")  # the first line break written in the template
        first = first.replace(_DATA_LF, " ").replace(_DATA_CR, " ")
        if not first.startswith("Subject:"):
            problem = "the first line must be 'Subject: ...'"
        elif not sep or not rest.startswith("\n"):
            problem = "the 'Subject:' line must be followed by one blank line"
        elif not clean_header(first[len("Subject:"):]):
            problem = "the subject is empty"
        else:
            body = _restore(rest[1:])
            return clean_header(first[len("Subject:"):]), body if body.endswith("\n") else body + "\n"
        raise TemplateError(f"{self._top_file(env, name)}: {problem}")

    # -- error locations ---------------------------------------------------

    def _display(self, filename: str) -> str:
        path = Path(filename)
        try:
            return str(path.resolve().relative_to(self.root.parent))
        except ValueError:
            return str(path)

    def _where(self, exc: BaseException) -> str | None:
        """'templates/x/fr/kind.txt:12' from the innermost template frame of the traceback."""
        found: str | None = None
        tb = exc.__traceback__
        root = str(self.root)
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename.startswith(root) and filename.endswith((".txt", ".html", ".htm")):
                found = f"{self._display(filename)}:{tb.tb_lineno}"
            tb = tb.tb_next
        return found

    def _top_file(self, env: ImmutableSandboxedEnvironment, name: str) -> str:
        try:
            filename = env.get_template(name).filename
        except jinja2.TemplateError:
            filename = None
        return self._display(filename) if filename else name

    def _candidates(self, brand: str, lang: str, name: str) -> str:
        first, second = self._search_path(brand, lang)[:2]
        return f"{self._display(first)}/{name} (or {self._display(second)}/{name})"

    def compile_all(self, brands: Sequence[BrandConfig]) -> None:
        """Compile every kind of each brand and language now (and keep them: templates are
        not read again from disk). Raises TemplateError for one that does not compile."""
        for b in brands:
            brand = b.key
            for language in b.languages:
                lang = self.resolve_language(brand, language)
                env = self._env(brand, lang)
                for kind in KINDS:
                    for ext in ("txt", "html"):
                        try:
                            env.get_template(f"{kind}.{ext}")
                        except jinja2.TemplateError as exc:
                            raise TemplateError(f"{kind}.{ext} of {brand}/{lang}: {exc}") from exc

    # -- saved replies -----------------------------------------------------

    def replies(self, brand: str, language: str) -> list[str]:
        """Names of the saved replies of ``brand`` in ``language``: the files
        ``templates/<brand>/<language>/replies/NAME.txt`` and the shared
        ``templates/_default/<language>/replies/NAME.txt``."""
        if not _NAME_RE.match(brand) or not _LANG_RE.match(language):
            return []
        names: set[str] = set()
        for base in (self.root / brand / language / "replies", self.root / DEFAULT_DIR / language / "replies"):
            if base.is_dir():
                names.update(p.stem for p in base.glob("*.txt") if _REPLY_RE.match(p.stem))
        return sorted(names)

    def render_reply(self, brand: str, language: str, name: str, context: Mapping[str, Any]) -> str:
        """The text of a saved reply for one case, rendered in the same sandbox as the mails
        (the case's data are data, never template source). TemplateError if unknown or broken."""
        lang = self.resolve_language(brand, language)
        if name not in self.replies(brand, lang):
            raise TemplateError(f"no saved reply {name!r} for {brand}/{lang}")
        env = self._env(brand, lang)
        ctx: dict[str, Any] = {**_empty_kind_context(), **context, "language": lang, "kind": "reply"}
        return _restore(self._render_one(env, brand, lang, f"replies/{name}.txt", ctx)).strip() + "\n"

    # -- check-config ------------------------------------------------------

    def check(self, brands: Sequence[BrandConfig]) -> list[str]:
        """Render every kind x language of each brand against sample contexts made of the
        brand's config (:func:`sample_context`), and every saved reply; errors, or []."""
        errors: list[str] = []
        for b in brands:
            brand = b.key
            available = self.languages(brand)
            for language in b.languages:
                if language not in available:
                    errors.append(
                        f"{self._display(str(self.root / brand / language))}: no templates for "
                        f"language {language!r} of brand {brand!r} "
                        f"(neither {brand}/{language} nor {DEFAULT_DIR}/{language} exists)"
                    )
                    continue
                contexts = _check_variants(b, language)
                for kind in KINDS:
                    errors += self._check_language_of_files(brand, language, kind)
                    errors += self._first_error(partial(self.render, brand, language, kind), contexts)
                for name in self.replies(brand, language):
                    errors += self._first_error(partial(self.render_reply, brand, language, name), contexts)
        return list(dict.fromkeys(errors))

    @staticmethod
    def _first_error(render: Callable[[dict[str, Any]], object], contexts: list[dict[str, Any]]) -> list[str]:
        """The first error of rendering one template with each check context, or []."""
        for ctx in contexts:
            try:
                render(ctx)  # (the immutable sandbox cannot change it)
            except TemplateError as exc:
                return [str(exc)]
        return []

    def _check_language_of_files(self, brand: str, language: str, kind: str) -> list[str]:
        errors = []
        for ext in ("txt", "html"):
            own = [self.root / brand / language, self.root / DEFAULT_DIR / language]
            if not any((d / f"{kind}.{ext}").is_file() for d in own):
                errors.append(
                    f"{self._display(str(own[0]))}/{kind}.{ext}: missing (nor in "
                    f"{self._display(str(own[1]))}); mail would be sent in "
                    f"{self.default_language!r} instead of {language!r}"
                )
        return errors if language != self.default_language else []


def _check_variants(brand: BrandConfig, language: str) -> list[dict[str, Any]]:
    """The sample context plus variants that exercise the conditional branches."""
    base = sample_context(brand, language)
    urgent = sample_context(brand, language)
    longest = max(brand.sla.tiers, key=brand.sla.tiers.__getitem__, default="")
    urgent["case"].update(urgent=True, priority="urgent", missing=[], tier=longest,
                          tier_days=brand.sla.tiers.get(longest, 0))
    urgent["final"].update(
        outcome="rejected", reexamination=True, include_mediation=False,
        sections=dict.fromkeys(base["final"]["sections"], ""),
    )
    urgent["brand"]["postal_address"] = ""
    urgent["brand"]["mediator"].update(postal_address="", email="")
    urgent["extension"].update(earlier=True, reason="", tier="simple")
    urgent["reminder"]["urgent"] = True
    urgent["digest"].update(supervisor=True, problem="KP-2026-999999")
    urgent["case"].update(overdue=True, ack_late=True)
    urgent["letter"] = {"date": "2026-12-02", "place": "Marigot", "to_name": "Camille Martin",
                        "to_address": "3 rue de la Poste, 97150 Marigot"}
    sparse = {**sample_context(brand, language), **_empty_kind_context()}
    sparse["case"].update(customer_name="", subject="", extracted={
        "amounts": [], "fact_dates": [], "references": [], "operation_types": [],
        "phone": "", "customer_number": "",
    })
    return [base, urgent, sparse]


# ---------------------------------------------------------------------------
# The app's renderer


def renderer(app: App) -> Renderer:
    """The renderer of `app`'s templates: made on first use, or the compiled one the daemon
    put at start or at a reload (mailbot.ops.daemon)."""
    found = app.derived.get(Renderer)
    if not isinstance(found, Renderer):
        found = app.derived[Renderer] = Renderer(app.config.resolve_path(app.config.templates_dir),
                                                 zones=app.config.zones())
    return found


def compiled(config: Config) -> Renderer:
    """A renderer of `config`'s templates with every one of them compiled now: a file edited
    later is not read until the next reload. Raises TemplateError."""
    made = Renderer(config.resolve_path(config.templates_dir), zones=config.zones())
    made.compile_all(config.brands)
    return made
