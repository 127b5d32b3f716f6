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

from mailbot.mail.masking import for_customer

STAFF_KINDS = frozenset({
    "agent_notification", "reminder", "escalation", "urgent_alert", "command_rejection",
    "security_alert", "staff_held", "assignment", "digest", "delivery_failure",
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
    agent's own text is theirs to write)."""
    case = {**ctx["case"], "subject": for_customer(ctx["case"]["subject"]),
            "customer_name": for_customer(ctx["case"]["customer_name"])}
    message = {**ctx["message"], "subject": for_customer(ctx["message"]["subject"]),
               "from_name": for_customer(ctx["message"]["from_name"])}
    if customer_text:
        message["text"] = for_customer(message["text"])
    return {**ctx, "case": case, "message": message}
