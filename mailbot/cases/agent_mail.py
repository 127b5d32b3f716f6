"""Mail from agents: a reply to a notification, sent to the signed agent token.

Who may act: the token must have been issued to the sender for that case
(HMAC), the sender must be a configured agent of the case's brand, and with
`require_authenticated_agents` the trusted MTA's Authentication-Results must
show DKIM or SPF pass for the sender's domain. Anything else is a forgery:
recorded as a security event, never relayed, and the supervisor is told.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

from sqlmodel import Session

from mailbot.app import App
from mailbot.cases import actions
from mailbot.cases.records import add_message, log_event
from mailbot.cases.tokens import check_agent_token
from mailbot.mail.parsing import ParsedMail
from mailbot.mail.quotes import split_commands, strip_reply
from mailbot.mail.routing import BrandRoute
from mailbot.models import Case, InboundRow, Message
from mailbot.outgoing.responses import send_case_mail

_AUTH_PASS = re.compile(r"\b(dkim|spf)\s*=\s*pass\b[^;]*", re.IGNORECASE)


def authenticated(parsed: ParsedMail, sender: str, trusted_authserv_id: str | None) -> str | None:
    """None when the trusted MTA vouches for the sender's domain, else the reason why not."""
    domain = sender.rpartition("@")[2].lower()
    values = [str(v) for v in parsed.message.get_all("Authentication-Results", [])]
    if not values:
        return "no Authentication-Results header"
    for value in values:
        authserv = value.split(";", 1)[0].strip().lower()
        if trusted_authserv_id and authserv != trusted_authserv_id.lower():
            continue
        for m in _AUTH_PASS.finditer(value):
            if domain and re.search(rf"(header\.d|header\.i|smtp\.mailfrom|header\.from)=[^;\s]*@?{re.escape(domain)}\b",
                                    m.group(0), re.IGNORECASE):
                return None
    return f"no DKIM/SPF pass for {domain} from the trusted MTA"


def handle_agent_mail(session: Session, app: App, inbound: InboundRow, parsed: ParsedMail,
                      route: BrandRoute) -> Case | None:
    """Record and carry out an agent's reply; returns the case, or None for a forgery."""
    sender = parsed.from_addr
    check = check_agent_token(app.config.security.resolved_secret(), route.token or "", sender, app.now())
    case = session.get(Case, check.case_id) if check.ok else None
    problem = _authorisation_problem(app, parsed, sender, case, route, check.reason)
    if problem is not None:
        _forgery(session, app, inbound, parsed, route, case or _claimed_case(session, route), problem)
        return None
    assert case is not None
    text = strip_reply(parsed.text, parsed.html)
    commands, body = split_commands(text)
    msg = add_message(session, case, direction="in", kind="agent", message_id=parsed.message_id,
                      subject=parsed.subject, from_addr=sender, from_name=parsed.from_name, body_text=text,
                      sent_at=parsed.date, inbound_id=inbound.id, route_signal="agent_token",
                      route_detail=f"signed token issued to {sender}")
    log_event(session, case, "message_in", actor=sender, at=app.now(), kind="agent", message=msg.id)
    try:
        with session.begin_nested():
            run_commands(session, app, case, sender, commands, body, about=_last_customer_message(session, case))
    except actions.Rejected as rej:
        log_event(session, case, "command_rejected", actor=sender, at=app.now(), command=rej.command,
                  reasons=rej.reasons)
        send_case_mail(session, app, case, "command_rejection", to_addr=sender, automatic=False, record=False,
                       language=app.config.brand(case.brand).language,
                       ctx_extra={"rejection": {"command": rej.command, "reasons": rej.reasons}})
    return case


def _claimed_case(session: Session, route: BrandRoute) -> Case | None:
    """The case a (possibly forged) token names, if it is one of this brand's: the
    supervisor is told about the attempt on it; nothing is done to it."""
    m = re.match(r"^a(\d{1,12})-", route.token or "")
    case = session.get(Case, int(m.group(1))) if m else None
    return case if case is not None and case.brand == route.brand.key else None


