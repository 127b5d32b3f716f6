"""Database tables (SQLModel over SQLAlchemy 2). Migrations live in `mailbot/migrations`.

Times are aware UTC datetimes (SQLModel's UTCDateTime: timestamptz on
PostgreSQL, UTC text on SQLite); `utcnow()` is the one clock helper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlalchemy.orm import configure_mappers
from sqlmodel import Field, Session, SQLModel

from mailbot.bounds import bound_text_columns


def utcnow() -> datetime:
    return datetime.now(UTC)


def track(session: Session, obj: SQLModel) -> None:
    """`session.add(obj)` unless the session already holds it: then `add` would only walk
    the save-update cascades (these models have no relationships) on the ingest path,
    where a new case is touched four times."""
    if obj not in session:
        session.add(obj)


class Blob(SQLModel, table=True):
    """Content-addressed bytes: raw mails and attachments."""

    __tablename__ = "blobs"
    sha256: str = Field(primary_key=True, max_length=64)
    size: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Inbound(SQLModel, table=True):
    """One received mail, whatever became of it. `dedupe_key` makes ingest idempotent."""

    __tablename__ = "inbound"
    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(unique=True, max_length=1000)
    message_id: str | None = Field(default=None, max_length=1000, index=True)
    sha256: str = Field(foreign_key="blobs.sha256", max_length=64, index=True)
    source: str = Field(max_length=200)
    envelope_from: str | None = Field(default=None, max_length=500)
    envelope_to: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)
    outcome: str = Field(max_length=40)  # case | followup | automatic | quarantined | ignored
    reason: str = Field(default="", max_length=1000)


T = TypeVar("T", bound=SQLModel)


def construct(cls: type[T], **values: Any) -> T:
    """A table object built as the ORM builds one it loads from a row: the given values
    and the fields' defaults, without pydantic validation (which costs as much as the
    INSERT). For hot paths that pass values of the right types."""
    defaults = _defaults(cls)  # first: it configures the mappers, which `new_instance` needs
    obj = cls._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    fields = obj.__dict__
    for name, default, factory in defaults:
        fields[name] = values.pop(name) if name in values else factory() if factory else default
    if values:
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(values)}")
    return obj


@cache
def _defaults(cls: type[SQLModel]) -> list[tuple[str, Any, Callable[[], Any] | None]]:
    """(name, default, default factory) of each field, looked up once per class (pydantic's
    `get_default` inspects the factory's signature on every call). The ORM's mappers are
    configured here, once: an instance made by `new_instance` before any query or
    `Session.add` has configured them would have no attribute instrumentation (a fresh
    `mailbot cases new` process failed with "'NoneType' object has no attribute
    'supports_population'")."""
    configure_mappers()
    return [(name, None if f.default_factory else f.default, f.default_factory)  # type: ignore[misc]
            for name, f in cls.model_fields.items()]


@dataclass
class InboundRow:
    """An `inbound` row ingest has just written (a plain object: one per mail received, so
    no ORM instance); its outcome, and `reason` if handling changed it, are written back
    once the mail is handled."""

    id: int
    source: str
    envelope_to: list[str]
    reason: str
    handled: str = ""  # what an agent's mail did: agent_mail, command_rejected, forgery_refused


@dataclass(frozen=True)
class StoredMessage:
    """A `messages` row just written: what the callers of `add_message` need of it."""

    id: int


class Case(SQLModel, table=True):
    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("brand", "year", "seq", name="uq_case_brand_year_seq"),
        Index("ix_cases_open_due", "status", "due_at"),
        # The queue (console, `cases list`) and the dashboard: a brand's cases of a status by
        # deadline, counted and paged from the index alone, "mine" too (migration 0012).
        Index("ix_cases_queue", "brand", "status", "due_at", "assignee"),
        # An agent's own queue ("mine", "assigned to"): their cases, and the unassigned ones
        # of a brand, counted and read in deadline order from the index (migration 0013).
        Index("ix_cases_assignee", "assignee", "brand", "status", "due_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(unique=True, max_length=40)
    brand: str = Field(max_length=60)  # indexed by uq_case_brand_year_seq (brand first)
    year: int
    seq: int
    status: str = Field(default="new", max_length=30)  # indexed by ix_cases_open_due (status first)
    channel: str = Field(default="email", max_length=20)
    category: str | None = Field(default=None, max_length=60)
    priority: str = Field(default="normal", max_length=20)
    tier: str = Field(default="simple", max_length=30)
    language: str = Field(default="fr", max_length=8)
    subject: str = Field(default="", max_length=1000)
    customer_email: str = Field(default="", max_length=500, index=True)
    customer_name: str = Field(default="", max_length=500)
    reply_token: str = Field(unique=True, max_length=64)
    assignee: str | None = Field(default=None, max_length=500)
    linked_case_id: int | None = Field(default=None, foreign_key="cases.id")
    extracted: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: datetime
    received_date_only: bool = False  # received on paper on a day, at no known time
    round_number: int = 1  # the current round: 1 the complaint, then each re-examination (rounds)
    created_at: datetime = Field(default_factory=utcnow)
    ack_due_at: datetime | None = None
    due_at: datetime | None = None
    acknowledged_at: datetime | None = None
    answered_at: datetime | None = None
    closed_at: datetime | None = None
    outcome: str | None = Field(default=None, max_length=40)
    auto_mail_count: int = 0
    extended_days: int = 0
    next_sla_at: datetime | None = Field(default=None, index=True)
    purged_at: datetime | None = None


class Round(SQLModel, table=True):
    """One round of a complaint, as the register keeps it: the complaint itself (number 1),
    then each re-examination. Its times are when things really happened: acknowledged and
    answered when the mail was sent or the letter posted (letters count by their day:
    the start of the local day they were posted), not when they were queued."""

    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("case_id", "number", name="uq_round_case_number"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id")  # indexed by uq_round_case_number (case_id first)
    number: int
    kind: str = Field(max_length=20)  # complaint | reexamination
    received_at: datetime
    ack_due_at: datetime | None = None
    acknowledged_at: datetime | None = None
    ack_via: str | None = Field(default=None, max_length=10)  # email | letter
    promised_at: datetime  # the first answer date promised in this round
    due_at: datetime  # the answer date promised now (after extensions, tier changes)
    cap_at: datetime  # the latest answer date the law allows (see mailbot.cases.rounds)
    late_since: datetime | None = None  # a deadline passed unanswered, whatever moved it later
    answered_at: datetime | None = None
    answer_via: str | None = Field(default=None, max_length=10)
    outcome: str | None = Field(default=None, max_length=40)
    mediation_offered: bool = False


class Message(SQLModel, table=True):
    """A mail of a case, in or out, with the routing decision that put it there."""

    __tablename__ = "messages"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    inbound_id: int | None = Field(default=None, foreign_key="inbound.id", index=True)
    direction: str = Field(max_length=3)  # in | out
    kind: str = Field(max_length=30)  # customer | auto_reply | bounce | agent | ack | ...
    message_id: str | None = Field(default=None, max_length=1000, index=True)
    subject: str = Field(default="", max_length=1000)
    from_addr: str = Field(default="", max_length=500)
    from_name: str = Field(default="", max_length=500)
    sent_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    body_text: str = Field(default="")
    route_signal: str = Field(default="", max_length=40)
    route_detail: str = Field(default="", max_length=1000)


class Attachment(SQLModel, table=True):
    __tablename__ = "attachments"
    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="messages.id", index=True)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=200)
    size: int
    sha256: str | None = Field(default=None, foreign_key="blobs.sha256", max_length=64)
    dropped_reason: str | None = Field(default=None, max_length=200)


class Event(SQLModel, table=True):
    """The audit trail: who did what, when."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_type_at", "type", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None, foreign_key="cases.id", index=True)
    at: datetime = Field(default_factory=utcnow)
    type: str = Field(max_length=60)
    actor: str = Field(default="system", max_length=500)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Outbox(SQLModel, table=True):
    """The one send path: a row per mail to send, fixed Message-ID, retried until sent or failed.

    A row is written with what to say (kind, case, context) in the transaction of
    the change that causes it; the dispatcher renders and builds the MIME bytes
    (`raw`) just before the first attempt and keeps them, so retries resend the
    same bytes and the ingest path does no template or MIME work."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "not_before"),
        Index("ix_outbox_rcpt_kind", "to_addr", "kind", "created_at"),
        Index("ix_outbox_kind_created", "kind", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None, foreign_key="cases.id", index=True)
    kind: str = Field(max_length=40)
    message_id: str = Field(unique=True, max_length=500)
    from_addr: str = Field(max_length=500)
    to_addr: str = Field(max_length=500)
    to_name: str = Field(default="", max_length=500)
    reply_to: str | None = Field(default=None, max_length=500)
    language: str | None = Field(default=None, max_length=8)
    automatic: bool = True
    about_id: int | None = Field(default=None, foreign_key="messages.id")
    context: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    raw: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    status: str = Field(default="pending", max_length=20)  # pending | sent | failed | withheld | redirected
    attempts: int = 0
    not_before: datetime = Field(default_factory=utcnow)
    last_error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None


class Letter(SQLModel, table=True):
    """A letter to post: the other output of the one send path (mailbot.outgoing.letters),
    written like an outbox row in the transaction of the case change that causes it, for a
    customer answered by post. Rendered to PDF once (`pdf`), then posted by hand and
    recorded as such (`posted_on`: the day it left)."""

    __tablename__ = "letters"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    kind: str = Field(max_length=40)
    language: str | None = Field(default=None, max_length=8)
    to_name: str = Field(default="", max_length=500)
    to_address: str = Field(default="", max_length=1000)
    context: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    pdf: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    rendered_at: datetime | None = None
    last_error: str | None = Field(default=None, max_length=2000)
    posted_on: date | None = None
    posted_at: datetime | None = None  # when it was recorded as posted
    posted_by: str | None = Field(default=None, max_length=500)


class Quarantine(SQLModel, table=True):
    __tablename__ = "quarantine"
    id: int | None = Field(default=None, primary_key=True)
    inbound_id: int | None = Field(default=None, foreign_key="inbound.id")
    sha256: str = Field(foreign_key="blobs.sha256", max_length=64)
    source: str = Field(max_length=200)
    envelope_to: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    reason: str = Field(max_length=2000)
    status: str = Field(default="held", max_length=20)  # held | retried
    created_at: datetime = Field(default_factory=utcnow)


class MailboxState(SQLModel, table=True):
    __tablename__ = "mailbox_state"
    account: str = Field(primary_key=True, max_length=500)
    uidvalidity: int | None = None
    last_uid: int = 0
    updated_at: datetime = Field(default_factory=utcnow)


class ImapUnfetchable(SQLModel, table=True):
    """A mail an IMAP server keeps in the polled folder but will not give (refuses to
    FETCH, or sends without a body): left in place, retried, listed by `imap check`."""

    __tablename__ = "imap_unfetchable"
    account: str = Field(primary_key=True, max_length=500)
    uid: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    uidvalidity: int
    message_id: str | None = Field(default=None, max_length=1000)
    reason: str = Field(default="", max_length=1000)
    first_seen: datetime = Field(default_factory=utcnow)
    last_tried: datetime = Field(default_factory=utcnow)
    attempts: int = 1


class RefCounter(SQLModel, table=True):
    """Next case sequence per brand and year (gap-tolerant, unique under concurrency)."""

    __tablename__ = "ref_counters"
    brand: str = Field(primary_key=True, max_length=60)
    year: int = Field(primary_key=True)
    next_seq: int = 1


class SlaMark(SQLModel, table=True):
    """One row per (case, point) of an SLA reminder/escalation already sent: idempotent sweeps."""

    __tablename__ = "sla_marks"
    case_id: int = Field(foreign_key="cases.id", primary_key=True)
    point: str = Field(primary_key=True, max_length=60)
    at: datetime = Field(default_factory=utcnow)


class AlertMark(SQLModel, table=True):
    """An alert to staff of one kind (and brand): when the last one went, and how many
    occurrences wait for the next digest (one alert, then at most a digest an hour)."""

    __tablename__ = "alert_marks"
    key: str = Field(primary_key=True, max_length=100)
    last_at: datetime
    pending: int = 0
    case_id: int | None = None  # the latest case concerned (the digest is staff mail about it)


class FailingRecipient(SQLModel, table=True):
    """An address our mail bounced from: no automatic mail to it until it writes again."""

    __tablename__ = "failing_recipients"
    address: str = Field(primary_key=True, max_length=500)
    since: datetime = Field(default_factory=utcnow)
    bounces: int = 1
    reason: str = Field(default="", max_length=500)


class WebSession(SQLModel, table=True):
    """A staff member signed in to `mailbot web` (the cookie holds the token; this row its hash),
    in the database so that any `mailbot web` process serves any request."""

    __tablename__ = "web_sessions"
    id: str = Field(primary_key=True, max_length=64)  # sha256 of the cookie's token, hex
    agent: str = Field(max_length=500, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    ended_at: datetime | None = None


class WebUsedLink(SQLModel, table=True):
    """A staff sign-in link already used: each works once."""

    __tablename__ = "web_used_links"
    nonce: str = Field(primary_key=True, max_length=64)
    agent: str = Field(max_length=500)
    used_at: datetime = Field(default_factory=utcnow)


class WebSubmission(SQLModel, table=True):
    """A complaint or document received through the web side, for its rate limits
    (per customer address and per client IP, over the last hour)."""

    __tablename__ = "web_submissions"
    __table_args__ = (
        Index("ix_web_submissions_ip_at", "ip", "at"),
        Index("ix_web_submissions_email_at", "email", "at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    ip: str = Field(max_length=64)
    email: str = Field(max_length=500)
    at: datetime = Field(default_factory=utcnow)


class WebFigures(SQLModel, table=True):
    """The dashboard's charts of a brand (acknowledgement and answer times over 90 days),
    computed at most every few minutes by whichever `mailbot web` process needs them:
    a full pass over the brand's cases is too slow for every page view."""

    __tablename__ = "web_figures"
    brand: str = Field(primary_key=True, max_length=60)
    computed_at: datetime
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


bound_text_columns(SQLModel.metadata)  # every text column cut to its length before the write (mailbot.bounds)
