"""Quotas, fair share and preemption (issue 14): the tiers never give a tenant more than its
quota and what it may borrow, the victims free just enough at the least cost and only among
runs the rules allow, usage decays with its half-life, the queue's order, and the checks of a
governance."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.core.governance import Governance, Rules, TenantQuota, check, equal_shares
from suanwang.core.jobs import Job, JobKind, Priority
from suanwang.scheduling.fairshare import (
    EPS,
    OWED_SHARE,
    Claimant,
    Run,
    Shares,
    Tier,
    Where,
    may_preempt,
    victim_order,
    victims,
)

PURE = settings(max_examples=150, deadline=None)
FAMILIES = ("nvidia", "huawei")
HUBS = ("coast", "desert")
CLAIMS = (Tier.NOMINAL, Tier.COHORT)


# --------------------------------------------------------------------------- strategies

rates = st.sampled_from([0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0])


@st.composite
def governances(draw: st.DrawFn) -> Governance:
    """One to three cohorts of one to three tenants; borrowing limits within what the cohort
    mates may lend (a governance :func:`check` accepts); some family and hub caps."""
    n_cohorts = draw(st.integers(1, 3))
    quotas: list[TenantQuota] = []
    for c in range(n_cohorts):
        size = draw(st.integers(1, 3))
        members = []
        for k in range(size):
            quota = float(draw(st.integers(0, 16)))
            lend = draw(st.one_of(st.none(), st.integers(0, 16).map(float)))
            fam = draw(st.dictionaries(st.sampled_from(FAMILIES), rates, max_size=1))
            hub = draw(st.dictionaries(st.sampled_from(HUBS), rates, max_size=1))
            members.append(
                TenantQuota(
                    name=f"c{c}t{k}",
                    cohort=f"c{c}",
                    quota_scu_per_h=quota,
                    lend_limit_scu_per_h=lend,
                    weight=draw(st.sampled_from([0.5, 1.0, 2.0])),
                    family_caps_scu_per_h=fam,
                    hub_caps_scu_per_h=hub,
                )
            )
        for k, m in enumerate(members):
            mates = sum(o.lendable_scu_per_h for i, o in enumerate(members) if i != k)
            share = draw(st.sampled_from([0.0, 0.25, 0.5, 1.0]))
            members[k] = replace(m, borrow_limit_scu_per_h=mates * share)
        quotas += members
    gov = Governance(tenants={q.name: q for q in quotas})
    assert check(gov, FAMILIES, HUBS) == []
    return gov


@st.composite
def wheres(draw: st.DrawFn) -> Where:
    """One to three candidate pools of one job: its rate there, the pool's family and hub."""
    n = draw(st.integers(1, 3))
    return Where(
        rate=np.array(draw(st.lists(rates, min_size=n, max_size=n)), dtype=np.float64),
        family=draw(st.lists(st.sampled_from(FAMILIES), min_size=n, max_size=n)),
        hub=draw(st.lists(st.sampled_from([*HUBS, None]), min_size=n, max_size=n)),
    )


TENANTS = ("a", "b", "c")
COHORT_OF = {"a": "x", "b": "x", "c": "y"}


@st.composite
def runs(draw: st.DrawFn, key: int = 0, pools: int = 3) -> Run:
    priority = draw(st.sampled_from(list(Priority)))
    tiers = [Tier.IDLE] if priority is Priority.PREEMPTIBLE else [*CLAIMS, Tier.NETWORK]
    tier = draw(st.sampled_from(tiers))
    ckpt = draw(st.booleans())
    return Run(
        key=key,
        tenant=draw(st.sampled_from(TENANTS)),
        priority=priority,
        tier=tier,
        pool=draw(st.integers(0, pools - 1)),
        units=draw(st.integers(1, 4)),
        checkpointable=ckpt,
        lost_scu=0.0 if ckpt else draw(st.sampled_from([0.0, 0.5, 3.0, 10.0])),
        standing_after=draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, math.inf])),
        protected=draw(st.booleans()),
        owed_after=draw(st.booleans()),
    )


@st.composite
def run_lists(draw: st.DrawFn, pools: int = 3) -> list[Run]:
    n = draw(st.integers(0, 10))
    return [draw(runs(key=i, pools=pools)) for i in range(n)]


