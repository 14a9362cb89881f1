"""Initial schema: tenants, jobs, job_events.

Revision ID: 0001
Revises:
Create Date: 2025-07-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from suanwang.server.database.migrations.columns import bigid, ts

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies: later migrations change these, never the models' current values.
ROLES = "'consumer', 'provider', 'operator'"
STATES = (
    "'pending', 'scheduled', 'running', 'succeeded', 'failed', 'cancelled', 'migrating', 'lost'"
)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("api_key_hash", sa.String(64), nullable=False),
        ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
        sa.UniqueConstraint("name", name="uq_tenants_name"),
        sa.UniqueConstraint("api_key_hash", name="uq_tenants_api_key_hash"),
        sa.CheckConstraint(f"role IN ({ROLES})", name="ck_tenants_role"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("center_id", sa.String(100), nullable=True),
        sa.Column("pool_model", sa.String(100), nullable=True),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.Column("executor_ref", sa.String(500), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("logs", sa.Text(), server_default="", nullable=False),
        ts("submitted_at", nullable=False),
        ts("scheduled_at", nullable=True),
        ts("started_at", nullable=True),
        ts("ended_at", nullable=True),
        ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_jobs_tenant_id_tenants", ondelete="CASCADE"
        ),
        sa.UniqueConstraint(
            "tenant_id", "idempotency_key", name="uq_jobs_tenant_id_idempotency_key"
        ),
        sa.CheckConstraint(f"state IN ({STATES})", name="ck_jobs_state"),
    )
    op.create_index("ix_jobs_tenant_submitted", "jobs", ["tenant_id", "submitted_at", "id"])
    op.create_index("ix_jobs_submitted", "jobs", ["submitted_at", "id"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_center_state", "jobs", ["center_id", "state"])
    op.create_table(
        "job_events",
        sa.Column("id", bigid(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        ts("at", nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_events"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_job_events_job_id_jobs", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_job_events_job", "job_events", ["job_id", "id"])


def downgrade() -> None:
    op.drop_table("job_events")
    op.drop_table("jobs")
    op.drop_table("tenants")
