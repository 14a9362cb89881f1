"""What a governed run measures (issue 14): Jain's index, usage per tenant and hour, backlogged
hours, and the metrics of a run; governed sharing is fairer than fifo when one tenant floods.

On a network of two centers with one pool of two A100s each (4 SCU/h in all)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from a100 import a100_job, two_pools
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.core.governance import Governance, Rules, TenantQuota, equal_shares
from suanwang.core.jobs import Job, Priority
from suanwang.core.network import Network
from suanwang.core.scenario import Scenario
from suanwang.core.signals import Signals
from suanwang.scenarios.signals import build_signals
from suanwang.scheduling.policies import FirstFit
from suanwang.scheduling.state import Decision
from suanwang.sim.fairness import (
    QuotaAsks,
    backlogged_hours,
    governance_metrics,
    jain,
    quota_asks,
    tenant_hourly_usage,
)
from suanwang.sim.governed import GovernedOutcome, simulate_governed

START = datetime(2025, 7, 1, tzinfo=UTC)
HOURS = 12
H = 3600.0
ROUND = 60.0


@pytest.fixture(scope="module")
def small(tiny: Scenario) -> Scenario:
    return two_pools(tiny)


@pytest.fixture(scope="module")
def net(small: Scenario) -> Network:
    return Network(small)


@pytest.fixture(scope="module")
def sig(small: Scenario) -> Signals:
    return build_signals(small, START, HOURS, seed=1)


def _job(i: int, tenant: str, submit_s: float, **kw: Any) -> Job:
    """A one-A100 training job (1 SCU/h on either pool) of 4 SCU."""
    return a100_job(i, **{"tenant": tenant, "submit_s": submit_s, "work_scu": 4.0, **kw})


def flood() -> list[Job]:
    """``a`` sends 16 four-hour jobs at once (16 h of the whole network); an hour later ``b``
    sends 8 (twice its share for the rest of the day's first six hours)."""
    a = [_job(i, "a", float(i), checkpointable=i % 2 == 0) for i in range(16)]
    b = [_job(16 + i, "b", H + i, checkpointable=True) for i in range(8)]
    return a + b


# --------------------------------------------------------------------------- Jain's index


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        ([1.0, 1.0, 1.0, 1.0], 1.0),
        ([1.0, 0.0, 0.0, 0.0], 0.25),
        ([1.0, 0.0], 0.5),
        ([1.0, 2.0], 0.9),  # 3^2 / (2 x 5)
        ([2.0, 1.0, 1.0], 16.0 / 18.0),
        ([3.0], 1.0),
        ([], 1.0),
        ([0.0, 0.0], 1.0),  # nobody got anything: equally nothing
    ],
)
def test_jain_of_known_vectors(x: list[float], expected: float) -> None:
    assert jain(np.array(x, dtype=np.float64)) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    x=st.lists(st.floats(0.0, 1e6), min_size=1, max_size=20).filter(lambda v: sum(v) > 1e-3),
    scale=st.floats(1e-3, 1e3),
)
def test_jain_is_between_one_over_n_and_one_and_ignores_scale(x: list[float], scale: float) -> None:
    v = np.array(x, dtype=np.float64)
    j = jain(v)
    assert 1.0 / v.size - 1e-12 <= j <= 1.0 + 1e-12
    assert jain(v * scale) == pytest.approx(j, rel=1e-9)
    assert jain(v[::-1]) == pytest.approx(j, rel=1e-12)


# --------------------------------------------------------------------------- usage, backlog