claimants = st.builds(
    lambda tenant, priority, entitled, standing, starved, owed: Claimant(
        tenant=tenant,
        priority=priority,
        cohort=COHORT_OF[tenant],
        entitled=entitled,
        standing_after=standing,
        starved=entitled and starved,
        owed=entitled and owed,
    ),
    st.sampled_from(TENANTS),
    st.sampled_from(list(Priority)),
    st.booleans(),
    st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    st.booleans(),
    st.booleans(),
)
overdrawn = st.fixed_dictionaries({"x": st.sampled_from([0.0, 1.0]), "y": st.just(0.0)})


# --------------------------------------------------------------------------- quota tiers


@PURE
@given(gov=governances(), data=st.data())
def test_tiers_never_give_more_than_the_quota_and_what_may_be_borrowed(
    gov: Governance, data: st.DataObject
) -> None:
    """Admitting, in random order, only what ``tiers`` allows (and releasing some runs):
    NOMINAL within the quota, COHORT within the borrowing limit and what the cohort lends at
    admission time; family and hub caps whatever the tier."""
    shares = Shares(gov)
    names = list(gov.tenants)
    admitted: list[tuple[str, Tier, float, str, str | None]] = []
    for _ in range(data.draw(st.integers(1, 25), label="steps")):
        if admitted and data.draw(st.booleans(), label="release?"):
            run = admitted.pop(data.draw(st.integers(0, len(admitted) - 1), label="which"))
            shares.release(*run)
            continue
        tenant = data.draw(st.sampled_from(names), label="tenant")
        where = data.draw(wheres(), label="where")
        tier_of = shares.tiers(tenant, Priority.NORMAL, where)
        allowed = [(pos, Tier(int(t))) for pos, t in enumerate(tier_of.tolist()) if t >= 0]
        if not allowed:
            continue
        pos, tier = data.draw(st.sampled_from(allowed), label="pool")
        cohort = gov.tenants[tenant].cohort
        lends = shares.lendable(cohort)
        mates_lend = lends - shares.lends(tenant)  # a tenant does not lend to itself
        rate = float(where.rate[pos])
        run = (tenant, tier, rate, where.family[pos], where.hub[pos])
        shares.admit(*run)
        admitted.append(run)
        u, q = shares.use[tenant], gov.tenants[tenant]
        assert u.tier[Tier.NOMINAL] <= q.quota_scu_per_h + EPS
        assert u.tier[Tier.COHORT] <= q.borrow_limit_scu_per_h + EPS
        if tier is Tier.COHORT:
            assert shares.borrowed(cohort) <= mates_lend + EPS <= lends + EPS
        for fam, cap in q.family_caps_scu_per_h.items():
            assert u.family.get(fam, 0.0) <= cap + EPS
        for hub, cap in q.hub_caps_scu_per_h.items():
            assert u.hub.get(hub, 0.0) <= cap + EPS
    # what is left once everything is released: nothing
    for run in admitted:
        shares.release(*run)
    for u in shares.use.values():
        assert u.rate == pytest.approx(0.0, abs=1e-9)


def test_tiers_in_order_nominal_then_cohort_then_network() -> None:
    gov = Governance(
        tenants={
            "a": TenantQuota("a", "x", 2.0, borrow_limit_scu_per_h=2.0),
            "b": TenantQuota("b", "x", 4.0, lend_limit_scu_per_h=2.0),
        }
    )
    shares = Shares(gov)
    one = Where(rate=np.array([1.0]), family=["nvidia"], hub=[None])
    seen = []
    for _ in range(6):
        tier = Tier(int(shares.tiers("a", Priority.NORMAL, one)[0]))
        seen.append(tier)
        shares.admit("a", tier, 1.0, "nvidia", None)
    assert seen == [Tier.NOMINAL] * 2 + [Tier.COHORT] * 2 + [Tier.NETWORK] * 2
    # the lender takes its quota back: the cohort is overdrawn by what it no longer lends
    assert shares.overdrawn("x") == 0.0
    shares.admit("b", Tier.NOMINAL, 3.0, "nvidia", None)
    assert shares.lendable("x") == pytest.approx(1.0)
    assert shares.overdrawn("x") == pytest.approx(1.0)
    # preemptible work runs only on idle capacity; a class the tenant may not use nowhere
    assert shares.tiers("a", Priority.PREEMPTIBLE, one).tolist() == [Tier.IDLE]
    no_urgent = replace(gov.tenants["b"], classes=frozenset({Priority.NORMAL}))
    shares = Shares(replace(gov, tenants={**gov.tenants, "b": no_urgent}))
    assert shares.tiers("b", Priority.URGENT, one).tolist() == [-1]


