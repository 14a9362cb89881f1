"""Billing: settings, ledger accounts, transactions, postings, usage records, jobs.billed_at.

Money columns are NUMERIC(18, 2) (quantities NUMERIC(20, 6)); on SQLite, which has no exact
decimal type, they are integers of fen (micro-units), see ``database.models.Money``.
Jobs that had already ended before this migration are marked billed: billing starts here.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from suanwang.server.database.migrations.columns import bigid, money, qty, ts

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", ts("billed_at", nullable=True))
    op.create_index("ix_jobs_billed", "jobs", ["billed_at", "state"])
    op.execute(
        "UPDATE jobs SET billed_at = updated_at WHERE state IN ('succeeded', 'failed', 'cancelled')"
    )
    op.create_table(
        "billing_settings",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_billing_settings"),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=True),
        sa.Column("balance", money(), nullable=False),
        ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.CheckConstraint(
            "kind NOT IN ('prepaid', 'held') OR balance >= 0", name="ck_accounts_non_negative"
        ),
    )
    op.create_index("ix_accounts_tenant", "accounts", ["tenant_id"])
    op.create_table(
        "ledger_transactions",
        sa.Column("id", bigid(), nullable=False, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(200), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=True),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("amount", money(), nullable=False),
        sa.Column("commission", money(), nullable=False),
        sa.Column("memo", sa.String(500), nullable=False, server_default=""),
        ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_transactions"),
        sa.UniqueConstraint("ref", name="uq_ledger_transactions_ref"),
    )
    op.create_index(
        "ix_ledger_transactions_tenant", "ledger_transactions", ["tenant_id", "created_at"]
    )
    op.create_index("ix_ledger_transactions_kind", "ledger_transactions", ["kind", "created_at"])
    op.create_index("ix_ledger_transactions_job", "ledger_transactions", ["job_id"])
    op.create_table(
        "ledger_postings",
        sa.Column("id", bigid(), nullable=False, autoincrement=True),
        sa.Column("transaction_id", bigid(), nullable=False),
        sa.Column("account_id", sa.String(120), nullable=False),
        sa.Column("amount", money(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_postings"),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name="fk_ledger_postings_transaction_id_ledger_transactions",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_ledger_postings_account_id_accounts"
        ),
    )
    op.create_index("ix_ledger_postings_account", "ledger_postings", ["account_id"])
    op.create_index("ix_ledger_postings_transaction", "ledger_postings", ["transaction_id"])
    op.create_table(
        "usage_records",
        sa.Column("id", bigid(), nullable=False, autoincrement=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("run_event_id", bigid(), nullable=False),
        sa.Column("center_id", sa.String(100), nullable=False),
        sa.Column("pool_model", sa.String(100), nullable=False),
        sa.Column("precision", sa.String(8), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        ts("started_at", nullable=False),
        ts("ended_at", nullable=False),
        sa.Column("end_state", sa.String(16), nullable=False),
        *[
            sa.Column(name, qty(), nullable=False)
            for name in (
                "seconds", "scu", "it_kwh", "facility_kwh", "green_kwh", "carbon_kg", "data_gb"
            )
        ],
        sa.Column("compute_cny", money(), nullable=False),
        sa.Column("transfer_cny", money(), nullable=False),
        sa.Column("amount_cny", money(), nullable=False),
        sa.Column("billable", sa.Boolean(), nullable=False),
        sa.Column("transaction_id", bigid(), nullable=True),
        ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_usage_records"),
        sa.UniqueConstraint("job_id", "seq", name="uq_usage_records_job_id_seq"),
        sa.UniqueConstraint("run_event_id", name="uq_usage_records_run_event_id"),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name="fk_usage_records_transaction_id_ledger_transactions",
        ),
    )  # fmt: skip
    op.create_index("ix_usage_records_transaction", "usage_records", ["transaction_id"])


def downgrade() -> None:
    op.drop_index("ix_usage_records_transaction", table_name="usage_records")
    op.drop_table("usage_records")
    op.drop_index("ix_ledger_postings_transaction", table_name="ledger_postings")
    op.drop_index("ix_ledger_postings_account", table_name="ledger_postings")
    op.drop_table("ledger_postings")
    for ix in ("job", "kind", "tenant"):
        op.drop_index(f"ix_ledger_transactions_{ix}", table_name="ledger_transactions")
    op.drop_table("ledger_transactions")
    op.drop_index("ix_accounts_tenant", table_name="accounts")
    op.drop_table("accounts")
    op.drop_table("billing_settings")
    op.drop_index("ix_jobs_billed", table_name="jobs")
    # plain ALTER TABLE (SQLite >= 3.35): a batch copy of ``jobs`` would cascade-delete events
    op.drop_column("jobs", "billed_at")
