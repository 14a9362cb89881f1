"""Jobs and their lifecycle: events, runs fenced off after a failover, drained centers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from suanwang.core.lifecycle import JobState
from suanwang.server.database.models.base import Base, new_id, utcnow

_JOB_STATES = ", ".join(f"'{s.value}'" for s in JobState)


class JobRow(Base):
    """A submitted job: its spec as sent, its lifecycle state and where it was placed.

    ``pool_model`` is the accelerator (or CPU) model of the pool it holds at ``center_id``;
    ``decision`` the placement explanation; ``executor_ref`` the executor's handle.
    ``start_at`` is the planned start (null: at once); a scheduled job is handed to its
    executor only once it has come, so deferred jobs wait in ``scheduled``.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        CheckConstraint(f"state IN ({_JOB_STATES})", name="state"),
        Index("ix_jobs_tenant_submitted", "tenant_id", "submitted_at", "id"),
        Index("ix_jobs_submitted", "submitted_at", "id"),
        Index("ix_jobs_state", "state"),
        Index("ix_jobs_center_state", "center_id", "state"),
        Index("ix_jobs_state_start", "state", "start_at"),
        Index("ix_jobs_billed", "billed_at", "state"),  # billing: finished, not yet charged
        Index("ix_jobs_state_ref", "state", "executor_ref"),  # handed over (0018)
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16), default=JobState.PENDING.value)
    center_id: Mapped[str | None] = mapped_column(String(100))
    pool_model: Mapped[str | None] = mapped_column(String(100))
    decision: Mapped[dict[str, Any] | None]
    executor_ref: Mapped[str | None] = mapped_column(String(500))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    logs: Mapped[str] = mapped_column(Text, default="", server_default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    resume_from: Mapped[str | None] = mapped_column(String(1000))
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)
    scheduled_at: Mapped[datetime | None]
    start_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # billing (issue 5, migration 0004): when the job's usage was metered and charged
    billed_at: Mapped[datetime | None]
    # the runs an answering executor reported lost (migration 0015), oldest first:
    # ``{"center", "reason", "attempt"}`` each (null: none). Placement keeps the job away from
    # those centers while another can run it; after ``max_lost_runs`` the job fails
    # (:func:`suanwang.server.services.runs.give_up_run`, docs/centers.md)
    lost_runs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)

    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", order_by="JobEvent.id", cascade="all, delete-orphan"
    )

    @property
    def job_state(self) -> JobState:
        return JobState(self.state)


class JobEvent(Base):
    """One lifecycle transition of a job (``from_state`` is null for the submission)."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job", "job_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    job: Mapped[JobRow] = relationship(back_populates="events")


class RunFence(Base):
    """A run the platform gave up on (its center was unreachable, or it was moved away).

    Once the center answers again the run is cancelled there (``fenced_at`` set), so a copy
    that Slurm recovers from saved state never finishes next to the job's new run.
    """

    __tablename__ = "run_fences"
    __table_args__ = (
        UniqueConstraint("center_id", "executor_ref"),
        Index("ix_run_fences_open", "center_id", "fenced_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    center_id: Mapped[str] = mapped_column(String(100))
    executor_ref: Mapped[str] = mapped_column(String(500))
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    fenced_at: Mapped[datetime | None]


class CenterDrain(Base):
    """A drained center: no new placements; checkpointable jobs move away, others finish."""

    __tablename__ = "center_drains"

    center_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    drained_at: Mapped[datetime] = mapped_column(default=utcnow)
    by_tenant: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(500), default="", server_default="")
