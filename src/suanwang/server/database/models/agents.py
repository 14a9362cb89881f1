"""Center agents (migration 0013): each agent center's record and the runs handed to its agent
(docs/centers.md, "Agents")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from suanwang.server.database.models.base import Base


class CenterAgent(Base):
    """An agent center: the hash of its agent's token (set by ``suanwang agent token
    create``), the lease the control plane gives its runs (written by the workers that serve
    it from the platform file), and what its agent last said: when, its version, how often it
    syncs, its capacity (``{slots_cpus, slots_cards, used_cpus, used_cards, cards_by_model}``),
    and the highest sync number applied (``applied_seq``, null before a numbered sync: a sync
    not numbered above it is refused, :mod:`suanwang.agent.protocol`)."""

    __tablename__ = "center_agents"

    center_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    token_hash: Mapped[str | None] = mapped_column(String(64))
    lease_s: Mapped[float | None] = mapped_column(Float)
    last_seen: Mapped[datetime | None]
    agent_version: Mapped[str | None] = mapped_column(String(40))
    every_s: Mapped[float | None] = mapped_column(Float)
    capacity: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    # the highest sync number applied (migration 0017), null: no numbered sync yet
    applied_seq: Mapped[int | None] = mapped_column(BigInteger)


class AgentRun(Base):
    """One run handed to a center's agent: ``ref`` is the control plane's reference
    (``agent:<center>/<job>[.<attempt>][.resume-<hash>]``, one per run: the same job, attempt and
    checkpoint always give the same ref), ``submission`` the :class:`Submission` as JSON, ``ask``
    what the agent must do with it (``run``, ``cancel``, ``checkpoint``), ``resume_from`` the
    checkpoint it resumes from. The ``reported_*`` columns are what the agent last said of it
    (``state`` null: it never reported it), ``log_tail`` the end of its output, ``done``: the
    agent has been told to forget it (its end is recorded here)."""

    __tablename__ = "agent_runs"
    __table_args__ = (
        UniqueConstraint("ref"),
        Index("ix_agent_runs_center_done", "center_id", "done"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(500))
    center_id: Mapped[str] = mapped_column(String(100))
    job_id: Mapped[str] = mapped_column(String(36))
    attempt: Mapped[int] = mapped_column(Integer)
    submission: Mapped[dict[str, Any]]
    ask: Mapped[str] = mapped_column(String(16))
    resume_from: Mapped[str | None] = mapped_column(String(1000))
    state: Mapped[str | None] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(Text, default="")
    # why a lost run was lost (ExecutorStatus.cause; migration 0016), null: the agent did not say
    cause: Mapped[str | None] = mapped_column(String(16))
    usage: Mapped[dict[str, Any] | None]
    log_tail: Mapped[str] = mapped_column(Text, default="")
    done: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
