"""Centers shared among workers: which centers each member serves and holds, and each
center's reachability as the worker holding it sees it.

Expand only: two nullable columns and a new table, so processes of revision 0013 keep running
next to those of 0014 during a rolling upgrade (they neither read nor write them, and keep
serving every center under row locks, as before).

``cluster_members.serves``: the centers a worker's executors reach (null: a replica, or an
older version); ``cluster_members.holds``: the centers it holds now (hand-over, polling,
failover). ``center_health``: per center, since when it has not answered (null: it answers),
the last error, and which member said so when.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from suanwang.server.database.migrations.columns import ts

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cluster_members") as batch:
        batch.add_column(sa.Column("serves", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("holds", sa.JSON(), nullable=True))
    op.create_table(
        "center_health",
        sa.Column("center_id", sa.String(100), nullable=False),
        ts("down_since", nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reported_by", sa.String(36), nullable=False),
        ts("reported_at", nullable=False),
        sa.PrimaryKeyConstraint("center_id", name="pk_center_health"),
    )


def downgrade() -> None:
    op.drop_table("center_health")
    with op.batch_alter_table("cluster_members") as batch:
        batch.drop_column("holds")
        batch.drop_column("serves")
