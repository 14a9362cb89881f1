"""The dispatcher's hand-over of due jobs to their centers, every center's at once.

Each center's submissions go out in a worker thread of its own (:mod:`.calls`), so a center
that hangs delays no other's. The round waits for a center while each of its submissions
answers within ``answer_within_s``. Of a center that stops answering, the jobs it took keep
their runs; its worker stops submitting, and the jobs it was not sent are placed again (they
never reached it). The one submission under way may yet be taken when the center wakes: that
job stays ``scheduled`` there, unhanded, until the answer comes: the run it names is recorded
(or the job is placed again if the center refused it). If failover gave the job up meanwhile
(its center silent past ``--lost-after``), the run the late answer names is fenced
(``run_fences``): cancelled once the center answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.core.lifecycle import JobState
from suanwang.executors.base import Executor, ExecutorError, Submission
from suanwang.server.database.models import JobRow, RunFence
from suanwang.server.services.calls import CenterCalls, Late, NoAnswer

log = logging.getLogger("suanwang.dispatcher")

#: job id -> the reference of its run at its center, or why it has none (None: no answer yet)
Outcome = dict[str, str | ExecutorError | None]


@dataclass
class _Batch:
    """One center's submissions (with the checkpoint each resumes from, if any), made in turn
    until done or told to stop; what is done so far can be read at any moment."""

    executor: Executor
    subs: Sequence[tuple[Submission, str | None]]
    _done: Outcome = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: the job whose submission is under way
    current: str | None = None
    #: when the last submission answered (``time.monotonic``)
    answered_at: float | None = None

    def __call__(self) -> Outcome:
        for sub, resume_from in self.subs:
            with self._lock:
                if self._stop.is_set():
                    break
                self.current = sub.job_id
            try:
                if resume_from is not None:
                    got: str | ExecutorError = self.executor.resume(sub, resume_from)
                else:
                    got = self.executor.submit(sub)
            except ExecutorError as exc:
                got = exc
            with self._lock:
                self._done[sub.job_id] = got
                self.current, self.answered_at = None, time.monotonic()
        return self.done()

    def stop(self) -> tuple[Outcome, str | None]:
        """Submit no more; what was done so far, and the job whose submission is under way."""
        with self._lock:
            self._stop.set()
            return dict(self._done), self.current

    def done(self) -> Outcome:
        with self._lock:
            return dict(self._done)


@dataclass
class HandOver:
    """Hands jobs to their centers' executors, every center's at once (module docstring)."""

    calls: CenterCalls[Outcome] = field(default_factory=lambda: CenterCalls("hand-over"))
    #: center -> the job whose submission there has not answered
    _under_way: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def submit(
        self,
        session: Session,
        now: datetime,
        executors: Mapping[str, Executor],
        batches: Mapping[str, Sequence[tuple[Submission, str | None]]],
    ) -> Outcome:
        """Submit ``batches`` (center -> its submissions); returns each job's run reference,
        why it has none (its center refused it or does not answer: place it again), or None
        (its submission has not answered: leave it scheduled there, unhanded). A job absent
        from the answer was not tried: its center's earlier submissions answered late, which
        are recorded in ``session`` (or fenced, at ``now``)."""
        work = {center: _Batch(executors[center], subs) for center, subs in batches.items()}
        out: Outcome = {}
        # a center is waited for while each of its submissions answers within the bound
        answers = self.calls.answers(work, lambda center: work[center].answered_at)
        for center, answer in answers.items():
            if isinstance(answer, NoAnswer):
                done, current = work[center].stop()  # it stops before the next one
                if center in self.calls.busy() and current is not None:
                    self._under_way[center] = current
                under_way = self._under_way.get(center)
                for sub, _ in batches[center]:
                    got = None if sub.job_id == under_way else answer
                    out[sub.job_id] = done.get(sub.job_id, got)
                continue
            self._under_way.pop(center, None)
            if isinstance(answer, Late):
                self._record_late(session, now, center, answer.value)
                for sub, _ in batches[center]:  # refused late: place it again
                    refused = answer.value.get(sub.job_id)
                    if isinstance(refused, ExecutorError):
                        out[sub.job_id] = refused
                continue
            for sub, _ in batches[center]:
                out[sub.job_id] = (
                    answer if isinstance(answer, ExecutorError) else answer[sub.job_id]
                )
        return out

    @staticmethod
    def _record_late(session: Session, now: datetime, center: str, late: Outcome) -> None:
        """Record the runs a center took after the round that asked had stopped waiting:
        the job's, if it still waits for one there; fenced, if it was given up meanwhile."""
        for job_id, ref in late.items():
            if not isinstance(ref, str):
                continue
            row = session.get(JobRow, job_id, with_for_update={"skip_locked": True})
            if row is None or row.executor_ref == ref:
                continue  # locked by another round (it submits again: the same run) or recorded
            if (
                row.state == JobState.SCHEDULED.value
                and row.center_id == center
                and row.executor_ref is None
            ):
                row.executor_ref = ref
                continue
            fenced = session.scalar(
                select(RunFence.id).where(
                    RunFence.center_id == center, RunFence.executor_ref == ref
                )
            )
            if fenced is None:
                reason = "taken by its center after the job was given up there"
                session.add(RunFence(job_id=job_id, center_id=center, executor_ref=ref,
                                     reason=reason, created_at=now))  # fmt: skip
                log.warning("job %s: run %s at %s %s: fenced", job_id, ref, center, reason)
