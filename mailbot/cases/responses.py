"""Mail we write because of a case: acknowledgements, alerts, notices — all via the outbox
(their templates' context: mailbot.outgoing.case_context).

Loop and flood protection lives here, in one place:
- only mail classified as written by a human is ever answered (ingest decides);
- never to our own addresses, to an address nobody reads (no-reply senders, bounce
  handlers, MAILER-DAEMON, postmaster: `senders.is_noreply`), nor to anything that is
  not a valid address (no mail of any kind is queued to one);
- at most `limits.ack_limit` acknowledgements per sender per hour (later mails
  are still recorded on their case; the suppression is an event);
- at most `limits.auto_per_case` automatic mails per case, all kinds together;
- at most `limits.first_contact_acks` acknowledgements an hour, all brands together, to
  addresses we never wrote to before: a forged From makes the genuine brand write to
  anyone, and a flood of them is a spam (or phishing) run through us (issue #20).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import Session, col, func, select

from mailbot.app import App
from mailbot.cases.records import log_event, note_outgoing, set_status
from mailbot.mail.parsing import ParsedMail
from mailbot.mail.senders import is_noreply, valid_address
from mailbot.models import Case, FailingRecipient, Message, Outbox, StoredMessage, track
from mailbot.outgoing import letters, outbox
from mailbot.outgoing.audiences import is_staff_kind
from mailbot.outgoing.compose import new_message_id

# The answers to a new complaint that `limits.ack_limit` counts per sender and hour: the
# acknowledgement, and the short one of a probable duplicate (mailbot.cases.duplicates).
FIRST_ANSWERS = ("acknowledgement", "linked_ack")


@dataclass(frozen=True)
class Withheld:
    """Why an automatic mail was not queued: `code` (no_address, noreply, own, failing,
    limit, cap: the agent's notification words it in the brand's language), `reason`
    (the case's event, for admins) and `detail` (the address or header concerned)."""

    code: str
    reason: str
    detail: str = ""


def may_auto_answer(address: str, app: App, session: Session | None = None) -> Withheld | None:
    """Why we must not auto-answer this address (None: we may)."""
    addr = (address or "").lower()
    if not addr or not valid_address(addr):
        return Withheld("no_address", "no valid sender address" if addr else "no sender address", addr)
    if (session is not None and addr not in session.info.get("cleared_failing", ())
            and session.connection().execute(_IS_FAILING, {"a": addr}).first()):
        return Withheld("failing", "our mail to this address bounced (failing recipient)", addr)
    if app.config.brand_for_address(addr) is not None:
        return Withheld("own", "sender is one of our own addresses", addr)
    if is_noreply(addr):
        return Withheld("noreply", f"{addr} is a no-reply address: it never gets automatic mail", addr)
    return None


_ACKS_SINCE = select(func.count()).select_from(Outbox).where(
    Outbox.to_addr == bindparam("to"), col(Outbox.kind).in_(FIRST_ANSWERS),
    col(Outbox.created_at) > bindparam("since"))
_WRITTEN_TO = select(Outbox.id).where(Outbox.to_addr == bindparam("a")).limit(1)
_WRITTEN_TO_MANY = select(Outbox.to_addr).where(col(Outbox.to_addr).in_(bindparam("to", expanding=True))).distinct()
_EARLIER = Outbox.__table__.alias("earlier")
# Counted up to the cap only: whether it is reached is all that matters.
_FIRST_CONTACT_ACKS = select(func.count()).select_from(select(Outbox.id).where(
    col(Outbox.kind).in_(FIRST_ANSWERS), col(Outbox.created_at) > bindparam("since"),
    ~select(_EARLIER.c.id).where(_EARLIER.c.to_addr == Outbox.to_addr, _EARLIER.c.id < Outbox.id).exists(),
).limit(bindparam("cap")).subquery())
_IS_FAILING = select(FailingRecipient.address).where(FailingRecipient.address == bindparam("a"))


_ACKS_SINCE_MANY = (select(Outbox.to_addr, func.count()).where(
    col(Outbox.to_addr).in_(bindparam("to", expanding=True)), col(Outbox.kind).in_(FIRST_ANSWERS),
    col(Outbox.created_at) > bindparam("since")).group_by(Outbox.to_addr))


def prefetch_ack_counts(session: Session, app: App, addresses: list[str]) -> None:
    """Count the batch's senders' acknowledgements of the last hour in one query, and which
    of them we ever wrote to in another. The window is taken at the start of the batch (at
    most a second earlier than each mail's own: a count can only be too high, never too low)."""
    since = app.now() - timedelta(hours=1)
    counts = dict(session.connection().execute(_ACKS_SINCE_MANY, {"to": addresses, "since": since}).all())
    session.info["ack_counts"] = {a: counts.get(a, 0) for a in addresses}
    written = set(session.connection().execute(_WRITTEN_TO_MANY, {"to": addresses}).scalars())
    session.info["written_to"] = {a: a in written for a in addresses}


def _acks_last_hour(session: Session, to_addr: str, now: datetime) -> int:
    """Acknowledgements to this address in the last hour, this transaction's own included:
    read once per transaction (or per batch, `prefetch_ack_counts`), then counted up by
    `acknowledge` as it queues them."""
    counts = session.info.setdefault("ack_counts", {})
    to = to_addr.lower()
    if to not in counts:
        counts[to] = session.connection().execute(
            _ACKS_SINCE, {"to": to, "since": now - timedelta(hours=1)}).scalar_one()
    return int(counts[to])


def _first_contact(session: Session, to_addr: str) -> bool:
    """No mail of ours ever went to this address (this transaction's included)."""
    known = session.info.setdefault("written_to", {})
    to = to_addr.lower()
    if to not in known:
        known[to] = session.connection().execute(_WRITTEN_TO, {"a": to}).first() is not None
    return not known[to]


def _first_contact_acks(session: Session, now: datetime, cap: int) -> int:
    """Acknowledgements of the last hour, all brands, that were the first mail to their
    address (counted up to `cap`): read once per transaction, counted up as `acknowledge`
    queues them."""
    if "first_contact_acks" not in session.info:
        session.info["first_contact_acks"] = session.connection().execute(
            _FIRST_CONTACT_ACKS, {"since": now - timedelta(hours=1), "cap": cap}).scalar_one()
    return int(session.info["first_contact_acks"])


def send_case_mail(session: Session, app: App, case: Case, kind: str, *, to_addr: str,
                   to_name: str = "", about: Message | StoredMessage | None = None, automatic: bool = True,
                   ctx_extra: dict[str, Any] | None = None, not_before: datetime | None = None,
                   reply_to: str | None = None, record: bool = True,
                   language: str | None = None) -> str | None:
    """Queue mail of `kind` about the case (rendered by the dispatcher, see mailbot.outgoing.drafts);
    automatic mail counts against the per-case cap. To a customer answered by post it is a
    letter instead (mailbot.outgoing.letters; returns "letter:ID")."""
    brand = app.config.brand(case.brand)
    now = app.now()
    if to_addr == case.customer_email and not is_staff_kind(kind) and letters.by_post(case):
        letter = letters.queue(session, case, kind, language=language, to_name=to_name or case.customer_name,
                               context={**(ctx_extra or {}), "round": case.round_number}, now=now)
        log_event(session, case, "letter_queued", at=now, kind=kind, letter=letter.id)
        return f"letter:{letter.id}"
    if not valid_address(to_addr):
        log_event(session, case, "mail_not_queued", at=now, kind=kind, to=to_addr[:200],
                  reason="not a valid address")
        return None
    if automatic and case.auto_mail_count >= app.config.limits.auto_per_case:
        log_event(session, case, "auto_mail_suppressed", at=now, kind=kind,
                  reason=f"auto_per_case limit {app.config.limits.auto_per_case} reached")
        return None
    message_id = new_message_id(brand.addresses[0])
    queued = outbox.queue(session, case=case, kind=kind, from_addr=brand.addresses[0], to_addr=to_addr,
                       message_id=message_id, not_before=not_before, now=now,
                       to_name=to_name, reply_to=reply_to, language=language, automatic=automatic,
                       about_id=about.id if about else None,
                       context={**(ctx_extra or {}), "round": case.round_number})
    if automatic:
        case.auto_mail_count += 1
        track(session, case)
    if record:
        note_outgoing(session, case, kind=kind, message_id=message_id, from_addr=brand.addresses[0],
                      from_name=brand.name, sent_at=not_before or now)
    return queued


def acknowledge(session: Session, app: App, case: Case, msg: Message | StoredMessage | None,
                kind: str = "acknowledgement", sender_header: str = "") -> Withheld | None:
    """Queue the acknowledgement unless a loop/flood rule forbids it; returns why it was
    not queued (None: queued). `sender_header`: the From header, named in the reason when
    it holds no valid address."""
    now = app.now()
    if letters.by_post(case):  # a letter: the case is acknowledged when it is posted (mailbot.cases.postal)
        send_case_mail(session, app, case, kind, to_addr=case.customer_email, to_name=case.customer_name,
                       about=msg)
        return None
    withheld = may_auto_answer(case.customer_email, app, session)
    if withheld is None and kind in FIRST_ANSWERS:
        sent = _acks_last_hour(session, case.customer_email, now)
        if sent >= app.config.limits.ack_limit:
            withheld = Withheld("limit", f"ack_limit: {sent} acknowledgements to this sender in the last hour",
                                case.customer_email)
    first = withheld is None and kind in FIRST_ANSWERS and _first_contact(session, case.customer_email)
    cap = app.config.limits.first_contact_acks
    if first and (n := _first_contact_acks(session, now, cap)) >= cap:
        withheld = Withheld("first_contact_cap", f"first_contact_acks: {n} acknowledgements to first-time "
                            "addresses in the last hour", case.customer_email)
    if withheld is not None and withheld.code == "no_address" and sender_header:
        withheld = replace(withheld, reason=f"no valid sender address in From: {sender_header[:200]!r}",
                           detail=sender_header[:200])
    if withheld is not None:
        log_event(session, case, "ack_suppressed", at=now, reason=withheld.reason)
        return withheld
    row = send_case_mail(session, app, case, kind, to_addr=case.customer_email,
                         to_name=case.customer_name, about=msg)
    if row is None:
        return Withheld("cap", f"auto_per_case limit {app.config.limits.auto_per_case} reached")
    if kind in FIRST_ANSWERS:
        session.info["ack_counts"][case.customer_email.lower()] += 1
    if first:
        session.info["first_contact_acks"] += 1
    session.info.setdefault("written_to", {})[case.customer_email.lower()] = True
    if case.acknowledged_at is None:  # the first acknowledgement; later rounds keep theirs (rounds)
        case.acknowledged_at = now
    if case.status == "new":
        set_status(session, case, "acknowledged", at=now, reason=f"{kind} queued")
    return None


def after_new_case(session: Session, app: App, case: Case, msg: StoredMessage, parsed: ParsedMail
                   ) -> Withheld | None:
    """The customer's side of a new case (staff are told by mailbot.cases.staff_mail); returns
    why no acknowledgement went out (None: it is queued), which the staff's notification says."""
    return acknowledge(session, app, case, msg, sender_header=parsed.from_header)