def test_a_tenant_does_not_borrow_its_own_unused_quota() -> None:
    """``a`` has 1 SCU/h of its quota left and ``b`` lends 1: a 2 SCU/h run is not a cohort
    run (it would count ``a``'s own 1 twice: lent to itself, then used by a nominal run,
    ``a`` holding 12 SCU/h of claims where it may hold 11)."""
    gov = Governance(
        tenants={
            "a": TenantQuota("a", "x", 10.0, borrow_limit_scu_per_h=2.0),
            "b": TenantQuota("b", "x", 2.0),
        }
    )
    assert check(gov, FAMILIES, HUBS) == []
    shares = Shares(gov)
    shares.admit("b", Tier.NOMINAL, 1.0, "nvidia", None)
    shares.admit("a", Tier.NOMINAL, 9.0, "nvidia", None)
    two = Where(rate=np.array([2.0]), family=["nvidia"], hub=[None])
    one = Where(rate=np.array([1.0]), family=["nvidia"], hub=[None])
    assert shares.lendable("x") == 2.0 and shares.lends("a") == 1.0 and shares.lends("b") == 1.0
    assert shares.tiers("a", Priority.NORMAL, two).tolist() == [Tier.NETWORK]
    assert shares.tiers("a", Priority.NORMAL, one).tolist() == [Tier.NOMINAL]
    shares.admit("a", Tier.NOMINAL, 1.0, "nvidia", None)
    assert shares.tiers("a", Priority.NORMAL, one).tolist() == [Tier.COHORT]
    assert shares.tiers("a", Priority.NORMAL, two).tolist() == [Tier.NETWORK]


def test_a_tenant_is_owed_its_quota_below_ninety_percent_of_it_whatever_the_tier() -> None:
    """Owed: running less than OWED_SHARE (90%) of its nominal quota, counting every tier
    (what it runs, not what it was admitted as); ``less_scu_per_h``: as if a run stopped."""
    assert OWED_SHARE == 0.9
    shares = Shares(Governance(tenants={"a": TenantQuota("a", "x", 10.0)}))
    assert shares.owed("a")
    shares.admit("a", Tier.NOMINAL, 8.0, "nvidia", None)
    assert shares.owed("a")
    shares.admit("a", Tier.NETWORK, 1.0, "nvidia", None)  # 9 of 10: no longer owed
    assert not shares.owed("a")
    assert shares.owed("a", less_scu_per_h=0.5)
    shares.release("a", Tier.NOMINAL, 8.0, "nvidia", None)
    assert shares.owed("a")


def test_caps_close_a_family_or_a_hub_whatever_the_tier() -> None:
    q = TenantQuota(
        "a", "a", 10.0, family_caps_scu_per_h={"huawei": 2.0}, hub_caps_scu_per_h={"desert": 3.0}
    )
    shares = Shares(Governance(tenants={"a": q}))
    where = Where(
        rate=np.array([2.0, 2.0, 2.0]),
        family=["huawei", "nvidia", "nvidia"],
        hub=["coast", "desert", None],
    )
    assert shares.tiers("a", Priority.NORMAL, where).tolist() == [Tier.NOMINAL] * 3
    shares.admit("a", Tier.NOMINAL, 2.0, "huawei", "desert")
    assert shares.capped("a", where).tolist() == [False, False, True]
    assert shares.tiers("a", Priority.URGENT, where).tolist() == [-1, -1, Tier.NOMINAL]


# --------------------------------------------------------------------------- victims


def _freed(free: int, chosen: list[Run]) -> int:
    return free + sum(r.units for r in chosen)


