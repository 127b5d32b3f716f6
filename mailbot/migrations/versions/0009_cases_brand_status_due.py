"""an index on cases (brand, status, due_at): the staff console's queue and dashboard

The console always asks for the open cases of the staff member's brands, by
deadline: with this index the count, the overdue and due-this-week counts and
the page's ids come from the index alone (bench/web.py: at 100,000 cases on
SQLite the queue's count went from a pass over every case of the brand to a
covering index range).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 08:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_brand_status_due", "cases", ["brand", "status", "due_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_cases_brand_status_due", table_name="cases")
