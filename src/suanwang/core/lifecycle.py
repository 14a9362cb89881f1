"""Job lifecycle: one enum, one table of allowed transitions, one rule for the runs in an event
log (simulator and control plane)."""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from numpy.typing import NDArray


class JobState(StrEnum):
    PENDING = "pending"  # accepted and stored, waiting for a placement decision
    SCHEDULED = "scheduled"  # placed on a center (and maybe a later start); handed to its executor
    RUNNING = "running"  # the executor reports it running
    SUCCEEDED = "succeeded"  # finished with exit code 0
    FAILED = "failed"  # finished with a non-zero exit code, or could not be run
    CANCELLED = "cancelled"  # stopped at the user's request
    MIGRATING = "migrating"  # checkpointed, moving to another center
    LOST = "lost"  # its center has been unreachable past the grace period; to be re-placed

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
#: ``detail["event"]`` of the ``cancelled -> cancelled`` event the reconciler writes once the run
#: of a cancelled job has stopped at its executor (with what the run reported, ``usage``).
RUN_STOPPED = "run_stopped"

#: from-state -> the states it may move to. Everything else is refused.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.SCHEDULED, JobState.FAILED, JobState.CANCELLED}),
    JobState.SCHEDULED: frozenset(
        {
            JobState.RUNNING,
            JobState.SUCCEEDED,  # a short job may finish between two polls
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.LOST,
            JobState.PENDING,  # handed back (executor refused it): place again
        }
    ),
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.MIGRATING,
            JobState.LOST,
        }
    ),
    JobState.MIGRATING: frozenset(
        {JobState.SCHEDULED, JobState.FAILED, JobState.CANCELLED, JobState.LOST}
    ),
    JobState.LOST: frozenset({JobState.PENDING, JobState.CANCELLED, JobState.FAILED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class TransitionError(ValueError):
    def __init__(self, current: JobState, target: JobState) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (terminal)"
        super().__init__(f"job cannot go from {current} to {target} (allowed: {allowed})")
        self.current = current
        self.target = target


def check_transition(current: JobState, target: JobState) -> None:
    """Raise :class:`TransitionError` unless ``current -> target`` is allowed."""
    if target not in TRANSITIONS[current]:
        raise TransitionError(current, target)


#: Lifecycle states as small integers, for event logs held in arrays (the simulator's).
STATE_CODE: dict[JobState, int] = {s: i for i, s in enumerate(JobState)}
NO_STATE = -1  # ``from`` of a job's first event


def run_events(
    job: NDArray[np.int64], frm: NDArray[np.int64], to: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_], NDArray[np.int64]]:
    """The runs in an event log, as indices of the events that place, begin and end them.

    ``job``, ``frm`` and ``to`` describe events (state codes, :data:`STATE_CODE`), each job's
    in the order they happened; jobs may interleave. A run begins with a transition to
    ``running`` and ends with the job's next transition (``end`` = -1: still running). A run
    the platform never saw ``running`` (``scheduled`` straight to ``succeeded`` or ``failed``
    between two polls) is a run from its placement (``handover``; the live host meters it from
    the later of that and its planned start). ``placed`` is the event that scheduled the run
    (the job's last transition to ``scheduled`` before it; -1: none). Events that keep the
    state (a fence, a checkpoint request, a stopped run's note) are not transitions. The one
    rule both hosts use: billing meters live runs with it, the simulator's metrics measure
    simulated ones. Returns ``(begin, end, handover, placed)``, runs in the order they began.
    """
    running, scheduled = STATE_CODE[JobState.RUNNING], STATE_CODE[JobState.SCHEDULED]
    ends_unseen = (STATE_CODE[JobState.SUCCEEDED], STATE_CODE[JobState.FAILED])
    order = np.argsort(job, kind="stable")
    order = order[frm[order] != to[order]]  # transitions, per job in time order
    j, f, t = job[order], frm[order], to[order]
    n = order.size
    same_next = np.zeros(n, dtype=bool)
    same_next[:-1] = j[1:] == j[:-1]
    # the job's last transition to scheduled at or before each transition (-1: none)
    last = np.maximum.accumulate(np.where(t == scheduled, np.arange(n), -1)) if n else order
    last = np.where((last >= 0) & (j[np.maximum(last, 0)] == j), last, -1)
    starts = np.flatnonzero(t == running)
    nxt = np.minimum(starts + 1, max(n - 1, 0))
    closed = same_next[starts] & (f[nxt] == running)
    end = np.where(closed, order[nxt], -1)
    # scheduled -> succeeded/failed: a run from the transition that scheduled it
    unseen = np.flatnonzero((f == scheduled) & np.isin(t, ends_unseen))
    unseen = unseen[last[unseen] >= 0]
    placed_at = np.concatenate([last[starts], last[unseen]])
    begin = np.concatenate([order[starts], order[last[unseen]]])
    finish = np.concatenate([end, order[unseen]])
    handover = np.concatenate([np.zeros(starts.size, bool), np.ones(unseen.size, bool)])
    placed = np.where(placed_at >= 0, order[np.maximum(placed_at, 0)] if n else placed_at, -1)
    by = np.argsort(begin, kind="stable")
    return begin[by], finish[by], handover[by], placed[by]
