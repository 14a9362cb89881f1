"""The non-preemptive bound: below the exact optimum (a MILP of the same problem), below every
policy that finishes its jobs, and above the fluid bound; all under the scenario's deferral
rule (a job starts within the limit or expires at the rule's penalty), drawn tight and loose."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any
from unittest.mock import patch

import highspy
import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from test_bound import FACTORIES, REL, finishable

from suanwang.core.jobs import Job
from suanwang.core.network import Network
from suanwang.core.scenario import DeferralRule
from suanwang.core.signals import Signals
from suanwang.scheduling.bound import offline_bound
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.tight_bound import (
    Q_MIN_H,
    Q_RATIO,
    _window_min,
    quantize_runtime,
    tight_bound,
)
from suanwang.sim.engine import simulate
from suanwang.sim.metrics import expiry_penalty_cny, measure

LIMITS_H = (0, 1, 3, 12)  # deferral limits drawn: none, tight, the default


def with_rule(net: Network, max_defer_h: int, expiry: float = 10.0) -> Network:
    """A fresh network like ``net`` under the deferral rule (``max_defer_h``, ``expiry``
    CNY/kWh): not shared between examples, so no run leaves anything in it for another."""
    return Network(replace(net.scenario, deferral=DeferralRule(max_defer_h, expiry)))


def milp_optimum(net: Network, signals: Signals, jobs: list[Job]) -> float:
    """The cheapest schedule of whole jobs with starts on whole hours within the deferral rule
    (or expired, at its penalty and cheapest transfer) and capacity held for every hour a run
    touches (a feasible schedule: its cost is >= the true optimum)."""
    hours = signals.hours
    cols: list[tuple[int, float, list[int], int]] = []  # job, cost, hours touched, pool
    limit_h = net.scenario.deferral.max_defer_s / 3600.0
    for j, job in enumerate(jobs):
        info = net.job_class(job)
        expire = expiry_penalty_cny(net, job) + job.data_gb * info.transfer_cost_cny_per_gb.min()
        cols.append((j, float(expire), [], -1))
        for i, p in enumerate(info.pools):
            ready_h = (job.submit_s + job.data_gb * float(info.transfer_s_per_gb[i])) / 3600.0
            r = job.work_scu / (job.demand_units * float(info.speed[i]))
            kw = job.demand_units * float(net.pool_facility_kw[p])
            c = np.array([info.centers[i]])
            for s in range(int(np.ceil(job.submit_s / 3600.0)), hours):
                if s + r > hours or s > ready_h + limit_h:
                    break
                e = kw * float(
                    signals.cumulative("price", c, (s + r) * 3600.0)[0]
                    - signals.cumulative("price", c, s * 3600.0)[0]
                )
                cost = e + job.data_gb * float(info.transfer_cost_cny_per_gb[i])
                cols.append((j, cost, list(range(s, int(np.ceil(s + r)))), int(p)))
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    n = len(cols)
    h.addVars(n, np.zeros(n), np.ones(n))
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32),
                            np.full(n, highspy.HighsVarType.kInteger))  # fmt: skip
    h.changeColsCost(n, np.arange(n, dtype=np.int32), np.array([c[1] for c in cols]))
    for j in range(len(jobs)):
        idx = np.array([i for i, c in enumerate(cols) if c[0] == j], dtype=np.int32)
        h.addRow(1.0, 1.0, idx.size, idx, np.ones(idx.size))
    for p in range(net.n_pools):
        for t in range(hours):
            idx = [i for i, c in enumerate(cols) if c[3] == p and t in c[2]]
            if idx:
                units = np.array([float(jobs[cols[i][0]].demand_units) for i in idx])
                h.addRow(-np.inf, float(net.pool_capacity[p]), len(idx),
                         np.array(idx, dtype=np.int32), units)  # fmt: skip
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return float(h.getInfo().objective_function_value)


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_tight_bound_below_milp_and_above_fluid(
    data: st.DataObject, tiny_net: Network, tiny_signals: Signals, random_jobs: Callable[..., Any]
) -> None:
    # the rule: a limit, and an expiry price above every grid price or below some
    expiry = data.draw(st.sampled_from([10.0, 0.3]))
    tiny_net = with_rule(tiny_net, data.draw(st.sampled_from(LIMITS_H)), expiry)
    jobs = data.draw(random_jobs(tiny_net.place_ids, min_size=1, max_size=8, max_run_h=6))
    class_h = data.draw(st.sampled_from([6, 48]))  # every draw first: a failure is reported
    jobs = [j for j in finishable(tiny_net, jobs) if tiny_net.job_class(j).pools.size]
    if not jobs:
        return
    tight = tight_bound(tiny_net, tiny_signals, jobs)
    exact = milp_optimum(tiny_net, tiny_signals, jobs)
    # classes merged over wide arrival windows (as when there are too many): still below
    wide = tight_bound(tiny_net, tiny_signals, jobs, class_h=class_h)
    assert wide.cost_cny <= exact * (1 + REL) + 1e-6
    # the fluid bound on the same time buckets (on finer ones it may be the higher: the
    # tight bound prices a bucket at its cheapest hour)
    old = offline_bound(tiny_net, tiny_signals, jobs, bucket_h=tight.bucket_h)
    note(f"old {old.cost_cny} tight {tight.cost_cny} milp {exact}")
    assert tight.cost_cny <= exact * (1 + REL) + 1e-6
    if expiry > tiny_signals.price_cny_per_kwh.max():
        # only with an expiry above grid prices: below them, the tight bound prices an
        # expired job's work beyond its class's least at the floor price, the fluid bound
        # every expired SCU at the rule's rate, which may then be the higher
        assert tight.cost_cny >= old.cost_cny * (1 - REL) - 1e-6
    total = tight.energy_cost_cny + tight.transfer_cost_cny + tight.expiry_cost_cny
    assert tight.cost_cny == pytest.approx(total)


@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_tight_bound_below_every_policy(
    data: st.DataObject,
    tiny_net: Network,
    tiny_signals: Signals,
    random_jobs: Callable[..., Any],
    check_outcome: Callable[..., None],
) -> None:
    limit = data.draw(st.sampled_from(LIMITS_H))
    tiny_net = with_rule(tiny_net, limit)
    jobs = finishable(tiny_net, data.draw(random_jobs(tiny_net.place_ids, 10, 50, max_run_h=4)))
    tight = tight_bound(tiny_net, tiny_signals, jobs)
    checked = 0
    for factory in FACTORIES:
        policy = factory()
        if isinstance(policy, SuanwangPolicy):
            policy = SuanwangPolicy(max_defer_h=limit)
        out = simulate(tiny_net, tiny_signals, jobs, policy)
        check_outcome(tiny_net, jobs, out)  # with the rule: no start past its limit
        rep = measure(policy.name, tiny_net, tiny_signals, jobs, out, 1)
        note(f"{policy.name} expired {rep.metrics['expired']}")
        if rep.metrics["unfinished"] == 0:
            cost = float(rep.metrics["cost_cny"])
            assert tight.cost_cny <= cost * (1 + REL) + 1e-9, (policy.name, tight, cost)
            checked += 1
    assert checked >= 1


@settings(max_examples=200, deadline=None)
@given(r=st.floats(0.0, 40.0), at=st.floats(0.0, 1.0), hour=st.integers(0, 7), c=st.integers(0, 1))
def test_quantized_runtime_charges_no_more_than_the_run(
    tiny_signals: Signals, r: float, at: float, hour: int, c: int
) -> None:
    """A slot's energy is priced for the runtime rounded down to the grid (shared between
    classes), the rest at the cheapest price from the start's hour on: never above the price
    integral of the run itself, for any start in the hour."""
    q, r_q = quantize_runtime(np.array([r]))
    assert 0.0 <= r_q[0] <= r
    assert r_q[0] >= r / Q_RATIO or (r < Q_MIN_H and q[0] == -1 and r_q[0] == 0.0)
    hours = tiny_signals.hours
    center = np.array([c % tiny_signals.price_cny_per_kwh.shape[0]])
    s = hour + at
    m = _window_min(tiny_signals, center, r_q, hours)[0, hour] if r_q[0] > 0 else 0.0
    floor = float(tiny_signals.price_cny_per_kwh[center[0], hour:].min())
    run = float(tiny_signals.cumulative("price", center, (s + r) * 3600.0)[0]
                - tiny_signals.cumulative("price", center, s * 3600.0)[0])  # fmt: skip
    note(f"r_q {r_q[0]} window {m} floor {floor} run {run}")
    assert m + (r - r_q[0]) * floor <= run * (1 + 1e-12) + 1e-12


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_too_many_classes_widen_the_arrival_window(
    data: st.DataObject, tiny_net: Network, tiny_signals: Signals, random_jobs: Callable[..., Any]
) -> None:
    """Past MAX_CLASSES whole-job classes, jobs are grouped over wider arrival windows: the
    same job arriving 3 hours later joins the first's class, and the bound stays valid."""
    from suanwang.scheduling import tight_bound as tb

    drawn = data.draw(random_jobs(tiny_net.place_ids, min_size=1, max_size=4, max_run_h=3))
    first = replace(drawn[0], checkpointable=False, submit_s=0.0)
    later = replace(first, job_id=first.job_id + "-later", submit_s=3 * 3600.0)
    jobs = [j for j in finishable(tiny_net, [first, later]) if tiny_net.job_class(j).pools.size]
    if len(jobs) < 2:
        return
    narrow = tight_bound(tiny_net, tiny_signals, jobs)
    with patch.object(tb, "MAX_CLASSES", 1):
        wide = tight_bound(tiny_net, tiny_signals, jobs)
    assert (narrow.classes, wide.classes) == (2, 1)
    assert wide.cost_cny <= milp_optimum(tiny_net, tiny_signals, jobs) * (1 + REL) + 1e-6
