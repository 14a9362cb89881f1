"""Simulating with wrong forecasts: billed on what happens, limits and deadlines still held."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np
import pytest

from suanwang.core.jobs import Job
from suanwang.core.network import Network
from suanwang.core.scenario import Scenario
from suanwang.core.signals import Signals
from suanwang.scenarios.forecasts import LEVELS, with_forecast_errors
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import Nearest
from suanwang.scheduling.state import CapacityState
from suanwang.sim.engine import Outcome, simulate
from suanwang.sim.metrics import PolicyReport, measure
from suanwang.sim.run import DEFERRAL_GAIN_SIGMAS, Workload, make_policy, run


def test_the_simulator_bills_the_realised_series(
    china_net: Network, china_signals: Signals, china_jobs: list[Job]
) -> None:
    """The same runs measured on signals whose forecasts are far off cost the same: were the
    forecast series billed, the cost would triple and the carbon change."""
    out = simulate(china_net, china_signals, china_jobs, Nearest())
    wrong = dataclasses.replace(
        china_signals,
        forecast_price_cny_per_kwh=china_signals.forecast_price_cny_per_kwh * 3.0,
        forecast_green_fraction=1.0 - china_signals.forecast_green_fraction,
        _cum={},
        _val={},
    )
    a = measure("nearest", china_net, china_signals, china_jobs, out, 1).metrics
    b = measure("nearest", china_net, wrong, china_jobs, out, 1).metrics
    assert a["energy_cost_cny"] > 0
    for key in ("cost_cny", "energy_cost_cny", "carbon_t", "green_share"):
        assert a[key] == b[key], key


def test_the_policy_plans_on_the_forecast(
    china_net: Network, china_signals: Signals, china_jobs: list[Job]
) -> None:
    """With wrong forecasts suanwang decides differently: it reads them."""
    wrong = with_forecast_errors(china_signals, LEVELS["high"], timezone="Asia/Shanghai", seed=1)
    exact = simulate(china_net, china_signals, china_jobs, SuanwangPolicy())
    off = simulate(china_net, wrong, china_jobs, SuanwangPolicy())
    assert not np.array_equal(exact.start_s, off.start_s, equal_nan=True)


def test_policies_hold_latency_limits_and_deadlines_with_errors(
    china: Scenario,
    china_net: Network,
    china_jobs: list[Job],
    start: datetime,
    check_outcome: Callable[[Network, Sequence[Job], Outcome], None],
    check_accounting: Callable[[Sequence[Job], Outcome, PolicyReport], None],
) -> None:
    workload = Workload(china_jobs, 1.0, "synthetic", rows=len(china_jobs))
    policies = ["nearest", "suanwang"]
    exact = run(china, workload, start=start, policies=policies, seed=1, drain_days=2.0,
                with_bound=False)  # fmt: skip
    wrong = run(china, workload, start=start, policies=policies, seed=1, drain_days=2.0,
                forecast_error="high")  # fmt: skip
    assert wrong.to_json()["forecast_error"] == "high" and "forecast_error" not in exact.to_json()
    m = {r.name: r.metrics for r in wrong.reports}
    for r in wrong.reports:
        assert r.metrics["latency_violations"] == 0
    assert m["suanwang"]["deadline_misses"] <= m["nearest"]["deadline_misses"]
    # nearest reads no signal: the same runs, the same bill, whatever the forecasts say
    same = {k: v for k, v in exact.reports[0].metrics.items() if k != "decisions_per_s"}
    assert same == {k: wrong.reports[0].metrics[k] for k in same}
    # the bound sees what happens, not the forecasts
    assert wrong.bound is not None
    assert wrong.bound.cost_cny <= m["suanwang"]["cost_cny"] * (1 + 1e-6)
    out = simulate(china_net, wrong.signals, china_jobs, SuanwangPolicy())
    check_outcome(china_net, china_jobs, out)
    check_accounting(china_jobs, out, measure("s", china_net, wrong.signals, china_jobs, out, 1.0))


def test_an_unknown_level_is_refused(
    china: Scenario, china_jobs: list[Job], start: datetime
) -> None:
    workload = Workload(china_jobs, 1.0, "synthetic", rows=len(china_jobs))
    with pytest.raises(ValueError, match="unknown forecast error level 'perfect'"):
        run(china, workload, start=start, policies=["nearest"], seed=0, forecast_error="perfect")


def _deferred(policy: SuanwangPolicy, net: Network, signals: Signals, jobs: list[Job]) -> int:
    """How many jobs the policy defers, each decided alone on an empty network at its submit."""
    n = 0
    for job in jobs:
        info = net.job_class(job)
        if not info.pools.size:  # rejected before any policy is asked
            continue
        state = CapacityState.empty(net, signals)
        state.now_s = job.submit_s
        d = policy.decide(job, info, state)
        n += d.reason == "cheapest planned slot"
    return n


def test_the_robust_rule_defers_only_for_gains_above_its_share(
    china_net: Network, china_signals: Signals, china_jobs: list[Job]
) -> None:
    """On an empty network every job has room now: a deferral is taken only for its gain, so a
    larger required share defers fewer jobs, and a share of 10x the objective none."""
    counts = [
        _deferred(SuanwangPolicy(min_deferral_gain_share=s), china_net, china_signals, china_jobs)
        for s in (0.0, 0.05, 0.3, 10.0)
    ]
    assert counts[0] > 0 and counts[-1] == 0
    assert counts == sorted(counts, reverse=True) and counts[1] > counts[2]


def test_make_policy_makes_only_suanwang_robust_and_only_with_errors() -> None:
    exact = make_policy("suanwang", LEVELS["none"])
    assert isinstance(exact, SuanwangPolicy) and exact.min_deferral_gain_share == 0.0
    robust = make_policy("suanwang", LEVELS["realistic"])
    assert isinstance(robust, SuanwangPolicy)
    assert robust.min_deferral_gain_share == pytest.approx(
        DEFERRAL_GAIN_SIGMAS * LEVELS["realistic"].price_sigma_24
    )
    assert isinstance(make_policy("nearest", LEVELS["high"]), Nearest)
