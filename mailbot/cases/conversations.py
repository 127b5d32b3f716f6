"""What a routed inbound mail does to cases: open one, join one, or only be noted.

Called by `ingest` inside its transaction; everything here writes through the
caller's session, so the message, its attachments, the events and the
outgoing mail it causes commit together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete
from sqlmodel import Session, col, select

from mailbot import caselocks, db
from mailbot.app import App
from mailbot.cases import (
    alerts,
    duplicates,
    reexamination,
    responses,
    scheduled,
    staff_mail,
    unmatched,
)
from mailbot.cases.agent_mail import customer_on_staff_address, handle_agent_mail
from mailbot.cases.attachments import store_attachments
from mailbot.cases.records import add_message, log_event, open_case, set_status
from mailbot.cases.sla import OPEN_STATUSES, Opening
from mailbot.cases.tokens import is_agent_token
from mailbot.config import BrandConfig
from mailbot.mail.classify import Verdict
from mailbot.mail.extract import Extracted, extract_for, mentions_steps_taken
from mailbot.mail.masking import stored_body
from mailbot.mail.parsing import ParsedMail
from mailbot.mail.quotes import strip_reply
from mailbot.mail.routing import BrandRoute, CaseRoute, find_case, find_case_for_automatic
from mailbot.mail.senders import customer_contact
from mailbot.models import Case, FailingRecipient, InboundRow, Outbox, StoredMessage
from mailbot.outgoing.audiences import is_staff_kind


def case_language(brand: BrandConfig, facts: Extracted) -> str:
    """The brand's language, unless the customer clearly wrote in another one it serves."""
    return facts.language if facts.language in brand.languages else brand.language


WEB_SOURCE = "web:"  # the source of what `mailbot web` hands to ingest ("web:form:<ip>", "web:api:<client>")


def channel_of(source: str) -> str:
    """The case's channel: `form` for what came through the web side, else `email`."""
    return "form" if source.startswith(WEB_SOURCE) else "email"


def handle_customer(session: Session, app: App, inbound: InboundRow, parsed: ParsedMail,
                    routes: Sequence[BrandRoute], received_at: datetime,
                    facts: Mapping[str, Extracted] | None = None,
                    openings: Mapping[str, Opening] | None = None,
                    envelope_from: str | None = None) -> tuple[bool, tuple[str, ...]]:
    """A human wrote: one case per brand addressed, new or existing. Returns (opened any, refs).
    `facts`, `openings`: the extraction and a new case's deadlines per brand, when the
    analysis already did them. `envelope_from`: the return path, the customer's address
    when the headers hold no usable one (`senders.customer_contact`)."""
    opened_any = False
    cases: list[Case] = []
    clear_failing(session, parsed.from_addr)
    for route in routes:
        customer = customer_on_staff_address(session, app, route, parsed.from_addr) \
            if is_agent_token(route.token) else None
        if is_agent_token(route.token) and customer is None:
            with db.writes_now(session):  # its commands run in a savepoint
                agent_case = handle_agent_mail(session, app, inbound, parsed, route)
            if agent_case is not None:
                cases.append(agent_case)
            continue
        if customer is not None:  # the customer answered a mail an agent copied them on (reply-all)
            found = CaseRoute(customer[0], "staff_address", f"the customer wrote to the staff address of {customer[1]}")
        else:
            found = find_case(session, route, parsed, app.config.security.trusted_authserv_id)
        if found.case is None and app.config.staff(parsed.from_addr, route.brand.key):
            found = _staff_thread(session, route, parsed) or found
        if found.case is None:
            case = _open(session, app, inbound, parsed, route, found, received_at,
                         (facts or {}).get(route.brand.key), (openings or {}).get(route.brand.key),
                         envelope_from)
            opened_any = True
        else:
            case = _follow_up(session, app, inbound, parsed, found, received_at)
        cases.append(case)
    _link(session, cases)
    return opened_any, tuple(c.ref for c in cases)


