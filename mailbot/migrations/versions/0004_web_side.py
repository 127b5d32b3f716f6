"""the web side: staff sessions, used sign-in links, web submissions (rate limits)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TEXT = sqlmodel.sql.sqltypes.AutoString
_TIME = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", _TEXT(length=64), nullable=False),
        sa.Column("agent", _TEXT(length=500), nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("expires_at", _TIME(), nullable=False),
        sa.Column("ended_at", _TIME(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_web_sessions_agent", "web_sessions", ["agent"], unique=False)
    op.create_table(
        "web_used_links",
        sa.Column("nonce", _TEXT(length=64), nullable=False),
        sa.Column("agent", _TEXT(length=500), nullable=False),
        sa.Column("used_at", _TIME(), nullable=False),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_table(
        "web_submissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ip", _TEXT(length=64), nullable=False),
        sa.Column("email", _TEXT(length=500), nullable=False),
        sa.Column("at", _TIME(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_web_submissions_ip_at", "web_submissions", ["ip", "at"], unique=False)
    op.create_index("ix_web_submissions_email_at", "web_submissions", ["email", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_web_submissions_email_at", table_name="web_submissions")
    op.drop_index("ix_web_submissions_ip_at", table_name="web_submissions")
    op.drop_table("web_submissions")
    op.drop_table("web_used_links")
    op.drop_index("ix_web_sessions_agent", table_name="web_sessions")
    op.drop_table("web_sessions")
