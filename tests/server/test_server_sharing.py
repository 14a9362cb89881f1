"""The platform's queue, live (issue 14): under quotas the dispatcher takes pending jobs in
fair-share turn, places a job only where it can start now, and a job that cannot start stays
pending saying why; without quotas it places them oldest first, as before.

One center with an executor (wuhan-ai), jobs of 200 Ascend 910 cards: its pool of 400 holds
two. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.core.governance import Governance, TenantQuota
from suanwang.executors.local import LocalExecutor
from suanwang.server.models.governance import load_governance
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.live import LiveNetwork
from suanwang.server.services.reconciler import Reconciler
from suanwang.server.services.sharing import SHARE, Usage, no_governance


def _live(app: FastAPI, root: Path) -> LiveNetwork:
    return LiveNetwork(
        net=app.state.network,
        signals=app.state.signals.current,
        executors={"wuhan-ai": LocalExecutor(root, "wuhan-ai", cpus=64, cards=16)},
        clock=app.state.signals.clock,
    )


def _quotas(**quota: float) -> Callable[[Session], Governance]:
    gov = Governance(
        tenants={
            n: TenantQuota(name=n, cohort=f"c-{n}", quota_scu_per_h=q) for n, q in quota.items()
        }
    )
    return lambda session: gov


def _big(submit: Callable[..., dict[str, Any]], who: Any, name: str, **kw: Any) -> str:
    body: dict[str, Any] = {
        "command": "sleep 600",
        "resources": {"cpus": 8, "cards": 200, "accelerator": "ascend-910", "mem_gb": 64},
        "stacks": ["cann"],
        "kind": "inference",  # may not wait: no deferral for price, the order alone decides
        "latency_ms": 100,
    }
    job = submit(who, name=name, **{**body, **kw})
    return str(job["id"])


def _get(client: TestClient, who: Any, job: str) -> dict[str, Any]:
    got: dict[str, Any] = client.get(f"/v1/jobs/{job}", headers=who.headers).json()
    return got


def test_under_quotas_the_next_turn_goes_to_the_tenant_standing_lowest(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    bob: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    first = [_big(submit, alice, f"a{i}") for i in range(3)]  # alice floods first
    late = _big(submit, bob, "b0")
    dispatcher = Dispatcher(
        sessions, _live(app, tmp_path), governance=_quotas(alice=500.0, bob=500.0)
    )
    assert dispatcher.place() == 4
    states = {j: _get(client, alice, j)["state"] for j in first}
    assert _get(client, bob, late)["state"] == "scheduled"  # its turn came before alice's 2nd
    assert list(states.values()) == ["scheduled", "pending", "pending"]
    for j in first[1:]:
        d = _get(client, alice, j)["decision"]
        assert d["placed"] is False and d["waiting"] in ("capacity", SHARE)
        assert "waiting in the platform's queue" in d["reason"]
    waiting = _get(client, alice, first[1])["decision"]
    assert waiting["waiting"] == "capacity"  # it was tried: no pool had room


def test_without_quotas_pending_jobs_are_placed_oldest_first_as_before(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    bob: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    first = [_big(submit, alice, f"a{i}") for i in range(3)]
    late = _big(submit, bob, "b0")
    dispatcher = Dispatcher(sessions, _live(app, tmp_path), governance=no_governance)
    assert dispatcher.place() == 4
    # every job is placed (the third and fourth queue at the center where the wait is least)
    assert [_get(client, alice, j)["state"] for j in first] == ["scheduled"] * 3
    assert _get(client, bob, late)["state"] == "scheduled"
    assert _get(client, alice, first[2])["decision"]["queued"] is True


def test_a_waiting_reason_is_written_once_and_cleared_when_placed(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    jobs = [_big(submit, alice, f"a{i}") for i in range(3)]
    usage = Usage()
    dispatcher = Dispatcher(
        sessions, _live(app, tmp_path), governance=_quotas(alice=500.0), usage=usage
    )
    dispatcher.place()
    assert _get(client, alice, jobs[2])["decision"]["waiting"] == "capacity"
    assert usage.at_s is not None and usage.decayed.get(alice.id, 0.0) == 0.0
    # the placer remembers when work waited for room, on its pools only (the planner defers
    # nothing for price meanwhile: test_server_deferral)
    waited = dispatcher.waited_at
    assert waited is not None
    ascend = app.state.network.pool_named("wuhan-ai", "ascend-910")
    assert waited[ascend] == pytest.approx(app.state.signals.clock().timestamp(), abs=1.0)
    assert np.isinf(np.delete(waited, ascend)).all()
    assert dispatcher.progress == 2  # two placed
    assert dispatcher.place() == 1  # nothing changed: still waiting, the same reason
    assert dispatcher.progress == 0  # no progress: the worker's loop waits its interval
    assert _get(client, alice, jobs[2])["state"] == "pending"
    # a job of the third never ran: cancel the first, and the third gets its turn
    assert client.post(f"/v1/jobs/{jobs[0]}/cancel", headers=alice.headers).status_code == 200
    dispatcher.place()
    got = _get(client, alice, jobs[2])
    assert got["state"] == "scheduled" and got["decision"]["waiting"] is None


def test_a_round_that_has_run_its_time_stops_and_the_next_goes_on(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    bob: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    """A governed round stops taking jobs once it has decided ``batch`` and run
    ``round_budget_s`` (a clock that moves a second at every reading): the jobs it did not
    reach stay pending as they were, with no reason, and the next rounds place them, each
    once, in fair-share turn."""
    cards = {"resources": {"cpus": 8, "cards": 10, "accelerator": "ascend-910", "mem_gb": 64}}
    jobs = [_big(submit, alice, f"a{i}", **cards) for i in range(5)]
    late = _big(submit, bob, "b0", **cards)
    ticks = itertools.count()
    dispatcher = Dispatcher(
        sessions, _live(app, tmp_path), governance=_quotas(alice=500.0, bob=500.0), batch=2,
        round_budget_s=1.0, timer=lambda: float(next(ticks)),
    )  # fmt: skip
    assert dispatcher.place() == 2
    states = {j: _get(client, alice, j) for j in jobs}
    assert _get(client, bob, late)["state"] == "scheduled"  # its turn came before alice's 2nd
    assert [s["state"] for s in states.values()] == ["scheduled"] + ["pending"] * 4
    assert all(s["decision"] is None for s in list(states.values())[1:])  # not reached
    assert [dispatcher.place() for _ in range(3)] == [2, 2, 0]
    for j in [*jobs, late]:
        who = bob if j == late else alice
        events = client.get(f"/v1/jobs/{j}/events", headers=who.headers).json()
        assert [e["to_state"] for e in events].count("scheduled") == 1
    unbounded = Dispatcher(
        sessions, _live(app, tmp_path), governance=_quotas(alice=500.0), batch=2,
        round_budget_s=None, timer=lambda: float(next(ticks)),
    )  # fmt: skip
    more = [_big(submit, alice, f"m{i}", **cards) for i in range(4)]
    assert unbounded.place() == 4
    assert {_get(client, alice, j)["state"] for j in more} == {"scheduled"}


def test_an_urgent_job_goes_before_older_normal_ones(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    bob: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    older = [_big(submit, alice, f"a{i}") for i in range(2)]
    urgent = _big(submit, bob, "forecast", priority="urgent")
    assert _get(client, bob, urgent)["spec"]["priority"] == "urgent"
    # bob has almost no quota (its job runs on borrowed capacity), yet urgent goes first
    dispatcher = Dispatcher(
        sessions, _live(app, tmp_path), governance=_quotas(alice=500.0, bob=1.0)
    )
    dispatcher.place()
    assert _get(client, bob, urgent)["state"] == "scheduled"
    assert [_get(client, alice, j)["state"] for j in older] == ["scheduled", "pending"]


def test_an_unknown_priority_class_is_a_422_naming_the_field(
    client: TestClient, alice: Any, body: Callable[..., dict[str, Any]]
) -> None:
    r = client.post("/v1/jobs", json=body(priority="vip"), headers=alice.headers)
    assert r.status_code == 422
    assert "priority" in r.text and "urgent" in r.text


# --------------------------------------------------------------------------- preemption, live

CKPT_SCRIPT = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import os, signal, sys, time
    ckpt = os.environ["SUANWANG_CHECKPOINT_DIR"]
    def stop(*_):
        open(os.path.join(ckpt, "step"), "w").write("1")
        sys.exit(85)
    signal.signal(signal.SIGUSR1, stop)
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
    """
)


