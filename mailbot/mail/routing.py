"""Routing: which brand(s) a mail is for, and which case it belongs to.

A message joins an existing case only when it proves it belongs (DESIGN.md,
guarantee 4), checked in this order — the first that matches is recorded on
the message as its `route_signal`:

1. `reply_token`  — the secret per-case plus-address (support+<token>@…);
2. `in_reply_to`  — In-Reply-To names a message of a case of that brand;
3. `references`   — References names one;
4. `subject_ref`  — the case reference in the subject, *and* the sender is
   the case's own customer (a stranger quoting a reference gets a new case);
5. `new`          — otherwise, a new case.

Thread headers prove little by themselves: anyone can write a Message-ID. They
thread on the Message-IDs of mail *we* sent (random, never shown to strangers),
and on a Message-ID of mail we received only when it came from the same sender
as this one: a stranger who reuses a customer's Message-ID does not pull the
customer's later replies into the stranger's case. When a Message-ID still names
messages of several cases, nothing is guessed: a new case.

The subject's reference is weaker still (the From can be forged). With
`security.trusted_authserv_id`, it counts only when that MTA's
Authentication-Results vouch for the From domain (mailbot.mail.authresults);
and whatever the headers, a match by the subject alone never reopens an answered
or closed case by itself (mailbot.cases.conversations: the agent is told).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from mailbot.config import BrandConfig, Config
from mailbot.mail.authresults import from_unverified
from mailbot.mail.parsing import ParsedMail
from mailbot.models import Case, Message

REF_PATTERN = re.compile(r"\b([A-Z]{1,6})-(\d{4})-(\d{6,})\b")  # a case reference: KP-2026-000123


def refs_in(text: str) -> list[str]:
    """The case references written in `text`, in order."""
    return [m.group(0) for m in REF_PATTERN.finditer(text or "")]


@dataclass(frozen=True)
class BrandRoute:
    brand: BrandConfig
    address: str  # the recipient that matched
    token: str | None  # the plus part, if any
    signal: str  # envelope | header | mailbox


@dataclass(frozen=True)
class CaseRoute:
    case: Case | None
    signal: str
    detail: str


def split_plus(address: str) -> tuple[str, str | None]:
    """'support+tok@x' → ('support@x', 'tok')."""
    local, _, domain = address.lower().rpartition("@")
    base, plus, token = local.partition("+")
    return f"{base}@{domain}", (token or None) if plus else None


def _routes_from(cfg: Config, addresses: Sequence[str], signal: str) -> list[BrandRoute]:
    routes: dict[str, BrandRoute] = {}
    for addr in addresses:
        brand = cfg.brand_for_address(addr)
        if brand is None:
            continue
        _, token = split_plus(addr)
        current = routes.get(brand.key)
        if current is None or (token and not current.token):
            routes[brand.key] = BrandRoute(brand, addr.lower(), token, signal)
    return list(routes.values())


def route_brands(cfg: Config, parsed: ParsedMail | None, envelope_to: Sequence[str],
                 mailbox_brand: str | None = None) -> list[BrandRoute]:
    """The brands a mail is for. The envelope decides when present (Bcc)."""
    if envelope_to:
        routes = _routes_from(cfg, envelope_to, "envelope")
        if routes:
            return routes
    if mailbox_brand:
        brand = cfg.brand(mailbox_brand)
        header_routes = _routes_from(cfg, _header_recipients(parsed), "header") if parsed else []
        for r in header_routes:
            if r.brand.key == brand.key:
                return [BrandRoute(brand, r.address, r.token, "mailbox")]
        return [BrandRoute(brand, brand.addresses[0], None, "mailbox")]
    if parsed is None:
        return []
    return _routes_from(cfg, _header_recipients(parsed), "header")


def _header_recipients(parsed: ParsedMail) -> list[str]:
    extra = [parsed.header(h).strip().lower() for h in ("Delivered-To", "X-Original-To")]
    return [*parsed.to, *parsed.cc, *(a for a in extra if "@" in a)]


def find_case(session: Session, route: BrandRoute, parsed: ParsedMail,
              trusted_authserv_id: str | None = None) -> CaseRoute:
    """The case this customer message belongs to, and the signal that proved it."""
    brand = route.brand.key
    if route.token:
        case = session.exec(select(Case).where(Case.reply_token == route.token, Case.brand == brand)).first()
        if case is not None:
            return _kept(session, CaseRoute(case, "reply_token", f"plus-address token of {route.address.split('@')[0]}"))
    for signal, ids in (("in_reply_to", parsed.in_reply_to), ("references", parsed.references[::-1])):
        found = _thread(session, brand, ids, parsed.from_addr)
        if isinstance(found, str):
            return CaseRoute(None, "new", f"{signal.replace('_', '-')} names {found}: new case")
        if found is not None:
            return CaseRoute(found, signal, f"{signal.replace('_', '-')} names a message of {found.ref}")
    for ref in refs_in(parsed.subject):
        case = session.exec(select(Case).where(Case.ref == ref, Case.brand == brand)).first()
        if case is None:
            continue
        if not (case.customer_email and case.customer_email in (parsed.from_addr, *parsed.reply_to)):
            return CaseRoute(None, "new", f"subject quotes {ref} but {parsed.from_addr or 'the sender'} "
                                          "is not its customer: new case")
        if trusted_authserv_id:
            why = from_unverified(parsed.message, parsed.from_addr, trusted_authserv_id)
            if why is not None:
                return CaseRoute(None, "new", f"subject quotes {ref} and names its customer as sender, "
                                              f"but {why}: new case")
        return _kept(session, CaseRoute(case, "subject_ref", f"subject quotes {ref}, sender is its customer"))
    return CaseRoute(None, "new", "no reply token, thread header or own reference: new case")


def _kept(session: Session, found: CaseRoute) -> CaseRoute:
    """A case merged into another (`#merge`, outcome "merged") leads to the one it was merged
    into: its reply address and reference keep working for the customer."""
    case, detail = found.case, found.detail
    for _ in range(5):
        if case is None or case.outcome != "merged" or case.linked_case_id is None:
            break
        kept = session.get(Case, case.linked_case_id)
        if kept is None:
            break
        detail += f"; {case.ref} was merged into {kept.ref}"
        case = kept
    return CaseRoute(case, found.signal, detail) if case is not found.case else found


_THREAD = (select(Case, Message.message_id, Message.direction, Message.from_addr)
           .join(Message, col(Message.case_id) == col(Case.id)))


def _thread(session: Session, brand: str, ids: Sequence[str], sender: str | None) -> Case | str | None:
    """The case the first of `ids` that counts names: a mail we sent, or one we received
    from `sender` (None: ours only). A string says why not, when that Message-ID names
    messages of several cases."""
    if not ids:
        return None
    ids = list(ids)[:50]
    rows = session.exec(_THREAD.where(col(Message.message_id).in_(ids), Case.brand == brand)).all()
    sender = (sender or "").lower()
    for mid in ids:
        cases = {case.id: case for case, m, direction, frm in rows if m == mid and (
            direction == "out" or (direction == "in" and sender and (frm or "").lower() == sender))}
        if len(cases) > 1:
            return f"{mid}, a message of {len(cases)} cases ({', '.join(sorted(c.ref for c in cases.values()))})"
        if cases:
            return next(iter(cases.values()))
    return None


def find_case_for_automatic(session: Session, route: BrandRoute, parsed: ParsedMail,
                            bounced_message_id: str | None) -> CaseRoute:
    """Where an auto-reply or bounce belongs (never opens a case)."""
    if bounced_message_id:
        case = _thread(session, route.brand.key, [bounced_message_id], None)
        if isinstance(case, Case):
            return CaseRoute(case, "bounced_message", f"returns our message {bounced_message_id}")
    found = find_case(session, route, parsed)
    if found.case is not None and found.signal != "subject_ref":
        return found
    return CaseRoute(None, "none", "automatic mail matching no case")
