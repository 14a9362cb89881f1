"""Who runs first: quota tiers, fair-share standing, ordering and preemption victims.

The rules of docs/governance.md, pure and shared by both hosts. A run is admitted in one
**tier**, the claim it holds:

* ``NOMINAL``: within its tenant's nominal quota;
* ``COHORT``: borrowed from the unused, lendable quota of its cohort mates, within the
  tenant's borrowing limit;
* ``NETWORK``: beyond both, on capacity nobody with a claim (``NOMINAL`` or ``COHORT``) is
  waiting for: reclaimed first when somebody is;
* ``IDLE``: the ``preemptible`` class, which runs only on idle capacity, counts against no
  quota and may be preempted at any time.

Rates are SCU per hour (units x the chip's speed), so a quota holds on any chip. Family and hub
caps bound the tenant's runs on that vendor or hub whatever their tier. ``urgent`` runs are
admitted in the best tier they fit, ``NETWORK`` at worst, and may preempt lower classes.

:class:`Shares` keeps each tenant's rates by tier and its usage decayed with the half-life;
its *standing* is its usage (running now and recent) over its entitlement; the next job to run
is the one of the highest class whose tenant stands lowest, aged by its wait, then the oldest.
:func:`victims` chooses what to preempt so that the least is lost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from suanwang.core.governance import Governance, TenantQuota
from suanwang.core.jobs import Priority

#: quota arithmetic tolerance (SCU/h): rates are sums of floats
EPS = 1e-9
#: a tenant running less than this share of its nominal quota is **owed** it: its claims
#: take runs for fair share at once from tenants that are not owed theirs (issue 14: 90% of
#: its quota within one round of asking)
OWED_SHARE = 0.9


class Tier(IntEnum):
    """The claim a run holds; higher values are reclaimed first."""

    NOMINAL = 0
    COHORT = 1
    NETWORK = 2
    IDLE = 3


@dataclass(slots=True)
class Use:
    """A tenant's rates now (SCU/h) by tier, by family and by hub, and its decayed usage."""

    quota: TenantQuota
    tier: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    family: dict[str, float] = field(default_factory=dict)
    hub: dict[str, float] = field(default_factory=dict)
    decayed_scu: float = 0.0

    @property
    def rate(self) -> float:
        return sum(self.tier)


@dataclass(frozen=True, slots=True)
class Where:
    """Per candidate pool of one job: its rate (SCU/h) there, its accelerator family and hub
    (-1: none), aligned with the job's feasible pools."""

    rate: NDArray[np.float64]
    family: Sequence[str]
    hub: Sequence[str | None]


