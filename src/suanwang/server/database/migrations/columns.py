"""Column types and columns the migrations under ``versions/`` share.

Each is written once here instead of once per migration. They are frozen like the migrations
themselves: a migration that ran must build the same schema forever, so a new kind of column
gets a new function here, and none of these is ever changed (the ORM's current types live in
``database.models.types``).

Exact decimals are NUMERIC on PostgreSQL; on SQLite, which has no exact decimal type, they are
scaled integers (see ``database.models.types``): money NUMERIC(18, 2), quantities NUMERIC(20, 6),
prices per SCU NUMERIC(18, 4).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def money() -> sa.types.TypeEngine[Any]:
    return sa.Numeric(18, 2).with_variant(sa.BigInteger(), "sqlite")


def qty() -> sa.types.TypeEngine[Any]:
    return sa.Numeric(20, 6).with_variant(sa.BigInteger(), "sqlite")


def price() -> sa.types.TypeEngine[Any]:
    return sa.Numeric(18, 4).with_variant(sa.BigInteger(), "sqlite")


def bigid() -> sa.types.TypeEngine[Any]:
    """A 64-bit id on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY
    autoincrements."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def ts(name: str, *, nullable: bool) -> sa.Column[Any]:
    """A timestamp with time zone."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)
