"""The simulator with the platform's queue (issue 14): every job accounted for, runs never
overlap nor overfill a pool, fifo is oldest first, a tenant's quota and urgent work are
reclaimed by preemption within a round, preemptible work never preempts and goes first, and
a run is a function of its inputs.

On a network of two centers with one pool of two A100s each (4 SCU/h in all)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from a100 import a100_job, two_pools
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.core.governance import Governance, Rules, TenantQuota, equal_shares
from suanwang.core.hardware import Precision
from suanwang.core.jobs import Job, JobKind, Priority
from suanwang.core.lifecycle import STATE_CODE, JobState, run_events
from suanwang.core.network import PRECISION_INDEX, Network
from suanwang.core.scenario import Scenario
from suanwang.core.signals import Signals
from suanwang.scenarios.signals import build_signals
from suanwang.scheduling.fairshare import Shares, Tier
from suanwang.scheduling.policies import FirstFit
from suanwang.scheduling.queue import (
    RESERVE_AFTER_S,
    PlatformQueue,
    Queued,
    pool_families,
    pool_hubs,
    where_of,
)
from suanwang.scheduling.state import Decision
from suanwang.sim.fairness import quota_asks
from suanwang.sim.governed import GovernedOutcome, capacity_scu_per_h, simulate_governed
from suanwang.sim.workload import WorkloadSpec, synthetic_jobs, tenant_names

START = datetime(2025, 7, 1, tzinfo=UTC)
HOURS = 12
H = 3600.0
ROUND = 60.0
SUCCEEDED, FAILED = STATE_CODE[JobState.SUCCEEDED], STATE_CODE[JobState.FAILED]
MIGRATING, PENDING = STATE_CODE[JobState.MIGRATING], STATE_CODE[JobState.PENDING]


@pytest.fixture(scope="module")
def small(tiny: Scenario) -> Scenario:
    return two_pools(tiny)


@pytest.fixture(scope="module")
def net(small: Scenario) -> Network:
    n = Network(small)
    assert n.n_pools == 2 and n.pool_capacity.tolist() == [2, 2]
    assert capacity_scu_per_h(n) == 4.0
    return n


@pytest.fixture(scope="module")
def sig(small: Scenario) -> Signals:
    return build_signals(small, START, HOURS, seed=1)


def _job(i: int, tenant: str = "a", submit_s: float = 0.0, **kw: Any) -> Job:
    """A one-A100 training job (1 SCU/h on either pool) of 2 SCU, no data to move."""
    return a100_job(i, **{"tenant": tenant, "submit_s": submit_s, "work_scu": 2.0, **kw})


def _gov(**quotas: float) -> Governance:
    return Governance(tenants={t: TenantQuota(t, t, q) for t, q in quotas.items()})


# --------------------------------------------------------------------------- reading a run


@dataclasses.dataclass(frozen=True)
class RunSpan:
    job: int
    pool: int
    start_s: float
    end_s: float  # inf: still running at the horizon
    tier: int

    def scu(self, net: Network, jobs: Sequence[Job]) -> float:
        job = jobs[self.job]
        speed = float(net.pool_speed[self.pool, PRECISION_INDEX[job.precision]])
        return job.demand_units * speed * (self.end_s - self.start_s) / H


def spans(g: GovernedOutcome) -> list[RunSpan]:
    """Every run of the event log (core.lifecycle.run_events) with the tier it ran in."""
    ev_job, ev_at, ev_from, ev_to, ev_pool = g.outcome.events.columns()
    begin, finish, handover, _ = run_events(ev_job, ev_from, ev_to)
    assert not handover.any()  # the simulator sees every run begin
    assert begin.size == g.tier.size
    return [
        RunSpan(
            job=int(ev_job[b]),
            pool=int(ev_pool[b]),
            start_s=float(ev_at[b]),
            end_s=float(ev_at[f]) if f >= 0 else np.inf,
            tier=int(t),
        )
        for b, f, t in zip(begin.tolist(), finish.tolist(), g.tier.tolist(), strict=True)
    ]


def assert_governed_valid(net: Network, jobs: Sequence[Job], g: GovernedOutcome) -> None:
    """Conservation, one run at a time per job, capacity, and what preemption may do."""
    out = g.outcome
    eps = 1e-6
    ev_job, ev_at, _, ev_to, _ = out.events.columns()
    runs = spans(g)
    by_job: dict[int, list[RunSpan]] = {}
    for r in runs:
        by_job.setdefault(r.job, []).append(r)
    lost: dict[int, float] = {}
    for p in g.preemptions:
        lost[p.job] = lost.get(p.job, 0.0) + p.lost_scu
    completed = rejected = unfinished = 0
    for i, job in enumerate(jobs):
        mine = ev_job == i
        finals = ev_to[mine]
        feasible = net.job_class(job).pools.size > 0
        allowed = not g.fair or job.priority_class in g.governance.tenants[job.tenant].classes
        if (finals == FAILED).any():  # rejected: no feasible pool or class refused, never ran
            rejected += 1
            assert not (feasible and allowed) and i not in by_job and out.pool[i] == -1
            assert np.isnan(out.end_s[i]) and np.isnan(out.first_start_s[i])
            continue
        assert feasible, f"job {i} had a feasible pool and was not placed"
        if (finals == SUCCEEDED).any():
            completed += 1
            assert int((finals == SUCCEEDED).sum()) == 1
            assert not np.isnan(out.end_s[i]) and out.end_s[i] <= out.horizon_s + eps
            last = by_job[i][-1]
            assert last.end_s == pytest.approx(out.end_s[i])
            assert last.start_s == pytest.approx(out.start_s[i])
            # the work it did: all of it, plus what preemption threw away
            done = sum(r.scu(net, jobs) for r in by_job[i])
            assert done == pytest.approx(job.work_scu + lost.get(i, 0.0), rel=1e-6, abs=1e-9)
        else:
            unfinished += 1
            assert np.isnan(out.end_s[i])
        if i in by_job:
            assert out.first_start_s[i] == pytest.approx(by_job[i][0].start_s)
            assert out.first_start_s[i] >= job.submit_s - eps
            for r in by_job[i]:
                assert r.pool in set(net.job_class(job).pools.tolist())
                assert r.end_s >= r.start_s - eps
        # never two runs at once
        for a, b in zip(by_job.get(i, []), by_job.get(i, [])[1:], strict=False):
            assert b.start_s >= a.end_s - eps, f"job {i} runs twice at once"
        # every event at or after its submission, in time order per job
        times = ev_at[mine]
        assert times[0] == job.submit_s and (np.diff(times) >= -eps).all()
    assert completed + rejected + unfinished == len(jobs)
    # units in use never exceed a pool's capacity (ends before starts at the same instant)
    per_pool: dict[int, list[tuple[float, int, int]]] = {}
    for r in runs:
        u = jobs[r.job].demand_units
        per_pool.setdefault(r.pool, []).extend([(r.start_s, 1, u), (r.end_s, 0, -u)])
    for p, events in per_pool.items():
        busy = 0
        for t, _, du in sorted(events):
            busy += du
            assert busy <= net.pool_capacity[p], f"pool {p} over capacity at {t}"
    # preemption: of a running job of another tenant, for a job that is not preemptible;
    # a checkpointable victim loses nothing; the victim goes back to the queue
    for p in g.preemptions:
        victim, by = jobs[p.job], jobs[p.by]
        assert victim.tenant != by.tenant
        assert by.priority_class is not Priority.PREEMPTIBLE
        assert victim.priority_class is not Priority.URGENT
        stopped = [r for r in by_job[p.job] if r.end_s == p.at_s and r.pool == p.pool]
        assert len(stopped) == 1
        if victim.checkpointable:
            assert p.lost_scu == 0.0
        else:
            assert p.lost_scu == pytest.approx(stopped[0].scu(net, jobs), rel=1e-9, abs=1e-12)
        back = (ev_job == p.job) & (ev_at == p.at_s) & (ev_to == PENDING)
        assert int(back.sum()) == 1
    # at most max_preemptions_per_round runs stopped per round
    per_round = Counter(p.at_s for p in g.preemptions)
    assert max(per_round.values(), default=0) <= g.governance.rules.max_preemptions_per_round
    for r in runs:
        if not g.fair:  # no quotas: every run on the network's capacity
            assert r.tier == Tier.NETWORK
        elif jobs[r.job].priority_class is Priority.PREEMPTIBLE:
            assert r.tier == Tier.IDLE
        else:
            assert r.tier in (Tier.NOMINAL, Tier.COHORT, Tier.NETWORK)
    if not g.fair:
        assert not g.preemptions
    assert g.backlogged.shape == (g.round_s.size, len(g.tenants))
    assert (np.diff(g.round_s) > 0).all()


def outcome_arrays(g: GovernedOutcome) -> dict[str, Any]:
    """Everything a governed run returns, comparable with ==."""
    o = g.outcome
    arrays = {
        f.name: getattr(o, f.name)
        for f in dataclasses.fields(o)
        if isinstance(getattr(o, f.name), np.ndarray) and f.name != "decision_s"
    }  # decision_s: how long each decision took (the wall clock's, not the run's)
    return {
        **{k: v.tolist() for k, v in arrays.items()},
        "events": [c.tolist() for c in o.events.columns()],
        "preemptions": g.preemptions,
        "tier": g.tier.tolist(),
        "round_s": g.round_s.tolist(),
        "backlogged": g.backlogged.tolist(),
        "waiting": g.waiting,
        "tenants": g.tenants,
    }


def _same(a: GovernedOutcome, b: GovernedOutcome) -> None:
    x, y = outcome_arrays(a), outcome_arrays(b)
    assert x.keys() == y.keys()
    for k in x:
        np.testing.assert_equal(x[k], y[k], err_msg=k)


# --------------------------------------------------------------------------- invariants

GOVERNANCES: dict[str, Governance | None] = {
    "fifo": None,
    "equal": equal_shares(["a", "b", "c"], 4.0),
    "cohort": Governance(
        tenants={
            "a": TenantQuota("a", "x", 1.0, borrow_limit_scu_per_h=1.0),
            "b": TenantQuota("b", "x", 1.0),
            "c": TenantQuota("c", "y", 2.0, classes=frozenset(Priority) - {Priority.URGENT}),
        },
        rules=Rules(protect_s=600.0, max_preemptions_per_round=2),
    ),
}


@st.composite
def workloads(draw: st.DrawFn) -> list[Job]:
    """Up to 16 jobs of three tenants in every class over four hours (four cards: contention);
    some need 3 cards or an H800 (no feasible pool here: rejected); some move data first.
    Often one tenant first fills the network with long batch work (others then preempt)."""
    n = draw(st.integers(1, 16))
    jobs = []
    if draw(st.booleans()):
        flooder = draw(st.sampled_from(["a", "b", "c"]))
        ckpt = draw(st.lists(st.booleans(), min_size=4, max_size=4))
        jobs += [
            _job(0, flooder, float(i), work_scu=5.0, checkpointable=c) for i, c in enumerate(ckpt)
        ]
    for _ in range(n):
        cards = draw(st.sampled_from([1, 1, 1, 2, 3]))
        jobs.append(
            _job(
                0,
                tenant=draw(st.sampled_from(["a", "b", "c"])),
                submit_s=float(draw(st.integers(0, 4 * 60)) * 60 + draw(st.sampled_from([0, 7]))),
                cards=cards,
                work_scu=cards * draw(st.sampled_from([0.25, 1.0, 2.5, 6.0])),
                priority=draw(st.sampled_from([None, *Priority])),
                checkpointable=draw(st.booleans()),
                accelerator=draw(st.sampled_from(["a100", "a100", "a100", "h800"])),
                data_gb=draw(st.sampled_from([0.0, 0.0, 0.0, 40.0])),
            )
        )
    jobs.sort(key=lambda j: j.submit_s)
    return [dataclasses.replace(j, job_id=f"j{i}") for i, j in enumerate(jobs)]


@settings(max_examples=40, deadline=None)
@given(
    jobs=workloads(),
    which=st.sampled_from(sorted(GOVERNANCES)),
    round_s=st.sampled_from([60.0, 300.0]),
)
def test_every_job_is_accounted_for_and_no_pool_overfills(
    net: Network, sig: Signals, jobs: list[Job], which: str, round_s: float
) -> None:
    g = simulate_governed(net, sig, jobs, FirstFit(), GOVERNANCES[which], round_s=round_s)
    assert_governed_valid(net, jobs, g)
    assert g.fair is (which != "fifo")
    assert g.tenants == tuple(sorted({j.tenant for j in jobs}))


def test_a_synthetic_workload_of_tenants_and_classes(
    tiny_net: Network, tiny_signals: Signals
) -> None:
    spec = WorkloadSpec(
        jobs=120, days=0.5, seed=4, tenants=4, urgent_share=0.3, preemptible_share=0.3
    )
    jobs = synthetic_jobs(tiny_net, spec, START)
    assert {j.tenant for j in jobs} <= set(tenant_names(4)) == {"t01", "t02", "t03", "t04"}
    assert {j.priority_class for j in jobs} >= {Priority.URGENT, Priority.PREEMPTIBLE}
    # a scarce network: a twentieth of the tiny one's capacity in quotas
    gov = equal_shares(tenant_names(4), capacity_scu_per_h(tiny_net) / 20)
    g = simulate_governed(tiny_net, tiny_signals, jobs, FirstFit(), gov)
    assert_governed_valid(tiny_net, jobs, g)
    again = simulate_governed(tiny_net, tiny_signals, jobs, FirstFit(), gov)
    _same(g, again)


# --------------------------------------------------------------------------- fifo


@pytest.mark.parametrize("mixed", [False, True])
def test_fifo_starts_identical_jobs_in_submit_order(
    net: Network, sig: Signals, mixed: bool
) -> None:
    """Two-card jobs that may only run at coast-ai (0.5 ms from the coast): one at a time."""
    tenants, classes = ["a", "b", "c"], [Priority.URGENT, Priority.BATCH, Priority.PREEMPTIBLE]
    jobs = [
        _job(
            i,
            tenant=tenants[i % 3] if mixed else "a",
            submit_s=float(i),
            cards=2,
            work_scu=2.0,
            latency_ms=0.5,
            priority=classes[(7 - i) % 3] if mixed else None,
        )
        for i in range(6)
    ]
    assert net.job_class(jobs[0]).pools.tolist() == [0]
    g = simulate_governed(net, sig, jobs, FirstFit(), None, round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    # the first round after the first arrival, then each as soon as the one before ends
    np.testing.assert_allclose(g.outcome.first_start_s, [ROUND + k * H for k in range(6)])
    assert not g.fair and not g.preemptions
    assert set(g.governance.tenants) == set(g.tenants)  # equal shares, to measure by


# --------------------------------------------------------------------------- preemption


def _flood(ckpt: bool) -> list[Job]:
    """Tenant ``a`` (quota 2 of 4 SCU/h) fills the network with four 4-hour jobs at once:
    two in its quota, two on network-borrowed capacity."""
    return [_job(i, "a", float(i), work_scu=4.0, checkpointable=ckpt) for i in range(4)]


@pytest.mark.parametrize("ckpt", [True, False])
def test_a_tenant_under_its_quota_reclaims_borrowed_capacity_within_a_round(
    net: Network, sig: Signals, ckpt: bool
) -> None:
    jobs = [*_flood(ckpt), _job(4, "b", 1800.0 + 7.0, work_scu=2.0)]
    g = simulate_governed(net, sig, jobs, FirstFit(), _gov(a=2.0, b=2.0), round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    out, runs = g.outcome, spans(g)
    first = {r.job: r for r in reversed(runs)}  # each job's first run
    assert [first[i].tier for i in range(4)] == [Tier.NOMINAL] * 2 + [Tier.NETWORK] * 2
    # b's job starts in the first round after it arrives, in its nominal quota
    assert 4 in first and first[4].tier == Tier.NOMINAL
    assert jobs[4].submit_s <= out.first_start_s[4] <= jobs[4].submit_s + ROUND
    (p,) = g.preemptions
    assert p.by == 4 and p.at_s == out.first_start_s[4] and p.job in (2, 3)
    assert first[p.job].tier == Tier.NETWORK and first[p.job].end_s == p.at_s
    # the victim went back to the queue and completed later, once a's own runs had ended
    victim = [r for r in runs if r.job == p.job]
    assert len(victim) == 2  # back on the first unit to come free: b's when b's job ends
    assert out.end_s[4] - 1e-6 <= victim[1].start_s <= out.end_s[4] + ROUND
    assert out.end_s[p.job] <= out.horizon_s
    assert (~np.isnan(out.end_s)).all()
    ran = (p.at_s - first[p.job].start_s) / H  # SCU: one card at speed 1
    assert ran > 0.4
    if ckpt:  # checkpointed: it resumes where it stopped
        assert p.lost_scu == 0.0
        assert victim[1].end_s - victim[1].start_s == pytest.approx((4.0 - ran) * H)
    else:  # it loses what it had run and starts over
        assert p.lost_scu == pytest.approx(ran)
        assert victim[1].end_s - victim[1].start_s == pytest.approx(4.0 * H)
    # a's other network-borrowed run and its nominal runs were left alone
    assert sum(1 for r in runs if r.job != p.job) == 4


def test_an_urgent_job_preempts_a_batch_job_within_a_round(net: Network, sig: Signals) -> None:
    """``a``'s batch jobs hold the whole network in its quota; ``b`` (no quota) sends urgent
    work: it runs within a round, in the network tier, and the batch job resumes later."""
    jobs = [
        *(_job(i, "a", float(i), work_scu=4.0, checkpointable=i % 2 == 0) for i in range(4)),
        _job(4, "b", 3000.0, work_scu=1.0, priority=Priority.URGENT),
    ]
    assert all(j.priority_class is Priority.BATCH for j in jobs[:4])
    g = simulate_governed(net, sig, jobs, FirstFit(), _gov(a=4.0, b=0.0), round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    out, runs = g.outcome, spans(g)
    assert [r.tier for r in runs[:4]] == [Tier.NOMINAL] * 4
    (p,) = g.preemptions
    assert p.by == 4 and jobs[p.job].checkpointable and p.lost_scu == 0.0  # the cheaper victim
    assert jobs[4].submit_s <= out.first_start_s[4] <= jobs[4].submit_s + ROUND
    assert (~np.isnan(out.end_s)).all()
    # urgent does not preempt urgent: the same with a's jobs urgent, and b waits
    urgent = [dataclasses.replace(j, priority=Priority.URGENT) for j in jobs]
    u = simulate_governed(net, sig, urgent, FirstFit(), _gov(a=4.0, b=0.0), round_s=ROUND)
    assert_governed_valid(net, urgent, u)
    assert not u.preemptions
    assert u.outcome.first_start_s[4] == pytest.approx(min(u.outcome.end_s[:4]))


def test_preemptible_jobs_never_preempt_and_are_preempted_first(net: Network, sig: Signals) -> None:
    """``a`` (quota 1) holds one nominal run, one network-borrowed checkpointable run and two
    preemptible runs that would lose work; ``c``'s preemptible job waits without preempting;
    ``b``'s job in its quota preempts a preemptible run, not the borrowed one."""
    jobs = [
        _job(0, "a", 0.0, work_scu=5.0),
        _job(1, "a", 1.0, work_scu=5.0, checkpointable=True),
        _job(2, "a", 2.0, work_scu=5.0, priority=Priority.PREEMPTIBLE),
        _job(3, "a", 3.0, work_scu=5.0, priority=Priority.PREEMPTIBLE),
        _job(4, "c", 1000.0, work_scu=1.0, priority=Priority.PREEMPTIBLE),
        _job(5, "b", 2000.0, work_scu=1.0),
    ]
    g = simulate_governed(net, sig, jobs, FirstFit(), _gov(a=1.0, b=1.0, c=2.0), round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    out, runs = g.outcome, spans(g)
    first = {r.job: r for r in reversed(runs)}
    assert [first[i].tier for i in range(4)] == [Tier.NOMINAL, Tier.NETWORK, Tier.IDLE, Tier.IDLE]
    (p,) = g.preemptions
    assert p.by == 5 and p.job in (2, 3) and p.lost_scu > 0
    assert jobs[5].submit_s <= out.first_start_s[5] <= jobs[5].submit_s + ROUND
    # c's preemptible job waited for a run to end: no preemption on its behalf
    assert out.first_start_s[4] >= min(out.end_s[[0, 1, 5]]) - 1e-6
    assert all(q.by != 4 for q in g.preemptions)
    # with b's job preemptible too, nothing is preempted at all
    calm = [*jobs[:5], dataclasses.replace(jobs[5], priority=Priority.PREEMPTIBLE)]
    c = simulate_governed(net, sig, calm, FirstFit(), _gov(a=1.0, b=1.0, c=2.0), round_s=ROUND)
    assert_governed_valid(net, calm, c)
    assert not c.preemptions


def test_no_preemption_when_the_rules_say_so(net: Network, sig: Signals) -> None:
    jobs = [*_flood(True), _job(4, "b", 1800.0, work_scu=2.0)]
    gov = dataclasses.replace(_gov(a=2.0, b=2.0), rules=Rules(preemption=False))
    g = simulate_governed(net, sig, jobs, FirstFit(), gov, round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    assert not g.preemptions
    assert g.outcome.first_start_s[4] == pytest.approx(min(g.outcome.end_s[:4]))


@pytest.mark.parametrize("budget", [1, 2])
def test_at_most_max_preemptions_per_round_runs_are_stopped(
    net: Network, sig: Signals, budget: int
) -> None:
    """``b``'s two-card job in its quota needs both of ``a``'s network-borrowed runs (on one
    pool) stopped: with a budget of one run per round it waits for ``a``'s runs to end."""
    jobs = [*_flood(True), _job(4, "b", 1800.0, cards=2, work_scu=4.0)]
    gov = dataclasses.replace(_gov(a=2.0, b=2.0), rules=Rules(max_preemptions_per_round=budget))
    g = simulate_governed(net, sig, jobs, FirstFit(), gov, round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    out = g.outcome
    if budget == 1:
        assert not g.preemptions
        assert out.first_start_s[4] == pytest.approx(min(out.end_s[:4]))
    else:
        assert sorted(p.job for p in g.preemptions) == [2, 3]
        assert {p.at_s for p in g.preemptions} == {out.first_start_s[4]} == {1800.0}


# --------------------------------------------------------------------------- determinism


@settings(max_examples=10, deadline=None)
@given(jobs=workloads(), which=st.sampled_from(sorted(GOVERNANCES)))
def test_two_runs_give_identical_outcomes(
    net: Network, sig: Signals, jobs: list[Job], which: str
) -> None:
    a = simulate_governed(net, sig, jobs, FirstFit(), GOVERNANCES[which])
    b = simulate_governed(net, sig, list(jobs), FirstFit(), GOVERNANCES[which])
    _same(a, b)


def test_a_card_here_runs_one_scu_per_hour(net: Network) -> None:
    """The jobs above hold cards: their precision's speed is the A100's, 1 SCU per hour."""
    job = _job(0)
    assert job.precision is Precision.FP16
    assert net.pool_speed[:, PRECISION_INDEX[job.precision]].tolist() == [1.0, 1.0]


class _AlwaysLater:
    """A policy that always wants the job an hour later on its first pool (a price valley)."""

    name = "later"

    def decide(self, job: Job, info: Any, state: Any, market: Any = None, *,
               explain: bool = False) -> Decision:  # fmt: skip
        return Decision(pos=0, start_s=state.now_s + H)


def test_a_job_is_deferred_for_price_once_then_starts_when_due(net: Network, sig: Signals) -> None:
    """Back in the queue at its planned start, a deferred job starts: a policy that would
    defer it again does not push it further (no chain of deferrals)."""
    jobs = [_job(0, "a", 0.0)]
    g = simulate_governed(net, sig, jobs, _AlwaysLater(), equal_shares(["a"], 4.0), round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    assert g.outcome.first_start_s[0] == pytest.approx(ROUND + H)
    assert g.waiting == {"deferred for price": 1}


def test_a_class_the_tenant_may_not_use_is_refused_at_submission(
    net: Network, sig: Signals
) -> None:
    """As the API refuses it (403): the job fails at once and never waits in the queue."""
    gov = Governance(tenants={"a": TenantQuota("a", "c", 2.0, classes=frozenset({Priority.BATCH}))})
    jobs = [_job(0, "a", 0.0), _job(1, "a", 1.0, priority=Priority.URGENT)]
    g = simulate_governed(net, sig, jobs, FirstFit(), gov, round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    ev_job, _, _, ev_to, _ = g.outcome.events.columns()
    assert FAILED in ev_to[ev_job == 1].tolist()
    assert not np.isnan(g.outcome.end_s[0]) and np.isnan(g.outcome.first_start_s[1])
    assert not g.backlogged.any()  # the refused job never counts as waiting
    # fifo has no quotas: the same job runs
    fifo = simulate_governed(net, sig, jobs, FirstFit(), None, round_s=ROUND)
    assert not np.isnan(fifo.outcome.end_s[1])


def a100s_and_h800s(tiny: Scenario, h800s: int) -> Scenario:
    """Two A100s (1 SCU/h each) at one center and ``h800s`` H800s (over 2 each) at another."""
    keep = {c.id: c for c in tiny.centers}
    return dataclasses.replace(
        tiny,
        centers=(
            dataclasses.replace(keep["coast-ai"], inventory=(("a100", 2),), cpu_cores=0),
            dataclasses.replace(keep["desert-ai"], inventory=(("h800", h800s),), cpu_cores=0),
        ),
    )


def test_a_claim_full_where_it_holds_starts_borrowed_on_a_faster_free_pool(
    tiny: Scenario,
) -> None:
    """Tenant a (quota 2 SCU/h) has room in its quota for one A100 (1 SCU/h) but not for one
    H800 (more than 2 SCU/h). b's nominal runs fill the A100s (nothing a may reclaim); the
    H800s are free: a's job starts there at once, borrowed (others' claims may reclaim it),
    instead of waiting for an A100."""
    sc = a100s_and_h800s(tiny, h800s=2)
    net = Network(sc)
    a100 = net.pool_model.index("a100")
    h800 = net.pool_model.index("h800")
    q = PRECISION_INDEX[Precision.FP16]
    assert net.pool_speed[a100, q] == 1.0 and net.pool_speed[h800, q] > 2.0
    sig = build_signals(sc, START, HOURS, seed=1)
    anywhere = {"accelerator": "any", "stacks": frozenset({"cuda"})}
    jobs = [
        _job(0, "b", 0.0, work_scu=8.0, **anywhere),
        _job(1, "b", 0.0, work_scu=8.0, **anywhere),
        _job(2, "a", 1800.0, work_scu=2.0, **anywhere),
    ]
    gov = Governance(tenants={"a": TenantQuota("a", "a", 2.0), "b": TenantQuota("b", "b", 2.0)})
    # b's two jobs: one A100 each fits b's quota (2 x 1 SCU/h); FirstFit takes the A100s
    g = simulate_governed(net, sig, jobs, FirstFit(), gov, round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    first = {r.job: r for r in reversed(spans(g))}
    assert first[0].pool == first[1].pool == a100
    assert first[0].tier == first[1].tier == Tier.NOMINAL
    assert first[2].pool == h800 and first[2].tier == Tier.NETWORK
    assert jobs[2].submit_s <= g.outcome.first_start_s[2] <= jobs[2].submit_s + ROUND
    assert not g.preemptions  # b's nominal runs are not a's to reclaim


def test_a_claim_reclaims_a_checkpointable_run_of_a_tenant_over_its_quota_whatever_its_tier(
    tiny: Scenario,
) -> None:
    """b (quota 2 SCU/h) holds both A100s in its quota (nominal runs) and borrows an H800 on
    top (over 3 SCU/h more). a (quota 2) needs an A100: b's A100 runs were admitted in its
    quota, but b would still use more than its quota without one of them, so that run is
    borrowed capacity now and a reclaims it (checkpointed) within a round."""
    sc = a100s_and_h800s(tiny, h800s=1)
    net = Network(sc)
    a100 = net.pool_model.index("a100")
    h800 = net.pool_model.index("h800")
    sig = build_signals(sc, START, HOURS, seed=1)
    long = {"work_scu": 8.0, "checkpointable": True}
    jobs = [
        _job(0, "b", 0.0, **long),
        _job(1, "b", 0.0, **long),
        _job(2, "b", 0.0, accelerator="any", **long),
        _job(3, "a", 1800.0, work_scu=1.0),  # an A100 job: only the A100 pool
    ]
    gov = Governance(tenants={"a": TenantQuota("a", "a", 2.0), "b": TenantQuota("b", "b", 2.0)})
    g = simulate_governed(net, sig, jobs, FirstFit(), gov, round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    first = {r.job: r for r in reversed(spans(g))}
    assert (first[0].pool, first[1].pool, first[2].pool) == (a100, a100, h800)
    assert first[0].tier == first[1].tier == Tier.NOMINAL and first[2].tier == Tier.NETWORK
    (p,) = g.preemptions
    assert p.by == 3 and p.job in (0, 1) and p.lost_scu == 0.0
    assert jobs[3].submit_s <= g.outcome.first_start_s[3] <= jobs[3].submit_s + ROUND
    assert first[3].pool == a100 and first[3].tier == Tier.NOMINAL


@pytest.mark.parametrize("over_due", [True, False])
def test_a_non_checkpointable_run_in_its_tenants_quota_is_reclaimed_only_from_a_tenant_over_its_due(
    tiny: Scenario, over_due: bool
) -> None:
    """As above but b's runs cannot checkpoint: a run admitted in b's quota is not taken as
    borrowed (its work would be lost). b uses more than twice its quota (the H800 run), so a,
    owed its quota (it runs nothing), takes one at once (fair-share preemption: b stands over
    its due even without it and still runs more than 90% of its quota). Without the H800 run
    b stands under its due: a waits for an A100 to come free."""
    sc = a100s_and_h800s(tiny, h800s=1)
    net = Network(sc)
    sig = build_signals(sc, START, HOURS, seed=1)
    jobs = [
        _job(0, "b", 0.0, work_scu=2.0),
        _job(1, "b", 0.0, work_scu=2.0),
        *([_job(2, "b", 0.0, accelerator="any", work_scu=8.0)] if over_due else []),
        _job(3, "a", 1800.0, work_scu=1.0),
    ]
    gov = Governance(tenants={"a": TenantQuota("a", "a", 2.0), "b": TenantQuota("b", "b", 2.0)})
    g = simulate_governed(net, sig, jobs, FirstFit(), gov, round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    a = len(jobs) - 1
    if not over_due:
        assert not g.preemptions
        assert g.outcome.first_start_s[a] == pytest.approx(2 * H, abs=ROUND)  # b's A100s end
        return
    (p,) = g.preemptions
    assert p.by == a and p.job in (0, 1) and p.lost_scu > 0.0
    # at once: a is owed its quota and b keeps more than 90% of its own without the run
    assert p.at_s - jobs[a].submit_s <= ROUND
    assert g.outcome.first_start_s[a] == p.at_s


@pytest.mark.parametrize("fair", [True, False])
def test_a_job_waits_for_a_chip_it_is_fast_on_rather_than_crawl_on_a_free_one(
    tiny: Scenario, fair: bool
) -> None:
    """An FP64 job runs 20 times slower on an H800 (0.05 SCU/h) than on an A100. With the
    A100s busy for four hours and the H800s free, a 1 SCU job waits for an A100 (it ends
    sooner so, and the H800s stay for work they are fast at); a 0.01 SCU job, whose H800 run
    would take only 0.185 h longer, starts on an H800 once it has waited that long."""
    sc = a100s_and_h800s(tiny, h800s=2)
    net = Network(sc)
    a100 = net.pool_model.index("a100")
    h800 = net.pool_model.index("h800")
    q = PRECISION_INDEX[Precision.FP64]
    slow = float(net.pool_speed[h800, q])
    assert net.pool_speed[a100, q] == 1.0 and slow == pytest.approx(0.05, abs=0.002)
    sig = build_signals(sc, START, HOURS, seed=1)
    hpc = {"kind": JobKind.HPC, "accelerator": "any", "stacks": frozenset({"cuda"})}
    jobs = [
        _job(0, "b", 0.0, work_scu=4.0),
        _job(1, "b", 0.0, work_scu=4.0),
        _job(2, "a", 1800.0, work_scu=1.0, **hpc),
        _job(3, "a", 1800.0, work_scu=0.01, **hpc),
    ]
    assert net.job_class(jobs[2]).pools.tolist() == [a100, h800]
    gov = _gov(a=2.0, b=2.0) if fair else None
    g = simulate_governed(net, sig, jobs, FirstFit(), gov, round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    first = {r.job: r for r in reversed(spans(g))}
    assert first[0].pool == first[1].pool == a100
    assert first[2].pool == a100
    assert g.outcome.first_start_s[2] == pytest.approx(4 * H, abs=ROUND)  # when an A100 frees
    extra_s = 0.01 * (1 / slow - 1) * H  # 666 s
    assert first[3].pool == h800
    assert 1800.0 + extra_s <= g.outcome.first_start_s[3] <= 1800.0 + extra_s + ROUND + 1


class _LaterForA:
    """A policy that wants tenant a's jobs an hour later (a price valley), the others now."""

    name = "later-for-a"

    def decide(self, job: Job, info: Any, state: Any, market: Any = None, *,
               explain: bool = False) -> Decision:  # fmt: skip
        return Decision(pos=0, start_s=state.now_s + (H if job.tenant == "a" else 0.0))


def test_a_pool_kept_for_a_job_is_let_go_when_the_job_is_deferred_for_price(
    net: Network, sig: Signals
) -> None:
    """b's runs in its quota hold both pools (2 cards on one, 1 on the other), so a's 2-card
    job waits and, after RESERVE_AFTER_S, keeps the pool with most room. When that pool frees
    the job is placed but deferred for price: it leaves the queue for an hour, and the pool
    it kept is let go, so c's job starts there at once instead of waiting for it."""
    jobs = [
        _job(0, "b", 0.0, cards=2, work_scu=8.0),  # pool 0 for 4 h
        _job(1, "b", 0.0, cards=1, work_scu=1.0),  # pool 1 for 1 h
        _job(2, "a", 90.0, cards=2, work_scu=2.0),
        _job(3, "c", 1.5 * H, cards=1, work_scu=0.25),
    ]
    gov = _gov(a=2.0, b=3.0, c=0.0)
    g = simulate_governed(net, sig, jobs, _LaterForA(), gov, round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    first = {r.job: r for r in reversed(spans(g))}
    assert (first[0].pool, first[1].pool) == (0, 1)
    assert not g.preemptions  # b's runs are within its quota
    assert g.waiting.get("deferred for price") == 1
    # a's job: placed when pool 1 frees (1 h), deferred an hour, then started there
    assert first[2].pool == 1
    assert g.outcome.first_start_s[2] == pytest.approx(2 * H + ROUND, abs=ROUND)
    # c's job starts within a round of its arrival on pool 1, not after a's job
    assert first[3].pool == 1
    assert jobs[3].submit_s <= g.outcome.first_start_s[3] <= jobs[3].submit_s + ROUND


@pytest.mark.parametrize(("ckpt", "memory_h"), [(True, 0.5), (False, 0.5), (True, 24.0)])
def test_a_starved_claim_takes_a_run_in_the_quota_of_a_tenant_standing_higher(
    net: Network, sig: Signals, ckpt: bool, memory_h: float
) -> None:
    """b (quota 2) ran four cards for two hours (with a half-life of 30 min its usage stays
    high for a while), then runs a 2-card job in its quota on the one pool a's 2-card job
    may use (coast-ai, 0.5 ms). Once a's claim has waited RESERVE_AFTER_S it preempts b's
    run if b stands higher than a would after running and the run checkpoints (no work
    lost): not at once, though a is owed its quota, since b would be owed its own without
    the run; a non-checkpointable run is left (b is not over its due without it), and so is
    b's run when b's past usage weighs little (a half-life of a day: b stands lower)."""
    near = {"cards": 2, "latency_ms": 0.5, "checkpointable": ckpt}
    jobs = [
        *[_job(i, "b", 0.0, work_scu=2.0) for i in range(4)],  # 4 cards for 2 h
        _job(4, "b", 2 * H, work_scu=16.0, **near),  # pool 0 for 8 h, in b's quota
        _job(5, "a", 2 * H + 120.0, work_scu=2.0, **near),
    ]
    assert net.job_class(jobs[5]).pools.tolist() == [0]
    gov = dataclasses.replace(_gov(a=2.0, b=2.0), rules=Rules(half_life_s=memory_h * H))
    g = simulate_governed(net, sig, jobs, FirstFit(), gov, round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    first = {r.job: r for r in reversed(spans(g))}
    assert first[4].pool == 0 and first[4].tier == Tier.NOMINAL
    assert first[4].start_s < jobs[5].submit_s
    if ckpt and memory_h < 1:
        (p,) = g.preemptions
        assert p.by == 5 and p.job == 4 and p.lost_scu == 0.0
        waited = p.at_s - jobs[5].submit_s
        assert RESERVE_AFTER_S <= waited <= RESERVE_AFTER_S + ROUND
        assert g.outcome.first_start_s[5] == p.at_s
    else:
        assert not g.preemptions
        assert g.outcome.first_start_s[5] == pytest.approx(first[4].end_s, abs=ROUND)


@pytest.mark.parametrize("fair", [True, False])
def test_slow_pools_go_last_in_a_round_to_whoever_still_waits(tiny: Scenario, fair: bool) -> None:
    """One free H20 and one free A100; the H800 busy. An FP16 job (first in turn) runs at
    0.47 SCU/h on the H20, 0.15 of its best (the H800's 3.17), and at 1.0 on the A100; an
    FP32 render runs at 2.26 on the H20. First-fit would give the FP16 job the H20 (listed
    first); since pools below a quarter of a job's best speed are offered only at the end of
    the round, the FP16 job takes the A100 and the render the H20, both in the first round."""
    sc, net, (h20, a100, h800) = _three_cards(tiny)
    assert h20 < a100
    sig = build_signals(sc, START, HOURS, seed=1)
    cuda = {"accelerator": "any", "stacks": frozenset({"cuda"})}
    jobs = [
        _job(0, "c", 0.0, work_scu=30.0, accelerator="h800"),  # holds the H800
        _job(1, "a", 10.0, work_scu=1.0, **cuda),  # FP16 training
        _job(2, "b", 20.0, work_scu=1.0, kind=JobKind.RENDER, **cuda),  # FP32
    ]
    fp16, fp32 = PRECISION_INDEX[Precision.FP16], PRECISION_INDEX[Precision.FP32]
    assert net.pool_speed[h20, fp16] < 0.25 * net.pool_speed[h800, fp16]
    assert net.pool_speed[h20, fp32] > 2 * net.pool_speed[a100, fp32]
    gov = _gov(a=2.0, b=2.0, c=4.0) if fair else None
    g = simulate_governed(net, sig, jobs, FirstFit(), gov, round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    first = {r.job: r for r in reversed(spans(g))}
    assert (first[0].pool, first[1].pool, first[2].pool) == (h800, a100, h20)
    assert (g.outcome.first_start_s[1:] == ROUND).all()


class _Spy:
    """First fit, noting what the host says of waiting (``state.waited_s``) at each decision."""

    name = "spy"

    def __init__(self) -> None:
        self.seen: list[tuple[float, list[float]]] = []

    def decide(self, job: Job, info: Any, state: Any, market: Any = None, *,
               explain: bool = False) -> Decision:  # fmt: skip
        self.seen.append((state.now_s, state.waited_s.tolist()))
        return FirstFit().decide(job, info, state)


@pytest.mark.parametrize("fair", [True, False])
def test_the_queue_tells_the_planner_when_work_last_waited_for_room(
    net: Network, sig: Signals, fair: bool
) -> None:
    """Three 2-card jobs at once on two 2-card pools: the third waits for room on both pools
    from the first round until the first run ends (an hour), and each decision sees the last
    round a job waited for room on each pool (the planner's scarcity: docs/governance.md)."""
    jobs = [_job(i, "a", 0.0, cards=2, work_scu=2.0) for i in range(3)]
    spy = _Spy()
    g = simulate_governed(net, sig, jobs, spy, _gov(a=4.0) if fair else None, round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    (t0, first), (_, second), (t2, third) = spy.seen
    assert t0 == ROUND and first == [-np.inf, -np.inf] and second == first  # nobody waited yet
    assert t2 == pytest.approx(H + ROUND)  # the first run ends at H + ROUND
    assert third == [t2 - ROUND, t2 - ROUND]  # it waited in every round until the one before


def test_a_claim_that_gave_up_preempting_for_a_slow_pool_taken_since_preempts_in_the_round(
    tiny: Scenario,
) -> None:
    """One H20, one A100, one H800. c's run holds the H800 (in its quota), b's the A100 beyond
    its quota (network-borrowed). a's FP16 job (a claim) could start on the free H20, where it
    runs at 0.15 of its best, so it does not preempt in the first pass and waits for the
    round's last one; meanwhile d's render, fast on the H20, takes it. In the last pass a's
    claim preempts b's borrowed run on the A100: a asked and got its quota in the same round
    (it used to wait a round more, with no pool left to start on)."""
    sc, net, (h20, a100, h800) = _three_cards(tiny)
    sig = build_signals(sc, START, HOURS, seed=1)
    cuda = {"accelerator": "any", "stacks": frozenset({"cuda"})}
    jobs = [
        _job(0, "c", 0.0, work_scu=30.0, accelerator="h800"),
        _job(1, "b", 0.0, work_scu=8.0, checkpointable=True),  # the A100, beyond b's quota
        _job(2, "a", 70.0, work_scu=1.0, **cuda),  # FP16 training: slow on the H20
        _job(3, "d", 80.0, work_scu=1.0, kind=JobKind.RENDER, **cuda),  # FP32: fast there
    ]
    gov = _gov(a=2.0, b=0.5, c=4.0, d=2.0)
    g = simulate_governed(net, sig, jobs, FirstFit(), gov, round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    first = {r.job: r for r in reversed(spans(g))}
    assert (first[0].pool, first[1].pool, first[1].tier) == (h800, a100, Tier.NETWORK)
    assert (first[2].pool, first[3].pool) == (a100, h20)
    (p,) = g.preemptions
    assert (p.job, p.by, p.at_s, p.lost_scu) == (1, 2, 2 * ROUND, 0.0)
    assert g.outcome.first_start_s[2] == g.outcome.first_start_s[3] == 2 * ROUND
    asks = quota_asks(net, jobs, g)
    (mine,) = np.flatnonzero(asks.tenant == g.tenants.index("a"))
    assert (asks.at_s[mine], asks.met_s[mine]) == (70.0, 2 * ROUND - 70.0)


def _three_cards(tiny: Scenario) -> tuple[Scenario, Network, tuple[int, int, int]]:
    """``tiny`` cut to one H20, one A100 and one H800 (no CPUs), and their pools' indices."""
    keep = {c.id: c for c in tiny.centers}
    sc = dataclasses.replace(
        tiny,
        centers=(
            dataclasses.replace(keep["coast-ai"], inventory=(("h20", 1),), cpu_cores=0),
            dataclasses.replace(keep["desert-green"], inventory=(("a100", 1),), cpu_cores=0),
            dataclasses.replace(keep["desert-ai"], inventory=(("h800", 1),), cpu_cores=0),
        ),
    )
    net = Network(sc)
    h20, a100, h800 = (net.pool_model.index(m) for m in ("h20", "a100", "h800"))
    return sc, net, (h20, a100, h800)


def test_a_borrowers_gang_is_not_starved_by_the_small_jobs_of_a_borrower_standing_higher(
    net: Network, sig: Signals
) -> None:
    """a and b are both beyond their quotas (0.5 SCU/h each: every run of theirs is network
    borrowed). a holds all four cards with one-card runs that cannot checkpoint (so nobody
    may take them) and keeps a queue of more, ending at different times; b, standing lower,
    waits with a 2-card gang. Each freed card used to go to a's next job (b's gang, first in
    turn, does not fit one card), so b waited until a's queue ran dry: a borrower standing
    lower was starved by the small jobs of one standing higher, and Jain's index among
    borrowers fell (issue 14, seeds 1 and 4). Now b's head job, once it has waited
    RESERVE_AFTER_S, keeps a pool: a's jobs no longer start there, and b starts as soon as
    a's runs there end, while a goes on on the other pool."""
    a_jobs = [_job(i, "a", 0.0, work_scu=1.0 + 0.137 * i) for i in range(16)]
    gang = _job(16, "b", 90.0, cards=2, work_scu=4.0)
    jobs = [*a_jobs, gang]
    g = simulate_governed(net, sig, jobs, FirstFit(), _gov(a=0.5, b=0.5), round_s=ROUND)
    assert_governed_valid(net, jobs, g)
    assert not g.preemptions
    runs = spans(g)
    (b_run,) = [r for r in runs if r.job == 16]
    # b keeps a pool once its job has waited RESERVE_AFTER_S; a's runs there end within
    # one of them (at most 1 + 0.137 x 15 h), and nothing of a's starts there meanwhile
    kept_at = gang.submit_s + RESERVE_AFTER_S
    assert b_run.start_s <= kept_at + (1.0 + 0.137 * 15) * H + ROUND
    a_last = max(r.start_s for r in runs if r.job < 16)
    assert b_run.start_s < a_last  # before a's queue ran dry
    started_there = [
        r for r in runs if r.job < 16 and r.pool == b_run.pool and kept_at + ROUND < r.start_s
    ]
    assert all(r.start_s >= b_run.end_s for r in started_there)
    # the other pool went on serving a while b waited
    other = [r for r in runs if r.job < 16 and r.pool != b_run.pool]
    assert any(kept_at < r.start_s < b_run.start_s for r in other)


def test_a_pool_kept_for_a_borrower_is_closed_only_to_borrowers_standing_as_high(
    net: Network,
) -> None:
    """Pool 0 kept for b's job (b runs 1 SCU/h beyond its quota of 0.5): a job without a claim
    there of a (standing higher: 2 SCU/h) or of b itself may not start on it; one of d
    (standing lower: nothing running) may, and so may any job with a claim there (c's, within
    its quota). Pool 1, not kept, is open to all."""
    gov = _gov(a=0.5, b=0.5, c=2.0, d=0.5).with_tenants(("a", "b", "c", "d"), 4.0)
    shares = Shares(gov)
    fam, hub = pool_families(net), pool_hubs(net)
    shares.admit("a", Tier.NETWORK, 2.0, fam[0], hub[0])
    shares.admit("b", Tier.NETWORK, 1.0, fam[1], hub[1])
    queue = PlatformQueue(shares, gov.rules)
    queue.kept, queue.keeping = {0: (99, "b")}, {"b": 0}

    def open_to(key: int, tenant: str, claim: bool) -> list[bool]:
        job = _job(key, tenant)
        info = net.job_class(job)
        item = Queued(key, job, info, where_of(job, info, fam, hub))
        return queue._open_to(item, np.full(info.pools.size, claim)).tolist()

    assert open_to(1, "a", claim=False) == [False, True]
    assert open_to(2, "b", claim=False) == [False, True]
    assert open_to(99, "b", claim=False) == [True, True]  # the job it is kept for
    assert open_to(3, "d", claim=False) == [True, True]
    assert open_to(4, "c", claim=True) == [True, True]
    assert open_to(5, "a", claim=True) == [True, True]
