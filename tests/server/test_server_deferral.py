"""Deferred starts in live mode: the dispatcher decides where *and when*.

Signals are made by hand so that the test knows which hours are cheap; the clock is the API's
test clock (fixed, never the wall clock) plus a shift the test moves, so the tests mean the
same whatever the hour they run at. Runs on SQLite and PostgreSQL with real local executors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pinned import NOW
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.core.governance import Governance, TenantQuota
from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.executors.local import LocalExecutor, SharedUser
from suanwang.scenarios.loader import load_scenario
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.server.database.models import JobEvent, JobRow, Tenant
from suanwang.server.models.jobs import submit_job
from suanwang.server.runner import build_services
from suanwang.server.schemas import JobSpec
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.live import LiveNetwork
from suanwang.server.services.reconciler import Reconciler
from suanwang.server.settings import Settings

TINY = Path(__file__).parents[1] / "fixtures" / "scenarios" / "tiny"
HOURS = 48


@dataclass
class Clock:
    """The API's fixed test instant (``base``), shifted by what the test says."""

    base: datetime
    shift: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return self.base + self.shift

    @property
    def hour(self) -> datetime:
        return self.base.replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def clock(app: FastAPI) -> Clock:
    return Clock(app.state.signals.clock())


def signals(net: Network, price_by_hour: list[float], start: datetime) -> Signals:
    """Every center pays ``price_by_hour[h]`` (the last value repeats); flat green and carbon."""
    hourly = np.array((price_by_hour + [price_by_hour[-1]] * HOURS)[:HOURS], dtype=np.float64)
    price = np.tile(hourly, (net.n_centers, 1))
    green = np.full_like(price, 0.2)
    return Signals(
        start=start,
        price_cny_per_kwh=price,
        carbon_g_per_kwh=np.full_like(price, 600.0),
        green_fraction=green,
        forecast_price_cny_per_kwh=price.copy(),
        forecast_green_fraction=green.copy(),
    )


#: Expensive for the next four hours, then a tenth of the price.
EXPENSIVE_THEN_CHEAP = [2.0, 2.0, 2.0, 2.0, 0.2]


def _live(
    net: Network, sig: Signals, clock: Clock, root: Path, centers: tuple[str, ...]
) -> LiveNetwork:
    executors = {c: LocalExecutor(root, c, cpus=64, cards=16) for c in centers}
    return LiveNetwork(net=net, signals=lambda: sig, executors=executors, clock=clock)


def _row(sessions: sessionmaker[Session], job_id: str) -> JobRow:
    with sessions() as s:
        row = s.get(JobRow, job_id)
        assert row is not None
        return row


def test_a_deadline_tolerant_batch_job_waits_for_cheap_hours_and_not_longer(
    client: TestClient,
    app: FastAPI,
    sessions: sessionmaker[Session],
    alice: Any,
    submit: Callable[..., dict[str, Any]],
    tmp_path: Path,
    clock: Clock,
) -> None:
    net: Network = app.state.network
    sig = signals(net, EXPENSIVE_THEN_CHEAP, clock.hour)
    live = _live(net, sig, clock, tmp_path / "centers", ("zhongwei", "horinger"))
    job = submit(alice, name="batch", command="echo trained", duration_s=7200,
                 deadline_s=86400, kind="training")  # fmt: skip
    dispatcher = Dispatcher(sessions, live)
    dispatcher.run_once()

    got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert got["state"] == "scheduled"
    start_at = datetime.fromisoformat(got["start_at"])
    # in the cheap hours (starts are whole hours after now, and waiting has a price too, so
    # the last minutes of the expensive hour may be taken), and not later than needed
    assert start_at >= sig.start + timedelta(hours=4) - timedelta(minutes=3)
    assert start_at <= clock() + timedelta(hours=4, seconds=60)
    decision = got["decision"]
    assert datetime.fromisoformat(decision["start_at"]) == start_at
    assert decision["deferred_h"] >= 3
    assert decision["reason"].startswith(f"deferred {decision['deferred_h']:.1f} h to a ")
    assert "cheaper/greener window" in decision["reason"]
    assert decision["if_started_now"]["cost_cny"] > 5 * decision["chosen"]["cost_cny"]
    assert decision["if_started_now"]["center"] == decision["chosen"]["center"]
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=alice.headers).json()
    assert datetime.fromisoformat(events[-1]["detail"]["start_at"]) == start_at
    assert events[-1]["detail"]["reason"] == decision["reason"]

    # not handed over before its start: no executor reference, no run at the executor
    run_dir = tmp_path / "centers" / got["center_id"] / job["id"]
    clock.shift = start_at - clock() - timedelta(seconds=1)
    assert dispatcher.run_once() == 0
    Reconciler(sessions, live).run_once()
    assert _row(sessions, job["id"]).executor_ref is None and not run_dir.exists()
    assert client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()["state"] == (
        "scheduled"
    )
    # from its start on it is handed over, runs and ends
    clock.shift = start_at - clock.base
    assert dispatcher.run_once() == 1
    assert _row(sessions, job["id"]).executor_ref == f"{got['center_id']}/{job['id']}"
    assert run_dir.exists()
    reconciler = Reconciler(sessions, live)
    for _ in range(200):
        reconciler.run_once()
        state = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()["state"]
        if state == "succeeded":
            break
        import time

        time.sleep(0.05)
    assert state == "succeeded"


