"""Failover and drain: job attempts and checkpoints to resume from, run fences, drained centers.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from suanwang.server.database.migrations.columns import bigid, ts

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("resume_from", sa.String(1000), nullable=True))
    op.create_table(
        "run_fences",
        sa.Column("id", bigid(), nullable=False, autoincrement=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(100), nullable=False),
        sa.Column("executor_ref", sa.String(500), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        ts("created_at", nullable=False),
        ts("fenced_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_run_fences"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_run_fences_job_id_jobs", ondelete="CASCADE"
        ),
        sa.UniqueConstraint(
            "center_id", "executor_ref", name="uq_run_fences_center_id_executor_ref"
        ),
    )  # fmt: skip
    op.create_index("ix_run_fences_open", "run_fences", ["center_id", "fenced_at"])
    op.create_table(
        "center_drains",
        sa.Column("center_id", sa.String(100), nullable=False),
        ts("drained_at", nullable=False),
        sa.Column("by_tenant", sa.String(36), nullable=True),
        sa.Column("reason", sa.String(500), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("center_id", name="pk_center_drains"),
    )


def downgrade() -> None:
    op.drop_table("center_drains")
    op.drop_index("ix_run_fences_open", table_name="run_fences")
    op.drop_table("run_fences")
    # plain ALTER TABLE (SQLite >= 3.35): a batch copy of ``jobs`` would cascade-delete events
    op.drop_column("jobs", "resume_from")
    op.drop_column("jobs", "attempt")
