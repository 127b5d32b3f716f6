"""The daily digest: one mail a business day to each agent and supervisor of a brand.

From `[brands.digest] at` (local time) on each business day of the brand, the periodic
job (mailbot.ops.jobs, as often as the SLA sweep) queues each of the brand's staff
their digest, through the outbox like every other mail. Five sections, a case in the
first that fits: overdue, due today, waiting on the customer, assigned to me (the
rest of the open cases assigned to them), unassigned (the rest of the brand's open
cases nobody has taken). An agent's first three sections are about their own cases
and the brand's unassigned ones (`cases list --mine`); a supervisor's overdue and
due-today sections cover the whole brand.

Each line carries its own staff token (the case's, for this recipient): writing to it
acts on that case as a reply to its notification does. The digest's own Reply-To is
a token of no case (case 0): a reply to it acts on the cases whose reference starts a
line (mailbot.cases.agent_mail.handle_digest_reply).

Once a day per person and brand, however many instances tick: the digest's
Message-ID is derived from (brand, person, day) and the outbox's Message-ID is
unique, so a second insert fails and is dropped. A digest is sent even when it lists
nothing: a quiet day then reads differently from a mailer that stopped. Its sent
bytes are erased after 30 days (mailbot.cases.lifecycle.purge_retention). A line whose case
has a final response scheduled says when it goes (or that it was held and waits for the
agent: mailbot.cases.scheduled.states).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from mailbot import db
from mailbot.app import App
from mailbot.cases import scheduled
from mailbot.cases.queue import MAX_PER_PAGE, UNASSIGNED, QueueFilter, QueueRow, list_cases
from mailbot.cases.staff_mail import staff_language, staff_token
from mailbot.config import AgentConfig, BrandConfig
from mailbot.models import Outbox
from mailbot.outgoing import outbox, templating
from mailbot.outgoing.case_context import reply_address
from mailbot.outgoing.compose import Outgoing, build, new_message_id
from mailbot.outgoing.templating import brand_context

SECTIONS = ("overdue", "due_today", "waiting", "assigned", "unassigned")


@dataclass(frozen=True)
class Section:
    key: str  # one of SECTIONS
    rows: list[QueueRow]
    more: int  # cases of the section not listed (past `max_lines`)
    command: str  # the `mailbot cases list` that lists them all


def due_day(app: App, brand: BrandConfig, now: datetime) -> date | None:
    """The brand's local day whose digest is due now: a business day, from `digest.at` on."""
    cal = app.calendar(brand)
    local = cal.local(now)
    if not brand.digest.enabled or not cal.is_business_day(local.date()) or local.time() < brand.digest.time:
        return None
    return local.date()


def sections(session: Session, app: App, brand: BrandConfig, person: AgentConfig) -> list[Section]:
    """What the person's digest lists, each case once (in the first section that fits)."""
    me = person.email
    scope = QueueFilter(brand=brand.key) if person.supervises else QueueFilter(brand=brand.key, mine=me)
    mine = f"--brand {brand.key}" + ("" if person.supervises else f" --mine {me}")
    wanted = {
        "overdue": (replace(scope, overdue=True), f"{mine} --overdue"),
        "due_today": (replace(scope, due_today=True), f"{mine} --due-today"),
        "waiting": (QueueFilter(brand=brand.key, mine=me, status="waiting_customer"),
                    f"--brand {brand.key} --mine {me} --status waiting_customer"),
        "assigned": (QueueFilter(brand=brand.key, assignee=me), f"--brand {brand.key} --assignee {me}"),
        "unassigned": (QueueFilter(brand=brand.key, assignee=UNASSIGNED), f"--brand {brand.key} --assignee none"),
    }
    seen: set[int] = set()
    out = []
    for key in SECTIONS:
        f, args = wanted[key]
        page = list_cases(session, app, f, per_page=min(MAX_PER_PAGE, brand.digest.max_lines + len(seen)))
        rows = [r for r in page.rows if r.id not in seen][:brand.digest.max_lines]
        already = sum(1 for r in page.rows if r.id in seen)
        seen.update(r.id for r in rows)
        out.append(Section(key, rows, max(0, page.total - already - len(rows)), f"mailbot cases list {args}"))
    return out