def test_usage_per_hour_follows_the_runs(net: Network, sig: Signals) -> None:
    """One card from the first round (60 s) for 2 h, then two cards for 1 h (b, at 3 h)."""
    jobs = [_job(0, "a", 0.0, work_scu=2.0), _job(1, "b", 3 * H, cards=2, work_scu=2.0)]
    g = simulate_governed(net, sig, jobs, FirstFit(), equal_shares(["a", "b"], 4.0))
    assert g.outcome.first_start_s.tolist() == [ROUND, 3 * H]
    usage = tenant_hourly_usage(net, jobs, g, 6)
    assert usage.shape == (2, 6)
    np.testing.assert_allclose(usage[0], [(H - ROUND) / H, 1.0, ROUND / H, 0, 0, 0])
    np.testing.assert_allclose(usage[1], [0, 0, 0, 2.0, 0, 0])
    # over fewer hours: the first ones
    np.testing.assert_allclose(tenant_hourly_usage(net, jobs, g, 2), usage[:, :2])
    # nobody waited at the end of any round: never backlogged
    assert not backlogged_hours(g, 6).any()


def test_a_tenant_is_backlogged_only_in_hours_it_always_had_work_waiting(
    net: Network, sig: Signals
) -> None:
    """``a`` holds the network 0:01-4:01 with four 4-hour jobs and has a fifth waiting
    (which starts at 4:01); ``b``'s preemptible job (also waiting) never counts."""
    jobs = [
        *(_job(i, "a", float(i)) for i in range(5)),
        _job(5, "b", 10.0, priority=Priority.PREEMPTIBLE),
    ]
    g = simulate_governed(net, sig, jobs, FirstFit(), equal_shares(["a", "b"], 4.0))
    assert g.outcome.first_start_s[4] == pytest.approx(4 * H + ROUND)
    back = backlogged_hours(g, 6)
    assert back.shape == (2, 6)
    # hours 0..3: waiting at every round; hour 4: not after 4:01; b: never (preemptible)
    assert back[0].tolist() == [True, True, True, True, False, False]
    assert not back[1].any()


# --------------------------------------------------------------------------- the metrics

TENANT_KEYS = {
    "usage_scu",
    "entitlement_scu",
    "share_of_usage",
    "wait_p50_s",
    "wait_p95_s",
    "preempted",
    "lost_work_scu",
}
TOP_KEYS = {
    "tenants",
    "fairness",
    "classes",
    "preemptions",
    "lost_work_scu",
    "lost_work_share",
    "waiting",
}


def _run(net: Network, sig: Signals, jobs: list[Job], gov: Governance | None) -> GovernedOutcome:
    return simulate_governed(net, sig, jobs, FirstFit(), gov, round_s=ROUND)


def test_governance_metrics_have_the_documented_keys_and_shares_sum_to_one(
    net: Network, sig: Signals
) -> None:
    jobs = [*flood(), _job(24, "c", 2 * H, work_scu=1.0, priority=Priority.URGENT)]
    gov = Governance(
        tenants={t: TenantQuota(t, t, q) for t, q in (("a", 2.0), ("b", 1.5), ("c", 0.5))}
    )
    g = _run(net, sig, jobs, gov)
    m = governance_metrics(net, jobs, g, 6 / 24)
    assert set(m) == TOP_KEYS
    assert set(m["tenants"]) == {"a", "b", "c"}
    for t, row in m["tenants"].items():
        assert set(row) == TENANT_KEYS, t
        assert row["entitlement_scu"] == pytest.approx(gov.tenants[t].quota_scu_per_h * 6)
        assert 0.0 <= row["share_of_usage"] <= 1.0
        assert row["wait_p50_s"] <= row["wait_p95_s"]
    shares = [row["share_of_usage"] for row in m["tenants"].values()]
    assert sum(shares) == pytest.approx(1.0, rel=1e-12)
    assert set(m["fairness"]) == {
        "jain_index", "min_entitled_fraction", "backlogged_hours", "asks",
        "asks_met_within_round", "asks_never_met", "ask_met_p50_s", "ask_met_p95_s",
        "ask_met_max_s",
    }  # fmt: skip
    assert m["fairness"]["asks"] >= 2  # a and b asked at least once each
    assert 0.0 <= m["fairness"]["asks_met_within_round"] <= 1.0
    assert m["fairness"]["ask_met_p50_s"] <= m["fairness"]["ask_met_p95_s"]
    assert m["fairness"]["ask_met_p95_s"] <= m["fairness"]["ask_met_max_s"]
    assert 0.0 < m["fairness"]["jain_index"] <= 1.0
    assert 0.0 <= m["fairness"]["min_entitled_fraction"] <= 1.0
    assert 1 <= m["fairness"]["backlogged_hours"] <= 6
    assert set(m["classes"]) == {p.value for p in Priority}
    assert m["classes"]["batch"]["jobs"] == 24 and m["classes"]["urgent"]["jobs"] == 1
    assert all(set(c) == {"jobs", "wait_p50_s", "wait_p95_s"} for c in m["classes"].values())
    # preemptions and lost work add up over tenants; what six hours of a full network hold
    assert m["preemptions"] == len(g.preemptions) > 0
    assert m["preemptions"] == sum(row["preempted"] for row in m["tenants"].values())
    lost = sum(row["lost_work_scu"] for row in m["tenants"].values())
    assert m["lost_work_scu"] == pytest.approx(lost)
    assert m["lost_work_share"] == pytest.approx(lost / sum(j.work_scu for j in jobs))
    used = sum(row["usage_scu"] for row in m["tenants"].values())
    assert used == pytest.approx(4.0 * 6 - ROUND / H * 4.0, rel=1e-9)  # full from 0:01
    assert set(m["waiting"]) <= {"capacity", "quota used up", "deferred for price"}