class Shares:
    """Every tenant's use and the cohorts' lending, as runs are admitted and released."""

    def __init__(self, gov: Governance, now_s: float = 0.0) -> None:
        self.gov = gov
        self.rules = gov.rules
        self.use = {name: Use(q) for name, q in gov.tenants.items()}
        self.cohort_of = {name: q.cohort for name, q in gov.tenants.items()}
        self.members = gov.cohorts()
        self.now_s = now_s
        self._tau_h = self.rules.half_life_s / 3600.0 / math.log(2.0)

    # ------------------------------------------------------------------ usage over time
    def advance(self, now_s: float) -> None:
        """Decay every tenant's usage to ``now_s``, adding what its runs did meanwhile (exact
        for rates constant over the interval)."""
        dt = now_s - self.now_s
        if dt <= 0:
            return
        keep = 0.5 ** (dt / self.rules.half_life_s)
        for u in self.use.values():
            u.decayed_scu = u.decayed_scu * keep + u.rate * self._tau_h * (1.0 - keep)
        self.now_s = now_s

    def entitlement(self, tenant: str) -> float:
        """SCU/h: the nominal quota times the weight (1 SCU/h at least, so that a tenant
        with no quota still has a standing)."""
        q = self.gov.tenants[tenant]
        return max(q.quota_scu_per_h, 1.0) * q.weight

    def standing(self, tenant: str, extra_scu_per_h: float = 0.0) -> float:
        """Usage over entitlement: the mean of the rate now (plus ``extra_scu_per_h``) and the
        decayed usage's rate (the usage divided by the mean life), over the entitlement. 1.0:
        using exactly its due."""
        u = self.use[tenant]
        rate = u.rate + extra_scu_per_h
        return (rate + u.decayed_scu / self._tau_h) / (2.0 * self.entitlement(tenant))

    def order_key(
        self, tenant: str, priority: Priority, submit_s: float, waited_s: float
    ) -> tuple[int, float, float]:
        """The order jobs are considered in (smallest first): class (``batch`` waiting past
        ``promote_after_s`` as ``normal``), standing less the aging credit, submit time."""
        rank = priority.rank
        if priority is Priority.BATCH and waited_s >= self.rules.promote_after_s:
            rank = Priority.NORMAL.rank
        return (rank, self.standing(tenant) - waited_s / self.rules.aging_s, submit_s)

    # ------------------------------------------------------------------ quota tiers
    def lendable(self, cohort: str) -> float:
        """SCU/h the cohort's tenants lend now: each one's unused nominal quota up to its
        lending limit."""
        return sum(self.lends(m) for m in self.members[cohort])

    def lends(self, tenant: str) -> float:
        """SCU/h the tenant lends its cohort now: its unused nominal quota up to its limit."""
        u = self.use[tenant]
        return min(u.quota.lendable_scu_per_h, max(u.quota.quota_scu_per_h - u.tier[0], 0.0))

    def borrowed(self, cohort: str) -> float:
        return sum(self.use[m].tier[Tier.COHORT] for m in self.members[cohort])

    def overdrawn(self, cohort: str) -> float:
        """SCU/h borrowed in the cohort beyond what its tenants lend now (a lender took its
        quota back): to reclaim."""
        return max(self.borrowed(cohort) - self.lendable(cohort), 0.0)

    def tier_now(self, tenant: str, tier: Tier, rate: float) -> Tier:
        """The tier a run of ``rate`` SCU/h admitted in ``tier`` holds now, for reclaiming:
        a claimed run (``NOMINAL``, ``COHORT``) of a tenant that would still use at least its
        nominal quota without it is borrowed capacity (``NETWORK``). Borrowing is what a tenant
        uses beyond its quota now, not the tier its runs were admitted in (its claimed and its
        borrowed runs may sit on different pools, and a claim may reach only some of them).
        Only checkpointable runs are taken so (:mod:`.queue`): no work is lost for it."""
        if tier > Tier.COHORT:
            return tier
        u = self.use[tenant]
        return Tier.NETWORK if u.rate - rate >= u.quota.quota_scu_per_h - EPS else tier

    def owed(self, tenant: str, less_scu_per_h: float = 0.0) -> bool:
        """Whether the tenant runs less than :data:`OWED_SHARE` of its nominal quota now
        (without ``less_scu_per_h`` of it)."""
        u = self.use[tenant]
        return u.rate - less_scu_per_h < OWED_SHARE * u.quota.quota_scu_per_h - EPS

    def capped(self, tenant: str, where: Where) -> NDArray[np.bool_]:
        """The candidate pools the tenant's family and hub caps leave room on."""
        u = self.use[tenant]
        ok = np.ones(where.rate.size, dtype=bool)
        caps_f, caps_h = u.quota.family_caps_scu_per_h, u.quota.hub_caps_scu_per_h
        if not caps_f and not caps_h:
            return ok
        for i, (fam, hub) in enumerate(zip(where.family, where.hub, strict=True)):
            r = where.rate[i]
            over_family = fam in caps_f and u.family.get(fam, 0.0) + r > caps_f[fam] + EPS
            h = hub or ""
            over_hub = h in caps_h and u.hub.get(h, 0.0) + r > caps_h[h] + EPS
            ok[i] = not (over_family or over_hub)
        return ok

    def tiers(self, tenant: str, priority: Priority, where: Where) -> NDArray[np.int64]:
        """For each candidate pool, the best tier a run there would be admitted in (-1: the
        class is not allowed, or a cap is full). Without a claim (NOMINAL or COHORT) a job
        may take ``NETWORK`` capacity; ``preemptible`` only ever ``IDLE``."""
        n = where.rate.size
        out = np.full(n, -1, dtype=np.int64)
        u = self.use[tenant]
        if priority not in u.quota.classes:
            return out
        ok = self.capped(tenant, where)
        if priority is Priority.PREEMPTIBLE:
            out[ok] = Tier.IDLE
            return out
        out[ok] = Tier.NETWORK
        cohort = self.cohort_of[tenant]
        room = min(  # what its mates lend: its own unused quota is not lent to itself
            u.quota.borrow_limit_scu_per_h - u.tier[Tier.COHORT],
            self.lendable(cohort) - self.lends(tenant) - self.borrowed(cohort),
        )
        out[ok & (where.rate <= room + EPS)] = Tier.COHORT
        out[ok & (u.tier[Tier.NOMINAL] + where.rate <= u.quota.quota_scu_per_h + EPS)] = (
            Tier.NOMINAL
        )
        return out

    def admit(self, tenant: str, tier: Tier, rate: float, family: str, hub: str | None) -> None:
        u = self.use[tenant]
        u.tier[tier] += rate
        u.family[family] = u.family.get(family, 0.0) + rate
        if hub is not None:
            u.hub[hub] = u.hub.get(hub, 0.0) + rate

    def release(self, tenant: str, tier: Tier, rate: float, family: str, hub: str | None) -> None:
        u = self.use[tenant]
        u.tier[tier] = max(u.tier[tier] - rate, 0.0)
        u.family[family] = max(u.family.get(family, 0.0) - rate, 0.0)
        if hub is not None:
            u.hub[hub] = max(u.hub.get(hub, 0.0) - rate, 0.0)