@PURE
@given(
    claimant=claimants,
    cands=run_lists(),
    over=overdrawn,
    units=st.integers(1, 8),
    free=st.lists(st.integers(0, 3), min_size=1, max_size=2),
)
def test_victims_free_enough_minimally_and_only_among_permitted_runs(
    claimant: Claimant, cands: list[Run], over: dict[str, float], units: int, free: list[int]
) -> None:
    free_at = {p: f for p, f in enumerate(free)}  # pool 2 (if any run is there) is not asked
    permitted = [r for r in cands if may_preempt(claimant, r, COHORT_OF, over)]
    found = victims(units, free_at, permitted)
    room_now = [p for p, f in free_at.items() if f >= units]
    if found is None:
        # no pool has room or can be freed with every permitted run on it
        assert not room_now
        for p, f in free_at.items():
            assert _freed(f, [r for r in permitted if r.pool == p]) < units
        return
    pool, chosen = found
    assert pool in free_at
    if room_now:  # room without preempting anything
        assert chosen == []
        return
    assert chosen, "a pool without room needs victims"
    assert len({r.key for r in chosen}) == len(chosen)
    for r in chosen:
        assert r in permitted and r.pool == pool
        assert may_preempt(claimant, r, COHORT_OF, over)
    assert _freed(free_at[pool], chosen) >= units
    for r in chosen:  # minimal: no victim could be spared
        assert _freed(free_at[pool], [v for v in chosen if v is not r]) < units


@PURE
@given(cands=run_lists(pools=2), units=st.integers(1, 8), free=st.integers(0, 3))
def test_victims_take_preemptible_runs_first_when_they_suffice(
    cands: list[Run], units: int, free: int
) -> None:
    free_at = {0: min(free, units - 1), 1: min(free, units - 1)}
    found = victims(units, free_at, cands)
    suffices = any(
        _freed(f, [r for r in cands if r.pool == p and r.priority is Priority.PREEMPTIBLE]) >= units
        for p, f in free_at.items()
    )
    if suffices:
        assert found is not None
        assert all(r.priority is Priority.PREEMPTIBLE for r in found[1])


def test_victims_prefer_what_loses_least() -> None:
    def run(key: int, **kw: object) -> Run:
        base: dict[str, object] = {
            "key": key,
            "tenant": "b",
            "priority": Priority.BATCH,
            "tier": Tier.NETWORK,
            "pool": 0,
            "units": 1,
            "checkpointable": False,
            "lost_scu": 1.0,
            "standing_after": 1.0,
        }
        base.update(kw)
        return Run(**base)  # type: ignore[arg-type]

    cohort = run(1, tier=Tier.COHORT, lost_scu=0.0)
    lossy = run(2, lost_scu=5.0)
    light = run(3, lost_scu=1.0)
    ckpt = run(4, checkpointable=True, lost_scu=0.0)
    idle = run(5, priority=Priority.PREEMPTIBLE, tier=Tier.IDLE, lost_scu=9.0)
    over = run(6, lost_scu=9.0, standing_after=3.0)
    order = sorted([cohort, lossy, light, ckpt, idle, over], key=victim_order)
    assert [r.key for r in order] == [5, 6, 4, 3, 2, 1]
    assert victims(1, {0: 0}, [cohort, lossy, light, ckpt]) == (0, [ckpt])
    assert victims(2, {0: 0}, [cohort, lossy, light]) == (0, [light, lossy])
    # a larger later victim makes a smaller earlier one unnecessary
    big = run(7, units=2, lost_scu=2.0)
    assert victims(2, {0: 0}, [light, big]) == (0, [big])
    # between pools: the one whose worst victim comes first
    assert victims(1, {0: 0, 1: 0}, [lossy, replace(idle, pool=1)]) == (1, [replace(idle, pool=1)])
    assert victims(3, {0: 0}, [light, big]) == (0, [light, big])
    assert victims(4, {0: 0}, [light, big]) is None
    assert victims(1, {0: 1}, [light]) == (0, [])


# --------------------------------------------------------------------------- may_preempt