def test_while_work_waits_for_room_no_job_is_deferred_for_price(
    client: TestClient,
    app: FastAPI,
    sessions: sessionmaker[Session],
    alice: Any,
    submit: Callable[..., dict[str, Any]],
    tmp_path: Path,
    clock: Clock,
) -> None:
    """Under quotas (the platform's queue), a deferral for price only hands its cards to work
    that waits for room, or leaves them idle while it waits: the placer defers nothing while
    work waited for room within the planner's ``scarce_memory_s`` (docs/governance.md)."""
    net: Network = app.state.network
    sig = signals(net, EXPENSIVE_THEN_CHEAP, clock.hour)
    live = _live(net, sig, clock, tmp_path / "centers", ("zhongwei", "horinger"))
    gov = Governance(tenants={"alice": TenantQuota(name="alice", cohort="c", quota_scu_per_h=1e4)})
    dispatcher = Dispatcher(sessions, live, governance=lambda session: gov)

    def batch(name: str) -> dict[str, Any]:
        job = submit(alice, name=name, command="true", duration_s=7200, deadline_s=86400,
                     kind="training")  # fmt: skip
        dispatcher.place()
        got: dict[str, Any] = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
        assert got["state"] == "scheduled"
        return got

    calm = batch("calm")
    assert calm["decision"]["deferred_h"] >= 3  # nothing waited: the cheap hours
    waited = dispatcher.waited_at
    assert waited is not None and np.isinf(waited).all()
    waited[:] = clock().timestamp() - 120  # as after a round where work waited for room
    scarce = batch("scarce")
    assert scarce["decision"]["deferred_h"] == 0
    assert "scarce: no deferral for price" in scarce["decision"]["reason"]
    assert datetime.fromisoformat(scarce["start_at"]) <= clock() + timedelta(minutes=1)
    dispatcher.waited_at = np.full_like(waited, clock().timestamp() - 12.1 * 3600)  # too old
    later = batch("later")
    assert later["decision"]["deferred_h"] >= 3


def test_a_latency_sensitive_inference_job_starts_at_once(
    client: TestClient,
    app: FastAPI,
    sessions: sessionmaker[Session],
    alice: Any,
    submit: Callable[..., dict[str, Any]],
    tmp_path: Path,
    clock: Clock,
) -> None:
    net: Network = app.state.network
    sig = signals(net, EXPENSIVE_THEN_CHEAP, clock.hour)
    live = _live(net, sig, clock, tmp_path / "centers", ("zhongwei", "horinger"))
    job = submit(alice, name="serve", command="true", duration_s=7200, kind="inference",
                 origin="ningxia", resources={"count": 1, "cpus": 8})  # fmt: skip
    assert Dispatcher(sessions, live).run_once() == 2  # placed and handed over in one round
    got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert got["center_id"] == "zhongwei"  # near its users
    assert datetime.fromisoformat(got["start_at"]) == clock()  # now, not later
    assert got["decision"]["deferred_h"] == 0 and got["decision"]["if_started_now"] is None
    assert not got["decision"]["reason"].startswith("deferred")
    assert _row(sessions, job["id"]).executor_ref is not None


