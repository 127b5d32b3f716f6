"""drop the single-column indexes on cases.status and cases.brand

Each is the leading column of another index of the table (ix_cases_open_due on
(status, due_at); uq_case_brand_year_seq on (brand, year, seq)), which serves
every lookup by status or by brand alone; the two only cost an index write per
new case and per status change.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 15:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_cases_status", table_name="cases")
    op.drop_index("ix_cases_brand", table_name="cases")


def downgrade() -> None:
    op.create_index("ix_cases_brand", "cases", ["brand"], unique=False)
    op.create_index("ix_cases_status", "cases", ["status"], unique=False)
