"""The dispatcher's loops: placing and hand-over apart on PostgreSQL, rounds paced."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

from suanwang.server.runner import PLACING_ROUND_S, _dispatch_loops
from suanwang.server.services.loop import LoopService


def _wait(what: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_on_postgresql_placing_goes_on_while_a_hand_over_hangs() -> None:
    """A hand-over waiting for its centers (seconds) does not hold back the placing rounds,
    and each round that decided something wakes the hand-over."""
    placed: list[float] = []
    handed: list[float] = []
    release = threading.Event()

    def placing() -> int:
        placed.append(time.monotonic())
        return 1 if len(placed) <= 3 else 0

    def hand_over() -> int:
        handed.append(time.monotonic())
        release.wait(30)  # a center that takes long to answer
        return 0

    wakeup = threading.Event()
    dispatch, handing = _dispatch_loops(
        placing, hand_over, postgres=True, interval_s=60.0, wakeup=wakeup
    )
    assert handing is not None and handing.name == "hand-over"
    dispatch.start()
    handing.start()
    try:
        _wait(lambda: len(handed) == 1)  # the hand-over's first round, now hanging
        _wait(lambda: len(placed) >= 4)  # placing went on meanwhile
        wakeup.set()  # a submission
        _wait(lambda: len(placed) >= 5)
        assert len(handed) == 1
        release.set()
        _wait(lambda: len(handed) >= 2)  # woken by the rounds that decided something
        # rounds of placing woken at once start at least PLACING_ROUND_S apart
        gaps = [b - a for a, b in itertools.pairwise(placed)]
        assert min(gaps) >= PLACING_ROUND_S * 0.99, gaps
    finally:
        release.set()
        dispatch.stop()
        handing.stop()


def test_on_sqlite_one_loop_places_then_hands_over() -> None:
    calls: list[str] = []

    def placing() -> int:
        calls.append("place")
        return 0

    def hand_over() -> int:
        calls.append("hand over")
        return 0

    dispatch, handing = _dispatch_loops(
        placing, hand_over, postgres=False, interval_s=60.0, wakeup=threading.Event()
    )
    assert handing is None
    assert dispatch.run_once() == 0
    assert calls == ["place", "hand over"]


def test_a_loop_with_a_least_round_time_takes_a_trickle_in_batches() -> None:
    """Woken after every round (work arriving one piece at a time), the rounds still start at
    least ``min_round_s`` apart."""
    starts: list[float] = []
    wake = threading.Event()

    def once() -> int:
        starts.append(time.monotonic())
        wake.set()  # the next piece of work has come
        return 0

    loop = LoopService("trickle", once, 60.0, wakeup=wake, min_round_s=0.2)
    loop.start()
    try:
        _wait(lambda: len(starts) >= 4)
    finally:
        loop.stop()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.2 * 0.99, gaps
