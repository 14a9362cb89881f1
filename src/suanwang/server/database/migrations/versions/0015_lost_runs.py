"""The runs of a job that an answering executor reported lost (``jobs.lost_runs``).

Expand only: one nullable column, so processes of revision 0014 keep running next to those of
0015 during a rolling upgrade. They neither read nor write it: a job they give up keeps the
losses recorded before (none added) and is placed as before, anywhere; processes of 0015 read
null as no loss.

``jobs.lost_runs``: ``[{"center", "reason", "attempt"}, ...]``, oldest first; placement keeps
the job away from those centers while another can run it, and the job fails once it has lost
``max_lost_runs`` runs that way (docs/centers.md, "A run lost at an answering center").

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("lost_runs", sa.JSON(), nullable=True))


def downgrade() -> None:
    # plain ALTER TABLE (SQLite >= 3.35): a batch copy of ``jobs`` would cascade-delete events
    op.drop_column("jobs", "lost_runs")
