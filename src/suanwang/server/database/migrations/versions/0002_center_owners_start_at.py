"""Providers own centers (``center_owners``); jobs get a planned start (``jobs.start_at``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Jobs scheduled before this revision have no ``start_at`` and are handed over at once, as
before (the live policy did not defer then).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from suanwang.server.database.migrations.columns import ts

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "center_owners",
        sa.Column("center_id", sa.String(100), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        ts("granted_at", nullable=False),
        sa.PrimaryKeyConstraint("center_id", name="pk_center_owners"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_center_owners_tenant_id_tenants",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_center_owners_tenant", "center_owners", ["tenant_id", "center_id"])
    op.add_column("jobs", ts("start_at", nullable=True))
    op.create_index("ix_jobs_state_start", "jobs", ["state", "start_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_state_start", table_name="jobs")
    # plain ALTER TABLE (SQLite >= 3.35): a batch copy of ``jobs`` would cascade-delete events
    op.drop_column("jobs", "start_at")
    op.drop_index("ix_center_owners_tenant", table_name="center_owners")
    op.drop_table("center_owners")
