"""The scenario's deferral rule in the simulator: a job queued past its limit expires, pays the
rule's penalty in the run's cost, and never starts; a planner may not defer beyond the rule."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_bound import _job

from suanwang.core.jobs import Job
from suanwang.core.lifecycle import STATE_CODE, JobState
from suanwang.core.network import Network
from suanwang.core.scenario import DeferralRule
from suanwang.core.signals import Signals
from suanwang.scenarios.forecasts import LEVELS
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import Nearest
from suanwang.scheduling.tight_bound import tight_bound
from suanwang.sim.engine import simulate
from suanwang.sim.metrics import expiry_penalty_cny, measure
from suanwang.sim.run import make_policy


def ruled(net: Network, max_defer_h: int) -> Network:
    return Network(replace(net.scenario, deferral=DeferralRule(max_defer_h, 10.0)))


def h100_jobs(net: Network, n: int) -> list[Job]:
    """``n`` jobs at once, each holding the tiny network's only H100 pool (4 cards) for 2 h."""
    speed = float(net.job_class(_job(accelerator="h100", cards=4)).speed[0])
    return [
        _job(job_id=f"j{i}", accelerator="h100", cards=4, work_scu=2.0 * 4 * speed)
        for i in range(n)
    ]


@pytest.mark.parametrize(("limit_h", "expired"), [(0, 2), (1, 2), (3, 1), (12, 0)])
def test_queued_jobs_expire_at_their_limit_and_pay_the_penalty(
    tiny_net: Network, tiny_signals: Signals, limit_h: int, expired: int
) -> None:
    net = ruled(tiny_net, limit_h)
    jobs = h100_jobs(net, 3)
    assert net.job_class(jobs[0]).pools.size == 1
    out = simulate(net, tiny_signals, jobs, Nearest())
    m = measure("nearest", net, tiny_signals, jobs, out, 1).metrics
    # one at a time: the second starts after runtime_h, the third after twice that
    waits = [0.0, 2.0, 4.0]
    assert m["expired"] == sum(w > limit_h for w in waits) == expired
    assert m["completed"] == 3 - expired
    assert m["expiry_cost_cny"] == pytest.approx(expired * expiry_penalty_cny(net, jobs[0]))
    assert m["cost_cny"] == pytest.approx(
        m["energy_cost_cny"] + m["transfer_cost_cny"] + m["expiry_cost_cny"]
    )
    job, at, frm, to, pool = out.events.columns()
    gone = (to == STATE_CODE[JobState.FAILED]) & (pool >= 0)
    handed_back = (frm == STATE_CODE[JobState.SCHEDULED]) & (to == STATE_CODE[JobState.PENDING])
    assert np.array_equal(job[gone], job[handed_back])  # never scheduled -> failed (a run)
    # only the jobs that ran used energy: 4 cards for 2 h each
    kw = float(net.pool_facility_kw[net.job_class(jobs[0]).pools[0]])
    assert m["energy_kwh"] == pytest.approx((3 - expired) * 4 * kw * 2.0)
    # each expired at its limit: its data's arrival (no data: at once) + limit + 1 s of slack
    assert at[gone] == pytest.approx(np.full(expired, limit_h * 3600.0 + 1.0))
    assert np.isnan(out.first_start_s[job[gone]]).all()
    # and the bound, under the same rule, stays below the run
    assert tight_bound(net, tiny_signals, jobs).cost_cny <= m["cost_cny"] * (1 + 1e-9)


def test_penalty_is_the_rule_s_price_of_the_least_energy(tiny_net: Network) -> None:
    job = h100_jobs(tiny_net, 1)[0]
    info = tiny_net.job_class(job)
    kwh = job.work_scu * float((info.facility_kw_per_unit / info.speed).min())
    assert expiry_penalty_cny(tiny_net, job) == pytest.approx(10.0 * kwh)
    assert expiry_penalty_cny(tiny_net, _job(accelerator="no-such-chip")) == 0.0


def test_the_deferral_limit_binds_the_bound(tiny_net: Network, tiny_signals: Signals) -> None:
    """A job that arrives in its centers' dearest hour: with no deferral allowed, the bound
    pays about that hour's price; allowed to wait a day, the day's cheapest."""
    job = _job(work_scu=1.0)
    centers = tiny_net.job_class(job).centers
    price = tiny_signals.price_cny_per_kwh[centers, :24].min(axis=0)
    dear = int(price.argmax())
    job = replace(job, submit_s=dear * 3600.0)
    at_once = tight_bound(ruled(tiny_net, 0), tiny_signals, [job]).cost_cny
    a_day = tight_bound(ruled(tiny_net, 24), tiny_signals, [job]).cost_cny
    assert at_once > a_day * 1.05


def test_a_planner_that_defers_beyond_the_rule_is_refused(
    tiny_net: Network, tiny_signals: Signals
) -> None:
    with pytest.raises(ValueError, match=r"defers up to 13 h, beyond .* max_defer_h=12"):
        simulate(tiny_net, tiny_signals, h100_jobs(tiny_net, 1), SuanwangPolicy(max_defer_h=13))
    out = simulate(
        ruled(tiny_net, 2), tiny_signals, h100_jobs(tiny_net, 1), SuanwangPolicy(max_defer_h=2)
    )
    assert out.pool[0] >= 0


def test_make_policy_plans_within_the_scenario_s_rule() -> None:
    policy = make_policy("suanwang", LEVELS["none"], DeferralRule(max_defer_h=4))
    assert isinstance(policy, SuanwangPolicy)
    assert policy.max_defer_h == 4
    default = make_policy("suanwang", LEVELS["none"])
    assert isinstance(default, SuanwangPolicy)
    assert default.max_defer_h == SuanwangPolicy().max_defer_h == DeferralRule().max_defer_h
