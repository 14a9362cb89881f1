"""One engine, two hosts: the same jobs, submitted at the same instant, with the same scenario
and signals, get the same decisions from the live dispatcher and from the simulator."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.core.network import Network
from suanwang.executors.local import LocalExecutor
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.server.database.models import JobRow
from suanwang.server.models.job_specs import to_core_job
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.live import LiveNetwork
from suanwang.sim.engine import simulate

#: inference near its users, deferrable training and rendering, CPU analytics, data to move
JOBS: list[dict[str, Any]] = [
    {"kind": "inference", "origin": "guangdong", "resources": {"count": 1, "cpus": 8}},
    {"kind": "training", "origin": "beijing", "duration_s": 36_000,
     "resources": {"count": 8, "cpus": 64}},
    {"kind": "finetune", "origin": "shanghai", "stacks": ["cann"], "duration_s": 7200,
     "resources": {"count": 8, "cpus": 64, "accelerator": "ascend-910b"}},
    {"kind": "render", "origin": "sichuan", "duration_s": 5400, "data_gb": 120,
     "resources": {"count": 2, "cpus": 16}},
    {"kind": "analytics", "origin": "zhejiang", "stacks": ["cpu"], "duration_s": 3600,
     "resources": {"count": 0, "cpus": 64}},
    {"kind": "interactive", "origin": "hubei", "resources": {"count": 1, "cpus": 4}},
    {"kind": "hpc", "origin": "tianjin", "stacks": ["dtk"], "duration_s": 14_400,
     "resources": {"count": 16, "cpus": 64}},
    {"kind": "training", "origin": "xinjiang", "duration_s": 20_000, "data_gb": 800,
     "resources": {"count": 16, "cpus": 128}},
    {"kind": "backup", "origin": "guangdong", "stacks": ["cpu"], "duration_s": 1800,
     "data_gb": 2000, "resources": {"count": 0, "cpus": 16}},
    {"kind": "inference", "origin": "shanghai", "latency_ms": 2,
     "resources": {"count": 2, "cpus": 16}},
]  # fmt: skip


@pytest.mark.parametrize("policy", [SuanwangPolicy(), SuanwangPolicy(max_defer_h=0)])
def test_the_live_dispatcher_and_the_simulator_decide_alike(
    client: TestClient,
    app: FastAPI,
    sessions: sessionmaker[Session],
    alice: Any,
    submit: Callable[..., dict[str, Any]],
    tmp_path: Path,
    policy: SuanwangPolicy,
) -> None:
    net: Network = app.state.network
    served = app.state.signals.current()
    price = served.forecast_price_cny_per_kwh.copy()
    price[:, :4] *= 5.0  # a dear afternoon: deferrable work has reason to wait
    signals = dataclasses.replace(
        served, price_cny_per_kwh=price, forecast_price_cny_per_kwh=price, _cum={}, _val={}
    )
    live = LiveNetwork(
        net=net,
        signals=lambda: signals,
        executors={c: LocalExecutor(tmp_path, c, cpus=64, cards=16) for c in net.center_ids},
        clock=app.state.signals.clock,
    )
    for i, fields in enumerate(JOBS):
        submit(alice, name=f"job-{i}", command="true", **fields)
    assert Dispatcher(sessions, live, policy=dataclasses.replace(policy)).place() == len(JOBS)

    with sessions() as s:  # in the order the dispatcher took them
        rows = list(s.scalars(select(JobRow).order_by(JobRow.submitted_at, JobRow.id)))
    now_s = (live.clock() - signals.start).total_seconds()
    jobs = [
        dataclasses.replace(to_core_job(r, net, t0=signals.start), submit_s=now_s) for r in rows
    ]
    out = simulate(net, signals, jobs, dataclasses.replace(policy))

    deferred = 0
    for i, row in enumerate(rows):
        assert row.decision is not None and row.start_at is not None
        sim_pool = int(out.pool[i])
        assert (row.center_id, row.pool_model) == (
            net.center_ids[int(net.pool_center[sim_pool])],
            net.pool_model[sim_pool],
        ), row.name
        start_at = signals.start + timedelta(seconds=float(out.release_s[i]))
        assert abs((row.start_at - start_at).total_seconds()) < 1e-3, row.name
        deferred += row.decision["deferred_h"] > 0
    if policy.max_defer_h:
        assert deferred  # the comparison covers deferred starts too
