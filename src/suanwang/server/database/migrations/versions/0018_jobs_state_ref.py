"""An index of jobs by state and executor reference (``ix_jobs_state_ref``).

The placer's view of the jobs reads, every round, the scheduled jobs already handed to an
executor (a hand-over writes no event: ``JobsView._hand_overs``). By ``ix_jobs_state`` that
visited every scheduled row, deferred ones included (tens of thousands at the issue's scale,
about 3 % of a one-second round); this index answers it from its own entries.

Expand only: an index, which processes of 0017 neither name nor need. It is built in the
migration's transaction (migrations run in one, under the migration lock), so on PostgreSQL
writes to ``jobs`` wait while it builds (0.8 s for a million rows: docs/operations.md).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ix_jobs_state_ref"


def upgrade() -> None:
    op.create_index(_NAME, "jobs", ["state", "executor_ref"])


def downgrade() -> None:
    op.drop_index(_NAME, table_name="jobs")
