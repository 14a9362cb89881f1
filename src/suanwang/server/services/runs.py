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
from suanwang.executors.base import (
    CHECKPOINT_EXIT_CODE,
    LEASE,
    PREEMPTED,
    Executor,
    ExecutorError,
    ExecutorStatus,
)
from suanwang.executors.slurm import LEASE_EXIT_CODE
from suanwang.server.database.models import JobRow, RunFence
from suanwang.server.models.jobs import transition
from suanwang.server.services.jobs_view import avoided, backoff_until
from suanwang.server.services.live import LiveNetwork
from suanwang.server.settings import DEFAULT_LOST_RUN_BACKOFF_S, DEFAULT_MAX_LOST_RUNS

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


#: runs of a job an answering executor may report lost before the job fails (``serve
#: --max-lost-runs``, :attr:`~suanwang.server.settings.Settings.max_lost_runs`)
MAX_LOST_RUNS = DEFAULT_MAX_LOST_RUNS
#: seconds a job waits after such a loss before it goes back to a center it lost runs at,
#: doubled per further loss (``serve --lost-run-backoff-s``,
#: :attr:`~suanwang.server.settings.Settings.lost_run_backoff_s`)
LOST_RUN_BACKOFF_S = DEFAULT_LOST_RUN_BACKOFF_S


def not_the_jobs_doing(status: ExecutorStatus) -> bool:
    """Whether the executor's ``lost`` says the run was stopped for reasons of the platform or
    the center, not of the job or that center's failing for it: it stopped itself because no
    word came from the platform for longer than its lease (the control plane was down, or
    could not reach the center: cause :data:`~suanwang.executors.base.LEASE`), or the cluster
    preempted it (:data:`~suanwang.executors.base.PREEMPTED`). Such a loss counts as a
    failover's does: for nothing (:func:`give_up_run`'s ``reported`` is None). Any other cause
    (:data:`~suanwang.executors.base.CENTER`) counts against the job, whatever its reason says.

    Decided by the status's ``cause``, never by its free-text reason; only a status that
    carries no cause (an agent older than causes, a local run recorded before them) falls
    back to the old text rule: exit code :data:`LEASE_EXIT_CODE`, ``lease`` in the reason, or
    a reason starting ``slurm PREEMPTED``."""
    if status.cause is not None:
        return status.cause in (LEASE, PREEMPTED)
    return (  # no cause said: the rule of the statuses from before causes
        status.exit_code == LEASE_EXIT_CODE
        or "lease" in status.reason.lower()
        or status.reason.startswith("slurm PREEMPTED")
    )


def lost_runs_said(lost_runs: list[dict[str, Any]]) -> str:
    """``c1 (reason), c2 (reason), ...``: where each run was lost and what its executor said."""
    return ", ".join(f"{lost.get('center')} ({lost.get('reason')})" for lost in lost_runs)


def give_up_run(
    session: Session,
    row: JobRow,
    reason: str,
    live: LiveNetwork,
    *,
    reported: str | None = None,
    max_lost_runs: int = MAX_LOST_RUNS,
    backoff_s: float = LOST_RUN_BACKOFF_S,
) -> None:
    """The job's run at its center is lost: fence it and put the job back to be placed.

    ``lost`` (with the center, the run, the reason and the tokens the run reported, see
    :func:`usage_detail`) then ``pending`` with the next attempt number and, for a
    checkpointable job that wrote a checkpoint, where to resume from; all at ``live.clock()``.

    ``reported``: what the run's executor said when it reported the run lost while its center
    answered (a node failure, Slurm's ``JobLaunchFailure``, a job the cluster forgot): such a
    loss is recorded with the job (``jobs.lost_runs``), the placer keeps the job away from that
    center while another can run it, and the job's ``max_lost_runs``-th such loss fails it
    (``lost`` then ``failed``, saying where each run was lost and why) instead of placing it
    again. The loss is recorded with its time (``at``): the job goes back to a center it lost
    runs at (none other can run it) only after a back-off from then, ``backoff_s`` doubled per
    further loss (:func:`~suanwang.server.services.jobs_view.backoff_until`, which the
    ``pending`` event states as ``back_off_until``). None (failover: a center silent past its
    grace, a power cut) counts no loss: the job is not at fault, nor backs off.
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
    losses = list(row.lost_runs or [])
    counted: dict[str, Any] = {}
    if reported is not None:
        loss = {"center": center, "reason": reported, "attempt": row.attempt}
        losses.append({**loss, "at": now.isoformat()})
        counted = {"lost_runs": len(losses), "max_lost_runs": max_lost_runs}
    transition(
        session=session,
        job=row,
        to=JobState.LOST,
        detail={
            "center": center,
            "ref": ref,
            "reason": reason,
            "attempt": row.attempt,
            **counted,
            **usage,
        },
        now=now,
    )
    if reported is not None:
        row.lost_runs = losses  # written with the transitions below (a new list: JSON)
    if reported is not None and len(losses) >= max_lost_runs:
        why = f"lost its run {len(losses)} times: {lost_runs_said(losses)}"
        transition(
            session=session,
            job=row,
            to=JobState.FAILED,
            detail={"reason": why, "lost_runs": losses},
            updates={
                "center_id": None,
                "pool_model": None,
                "executor_ref": None,
                "start_at": None,
                "decision": {"placed": False, "reason": why},
            },
            now=now,
        )
        log.warning("job %s failed: %s", row.id, why)
        return
    ckpt = live.checkpoint_dir(row.id)
    resume = str(ckpt) if bool(row.spec.get("checkpointable")) and has_checkpoint(ckpt) else None
    again = f"placing again after losing its run at {center}"
    away = avoided(losses)
    if away:
        again += (
            f"; kept away from {', '.join(away)} while another center can run it "
            f"({len(losses)} of at most {max_lost_runs} runs lost where the center answered)"
        )
    until = backoff_until(len(losses), now, backoff_s) if reported is not None else None
    if until is not None:
        wait = (until - now).total_seconds()
        again += (
            f"; back to {', '.join(away or ())} not before {until.isoformat()} "
            f"(a back-off of {wait:g} s after {len(losses)} lost runs)"
        )
    transition(
        session=session,
        job=row,
        to=JobState.PENDING,
        detail={
            "reason": again,
            "resume_from": resume,
            "checkpoint_bytes": dir_size_bytes(ckpt) if resume else 0,
            **({"avoids": list(away)} if away else {}),
            **({"back_off_until": until.isoformat()} if until is not None else {}),
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