def mark_failing(session: Session, address: str, reason: str, at: datetime) -> None:
    session.info.get("cleared_failing", set()).discard(address.lower())
    row = session.get(FailingRecipient, address.lower())
    if row is None:
        session.add(FailingRecipient(address=address.lower(), since=at, reason=reason[:500]))
    else:
        row.bounces += 1
        session.add(row)


_CLEAR_FAILING = delete(FailingRecipient).where(
    col(FailingRecipient.address).in_(bindparam("a", expanding=True)))


def clear_failing(session: Session, address: str) -> None:
    """The address wrote to us: it works again."""
    addr = address.lower()
    if not addr or addr in session.info.get("cleared_failing", ()):
        return  # cleared earlier in this transaction, and not marked failing since
    if any(isinstance(o, FailingRecipient) for o in (*session.new, *session.dirty)):
        session.flush()  # one marked failing earlier in this transaction (IMAP batches)
    session.connection().execute(_CLEAR_FAILING, {"a": [addr]})
    session.info.setdefault("cleared_failing", set()).add(addr)


def prepare_batch(session: Session, app: App, customers: Sequence[str]) -> None:
    """What every customer mail of a batch needs, in one statement each instead of one
    per mail: their addresses work again, their recent acknowledgements counted, and
    which of them have a case open (for the resend check)."""
    addrs = sorted({a.lower() for a in customers if a})
    if not addrs:
        return
    session.connection().execute(_CLEAR_FAILING, {"a": addrs})
    session.info["cleared_failing"] = set(addrs)
    responses.prefetch_ack_counts(session, app, addrs)
    duplicates.prefetch_open_cases(session, addrs)


def _open(session: Session, app: App, inbound: InboundRow, parsed: ParsedMail, route: BrandRoute,
          found: CaseRoute, received_at: datetime, facts: Extracted | None, opening: Opening | None,
          envelope_from: str | None) -> Case:
    brand = route.brand
    facts = facts or extract_for(brand, parsed, received_at)
    contact = customer_contact(parsed.from_addr, parsed.reply_to, envelope_from,
                               lambda a: app.config.brand_for_address(a) is not None, parsed.from_header)
    case = open_case(
        session, app, brand, customer_email=contact.address, customer_name=facts.name or parsed.from_name,
        subject=parsed.subject, received_at=received_at, category=facts.category,
        urgent=facts.urgent, language=case_language(brand, facts), extracted=opening_facts(brand, facts, parsed.text), opening=opening,
        channel=channel_of(inbound.source),
    )
    if contact.source in ("reply-to", "envelope"):
        log_event(session, case, "customer_address", at=app.now(), address=contact.address,
                  source=contact.source, reason=f"taken from {contact.source}, not From")
    related = duplicates.related_case(session, case, parsed.subject, parsed.text)
    msg = _store_message(session, app, case, inbound, parsed, found, kind="customer")
    if related is None:
        withheld = responses.after_new_case(session, app, case, msg, parsed)
    else:  # probably an existing case: linked for an agent to merge, no second deadline promised
        duplicates.link_to(session, case, related, app.now())
        withheld = responses.acknowledge(session, app, case, msg, kind="linked_ack", sender_header=parsed.from_header)
    if withheld is not None and withheld.code == "first_contact_cap":
        alerts.alert(session, app, alerts.FIRST_CONTACT_CAP, case, {
            "what": "first_contact_cap", "sender": case.customer_email, "reason": withheld.reason,
            "count": app.config.limits.first_contact_acks})
    staff_mail.announce_new_case(session, app, case, msg, withheld, related)
    return case


def opening_facts(brand: BrandConfig, facts: Extracted, text: str) -> dict[str, Any]:
    """A new case's extracted facts; a brand that asks for the steps already taken has them
    listed as missing when the complaint gives none."""
    data = facts.to_json()
    if brand.ask_steps_taken and not mentions_steps_taken(text):
        data["missing"] = [*data.get("missing", []), "etapes"]
    return data


