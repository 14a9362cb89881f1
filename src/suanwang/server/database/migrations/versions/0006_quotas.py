"""Trial quotas: grants of free card-hours, storage GB-months and tokens, and their use.

``quota_grants`` holds what an operator granted a tenant (and how much of it is used, checked
``0 <= used <= granted`` by the database); ``quota_uses`` records, per usage record, what each
grant covered (``value_cny``: the part of the record's charge the platform funded). Quantities
are NUMERIC(20, 6), money NUMERIC(18, 2) (on SQLite scaled integers, like 0004_billing).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from suanwang.server.database.migrations.columns import bigid, money, qty, ts

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


RESOURCES = (("card_hours", qty), ("storage_gb_months", qty), ("tokens", sa.BigInteger))


def upgrade() -> None:
    op.create_table(
        "quota_grants",
        sa.Column("id", bigid(), nullable=False, autoincrement=True),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("ref", sa.String(200), nullable=False),
        *[
            column
            for name, kind in RESOURCES
            for column in (
                sa.Column(name, kind(), nullable=False),
                sa.Column(f"{name}_used", kind(), nullable=False),
            )
        ],
        ts("expires_at", nullable=True),
        sa.Column("memo", sa.String(500), nullable=False, server_default=""),
        ts("granted_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quota_grants"),
        sa.UniqueConstraint("ref", name="uq_quota_grants_ref"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_quota_grants_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        *[
            sa.CheckConstraint(
                f"{name}_used >= 0 AND {name}_used <= {name}",
                name=f"ck_quota_grants_{name}_within",
            )
            for name, _ in RESOURCES
        ],
    )  # fmt: skip
    op.create_index("ix_quota_grants_tenant", "quota_grants", ["tenant_id", "expires_at"])
    op.create_table(
        "quota_uses",
        sa.Column("id", bigid(), nullable=False, autoincrement=True),
        sa.Column("grant_id", bigid(), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("usage_record_id", bigid(), nullable=False),
        sa.Column("resource", sa.String(24), nullable=False),
        sa.Column("quantity", qty(), nullable=False),
        sa.Column("value_cny", money(), nullable=False),
        sa.Column("transaction_id", bigid(), nullable=False),
        ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quota_uses"),
        sa.UniqueConstraint(
            "usage_record_id", "grant_id", "resource",
            name="uq_quota_uses_usage_record_id_grant_id_resource",
        ),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["quota_grants.id"], name="fk_quota_uses_grant_id_quota_grants",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["usage_record_id"], ["usage_records.id"],
            name="fk_quota_uses_usage_record_id_usage_records",
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"], ["ledger_transactions.id"],
            name="fk_quota_uses_transaction_id_ledger_transactions",
        ),
        sa.CheckConstraint("quantity > 0 AND value_cny >= 0", name="ck_quota_uses_positive"),
    )  # fmt: skip
    op.create_index("ix_quota_uses_job", "quota_uses", ["job_id"])
    op.create_index("ix_quota_uses_grant", "quota_uses", ["grant_id"])
    op.create_index("ix_quota_uses_transaction", "quota_uses", ["transaction_id"])


def downgrade() -> None:
    for ix in ("transaction", "grant", "job"):
        op.drop_index(f"ix_quota_uses_{ix}", table_name="quota_uses")
    op.drop_table("quota_uses")
    op.drop_index("ix_quota_grants_tenant", table_name="quota_grants")
    op.drop_table("quota_grants")
