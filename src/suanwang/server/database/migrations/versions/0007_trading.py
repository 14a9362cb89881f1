"""Trading: providers' offers and consumers' reservations (docs/billing.md, "Trading").

Prices per SCU are NUMERIC(18, 4), money NUMERIC(18, 2), SCU NUMERIC(20, 6); on SQLite, which
has no exact decimal type, scaled integers (like 0004_billing).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from suanwang.server.database.migrations.columns import bigid, money, price, qty, ts

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _window() -> list[sa.Column[Any]]:
    return [
        ts("starts_at", nullable=False),
        ts("ends_at", nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "offers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(100), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("precision", sa.String(8), nullable=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("price_cny_per_scu", price(), nullable=False),
        *_window(),
        ts("created_at", nullable=False),
        ts("withdrawn_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_offers"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_offers_tenant_id_tenants", ondelete="CASCADE"
        ),
        sa.CheckConstraint(
            "type IN ('on_demand', 'reserved', 'idle_discount')", name="ck_offers_type"
        ),
        sa.CheckConstraint("units > 0 AND price_cny_per_scu > 0", name="ck_offers_positive"),
        sa.CheckConstraint("ends_at > starts_at", name="ck_offers_window"),
    )
    op.create_index("ix_offers_pool", "offers", ["center_id", "model", "ends_at"])
    op.create_index("ix_offers_ends", "offers", ["ends_at"])
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("offer_id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(100), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("precision", sa.String(8), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        *_window(),
        sa.Column("price_cny_per_scu", price(), nullable=False),
        sa.Column("scu", qty(), nullable=False),
        sa.Column("amount_cny", money(), nullable=False),
        sa.Column("transaction_id", bigid(), nullable=True),
        ts("created_at", nullable=False),
        ts("cancelled_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reservations"),
        sa.ForeignKeyConstraint(
            ["offer_id"], ["offers.id"], name="fk_reservations_offer_id_offers", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_reservations_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"], ["ledger_transactions.id"],
            name="fk_reservations_transaction_id_ledger_transactions",
        ),
        sa.CheckConstraint("units > 0 AND amount_cny >= 0", name="ck_reservations_positive"),
        sa.CheckConstraint("ends_at > starts_at", name="ck_reservations_window"),
    )  # fmt: skip
    op.create_index("ix_reservations_offer", "reservations", ["offer_id", "cancelled_at"])
    op.create_index("ix_reservations_tenant", "reservations", ["tenant_id", "created_at"])
    op.create_index("ix_reservations_pool", "reservations", ["center_id", "model", "ends_at"])


def downgrade() -> None:
    for ix in ("pool", "tenant", "offer"):
        op.drop_index(f"ix_reservations_{ix}", table_name="reservations")
    op.drop_table("reservations")
    op.drop_index("ix_offers_ends", table_name="offers")
    op.drop_index("ix_offers_pool", table_name="offers")
    op.drop_table("offers")