def _follow_up(session: Session, app: App, inbound: InboundRow, parsed: ParsedMail, found: CaseRoute,
               received_at: datetime) -> Case:
    case = found.case
    assert case is not None
    caselocks.lock(session, case)  # as it is now: an agent's #final may have answered it meanwhile
    if _from_staff(app, case, parsed):
        return _hold_staff_message(session, app, inbound, parsed, found)
    msg = _store_message(session, app, case, inbound, parsed, found, kind="customer")
    _refresh_missing(session, app, case, extract_for(app.config.brand(case.brand), parsed, received_at),
                     parsed.text)
    if (case.status in reexamination.REOPENABLE and found.signal == "subject_ref"
            and not app.config.security.trusted_authserv_id):
        # The subject's reference alone, and no MTA vouches for the From (it may be forged):
        # recorded, nothing sent; the agent's notification says so, `#reexamine` reopens it.
        log_event(session, case, "message_after_answer", actor=parsed.from_addr, at=app.now(), message=msg.id,
                  reason="joined by the subject's reference alone: not reopened; #reexamine opens one")
    elif case.status in reexamination.REOPENABLE:
        reexamination.after_answer(session, app, case, msg, subject=parsed.subject,
                                   new_text=strip_reply(parsed.text, parsed.html), received_at=received_at)
    elif case.status == "waiting_customer":
        set_status(session, case, "in_progress", actor=case.customer_email, reason="customer replied")
    held = None
    if case.status in OPEN_STATUSES:  # a scheduled final response waits for the agent to read this mail
        held = scheduled.withdraw(session, case, app.now(), status="held", actor=case.customer_email,
                                  reason="the customer wrote before it went out")
    extra = {"held_final": {"at": app.calendar(case.brand).local(held).isoformat()}} if held else None
    staff_mail.notify_customer_message(session, app, case, msg, extra=extra)
    return case


_STAFF_MAIL_CASE = select(Outbox.case_id, Outbox.kind).where(
    col(Outbox.message_id).in_(bindparam("ids", expanding=True)), col(Outbox.case_id).is_not(None))


def _staff_thread(session: Session, route: BrandRoute, parsed: ParsedMail) -> CaseRoute | None:
    """The case of a staff mail an agent answered without its token (their client wrote to
    the From address): found by the thread headers among the mails we sent to staff."""
    ids = [*parsed.in_reply_to, *parsed.references][:50]
    if not ids:
        return None
    for case_id, kind in session.connection().execute(_STAFF_MAIL_CASE, {"ids": ids}).all():
        case = session.get(Case, case_id)
        if case is not None and case.brand == route.brand.key and is_staff_kind(kind):
            return CaseRoute(case, "staff_thread", f"answers our {kind} mail about {case.ref}")
    return None


def _from_staff(app: App, case: Case, parsed: ParsedMail) -> bool:
    """Mail from one of the brand's agents (who is not this case's customer)."""
    sender = (parsed.from_addr or "").lower()
    return app.config.staff(sender, case.brand) is not None and sender != case.customer_email.lower()


def _hold_staff_message(session: Session, app: App, inbound: InboundRow, parsed: ParsedMail,
                        found: CaseRoute) -> Case:
    """An agent's mail that reached the case by the customer's way (a forward, an old thread,
    the customer's reply address): kept on the case as a staff message, never taken for the
    customer's, nothing relayed; the sender is told how to act (a mail with their own token)."""
    case = found.case
    assert case is not None
    msg = _store_message(session, app, case, inbound, parsed, found, kind="staff_held")
    inbound.reason = f"held: from {parsed.from_addr}, an agent of {case.brand}, by the customer's way ({found.signal})"
    log_event(session, case, "staff_mail_held", actor=parsed.from_addr, at=app.now(), message=msg.id,
              signal=found.signal)
    staff_mail.send_staff_mail(session, app, case, "staff_held", parsed.from_addr, about=msg)
    return case


