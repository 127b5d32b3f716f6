"""the register's rounds (the complaint, each re-examination) and date-only receipts

Each existing case gets its first round from what the case row knows (received,
acknowledged, due and answered times, outcome); its cap is two months after receipt.
Earlier re-examinations overwrote the case's own times, so they cannot be recovered.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (with the default existing rows need): a batch operation would
    # rebuild the table, which SQLite refuses while other tables' rows refer to it.
    op.add_column("cases", sa.Column("received_date_only", sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    op.add_column("cases", sa.Column("round_number", sa.Integer(), nullable=False, server_default="1"))
    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("ack_due_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("acknowledged_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("ack_via", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
        sa.Column("promised_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("due_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("cap_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("late_since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("answered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("answer_via", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("mediation_offered", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "number", name="uq_round_case_number"),
    )
    _first_rounds()


def _first_rounds() -> None:
    """One round per existing case, from the case row."""
    conn = op.get_bind()
    times = ("received_at", "ack_due_at", "acknowledged_at", "due_at", "answered_at", "promised_at", "cap_at")

    def columns(*names: str) -> list[sa.ColumnClause]:  # type: ignore[type-arg]
        return [sa.column(n, sqlmodel.sql.sqltypes.UTCDateTime()) if n in times else sa.column(n) for n in names]

    cases = sa.table("cases", *columns("id", "received_at", "ack_due_at", "acknowledged_at", "due_at",
                                       "answered_at", "outcome"))
    rows = conn.execute(sa.select(cases)).mappings().all()
    rounds = sa.table("rounds", *columns(
        "case_id", "number", "kind", "received_at", "ack_due_at", "acknowledged_at", "ack_via",
        "promised_at", "due_at", "cap_at", "answered_at", "answer_via", "outcome", "mediation_offered"))
    values = []
    for r in rows:
        received = _aware(r["received_at"])
        due = _aware(r["due_at"]) or received
        values.append({
            "case_id": r["id"], "number": 1, "kind": "complaint", "received_at": received,
            "ack_due_at": _aware(r["ack_due_at"]), "acknowledged_at": _aware(r["acknowledged_at"]),
            "ack_via": "email" if r["acknowledged_at"] else None, "promised_at": due, "due_at": due,
            "cap_at": _two_months(received), "answered_at": _aware(r["answered_at"]),
            "answer_via": "email" if r["answered_at"] else None, "outcome": r["outcome"],
            "mediation_offered": r["outcome"] == "rejected"})
    if values:
        conn.execute(sa.insert(rounds), values)


def _aware(value: object) -> datetime | None:
    if value is None:
        return None
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _two_months(received: datetime) -> datetime:
    local = received.astimezone(ZoneInfo("Europe/Paris"))
    month = local.month + 2
    year, month = local.year + (month - 1) // 12, (month - 1) % 12 + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    end = datetime.combine(local.date().replace(year=year, month=month, day=day), time(23, 59, 59),
                           tzinfo=ZoneInfo("Europe/Paris"))
    return end.astimezone(UTC)


def downgrade() -> None:
    op.drop_table("rounds")
    op.drop_column("cases", "round_number")  # ALTER TABLE … DROP COLUMN (SQLite 3.35+), no rebuild
    op.drop_column("cases", "received_date_only")
