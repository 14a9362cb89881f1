"""Failover, fencing, drain and migration: no accepted job is lost, none finishes twice.

* **Failover.** A center whose executor has not answered for ``lost_after_s`` (``serve
  --lost-after``, default 120 s; longer if its runs may go on longer without word from the
  platform: the executor's ``stop_grace_s``) has its scheduled and running jobs marked
  ``lost`` and placed again elsewhere; checkpointable ones resume from their last
  checkpoint. A run an executor reports lost while its center answers (a node failure, a job
  the cluster forgot) takes the same path at once.
* **Fencing.** Every run given up on is remembered (``run_fences``). When its center answers
  again the run is cancelled there, so a copy recovered from saved state never runs next to
  the job's new run. (Slurm runs also carry a wrapper that never runs a finished job twice.)
* **Drain.** A drained center gets no new jobs; its running checkpointable jobs are asked to
  checkpoint and move; the others finish where they are.
* **Migration.** Every ``replan_s`` the engine (the same policy the simulator proves) looks at
  running checkpointable jobs and moves those worth moving (price, green power), paying for the
  checkpoint's transfer in its cost model.
* **A run that does not checkpoint when asked** (drain, a move, a preemption) within
  ``checkpoint_grace_s`` (default 300 s) is stopped: cancelled at its center, fenced, and placed
  again from its last checkpoint, if it wrote one (``migrating``, the next attempt; the event
  says ``checkpoint_ignored``). Otherwise a run that ignores the signal would hold its units, a
  drained center would never empty and a preempting claim would wait for ever.

A move is always the same steps, each an event of the job: checkpoint requested (signal) →
the run exits with code 85 (``migrating``, checkpoint size and planned destination recorded) →
placed again with the checkpoint to resume from (``scheduled``) → resumed at the destination
(``running``). Checkpoints live in a per-job directory the platform owns
(``checkpoint_root/<job id>``), which every center's jobs can reach (on the testbed: this
machine's disk; across real centers, a shared store).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.jobs import Job
from suanwang.core.lifecycle import JobState
from suanwang.core.network import PRECISION_INDEX
from suanwang.executors.base import Capacity, Executor, ExecutorError
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.state import Running
from suanwang.server.database.models import JobEvent, JobRow, RunFence
from suanwang.server.models.job_specs import to_core_job
from suanwang.server.models.jobs import transition
from suanwang.server.services.calls import CenterCalls, Late
from suanwang.server.services.live import LiveNetwork, tenant_name
from suanwang.server.services.reconciler import Reconciler
from suanwang.server.services.runs import give_up_run, has_checkpoint, recorded_status

log = logging.getLogger("suanwang.failover")
#: seconds a run has to checkpoint once asked before it is stopped (``Migrations``)
CHECKPOINT_GRACE_S = 300.0
CHECKPOINT_IGNORED = "checkpoint_ignored"
#: States of a job that holds (or is about to hold) a run at its center.
HELD = (JobState.SCHEDULED, JobState.RUNNING, JobState.MIGRATING)
CHECKPOINT_REQUESTED = "checkpoint_requested"
RUNNING = JobState.RUNNING.value
#: job ids per query
_CHUNK = 2000


@dataclass
class Failover:
    """One round: probe unreachable centers, fail over the long-lost, fence what came back."""

    sessions: sessionmaker[Session]
    live: LiveNetwork
    lost_after_s: float = 120.0
    batch: int = 500
    #: probes of unreachable centers and cancels of fenced runs: each center's in a thread
    #: of its own (:mod:`.calls`)
    probes: CenterCalls[Capacity] = field(default_factory=lambda: CenterCalls("probe"))
    cancels: CenterCalls[set[int]] = field(default_factory=lambda: CenterCalls("fence"))

    def run_once(self) -> int:
        self.probe()
        return self.fail_over() + self.fence()

    def probe(self) -> None:
        """Ask each center that failed whether it answers again (capacity is a cheap call),
        all at once: one that still hangs delays no other's return."""
        work = {
            center: executor.capacity
            for center in self.live.health.down()
            if (executor := self.live.executors.get(center)) is not None
            and self.live.held_here(center)  # another worker's: its holder probes it
        }
        for center, answer in self.probes.answers(work).items():
            if isinstance(answer, ExecutorError):
                self.live.health.failed(center, str(answer))
            else:
                self.live.health.ok(center)
                log.info("center %s answers again", center)

    def grace_s(self, center: str) -> float:
        """How long ``center`` must be unreachable before its runs are given up:
        ``lost_after_s``, or longer where the center's runs may go on longer without word
        from the platform (the executor's ``stop_grace_s``: a Slurm run's lease and its
        watchdog's period). Before that a run may still finish, or still be running, at the
        center: placed again sooner, a job could run twice."""
        executor = self.live.executors.get(center)
        return max(self.lost_after_s, executor.stop_grace_s if executor is not None else 0.0)

    def fail_over(self) -> int:
        gone = [
            c
            for c in self.live.health.down()
            if self.live.held_here(c) and self.live.health.unreachable_s(c) >= self.grace_s(c)
        ]
        if not gone:
            return 0
        moved = 0
        with self.sessions.begin() as session:
            rows = session.scalars(
                select(JobRow)
                .where(
                    JobRow.center_id.in_(gone),
                    JobRow.state.in_([s.value for s in HELD]),
                )
                .order_by(JobRow.id)
                .limit(self.batch)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                if row.state == JobState.MIGRATING.value and row.executor_ref is None:
                    continue  # already off the center, waiting for a new place
                if self._ended_meanwhile(session, row):
                    moved += 1
                    continue
                secs = self.live.health.unreachable_s(row.center_id or "")
                give_up_run(
                    session,
                    row,
                    f"center {row.center_id} unreachable for {secs:.0f} s "
                    f"(grace {self.grace_s(row.center_id or ''):.0f} s)",
                    self.live,
                )
                moved += 1
        return moved

    def _ended_meanwhile(self, session: Session, row: JobRow) -> bool:
        """Whether the lost run had ended (and recorded its exit); if so, record that end."""
        executor = self.live.executors.get(row.center_id or "")
        if executor is None or not row.executor_ref:
            return False
        status = recorded_status(
            executor, row.executor_ref, "recorded by the run before its center became unreachable"
        )
        if status is None:
            return False
        Reconciler(self.sessions, self.live).apply(session, row, status, row.center_id or "")
        return True

    def fence(self) -> int:
        """Cancel runs given up on at centers that answer again."""
        done = 0
        down = set(self.live.health.down())
        with self.sessions.begin() as session:
            fences = session.scalars(
                select(RunFence)
                .where(RunFence.fenced_at.is_(None))
                .order_by(RunFence.id)
                .limit(self.batch)
                .with_for_update(skip_locked=True)
            ).all()
            by_center: dict[str, list[RunFence]] = {}
            for f in fences:
                if (
                    f.center_id in self.live.executors
                    and f.center_id not in down
                    and self.live.held_here(f.center_id)
                ):
                    by_center.setdefault(f.center_id, []).append(f)
            work = {
                center: partial(
                    _cancel_all,
                    self.live.executors[center],
                    [(f.id, f.executor_ref) for f in group],
                )
                for center, group in by_center.items()
            }
            for center, answer in self.cancels.answers(work).items():
                if isinstance(answer, ExecutorError):
                    self.live.health.failed(center, str(answer))
                    continue
                cancelled = answer.value if isinstance(answer, Late) else answer
                for f in by_center[center]:
                    if f.id in cancelled:
                        self._fenced(session, f)
                        done += 1
        return done

    def _fenced(self, session: Session, f: RunFence) -> None:
        f.fenced_at = now = self.live.clock()
        state = session.get_one(JobRow, f.job_id).state
        session.add(
            JobEvent(
                job_id=f.job_id,
                at=now,
                from_state=state,
                to_state=state,
                detail={
                    "event": "fenced",
                    "center": f.center_id,
                    "ref": f.executor_ref,
                    # why it was given up: its center was lost, or a preemption
                    "reason": f"stale run cancelled: {f.reason}",
                },
            )
        )


def _cancel_all(executor: Executor, refs: Sequence[tuple[int, str]]) -> set[int]:
    """Cancel fenced runs (fence id, run) in turn; the ids of the fences whose run is
    cancelled. Raises the first error (the center does not answer)."""
    done: set[int] = set()
    for fence_id, ref in refs:
        executor.cancel(ref)
        done.add(fence_id)
    return done


@dataclass
class Migrations:
    """Drain and engine-driven moves of running checkpointable jobs (see module docstring)."""

    sessions: sessionmaker[Session]
    live: LiveNetwork
    policy: SuanwangPolicy = field(default_factory=SuanwangPolicy)
    replan_s: float = 3600.0
    #: run first in each round's transaction: raises to refuse the round (an elected leader's
    #: fence, :mod:`suanwang.server.cluster`: it holds until the commit, so no other leader
    #: acts meanwhile); None: nothing to check
    fence: Callable[[Session], None] | None = None
    #: a run asked to checkpoint that is still running this long after is stopped
    checkpoint_grace_s: float = CHECKPOINT_GRACE_S
    #: checkpoint requests and stops: each center's in a thread of its own (:mod:`.calls`),
    #: so a center that hangs holds back neither the others nor the round (in which the
    #: round's transaction, on SQLite the database's write lock, stays open)
    calls: CenterCalls[Asked] = field(default_factory=lambda: CenterCalls("migrate"))
    _last_replan: datetime | None = field(default=None, init=False)

    def run_once(self) -> int:
        now = self.live.clock()
        replan = self._last_replan is None or (
            (now - self._last_replan).total_seconds() >= self.replan_s
        )
        with self.sessions.begin() as session:
            if self.fence is not None:
                self.fence(session)
            drained = self.live.refresh_drained(session)
            rows = session.scalars(
                select(JobRow)
                .where(
                    JobRow.state == JobState.RUNNING.value,
                    JobRow.executor_ref.is_not(None),
                )
                .order_by(JobRow.id)
            ).all()
            requested = _asked_at(session, rows)
            asks = [
                _Ask.of(row, stop_asked=at)
                for row in rows
                if (at := requested.get(row.id)) is not None
                and (now - at).total_seconds() >= self.checkpoint_grace_s
            ]
            movable = [r for r in rows if r.spec.get("checkpointable") and r.id not in requested]
            asks += [
                _Ask.of(row, detail={"why": "drain", "center": row.center_id})
                for row in movable
                if row.center_id in drained
            ]
            if replan:
                self._last_replan = now
                asks += self._engine_moves(
                    session, [r for r in movable if r.center_id not in drained]
                )
            return self._ask(session, asks)

    def _ask(self, session: Session, asks: Sequence[_Ask]) -> int:
        """Make ``asks`` (checkpoint requests and stops), every center's at once, and record
        those its center answered (this round, or late: an earlier round's, for runs still
        the job's); a center that does not answer within the round's wait is asked again in
        a later round (nothing was recorded)."""
        by_center: dict[str, list[_Ask]] = {}
        for ask in asks:
            if ask.center in self.live.executors:
                by_center.setdefault(ask.center, []).append(ask)
        work = {
            center: _Asking(self.live.executors[center], group)
            for center, group in by_center.items()
        }
        done = 0
        for center, answer in self.calls.answers(work, lambda c: work[c].answered_at).items():
            if isinstance(answer, ExecutorError):  # it hangs: nothing recorded, asked again
                log.warning("cannot ask runs at %s to checkpoint or stop: %s", center, answer)
                continue
            for ask, outcome in answer.value if isinstance(answer, Late) else answer:
                if isinstance(outcome, ExecutorError):  # the reconciler's polls mark the center
                    what = "stop" if ask.stop_asked is not None else "checkpoint"
                    log.warning("cannot %s job %s at %s: %s", what, ask.job_id, center, outcome)
                    continue
                row = session.get(JobRow, ask.job_id)
                if row is None or (row.state, row.executor_ref) != (RUNNING, ask.ref):
                    continue  # the run has ended or gone meanwhile (a late answer)
                if ask.stop_asked is not None:
                    done += self._stopped(session, row, ask.stop_asked)
                elif outcome is not None:
                    done += self._requested(session, row, ask.detail)
        return done

    def _engine_moves(self, session: Session, rows: Sequence[JobRow]) -> list[_Ask]:
        if not rows:
            return []
        live = self.live
        signals = live.signals()
        state = live.state(session, signals)  # the state placement decides on too
        state.free[~live.open_centers()[live.net.pool_center]] = 0  # only open centers take jobs
        jobs: list[Job] = []
        kept: list[JobRow] = []
        running: list[Running] = []
        for row in rows:
            job = to_core_job(row, live.net, t0=signals.start)
            pool = live.net.pool_of_run(
                row.center_id or "", row.pool_model or "", cpu_only=job.cards == 0
            )
            if pool is None or row.started_at is None:
                continue
            elapsed_h = (live.clock() - row.started_at).total_seconds() / 3600.0
            speed = float(live.net.pool_speed[pool, PRECISION_INDEX[job.precision]])
            done_scu = elapsed_h * job.demand_units * speed
            start_s = (row.started_at - signals.start).total_seconds()
            running.append(Running(len(jobs), pool, start_s, max(0.0, job.work_scu - done_scu)))
            jobs.append(job)
            kept.append(row)
        asks: list[_Ask] = []
        for j, new_pool, move_s, move_cny in self.policy.migrations(jobs, running, state):
            row = kept[j]
            target = live.net.center_ids[int(live.net.pool_center[new_pool])]
            if not live.runs_for(target, tenant_name(session, row)):
                continue  # the tenant has no account there: the move could not run
            detail = {
                "why": "engine",
                "center": row.center_id,
                "to": target,
                "move_s": round(move_s, 1),
                "move_cost_cny": round(move_cny, 4),
            }
            asks.append(_Ask.of(row, detail=detail))
        return asks

    def _stopped(self, session: Session, row: JobRow, asked: datetime) -> int:
        """A run that was asked to checkpoint at ``asked`` and did not has been cancelled at
        its center: fence it and place the job again from its last checkpoint (if any)."""
        live, ref, center = self.live, row.executor_ref, row.center_id or ""
        now = live.clock()
        waited = (now - asked).total_seconds()
        reason = f"did not checkpoint within {waited:.0f} s of being asked: stopped"
        session.add(RunFence(job_id=row.id, center_id=center, executor_ref=ref, reason=reason,
                             created_at=now))  # fmt: skip
        ckpt = live.checkpoint_dir(row.id)
        resume = str(ckpt) if has_checkpoint(ckpt) else None
        transition(
            session=session,
            now=now,
            job=row,
            to=JobState.MIGRATING,
            detail={
                "event": CHECKPOINT_IGNORED,
                "attempt": row.attempt,
                "center": center,
                "reason": reason + (", placed again from its last checkpoint" if resume else
                                    ", placed again from the start"),
                "resume_from": resume,
            },
            updates={"center_id": None, "pool_model": None, "executor_ref": None,
                     "start_at": None, "attempt": row.attempt + 1, "resume_from": resume},
        )  # fmt: skip
        log.warning("job %s at %s %s", row.id, center, reason)
        return 1

    def _requested(self, session: Session, row: JobRow, detail: dict[str, Any]) -> int:
        """The run was asked to checkpoint (its executor took the request): record it."""
        session.add(
            JobEvent(
                job_id=row.id,
                at=self.live.clock(),
                from_state=row.state,
                to_state=row.state,
                detail={"event": CHECKPOINT_REQUESTED, "attempt": row.attempt, **detail},
            )
        )
        log.info("asked job %s at %s to checkpoint (%s)", row.id, row.center_id, detail["why"])
        return 1


@dataclass(frozen=True)
class _Ask:
    """A call :class:`Migrations` makes for a run: a checkpoint request (``detail``: why,
    for its event) or, when it was asked at ``stop_asked`` and has not checkpointed, a stop."""

    job_id: str
    center: str
    ref: str
    detail: dict[str, Any] = field(default_factory=dict)
    stop_asked: datetime | None = None

    @classmethod
    def of(
        cls,
        row: JobRow,
        *,
        detail: dict[str, Any] | None = None,
        stop_asked: datetime | None = None,
    ) -> _Ask:
        return cls(row.id, row.center_id or "", row.executor_ref or "", detail or {}, stop_asked)


#: each ask and what its center answered: the checkpoint's place (None: the executor cannot
#: checkpoint it), None for a stop, or the error it raised
Asked = list[tuple[_Ask, str | ExecutorError | None]]


@dataclass
class _Asking:
    """One center's asks, made in turn (in a thread of :class:`CenterCalls`); ``answered_at``
    (``time.monotonic``) tells the round that waits how recently the last one answered."""

    executor: Executor
    asks: Sequence[_Ask]
    answered_at: float | None = None

    def __call__(self) -> Asked:
        out: Asked = []
        for ask in self.asks:
            got: str | ExecutorError | None = None
            try:
                if ask.stop_asked is not None:
                    self.executor.cancel(ask.ref)
                else:
                    got = self.executor.checkpoint(ask.ref)
            except ExecutorError as exc:
                got = exc
            out.append((ask, got))
            self.answered_at = time.monotonic()
        return out


def _asked_at(session: Session, rows: Sequence[JobRow]) -> dict[str, datetime]:
    """When the current run (attempt) of each of ``rows`` was first asked to checkpoint (jobs
    whose run never was are absent): one query for all of them."""
    attempt = {r.id: r.attempt for r in rows}
    out: dict[str, datetime] = {}
    ids = list(attempt)
    for k in range(0, len(ids), _CHUNK):
        stmt = select(JobEvent.job_id, JobEvent.at, JobEvent.detail).where(
            JobEvent.job_id.in_(ids[k : k + _CHUNK]),
            JobEvent.detail["event"].as_string() == CHECKPOINT_REQUESTED,
        )
        for job_id, at, detail in session.execute(stmt):
            if detail.get("attempt") == attempt[job_id] and (job_id not in out or at < out[job_id]):
                out[job_id] = at
    return out
