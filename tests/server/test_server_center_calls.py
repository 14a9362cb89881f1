"""Calls to many centers at once (:mod:`suanwang.server.services.calls`): one that does not
answer is reported without holding back the others' answers, is not called again while it
hangs, and its late answer goes to the next round that asks.

The calls here are real threads blocked on events the test sets (what a hung ``slurmrestd``
does to a call is shown by ``test_server_slurm_hung_center``)."""

from __future__ import annotations

import threading

import pytest

from suanwang.executors.base import ExecutorError
from suanwang.server.services.calls import CenterCalls, Late, NoAnswer


def test_a_hung_call_is_reported_skipped_then_answers_late() -> None:
    calls: CenterCalls[str] = CenterCalls("t", answer_within_s=1.0)
    release = threading.Event()
    made = {"hung": 0}

    def hung() -> str:
        made["hung"] += 1
        release.wait(30)
        return "late"

    first = calls.answers({"a": lambda: "A", "b": hung})
    assert first["a"] == "A"
    assert isinstance(first["b"], NoAnswer) and "no answer within 1 s" in str(first["b"])
    assert calls.busy() == ["b"]
    second = calls.answers({"a": lambda: "A2", "b": hung})
    assert second["a"] == "A2"
    assert isinstance(second["b"], NoAnswer) and "still waiting" in str(second["b"])
    assert made["hung"] == 1  # never called twice at once
    release.set()
    while calls.busy():
        threading.Event().wait(0.01)
    third = calls.answers({"b": hung})
    assert third["b"] == Late("late") and made["hung"] == 1  # the late answer, not a new call
    assert calls.answers({"b": lambda: "fresh"})["b"] == "fresh"
    calls.close()


def test_work_that_progresses_is_waited_for_and_errors_are_answers() -> None:
    calls: CenterCalls[int] = CenterCalls("t", answer_within_s=1.0)
    last: dict[str, float] = {}

    def steps() -> int:
        for _ in range(15):  # 1.5 s in all, each step well within the bound
            threading.Event().wait(0.1)
            last["slow"] = calls.timer()
        return 15

    def refuses() -> int:
        raise ExecutorError("x", "refused")

    got = calls.answers({"slow": steps, "bad": refuses}, lambda c: last.get(c))
    assert got["slow"] == 15
    assert isinstance(got["bad"], ExecutorError) and "refused" in str(got["bad"])

    def bug() -> int:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):  # not a center's answer: a bug, raised
        calls.answers({"c": bug})
    calls.close()
