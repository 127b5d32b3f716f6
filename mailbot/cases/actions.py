"""What agents do to a case — the same functions behind agent mail commands and
`mailbot cases reply|assign|extend|close`.

Each action checks everything first and raises `Rejected(reasons)` before
changing anything, so a malformed or unauthorised command changes nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from mailbot import caselocks
from mailbot.app import App
from mailbot.cases import attachments, rounds, scheduled, sla
from mailbot.cases.messages import Say, localized, say
from mailbot.cases.records import add_message, log_event, set_status
from mailbot.cases.responses import send_case_mail
from mailbot.cases.staff_mail import send_staff_mail
from mailbot.config import AgentConfig
from mailbot.mail.masking import stored_body
from mailbot.mail.quotes import own_closing, own_greeting
from mailbot.models import Attachment, Case, Message, track
from mailbot.outgoing import letters, templating
from mailbot.outgoing.audiences import customer_view
from mailbot.outgoing.case_context import context
from mailbot.outgoing.command_help import heading
from mailbot.outgoing.templating import TemplateError

SECTION_HEADINGS: dict[str, tuple[str, ...]] = {
    "summary": ("resume", "resume de la reclamation", "resume de votre reclamation", "summary",
                "summary of the complaint", "objet de la reclamation"),
    "explanation": ("explication", "explication du probleme", "explanation", "explanation of the problem",
                    "analyse", "analysis"),
    "steps": ("etapes", "etapes suivies", "mesures prises", "demarches", "steps", "steps taken"),
    "corrective_measures": ("mesures correctives", "actions correctives", "corrective measures",
                            "corrective actions"),
    "solution": ("solution", "solution apportee", "decision", "resolution"),
}
OUTCOME_HEADINGS = ("issue", "outcome", "resultat")
OUTCOMES = {"accepte": "accepted", "accepted": "accepted", "favorable": "accepted",
            "partiel": "partially_accepted", "partielle": "partially_accepted",
            "partiellement accepte": "partially_accepted", "partially accepted": "partially_accepted",
            "partial": "partially_accepted", "rejete": "rejected", "refuse": "rejected",
            "rejected": "rejected", "defavorable": "rejected"}
TIER_REASONS = ("complex", "exceptional")  # tiers whose notice has a reason of its own (_extension_reason)
TIERS_ALIASES = {"simple": "simple", "complex": "complex", "complexe": "complex",
                 "exceptional": "exceptional", "exceptionnel": "exceptional", "standard": "standard"}


class Rejected(Exception):
    """A command refused before it changed anything. `reasons`: in English (the command line,
    logs, the console); `localized(language)`: for a rejection mail in its reader's language."""

    def __init__(self, command: str, reasons: Sequence[str | Say]) -> None:
        self.command = command
        self.said = list(reasons)
        self.reasons = [str(r) for r in reasons]
        super().__init__(f"{command}: " + "; ".join(self.reasons))

    def localized(self, language: str) -> list[str]:
        return localized(self.said, language)


@dataclass(frozen=True)
class FinalResponse:
    sections: dict[str, str]
    outcome: str


def _fold(s: str) -> str:
    s = unicodedata.normalize("NFKD", s.lower())
    return "".join(ch for ch in s if not unicodedata.combining(ch)).strip(" :*#-_\t")


def _heading(line: str) -> tuple[str, str] | None:
    """'Solution : texte' → ('solution', 'texte'); a heading must end with ':' or stand alone."""
    head, colon, rest = line.partition(":")
    if not colon and len(line) > 40:
        return None
    key = _fold(head if colon else line)
    for name, aliases in SECTION_HEADINGS.items():
        if key in aliases:
            return name, rest.strip()
    if key in OUTCOME_HEADINGS:
        return "outcome", rest.strip()
    return None