@dataclass(frozen=True, slots=True)
class Run:
    """A running job as preemption sees it."""

    key: int  # the host's id for the run
    tenant: str
    priority: Priority
    tier: Tier
    pool: int
    units: int
    checkpointable: bool
    lost_scu: float  # work lost if stopped now (0 for a checkpointable run)
    standing_after: float = math.inf  # its tenant's standing without this run
    protected: bool = False  # preempted before and restarted less than protect_s ago
    rate: float = 0.0  # SCU/h it holds
    admitted: Tier | None = None  # the tier it was admitted in, if ``tier`` is another now
    owed_after: bool = True  # its tenant would run under OWED_SHARE of its quota without it


@dataclass(frozen=True, slots=True)
class Claimant:
    """A waiting job that wants room: its tenant, class and cohort; ``entitled``: it has a
    claim (``NOMINAL`` or ``COHORT`` tier, or it is ``urgent``); ``standing_after``: its
    tenant's standing once it runs; ``starved``: a claim that has waited past
    ``RESERVE_AFTER_S`` (:mod:`.queue`), which may also preempt for fair share; ``owed``: a
    claim of a tenant owed its quota (:meth:`Shares.owed`), which may do so at once, of
    tenants that are not owed theirs even without the run."""

    tenant: str
    priority: Priority
    cohort: str
    entitled: bool
    standing_after: float
    starved: bool = False
    owed: bool = False


def victim_order(run: Run) -> tuple[int, int, float, int, float, int]:
    """The documented order (smallest preempted first): ``preemptible`` first, then runs on
    borrowed capacity (network, then cohort) of the tenant furthest over its share,
    checkpointable before not, least work lost, then runs admitted as borrowed first."""
    idle = 0 if run.priority is Priority.PREEMPTIBLE else 1
    admitted = run.tier if run.admitted is None else run.admitted
    return (
        idle,
        -int(run.tier),
        -run.standing_after,
        int(not run.checkpointable),
        run.lost_scu,
        -int(admitted),
    )