@PURE
@given(claimant=claimants, run=runs(), over=overdrawn)
def test_may_preempt_follows_the_rules(
    claimant: Claimant, run: Run, over: dict[str, float]
) -> None:
    ok = may_preempt(claimant, run, COHORT_OF, over)
    lower = run.priority.rank > claimant.priority.rank
    if run.tenant == claimant.tenant:
        assert not ok, "a tenant never preempts itself"
        return
    if claimant.priority is Priority.URGENT:
        assert ok == lower, "urgent preempts every lower class, whatever its tier"
        return
    if claimant.priority is Priority.PREEMPTIBLE:
        assert not ok, "preemptible work never preempts"
        return
    if run.priority is Priority.PREEMPTIBLE:
        assert ok, "a preemptible run yields to any other class, protected or not"
        return
    if run.priority is Priority.URGENT:
        assert not ok, "urgent runs yield to nothing"
        return
    # a claim owed its quota, of a tenant that would not be owed its own without the run
    owed = claimant.owed and not run.owed_after
    if run.protected and not (owed and run.standing_after > 1.0):
        assert not ok, "protected runs yield only to urgent, and to a claim owed its quota"
        return
    # fair-share preemption: a claim that waited RESERVE_AFTER_S, or one owed its quota
    eager = claimant.starved or owed
    if claimant.entitled:
        fair_share = (
            eager
            and run.standing_after > claimant.standing_after
            and (run.checkpointable or run.standing_after > 1.0)
        )
        if run.tier is Tier.NETWORK:
            assert ok, "a claim reclaims network-borrowed capacity"
        elif fair_share:
            assert ok, "a starved claim takes runs of higher standing (losing work: over due)"
        elif run.tier is Tier.COHORT:
            same = COHORT_OF[run.tenant] == claimant.cohort
            assert ok == (same and over[claimant.cohort] > 0), "cohort runs when overdrawn"
        else:
            assert not ok, "nominal runs yield only to urgent work and starved claims"
        return
    expected = (
        run.tier is Tier.NETWORK
        and run.checkpointable
        and run.standing_after > claimant.standing_after
    )
    assert ok == expected, "without a claim: checkpointable network runs of higher standing"


def test_may_preempt_examples() -> None:
    def c(
        tenant: str = "a",
        priority: Priority = Priority.NORMAL,
        entitled: bool = True,
        standing: float = 0.5,
    ) -> Claimant:
        return Claimant(tenant, priority, COHORT_OF[tenant], entitled, standing)

    def r(
        tenant: str = "c",
        priority: Priority = Priority.BATCH,
        tier: Tier = Tier.NETWORK,
        ckpt: bool = True,
        standing: float = 2.0,
        protected: bool = False,
    ) -> Run:
        return Run(0, tenant, priority, tier, 0, 1, ckpt, 0.0, standing, protected)

    no = {"x": 0.0, "y": 0.0}
    assert not may_preempt(c(), r(tenant="a"), COHORT_OF, no)
    assert may_preempt(c(priority=Priority.URGENT), r(tier=Tier.NOMINAL), COHORT_OF, no)
    assert may_preempt(c(priority=Priority.URGENT), r(protected=True), COHORT_OF, no)
    assert not may_preempt(c(priority=Priority.URGENT), r(priority=Priority.URGENT), COHORT_OF, no)
    assert not may_preempt(c(), r(protected=True), COHORT_OF, no)
    assert may_preempt(c(), r(ckpt=False), COHORT_OF, no)
    assert not may_preempt(c(), r(tier=Tier.NOMINAL), COHORT_OF, no)
    assert not may_preempt(c(), r(tenant="b", tier=Tier.COHORT), COHORT_OF, no)
    assert may_preempt(c(), r(tenant="b", tier=Tier.COHORT), COHORT_OF, {"x": 1.0, "y": 0.0})
    assert not may_preempt(c(), r(tier=Tier.COHORT), COHORT_OF, {"x": 1.0, "y": 1.0})
    # a claim that waited past RESERVE_AFTER_S: runs in the quota of tenants standing higher
    starved = Claimant("a", Priority.NORMAL, "x", True, 0.5, starved=True)
    assert may_preempt(starved, r(tier=Tier.NOMINAL, standing=0.8), COHORT_OF, no)
    assert not may_preempt(starved, r(tier=Tier.NOMINAL, standing=0.5), COHORT_OF, no)
    assert not may_preempt(starved, r(tier=Tier.NOMINAL, standing=0.8, ckpt=False), COHORT_OF, no)
    assert may_preempt(starved, r(tier=Tier.NOMINAL, standing=1.2, ckpt=False), COHORT_OF, no)
    assert not may_preempt(starved, r(tier=Tier.NOMINAL, protected=True), COHORT_OF, no)
    # a claim owed its quota does so at once, of tenants not owed theirs without the run
    owed = Claimant("a", Priority.NORMAL, "x", True, 0.5, owed=True)
    kept = replace(r(tier=Tier.NOMINAL, standing=0.8), owed_after=False)
    assert may_preempt(owed, kept, COHORT_OF, no)
    assert not may_preempt(owed, replace(kept, owed_after=True), COHORT_OF, no)
    assert not may_preempt(owed, replace(kept, standing_after=0.5), COHORT_OF, no)
    # a protected run yields only to it (not to a starved claim), and only if its tenant is
    # over its due without it
    over_due = replace(kept, protected=True, standing_after=2.0)
    assert may_preempt(owed, over_due, COHORT_OF, no)
    assert not may_preempt(owed, replace(over_due, owed_after=True), COHORT_OF, no)
    assert not may_preempt(owed, replace(kept, protected=True), COHORT_OF, no)
    assert not may_preempt(starved, replace(over_due, owed_after=False), COHORT_OF, no)
    assert not may_preempt(starved, r(tenant="a", tier=Tier.NOMINAL), COHORT_OF, no)
    free_rider = c(entitled=False, standing=1.0)
    assert may_preempt(free_rider, r(standing=1.5), COHORT_OF, no)
    assert not may_preempt(free_rider, r(standing=1.0), COHORT_OF, no)
    assert not may_preempt(free_rider, r(standing=1.5, ckpt=False), COHORT_OF, no)
    assert may_preempt(
        c(priority=Priority.BATCH),
        r(priority=Priority.PREEMPTIBLE, tier=Tier.IDLE, protected=True),
        COHORT_OF,
        no,
    )
    assert not may_preempt(
        c(priority=Priority.PREEMPTIBLE),
        r(priority=Priority.PREEMPTIBLE, tier=Tier.IDLE),
        COHORT_OF,
        no,
    )


