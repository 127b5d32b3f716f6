"""alerts to staff: one, then a digest (alert_marks); the indexes their counts read

`alert_marks` holds, per kind of alert (a brand's forged agent mail, the cap on
acknowledgements to first-time addresses), when the last alert went and how many
occurrences wait for the digest. `ix_outbox_kind_created` counts the last hour's
acknowledgements, `ix_events_type_at` finds the security events a digest lists.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 09:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_marks",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("last_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_outbox_kind_created", "outbox", ["kind", "created_at"], unique=False)
    op.create_index("ix_events_type_at", "events", ["type", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_events_type_at", table_name="events")
    op.drop_index("ix_outbox_kind_created", table_name="outbox")
    op.drop_table("alert_marks")
