"""Why an agent's lost run was lost (``agent_runs.cause``).

Expand only: one nullable column, so processes of revision 0015 keep running next to those of
0016 during a rolling upgrade. They neither read nor write it; processes of 0016 read null as
"the agent did not say", which keeps the old text rule for that run
(:func:`~suanwang.server.services.runs.not_the_jobs_doing`).

``agent_runs.cause``: ``lease``, ``preempted`` or ``center``
(:attr:`~suanwang.executors.base.ExecutorStatus.cause`), or null.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("agent_runs", sa.Column("cause", sa.String(16), nullable=True))


def downgrade() -> None:
    # plain ALTER TABLE (SQLite >= 3.35), as 0015
    op.drop_column("agent_runs", "cause")
