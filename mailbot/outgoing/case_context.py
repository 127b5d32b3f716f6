"""The template context of mail about a case (see mailbot.outgoing.templating for the keys):
the case, the message it is about, the addresses to reply to, in the brand's local time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mailbot.app import App
from mailbot.config import BrandConfig
from mailbot.models import Case, Message
from mailbot.outgoing.links import status_url
from mailbot.outgoing.templating import brand_context


def reply_address(brand: BrandConfig, token: str) -> str:
    local, _, domain = brand.addresses[0].partition("@")
    return f"{local}+{token}@{domain}"


def _iso_local(app: App, brand: BrandConfig, dt: datetime | None) -> str:
    return app.calendar(brand).local(dt).isoformat() if dt else ""


def asked_missing(brand: BrandConfig, case: Case) -> list[str]:
    """What the case lacks and its category asks for (a login problem is asked no amount)."""
    category = next((c for c in brand.categories if c.key == case.category), None)
    asked = category.ask if category is not None and category.ask is not None else None
    return [m for m in (case.extracted or {}).get("missing", []) if asked is None or m in asked]


def case_context(app: App, case: Case) -> dict[str, Any]:
    brand = app.config.brand(case.brand)
    label = next((c.labels.get(case.language, c.label) for c in brand.categories if c.key == case.category),
                 case.category or "")  # in the customer's language when the brand gives it
    ex = case.extracted or {}
    return {
        "ref": case.ref, "subject": case.subject, "status": case.status, "category": case.category or "",
        "category_label": label, "priority": case.priority, "urgent": case.priority == "urgent",
        "tier": case.tier, "tier_days": brand.sla.tiers.get(case.tier, 0),
        "received_at": app.calendar(brand).local(case.received_at).date().isoformat() if case.received_date_only
        else _iso_local(app, brand, case.received_at),  # a day alone reads as a day, not as "12:00"
        "ack_due_at": _iso_local(app, brand, case.ack_due_at),
        "due_at": _iso_local(app, brand, case.due_at),
        "customer_name": case.customer_name, "customer_email": case.customer_email,
        "language": case.language, "channel": case.channel, "missing": asked_missing(brand, case),
        "overdue": bool(case.due_at and app.now() > case.due_at),
        "ack_late": bool(case.ack_due_at and app.now() > case.ack_due_at),
        "extracted": {
            "amounts": list(ex.get("amounts", [])), "fact_dates": list(ex.get("fact_dates", [])),
            "references": list(ex.get("references", [])),
            "operation_types": list(ex.get("operation_types", [])),
            "phone": ex.get("phone") or "", "customer_number": ex.get("customer_number") or "",
        },
    }


def context(app: App, case: Case, about: Message | None = None, **extra: Any) -> dict[str, Any]:
    """The full template context (see mailbot.outgoing.templating for the keys)."""
    brand = app.config.brand(case.brand)
    ctx: dict[str, Any] = {
        "brand": brand_context(brand),
        "case": case_context(app, case),
        "message": {
            "subject": about.subject if about else case.subject,
            "text": about.body_text if about else "",
            "from_name": about.from_name if about else case.customer_name,
            "from_addr": about.from_addr if about else case.customer_email,
            "at": _iso_local(app, brand, about.created_at) if about else "",
            "quoted_lines": 0, "own_greeting": False, "own_closing": False,
            "routed_by": getattr(about, "route_signal", "") or "",  # what joined it to the case
        },
        "reply_address": reply_address(brand, case.reply_token),
        "status_url": status_url(app.config, case.ref, case.reply_token),
        "extension": {"new_due_at": "", "old_due_at": "", "reason": "", "days": 0, "earlier": False,
                      "tier": ""},
        "reminder": {"percent": 0, "due_at": "", "urgent": False},
        "final": {"sections": {k: "" for k in ("summary", "explanation", "steps", "corrective_measures",
                                                "solution")},
                  "outcome": "accepted", "reexamination": False, "include_mediation": True},
        "rejection": {"command": "", "reasons": []},
        "commands": [],  # staff mail: the brand's command help (mailbot.outgoing.command_help)
        "agent": {"name": "", "email": ""},
        "assignee": {"name": "", "email": ""},
        "assigned_by": "",
        "closure": {"reason": ""},
        "attachments": [],
        "merge": {"other_ref": ""},
        "notes": [],
        "related": {"ref": "", "why": ""},
        "security": {"what": "forgery", "sender": "", "reason": "", "kind": "", "count": 0, "since": "",
                     "digest": []},
        "delivery": {"to": "", "kind": "", "error": "", "permanent": False},
        "ack": {"why": "", "detail": ""},
        "held_final": {"at": ""},  # a scheduled final response a customer's mail held (mailbot.cases.scheduled)
        # reminders, escalations, assignment: the final response scheduled (or held) for the case
        # (mailbot.cases.scheduled)
        "scheduled_final": {"at": "", "held": False},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(ctx.get(key), dict):
            ctx[key] = {**ctx[key], **value}
        else:
            ctx[key] = value
    return ctx
