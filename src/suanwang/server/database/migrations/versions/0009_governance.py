"""Governance: each tenant's compute quota, classes and budget, and the record of changes.

``tenant_quotas`` holds one row per tenant (its cohort, nominal quota, borrowing and lending
limits, weight, classes, caps by accelerator family and hub, monthly budget and maximum spend
per hour); ``quota_changes`` records every change (who, when, the settings before and after).
Rates and weights are NUMERIC(20, 6), money NUMERIC(18, 2) (on SQLite scaled integers, like
0004_billing). No existing table changes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from suanwang.server.database.migrations.columns import bigid, money, qty, ts

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NON_NEGATIVE = (
    "quota_scu_per_h >= 0 AND borrow_limit_scu_per_h >= 0 AND weight > 0"
    " AND (lend_limit_scu_per_h IS NULL OR lend_limit_scu_per_h >= 0)"
    " AND (budget_cny_per_month IS NULL OR budget_cny_per_month >= 0)"
    " AND (max_spend_cny_per_h IS NULL OR max_spend_cny_per_h >= 0)"
)


def upgrade() -> None:
    op.create_table(
        "tenant_quotas",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("cohort", sa.String(100), nullable=False),
        sa.Column("quota_scu_per_h", qty(), nullable=False),
        sa.Column("borrow_limit_scu_per_h", qty(), nullable=False),
        sa.Column("lend_limit_scu_per_h", qty(), nullable=True),
        sa.Column("weight", qty(), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("family_caps", sa.JSON(), nullable=False),
        sa.Column("hub_caps", sa.JSON(), nullable=False),
        sa.Column("budget_cny_per_month", money(), nullable=True),
        sa.Column("max_spend_cny_per_h", money(), nullable=True),
        ts("updated_at", nullable=False),
        sa.Column("updated_by", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_quotas"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_tenant_quotas_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(NON_NEGATIVE, name="ck_tenant_quotas_non_negative"),
    )  # fmt: skip
    op.create_index("ix_tenant_quotas_cohort", "tenant_quotas", ["cohort"])
    op.create_table(
        "quota_changes",
        sa.Column("id", bigid(), nullable=False, autoincrement=True),
        ts("at", nullable=False),
        sa.Column("by_tenant_id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_quota_changes"),
    )
    op.create_index("ix_quota_changes_tenant", "quota_changes", ["tenant_id", "at"])
    op.create_index("ix_quota_changes_at", "quota_changes", ["at"])


def downgrade() -> None:
    op.drop_index("ix_quota_changes_at", table_name="quota_changes")
    op.drop_index("ix_quota_changes_tenant", table_name="quota_changes")
    op.drop_table("quota_changes")
    op.drop_index("ix_tenant_quotas_cohort", table_name="tenant_quotas")
    op.drop_table("tenant_quotas")