def parse_final(text: str) -> FinalResponse:
    """Split an agent's final response into its sections by simple headings."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        found = _heading(line.strip()) if line.strip() else None
        if found:
            current = found[0]
            sections.setdefault(current, [])
            if found[1]:
                sections[current].append(found[1])
        elif current:
            sections[current].append(line)
    joined = {k: "\n".join(v).strip() for k, v in sections.items()}
    outcome_text = _fold(joined.pop("outcome", "accepted").split("\n")[0])
    outcome = OUTCOMES.get(outcome_text, "accepted")
    return FinalResponse({k: v for k, v in joined.items() if v}, outcome)


def _require_open(case: Case, command: str) -> None:
    if case.status == "closed":
        raise Rejected(command, [say("closed", ref=case.ref)])


def note(session: Session, app: App, case: Case, actor: str, text: str) -> None:
    """An internal note: recorded, never sent to the customer."""
    text = stored_body(text)
    add_message(session, case, direction="int", kind="note", message_id=None, subject="note",
                from_addr=actor, body_text=text, created_at=app.now())
    log_event(session, case, "note", actor=actor, at=app.now())


def reply(session: Session, app: App, case: Case, actor: str, text: str, *, about: Message | None,
          ask: bool = False, files: Sequence[Attachment] = ()) -> None:
    """Relay the agent's text (and files) to the customer in the customer's thread."""
    caselocks.lock(session, case)
    text = stored_body(text)
    command = "#ask" if ask else "reply"
    _require_open(case, command)
    if not text.strip():
        raise Rejected(command, [say("no_text")])
    kind = "request_info" if ask else "agent_reply"
    send_case_mail(session, app, case, kind, to_addr=case.customer_email, to_name=case.customer_name,
                   about=about, automatic=False,
                   ctx_extra={"message": {"text": text, "own_greeting": own_greeting(text),
                                          "own_closing": own_closing(text)}, **_files(command, files)})
    log_event(session, case, "agent_reply", actor=actor, at=app.now(), ask=ask)
    set_status(session, case, "waiting_customer" if ask else "in_progress", actor=actor, at=app.now())


def _files(command: str, files: Sequence[Attachment]) -> dict[str, list[int]]:
    """The context entry that makes the dispatcher attach the agent's files; Rejected if one
    of them is over the limits (the customer gets nothing rather than a part)."""
    problems = attachments.refused(files)
    if problems:
        raise Rejected(command, [say("file_refused", problem=p) for p in problems])
    return {"attachments": [a.id for a in files if a.id is not None]} if files else {}


def final(session: Session, app: App, case: Case, actor: str, text: str, *, about: Message | None,
          at: datetime | None = None, files: Sequence[Attachment] = ()) -> FinalResponse:
    """The final response: every section the brand's procedure promises, plus recourse. One
    per round. `at`: scheduled for then (mailbot.cases.scheduled: in the future, by the
    round's promised date and legal cap; the case is answered when it goes out)."""
    caselocks.lock(session, case)
    text = stored_body(text)
    _require_open(case, "#final")
    brand = app.config.brand(case.brand)
    now = app.now()
    rnd = rounds.current(session, case)
    if at is not None and (problems := scheduled.problems(brand, app.calendar(brand), rnd, at, now)):
        raise Rejected("#final", problems)
    parsed = parse_final(text)
    missing = [s for s in brand.final_sections if s not in parsed.sections]
    if missing:
        raise Rejected("#final", [say("missing_section", heading=heading(m, case.language)) for m in missing])
    with_files = _files("#final", files)
    if rounds.final_given(rnd) and scheduled.withdraw(session, case, now, status="replaced", actor=actor,
                                                      reason="replaced by a new final response") is None:
        raise Rejected("#final", [say("final_again")])
    reexam = case.status == "reexamination"
    # Every final response names the mediator, whatever its outcome (ACPR 2022-R-01 asks it
    # of a refusal or a partial answer; the seeds promise it after any unsatisfying one).
    include_mediation = brand.mediator is not None
    queued = send_case_mail(
        session, app, case, "final_response", to_addr=case.customer_email, to_name=case.customer_name,
        about=about, automatic=False, not_before=at,
        ctx_extra={"final": {"sections": {**dict.fromkeys(SECTION_HEADINGS, ""), **parsed.sections},
                             "outcome": parsed.outcome, "reexamination": reexam,
                             "include_mediation": include_mediation},
                   "message": {"text": text}, **with_files})
    if letters.by_post(case):  # answered when the letter is posted (mailbot.cases.postal)
        case.outcome = parsed.outcome
        log_event(session, case, "final_response_letter", actor=actor, at=now,
                  reason="the case is answered when the letter is recorded as posted")
    elif at is not None:  # answered when it goes out (mailbot.cases.scheduled.sent)
        log_event(session, case, scheduled.SCHEDULED, actor=actor, at=now, message_id=queued,
                  scheduled=at.isoformat())
        if case.status in ("new", "acknowledged"):  # taken in hand: no "nobody took it" alert
            set_status(session, case, "in_progress", actor=actor, at=now, reason="final response scheduled")
    else:
        case.outcome = parsed.outcome
        case.answered_at = now
        set_status(session, case, "answered", actor=actor, at=now, reason="final response")
    rounds.answer_queued(session, case, outcome=parsed.outcome, mediation=include_mediation)
    log_event(session, case, "final_response", actor=actor, at=now, outcome=parsed.outcome,
              mediation=include_mediation, scheduled=at.isoformat() if at else None)
    sla.reschedule(session, case, brand)
    return parsed


def extend(session: Session, app: App, case: Case, actor: str, days: int, reason: str) -> None:
    """Extend the deadline by N business days and tell the customer why; refused past the
    legal caps (mailbot.cases.rounds)."""
    caselocks.lock(session, case)
    reason = stored_body(reason)
    _require_open(case, "#extend")
    if days <= 0 or days > 60:
        raise Rejected("#extend", [say("extend_days", days=days)])
    if not reason.strip():
        raise Rejected("#extend", [say("extend_reason")])
    cal = app.calendar(case.brand)
    assert case.due_at is not None
    _move_promised_date(session, app, case, actor, "#extend", cal.add_business_days(case.due_at, days), reason)
    if case.round_number == 1:
        case.extended_days += days


def set_tier(session: Session, app: App, case: Case, actor: str, tier: str, reason: str = "") -> None:
    """Change the case's tier, and with it the date promised for the first answer: the
    customer is told the new date and why (the tier's own reason unless one is given;
    `sla.reasons_required`: one must be given). Refused past the legal caps."""
    caselocks.lock(session, case)
    _require_open(case, "#tier")
    reason = stored_body(reason)
    brand = app.config.brand(case.brand)
    tier = TIERS_ALIASES.get(tier.lower(), tier.lower())
    if tier not in brand.sla.tiers:
        raise Rejected("#tier", [say("unknown_tier", tier=tier, brand=brand.name, known=", ".join(brand.sla.tiers))])
    if rounds.final_given(rounds.current(session, case)):
        raise Rejected("#tier", [say("frozen")])
    if case.round_number > 1:
        raise Rejected("#tier", ["the tier sets the first answer's date; a re-examination has its own "
                                 "deadline (use #extend N reason)"])
    new_due = sla.resolution_due(brand, app.calendar(brand), case.received_at, tier, case.extended_days)
    if brand.sla.reasons_required and new_due != case.due_at and not reason.strip():
        raise Rejected("#tier", [f"a reason is required ({brand.name} tells the customer why the date "
                                 "moves): #tier TIER reason"])
    old = case.tier
    if new_due != case.due_at:
        _move_promised_date(session, app, case, actor, "#tier", new_due, reason, tier=tier)
    case.tier = tier
    track(session, case)
    log_event(session, case, "tier", actor=actor, at=app.now(), old=old, new=tier, due_at=case.due_at.isoformat()
              if case.due_at else None)


def _move_promised_date(session: Session, app: App, case: Case, actor: str, command: str, new_due: datetime,
                        reason: str, tier: str = "") -> None:
    """Move the current round's promised date, within the legal caps, and send the customer
    the notice: the new date and the reason. Checks everything before changing anything."""
    brand = app.config.brand(case.brand)
    cal = app.calendar(brand)
    rnd = rounds.current(session, case)
    if rounds.final_given(rnd):
        raise Rejected(command, [say("frozen")])
    # the notice of a move to a tier of TIER_REASONS gives that tier's reason when no other is given
    told_why = reason.strip() or ("tier" if tier in TIER_REASONS else "")
    problems = rounds.cap_problems(brand, cal, rnd.received_at, new_due, told_why)
    if problems:
        raise Rejected(command, problems)
    old = case.due_at
    assert old is not None
    late = rounds.move_due(session, case, new_due, app.now())
    log_event(session, case, "deadline", actor=actor, at=app.now(), old=old.isoformat(), new=new_due.isoformat(),
              reason=reason, days=cal.business_days_between(old, new_due), late=late, command=command)
    send_case_mail(session, app, case, "extension", to_addr=case.customer_email, to_name=case.customer_name,
                   automatic=False, ctx_extra={"extension": {
                       "new_due_at": cal.local(new_due).isoformat(), "old_due_at": cal.local(old).isoformat(),
                       "reason": reason.strip(), "days": abs(cal.business_days_between(old, new_due)),
                       "earlier": new_due < old, "tier": tier}})
    sla.reschedule(session, case, brand)


def set_category(session: Session, app: App, case: Case, actor: str, category: str) -> None:
    caselocks.lock(session, case)
    _require_open(case, "#category")
    brand = app.config.brand(case.brand)
    keys = [c.key for c in brand.categories]
    if category not in keys:
        raise Rejected("#category", [say("unknown_category", category=category, known=", ".join(keys))])
    log_event(session, case, "category", actor=actor, at=app.now(), old=case.category, new=category)
    case.category = category
    session.add(case)


def set_priority(session: Session, app: App, case: Case, actor: str, priority: str) -> None:
    caselocks.lock(session, case)
    _require_open(case, "#priority")
    if priority not in ("urgent", "normal"):
        raise Rejected("#priority", [say("priority", priority=priority)])
    log_event(session, case, "priority", actor=actor, at=app.now(), old=case.priority, new=priority)
    case.priority = priority
    session.add(case)
    sla.reschedule(session, case, app.config.brand(case.brand))  # urgent: per-case reminders and alerts


def assign(session: Session, app: App, case: Case, actor: str, agent_email: str) -> AgentConfig:
    caselocks.lock(session, case)
    _require_open(case, "#assign")
    agent = app.config.agent(agent_email)
    if agent is None:
        raise Rejected("#assign", [say("not_an_agent", address=agent_email)])
    if case.brand not in agent.brands:
        raise Rejected("#assign", [say("not_of_brand", address=agent_email, brand=case.brand)])
    log_event(session, case, "assigned", actor=actor, at=app.now(), old=case.assignee, new=agent.email)
    case.assignee = agent.email
    session.add(case)
    if agent.email != actor.lower():
        # The new assignee hears of a final response already scheduled (or held): not to answer twice.
        final = scheduled.states(session, [case.id]).get(case.id) if case.id is not None else None
        send_staff_mail(session, app, case, "assignment", agent.email, about=last_customer_message(session, case),
                        ctx_extra={"assigned_by": actor,
                                   "scheduled_final": scheduled.context(final, app.calendar(case.brand))})
    return agent


def last_customer_message(session: Session, case: Case) -> Message | None:
    """The case's latest message from the customer (what a reply answers)."""
    return session.exec(select(Message).where(Message.case_id == case.id, Message.direction == "in",
                                              Message.kind == "customer").order_by(col(Message.id).desc())).first()


def close(session: Session, app: App, case: Case, actor: str, reason: str = "") -> bool:
    """Close the case. After the final response any agent may, and the customer hears
    nothing more. Before it, closing needs a reason and a supervisor (or the brand's
    `close_without_final = "agents"`), and the customer is told, with the reason.
    Returns whether the customer was told."""
    caselocks.lock(session, case)
    reason = stored_body(reason)
    _require_open(case, "#close")
    brand = app.config.brand(case.brand)
    answered = case.answered_at is not None and case.status == "answered"
    if not answered:
        if not reason.strip():
            raise Rejected("#close", [say("close_reason")])
        if brand.close_without_final == "supervisor" and not _supervises(app, actor):
            raise Rejected("#close", [say("close_supervisor", ref=case.ref)])
    now = app.now()
    case.closed_at = now
    set_status(session, case, "closed", actor=actor, at=now,
               reason=reason.strip() or ("closed after the final response" if answered else "closed by agent"))
    if not answered and case.customer_email:
        send_case_mail(session, app, case, "closure_notice", to_addr=case.customer_email, to_name=case.customer_name,
                       about=last_customer_message(session, case), automatic=False,
                       ctx_extra={"closure": {"reason": reason.strip()}})
    elif not answered:
        log_event(session, case, "closure_by_post_required", at=now, reason="no email address: tell the customer by post")
    sla.reschedule(session, case, brand)
    return not answered and bool(case.customer_email)


CLI_ACTOR = "cli"  # `mailbot cases …` without --as: the operator at the shell, who holds the database


def _supervises(app: App, actor: str) -> bool:
    agent = app.config.agent(actor)
    return actor == CLI_ACTOR or (agent is not None and agent.supervises)


def reopen(session: Session, app: App, case: Case, actor: str, reason: str = "") -> None:
    """Work on a closed (or answered) case again: back in progress, its clock running."""
    caselocks.lock(session, case)
    if case.outcome == "merged":  # its thread and deadline live on in the case it was merged into
        into = session.get(Case, case.linked_case_id) if case.linked_case_id else None
        raise Rejected("#reopen", [say("merged_not_reopenable", ref=case.ref, into=into.ref if into else "?")])
    if case.status not in ("closed", "answered"):
        raise Rejected("#reopen", [say("not_reopenable", ref=case.ref, status=case.status)])
    case.closed_at = None
    set_status(session, case, "in_progress", actor=actor, at=app.now(), reason=reason.strip() or "reopened")
    sla.reschedule(session, case, app.config.brand(case.brand))


_EXTEND = re.compile(r"^#extend\s+(\d{1,3})\s+(.+)$", re.IGNORECASE)
_FINAL_AT = re.compile(r"^#final(?:\s+at\s+(\S+))?$", re.IGNORECASE)


def saved_reply(app: App, case: Case, about: Message | None, name: str) -> str:
    """The text of the brand's saved reply `name` for this case, in the case's language
    (templates/<brand>/<language>/replies/NAME.txt, rendered in the mail templates' sandbox,
    with what the customer wrote masked as in any mail to them)."""
    name = name.strip().lower()
    renderer = templating.renderer(app)
    known = renderer.replies(case.brand, renderer.resolve_language(case.brand, case.language))
    if name not in known:
        raise Rejected("#reply", [say("no_reply", name=name, known=", ".join(known) or "-")])
    ctx = customer_view(context(app, case, about), customer_text=True)
    try:
        return renderer.render_reply(case.brand, case.language, name, ctx)
    except TemplateError as exc:
        raise Rejected("#reply", [say("reply_error", name=name, error=str(exc))]) from exc
