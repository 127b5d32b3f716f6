"""Mail from agents: a reply to a notification, sent to the signed agent token.

Who may act: the token must have been issued to the sender for that case
(HMAC), the sender must be a configured agent of the case's brand, and with
`require_authenticated_agents` the trusted MTA's Authentication-Results must
show DKIM or SPF pass for the sender's domain. Anything else is a forgery:
recorded as a security event, never relayed, and the supervisor is told.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlmodel import Session, select

from mailbot import caselocks
from mailbot.app import App
from mailbot.cases import actions, alerts, merging, reexamination
from mailbot.cases.attachments import of_message, store_attachments
from mailbot.cases.digest import queue_digest
from mailbot.cases.messages import say
from mailbot.cases.records import add_message, log_event
from mailbot.cases.staff_mail import send_staff_mail, staff_language
from mailbot.cases.tokens import TokenCheck, check_agent_token, issued_to, token_case_id
from mailbot.mail.authresults import from_unverified
from mailbot.mail.masking import stored_body
from mailbot.mail.parsing import ParsedMail
from mailbot.mail.quotes import split_commands, strip_reply
from mailbot.mail.routing import BrandRoute
from mailbot.models import Attachment, Case, InboundRow, Message


def authenticated(parsed: ParsedMail, sender: str, trusted_authserv_id: str | None) -> str | None:
    """None when the trusted MTA vouches for the sender's domain, else the reason why not
    (mailbot.mail.authresults: the topmost header of that authserv-id, exactly that domain)."""
    return from_unverified(parsed.message, sender, trusted_authserv_id)


def handle_agent_mail(session: Session, app: App, inbound: InboundRow, parsed: ParsedMail,
                      route: BrandRoute) -> Case | None:
    """Record and carry out an agent's reply; returns the case, or None for a forgery."""
    sender = parsed.from_addr
    check, issued = _check_token(app, route, sender)
    if check.case_id == DIGEST_CASE and app.config.staff(sender, route.brand.key) is not None:
        return handle_digest_reply(session, app, inbound, parsed, route, issued)
    case = session.get(Case, check.case_id) if check.ok else None
    problem = _authorisation_problem(app, parsed, sender, case, route, check.reason)
    if problem is not None:
        _forgery(session, app, inbound, parsed, route, case or _claimed_case(session, route), problem)
        inbound.handled = "forgery_refused"
        return None
    assert case is not None
    inbound.handled = "agent_mail"
    text = stored_body(strip_reply(parsed.text, parsed.html))  # no card number whole, even from staff
    _act(session, app, inbound, parsed, case, issued, text)
    return case


def _act(session: Session, app: App, inbound: InboundRow, parsed: ParsedMail, case: Case, issued: str,
         text: str) -> None:
    """Record an agent's text on the case and carry out its commands (a rejection mail
    to the sender when one is refused)."""
    caselocks.lock(session, case)  # the commands act on the case as it is now, alone
    sender = parsed.from_addr
    commands, body = split_commands(text)
    detail = f"signed token issued to {issued}" + (f", forwarded to {sender}" if issued != sender.lower() else "")
    msg = add_message(session, case, direction="in", kind="agent", message_id=parsed.message_id,
                      subject=parsed.subject, from_addr=sender, from_name=parsed.from_name, body_text=text,
                      sent_at=parsed.date, inbound_id=inbound.id, route_signal="agent_token",
                      route_detail=detail, created_at=app.now())
    store_attachments(session, app, msg, parsed)
    files = of_message(session, msg.id)
    log_event(session, case, "message_in", actor=sender, at=app.now(), kind="agent", message=msg.id)
    try:
        with session.begin_nested():
            run_commands(session, app, case, sender, commands, body,
                         about=actions.last_customer_message(session, case), files=files)
    except actions.Rejected as rej:
        inbound.handled = "command_rejected"
        inbound.reason = f"agent command {rej.command} rejected: {'; '.join(rej.reasons)}"[:1000]
        log_event(session, case, "command_rejected", actor=sender, at=app.now(), command=rej.command,
                  reasons=rej.reasons)
        member = app.config.staff(sender, case.brand)
        send_staff_mail(session, app, case, "command_rejection", sender, ctx_extra={"rejection": {
            "command": rej.command, "reasons": rej.localized(staff_language(app, member, case.brand))}})


