"""drop outbox.dedupe_key (never set: nothing deduplicates outgoing mail by it)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 06:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (SQLite cannot drop a column under a UNIQUE constraint: batch mode copies the table)
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("dedupe_key")


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("dedupe_key", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True))
        batch.create_unique_constraint("uq_outbox_dedupe_key", ["dedupe_key"])
