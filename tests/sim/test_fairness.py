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

from suanwang.core.governance import Governance, TenantQuota, equal_shares
from suanwang.core.jobs import Job, Priority
from suanwang.core.network import Network
from suanwang.core.scenario import Scenario
from suanwang.core.signals import Signals
from suanwang.scenarios.signals import build_signals
from suanwang.scheduling.policies import FirstFit
from suanwang.sim.fairness import backlogged_hours, governance_metrics, jain, tenant_hourly_usage
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
    assert set(m["fairness"]) == {"jain_index", "min_entitled_fraction", "backlogged_hours"}
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
