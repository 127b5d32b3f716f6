"""the dashboard's charts, computed at most every few minutes (web_figures)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_figures",
        sa.Column("brand", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("computed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("brand"),
    )


def downgrade() -> None:
    op.drop_table("web_figures")