DIGEST_CASE = 0  # the case id of the daily digest's own token: it names no case
_BLOCK_START = re.compile(r"^\s*\[?([A-Za-z]{1,6}-\d{4}-\d{6,})\]?\s*[:\-–]?\s*(.*)$")


def digest_blocks(text: str) -> tuple[list[tuple[str, str]], str]:
    """A reply to the digest read as paragraphs, each starting with a case's reference
    ("KP-2026-000123 #note called back", or the reference alone on its line, then the
    commands and text): [(REF, its text)], and the text before the first reference."""
    blocks: list[tuple[str, list[str]]] = []
    before: list[str] = []
    for line in text.splitlines():
        m = _BLOCK_START.match(line)
        if m:
            blocks.append((m.group(1).upper(), [m.group(2)] if m.group(2).strip() else []))
        elif blocks:
            blocks[-1][1].append(line)
        else:
            before.append(line)
    return [(ref, "\n".join(lines).strip()) for ref, lines in blocks], "\n".join(before).strip()


def handle_digest_reply(session: Session, app: App, inbound: InboundRow, parsed: ParsedMail, route: BrandRoute,
                        issued: str) -> Case | None:
    """A reply to the daily digest (its token names no case): each paragraph starting with a
    reference acts on that case of the brand as a reply to its notification would (same
    authorisation: an agent of the brand, authenticated when required). A reply naming
    no case of the brand gets a fresh digest saying why. Returns the last case acted on."""
    sender = parsed.from_addr
    agent = app.config.staff(sender, route.brand.key)
    assert agent is not None
    if app.config.security.require_authenticated_agents:
        problem = authenticated(parsed, sender, app.config.security.trusted_authserv_id)
        if problem is not None:
            _forgery(session, app, inbound, parsed, route, None, problem)
            inbound.handled = "forgery_refused"
            return None
    text = stored_body(strip_reply(parsed.text, parsed.html))
    blocks, _before = digest_blocks(text)
    acted: Case | None = None
    unknown = []
    for ref, block in blocks:
        case = session.exec(select(Case).where(Case.ref == ref, Case.brand == route.brand.key)).first()
        if case is None or not block:
            unknown.append(ref)
            continue
        _act(session, app, inbound, parsed, case, issued, block)
        acted = case
    inbound.handled = "agent_mail" if acted is not None else "digest_reply_unusable"
    if acted is None or unknown:
        problem = say("digest_no_case", refs=", ".join(unknown)) if unknown else say("digest_no_ref")
        queue_digest(session, app, route.brand, agent, app.calendar(route.brand).local(app.now()).date(),
                     problem=problem.text(staff_language(app, agent, route.brand.key)), daily=False)
        log_event(session, acted, "digest_reply_unusable", actor=sender, at=app.now(), refs=unknown)
    return acted


def customer_on_staff_address(session: Session, app: App, route: BrandRoute, sender: str) -> tuple[Case, str] | None:
    """The case whose customer wrote to a staff token address (a reply-all after an agent
    copied them), and the staff address the token was issued to; None when the token is
    not a genuine one of the brand's staff, or the sender is not that case's customer."""
    sender = (sender or "").lower()
    if not sender or app.config.agent(sender) is not None:
        return None
    staff = [a.email for a in app.config.staff_of(route.brand.key)] + list(route.brand.external_staff)
    issued = issued_to(app.config.security.resolved_secret(), route.token or "", staff, app.now())
    case_id = token_case_id(route.token) if issued else None
    case = session.get(Case, case_id) if case_id else None
    if case is None or case.brand != route.brand.key or (case.customer_email or "").lower() != sender:
        return None
    return case, issued or ""


def _check_token(app: App, route: BrandRoute, sender: str) -> tuple[TokenCheck, str]:
    """The token's check for the sender, and to whom it was issued: the sender, or (a staff
    mail forwarded inside the team, e.g. to a supervisor) another agent of the brand, which
    the sender may then use if they are an agent of the brand too."""
    secret, token, now = app.config.security.resolved_secret(), route.token or "", app.now()
    check = check_agent_token(secret, token, sender, now)
    if check.ok or app.config.staff(sender, route.brand.key) is None:
        return check, sender.lower()
    staff = [a.email for a in app.config.staff_of(route.brand.key)] + list(route.brand.external_staff)
    colleague = issued_to(secret, token, staff, now)
    if colleague is None:
        return check, sender.lower()
    return check_agent_token(secret, token, colleague, now), colleague