def test_governed_sharing_is_fairer_than_fifo_when_one_tenant_floods(
    net: Network, sig: Signals
) -> None:
    """fifo: ``b`` waits behind all of ``a``'s work (every hour after the first: Jain 0.5);
    governed: ``b`` takes its half back within a round, by preemption (Jain ~1)."""
    jobs = flood()
    gov = equal_shares(["a", "b"], 4.0)
    fair = governance_metrics(net, jobs, _run(net, sig, jobs, gov), 6 / 24)
    fifo = governance_metrics(net, jobs, _run(net, sig, jobs, None), 6 / 24)
    jf, jo = fair["fairness"]["jain_index"], fifo["fairness"]["jain_index"]
    assert jf >= jo
    assert jf > 0.95 and jo < 0.7, (jf, jo)
    assert fair["fairness"]["min_entitled_fraction"] > 0.9
    assert fifo["fairness"]["min_entitled_fraction"] == 0.0
    assert fifo["tenants"]["b"]["usage_scu"] == 0.0 and fifo["preemptions"] == 0
    # its half from its arrival (the second job a round later, submitted a second after)
    assert fair["tenants"]["b"]["usage_scu"] == pytest.approx(2.0 * 5 - ROUND / H)
    # both measured against the same entitlements: an equal share each
    for m in (fair, fifo):
        assert m["tenants"]["a"]["entitlement_scu"] == m["tenants"]["b"]["entitlement_scu"]


# --------------------------------------------------------------------------- asks, per round


def _asks(net: Network, sig: Signals, jobs: list[Job], gov: Governance) -> QuotaAsks:
    return quota_asks(net, jobs, _run(net, sig, jobs, gov))


def test_an_ask_on_an_empty_network_is_met_in_the_next_round(net: Network, sig: Signals) -> None:
    """a (quota 2 SCU/h) sends a 2-card job at 0:00:30: it asks then (it holds nothing) and
    holds 2 SCU/h from the round at 0:01, 30 s later. A second job while it holds its quota
    is no ask."""
    jobs = [_job(0, "a", 30.0, cards=2), _job(1, "a", 600.0, cards=2)]
    asks = _asks(net, sig, jobs, _gov(a=2.0, b=2.0))
    assert asks.tenant.tolist() == [0] and asks.at_s.tolist() == [30.0]
    assert asks.met_s.tolist() == [30.0]
    assert asks.summary(ROUND, 12 * H) == {
        "asks": 1, "asks_met_within_round": 1.0, "asks_never_met": 0, "ask_met_p50_s": 30.0,
        "ask_met_p95_s": 30.0, "ask_met_max_s": 30.0,
    }  # fmt: skip


