"""Usage records meter storage and tokens: ``storage_gb_months`` (the job's staged data held at
the center for the run), ``storage_cny`` (its charge at the posted storage price) and
``tokens`` (what the run reported serving). Records written before this migration had no
storage price and no token metering: 0 for all three, so their amounts are unchanged.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from suanwang.server.database.migrations.columns import money, qty

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


COLUMNS = (("storage_gb_months", qty), ("storage_cny", money), ("tokens", sa.BigInteger))


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
