"""The replicated control plane (migrations 0011, 0014): leaders' terms, the cluster's members
and the centers they hold, and centers' reachability (docs/operations.md, "Replicated control
plane")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from suanwang.server.database.models.base import Base


class LeaderTerm(Base):
    """A singleton duty's current term: one more at each election; ``holder`` is the member
    elected then (a :class:`ClusterMember` id; no foreign key: the term outlives it)."""

    __tablename__ = "leader_terms"

    duty: Mapped[str] = mapped_column(String(40), primary_key=True)
    term: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    holder: Mapped[str] = mapped_column(String(36))
    elected_at: Mapped[datetime]


class ClusterMember(Base):
    """An API replica (``api``) or a worker (``worker``; ``serve`` with its services is
    ``serve``): where it runs, since when, its last heartbeat and the duties it leads
    (``{duty: term}``)."""

    __tablename__ = "cluster_members"
    __table_args__ = (Index("ix_cluster_members_heartbeat", "heartbeat_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    version: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    duties: Mapped[dict[str, Any]]
    #: the centers a worker's executors reach (None: a replica, or a version before 0014)
    serves: Mapped[list[str] | None] = mapped_column(JSON(), nullable=True)
    #: the centers it holds now: their hand-over, polling and failover are its own
    holds: Mapped[list[str] | None] = mapped_column(JSON(), nullable=True)


class CenterHealthRow(Base):
    """A center's reachability as the worker holding it sees it (migration 0014): since when
    it has not answered (None: it answers) and the last error, so that every worker (the
    placer above all) acts on what the center's holder saw."""

    __tablename__ = "center_health"

    center_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    down_since: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(Text)
    reported_by: Mapped[str] = mapped_column(String(36))
    reported_at: Mapped[datetime]