def _until(
    step: Callable[[], None], done: Callable[[], bool], what: str, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        step()
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.parametrize("checkpointable", [False, True])
def test_a_tenant_under_its_quota_preempts_borrowed_capacity_through_the_executor(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    bob: Any,
    operator: Any,
    submit: Callable[..., dict[str, Any]],
    checkpointable: bool,
) -> None:
    """alice (almost no quota) fills the pool with two runs on borrowed capacity; bob's job,
    within his quota, preempts one of them: a checkpointable run is asked to checkpoint and
    leaves as migrating, another is stopped at once and placed again from the start."""
    live = LiveNetwork(
        net=app.state.network,
        signals=app.state.signals.current,
        executors={"wuhan-ai": LocalExecutor(tmp_path / "c", "wuhan-ai", cpus=64, cards=400)},
        clock=app.state.signals.clock,
        checkpoint_root=tmp_path / "checkpoints",
    )
    program: dict[str, Any] = {"command": "sleep 600"}
    if checkpointable:
        program = {"command": None, "script": CKPT_SCRIPT, "checkpointable": True}
    flood = [_big(submit, alice, f"a{i}", **program) for i in range(2)]
    for who, quota in (("alice", 1), ("bob", 500)):
        body = {"cohort": f"c-{who}", "quota_scu_per_h": quota}
        assert client.put(f"/v1/quotas/{who}", json=body, headers=operator.headers).is_success
    dispatcher = Dispatcher(sessions, live, governance=load_governance)
    reconciler = Reconciler(sessions, live)

    def rounds() -> None:
        dispatcher.run_once()
        reconciler.run_once()

    claims: list[str] = []
    try:

        def started(j: str) -> bool:  # running, and (the script) ready for the signal
            logs = client.get(f"/v1/jobs/{j}/logs", headers=alice.headers).text
            return _get(client, alice, j)["state"] == "running" and (
                not checkpointable or "ready" in logs
            )

        _until(rounds, lambda: all(started(j) for j in flood), "alice's runs start")
        claim = _big(submit, bob, "b0")
        claims.append(claim)
        dispatcher.place()
        assert _get(client, bob, claim)["state"] == "scheduled"  # in the same round
        events = {
            j: client.get(f"/v1/jobs/{j}/events", headers=alice.headers).json() for j in flood
        }
        hit = [j for j, evs in events.items() if any(e["detail"].get("by") == claim for e in evs)]
        assert len(hit) == 1, events  # one run made room: the fewest victims
        victim = hit[0]
        if checkpointable:
            asked = [e["detail"] for e in events[victim] if e["detail"].get("by") == claim]
            assert asked[0]["event"] == "checkpoint_requested" and asked[0]["why"] == "preempted"
        else:
            got = _get(client, alice, victim)
            assert got["state"] == "migrating"
            assert events[victim][-1]["detail"]["event"] == "preempted"
        # bob's job runs once the victim has left; the victim waits its turn again
        _until(rounds, lambda: _get(client, bob, claim)["state"] == "running", "bob runs")
        _until(rounds, lambda: _get(client, alice, victim)["state"] == "pending"
               or _get(client, alice, victim)["decision"].get("waiting") is not None,
               f"the victim is back in the queue: {_get(client, alice, victim)}")  # fmt: skip
        assert _get(client, alice, victim)["decision"]["waiting"] in ("capacity", SHARE)
        metrics = client.get("/metrics", headers=operator.headers).text
        assert 'suanwang_tenant_preemptions_total{tenant="alice"} 1.0' in metrics
        assert 'suanwang_tenant_preemptions_total{tenant="bob"} 0.0' in metrics
    finally:  # no process outlives the test: cancel, and let the reconciler stop the runs
        for who, j in [(alice, j) for j in flood] + [(bob, j) for j in claims]:
            client.post(f"/v1/jobs/{j}/cancel", headers=who.headers)
        reconciler.run_once()


def test_quotas_set_through_the_api_take_effect_at_the_next_round(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    bob: Any,
    operator: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    first = [_big(submit, alice, f"a{i}") for i in range(3)]
    late = _big(submit, bob, "b0")
    dispatcher = Dispatcher(sessions, _live(app, tmp_path), governance=load_governance)
    for who in ("alice", "bob"):
        body = {"cohort": f"c-{who}", "quota_scu_per_h": 500}
        r = client.put(f"/v1/quotas/{who}", json=body, headers=operator.headers)
        assert r.status_code == 200, r.text
    dispatcher.place()
    assert _get(client, bob, late)["state"] == "scheduled"  # fair turn, as in the first test
    assert [_get(client, alice, j)["state"] for j in first] == ["scheduled", "pending", "pending"]
    metrics = client.get("/metrics", headers=operator.headers).text
    assert 'suanwang_tenant_quota_scu_per_h{tenant="alice"} 500.0' in metrics
    assert 'suanwang_tenant_pending{reason="capacity",tenant="alice"} 2.0' in metrics
    assert 'suanwang_tenant_usage_scu_per_h{tenant="bob"} 0.0' in metrics  # not handed over yet
    assert 'suanwang_tenant_preemptions_total{tenant="alice"} 0.0' in metrics


def test_usage_moves_with_the_hour_and_restores_from_a_save() -> None:
    """Times kept between rounds count from the last round's signals' start: when the hour
    turns they move with it (a protection does not last an hour longer, the decay misses
    nothing), and saved usage is restored as of when it was saved."""
    from datetime import UTC, datetime, timedelta

    usage = Usage(decayed={"t": 5.0}, at_s=3599.0, preempted={"j": (3500.0, 2)})
    hour = datetime(2025, 7, 1, 6, tzinfo=UTC)
    usage.in_frame(hour)
    usage.in_frame(hour + timedelta(hours=1))
    assert usage.at_s == -1.0 and usage.preempted == {"j": (-100.0, 2)}
    usage.restore({"t": 7.0}, hour + timedelta(minutes=30))
    assert usage.decayed == {"t": 7.0} and usage.at_s == -1800.0
    with pytest.raises(ValueError, match="in_frame"):
        Usage().restore({}, hour)


def test_a_new_placer_goes_on_from_the_usage_the_last_one_saved(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    from datetime import timedelta

    later = [0.0]
    base = app.state.signals.clock
    live = _live(app, tmp_path)
    live.clock = lambda: base() + timedelta(seconds=later[0])
    jobs = [_big(submit, alice, f"a{i}") for i in range(3)]  # two run, one waits
    first = Dispatcher(sessions, live, governance=_quotas(alice=500.0), usage_save_s=60.0)
    first.place()
    assert first.usage.decayed.get(alice.id, 0.0) == 0.0
    later[0] = 1800.0  # half an hour of two 200-card runs
    first.place()
    used = first.usage.decayed[alice.id]
    assert used > 100.0
    assert _get(client, alice, jobs[2])["state"] == "pending"
    fresh = Usage()
    second = Dispatcher(sessions, live, governance=_quotas(alice=500.0), usage=fresh)
    second.place()  # a restarted or newly elected placer, at the same instant
    assert fresh.decayed[alice.id] == pytest.approx(used, rel=1e-6)  # (the clock steps 1 us)
    later[0] = 1800.0 + 600.0
    second.place()
    assert fresh.decayed[alice.id] > used  # and goes on from there


def test_a_run_again_is_planned_from_when_it_started_running_not_its_first_run(
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    """A job preempted or moved and running again (attempt 1) holds its pool for its whole
    runtime from its new run's start: its first run began ten hours ago, but the calendar
    must not think it ends now."""
    from datetime import timedelta

    from suanwang.server.database.models import JobEvent, JobRow

    live = _live(app, tmp_path)
    job = _big(submit, alice, "again", duration_s=7200)
    now = live.clock()
    with sessions.begin() as s:
        row = s.get(JobRow, job)
        assert row is not None
        row.state, row.center_id, row.pool_model = "running", "wuhan-ai", "ascend-910"
        row.executor_ref, row.attempt = "ref-1", 1
        row.started_at = now - timedelta(hours=10)  # the first run
        s.add(JobEvent(job_id=job, at=now - timedelta(minutes=10), from_state="scheduled",
                       to_state="running", detail={}))  # fmt: skip
    signals = live.signals()
    with sessions() as s:
        state = live.state(s, signals)
    net = live.net
    pool = net.pool_of_run("wuhan-ai", "ascend-910", cpu_only=False)
    assert pool is not None
    hour = int(state.now_s // 3600)
    runtime_h = 7200 / 3600 / float(net.pool_speed[pool].max())  # at most 2 h on a faster chip
    held = state.committed[pool, hour : hour + 3]
    assert held[0] == 200 and state.free[pool] == net.pool_capacity[pool] - 200
    # the run ends 10 minutes short of its runtime from now: the next hour is still held
    assert runtime_h > 0.5 and held[1] == 200