def _authorisation_problem(app: App, parsed: ParsedMail, sender: str, case: Case | None, route: BrandRoute,
                           token_reason: str) -> str | None:
    agent = app.config.agent(sender)
    if agent is None:
        return f"{sender or 'unknown sender'} is not a configured agent"
    if case is None:
        return f"invalid agent token: {token_reason}"
    if case.brand != route.brand.key or case.brand not in agent.brands:
        return f"{sender} is not an agent of {case.brand}"
    if app.config.security.require_authenticated_agents:
        return authenticated(parsed, sender, app.config.security.trusted_authserv_id)
    return None


def _forgery(session: Session, app: App, inbound: InboundRow, parsed: ParsedMail, route: BrandRoute,
             case: Case | None, reason: str) -> None:
    brand = route.brand
    log_event(session, case, "security", actor=parsed.from_addr or "unknown", at=app.now(),
              reason=reason, inbound=inbound.id, brand=brand.key)
    inbound.reason = f"forged agent mail: {reason}"[:1000]
    if case is not None and brand.supervisor:
        send_case_mail(session, app, case, "security_alert", to_addr=brand.supervisor, automatic=False,
                       record=False, language=brand.language,
                       ctx_extra={"security": {"sender": parsed.from_addr, "reason": reason}})


def _last_customer_message(session: Session, case: Case) -> Message | None:
    from sqlmodel import col, select

    return session.exec(select(Message).where(Message.case_id == case.id, Message.direction == "in",
                                              Message.kind == "customer").order_by(col(Message.id).desc())).first()


def run_commands(session: Session, app: App, case: Case, actor: str, commands: list[str], body: str,
                 about: Message | None) -> None:
    """Apply the command lines, then the text (note / ask / final / plain reply)."""
    mode, at = "reply", None
    for line in commands:
        word, _, arg = line.strip().partition(" ")
        word, arg = word.lower(), arg.strip()
        if word in ("#note", "#ask"):
            mode = word[1:]
        elif word == "#final":
            mode, at = "final", _final_at(arg, app.calendar(case.brand).tz)
        elif word == "#extend":
            days, _, reason = arg.partition(" ")
            if not days.isdigit():
                raise actions.Rejected("#extend", ["usage: #extend N reason (N business days)"])
            actions.extend(session, app, case, actor, int(days), reason)
        elif word == "#tier":
            actions.set_tier(session, app, case, actor, arg)
        elif word == "#category":
            actions.set_category(session, app, case, actor, arg)
        elif word == "#priority":
            actions.set_priority(session, app, case, actor, arg.lower())
        elif word == "#assign":
            actions.assign(session, app, case, actor, arg.lower())
        elif word == "#close":
            mode = "close"
        else:
            raise actions.Rejected(word, [f"unknown command {word}; known: #note #ask #final #extend #tier "
                                          "#category #priority #assign #close"])
    _apply_mode(session, app, case, actor, mode, body, about, at, has_commands=bool(commands))


def _apply_mode(session: Session, app: App, case: Case, actor: str, mode: str, body: str,
                about: Message | None, at: datetime | None, has_commands: bool) -> None:
    if mode == "note":
        actions.note(session, app, case, actor, body)
    elif mode == "ask":
        actions.reply(session, app, case, actor, body, about=about, ask=True)
    elif mode == "final":
        actions.final(session, app, case, actor, body, about=about, at=at)
    elif mode == "close":
        if body.strip():
            actions.note(session, app, case, actor, body)
        actions.close(session, app, case, actor)
    elif mode == "reply" and (not has_commands or has_message(body)):
        actions.reply(session, app, case, actor, body, about=about)


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
        raise actions.Rejected("#final", ["usage: #final or #final at 2026-12-01T09:00"])
    try:
        dt = datetime.fromisoformat(when.strip())
    except ValueError:
        raise actions.Rejected("#final", [f"cannot read the date {when.strip()!r}; use 2026-12-01T09:00"]) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=tz)