def may_preempt(
    c: Claimant, run: Run, cohort_of: Mapping[str, str], overdrawn: Mapping[str, float]
) -> bool:
    """Whether the waiting job ``c`` may preempt ``run`` (docs/governance.md, "Preemption").

    * ``urgent`` preempts any lower class, whatever its tier;
    * a ``preemptible`` run yields to any other class; an ``urgent`` run only to nothing;
    * a run preempted recently (protected) yields only to ``urgent``, and to a claim of a
      tenant owed its quota when the run's tenant is over its due (standing above 1) and
      not owed its own quota even without the run: protection keeps what a tenant is due
      from churning, not what it holds beyond that from a tenant short of its quota;
    * a claim (within the nominal quota, or the cohort's lending) reclaims runs on
      network-borrowed capacity, and cohort-borrowed runs in its own cohort when the cohort
      is overdrawn (a lender took its quota back);
    * a claim that has waited ``RESERVE_AFTER_S`` (``starved``: its pools are held by runs
      nothing above may take, as a large gang on the few pools of its stack) also takes runs
      of tenants that stand higher than it would after running, whatever their tier:
      checkpointable ones (no work lost), and others only of a tenant over its due (standing
      above 1 even without the run) (fair-share preemption); a claim of a tenant owed its
      quota (running less than :data:`OWED_SHARE` of it) does so at once, of tenants that
      would not be owed theirs without the run (so no tenant's promise is broken for it);
    * without a claim, a job reclaims network-borrowed capacity only from a tenant that stands
      higher than it would, and only checkpointable runs (fair share among borrowers without
      losing work).

    A tenant never preempts itself.
    """
    if run.tenant == c.tenant:
        return False
    if c.priority is Priority.URGENT and run.priority.rank > c.priority.rank:
        return True
    if run.priority is Priority.PREEMPTIBLE or run.tier is Tier.IDLE:
        return c.priority is not Priority.PREEMPTIBLE
    if run.priority is Priority.URGENT or c.priority is Priority.PREEMPTIBLE:
        return False
    owed = c.owed and not run.owed_after  # c is short of 90% of its quota; run's tenant not
    if run.protected and not (owed and run.standing_after > 1.0):
        return False
    fair_share = c.starved or owed
    if c.entitled:
        if run.tier is Tier.NETWORK:
            return True
        if (
            fair_share
            and run.standing_after > c.standing_after
            and (run.checkpointable or run.standing_after > 1.0)
        ):
            return True
        return (
            run.tier is Tier.COHORT
            and cohort_of[run.tenant] == c.cohort
            and overdrawn.get(c.cohort, 0.0) > EPS
        )
    return run.tier is Tier.NETWORK and run.checkpointable and run.standing_after > c.standing_after


def victims(
    units: int, free: Mapping[int, int], candidates: Sequence[Run]
) -> tuple[int, list[Run]] | None:
    """The least costly way to make room for ``units`` on one of the pools in ``free`` (pool ->
    free units now): on each pool, take eligible runs in :func:`victim_order` until enough is
    free; among pools, the one whose worst victim comes earliest in the order, then fewest
    victims, then least work lost, then the pool's index. None: no pool can be freed. A pool
    with room already needs no victim: ``(pool, [])`` (the first such pool)."""
    for pool, f in free.items():
        if f >= units:
            return pool, []
    by_pool: dict[int, list[Run]] = {}
    for r in candidates:
        if r.pool in free:
            by_pool.setdefault(r.pool, []).append(r)
    best: tuple[tuple[object, ...], int, list[Run]] | None = None
    for pool, runs in by_pool.items():
        need = units - free[pool]
        if need <= 0:
            continue
        runs.sort(key=lambda r: victim_order(r))
        chosen: list[Run] = []
        got = 0
        for r in runs:
            if got >= need:
                break
            chosen.append(r)
            got += r.units
        if got < need:
            continue
        # drop victims made unnecessary by a later, larger one (keep the order's spirit)
        for r in sorted(chosen, key=lambda r: r.units):
            if got - r.units >= need:
                chosen.remove(r)
                got -= r.units
        key = (
            max(victim_order(r) for r in chosen),
            len(chosen),
            sum(r.lost_scu for r in chosen),
            pool,
        )
        if best is None or key < best[0]:
            best = (key, pool, chosen)
    return None if best is None else (best[1], best[2])