def test_without_deferral_the_same_batch_job_starts_at_once(
    client: TestClient,
    app: FastAPI,
    sessions: sessionmaker[Session],
    alice: Any,
    submit: Callable[..., dict[str, Any]],
    tmp_path: Path,
    clock: Clock,
) -> None:
    net: Network = app.state.network
    sig = signals(net, EXPENSIVE_THEN_CHEAP, clock.hour)
    live = _live(net, sig, clock, tmp_path, ("zhongwei",))
    job = submit(alice, name="batch", command="true", duration_s=7200, deadline_s=86400)
    Dispatcher(sessions, live, policy=SuanwangPolicy(max_defer_h=0)).run_once()
    got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert got["decision"]["deferred_h"] == 0
    assert _row(sessions, job["id"]).executor_ref is not None


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    duration_h=st.floats(0.25, 20.0),
    slack=st.floats(1.0, 4.0),
    cheap_from=st.integers(0, 30),
    kind=st.sampled_from(["training", "finetune", "hpc", "render", "analytics", "backup"]),
    cards=st.sampled_from([0, 1, 8]),
)
def test_deferral_never_violates_a_deadline(
    client: TestClient,
    app: FastAPI,
    sessions: sessionmaker[Session],
    alice: Any,
    tmp_path: Path,
    clock: Clock,
    duration_h: float,
    slack: float,
    cheap_from: int,
    kind: str,
    cards: int,
) -> None:
    net: Network = app.state.network
    sig = signals(net, [3.0] * cheap_from + [0.05], clock.hour)
    live = _live(net, sig, clock, tmp_path / "c", ("zhongwei", "horinger", "ulanqab"))
    body = {
        "name": "deadline", "command": "true", "duration_s": duration_h * 3600,
        "deadline_s": duration_h * 3600 * slack, "kind": kind, "origin": "beijing",
        "resources": {"count": cards, "cpus": 16},
        "stacks": ["cuda"] if cards else ["cpu"],
    }  # fmt: skip
    spec = JobSpec.model_validate(body)
    with sessions() as s:
        tenant = s.get(Tenant, alice.id)
        assert tenant is not None
        row, _ = submit_job(session=s, tenant=tenant, spec=spec, now=clock())
        s.commit()
        job_id = row.id
    try:
        Dispatcher(sessions, live).place()
        got = _row(sessions, job_id)
        assert got.state == "scheduled" and got.decision is not None and got.start_at is not None
        runtime = timedelta(seconds=got.decision["chosen"]["runtime_s"])
        due = got.submitted_at + timedelta(seconds=spec.deadline_s or 0)
        if got.decision["deferred_h"] > 0:
            # deferred only when the run still ends in time, with the planner's margin
            margin = timedelta(seconds=0.25 * (spec.deadline_s or 0))
            assert got.start_at + runtime <= due - margin + timedelta(seconds=1)
        elif got.start_at + runtime > due:
            # too tight even now: started at once, never pushed later
            assert got.start_at <= clock()
    finally:
        with sessions.begin() as s:
            s.execute(delete(JobEvent))
            s.execute(delete(JobRow))


# --------------------------------------------------------------------------- capacity


@pytest.fixture
def tiny_net() -> Network:
    return Network(load_scenario(TINY))


def _tiny_job(
    sessions: sessionmaker[Session], who: Any, name: str, duration_h: float, **extra: Any
) -> str:
    """16 A100 cards from the desert (only desert-green has an executor)."""
    body = {
        "name": name, "command": "true", "duration_s": duration_h * 3600, "origin": "desert",
        "resources": {"count": 16, "cpus": 8, "accelerator": "a100"}, "stacks": ["cuda"],
        **extra,
    }  # fmt: skip
    with sessions() as s:
        tenant = s.get(Tenant, who.id)
        assert tenant is not None
        row, _ = submit_job(session=s, tenant=tenant, spec=JobSpec.model_validate(body), now=NOW)
        s.commit()
        return row.id


def _tiny_dispatcher(
    tiny_net: Network,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    prices: list[float],
    clock: Clock,
) -> tuple[Dispatcher, Signals]:
    sig = signals(tiny_net, prices, clock.hour)
    live = _live(tiny_net, sig, clock, tmp_path / "tiny", ("desert-green",))
    return Dispatcher(sessions, live), sig


def test_a_deferred_job_holds_no_units_before_its_start(
    client: TestClient, sessions: sessionmaker[Session], alice: Any, tmp_path: Path,
    tiny_net: Network, clock: Clock,
) -> None:  # fmt: skip
    dispatcher, sig = _tiny_dispatcher(tiny_net, sessions, tmp_path, [2.0] * 6 + [0.2], clock)
    later = _tiny_job(sessions, alice, "later", 2, deadline_s=86400, kind="training")
    dispatcher.place()
    deferred = _row(sessions, later)
    assert deferred.decision is not None and deferred.decision["deferred_h"] > 4
    with sessions() as s:
        state = dispatcher.live.state(s, sig)
    pool = tiny_net.pool_model.index("a100", int(np.flatnonzero(
        tiny_net.pool_center == tiny_net.center_index["desert-green"])[0]))  # fmt: skip
    assert state.free[pool] == 16  # all of it free now
    assert state.committed[pool].max() == 16  # its hours are taken on the calendar
    assert state.committed[pool, 0] == 0

    # a short job that must start now fits before the deferred one: it gets the cards now
    now_job = _tiny_job(sessions, alice, "now", 1, kind="interactive")
    dispatcher.place()
    placed = _row(sessions, now_job)
    assert placed.center_id == "desert-green"
    assert placed.decision is not None
    assert placed.decision["reason"].startswith("cheapest center with room now")
    assert placed.decision["chosen"]["free_units"] == 16


