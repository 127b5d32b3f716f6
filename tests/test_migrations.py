"""The migrations build the schema the models describe, both ways, on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from mailbot import db
from mailbot.app import App
from mailbot.ingest.pipeline import ingest
from tests.mails import mail


def _differences(app: App) -> list:  # type: ignore[type-arg]
    with app.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"include_name": db.mapped_name}),
                                SQLModel.metadata)


def _case_indexes(app: App) -> set[str]:
    return {ix["name"] for ix in inspect(app.engine).get_indexes("cases")}


def test_the_migrated_schema_is_the_models_schema(app: App) -> None:
    assert _differences(app) == []
    assert {"ix_cases_open_due", "ix_cases_next_sla_at", "ix_cases_customer_email"} <= _case_indexes(app)
    assert not {"ix_cases_status", "ix_cases_brand"} & _case_indexes(app)  # 0002: served by longer ones


def test_0002_goes_down_and_up_again_with_cases_in_place(app: App) -> None:
    ingest(app, mail(), "smtp")
    db.downgrade(app.engine, "0001")
    assert {"ix_cases_status", "ix_cases_brand"} <= _case_indexes(app)
    db.upgrade(app.engine)
    assert _differences(app) == []
    assert ingest(app, mail(frm="b@example.org"), "smtp").case_refs == ("KP-2026-000002",)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # (PostgreSQL's plan depends on the table's size)
def test_lookups_by_status_or_brand_alone_still_use_an_index(app: App) -> None:
    with app.engine.connect() as conn:
        for where in ("status = 'answered'", "status IN ('new', 'acknowledged')", "brand = 'kalra-plus'"):
            plan = " ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN SELECT id FROM cases WHERE {where}")))
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (where, plan)


def test_0006_gives_every_existing_case_its_first_round(app: App) -> None:
    from sqlmodel import select

    from mailbot.models import Round

    ingest(app, mail(), "smtp")
    db.downgrade(app.engine, "0005")
    db.upgrade(app.engine)
    assert _differences(app) == []
    with db.session_scope(app.engine) as s:
        [first] = s.exec(select(Round)).all()
    assert (first.number, first.kind, first.outcome) == (1, "complaint", None)
    assert first.ack_due_at is not None and first.due_at == first.promised_at < first.cap_at
    assert ingest(app, mail(frm="b@example.org"), "smtp").case_refs == ("KP-2026-000002",)