# --------------------------------------------------------------------------- usage over time


def _one(quota: float = 4.0, weight: float = 1.0, half_life_s: float = 3600.0) -> Shares:
    gov = Governance(
        tenants={"a": TenantQuota("a", "a", quota, weight=weight)},
        rules=Rules(half_life_s=half_life_s),
    )
    return Shares(gov)


@PURE
@given(
    rate=st.floats(0.0, 1000.0),
    quota=st.floats(1.0, 500.0),
    weight=st.sampled_from([0.5, 1.0, 3.0]),
    half_life_h=st.floats(0.1, 100.0),
)
def test_a_constant_rate_is_remembered_at_that_rate(
    rate: float, quota: float, weight: float, half_life_h: float
) -> None:
    shares = _one(quota, weight, half_life_h * 3600.0)
    shares.admit("a", Tier.NOMINAL, rate, "nvidia", None)
    shares.advance(40 * half_life_h * 3600.0)  # 40 half-lives: the start is forgotten
    mean_life_h = half_life_h / math.log(2.0)
    decayed = shares.use["a"].decayed_scu
    assert decayed / mean_life_h == pytest.approx(rate, rel=1e-9, abs=1e-9)
    assert shares.standing("a") == pytest.approx(rate / (quota * weight), rel=1e-9, abs=1e-9)
    assert shares.entitlement("a") == quota * weight


@PURE
@given(rate=st.floats(0.1, 1000.0), run_h=st.floats(0.1, 50.0), half_life_h=st.floats(0.1, 48.0))
def test_usage_halves_every_half_life_when_idle(
    rate: float, run_h: float, half_life_h: float
) -> None:
    shares = _one(half_life_s=half_life_h * 3600.0)
    shares.admit("a", Tier.NOMINAL, rate, "nvidia", None)
    shares.advance(run_h * 3600.0)
    shares.release("a", Tier.NOMINAL, rate, "nvidia", None)
    before = shares.use["a"].decayed_scu
    assert 0 < before <= rate * run_h + 1e-9  # never more than was used
    shares.advance((run_h + half_life_h) * 3600.0)
    assert shares.use["a"].decayed_scu == pytest.approx(before / 2, rel=1e-12)
    shares.advance((run_h + 3 * half_life_h) * 3600.0)
    assert shares.use["a"].decayed_scu == pytest.approx(before / 8, rel=1e-12)


