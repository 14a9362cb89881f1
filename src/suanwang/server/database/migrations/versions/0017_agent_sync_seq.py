"""The highest sync number applied for each agent center (``center_agents.applied_seq``).

Expand only: one nullable column, so processes of revision 0016 keep running next to those of
0017 during a rolling upgrade. They neither read nor write it, and serve only agents of
protocol 1 (unnumbered syncs, applied as they come); processes of 0017 read null as no
numbered sync yet, and refuse a numbered sync not above the number stored
(:mod:`suanwang.agent.protocol`).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("center_agents", sa.Column("applied_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # plain ALTER TABLE (SQLite >= 3.35), as 0016
    op.drop_column("center_agents", "applied_seq")
