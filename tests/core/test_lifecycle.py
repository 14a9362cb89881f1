"""The lifecycle table, exhaustively: every (from, to) pair is either allowed or refused; and the
one rule for the runs in an event log."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from suanwang.core.lifecycle import (
    NO_STATE,
    STATE_CODE,
    TERMINAL,
    TRANSITIONS,
    JobState,
    TransitionError,
    check_transition,
    run_events,
)

ALLOWED = {
    ("pending", "scheduled"), ("pending", "failed"), ("pending", "cancelled"),
    ("scheduled", "running"), ("scheduled", "succeeded"), ("scheduled", "failed"),
    ("scheduled", "cancelled"), ("scheduled", "lost"), ("scheduled", "pending"),
    ("running", "succeeded"), ("running", "failed"), ("running", "cancelled"),
    ("running", "migrating"), ("running", "lost"),
    ("migrating", "scheduled"), ("migrating", "failed"), ("migrating", "cancelled"),
    ("migrating", "lost"),
    ("lost", "pending"), ("lost", "cancelled"), ("lost", "failed"),
}  # fmt: skip


@pytest.mark.parametrize(("a", "b"), list(itertools.product(JobState, JobState)))
def test_every_pair(a: JobState, b: JobState) -> None:
    if (a.value, b.value) in ALLOWED:
        check_transition(a, b)
    else:
        with pytest.raises(TransitionError, match=f"from {a} to {b}"):
            check_transition(a, b)


def test_table_covers_every_state_and_terminals_are_final() -> None:
    assert set(TRANSITIONS) == set(JobState)
    assert {s for s in JobState if s.is_terminal} == TERMINAL
    for s in TERMINAL:
        assert not TRANSITIONS[s]
    # every non-terminal state can still end
    for s in set(JobState) - TERMINAL:
        assert TRANSITIONS[s] & TERMINAL


def _codes(*states: str | None) -> list[int]:
    return [NO_STATE if s is None else STATE_CODE[JobState(s)] for s in states]


def test_runs_in_an_event_log_follow_the_one_rule() -> None:
    """Jobs interleave; a same-state note is no transition; a run never seen running is a
    run from its placement; a run still going has no end."""
    log = [  # (job, from, to)
        (0, None, "pending"), (1, None, "pending"), (0, "pending", "scheduled"),
        (1, "pending", "scheduled"), (0, "scheduled", "running"),
        (0, "running", "running"),  # a checkpoint request: a note, not a transition
        (1, "scheduled", "succeeded"),  # finished between two polls
        (0, "running", "migrating"), (0, "migrating", "scheduled"), (2, None, "pending"),
        (0, "scheduled", "running"), (2, "pending", "failed"), (0, "running", "succeeded"),
        (3, None, "pending"), (3, "pending", "scheduled"), (3, "scheduled", "running"),
    ]  # fmt: skip
    job = np.array([e[0] for e in log], dtype=np.int64)
    frm = np.array(_codes(*(e[1] for e in log)), dtype=np.int64)
    to = np.array(_codes(*(e[2] for e in log)), dtype=np.int64)
    runs = run_events(job, frm, to)
    assert [tuple(r) for r in np.array(runs).T.tolist()] == [
        (3, 6, True, 3),  # job 1: from its placement to its end
        (4, 7, False, 2),  # job 0's first run, to the migration (the note is not an end)
        (10, 12, False, 8),  # job 0 after the move, placed again by event 8
        (15, -1, False, 14),  # job 3, still running
    ]
    empty = np.zeros(0, dtype=np.int64)
    assert all(a.size == 0 for a in run_events(empty, empty, empty))