def test_an_ask_below_the_quota_is_met_when_the_tenant_holds_all_it_wants(
    net: Network, sig: Signals
) -> None:
    """a's quota is 4 SCU/h (90%: 3.6) and it wants one card (1 SCU/h): met at its start."""
    asks = _asks(net, sig, [_job(0, "a", 0.0)], _gov(a=4.0))
    assert asks.met_s.tolist() == [ROUND]


@pytest.mark.parametrize("preemption", [True, False])
def test_an_ask_is_met_within_a_round_by_reclaiming_only_when_preemption_is_on(
    net: Network, sig: Signals, preemption: bool
) -> None:
    """b (quota 2) fills the network with four 4-hour one-card runs, two of them borrowed; a
    (quota 2) asks for two cards an hour later. With preemption it reclaims the borrowed
    cards in its first round; without, it waits for b's runs to end (at 4 h + a round)."""
    jobs = [_job(i, "b", 0.0, checkpointable=True) for i in range(4)]
    jobs.append(_job(4, "a", H + 10.0, cards=2))
    gov = _gov(a=2.0, b=2.0)
    gov = Governance(tenants=gov.tenants, rules=Rules(preemption=preemption))
    asks = _asks(net, sig, jobs, gov)
    mine = asks.tenant == 0  # a's asks (tenants in sorted order: a, b)
    assert asks.at_s[~mine].tolist() == [0.0] and asks.met_s[~mine].tolist() == [ROUND]
    assert asks.at_s[mine].tolist() == [H + 10.0]
    took = float(asks.met_s[mine][0])
    if preemption:
        assert took == pytest.approx(ROUND - 10.0)
        assert asks.summary(ROUND, 12 * H)["asks_met_within_round"] == 1.0
    else:
        assert took == pytest.approx(4 * H + ROUND - (H + 10.0))
        assert asks.summary(ROUND, 12 * H)["asks_met_within_round"] == 0.5


def test_a_job_deferred_for_price_does_not_ask_until_it_is_back(net: Network, sig: Signals) -> None:
    """a's job asks at 0:00; the policy defers it an hour in the round at 0:01 (its choice,
    not a wait for room): the ask ends there, as a wants nothing now. Back in the queue at
    1:01 it asks again (a holds nothing of its 4 SCU/h) and is placed at that instant: met,
    since a then holds all it wants."""
    jobs = [_job(0, "a", 0.0, cards=2)]
    g = simulate_governed(net, sig, jobs, _Later(), _gov(a=4.0), round_s=ROUND)
    assert g.deferrals == [(0, ROUND, ROUND + H)]
    asks = quota_asks(net, jobs, g)
    assert asks.at_s.tolist() == [0.0, ROUND + H] and asks.met_s.tolist() == [ROUND, 0.0]
    assert g.outcome.first_start_s[0] == ROUND + H


class _Later:
    """Defers every job an hour (a price valley), once: the host starts it when it is due."""

    name = "later"

    def decide(self, job: Job, info: Any, state: Any, market: Any = None, *,
               explain: bool = False) -> Decision:  # fmt: skip
        return Decision(pos=0, start_s=state.now_s + H)


def _gov(**quotas: float) -> Governance:
    return Governance(tenants={t: TenantQuota(t, t, q) for t, q in quotas.items()})


def test_an_ask_never_met_counts_to_the_end_of_the_run() -> None:
    """Three asks: met in 30 s, in 10 min, never (asked 1 h before the end of the run)."""
    asks = QuotaAsks(
        tenant=np.array([0, 1, 0]),
        at_s=np.array([0.0, 100.0, 11 * H]),
        met_s=np.array([30.0, 600.0, np.nan]),
    )
    got = asks.summary(ROUND, 12 * H)
    assert got["asks"] == 3 and got["asks_never_met"] == 1
    assert got["asks_met_within_round"] == pytest.approx(1 / 3)
    assert (got["ask_met_p50_s"], got["ask_met_max_s"]) == (600.0, H)
