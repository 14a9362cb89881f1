"""The lifecycle table, exhaustively: every (from, to) pair is either allowed or refused."""

from __future__ import annotations

import itertools

import pytest

from suanwang.core.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    JobState,
    TransitionError,
    check_transition,
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
