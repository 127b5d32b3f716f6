"""Long values (#27 item 8): PostgreSQL refused a value longer than its column
(`StringDataRightTruncation`: the mail quarantined, no case) where SQLite stored it, and
the logged traceback carried the SQL parameters. mailbot/bounds.py; docs/security.md.
"""

from __future__ import annotations

import io
import logging

import pytest
from sqlalchemy import text, update
from sqlmodel import SQLModel, select

from mailbot import caselocks, db
from mailbot.app import App
from mailbot.bounds import ELLIPSIS, UNBOUNDED_TEXT, text_column_bounds
from mailbot.ingest.pipeline import ingest
from mailbot.models import Case, Message, Outbox, Quarantine
from mailbot.ops.logs import JsonFormatter
from tests.mails import mail


def test_every_text_column_has_a_bound() -> None:
    bounds = text_column_bounds(SQLModel.metadata)
    assert len(bounds) > 50 and {"cases.customer_email", "messages.body_text", "inbound.reason"} <= set(bounds)
    assert {name: bound for name, bound in bounds.items() if bound is None} == {}
    assert bounds["cases.customer_email"] == 500 and bounds["messages.body_text"] == UNBOUNDED_TEXT


def test_over_long_values_are_cut_to_their_column_the_same_on_both_databases(app: App) -> None:
    """Through the ORM and through a Core statement: no error on either database, the value
    cut to the column's length with an ellipsis last."""
    ingest(app, mail(), "smtp")
    with db.session_scope(app.engine) as s:
        case = caselocks.lock(s, s.exec(select(Case)).one())
        case.customer_name = "Marie " * 200
        case.subject = "Virement " * 300
        case.category = "c" * 100
        s.add(case)
    with db.session_scope(app.engine) as s:
        s.exec(update(Case).values(customer_email="m" * 600 + "@example.org", assignee="a" * 700))  # type: ignore[call-overload]
    with db.read_scope(app.engine) as s:
        case = s.exec(select(Case)).one()
    for value, limit in ((case.customer_name, 500), (case.subject, 1000), (case.category, 60),
                         (case.customer_email, 500), (case.assignee, 500)):
        assert value is not None and len(value) == limit and value.endswith(ELLIPSIS), (value[:20], limit)
    assert case.customer_name.startswith("Marie Marie")


def test_a_from_of_600_characters_makes_a_case(app: App) -> None:
    """A From address over 500 characters (and a name, a subject and a Message-ID past their
    columns): a case, the address refused as a customer address (staff told), nothing
    quarantined — on PostgreSQL as on SQLite."""
    address = "marie." + "x" * 600 + "@example.org"
    raw = mail(frm=f"{'Marie Dupont ' * 60}<{address}>", subject="Virement non reçu " * 80,
               message_id=f"<{'m' * 1200}@example.org>")
    result = ingest(app, raw, "smtp", envelope_from=address)
    assert result.case_refs, result
    with db.read_scope(app.engine) as s:
        assert s.exec(select(Quarantine)).all() == []
        case = s.exec(select(Case)).one()
        message = s.exec(select(Message)).one()
        staff = s.exec(select(Outbox).where(Outbox.to_addr != "")).all()
    assert case.customer_email == "" and len(case.customer_name) <= 500 and len(case.subject) <= 1000
    assert message.message_id is None or len(message.message_id) <= 1000  # (an over-long one is not kept)
    assert staff and all(address not in (o.to_addr or "") for o in staff)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_sql_parameters_never_reach_the_logs(app: App) -> None:
    """A database error while a mail is written (here a CHECK constraint the schema was given
    for the test): the mail is quarantined, and neither the log lines (tracebacks included)
    nor the quarantine reason carry the statement's values or the failing row."""
    with app.engine.begin() as c:
        c.execute(text("ALTER TABLE cases ADD CONSTRAINT no_cases_today CHECK (customer_name = '')"))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        result = ingest(app, mail(frm="Marie Secretname <marie.secretname@example.org>",
                                  subject="Virement Secretsubject"), "smtp")
    finally:
        root.removeHandler(handler)
    assert result.outcome.value == "quarantined", result
    logged = stream.getvalue()
    assert "CheckViolation" in logged or "IntegrityError" in logged  # the error is logged, with its traceback
    with db.read_scope(app.engine) as s:
        reason = s.exec(select(Quarantine.reason)).one()
    for where in (logged, reason):
        low = where.lower()
        assert "secretname" not in low and "secretsubject" not in low, where[-3000:]
