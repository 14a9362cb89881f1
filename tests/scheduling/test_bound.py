"""The offline LP bound: a true lower bound on every policy's cost, and not a trivial one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from suanwang.core.jobs import ANY_ACCELERATOR, Job, JobKind
from suanwang.core.network import PRECISION_INDEX, Network
from suanwang.core.signals import Signals
from suanwang.scheduling.bound import offline_bound
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import Cheapest, FirstFit, Greenest, Nearest
from suanwang.sim.engine import simulate
from suanwang.sim.metrics import measure
from suanwang.sim.workload import WorkloadSpec, synthetic_jobs

FACTORIES = (Nearest, FirstFit, Cheapest, Greenest, SuanwangPolicy)
REL = 1e-6


def _job(**kw: Any) -> Job:
    base: dict[str, Any] = {
        "job_id": "j",
        "submit_s": 0.0,
        "kind": JobKind.TRAINING,
        "origin": "coastal",
        "cards": 1,
        "cpus": 8,
        "mem_gb": 8.0,
        "accelerator": ANY_ACCELERATOR,
        "stacks": frozenset({"cuda"}),
        "work_scu": 2.0,
    }
    base.update(kw)
    return Job(**base)


def trivial_lower_bound(net: Network, signals: Signals, jobs: list[Job]) -> float:
    """Each job's work at its cheapest feasible (pool, hour) energy price, plus cheapest link."""
    total = 0.0
    min_price = signals.price_cny_per_kwh.min(axis=1)
    for job in jobs:
        info = net.job_class(job)
        if info.pools.size == 0:
            continue
        kwh_per_scu = info.facility_kw_per_unit / info.speed
        total += job.work_scu * float((kwh_per_scu * min_price[info.centers]).min())
        total += job.data_gb * float(info.transfer_cost_cny_per_gb.min())
    return total


def finishable(net: Network, jobs: list[Job], max_h: float = 12.0) -> list[Job]:
    """Jobs that are rejected or run at most ``max_h`` hours on every feasible pool."""
    out = []
    for j in jobs:
        info = net.job_class(j)
        if info.pools.size == 0 or j.work_scu / (j.demand_units * info.speed.min()) <= max_h:
            out.append(j)
    return out


def assert_bound_below_policies(
    net: Network, signals: Signals, jobs: list[Job], log: Callable[[str], None] = note
) -> int:
    bound = offline_bound(net, signals, jobs)
    feasible = [j for j in jobs if net.job_class(j).pools.size]
    assert bound.jobs == len(feasible)
    assert bound.energy_cost_cny >= -1e-9
    assert bound.cost_cny == pytest.approx(
        bound.energy_cost_cny + bound.transfer_cost_cny + bound.expiry_cost_cny
    )
    assert bound.cost_cny >= trivial_lower_bound(net, signals, jobs) * (1 - REL) - 1e-9
    checked = 0
    for factory in FACTORIES:
        policy = factory()
        out = simulate(net, signals, jobs, policy)
        rep = measure(policy.name, net, signals, jobs, out, 1)
        log(f"{policy.name}: {rep.metrics['cost_cny']} vs bound {bound.cost_cny}")
        if rep.metrics["unfinished"] == 0:
            cost = float(rep.metrics["cost_cny"])
            assert bound.cost_cny <= cost * (1 + REL) + 1e-9, (policy.name, bound, cost)
            checked += 1
    return checked


@given(data=st.data())
def test_bound_below_every_policy_tiny(
    data: st.DataObject,
    tiny_net: Network,
    tiny_signals: Signals,
    random_jobs: Callable[..., Any],
) -> None:
    jobs = data.draw(random_jobs(tiny_net.place_ids, min_size=10, max_size=60, max_run_h=4))
    jobs = finishable(tiny_net, jobs)
    checked = assert_bound_below_policies(tiny_net, tiny_signals, jobs)
    assert checked >= 1, "no policy finished every job: instance too heavy to test the bound"


@settings(max_examples=10)
@given(data=st.data())
def test_bound_below_every_policy_china(
    data: st.DataObject,
    china_net: Network,
    china_signals: Signals,
    random_jobs: Callable[..., Any],
) -> None:
    jobs = data.draw(random_jobs(china_net.place_ids, min_size=10, max_size=40, max_run_h=4))
    jobs = finishable(china_net, jobs)
    assert assert_bound_below_policies(china_net, china_signals, jobs) >= 1


def test_bound_below_policies_on_synthetic_jobs(
    china_net: Network, china_signals: Signals, start: Any
) -> None:
    jobs = synthetic_jobs(china_net, WorkloadSpec(jobs=60, days=1, seed=5), start)
    # keep jobs that can finish well within the 48 h horizon
    short = finishable(china_net, jobs)
    assert len(short) >= 30
    assert assert_bound_below_policies(china_net, china_signals, short, log=print) >= 3


def test_no_jobs_and_only_infeasible_jobs(tiny_net: Network, tiny_signals: Signals) -> None:
    b = offline_bound(tiny_net, tiny_signals, [])
    assert b.cost_cny == 0.0 and b.jobs == 0
    b = offline_bound(tiny_net, tiny_signals, [_job(cards=10_000)])
    assert b.cost_cny == 0.0 and b.jobs == 0


