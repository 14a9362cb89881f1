"""Centers' reachability shared among workers (both databases): each reports the centers it
holds, reads the others' reports, and a center taken over starts from its last report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pinned import NOW
from sqlalchemy.orm import Session, sessionmaker

from suanwang.server.services.health import CenterHealth


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


def test_a_worker_acts_on_what_the_holder_of_a_center_reported(
    sessions: sessionmaker[Session],
) -> None:
    clock = Clock()
    a, b = CenterHealth(clock=clock), CenterHealth(clock=clock)
    a.failed("guian", "connection refused")  # a holds guian and zhongwei, b holds horinger
    a.failed("horinger", "a call a made once: not its center")
    a.share(sessions, "a", frozenset({"guian", "zhongwei"}))
    b.share(sessions, "b", frozenset({"horinger"}))
    assert b.down() == {"guian": "connection refused"}
    assert a.down() == {"guian": "connection refused"}  # horinger: b's report (it answers)
    clock.now += timedelta(seconds=30)
    assert b.unreachable_s("guian") == 30.0 and b.unreachable_s("zhongwei") == 0.0
    # guian answers again: once a has reported it, b trusts it too
    a.ok("guian")
    b.share(sessions, "b", frozenset({"horinger"}))
    assert "guian" in b.down()  # not reported yet
    a.share(sessions, "a", frozenset({"guian", "zhongwei"}))
    b.share(sessions, "b", frozenset({"horinger"}))
    assert b.down() == {}


def test_a_center_taken_over_keeps_its_time_down(sessions: sessionmaker[Session]) -> None:
    clock = Clock()
    a, b = CenterHealth(clock=clock), CenterHealth(clock=clock)
    a.failed("guian", "timed out")
    a.share(sessions, "a", frozenset({"guian"}))
    b.share(sessions, "b", frozenset())
    clock.now += timedelta(seconds=50)
    # a died; b takes guian: its failover clock goes on from a's report, not from zero
    b.share(sessions, "b", frozenset({"guian"}))
    assert b.unreachable_s("guian") == 50.0
    b.failed("guian", "still timed out")
    clock.now += timedelta(seconds=10)
    b.share(sessions, "b", frozenset({"guian"}))
    assert b.unreachable_s("guian") == 60.0 and b.down() == {"guian": "still timed out"}
    b.ok("guian")
    b.share(sessions, "b", frozenset({"guian"}))
    assert b.unreachable_s("guian") == 0.0
    fresh = CenterHealth(clock=clock)
    fresh.share(sessions, "c", frozenset())
    assert fresh.down() == {}  # b reported it answering


def test_nothing_shared_without_centers_held_apart(sessions: sessionmaker[Session]) -> None:
    """One process (SQLite, or no shares): every center is called here, nothing is read."""
    h = CenterHealth(clock=Clock())
    h.failed("guian", "refused")
    h.share(sessions, "solo", None)
    assert h.down() == {"guian": "refused"}