def _refresh_missing(session: Session, app: App, case: Case, facts: Extracted, text: str) -> None:
    """A follow-up that brings facts (an amount, a date, a file, the steps taken…) takes them
    off the case's list of what is missing: an item stays missing only if this mail lacks it too."""
    ex = dict(case.extracted or {})
    before = list(ex.get("missing", []))
    lacking = set(facts.missing) | ({"etapes"} if not mentions_steps_taken(text) else set())
    still = [m for m in before if m in lacking]
    if still == before:
        return
    ex["missing"] = still
    case.extracted = ex  # a new dict: the JSON column sees the change
    session.add(case)
    log_event(session, case, "facts_received", actor=case.customer_email, at=app.now(),
              received=[m for m in before if m not in still])


def handle_automatic(session: Session, app: App, inbound: InboundRow, parsed: ParsedMail,
                     routes: Sequence[BrandRoute], verdict: Verdict,
                     received_at: datetime) -> tuple[str, ...]:
    """Auto-replies, bounces and read receipts are attached to the case they concern; they
    never change its state, never open a case and never get an answer. One that concerns
    no case is kept (its inbound row), and flagged to staff when it reads as a complaint. A read receipt is
    recorded as a `read` event (`receipt` when it says the mail was not displayed, e.g.
    deleted unread)."""
    refs = []
    flagged: list[str] = []
    for route in routes:
        found = find_case_for_automatic(session, route, parsed, verdict.bounced_message_id)
        if found.case is None:
            flagged += unmatched.flag_to_staff(session, app, inbound, parsed, route.brand, verdict, received_at)
            continue
        _store_message(session, app, found.case, inbound, parsed, found, kind=str(verdict.kind))
        if verdict.kind == "receipt":
            log_event(session, found.case, "read" if verdict.disposition == "displayed" else "receipt",
                      actor=parsed.from_addr or "unknown", at=app.now(), message_id=verdict.bounced_message_id,
                      disposition=verdict.disposition)
        if verdict.kind == "bounce" and verdict.failed_recipients:
            log_event(session, found.case, "delivery_failed", at=app.now(),
                      recipients=list(verdict.failed_recipients), message_id=verdict.bounced_message_id)
            for address in verdict.failed_recipients:
                mark_failing(session, address, verdict.reason, app.now())
        refs.append(found.case.ref)
    if not refs:  # kept all the same: `mailbot inbound list --automatic` (mailbot.cases.unmatched)
        inbound.reason = f"{inbound.reason}; matched no case" + ("; flagged to staff" if flagged else "")
    return tuple(refs)


def _link(session: Session, cases: list[Case]) -> None:
    """A mail to two brands opens one case each, linked to each other."""
    if len(cases) < 2:
        return
    for case in cases:
        if case.linked_case_id is None:
            other = next(c for c in cases if c.id != case.id)
            case.linked_case_id = other.id
            session.add(case)
            log_event(session, case, "linked", other=other.ref)


def _store_message(session: Session, app: App, case: Case, inbound: InboundRow, parsed: ParsedMail,
                   route: CaseRoute, *, kind: str) -> StoredMessage:
    msg = add_message(
        session, case, direction="in", kind=kind, message_id=parsed.message_id,
        subject=parsed.subject, from_addr=parsed.from_addr, from_name=parsed.from_name,
        body_text=parsed.masked_text if parsed.masked_text is not None else stored_body(parsed.text),
        sent_at=parsed.date,
        inbound_id=inbound.id, route_signal=route.signal, route_detail=route.detail,
        created_at=app.now(),
    )
    store_attachments(session, app, msg, parsed)
    log_event(session, case, "message_in", actor=parsed.from_addr or "unknown", at=app.now(),
              kind=kind, message=msg.id, signal=route.signal)
    return msg