def test_single_job_by_hand(tiny_net: Network, tiny_signals: Signals) -> None:
    """One CUDA job that only one pool can run: the bound is its work at the cheapest hours."""
    job = _job(accelerator="h100", work_scu=10.0, data_gb=5.0, origin="harbour")
    info = tiny_net.job_class(job)
    assert info.pools.size == 1
    p = int(info.pools[0])
    c = int(tiny_net.pool_center[p])
    b = offline_bound(tiny_net, tiny_signals, [job], bucket_h=1)
    cap = int(tiny_net.pool_capacity[p])
    unit_hours = job.work_scu / float(info.speed[0])
    # fill the cheapest hours first, cap unit-hours per hour
    prices = np.sort(tiny_signals.price_cny_per_kwh[c])
    need, cost = unit_hours, 0.0
    for price in prices:
        take = min(need, cap)
        cost += take * price * float(tiny_net.pool_facility_kw[p])
        need -= take
        if need <= 0:
            break
    assert b.energy_cost_cny == pytest.approx(cost, rel=1e-6)
    assert b.transfer_cost_cny == pytest.approx(5.0 * float(info.transfer_cost_cny_per_gb[0]))
    assert b.energy_kwh == pytest.approx(unit_hours * float(tiny_net.pool_facility_kw[p]))
    assert b.classes == 1


def test_work_arrives_before_it_is_done(tiny_net: Network, tiny_signals: Signals) -> None:
    """A job submitted late cannot use the cheap hours before it arrives."""
    early = _job(accelerator="h100", work_scu=4.0, origin="harbour", submit_s=0.0)
    late = _job(accelerator="h100", work_scu=4.0, origin="harbour", submit_s=30 * 3600.0)
    c = int(tiny_net.pool_center[tiny_net.job_class(early).pools[0]])
    prices = tiny_signals.price_cny_per_kwh[c]
    if prices[30:].min() > prices[:30].min():
        assert (
            offline_bound(tiny_net, tiny_signals, [late]).cost_cny
            > offline_bound(tiny_net, tiny_signals, [early]).cost_cny
        )
    assert offline_bound(tiny_net, tiny_signals, [late]).cost_cny >= offline_bound(
        tiny_net, tiny_signals, [early]
    ).cost_cny * (1 - REL)


@given(data=st.data(), bucket=st.sampled_from([2, 3, 4, 5, 8]))
def test_coarser_buckets_only_relax(
    data: st.DataObject,
    bucket: int,
    tiny_net: Network,
    tiny_signals: Signals,
    random_jobs: Callable[..., Any],
) -> None:
    jobs = data.draw(random_jobs(tiny_net.place_ids, min_size=1, max_size=20, max_run_h=4))
    fine = offline_bound(tiny_net, tiny_signals, jobs, bucket_h=1)
    coarse = offline_bound(tiny_net, tiny_signals, jobs, bucket_h=bucket)
    assert coarse.bucket_h == bucket
    assert coarse.cost_cny <= fine.cost_cny * (1 + REL) + 1e-9
    assert coarse.transfer_cost_cny == pytest.approx(fine.transfer_cost_cny)


def test_too_much_work_expires_at_the_rule_s_price(
    tiny_net: Network, tiny_signals: Signals
) -> None:
    # 4 H100 cards for 48 hours cannot do 10,000 SCU: what they cannot do expires (the
    # deferral rule's penalty per SCU), as the simulator would charge it
    job = _job(accelerator="h100", work_scu=10_000.0, origin="harbour")
    info = tiny_net.job_class(job)
    done = 4 * tiny_signals.hours * float(info.speed[0])
    rate = tiny_net.scenario.deferral.expiry_cny_per_kwh
    kwh_per_scu = float(info.facility_kw_per_unit[0] / info.speed[0])
    bound = offline_bound(tiny_net, tiny_signals, [job])
    assert bound.expiry_cost_cny == pytest.approx((10_000.0 - done) * rate * kwh_per_scu)
    assert bound.energy_kwh == pytest.approx(done * kwh_per_scu)


def test_precision_classes_are_separate(tiny_net: Network, tiny_signals: Signals) -> None:
    a = _job(kind=JobKind.TRAINING, stacks=frozenset({"cuda"}))
    b = _job(kind=JobKind.RENDER, stacks=frozenset({"cuda"}))
    assert PRECISION_INDEX[a.precision] != PRECISION_INDEX[b.precision]
    assert offline_bound(tiny_net, tiny_signals, [a, b]).classes == 2


def _queued_inference(n: int = 3) -> list[Job]:
    """Inference jobs that all need the 16 A100s of coast-ai for an hour: they must queue."""
    return [
        _job(
            job_id=f"i{k}",
            submit_s=float(k),
            kind=JobKind.INFERENCE,
            cards=16,
            cpus=128,
            accelerator="a100",
            work_scu=16.0,
        )
        for k in range(n)
    ]


def test_bound_below_policies_when_latency_bound_jobs_queue(
    tiny_net: Network, tiny_signals: Signals
) -> None:
    jobs = _queued_inference()
    assert {int(p) for j in jobs for p in tiny_net.job_class(j).pools} == {0}
    assert assert_bound_below_policies(tiny_net, tiny_signals, jobs, log=print) == len(FACTORIES)