def _claimed_case(session: Session, route: BrandRoute) -> Case | None:
    """The case a (possibly forged) token names, if it is one of this brand's: the
    supervisor is told about the attempt on it; nothing is done to it."""
    case_id = token_case_id(route.token)
    case = session.get(Case, case_id) if case_id else None
    return case if case is not None and case.brand == route.brand.key else None


def _authorisation_problem(app: App, parsed: ParsedMail, sender: str, case: Case | None, route: BrandRoute,
                           token_reason: str) -> str | None:
    agent = app.config.agent(sender)
    if agent is None:
        return f"{sender or 'unknown sender'} is not a configured agent"
    if case is not None and case.brand != route.brand.key:
        return f"a token of a {case.brand} case ({case.ref}) sent to a {route.brand.key} address"
    if route.brand.key not in agent.brands:
        return f"{sender} is an agent of {', '.join(agent.brands)}, not of {route.brand.key}"
    if case is None:
        return f"invalid agent token: {token_reason}"
    if app.config.security.require_authenticated_agents:
        return authenticated(parsed, sender, app.config.security.trusted_authserv_id)
    return None


def _forgery(session: Session, app: App, inbound: InboundRow, parsed: ParsedMail, route: BrandRoute,
             case: Case | None, reason: str) -> None:
    """A refused agent mail: an event, the message kept on the case it aimed at (kind
    `refused`: shown to staff, never relayed nor taken for the customer's), and the case's
    supervisors alerted — once, then in an hourly digest (mailbot.cases.alerts)."""
    sender = parsed.from_addr or "unknown"
    log_event(session, case, "security", actor=sender, at=app.now(),
              reason=reason, inbound=inbound.id, brand=case.brand if case is not None else route.brand.key)
    inbound.reason = f"forged agent mail: {reason}"[:1000]
    if case is None:
        return
    # Without its Message-ID: a refused mail threads nothing onto the case, nor shows in our References.
    msg = add_message(session, case, direction="in", kind="refused", message_id=None,
                      subject=parsed.subject, from_addr=sender, from_name=parsed.from_name,
                      body_text=parsed.masked_text if parsed.masked_text is not None else stored_body(parsed.text),
                      sent_at=parsed.date, inbound_id=inbound.id, route_signal="agent_token", route_detail=f"refused: {reason}"[:1000], created_at=app.now())
    store_attachments(session, app, msg, parsed)
    alerts.alert(session, app, alerts.security_key(case.brand), case, {"sender": sender, "reason": reason})


COMMANDS = ("#note", "#ask", "#final", "#reply", "#extend", "#tier", "#category", "#priority", "#assign", "#link",
            "#merge", "#reopen", "#reexamine", "#close")

DATE_COMMANDS = ("#extend", "#tier")  # each moves the promised date: one of them per mail


@dataclass
class _Plan:
    """What the text of an agent's mail is for, as its command lines say."""

    mode: str = "reply"  # reply | note | ask | final | close
    inline: str = ""  # text written on the mode's own line (#ask Question ?, #close reason)
    at: datetime | None = None
    saved: str | None = None  # #reply NAME: a saved reply goes after the agent's own text