@PURE
@given(
    past=st.floats(0.0, 1e4),
    rate=st.floats(0.0, 1e3),
    t1=st.floats(0.0, 1e6),
    t2=st.floats(0.0, 1e6),
    half_life_s=st.floats(60.0, 1e6),
)
def test_advancing_in_two_steps_is_advancing_in_one(
    past: float, rate: float, t1: float, t2: float, half_life_s: float
) -> None:
    one, two = _one(half_life_s=half_life_s), _one(half_life_s=half_life_s)
    for s in (one, two):
        s.use["a"].decayed_scu = past
        s.admit("a", Tier.COHORT, rate, "nvidia", None)
    one.advance(t1 + t2)
    two.advance(t1)
    two.advance(t1 + t2)
    assert two.use["a"].decayed_scu == pytest.approx(one.use["a"].decayed_scu, rel=1e-9, abs=1e-9)
    assert two.now_s == one.now_s == (t1 + t2 if t1 + t2 > 0 else 0.0)
    # going back in time changes nothing
    before = one.use["a"].decayed_scu
    one.advance(t1 / 2)
    assert one.use["a"].decayed_scu == before


# --------------------------------------------------------------------------- the queue's order


def _two(rules: Rules | None = None) -> Shares:
    """Tenants ``lo`` and ``hi`` of equal quotas, long at ``hi`` twice its quota and ``lo`` a
    quarter of it."""
    rules = rules or Rules()
    gov = Governance(
        tenants={"lo": TenantQuota("lo", "lo", 4.0), "hi": TenantQuota("hi", "hi", 4.0)},
        rules=rules,
    )
    shares = Shares(gov)
    shares.admit("hi", Tier.NOMINAL, 8.0, "nvidia", None)
    shares.admit("lo", Tier.NOMINAL, 1.0, "nvidia", None)
    shares.advance(100 * rules.half_life_s)  # the decayed usage has caught up with the rates
    return shares


@PURE
@given(
    a=st.sampled_from(list(Priority)),
    b=st.sampled_from(list(Priority)),
    wait_a=st.floats(0.0, 23 * 3600.0),
    wait_b=st.floats(0.0, 23 * 3600.0),
    ta=st.sampled_from(["lo", "hi"]),
    tb=st.sampled_from(["lo", "hi"]),
)
def test_a_higher_class_goes_first_whoever_stands_lower(
    a: Priority, b: Priority, wait_a: float, wait_b: float, ta: str, tb: str
) -> None:
    shares = _two()  # batch is promoted after 24 h: not yet
    ka = shares.order_key(ta, a, 100.0, wait_a)
    kb = shares.order_key(tb, b, 50.0, wait_b)
    if a.rank < b.rank:
        assert ka < kb
    elif a.rank > b.rank:
        assert kb < ka


@PURE
@given(
    priority=st.sampled_from(list(Priority)),
    wait=st.floats(0.0, 20 * 3600.0),
    submit_lo=st.floats(0.0, 1e5),
    submit_hi=st.floats(0.0, 1e5),
)
def test_the_lower_standing_goes_first(
    priority: Priority, wait: float, submit_lo: float, submit_hi: float
) -> None:
    shares = _two()
    assert shares.standing("lo") < shares.standing("hi")
    assert shares.order_key("lo", priority, submit_lo, wait) < shares.order_key(
        "hi", priority, submit_hi, wait
    )


def test_aging_lets_an_old_job_of_a_high_standing_tenant_pass() -> None:
    rules = Rules(aging_s=3600.0)
    shares = _two(rules)
    gap = shares.standing("hi") - shares.standing("lo")  # 8/4 - 1/4 = 1.75 entitlements
    assert gap == pytest.approx(1.75)
    fresh = shares.order_key("lo", Priority.NORMAL, 10_000.0, 0.0)
    assert shares.order_key("hi", Priority.NORMAL, 0.0, 1.5 * 3600.0) > fresh
    assert shares.order_key("hi", Priority.NORMAL, 0.0, 2.0 * 3600.0) < fresh
    # the same standing and wait: the older first
    assert shares.order_key("lo", Priority.NORMAL, 1.0, 0.0) < shares.order_key(
        "lo", Priority.NORMAL, 2.0, 0.0
    )


def test_batch_is_promoted_after_promote_after_s() -> None:
    shares = _two(Rules(promote_after_s=7200.0))
    assert shares.order_key("lo", Priority.BATCH, 0.0, 7199.0)[0] == Priority.BATCH.rank
    assert shares.order_key("lo", Priority.BATCH, 0.0, 7200.0)[0] == Priority.NORMAL.rank
    # promoted, it goes before the normal work of a tenant standing higher
    assert shares.order_key("lo", Priority.BATCH, 0.0, 7200.0) < shares.order_key(
        "hi", Priority.NORMAL, 0.0, 7200.0
    )
    # never past normal: preemptible work is not promoted
    assert shares.order_key("lo", Priority.PREEMPTIBLE, 0.0, 1e9)[0] == Priority.PREEMPTIBLE.rank


