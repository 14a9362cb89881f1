"""Metrics of a run: energy is conserved across views, money adds up, shares are shares."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.core.jobs import Job
from suanwang.core.lifecycle import STATE_CODE, JobState
from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import Cheapest, FirstFit, Greenest, Nearest
from suanwang.sim.engine import Outcome, simulate
from suanwang.sim.metrics import (
    METRIC_KEYS,
    PolicyReport,
    busy_by_hour,
    expiry_penalty_cny,
    measure,
)
from suanwang.sim.workload import WorkloadSpec, synthetic_jobs

POLICIES = ["nearest", "first-fit", "cheapest", "greenest", "suanwang"]
FACTORIES = {
    "nearest": Nearest,
    "first-fit": FirstFit,
    "cheapest": Cheapest,
    "greenest": Greenest,
    "suanwang": SuanwangPolicy,
    "suanwang-eager": lambda: SuanwangPolicy(
        min_saving_cny=0.0, min_saving_share=0.0, min_remaining_h=0.25
    ),
}
H = 3600.0


def _integral(values: np.ndarray, t0: float, t1: float) -> float:
    """Hand-summed integral of an hourly step series over [t0, t1) (last value continues)."""
    n = len(values)
    total, t = 0.0, t0
    while t < t1:
        h = math.floor(t / H)
        nxt = t1 if h >= n - 1 else min((h + 1) * H, t1)
        total += float(values[min(h, n - 1)]) * (nxt - t) / H
        t = nxt
    return total


def check_report(
    net: Network, signals: Signals, jobs: list[Job], out: Outcome, rep: PolicyReport
) -> None:
    m = rep.metrics
    assert set(m) == set(METRIC_KEYS)
    n = len(jobs)
    # conservation of energy: per job == total == hourly series
    assert rep.job_energy_kwh.shape == (n,)
    total = float(m["energy_kwh"])
    assert float(rep.job_energy_kwh.sum()) == pytest.approx(total, rel=1e-6, abs=1e-9)
    assert float(rep.hourly_energy_kwh.sum()) == pytest.approx(total, rel=1e-6, abs=1e-9)
    assert rep.hourly_energy_kwh.shape == (net.n_centers, signals.hours)
    assert np.all(rep.hourly_energy_kwh >= -1e-9)
    assert np.all(rep.hourly_green_kwh <= rep.hourly_energy_kwh + 1e-9)
    # (a share computed from two float sums may exceed 1 by an ulp)
    assert -1e-12 <= m["green_share"] <= 1.0 + 1e-12
    assert float(rep.hourly_green_kwh.sum()) == pytest.approx(
        m["green_share"] * total, rel=1e-6, abs=1e-6
    )
    # independent recomputation, run by run (runs migrated away from, then last runs)
    runs = list(zip(out.seg_job, out.seg_pool, out.seg_start_s, out.seg_end_s, strict=True))
    for j in np.flatnonzero(~np.isnan(out.start_s)):
        end = out.end_s[j] if not np.isnan(out.end_s[j]) else out.horizon_s
        runs.append((j, out.pool[j], out.start_s[j], end))
    per_job = np.zeros(n)
    energy = cost = green = 0.0
    for j, p, t0, t1 in runs:
        job = jobs[int(j)]
        c = int(net.pool_center[int(p)])
        kw = job.demand_units * float(net.pool_facility_kw[int(p)])
        t0, t1 = float(t0), float(t1)
        per_job[int(j)] += kw * (t1 - t0) / H
        energy += kw * (t1 - t0) / H
        cost += kw * _integral(signals.price_cny_per_kwh[c], t0, t1)
        green += kw * _integral(signals.green_fraction[c], t0, t1)
    np.testing.assert_allclose(rep.job_energy_kwh, per_job, rtol=1e-9, atol=1e-9)
    assert total == pytest.approx(energy, rel=1e-9, abs=1e-9)
    assert m["energy_cost_cny"] == pytest.approx(cost, rel=1e-6, abs=1e-6)
    if total > 0:
        assert m["green_share"] == pytest.approx(green / total, rel=1e-6, abs=1e-9)
    transfer = float(out.transfer_cost_cny[out.pool >= 0].sum())
    if m["unfinished"] == 0:
        assert m["transfer_cost_cny"] == pytest.approx(transfer)
    # jobs that expired under the deferral rule: placed, failed, never started; their penalty
    ev_job, _, _, to, ev_pool = out.events.columns()
    failed = (to == STATE_CODE[JobState.FAILED]) & (ev_pool >= 0)
    gone = np.unique(ev_job[failed])
    assert m["expired"] == gone.size and np.isnan(out.first_start_s[gone]).all()
    penalty = sum(expiry_penalty_cny(net, jobs[int(j)]) for j in gone)
    assert m["expiry_cost_cny"] == pytest.approx(penalty)
    assert m["cost_cny"] == pytest.approx(
        m["energy_cost_cny"] + m["transfer_cost_cny"] + m["expiry_cost_cny"]
    )
    assert m["migrations"] == int(out.migrations.sum())
    assert m["carbon_t"] >= 0
    assert 0.0 <= m["utilization"] <= 1.0 + 1e-9
    # waits and job completion times
    submit = np.array([j.submit_s for j in jobs])
    started = ~np.isnan(out.first_start_s)
    if started.any():
        wait = (out.first_start_s - submit)[started]
        assert m["mean_wait_s"] == pytest.approx(float(wait.mean()))
        assert m["p95_wait_s"] >= 0
    done = ~np.isnan(out.end_s)
    if done.any():
        assert m["mean_jct_s"] == pytest.approx(float((out.end_s - submit)[done].mean()))
    # deadlines, by hand
    missed = 0
    for i, job in enumerate(jobs):
        if job.deadline_s is None or out.pool[i] < 0:
            continue
        if np.isnan(out.end_s[i]) or out.end_s[i] - job.submit_s > job.deadline_s + 1e-6:
            missed += 1
    assert m["deadline_misses"] == missed
    # flows: SCU placed from each origin to each center
    placed = out.pool >= 0
    work = sum(j.work_scu for j, ok in zip(jobs, placed, strict=True) if ok)
    assert float(rep.flows_scu.sum()) == pytest.approx(work)
    assert rep.flows_scu.shape == (len(net.place_ids), net.n_centers)


@pytest.mark.parametrize("name", POLICIES)
def test_synthetic_run_metrics(
    name: str, china_net: Network, china_signals: Signals, china_runs: dict[str, Any]
) -> None:
    run = china_runs[name]
    check_report(china_net, china_signals, run.jobs, run.outcome, run.report)
    assert run.report.name == name
    assert run.report.metrics["energy_kwh"] > 0
    assert 0 < run.report.metrics["green_share"] < 1


@pytest.mark.parametrize("name", ["nearest", "suanwang", "suanwang-eager"])
@given(data=st.data())
def test_random_run_metrics(
    name: str,
    data: st.DataObject,
    tiny_net: Network,
    tiny_signals: Signals,
    random_jobs: Callable[..., Any],
) -> None:
    jobs = data.draw(random_jobs(tiny_net.place_ids, max_size=40, max_submit_h=30, max_run_h=24))
    out = simulate(tiny_net, tiny_signals, jobs, FACTORIES[name]())
    rep = measure(name, tiny_net, tiny_signals, jobs, out, 1.25)
    check_report(tiny_net, tiny_signals, jobs, out, rep)


def test_metrics_with_migrations(tiny_net: Network, tiny_signals: Signals, start: Any) -> None:
    jobs = synthetic_jobs(tiny_net, WorkloadSpec(jobs=200, days=1, seed=2, load=0.8), start)
    jobs = [dataclasses.replace(j, checkpointable=True) for j in jobs]
    out = simulate(tiny_net, tiny_signals, jobs, FACTORIES["suanwang-eager"]())
    assert out.migrations.sum() > 0
    rep = measure("suanwang", tiny_net, tiny_signals, jobs, out, 1)
    check_report(tiny_net, tiny_signals, jobs, out, rep)
    assert rep.metrics["migrations"] == int(out.migrations.sum())


def test_empty_run(tiny_net: Network, tiny_signals: Signals) -> None:
    out = simulate(tiny_net, tiny_signals, [], Nearest())
    rep = measure("nearest", tiny_net, tiny_signals, [], out, 1)
    assert rep.metrics["energy_kwh"] == 0
    assert rep.metrics["green_share"] == 0
    assert rep.metrics["completed"] == 0
    assert rep.hourly_energy_kwh.sum() == 0


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2), st.floats(-2 * H, 8 * H), st.floats(0, 6 * H), st.floats(0, 5)
        ),
        max_size=12,
    )
)
def test_busy_by_hour_matches_brute_force(spans: list[tuple[int, float, float, float]]) -> None:
    hours = 5
    pools = np.array([s[0] for s in spans], dtype=np.int64)
    start = np.array([s[1] for s in spans], dtype=np.float64)
    end = start + np.array([s[2] for s in spans], dtype=np.float64)
    w = np.array([s[3] for s in spans], dtype=np.float64)
    got = busy_by_hour(pools, start, end, w, 3, hours)
    expected = np.zeros((3, hours))
    for p, s, e, wt in zip(pools, start, end, w, strict=True):
        for h in range(hours):
            overlap = max(0.0, min(e, (h + 1) * H) - max(s, h * H)) / H
            expected[p, h] += wt * overlap
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_busy_by_hour_by_hand() -> None:
    got = busy_by_hour(
        np.array([0, 1]),
        np.array([0.5 * H, 1.0 * H]),
        np.array([2.25 * H, 1.5 * H]),
        np.array([2.0, 4.0]),
        2,
        3,
    )
    np.testing.assert_allclose(got, [[1.0, 2.0, 0.5], [0.0, 2.0, 0.0]])
