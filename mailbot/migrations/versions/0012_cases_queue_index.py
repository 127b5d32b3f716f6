"""the queue's index: cases (brand, status, due_at, assignee), replacing 0009's

The staff console's queue and `mailbot cases list` read a brand's cases of each
status in deadline order from this index and stop at the page (mailbot.cases.queue);
with the assignee in it, "mine" and "assigned to" are counted and filtered from the
index alone too (bench/web.py: at 100,000 cases on SQLite the count of an agent's
own queue went from a read of every open case of the brand, ~265 ms, to ~15 ms).
The dashboard's counts read its first three columns, as they read 0009's.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 09:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_queue", "cases", ["brand", "status", "due_at", "assignee"], unique=False)
    op.drop_index("ix_cases_brand_status_due", table_name="cases")


def downgrade() -> None:
    op.create_index("ix_cases_brand_status_due", "cases", ["brand", "status", "due_at"], unique=False)
    op.drop_index("ix_cases_queue", table_name="cases")
