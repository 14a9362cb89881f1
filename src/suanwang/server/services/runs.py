"""A run at its center as the services see it: what it reported when it ended, the end it
recorded itself, and giving it up (fenced, its job placed again). Shared by the reconciler,
which watches runs, and failover, which gives up the runs of unreachable centers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.core.lifecycle import JobState
from suanwang.executors.base import CHECKPOINT_EXIT_CODE, Executor, ExecutorError, ExecutorStatus
from suanwang.server.database.models import JobRow, RunFence
from suanwang.server.models.jobs import transition
from suanwang.server.services.live import LiveNetwork

log = logging.getLogger("suanwang.failover")


def dir_size_bytes(path: Path) -> int:
    total = 0
    if path.is_dir():
        for p in path.rglob("*"):
            if p.is_file():
                total += p.stat().st_size
    return total


def dir_size_gb(path: Path) -> float:
    return dir_size_bytes(path) / 1e9


def has_checkpoint(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def usage_detail(executor: Executor, ref: str | None, job_id: str) -> dict[str, Any]:
    """What to add to the detail of the event that ends a run: the tokens it reported.

    ``{"usage": {"tokens": N}}`` when the run reported tokens or its usage file has problems,
    then also ``"usage_problems": [...]`` (and a warning naming the job); nothing when it
    reported nothing, or when the executor cannot say (:class:`ExecutorError`: the run's end
    is recorded without usage rather than not at all). Billing reads ``usage`` from the event
    that ends each run (``succeeded``, ``failed``, ``cancelled``, ``migrating``, ``lost``).
    """
    if not ref:
        return {}
    try:
        usage = executor.reported_usage(ref)
    except ExecutorError as exc:
        log.warning("job %s: cannot read the usage its run %s reported: %s", job_id, ref, exc)
        return {}
    if usage.tokens <= 0 and not usage.problems:
        return {}
    detail: dict[str, Any] = {"usage": {"tokens": usage.tokens}}
    if usage.problems:
        detail["usage_problems"] = list(usage.problems)
        log.warning(
            "job %s: the usage its run %s reported has problems (%d tokens counted): %s",
            job_id,
            ref,
            usage.tokens,
            "; ".join(usage.problems),
        )
    return detail


def give_up_run(session: Session, row: JobRow, reason: str, live: LiveNetwork) -> None:
    """The job's run at its center is lost: fence it and put the job back to be placed.

    ``lost`` (with the center, the run, the reason and the tokens the run reported, see
    :func:`usage_detail`) then ``pending`` with the next attempt number and, for a
    checkpointable job that wrote a checkpoint, where to resume from; all at ``live.clock()``.
    """
    now = live.clock()
    center, ref = row.center_id or "", row.executor_ref
    executor = live.executors.get(center)
    usage = usage_detail(executor, ref, row.id) if executor is not None else {}
    if ref:
        exists = session.scalar(
            select(RunFence.id).where(RunFence.center_id == center, RunFence.executor_ref == ref)
        )
        if exists is None:
            fence = RunFence(
                job_id=row.id, center_id=center, executor_ref=ref, reason=reason, created_at=now
            )
            session.add(fence)
    transition(
        session=session,
        job=row,
        to=JobState.LOST,
        detail={
            "center": center,
            "ref": ref,
            "reason": reason,
            "attempt": row.attempt,
            **usage,
        },
        now=now,
    )
    ckpt = live.checkpoint_dir(row.id)
    resume = str(ckpt) if bool(row.spec.get("checkpointable")) and has_checkpoint(ckpt) else None
    transition(
        session=session,
        job=row,
        to=JobState.PENDING,
        detail={
            "reason": f"placing again after losing its run at {center}",
            "resume_from": resume,
            "checkpoint_bytes": dir_size_bytes(ckpt) if resume else 0,
        },
        updates={
            "center_id": None,
            "pool_model": None,
            "executor_ref": None,
            "start_at": None,
            "attempt": row.attempt + 1,
            "resume_from": resume,
        },
        now=now,
    )
    log.warning("job %s lost at %s (%s): placing it again", row.id, center, reason)


def recorded_status(executor: Executor, ref: str, why: str) -> ExecutorStatus | None:
    """The end the run recorded itself (its wrapper's exit code), as a status; None if the run
    has recorded no end."""
    code = executor.recorded_exit(ref)
    if code is None:
        return None
    state = (
        JobState.SUCCEEDED
        if code == 0
        else JobState.MIGRATING
        if code == CHECKPOINT_EXIT_CODE
        else JobState.FAILED
    )
    return ExecutorStatus(ref, state, exit_code=code, reason=f"{why} (exit {code})")
