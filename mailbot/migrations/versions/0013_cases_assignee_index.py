"""an agent's own queue: cases (assignee, brand, status, due_at)

"mine" (`mailbot cases list --mine`, the console's "my cases", the daily digest) is
the cases assigned to the agent plus the unassigned ones of their brands: two
disjoint ranges of this index, each counted and read in deadline order on its own
(mailbot.cases.queue). ix_cases_queue (brand, status, due_at, assignee) cannot serve
"assigned to me" without reading every open case of each brand (figures:
bench/README.md, "mine" read as two parts). `--assignee` reads it too.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 12:45:00
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_assignee", "cases", ["assignee", "brand", "status", "due_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_cases_assignee", table_name="cases")
