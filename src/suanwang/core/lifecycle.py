"""Job lifecycle: one enum, one table of allowed transitions (simulator and control plane)."""

from __future__ import annotations

from enum import StrEnum


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
