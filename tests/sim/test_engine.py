"""The discrete-event simulator: timing, gangs, queues, the horizon."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from a100 import a100_job

from suanwang.core.jobs import ANY_ACCELERATOR, Job, JobKind
from suanwang.core.network import Network
from suanwang.core.scenario import DeferralRule
from suanwang.core.signals import Signals
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import FirstFit, Nearest
from suanwang.sim.engine import simulate
from suanwang.sim.metrics import measure
from suanwang.sim.workload import WorkloadSpec, synthetic_jobs

H = 3600.0


def _job(i: int = 0, **kw: Any) -> Job:
    """An A100 job that can only run at coast-ai (2 ms latency bound from the coast)."""
    return a100_job(i, **{"latency_ms": 0.5, **kw})


@pytest.fixture(scope="module")
def a100_pool(tiny_net: Network) -> int:
    info = tiny_net.job_class(_job())
    assert info.pools.size == 1
    p = int(info.pools[0])
    assert tiny_net.center_ids[tiny_net.pool_center[p]] == "coast-ai"
    assert tiny_net.pool_capacity[p] == 16
    return p


def test_single_job_timing(tiny_net: Network, tiny_signals: Signals, a100_pool: int) -> None:
    job = _job(submit_s=100.0, cards=4, work_scu=8.0, data_gb=50.0)
    out = simulate(tiny_net, tiny_signals, [job], Nearest())
    transfer_s = 50.0 * float(tiny_net.transfer_s_per_gb[tiny_net.place("coastal"), 0])
    assert out.pool[0] == a100_pool
    assert out.release_s[0] == pytest.approx(100.0 + transfer_s)
    assert out.start_s[0] == pytest.approx(100.0 + transfer_s)
    assert out.end_s[0] == pytest.approx(100.0 + transfer_s + 2 * H)  # 8 SCU / 4 A100s
    assert out.transfer_cost_cny[0] == pytest.approx(
        50.0 * float(tiny_net.transfer_cost_cny_per_gb[tiny_net.place("coastal"), 0])
    )
    assert out.decisions == 1
    assert out.horizon_s == tiny_signals.horizon_s


def test_gang_jobs_wait_for_all_units(tiny_net: Network, tiny_signals: Signals) -> None:
    jobs = [
        _job(0, cards=12, work_scu=12.0),
        _job(1, submit_s=10.0, cards=8, work_scu=8.0),
        _job(2, submit_s=20.0, cards=4, work_scu=4.0),
    ]
    out = simulate(tiny_net, tiny_signals, jobs, Nearest())
    assert out.start_s[0] == 0.0
    # 8 cards are not free until the first job ends at 1 h
    assert out.start_s[1] == pytest.approx(H)
    # 4 cards are free: the small job backfills at once
    assert out.start_s[2] == pytest.approx(20.0)
    assert out.end_s[0] == pytest.approx(H)


def test_fifo_order_in_a_queue(tiny_net: Network, tiny_signals: Signals) -> None:
    jobs = [_job(i, submit_s=float(i), cards=16, work_scu=16.0) for i in range(4)]
    out = simulate(tiny_net, tiny_signals, jobs, FirstFit())
    np.testing.assert_allclose(out.start_s, [0.0, H, 2 * H, 3 * H])
    np.testing.assert_allclose(out.end_s, [H, 2 * H, 3 * H, 4 * H])


def test_horizon_ends_the_run(tiny_net: Network, tiny_signals: Signals) -> None:
    horizon = tiny_signals.horizon_s
    # a deferral rule that lets a job wait out the horizon (the default, 12 h, would expire
    # the second job: tests/scheduling/test_deferral_rule.py)
    rule = DeferralRule(max_defer_h=48)
    tiny_net = Network(dataclasses.replace(tiny_net.scenario, deferral=rule))
    jobs = [
        _job(0, cards=16, work_scu=16.0 * 40),  # 40 h: finishes
        _job(1, submit_s=1.0, cards=16, work_scu=16.0 * 20),  # starts at 40 h, runs past 48 h
        _job(2, submit_s=2.0, cards=16, work_scu=16.0),  # queued behind: never starts
    ]
    out = simulate(tiny_net, tiny_signals, jobs, Nearest())
    assert out.end_s[0] == pytest.approx(40 * H)
    assert out.start_s[1] == pytest.approx(40 * H)
    assert np.isnan(out.end_s[1])
    assert np.isnan(out.start_s[2]) and np.isnan(out.end_s[2])
    assert out.pool[2] >= 0
    assert horizon == 48 * H


def test_a_late_submission_does_not_extend_the_horizon(
    tiny_net: Network, tiny_signals: Signals
) -> None:
    long = _job(0, work_scu=49.0)  # one card for 49 h: still running at the 48 h horizon
    late = _job(1, submit_s=49.5 * H)
    alone = simulate(tiny_net, tiny_signals, [long], Nearest())
    assert np.isnan(alone.end_s[0])
    out = simulate(tiny_net, tiny_signals, [long, late], Nearest())
    rep = measure("nearest", tiny_net, tiny_signals, [long, late], out, 1)
    assert rep.metrics["energy_kwh"] == pytest.approx(rep.hourly_energy_kwh.sum())
    assert np.isnan(out.end_s[0]) or out.end_s[0] <= out.horizon_s
    assert rep.metrics["completed"] == 0


def test_rejected_jobs(tiny_net: Network, tiny_signals: Signals) -> None:
    jobs = [
        _job(0, cards=17),  # more A100s than coast-ai has
        _job(1, accelerator=ANY_ACCELERATOR, stacks=frozenset({"neuware"})),  # no such chips
        _job(2, kind=JobKind.HPC, accelerator="ascend-910b", stacks=frozenset({"cann"})),
        _job(3),
    ]
    out = simulate(tiny_net, tiny_signals, jobs, Nearest())
    assert out.pool.tolist()[:3] == [-1, -1, -1]
    assert np.all(np.isnan(out.start_s[:3]))
    assert np.all(np.isnan(out.latency_ms[:3]))
    assert out.pool[3] >= 0
    assert out.decisions == 1


def test_planned_start_is_respected(tiny_net: Network, tiny_signals: Signals) -> None:
    """SuanwangPolicy may defer batch work; the job is not released before its planned start."""
    jobs = [
        _job(i, submit_s=i * 60.0, accelerator=ANY_ACCELERATOR, latency_ms=None, work_scu=2.0)
        for i in range(30)
    ]
    out = simulate(tiny_net, tiny_signals, jobs, SuanwangPolicy())
    submit = np.array([j.submit_s for j in jobs])
    assert np.all(out.release_s >= submit)
    assert np.all(out.start_s >= out.release_s - 1e-9)
    assert np.all(~np.isnan(out.end_s))


def test_migration_keeps_every_invariant(
    tiny_net: Network,
    tiny_signals: Signals,
    start: Any,
    check_outcome: Callable[..., None],
    check_accounting: Callable[..., None],
    check_same_outcome: Callable[..., None],
) -> None:
    jobs = synthetic_jobs(tiny_net, WorkloadSpec(jobs=200, days=1, seed=2, load=0.8), start)
    jobs = [dataclasses.replace(j, checkpointable=True) for j in jobs]

    def eager() -> SuanwangPolicy:
        return SuanwangPolicy(min_saving_cny=0.0, min_saving_share=0.0, min_remaining_h=0.25)

    out = simulate(tiny_net, tiny_signals, jobs, eager())
    moved = np.flatnonzero(out.migrations > 0)
    assert moved.size > 0
    assert len(out.seg_job) == int(out.migrations.sum())
    assert set(out.seg_job.tolist()) == set(moved.tolist())
    for k, j in enumerate(out.seg_job):
        assert jobs[int(j)].checkpointable
        assert out.seg_end_s[k] > out.seg_start_s[k]
        assert out.seg_start_s[k] >= out.first_start_s[j]
    # a migrated job restarts elsewhere no earlier than it left
    for j in moved:
        if not np.isnan(out.start_s[j]):
            left = out.seg_end_s[out.seg_job == j].max()
            assert out.start_s[j] >= left
    check_outcome(tiny_net, jobs, out)
    check_accounting(jobs, out, measure("eager", tiny_net, tiny_signals, jobs, out, 1))
    check_same_outcome(out, simulate(tiny_net, tiny_signals, jobs, eager()))


def test_non_checkpointable_jobs_never_move(
    tiny_net: Network, tiny_signals: Signals, start: Any
) -> None:
    jobs = synthetic_jobs(tiny_net, WorkloadSpec(jobs=200, days=1, seed=2, load=0.8), start)
    jobs = [dataclasses.replace(j, checkpointable=False) for j in jobs]
    pol = SuanwangPolicy(min_saving_cny=0.0, min_saving_share=0.0, min_remaining_h=0.25)
    out = simulate(tiny_net, tiny_signals, jobs, pol)
    assert out.migrations.sum() == 0
    assert len(out.seg_job) == 0


def test_progress_callback(tiny_net: Network, tiny_signals: Signals) -> None:
    seen: list[int] = []
    jobs = [_job(i, submit_s=float(i)) for i in range(3)]
    simulate(tiny_net, tiny_signals, jobs, Nearest(), progress=seen.append)
    assert seen[0] == 0
    assert seen[-1] == 3


def test_empty_job_list(tiny_net: Network, tiny_signals: Signals) -> None:
    out = simulate(tiny_net, tiny_signals, [], Nearest())
    assert out.pool.shape == (0,)
    assert out.decisions == 0


def test_a_job_behind_the_scan_starts_when_one_before_it_expires(
    tiny_net: Network, tiny_signals: Signals
) -> None:
    """The backfill scan reads the first 17 queued jobs; a scan that cannot start any of
    them is skipped, but not once a job among them leaves (expires): the next job behind
    then comes within the scan and starts if it fits."""
    rule = tiny_net.scenario.deferral
    first = _job(0, cards=12, work_scu=12.0 * 30)  # 12 of 16 cards for 30 h
    blocked = [_job(i, submit_s=float(i), cards=8, work_scu=8.0) for i in range(1, 18)]
    behind = _job(18, submit_s=100.0, cards=4, work_scu=4.0)  # fits, but 18th in the queue
    out = simulate(tiny_net, tiny_signals, [first, *blocked, behind], Nearest())
    assert np.isnan(out.start_s[1:18]).all()  # all expire (12 h) before the 30 h run ends
    expired = out.release_s[1] + rule.max_defer_s  # the first of them leaves the queue
    assert out.start_s[18] == pytest.approx(expired)
    # and more free units let a scan start what it skipped before (no expiry within 48 h)
    net = Network(dataclasses.replace(tiny_net.scenario, deferral=DeferralRule(max_defer_h=48)))
    small = [_job(19, submit_s=200.0, cards=8, work_scu=8.0)]
    out = simulate(net, tiny_signals, [first, *blocked[:3], *small], Nearest())
    np.testing.assert_allclose(out.start_s[1:], [30 * H, 30 * H, 31 * H, 31 * H])
