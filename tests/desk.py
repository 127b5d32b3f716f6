"""An in-process help desk for tests: mail in through `ingest`, mail out through the
outbox and the Maildir transport, time moved by the test's clock, jobs run as `tick` runs
them. For the agent's day seen from the mails alone (tests/test_staff_mail.py, …)."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

from sqlmodel import col, select

from mailbot import db
from mailbot.app import App
from mailbot.cases.deliveries import dispatch
from mailbot.ingest.pipeline import IngestResult, ingest
from mailbot.models import Case, Event, Message
from mailbot.ops.jobs import run_all_jobs
from tests.mails import mail

CUSTOMER = "marie.dupont@example.org"
AGENT = "agent@kalra-plus.com"
SUPERVISOR = "supervisor@kalra-plus.com"
ONCALL = "astreinte@kalra-plus.com"


class Desk:
    """Plays the customer and the staff against one App."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.seen: set[str] = set()
        self.inbox: list[EmailMessage] = []  # every mail sent so far, in order
        self.digests: list[EmailMessage] = []  # the daily digests (mailbot.cases.digest), apart

    def receive(self, raw: bytes, rcpt: str = "support@kalra-plus.com") -> IngestResult:
        return ingest(self.app, raw, "smtp", envelope_to=[rcpt])

    def new_mail(self) -> list[EmailMessage]:
        """Mails sent since the last call (the outbox is dispatched first), but the daily
        digests: a stream of their own (`new_digests`), so that a test about a case's mail
        reads the same whatever the hour its clock ticks at."""
        dispatch(self.app)
        out = []
        new = Path(self.app.config.resolve_path(self.app.config.outbound.path)) / "new"
        for p in sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns) if new.is_dir() else []:
            if p.name not in self.seen:
                self.seen.add(p.name)
                m = email.message_from_bytes(p.read_bytes(), policy=default)
                assert isinstance(m, EmailMessage)
                (self.digests if is_daily_digest(m) else out).append(m)
        self.inbox += out
        return out

    def new_digests(self) -> list[EmailMessage]:
        """The daily digests sent since the last call."""
        before = len(self.digests)
        self.new_mail()
        return self.digests[before:]

    def tick(self) -> list[str]:
        return run_all_jobs(self.app)

    def tick_at(self, share: float, ref: str | None = None) -> list[str]:
        """Move the clock to `share` of the time between the case's receipt and its
        deadline (1.0: the deadline; more: past it), then run the jobs."""
        case = self.case(ref)
        assert case.due_at is not None
        when = case.received_at + (case.due_at - case.received_at) * share
        self.app.clock.now = max(self.app.clock.now, when)  # type: ignore[attr-defined]
        return self.tick()

    def case(self, ref: str | None = None) -> Case:
        with db.session_scope(self.app.engine) as s:
            stmt = select(Case).order_by(col(Case.id))
            if ref:
                stmt = stmt.where(Case.ref == ref)
            found = s.exec(stmt).first()
            assert found is not None
            return found

    def events(self, type_: str) -> list[Event]:
        with db.session_scope(self.app.engine) as s:
            return list(s.exec(select(Event).where(Event.type == type_).order_by(col(Event.id))).all())

    def messages(self, kind: str | None = None) -> list[Message]:
        with db.session_scope(self.app.engine) as s:
            stmt = select(Message).order_by(col(Message.id))
            if kind:
                stmt = stmt.where(Message.kind == kind)
            return list(s.exec(stmt).all())

    def complaint(self, **kw: object) -> EmailMessage:
        """The customer writes a new complaint; returns the notification the agent gets."""
        kw.setdefault("message_id", "<cust-1@example.org>")
        self.receive(mail(**kw))  # type: ignore[arg-type]
        return only(to(self.new_mail(), AGENT))

    def reply(self, staff_mail: EmailMessage, body: str, frm: str = AGENT, **headers: str) -> IngestResult:
        """A staff member answers a staff mail, as a mail client does: to its Reply-To."""
        rcpt = reply_to(staff_mail)
        raw = mail(frm=frm, to=rcpt, subject=f"Re: {staff_mail['Subject']}", body=body,
                   In_Reply_To=staff_mail["Message-ID"], **headers)
        return self.receive(raw, rcpt)


    def write(self, address: str, body: str, frm: str = AGENT, subject: str = "") -> IngestResult:
        """A staff member writes a new mail to `address` (e.g. a digest line's, from its link)."""
        return self.receive(mail(frm=frm, to=address, subject=subject or "Dossier", body=body), address)


def is_daily_digest(m: EmailMessage) -> bool:
    """The day's digest (its Message-ID: mailbot.cases.digest.message_id)."""
    return str(m["Message-ID"]).startswith("<digest.")


def digest_line(digest: EmailMessage, ref: str) -> str:
    """The reply address printed under the case's line of a digest (French or English)."""
    text = text_of(digest)
    block = text[text.index(ref):]
    for label in ("Agir sur ce dossier : ", "Act on this case: "):
        if label in block:
            return block.split(label, 1)[1].split()[0]
    raise AssertionError(f"no line address for {ref}")


def to(msgs: list[EmailMessage], addr: str) -> list[EmailMessage]:
    return [m for m in msgs if m["To"].addresses[0].addr_spec == addr]


def only(msgs: list[EmailMessage]) -> EmailMessage:
    assert len(msgs) == 1, [(m["To"], m["Subject"]) for m in msgs]
    return msgs[0]


def reply_to(m: EmailMessage) -> str:
    return m["Reply-To"].addresses[0].addr_spec


def text_of(m: EmailMessage) -> str:
    return m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
