"""Center agents: each agent center's record and the runs handed to its agent.

Expand only: two new tables, nothing existing changes, so processes of revision 0012 keep
running next to those of 0013 during a rolling upgrade (they neither read nor write these).

``center_agents``: per agent center, the hash of its agent's token, the lease of its runs, when
its agent last synced, its version, its sync period and capacity. ``agent_runs``: the runs the
control plane handed to an agent (submission, what is asked: run, cancel, checkpoint) and what
the agent last reported of each (state, exit code, times, reason, usage, the tail of its log).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from suanwang.server.database.migrations.columns import ts

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "center_agents",
        sa.Column("center_id", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=True),
        sa.Column("lease_s", sa.Float(), nullable=True),
        ts("last_seen", nullable=True),
        sa.Column("agent_version", sa.String(40), nullable=True),
        sa.Column("every_s", sa.Float(), nullable=True),
        sa.Column("capacity", sa.JSON(), nullable=True),
        ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("center_id", name="pk_center_agents"),
    )
    op.create_table(
        "agent_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ref", sa.String(500), nullable=False),
        sa.Column("center_id", sa.String(100), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("submission", sa.JSON(), nullable=False),
        sa.Column("ask", sa.String(16), nullable=False),
        sa.Column("resume_from", sa.String(1000), nullable=True),
        sa.Column("state", sa.String(16), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        ts("started_at", nullable=True),
        ts("ended_at", nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("usage", sa.JSON(), nullable=True),
        sa.Column("log_tail", sa.Text(), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        ts("created_at", nullable=False),
        ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agent_runs"),
        sa.UniqueConstraint("ref", name="uq_agent_runs_ref"),
    )
    op.create_index("ix_agent_runs_center_done", "agent_runs", ["center_id", "done"])


def downgrade() -> None:
    op.drop_index("ix_agent_runs_center_done", table_name="agent_runs")
    op.drop_table("agent_runs")
    op.drop_table("center_agents")
