"""The audit log (migration 0010): one row per change an operator or provider made (and every
key change), append-only.

No code path updates or deletes a row, and the database refuses to (a trigger on UPDATE and
DELETE, on PostgreSQL on TRUNCATE too). Ids are plain (no foreign keys): the record outlives
the tenants it names, and ``actor_name`` keeps the actor's name as it was.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from suanwang.server.database.models.base import Base


class AuditEntry(Base):
    """Who (``actor_*``; ``via``: ``api``, or ``cli`` for the database commands, whose actor is
    the Unix user), when (the server's clock), what (``action``, ``target``, ``detail``: a small
    JSON of the change) and the request id."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at", "id"),
        Index("ix_audit_log_actor", "actor_tenant_id", "id"),
        Index("ix_audit_log_action", "action", "id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime]
    via: Mapped[str] = mapped_column(String(8))
    actor_tenant_id: Mapped[str | None] = mapped_column(String(36))
    actor_name: Mapped[str] = mapped_column(String(100))
    actor_key_prefix: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]]
    request_id: Mapped[str] = mapped_column(String(64))
