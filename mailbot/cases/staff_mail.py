"""Mail to the brand's staff about a case, each with a staff token to reply to.

Every staff mail — notification, reminder, escalation, urgent alert, command
rejection, security alert, assignment, a held staff message — carries as
Reply-To a token bound to its case and to its recipient (mailbot.cases.tokens),
never the customer's reply address: replying to any of them reaches the agent
path, where commands run and text goes to the customer.

Recipients are chosen when the mail is queued, from the configuration as it is
now (`recipients`): the assignee if they are still an agent of the brand, else
the brand's team, else its supervisor. The dispatcher checks the recipient again
before sending (mailbot.outgoing.drafts); a mail withheld there is sent to whoever
stands in (`redirect_withheld`, called as the dispatcher records the outcome).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from sqlmodel import Session

from mailbot.app import App
from mailbot.cases.duplicates import Related
from mailbot.cases.records import log_event
from mailbot.cases.responses import Withheld, send_case_mail
from mailbot.cases.tokens import make_agent_token
from mailbot.config import AgentConfig
from mailbot.models import Case, Message, Outbox, StoredMessage
from mailbot.outgoing.case_context import reply_address

Role = Literal["assignee", "supervisor", "oncall"]


def staff_token(app: App, case_id: int, address: str) -> str:
    """A token for `address` to act on case `case_id` (0: no case, e.g. a digest)."""
    return make_agent_token(app.config.security.resolved_secret(), case_id, address,
                            app.now() + timedelta(days=app.config.security.agent_token_days))


def recipients(app: App, case: Case, role: Role) -> list[str]:
    """Who gets a staff mail of `role` about the case now: only current agents of its brand.
    The assignee, else the team, else the supervisor; the supervisor, else the team; the
    on-call address."""
    cfg = app.config
    brand = cfg.brand(case.brand)

    def current(*addresses: str | None) -> list[str]:
        return [a for a in addresses if a and cfg.receives_staff_mail(a, brand.key)]

    team, supervisor = current(*brand.team), current(brand.supervisor)
    if role == "oncall":
        return current(brand.oncall)
    if role == "supervisor":
        return supervisor or team
    return current(case.assignee) or team or supervisor


def send_staff_mail(session: Session, app: App, case: Case, kind: str, to_addr: str, *,
                    about: Message | StoredMessage | None = None, ctx_extra: dict[str, Any] | None = None,
                    role: Role | None = None) -> str | None:
    """Queue one staff mail with its own token; None (and an event) if `to_addr` may not get
    staff mail of the case's brand (`Config.receives_staff_mail`). Written for people to
    answer, it carries no `Auto-Submitted` and does not count against the per-case cap on
    automatic mail."""
    if not app.config.receives_staff_mail(to_addr, case.brand):
        log_event(session, case, "staff_mail_withheld", at=app.now(), kind=kind, to=to_addr,
                  reason=f"{to_addr} is not an agent of {case.brand}")
        return None
    brand = app.config.brand(case.brand)
    address = to_addr.lower()
    member = app.config.staff(address, case.brand)
    name = member.name if member else ""
    token = staff_token(app, case.id or 0, address)
    ctx = {"agent": {"name": name, "email": address}, **(ctx_extra or {})}
    if role is not None:
        ctx["staff_role"] = role
    return send_case_mail(session, app, case, kind, to_addr=address, to_name=name, about=about,
                          automatic=False, record=False, reply_to=reply_address(brand, token),
                          language=staff_language(app, member, case.brand), ctx_extra=ctx)


def staff_language(app: App, member: AgentConfig | None, brand: str) -> str:
    """The language of staff mail to this person: theirs if configured, else the brand's."""
    return (member.language if member else None) or app.config.brand(brand).language


def send_to_role(session: Session, app: App, case: Case, kind: str, role: Role, *,
                 about: Message | StoredMessage | None = None, ctx_extra: dict[str, Any] | None = None) -> list[str]:
    """`send_staff_mail` to each of `recipients(role)`; the addresses written to."""
    sent = []
    for address in recipients(app, case, role):
        if send_staff_mail(session, app, case, kind, address, about=about, ctx_extra=ctx_extra, role=role):
            sent.append(address)
    if not sent:
        log_event(session, case, "staff_mail_no_recipient", at=app.now(), kind=kind, role=role)
    return sent


def announce_new_case(session: Session, app: App, case: Case, msg: StoredMessage,
                      withheld: Withheld | None = None, related: Related | None = None) -> None:
    """A new case: the on-call address at once if it is urgent, and the assignee or team
    (told why the customer got no acknowledgement, when it was `withheld`, and which case
    it probably repeats, when `related`)."""
    extra = {"related": {"ref": related.case.ref, "why": related.why}} if related is not None else {}
    if case.priority == "urgent":
        send_to_role(session, app, case, "urgent_alert", "oncall", about=msg, ctx_extra=extra)
    notify_customer_message(session, app, case, msg, withheld, extra)


def notify_customer_message(session: Session, app: App, case: Case, msg: Message | StoredMessage,
                            withheld: Withheld | None = None, extra: dict[str, Any] | None = None) -> None:
    """Tell the assignee (or the brand's team) about a customer message, and why the customer
    got no acknowledgement when it was `withheld`."""
    extra = dict(extra or {})
    if withheld is not None:
        extra["ack"] = {"why": withheld.code, "detail": withheld.detail}
    send_to_role(session, app, case, "agent_notification", "assignee", about=msg, ctx_extra=extra or None)


def redirect_withheld(session: Session, app: App, case: Case, row_id: int) -> list[str]:
    """A staff mail the dispatcher withheld (its recipient left the brand since it was
    queued) goes to the case's staff as they are now; the row becomes `redirected`.
    Called by the dispatcher's record of the outcome (mailbot.cases.deliveries)."""
    row = session.get(Outbox, row_id)
    if row is None or row.status != "withheld":
        return []
    row.status = "redirected"
    session.add(row)
    role: Role = (row.context or {}).get("staff_role") or "assignee"
    about = session.get(Message, row.about_id) if row.about_id else None
    extra = {k: v for k, v in (row.context or {}).items() if k not in ("agent", "staff_role")}
    targets = [a for a in recipients(app, case, role) if a != row.to_addr]
    for address in targets:
        send_staff_mail(session, app, case, row.kind, address, about=about, ctx_extra=extra, role=role)
    log_event(session, case, "staff_mail_redirected", at=app.now(), kind=row.kind, outbox=row.id,
              was=row.to_addr, to=targets)
    return targets