# --------------------------------------------------------------------------- governance


def test_check_reports_each_problem_with_its_path() -> None:
    gov = Governance(
        tenants={
            "a": TenantQuota("a", "x", 10.0, borrow_limit_scu_per_h=6.0),
            "b": TenantQuota("b", "x", 8.0, lend_limit_scu_per_h=5.0),
            "neg": TenantQuota("neg", "y", -1.0),
            "heavy": TenantQuota("heavy", "z", 1.0, weight=0.0),
            "capped": TenantQuota(
                "capped",
                "w",
                1.0,
                family_caps_scu_per_h={"intel": 1.0},
                hub_caps_scu_per_h={"atlantis": 1.0, "coast": -2.0},
            ),
        }
    )
    problems = check(gov, FAMILIES, HUBS)
    paths = sorted({p.split(":")[0] for p in problems})
    assert paths == [
        "tenants.a.borrow_limit_scu_per_h",
        "tenants.capped.caps.families.intel",
        "tenants.capped.caps.hubs.atlantis",
        "tenants.capped.caps.hubs.coast",
        "tenants.heavy.weight",
        "tenants.neg.quota_scu_per_h",
    ]
    text = "\n".join(problems)
    assert "6 is more than its cohort 'x' can lend (5 SCU/h" in text
    assert "unknown (known: huawei, nvidia)" in text
    # within the lending: fine; rules out of range are named too
    ok = replace(gov, tenants={k: gov.tenants[k] for k in ("a", "b")})
    assert (
        check(
            replace(
                ok,
                tenants={**ok.tenants, "a": replace(ok.tenants["a"], borrow_limit_scu_per_h=5.0)},
            ),
            FAMILIES,
            HUBS,
        )
        == []
    )
    bad_rules = replace(ok, rules=Rules(half_life_s=0.0, max_preemptions_per_round=-1))
    assert {p.split(":")[0] for p in check(bad_rules, FAMILIES, HUBS)} >= {
        "rules.half_life_s",
        "rules.max_preemptions_per_round",
    }


def test_unnamed_tenants_share_what_the_named_ones_leave() -> None:
    gov = Governance(
        tenants={
            "a": TenantQuota("a", "x", 6.0),
            "b": TenantQuota("b", "y", 2.0),
            "c": TenantQuota("c", "x", 0.0),
        }
    )
    assert gov.cohorts() == {"x": ("a", "c"), "y": ("b",)}
    more = gov.with_tenants(["b", "z", "d", "z"], 20.0)
    assert list(more.tenants)[:3] == ["a", "b", "c"]
    assert more.tenants["d"] == TenantQuota("d", "tenant:d", 6.0)
    assert more.tenants["z"].quota_scu_per_h == 6.0 and more.tenants["z"].cohort == "tenant:z"
    assert gov.with_tenants(["a"], 20.0) is gov
    assert gov.with_tenants(["e"], 4.0).tenants["e"].quota_scu_per_h == 0.0
    assert equal_shares(["p", "q"], 10.0).tenants["q"].quota_scu_per_h == 5.0
    assert check(more, FAMILIES, HUBS) == []


def test_priority_classes() -> None:
    assert [p.rank for p in Priority] == [0, 1, 2, 3]
    assert [p.value for p in Priority] == ["urgent", "normal", "batch", "preemptible"]
    for kind in JobKind:
        assert Priority.default_for(kind) is (
            Priority.BATCH if kind.deferrable else Priority.NORMAL
        )
    job = Job(
        job_id="j",
        submit_s=0.0,
        kind=JobKind.TRAINING,
        origin="o",
        cards=1,
        cpus=8,
        mem_gb=8.0,
        accelerator="a100",
        stacks=frozenset({"cuda"}),
        work_scu=1.0,
    )
    assert job.tenant == "default" and job.priority is None
    assert job.priority_class is Priority.BATCH
    assert replace(job, kind=JobKind.INFERENCE).priority_class is Priority.NORMAL
    assert replace(job, priority=Priority.URGENT).priority_class is Priority.URGENT
