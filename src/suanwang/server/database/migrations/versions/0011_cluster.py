"""The replicated control plane: leaders' terms and the cluster's members.

Expand only: two new tables, nothing existing changes, so processes of revision 0010 keep
running next to those of 0011 during a rolling upgrade (they neither read nor write these).

``leader_terms``: one row per singleton duty (``placement``, ``migrations``); ``term`` grows by
one at each election, and the holder's writes check it in their own transaction (the fence of
docs/operations.md, "Replicated control plane"). ``cluster_members``: each API replica and
worker, its heartbeat and the duties it leads (``{duty: term}``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from suanwang.server.database.migrations.columns import bigid, ts

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leader_terms",
        sa.Column("duty", sa.String(40), nullable=False),
        sa.Column("term", bigid(), nullable=False),
        sa.Column("holder", sa.String(36), nullable=False),
        ts("elected_at", nullable=False),
        sa.PrimaryKeyConstraint("duty", name="pk_leader_terms"),
    )
    op.create_table(
        "cluster_members",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        ts("started_at", nullable=False),
        ts("heartbeat_at", nullable=False),
        sa.Column("duties", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cluster_members"),
    )
    op.create_index("ix_cluster_members_heartbeat", "cluster_members", ["heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_cluster_members_heartbeat", table_name="cluster_members")
    op.drop_table("cluster_members")
    op.drop_table("leader_terms")