def run_commands(session: Session, app: App, case: Case, actor: str, commands: list[str], body: str,
                 about: Message | None, files: Sequence[Attachment] = ()) -> None:
    """Apply the command lines, then the text (note / ask / final / close / plain reply).
    `#note text` on one line is a note of its own and leaves the rest of the mail as it is;
    `#note` alone makes the whole text a note. `#ask`, `#close` take their text on their line,
    below it, or both."""
    date_changes = [c for c in commands if c.strip().partition(" ")[0].lower() in DATE_COMMANDS]
    if len(date_changes) > 1:  # one notice per mail: thirty #extend lines are not thirty notices
        raise actions.Rejected(date_changes[1].split()[0].lower(), [say("one_date_change", count=len(date_changes))])
    plan = _Plan()
    for line in commands:
        word, _, arg = line.strip().partition(" ")
        word, arg = word.lower(), arg.strip()
        if word == "#note" and arg:
            actions.note(session, app, case, actor, arg)
        elif word in ("#note", "#ask", "#close"):
            plan.mode, plan.inline = word[1:], arg
        elif word == "#final":
            plan.mode, plan.at = "final", _final_at(arg, app.calendar(case.brand).tz)
        elif word == "#extend":
            days, _, reason = arg.partition(" ")
            if not days.isdigit():
                raise actions.Rejected("#extend", [say("extend_usage")])
            actions.extend(session, app, case, actor, int(days), reason)
        elif word == "#tier":
            tier, _, reason = arg.partition(" ")
            actions.set_tier(session, app, case, actor, tier, reason)
        elif word == "#category":
            actions.set_category(session, app, case, actor, arg)
        elif word == "#priority":
            actions.set_priority(session, app, case, actor, arg.lower())
        elif word == "#assign":
            actions.assign(session, app, case, actor, arg.lower())
        elif word == "#reexamine":
            try:
                reexamination.by_agent(session, app, case, actor, arg)
            except reexamination.NotReopenable as exc:
                raise actions.Rejected("#reexamine", [str(exc)]) from None
        elif word == "#reply":
            plan.saved = arg
        elif word == "#link":
            merging.link(session, app, case, actor, arg)
        elif word == "#merge":
            merging.merge(session, app, case, actor, arg)
        elif word == "#reopen":
            actions.reopen(session, app, case, actor, arg)
        else:
            raise actions.Rejected(word, [say("unknown_command", word=word, known=" ".join(COMMANDS))])
    _apply_mode(session, app, case, actor, plan, body, about, files, has_commands=bool(commands))


def _joined(*parts: str) -> str:
    return "\n\n".join(p.strip() for p in parts if p.strip())


def _apply_mode(session: Session, app: App, case: Case, actor: str, plan: _Plan, body: str,
                about: Message | None, files: Sequence[Attachment], has_commands: bool) -> None:
    """The text's part: the mail's files go with what reaches the customer (a note keeps them)."""
    saved = actions.saved_reply(app, case, about, plan.saved) if plan.saved is not None else ""
    if plan.mode == "note":
        if not _joined(plan.inline, body):
            raise actions.Rejected("#note", [say("note_empty")])
        actions.note(session, app, case, actor, _joined(plan.inline, body))
    elif plan.mode == "ask":
        actions.reply(session, app, case, actor, _joined(plan.inline, body, saved), about=about, ask=True,
                      files=files)
    elif plan.mode == "final":
        actions.final(session, app, case, actor, body, about=about, at=plan.at, files=files)
    elif plan.mode == "close":
        actions.close(session, app, case, actor, reason=_joined(plan.inline, body))
    elif plan.mode == "reply" and (saved or not has_commands or has_message(body)):
        actions.reply(session, app, case, actor, _joined(body, saved), about=about, files=files)


_CLOSINGS = re.compile(r"^(cordialement|bien (à|a) vous|bien cordialement|salutations|merci|bonne journée|"
                       r"regards|best|kind regards|thanks|thank you|sincerely)\b", re.IGNORECASE)


def has_message(body: str) -> bool:
    """Text for the customer beyond a bare closing ('Cordialement,\nPaul')."""
    lines = [ln.strip() for ln in body.strip().splitlines() if ln.strip()]
    if not lines:
        return False
    return not (len(lines) <= 3 and _CLOSINGS.match(lines[0]))


def _final_at(arg: str, tz: tzinfo) -> datetime | None:
    """'at 2026-12-01T09:00' in the brand's local time (or with an explicit offset)."""
    if not arg:
        return None
    word, _, when = arg.partition(" ")
    if word.lower() != "at" or not when.strip():
        raise actions.Rejected("#final", [say("final_usage")])
    try:
        dt = datetime.fromisoformat(when.strip())
    except ValueError:
        raise actions.Rejected("#final", [say("final_date", when=when.strip())]) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=tz)