def message_id(app: App, brand: BrandConfig, address: str, day: date) -> str:
    """The digest's Message-ID: the same for one person, brand and day (the once-a-day guard)."""
    key = f"digest|{brand.key}|{address.lower()}|{day.isoformat()}".encode()
    tag = hmac.new(app.config.security.resolved_secret().encode(), key, hashlib.sha256).hexdigest()[:24]
    return f"<digest.{day:%Y%m%d}.{tag}@{brand.addresses[0].rpartition('@')[2]}>"


def _line(app: App, brand: BrandConfig, row: QueueRow, address: str, now: datetime,
          final: scheduled.FinalState | None) -> dict[str, Any]:
    label = next((c.labels.get(brand.language, c.label) for c in brand.categories if c.key == row.category),
                 row.category or "")
    return {"ref": row.ref, "customer": row.customer_name or row.customer_email, "subject": row.subject,
            "category_label": label, "status": row.status, "urgent": row.priority == "urgent",
            "assignee": row.assignee or "", "due_at": row.due_local.isoformat() if row.due_local else "",
            "overdue_days": (row.overdue.days + (1 if row.overdue.seconds else 0)) if row.overdue else 0,
            "reply_address": reply_address(brand, staff_token(app, row.id, address)),
            "scheduled_final": scheduled.context(final, app.calendar(brand))}


def context(app: App, brand: BrandConfig, person: AgentConfig, day: date, found: list[Section],
            problem: str = "", finals: dict[int, scheduled.FinalState] | None = None) -> dict[str, Any]:
    """The template context of a digest (kind `digest`; see mailbot.outgoing.templating).
    `finals`: the listed cases' scheduled or held final responses (`scheduled.states`)."""
    now, finals = app.now(), finals or {}
    return {
        "brand": brand_context(brand),
        "agent": {"name": person.name, "email": person.email},
        "reply_address": reply_address(brand, staff_token(app, 0, person.email)),
        "digest": {"day": day.isoformat(), "zone": brand.timezone, "supervisor": person.supervises,
                   "problem": problem, "total": sum(len(s.rows) + s.more for s in found),
                   "counts": {s.key: len(s.rows) + s.more for s in found},
                   "sections": [{"key": s.key, "total": len(s.rows) + s.more, "more": s.more, "command": s.command,
                                 "lines": [_line(app, brand, r, person.email, now, finals.get(r.id))
                                           for r in s.rows]}
                                for s in found]},
    }


def queue_digest(session: Session, app: App, brand: BrandConfig, person: AgentConfig, day: date, *,
                 problem: str = "", daily: bool = True) -> str:
    """Render the person's digest now and queue it (its bytes: the dispatcher sends them as
    they are). `daily`: the day's digest, with its once-a-day Message-ID (IntegrityError
    when it is queued already); else a fresh one (the answer to an unusable reply)."""
    language = staff_language(app, person, brand.key)
    found = sections(session, app, brand, person)
    finals = scheduled.states(session, [r.id for s in found for r in s.rows])
    ctx = context(app, brand, person, day, found, problem, finals)
    rendered = templating.renderer(app).render(brand.key, language, "digest", ctx)
    mid = message_id(app, brand, person.email, day) if daily else new_message_id(brand.addresses[0])
    raw = build(Outgoing(from_addr=brand.addresses[0], from_name=brand.name, to_addr=person.email,
                         to_name=person.name, subject=rendered.subject, text=rendered.text, html=rendered.html,
                         message_id=mid, reply_to=ctx["reply_address"], auto_submitted=None), app.now())
    return outbox.queue(session, case=None, kind="digest", from_addr=brand.addresses[0], to_addr=person.email,
                        message_id=mid, now=app.now(), raw=raw, to_name=person.name,
                        reply_to=ctx["reply_address"], language=language, automatic=False)


def send_digests(app: App) -> int:
    """Queue every digest due now and not queued yet (by this instance or another); how many."""
    now, queued = app.now(), 0
    for brand in app.config.brands:
        day = due_day(app, brand, now)
        if day is None:
            continue
        for person in app.config.staff_of(brand.key):
            mid = message_id(app, brand, person.email, day)
            with db.session_scope(app.engine) as session:
                if session.exec(select(Outbox.id).where(Outbox.message_id == mid)).first() is not None:
                    continue
                try:
                    with session.begin_nested():
                        queue_digest(session, app, brand, person, day)
                except IntegrityError:
                    continue  # another instance queued it first
                queued += 1
    return queued
