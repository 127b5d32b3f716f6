"""Who each kind of mail is for: the customer, or the brand's staff.

Staff mail (notifications, reminders, escalations, alerts, rejections, digests)
always carries a staff token bound to its case and its recipient as Reply-To,
never the customer's reply address; it goes only to configured agents of the
case's brand, checked when it is queued and again when it is sent
(`RecipientNotStaff`).
"""

from __future__ import annotations

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
