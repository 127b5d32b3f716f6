"""imap_unfetchable: mails an IMAP server keeps in the folder but will not give

The poller leaves such a mail in place and tries it again now and then; this
table lets `mailbot imap check` (another process) report it at once, with the
server's words.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imap_unfetchable",
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("uid", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("uidvalidity", sa.Integer(), nullable=False),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("first_seen", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("last_tried", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account", "uid"),
    )


def downgrade() -> None:
    op.drop_table("imap_unfetchable")
