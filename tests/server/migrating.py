"""Moving a test's database to one revision of the migrations, up or down."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine

from suanwang.server.database.session import alembic_config


def step(engine: Engine, how: str, target: str) -> None:
    """``how`` (``upgrade`` or ``downgrade``) the database of ``engine`` to revision
    ``target``, in one transaction."""
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        getattr(command, how)(cfg, target)
