"""Tenants' fair-share usage, saved by the placer (docs/governance.md, "Live").

Expand only: one new table, nothing existing changes, so processes of revision 0011 keep
running next to those of 0012 during a rolling upgrade (they neither read nor write it).

``tenant_usage``: each tenant's usage (SCU, decayed with the half-life) and when it was
saved; a restarted or newly elected placer starts from it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from suanwang.server.database.migrations.columns import ts

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenant_usage",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("decayed_scu", sa.Float(), nullable=False),
        ts("at", nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_usage"),
    )


def downgrade() -> None:
    op.drop_table("tenant_usage")
