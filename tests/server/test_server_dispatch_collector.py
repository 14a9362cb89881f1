"""The garbage collector is paused while a placing round runs, and let run again after it."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.governance import Governance
from suanwang.executors.local import LocalExecutor
from suanwang.server.services.dispatcher import Dispatcher, _collector_paused
from suanwang.server.services.live import LiveNetwork


@pytest.fixture
def live(app: FastAPI, tmp_path: Path) -> LiveNetwork:
    net = app.state.network
    return LiveNetwork(
        net=net,
        signals=app.state.signals.current,
        executors={"zhongwei": LocalExecutor(tmp_path / "centers", "zhongwei", cpus=8, cards=2)},
        clock=app.state.signals.clock,
    )


@pytest.fixture
def collector() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_a_round_runs_without_the_collector_and_lets_it_run_after(
    sessions: sessionmaker[Session], live: LiveNetwork, collector: None
) -> None:
    during: list[bool] = []

    def governance(session: Session) -> Governance | None:
        during.append(gc.isenabled())
        return None

    Dispatcher(sessions, live, governance=governance).place()
    assert during == [False]
    assert gc.isenabled()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_the_garbage_a_round_left_in_cycles_is_collected_by_its_end(
    sessions: sessionmaker[Session], live: LiveNetwork, collector: None
) -> None:
    left: list[weakref.ref[_Node]] = []

    def governance(session: Session) -> Governance | None:
        left.append(weakref.ref(_Node()))
        return None

    Dispatcher(sessions, live, governance=governance).place()
    assert left and left[0]() is None


def test_a_failed_round_lets_the_collector_run_again(
    sessions: sessionmaker[Session], live: LiveNetwork, collector: None
) -> None:
    def governance(session: Session) -> Governance | None:
        raise RuntimeError("the quotas cannot be read")

    with pytest.raises(RuntimeError):
        Dispatcher(sessions, live, governance=governance).place()
    assert gc.isenabled()


def test_a_collector_paused_before_the_round_stays_paused(
    sessions: sessionmaker[Session], live: LiveNetwork, collector: None
) -> None:
    gc.disable()
    Dispatcher(sessions, live).place()
    assert not gc.isenabled()


def test_rounds_of_two_threads_let_it_run_once_both_are_done(collector: None) -> None:
    entered, leave = threading.Event(), threading.Event()

    def other() -> None:
        with _collector_paused():
            entered.set()
            leave.wait(10)

    t = threading.Thread(target=other)
    t.start()
    assert entered.wait(10)
    with _collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled(), "the other thread's round still runs"
    leave.set()
    t.join(10)
    assert gc.isenabled()
