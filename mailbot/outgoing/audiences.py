"""Who each kind of mail is for: the customer, or the brand's staff, and what each may read.

Staff mail (notifications, reminders, escalations, alerts, rejections, digests)
always carries a staff token bound to its case and its recipient as Reply-To,
never the customer's reply address; it goes only to configured agents of the
case's brand, checked when it is queued and again when it is sent
(`RecipientNotStaff`).

Staff of the brand read what the customer wrote (IBANs whole: they investigate with
them); everything else reads it through `customer_view` (IBANs masked). Card numbers
are masked before anything is stored (mailbot.mail.masking).
"""

from __future__ import annotations

from typing import Any

from mailbot.config import Config
from mailbot.mail.masking import for_customer
from mailbot.mail.reflection import echo_safe, greeting_name, without_staff
from mailbot.outgoing.templating import Rendered

STAFF_KINDS = frozenset({
    "agent_notification", "reminder", "escalation", "urgent_alert", "command_rejection",
    "security_alert", "staff_held", "assignment", "digest", "delivery_failure", "automatic_complaint",
})


def is_staff_kind(kind: str) -> bool:
    return kind in STAFF_KINDS


class RecipientNotStaff(Exception):
    """A staff mail whose recipient is no longer an agent of the case's brand (removed
    from `[[agents]]` or moved to another brand since it was queued): it is withheld,
    and goes to whoever stands in (mailbot.cases.staff_mail.redirect_withheld)."""


def customer_view(ctx: dict[str, Any], *, customer_text: bool) -> dict[str, Any]:
    """A template context for mail that leaves the brand's staff: IBANs masked in what
    the customer wrote (subject, name, the message quoted when `customer_text`; an
    agent's own text is theirs to write). Whoever wrote may have forged the From of
    the recipient: names only when they look like names, subjects without links or
    phone numbers (mailbot.mail.reflection)."""
    case = {**ctx["case"], "subject": subject_for_customer(ctx["case"]["subject"]),
            "customer_name": name_for_customer(ctx["case"]["customer_name"])}
    message = {**ctx["message"], "subject": subject_for_customer(ctx["message"]["subject"]),
               "from_name": name_for_customer(ctx["message"]["from_name"])}
    if customer_text:
        message["text"] = for_customer(message["text"])
    return {**ctx, "case": case, "message": message}


def subject_for_customer(subject: str | None) -> str:
    """A subject the customer wrote, as mail to them may echo it."""
    return echo_safe(for_customer(subject or ""))


def name_for_customer(name: str | None) -> str:
    """A name as mail to the customer may use it ("" when it reads as no name)."""
    return greeting_name(for_customer(name or ""))


def staff_addresses(config: Config) -> frozenset[str]:
    """Every address of the staff, all brands: agents, external staff, supervisors, on-call."""
    out = {a.email.lower() for a in config.agents}
    for brand in config.brands:
        out.update(a.lower() for a in (*brand.external_staff, *brand.team, brand.supervisor, brand.oncall) if a)
    return frozenset(out)


def rendered_for_customer(config: Config, rendered: Rendered) -> Rendered:
    """A mail (or letter) to a customer as it goes: no agent token, no staff address, whatever
    the agent's text quoted (mailbot.mail.reflection.without_staff)."""
    staff = staff_addresses(config)
    return Rendered(without_staff(rendered.subject, staff), without_staff(rendered.text, staff),
                    without_staff(rendered.html, staff))