def test_a_job_that_would_overlap_a_deferred_one_gets_no_planned_room(
    client: TestClient, sessions: sessionmaker[Session], alice: Any, tmp_path: Path,
    tiny_net: Network, clock: Clock,
) -> None:  # fmt: skip
    dispatcher, _ = _tiny_dispatcher(tiny_net, sessions, tmp_path, [2.0] * 6 + [0.2], clock)
    _tiny_job(sessions, alice, "later", 2, deadline_s=86400, kind="training")
    dispatcher.place()
    long_now = _tiny_job(sessions, alice, "long", 10, kind="interactive")
    dispatcher.place()
    row = _row(sessions, long_now)
    assert row.decision is not None
    assert row.decision["reason"].startswith("no planned room; queued where the wait is least")
    assert row.decision["queued"]


def test_running_jobs_keep_their_hours_on_the_calendar(
    client: TestClient, sessions: sessionmaker[Session], alice: Any, tmp_path: Path,
    tiny_net: Network, clock: Clock,
) -> None:  # fmt: skip
    # cheap from hour 2 on; a running 6-hour job holds the only A100 pool until hour ~6
    dispatcher, sig = _tiny_dispatcher(tiny_net, sessions, tmp_path, [2.0, 2.0, 0.2], clock)
    running = _tiny_job(sessions, alice, "running", 6, kind="interactive")
    dispatcher.run_once()
    assert _row(sessions, running).executor_ref is not None  # handed over: holds its cards
    with sessions() as s:  # handed over, not yet seen running: its pool's queue
        queued = dispatcher.live.state(s, sig)
    pool = tiny_net.pool_named("desert-green", "a100")
    assert pool is not None and queued.free[pool] == 0
    assert queued.backlog_unit_s[pool] == pytest.approx(16 * 6 * 3600.0)
    batch = _tiny_job(sessions, alice, "batch", 1, deadline_s=86400, kind="training")
    dispatcher.place()
    row = _row(sessions, batch)
    assert row.decision is not None and row.start_at is not None
    ends = clock() + timedelta(hours=6)
    # planned after the running job's expected end, not into the cheap hours it still fills
    assert row.start_at >= ends.replace(minute=0, second=0, microsecond=0)
    assert row.decision["deferred_h"] > 4
    with sessions() as s:
        state = dispatcher.live.state(s, sig)
    assert state.committed.max() <= 16  # never more than the pool has, in any hour


def test_centers_and_metrics_count_a_deferred_job_only_from_its_start(
    client: TestClient, app: FastAPI, sessions: sessionmaker[Session], alice: Any,
    operator: Any, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    from prometheus_client.parser import text_string_to_metric_families

    from suanwang.core.lifecycle import JobState
    from suanwang.server.models.jobs import transition

    now = app.state.signals.clock()  # the API's clock
    later, due = submit(alice, name="later")["id"], submit(alice, name="due")["id"]
    for job_id, start in ((later, now + timedelta(hours=5)), (due, now - timedelta(minutes=1))):
        with sessions() as s:
            row = s.get(JobRow, job_id)
            assert row is not None
            updates = {"center_id": "zhangjiakou", "pool_model": "a100", "start_at": start}
            transition(session=s, job=row, to=JobState.SCHEDULED, updates=updates, now=now)
            s.commit()
    centers = client.get("/v1/centers", headers=alice.headers).json()["centers"]
    z = next(c for c in centers if c["id"] == "zhangjiakou")
    assert z["used"]["cards"] == {"a100": 8}  # only the due job's 8 cards
    metrics = client.get("/metrics", headers=operator.headers).text
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    assert families["suanwang_jobs_deferred"].samples[0].value == 1
    got = client.get(f"/v1/jobs/{later}", headers=alice.headers).json()
    assert datetime.fromisoformat(got["start_at"]) == now + timedelta(hours=5)


def test_the_live_planner_may_not_defer_past_the_scenarios_limit(tmp_path: Path) -> None:
    """The scenario's deferral limit binds the live host too (china's: 12 h), before anything
    is built: a longer planner deferral is refused, naming the option, the limit and where."""
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'never.db'}")
    with pytest.raises(ValueError) as err:
        build_services(settings, tmp_path / "centers", ["zhongwei"], max_defer_h=13,
                       sandbox=SharedUser())  # fmt: skip
    assert str(err.value) == (
        "max_defer_h 13 is above the scenario's deferral limit (12 h, scenario.yaml "
        "deferral.max_defer_h): a job may not wait longer than that"
    )
    assert not (tmp_path / "never.db").exists()
