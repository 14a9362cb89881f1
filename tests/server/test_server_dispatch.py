"""Dispatcher and reconciler end to end: API -> placement -> local executor -> final state.

Runs on SQLite and PostgreSQL (the ``db_url`` fixture) with real processes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.core.lifecycle import JobState
from suanwang.core.network import Network
from suanwang.executors.base import ExecutorStatus
from suanwang.executors.local import LocalExecutor, SharedUser
from suanwang.server.database.models import CenterDrain, JobRow, RunFence
from suanwang.server.runner import build_services
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.failover import Failover
from suanwang.server.services.live import LiveNetwork
from suanwang.server.services.reconciler import Reconciler
from suanwang.server.settings import Settings


def _live(app: FastAPI, root: Path, centers: tuple[str, ...]) -> LiveNetwork:
    net = app.state.network
    executors = {c: LocalExecutor(root, c, cpus=64, cards=16) for c in centers}
    return LiveNetwork(
        net=net,
        signals=app.state.signals.current,
        executors=executors,
        clock=app.state.signals.clock,
    )


def _until_final(
    rounds: Callable[[], None], client: TestClient, who: Any, ids: list[str], timeout: float = 20
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rounds()
        jobs = [client.get(f"/v1/jobs/{i}", headers=who.headers).json() for i in ids]
        if all(j["state"] in ("succeeded", "failed", "cancelled") for j in jobs):
            return jobs
        if time.monotonic() > deadline:
            raise AssertionError(f"not final: {[j['state'] for j in jobs]}")
        time.sleep(0.1)


@pytest.fixture
def live(app: FastAPI, tmp_path: Path) -> LiveNetwork:
    return _live(app, tmp_path / "centers", ("zhangjiakou", "zhongwei", "horinger"))


def test_jobs_run_on_executor_centers_and_come_back(
    client: TestClient,
    sessions: sessionmaker[Session],
    live: LiveNetwork,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    ok = submit(alice, name="ok", command="echo hello-from-$SUANWANG_CENTER", duration_s=60)
    bad = submit(alice, name="bad", command="echo oops >&2; exit 3", duration_s=60)
    dispatcher, reconciler = Dispatcher(sessions, live), Reconciler(sessions, live)

    def rounds() -> None:
        dispatcher.run_once()
        reconciler.run_once()

    done = _until_final(rounds, client, alice, [ok["id"], bad["id"]])
    assert [j["state"] for j in done] == ["succeeded", "failed"]
    assert done[0]["center_id"] in live.executors
    assert done[1]["exit_code"] == 3
    logs = client.get(f"/v1/jobs/{ok['id']}/logs", headers=alice.headers).text
    assert f"hello-from-{done[0]['center_id']}" in logs
    decision = done[0]["decision"]
    assert decision["chosen"]["center"] == done[0]["center_id"]
    assert decision["runners_up"], "the explanation compares the choice with runners-up"
    assert {"cost_cny", "energy_kwh", "carbon_kg", "latency_ms"} <= set(decision["chosen"])
    events = client.get(f"/v1/jobs/{ok['id']}/events", headers=alice.headers).json()
    states = [e["to_state"] for e in events]
    assert states[0] == "pending" and states[-1] == "succeeded"
    assert "scheduled" in states


def test_a_job_no_executor_center_can_run_fails_with_a_reason(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    live = _live(app, tmp_path / "c", ("nscc-kunshan",))  # DCUs only: no CUDA there
    job = submit(alice, name="cuda-only", command="true", stacks=["cuda"])
    Dispatcher(sessions, live).run_once()
    got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert got["state"] == "failed"
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=alice.headers).json()
    reason = events[-1]["detail"]["reason"]
    # which constraint excluded the candidates, in the event, the job's decision and the API
    net: Network = app.state.network
    excluded = got["decision"]["excluded"]
    assert got["decision"]["placed"] is False and got["decision"]["reason"] == reason
    assert sum(excluded.values()) == net.n_pools
    assert excluded["software stack"] > 0 and excluded["closed"] > 0
    assert f"{excluded['software stack']} lack the software stack (cuda)" in reason
    assert f"{excluded['closed']} are at centers without an executor" in reason


def test_a_job_whose_centers_are_only_down_or_drained_waits_for_them(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    """A center that could run the job but is unreachable or drained now keeps the job
    pending, saying which and why, instead of failing it; once the center is back, it runs."""
    live = _live(app, tmp_path / "c", ("zhangjiakou", "zhongwei"))
    live.health.failed("zhangjiakou", "connection refused")
    with sessions.begin() as session:  # as `suanwang centers drain zhongwei` does
        session.add(CenterDrain(center_id="zhongwei", reason="maintenance"))
    job = submit(alice, name="patient", command="true", duration_s=60)
    dispatcher = Dispatcher(sessions, live)
    for _ in range(2):  # it goes on waiting, round after round
        dispatcher.run_once()
        got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
        assert got["state"] == "pending", got
        assert got["decision"]["waiting"] == (
            "every center that can run it is unreachable or drained now: "
            "zhangjiakou (unreachable), zhongwei (drained)"
        )
    live.health.ok("zhangjiakou")
    with sessions.begin() as session:
        session.execute(delete(CenterDrain))
    reconciler = Reconciler(sessions, live)

    def rounds() -> None:
        dispatcher.run_once()
        reconciler.run_once()

    assert _until_final(rounds, client, alice, [job["id"]])[0]["state"] == "succeeded"


def test_a_job_its_center_cannot_take_goes_back_to_placement_saying_why(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    """At hand-over, a center without an executor sends the job back to pending keeping its
    center; an executor that refuses the job sends it back without its center and pool. Both
    drop the planned start and say why."""
    root = tmp_path / "c"
    placing = _live(app, root, ("zhongwei",))
    job = submit(alice, name="handed-back", command="true", duration_s=60)

    def place_due_now() -> None:
        Dispatcher(sessions, placing).place()
        with sessions.begin() as session:
            row = session.get(JobRow, job["id"])
            assert row is not None and (row.state, row.center_id) == ("scheduled", "zhongwei")
            row.start_at = None  # due now, whatever hour the planner chose

    def after(live: LiveNetwork) -> tuple[JobRow, str]:
        assert Dispatcher(sessions, live).hand_over() == 0
        with sessions() as session:
            row = session.get(JobRow, job["id"])
            assert row is not None and row.state == "pending" and row.start_at is None
            assert row.executor_ref is None
        events = client.get(f"/v1/jobs/{job['id']}/events", headers=alice.headers).json()
        return row, events[-1]["detail"]["reason"]

    place_due_now()
    row, reason = after(_live(app, root, ("zhangjiakou",)))  # no executor for zhongwei now
    assert (row.center_id, row.pool_model) != (None, None)
    assert reason == "center zhongwei has no executor; place again"

    place_due_now()
    small = LocalExecutor(tmp_path / "small", "zhongwei", cpus=64, cards=1)  # job needs 8 cards
    row, reason = after(dataclasses.replace(placing, executors={"zhongwei": small}))
    assert (row.center_id, row.pool_model) == (None, None)
    assert reason.startswith("executor refused it: ") and "needs 32 cpus and 8 cards" in reason


def test_cancel_stops_the_running_process(
    client: TestClient,
    sessions: sessionmaker[Session],
    live: LiveNetwork,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    job = submit(alice, name="long", command="sleep 60", duration_s=60)
    dispatcher, reconciler = Dispatcher(sessions, live), Reconciler(sessions, live)
    deadline = time.monotonic() + 15
    while client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()["state"] != "running":
        dispatcher.run_once()
        reconciler.run_once()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert r.status_code == 200, r.text
    reconciler.run_once()  # cancels at the executor
    got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    ex = live.executors[got["center_id"]]
    status = ex.poll([f"{got['center_id']}/{job['id']}"])
    assert all(s.state.value == "cancelled" for s in status.values())


def test_dispatch_is_exactly_once_across_a_lost_commit(
    client: TestClient,
    sessions: sessionmaker[Session],
    live: LiveNetwork,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    job = submit(alice, name="once", command="echo x >> ran", duration_s=60)  # in its own dir
    dispatcher = Dispatcher(sessions, live)
    dispatcher.place()
    # hand over, then pretend the process died before the reference was committed
    with sessions() as s:
        from suanwang.server.database.models import JobRow
        from suanwang.server.services.dispatcher import submission

        row = s.get(JobRow, job["id"])
        assert row is not None and row.center_id is not None
        live.executors[row.center_id].submit(submission(row, live))
    # a new dispatcher round submits again: the executor recognises the job id
    dispatcher.hand_over()
    reconciler = Reconciler(sessions, live)
    _until_final(reconciler.run_once, client, alice, [job["id"]])
    runs = list(tmp_path.rglob(f"{job['id']}*/work/ran"))  # every run of it, at any center
    assert [line for run in runs for line in run.read_text().splitlines()] == ["x"]


def _dispatched(
    client: TestClient, sessions: sessionmaker[Session], live: LiveNetwork, who: Any, job_id: str
) -> tuple[str, str]:
    """Place and hand over the job; returns (center, executor ref)."""
    Dispatcher(sessions, live).run_once()
    got = client.get(f"/v1/jobs/{job_id}", headers=who.headers).json()
    assert got["state"] in ("scheduled", "running"), got
    with sessions() as s:
        row = s.get_one(JobRow, job_id)
        assert row.executor_ref is not None
        return got["center_id"], row.executor_ref


def _report_lost(
    sessions: sessionmaker[Session], live: LiveNetwork, job_id: str, center: str, ref: str
) -> int:
    """What the Slurm executor reports for a run after a controller restart (FAILED with
    JobLaunchFailure) although the run itself went on."""
    lost = ExecutorStatus(ref, JobState.LOST, reason="slurm FAILED (JobLaunchFailure)")
    with sessions.begin() as s:
        return Reconciler(sessions, live).apply(s, s.get_one(JobRow, job_id), lost, center)


def test_a_run_called_lost_that_recorded_its_end_is_not_run_again(
    client: TestClient,
    sessions: sessionmaker[Session],
    live: LiveNetwork,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    job = submit(alice, name="ran", command="echo ran", duration_s=60)
    center, ref = _dispatched(client, sessions, live, alice, job["id"])
    ex = live.executors[center]
    deadline = time.monotonic() + 15
    while ex.recorded_exit(ref) is None:  # the run ends; the platform has not seen it yet
        assert time.monotonic() < deadline
        time.sleep(0.1)
    _report_lost(sessions, live, job["id"], center, ref)
    got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert (got["state"], got["exit_code"], got["center_id"]) == ("succeeded", 0, center)
    states = [e["to_state"] for e in client.get(
        f"/v1/jobs/{job['id']}/events", headers=alice.headers).json()]  # fmt: skip
    assert "lost" not in states and states.count("scheduled") == 1


def test_a_run_called_lost_is_given_up_only_once_it_cannot_still_run(
    client: TestClient,
    sessions: sessionmaker[Session],
    live: LiveNetwork,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    job = submit(alice, name="slow", command="sleep 30", duration_s=60)
    center, ref = _dispatched(client, sessions, live, alice, job["id"])
    ex = live.executors[center]
    ex.stop_grace_s = 1.0  # as a Slurm executor's lease allows a run to go on
    try:
        assert _report_lost(sessions, live, job["id"], center, ref) == 0
        got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
        assert got["state"] in ("scheduled", "running")  # not placed anywhere else yet
        time.sleep(1.1)
        assert _report_lost(sessions, live, job["id"], center, ref) == 1
        got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
        assert got["state"] == "pending"  # given up (and fenced): placed again next round
        with sessions() as s:
            fences = s.scalars(select(RunFence).where(RunFence.job_id == job["id"])).all()
            assert [(f.center_id, f.executor_ref) for f in fences] == [(center, ref)]
        assert ref not in live.lost_seen
    finally:
        ex.cancel(ref)


def test_a_silent_center_is_failed_over_only_once_its_runs_cannot_still_run(
    client: TestClient,
    sessions: sessionmaker[Session],
    live: LiveNetwork,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    """The grace is the longer of ``lost_after_s`` and how long the center's runs may go on
    without word from the platform (a Slurm run's lease and watchdog: ``stop_grace_s``)."""
    job = submit(alice, name="slow", command="sleep 30", duration_s=60)
    center, ref = _dispatched(client, sessions, live, alice, job["id"])
    ex = live.executors[center]
    ex.stop_grace_s = 8.0  # its runs stop themselves up to 8 s after their last lease renewal
    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    now = [t0]
    live.health.clock = lambda: now[0]
    failover = Failover(sessions, live, lost_after_s=4.0)
    try:
        live.health.failed(center, "controller down")
        now[0] = t0 + timedelta(seconds=5)  # past lost_after_s, within the run's grace
        assert failover.fail_over() == 0
        got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
        assert got["state"] in ("scheduled", "running"), got
        now[0] = t0 + timedelta(seconds=8)
        assert failover.fail_over() == 1
        got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
        assert got["state"] == "pending"
        evs = client.get(f"/v1/jobs/{job['id']}/events", headers=alice.headers).json()
        lost = [e for e in evs if e["to_state"] == "lost"]
        assert "grace 8 s" in lost[0]["detail"]["reason"], lost
    finally:
        ex.cancel(ref)


@pytest.mark.parametrize(
    ("env", "budget"),
    [
        ({}, 0.9),
        ({"SUANWANG_ROUND_BUDGET_S": "0.5"}, 0.5),
        ({"SUANWANG_ROUND_BUDGET_S": "0"}, None),
    ],
)
def test_the_served_dispatcher_keeps_its_rounds_to_the_budget_set(
    tmp_path: Path, env: dict[str, str], budget: float | None
) -> None:
    """The server's placing rounds stop taking jobs after ``round_budget_s`` (default 0.9 s:
    every round under a second at 100,000 pending jobs; 0: no limit), read from
    ``SUANWANG_ROUND_BUDGET_S``; a budget that is not a number of seconds is refused, naming
    the variable."""
    settings = dataclasses.replace(Settings.from_env(env), db_url=f"sqlite:///{tmp_path / 'x.db'}")
    services = build_services(settings, tmp_path / "centers", ["zhongwei"], sandbox=SharedUser())
    assert services.placer.round_budget_s == budget
    for bad in ("-1", "nan", "inf", "soon"):
        with pytest.raises(ValueError, match="SUANWANG_ROUND_BUDGET_S"):
            Settings.from_env({"SUANWANG_ROUND_BUDGET_S": bad})
