"""The reconciler: brings the database in line with what executors report.

Each round polls every executor for the jobs handed to it and records what changed
(``scheduled → running → succeeded | failed | cancelled``) with exit codes, the tail of the
log and the tokens the run reported (``usage``, on the event that ends the run). Jobs
cancelled in the database while their process still runs are cancelled at the executor; once
that run has stopped, a ``cancelled -> cancelled`` event (``event: run_stopped``) records what
it reported and the job is no longer watched (its ``executor_ref`` is cleared). A run
that checkpointed (exit 85) becomes ``migrating`` with its checkpoint to resume from, for the
dispatcher to place again; a run its executor reports lost is failed over
(:func:`~suanwang.server.services.runs.give_up_run`): the job is kept away from that center
while another can run it, and fails once ``max_lost_runs`` of its runs were lost so (a run
stopped by its own lease, the platform silent, or preempted by the cluster counts for
nothing). An executor that does not answer marks its center unreachable
(:class:`~suanwang.server.services.health.CenterHealth`); its jobs are left alone until
failover decides. Centers are polled all at once, each in a worker thread
(:mod:`~suanwang.server.services.calls`): one that hangs is marked unreachable after a second
and delays no other center's polls, so no other center's runs miss their lease renewal.
The per-run reads of a round (log tails, recorded exits, usage) come from the run directories
and the agents' records, not the centers' schedulers, and stay in the round's thread. Every
step is idempotent: a round after a crash repeats nothing that was recorded.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy import select, true
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.lifecycle import RUN_STOPPED, TRANSITIONS, JobState
from suanwang.executors.base import Executor, ExecutorError, ExecutorStatus
from suanwang.server.database.models import JobEvent, JobRow
from suanwang.server.models.billing.holds import lower_holds
from suanwang.server.models.billing.settle import settle_finished
from suanwang.server.models.jobs import transition
from suanwang.server.services.calls import CenterCalls, Late
from suanwang.server.services.live import LiveNetwork
from suanwang.server.services.runs import (
    LOST_RUN_BACKOFF_S,
    MAX_LOST_RUNS,
    dir_size_bytes,
    give_up_run,
    not_the_jobs_doing,
    recorded_status,
    usage_detail,
)

log = logging.getLogger("suanwang.reconciler")
LOG_TAIL_BYTES = 64 * 1024
WATCHED = (JobState.SCHEDULED, JobState.RUNNING, JobState.CANCELLED)


@dataclass
class Reconciler:
    sessions: sessionmaker[Session]
    live: LiveNetwork
    batch: int = 1000
    #: runs of a job its center's executor may report lost, while the center answers, before
    #: the job fails (:func:`~suanwang.server.services.runs.give_up_run`; ``serve
    #: --max-lost-runs``)
    max_lost_runs: int = MAX_LOST_RUNS
    #: seconds such a job waits before it goes back to a center it lost runs at, doubled per
    #: further loss (the dispatcher keeps it; this one says so in the ``pending`` event;
    #: ``serve --lost-run-backoff-s``)
    lost_run_backoff_s: float = LOST_RUN_BACKOFF_S
    #: the round's polls, one center's in a thread of its own (a hung center delays no other)
    polls: CenterCalls[dict[str, ExecutorStatus]] = field(
        default_factory=lambda: CenterCalls("reconciler-poll")
    )
    #: cancels of cancelled jobs' runs, made once the round has committed, likewise
    cancels: CenterCalls[None] = field(default_factory=lambda: CenterCalls("reconciler-cancel"))
    _cancels: dict[str, list[tuple[str, str]]] = field(
        default_factory=lambda: defaultdict(list), init=False, repr=False
    )

    def run_once(self) -> int:
        """One round over the jobs executors hold; returns the number of state changes."""
        changes = 0
        holds = self.live.holds()  # the centers this worker polls (None: every center)
        mine = JobRow.center_id.in_(sorted(holds)) if holds is not None else true()
        with self.sessions.begin() as session:
            rows = list(
                session.scalars(
                    select(JobRow)
                    .where(
                        JobRow.state.in_([s.value for s in WATCHED]),
                        JobRow.executor_ref.is_not(None),
                        mine,
                    )
                    .order_by(JobRow.updated_at, JobRow.id)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
            )
            by_center: dict[str, list[JobRow]] = defaultdict(list)
            for row in rows:
                by_center[row.center_id or ""].append(row)
            work = {
                center: partial(executor.poll, [r.executor_ref or "" for r in group])
                for center, group in by_center.items()
                if (executor := self.live.executors.get(center)) is not None
            }
            for center, answer in self.polls.answers(work).items():
                if isinstance(answer, ExecutorError):
                    self.live.health.failed(center, str(answer))
                    log.warning("center %s does not answer: %s", center, answer)
                    continue
                self.live.health.ok(center)
                # an answer that came late covers the runs it was asked about then (a run
                # handed over since waits for the next round)
                statuses = answer.value if isinstance(answer, Late) else answer
                for row in by_center[center]:
                    status = statuses.get(row.executor_ref or "")
                    if status is not None:
                        changes += self.apply(session, row, status, center)
        self.cancel_stopping()
        # billing: lower the holds of newly placed jobs to their estimate where they were
        # placed, then charge finished jobs (both lock the job row: they never interleave)
        lower_holds(self.sessions, self.live.net, now=self.live.clock())
        settle_finished(self.sessions, self.live.net, now=self.live.clock())
        return changes

    def cancel_stopping(self) -> None:
        """Cancel at their centers the runs of cancelled jobs the round found still going
        (each center's in a thread of its own, waited for as the polls; the next round asks
        again whatever did not answer: a cancel is idempotent)."""
        todo, self._cancels = self._cancels, defaultdict(list)

        def cancel_all(executor: Executor, runs: list[tuple[str, str]]) -> None:
            for job_id, ref in runs:
                try:
                    executor.cancel(ref)
                except ExecutorError as exc:
                    log.warning("could not cancel job %s: %s", job_id, exc)

        work = {
            center: partial(cancel_all, executor, runs)
            for center, runs in todo.items()
            if (executor := self.live.executors.get(center)) is not None
        }
        for center, answer in self.cancels.answers(work).items():
            if isinstance(answer, ExecutorError):
                log.warning("could not cancel jobs at %s: %s", center, answer)

    def apply(self, session: Session, row: JobRow, status: ExecutorStatus, center: str) -> int:
        """Record what the executor says of ``row``'s run (at ``live.clock()``); returns the
        number of state changes."""
        now = self.live.clock()
        executor = self.live.executors[center]
        ref = row.executor_ref or ""
        current = JobState(row.state)
        if current is JobState.CANCELLED:
            row.logs = self._logs(row, center)
            if not self._stopped(executor, ref, status):
                self._cancels[center].append((row.id, ref))  # after the commit: see run_once
                return 0
            # its run has stopped: record what it reported and stop watching it (the job's
            # charge waits for this, so the run's tokens are metered with it)
            self.live.lost_seen.pop(ref, None)
            session.add(
                JobEvent(
                    job_id=row.id,
                    at=now,
                    from_state=current.value,
                    to_state=current.value,
                    detail={"event": RUN_STOPPED, "center": center, "ref": ref,
                            "state": status.state.value, "reason": status.reason,
                            **usage_detail(executor, ref, row.id)},
                )
            )  # fmt: skip
            row.executor_ref = None
            return 0
        target = status.state
        if target is JobState.LOST:
            # the run may have ended by itself (its exit is recorded), or may still be running
            # although its executor calls it lost (e.g. Slurm's JobLaunchFailure after a
            # controller restart): never place the job again before that run cannot go on
            ended = recorded_status(
                executor, ref, f"recorded by the run; {executor.name} said: {status.reason}"
            )
            if ended is None:
                first = self.live.lost_seen.setdefault(ref, time.monotonic())
                if time.monotonic() - first < executor.stop_grace_s:
                    return 0  # its lease runs out meanwhile (this poll did not renew it)
                self.live.lost_seen.pop(ref, None)
                give_up_run(
                    session,
                    row,
                    f"{executor.name}: {status.reason}",
                    self.live,
                    reported=None if not_the_jobs_doing(status) else status.reason or "lost",
                    max_lost_runs=self.max_lost_runs,
                    backoff_s=self.lost_run_backoff_s,
                )
                return 1
            self.live.lost_seen.pop(ref, None)
            status, target = ended, ended.state
        if target is current:
            if current is JobState.RUNNING:
                row.logs = self._logs(row, center)
            return 0
        changed = 0
        if (
            target.is_terminal
            and current is JobState.SCHEDULED
            and (target not in TRANSITIONS[current])
        ):
            transition(
                session=session, job=row, to=JobState.RUNNING, detail={"center": center}, now=now
            )
            current = JobState.RUNNING
            changed += 1
        if target not in TRANSITIONS[current]:
            log.warning("ignoring %s -> %s for job %s (%s)", current, target, row.id, status.reason)
            return changed
        updates: dict[str, object] = {}
        detail: dict[str, object] = {
            "center": center, "reason": status.reason, "exit_code": status.exit_code
        }  # fmt: skip
        if target.is_terminal:
            updates = {"exit_code": status.exit_code, "logs": self._logs(row, center)}
        elif target is JobState.MIGRATING:
            # the run checkpointed and ended: place the job again, resuming from its checkpoint
            ckpt = self.live.checkpoint_dir(row.id)
            updates = {
                "logs": self._logs(row, center),
                "executor_ref": None,
                "attempt": row.attempt + 1,
                "resume_from": str(ckpt),
            }
            detail |= {"checkpoint": str(ckpt), "checkpoint_bytes": dir_size_bytes(ckpt)}
        if target.is_terminal or target is JobState.MIGRATING:  # the run has ended
            detail |= usage_detail(executor, ref, row.id)
        transition(session=session, job=row, to=target, detail=detail, updates=updates, now=now)
        return changed + 1

    def _stopped(self, executor: Executor, ref: str, status: ExecutorStatus) -> bool:
        """Whether the run of a cancelled job can no longer be running: it ended, or its
        executor calls it lost and it recorded its end or is past the stop grace."""
        if status.state is not JobState.LOST:
            return status.state.is_terminal or status.state is JobState.MIGRATING
        if executor.recorded_exit(ref) is not None:
            return True
        first = self.live.lost_seen.setdefault(ref, time.monotonic())
        return time.monotonic() - first >= executor.stop_grace_s

    def _logs(self, row: JobRow, center: str) -> str:
        try:
            return self.live.executors[center].logs(row.executor_ref or "", LOG_TAIL_BYTES)
        except ExecutorError:
            return row.logs
