"""The platform's queue: who runs next, taken in rounds by class, quota and fair share.

One queue per tenant and class, in submit order (a preempted or deferred job goes back to the
front of its queue). A round (:meth:`PlatformQueue.round`) takes the next job again and again:
the one of the highest class whose tenant stands lowest against its entitlement, aged by its
wait (:meth:`Shares.order_key`); fifo (no :class:`Shares`): the oldest. Each is offered to the
host on the pools where it can start now, in two passes: first the jobs with a claim (within
their nominal quota or their cohort's lending, and ``urgent`` work), then, on what is left,
the others (network-borrowed and ``preemptible``). A job with a claim may start on any of its
pools (where its claim does not hold, as on a fast chip that takes more SCU/h than its quota
has left, the run is borrowed: others' claims reclaim it); one that finds no room preempts,
on the pools where its claim holds (:func:`victims`, at most ``max_preemptions_per_round``
runs a round; a checkpointable run counts as borrowed when its tenant would still use its
nominal quota without it, whatever tier it was admitted in: :meth:`Shares.tier_now`); one
that still cannot run stays, and up to :data:`BACKFILL` younger jobs of its queue are tried
behind it. A job with a claim that has waited :data:`RESERVE_AFTER_S` at
the head of its queue keeps the pool with most room where its claim holds (one per tenant):
nothing else starts there until it does (or the policy defers it: it lets the pool go), so
large gangs are not starved by small jobs. A job without a claim that has waited as long at the
head of its queue keeps a pool too (:meth:`PlatformQueue._keep`), against borrowers only: jobs
without a claim there of tenants standing as high as its own or higher do not start on it
(claims still do), so what is freed there goes to it, not to the small jobs of a borrower
standing higher (Jain's index among borrowers, docs/benchmarks.md). In
either mode a job does not start on a pool where it runs at less than :data:`SLOW` of its
speed on its fastest feasible pool (an FP64 job on an H800) until it has waited as long as the
run there would take longer: the chip is worth far more to others, and the job ends sooner
waiting for a chip it is fast on. Pools where a job runs at less than :data:`GOOD` of its best
speed are offered to it only in a last pass of the round (no preemption there), once every
job has had its turn at the pools it is fast on: a free H20 goes to the render that runs 2.26
SCU/h on it before the FP16 training that runs 0.47 (comparative advantage); a job that may
start on such a pool does not preempt for a faster one (a claim whose slow pool was taken
by the last pass preempts then, on its good pools where the claim holds).

Pure: the host (the simulator, the live dispatcher) says what is free, places and starts a job
(:meth:`Host.admit`, through the one seam), lists the runs on some pools and stops one
(:meth:`Host.preempt`). Both hosts run the same rounds. The pools kept for waiting jobs last
until their jobs start or are deferred, from round to round: the simulator keeps one queue for
its run; the live dispatcher builds one each round and hands it the pools kept at the last
(:meth:`PlatformQueue.holds`, :meth:`PlatformQueue.hold`) for the jobs still pending.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from suanwang.core.governance import Rules
from suanwang.core.jobs import Job, JobKind, Priority
from suanwang.core.network import JobClassInfo, Network
from suanwang.scheduling.fairshare import Claimant, Run, Shares, Tier, Where, may_preempt, victims

#: jobs tried per queue and round after its head found no room (smaller ones may fit)
BACKFILL = 4
#: a job with a claim that waited this long at the head of its queue keeps a pool
RESERVE_AFTER_S = 600.0
#: a job does not start on a pool where it runs slower than this fraction of its speed on its
#: fastest feasible pool (the chip does far more for others), until it has waited as long as
#: the run there would take longer
SLOW = 0.1
#: pools where a job runs at less than this fraction of its best speed are offered to it only
#: in a round's last pass, once every waiting job has had its turn at the pools it is fast on
GOOD = 0.25
#: why a job looked at in a round is still waiting
CAPACITY, QUOTA, DEFERRED = "capacity", "quota used up", "deferred for price"


@dataclass(frozen=True, slots=True)
class Hold:
    """A pool kept for a waiting job (``key``, of ``tenant``): ``claim`` True, reserved for
    a job with a claim, closed to every other job (:meth:`PlatformQueue._reserve`); False,
    kept for a job without one, closed to borrowers standing as high
    (:meth:`PlatformQueue._keep`)."""

    pool: int
    key: int
    tenant: str
    claim: bool


@dataclass(frozen=True, slots=True)
class Queued:
    """A pending job as the queue sees it: the host's ``key``, the job, its feasible pools
    (``info``) and what a run would weigh on each (``where``)."""

    key: int
    job: Job
    info: JobClassInfo
    where: Where


class Host(Protocol):
    """What a round needs of the host that runs it."""

    @property
    def free(self) -> NDArray[np.int64]:
        """Free units per pool now (the host lowers it as it admits and raises it as it
        preempts)."""
        ...

    def admit(self, q: Queued, info: JobClassInfo, tier_of: NDArray[np.int64]) -> bool:
        """Place ``q`` on one of the pools of ``info`` (all have room now) and start it, in
        the tier ``tier_of`` gives the chosen pool; False: the policy deferred it (the host
        keeps it and pushes it back to the queue when due)."""
        ...

    def runs_on(self, pools: set[int], now: float) -> Sequence[Run]:
        """The runs begun on ``pools`` (``standing_after`` is filled in by the queue)."""
        ...

    def preempt(self, key: int, by: int) -> None:
        """Stop the run ``key`` (checkpointed if it can) to make room for job ``by``, and
        push it back to the front of its queue."""
        ...


def pool_families(net: Network) -> tuple[str, ...]:
    """The accelerator family (vendor) of each pool."""
    return tuple(net.scenario.catalog.get(m).vendor for m in net.pool_model)


def pool_hubs(net: Network) -> tuple[str | None, ...]:
    """The hub of each pool's center (None: not in a hub)."""
    return tuple(
        net.hub_ids[h] if h >= 0 else None for h in net.center_hub[net.pool_center].tolist()
    )


def capacity_scu_per_h(net: Network) -> float:
    """The network's capacity in SCU/h: every unit at its pool's best speed."""
    return float((net.pool_capacity * net.pool_speed.max(axis=1)).sum())


def where_of(
    job: Job, info: JobClassInfo, families: Sequence[str], hubs: Sequence[str | None]
) -> Where:
    """What a run of ``job`` would weigh on each of its feasible pools."""
    pools = info.pools.tolist()
    return Where(
        rate=job.demand_units * info.speed,
        family=[families[p] for p in pools],
        hub=[hubs[p] for p in pools],
    )


QueueKey = tuple[str, Priority]
#: each kind's class when a job names none (``Priority.default_for``)
_DEFAULT_CLASS = {kind: Priority.default_for(kind) for kind in JobKind}


class PlatformQueue:
    """Pending jobs by tenant and class, and the pools kept for starved head jobs.

    ``shares`` None: fifo (oldest first, no quotas, tiers, preemption or reservations).
    """

    def __init__(
        self,
        shares: Shares | None,
        rules: Rules | None = None,
        waited_s: NDArray[np.float64] | None = None,
    ) -> None:
        self.shares = shares
        self.rules = rules if rules is not None else Rules()
        #: per pool: the last time a job waited in a round for room on it (updated in place:
        #: the host hands the same array to the planner, ``CapacityState.waited_s``)
        self.waited_s = waited_s
        self.queues: dict[QueueKey, deque[Queued]] = {}
        self.reserved: dict[int, int] = {}  # pool -> the job key it is kept for
        self.reserving: dict[str, int] = {}  # tenant -> its pool kept (one at a time)
        #: pools kept for a borrower's starved head job (pool -> its key and tenant): closed
        #: to jobs without a claim there of tenants standing as high or higher (:meth:`_keep`)
        self.kept: dict[int, tuple[int, str]] = {}
        self.keeping: dict[str, int] = {}  # tenant -> its pool kept as a borrower
        self._victims_of: set[str] = set()  # tenants whose runs the last start preempted

    def holds(self) -> list[Hold]:
        """The pools kept now for waiting jobs (reservations first, by pool)."""
        got = [Hold(p, self.reserved[p], t, True) for t, p in self.reserving.items()]
        got += [Hold(p, self.kept[p][0], t, False) for t, p in self.keeping.items()]
        return sorted(got, key=lambda h: (not h.claim, h.pool))

    def hold(self, h: Hold) -> None:
        """Keep ``h.pool`` for the job ``h.key`` as a round of this queue would have (a host
        that builds a queue every round hands it the pools the last one kept). Refused
        (ValueError) when the pool or the tenant already has one of that kind."""
        mine, pools = (self.reserving, self.reserved) if h.claim else (self.keeping, self.kept)
        if h.tenant in mine or h.pool in pools:
            raise ValueError(f"pool {h.pool} or tenant {h.tenant!r} already keeps one: {h}")
        mine[h.tenant] = h.pool
        if h.claim:
            self.reserved[h.pool] = h.key
        else:
            self.kept[h.pool] = (h.key, h.tenant)

    def push(self, q: Queued, front: bool = False) -> None:
        job = q.job  # (the class as ``Job.priority_class`` says, a dict look-up: 10,000 a round)
        cls = job.priority if job.priority is not None else _DEFAULT_CLASS[job.kind]
        dq = self.queues.setdefault((job.tenant, cls), deque())
        if front:
            dq.appendleft(q)
        else:
            dq.append(q)

    def __bool__(self) -> bool:
        return any(self.queues.values())

    def backlogged(self) -> set[str]:
        """Tenants with work waiting, ``preemptible`` aside."""
        return {t for (t, c), q in self.queues.items() if q and c is not Priority.PREEMPTIBLE}

    def round(
        self, now: float, host: Host, spent: Callable[[], bool] | None = None
    ) -> dict[int, str]:
        """Take jobs until none more can start (see the module docstring), or until ``spent``
        says the round has run long enough (the host's time budget; the jobs not looked at
        wait for the next round). Returns why each job looked at and not started waits:
        :data:`CAPACITY`, :data:`QUOTA` or :data:`DEFERRED`, by key (the last reason a job
        got in the round)."""
        fair = self.shares is not None
        budget = self.rules.max_preemptions_per_round if fair and self.rules.preemption else 0
        why: dict[int, str] = {}
        tried: dict[QueueKey, int] = {}
        later: list[QueueKey] = []  # queues whose head has no claim (second pass)
        slow: list[QueueKey] = []  # queues with a job that may start on a slow pool (last)
        for npass in (0, 1, 2):
            second, last = npass >= 1, npass == 2
            if last:
                tried = {}
            skip: dict[QueueKey, int] = {}  # position in a queue to look at next
            keys = [k for k, q in self.queues.items() if q] if npass == 0 else later
            turns = _Turns(self, now, [k for k in slow if self.queues[k]] if last else keys,
                           skip)  # fmt: skip
            while (k := turns.pop()) is not None:
                if budget <= 0 and not (host.free > 0).any():
                    self._waited(now, self.queues[k][skip.get(k, 0)].info.pools)
                    break  # nothing free and nothing to preempt: no job can start
                if spent is not None and spent():
                    return why
                q = self.queues[k]
                at = skip.get(k, 0)
                item = q[at]
                tier_of = self._tiers(item)
                claim = (tier_of >= 0) & (tier_of <= Tier.COHORT)
                if item.job.priority_class is Priority.URGENT:
                    claim = tier_of >= 0
                open_ = self._open_to(item, claim) & self._fits(now, item)
                good = item.info.speed >= GOOD * float(item.info.speed.max())
                # the last pass: no preemption, but for a claim that gave it up in the first
                # for a slow pool with room, taken since
                retry = last and fair and bool(claim.any())
                may_stop = budget if not last or retry else 0
                if not last:  # slow pools wait for the last pass
                    room = host.free[item.info.pools] >= item.job.demand_units
                    if (open_ & ~good & (tier_of >= 0) & room).any():
                        may_stop = 0  # it will start there: no need to preempt
                        if k not in slow:
                            slow.append(k)
                    open_ &= good
                # first pass: only jobs with a claim, preempting only where it holds but
                # starting on any pool they can use (beyond the claim the run is borrowed,
                # so others' claims reclaim it); fifo: every job, one pass
                usable = (claim if fair and not second else tier_of >= 0) & open_
                start_on = usable
                if fair and not second and claim.any():
                    start_on = (tier_of >= 0) & open_
                if retry:  # it preempts where its claim holds, on pools it is fast on
                    start_on, usable = (tier_of >= 0) & open_, claim & open_ & good
                self._victims_of = set()
                admitted, stopped = self._start(
                    now,
                    host,
                    item,
                    tier_of,
                    (start_on, usable),
                    may_stop,
                    not second or retry,
                )
                budget -= stopped
                if admitted is not None:
                    del q[at]
                    if admitted:
                        why.pop(item.key, None)
                    else:
                        why[item.key] = DEFERRED
                    if at < len(q):  # more to look at in this queue
                        turns.push(k)
                    turns.restand({item.job.tenant} | self._victims_of)  # standings moved
                    continue
                if not second and fair and not claim.any() and (tier_of >= 0).any():
                    why[item.key] = QUOTA  # no claim: tried again on what is left
                    if k not in later:
                        later.append(k)
                    continue
                why[item.key] = CAPACITY if (tier_of >= 0).any() else QUOTA
                self._waited(now, item.info.pools[(tier_of >= 0) & self._fits(now, item)])
                if fair and not second and at == 0 and usable.any():
                    self._reserve(now, host, item, usable)
                elif fair and second and not last and at == 0 and usable.any():
                    self._keep(now, host, item, usable)
                tried[k] = tried.get(k, 0) + 1
                if tried[k] <= BACKFILL and at + 1 < len(q):
                    skip[k] = at + 1
                    turns.push(k)
        return why

    def key_of(self, now: float, k: QueueKey, at: int) -> tuple[int, float, float]:
        """The turn of queue ``k`` whose next job is at ``at`` (smallest goes first)."""
        job = self.queues[k][at].job
        if self.shares is None:
            return (0, 0.0, job.submit_s)
        return self.shares.order_key(k[0], k[1], job.submit_s, now - job.submit_s)

    # ------------------------------------------------------------------ helpers
    def _tiers(self, item: Queued) -> NDArray[np.int64]:
        if self.shares is None:
            return np.full(item.info.pools.size, int(Tier.NETWORK), dtype=np.int64)
        return self.shares.tiers(item.job.tenant, item.job.priority_class, item.where)

    def _fits(self, now: float, item: Queued) -> NDArray[np.bool_]:
        """The job's pools where it runs at least :data:`SLOW` times its speed on its fastest
        feasible pool, or where its run would take longer than there by no more than it has
        waited already (comparative advantage: the slow chip does far more for others)."""
        speed = item.info.speed
        best = float(speed.max())
        ok: NDArray[np.bool_] = speed >= SLOW * best
        if ok.all():
            return ok
        job = item.job
        per_unit_h = job.work_scu / max(job.demand_units, 1)
        extra_s = per_unit_h * (1.0 / np.maximum(speed, 1e-12) - 1.0 / best) * 3600.0
        return ok | (extra_s <= now - job.submit_s)

    def _waited(self, now: float, pools: NDArray[np.int64]) -> None:
        """A job waits for room on ``pools`` (for the planner: ``CapacityState.waited_s``)."""
        if self.waited_s is not None:
            self.waited_s[pools] = now

    def _open_to(self, item: Queued, claim: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """The job's pools not kept for another job: a pool reserved for a claim is closed to
        every other job; one kept for a borrower (:meth:`_keep`) to jobs without a claim there
        (``claim``) of tenants standing as high as the borrower's or higher."""
        pools = item.info.pools
        if not self.reserved and not self.kept:
            return np.ones(pools.size, dtype=bool)
        key = item.key
        ok = np.array([self.reserved.get(p, key) == key for p in pools.tolist()])
        if self.kept and self.shares is not None:
            tenant = item.job.tenant
            mine = self.shares.standing(tenant)
            for i, p in enumerate(pools.tolist()):
                kept = self.kept.get(p)
                if kept is None or kept[0] == key or claim[i]:
                    continue
                if tenant == kept[1] or mine >= self.shares.standing(kept[1]):
                    ok[i] = False
        return ok

    def _start(
        self,
        now: float,
        host: Host,
        item: Queued,
        tier_of: NDArray[np.int64],
        pools: tuple[NDArray[np.bool_], NDArray[np.bool_]],
        budget: int,
        entitled: bool,
    ) -> tuple[bool | None, int]:
        """Start ``item`` on a pool of ``pools[0]`` with room or else, preempting if it may, on
        one of ``pools[1]`` (those where it may reclaim). Returns whether it was admitted (False:
        deferred by the policy; None: it cannot start) and how many runs were preempted."""
        start_on, reclaim_on = pools
        units = item.job.demand_units
        stopped = 0
        ok = start_on & (host.free[item.info.pools] >= units)
        if not ok.any() and reclaim_on.any() and budget > 0:
            stopped = self._preempt(now, host, item, reclaim_on, entitled, budget)
            ok = start_on & (host.free[item.info.pools] >= units)
        if not ok.any():
            return None, stopped
        admitted = host.admit(item, item.info.subset(ok), tier_of[ok])
        # started, or deferred for price (it leaves the queue until due): its pool is free
        tenant = item.job.tenant
        kept = self.reserving.get(tenant)
        if kept is not None and self.reserved.get(kept) == item.key:
            del self.reserved[kept], self.reserving[tenant]
        kept = self.keeping.get(tenant)
        if kept is not None and self.kept.get(kept, (-1, ""))[0] == item.key:
            del self.kept[kept], self.keeping[tenant]
        return admitted, stopped

    def _preempt(
        self,
        now: float,
        host: Host,
        item: Queued,
        usable: NDArray[np.bool_],
        entitled: bool,
        budget: int,
    ) -> int:
        """Make room for ``item`` on a usable pool by preempting at most ``budget`` runs; the
        number preempted (0: no room can be made)."""
        shares = self.shares
        assert shares is not None
        job = item.job
        tenant = job.tenant
        claimant = Claimant(
            tenant=tenant,
            priority=job.priority_class,
            cohort=shares.cohort_of[tenant],
            entitled=entitled,
            standing_after=shares.standing(tenant, float(item.where.rate[usable].min())),
            starved=entitled and now - job.submit_s >= RESERVE_AFTER_S,
            owed=entitled and shares.owed(tenant),
        )
        pools = {int(p) for p in item.info.pools[usable]}
        over = {claimant.cohort: shares.overdrawn(claimant.cohort)}
        runs = [
            r
            for r in (
                replace(
                    r,
                    standing_after=shares.standing(r.tenant, -r.rate),
                    tier=shares.tier_now(r.tenant, r.tier, r.rate) if r.checkpointable else r.tier,
                    admitted=r.tier,
                    owed_after=shares.owed(r.tenant, r.rate),
                )
                for r in host.runs_on(pools, now)
            )
            if may_preempt(claimant, r, shares.cohort_of, over)
        ]
        free = {p: int(host.free[p]) for p in pools}
        found = victims(job.demand_units, free, runs) if runs else None
        if found is None or not found[1] or len(found[1]) > budget:
            return 0
        for r in found[1]:
            host.preempt(r.key, item.key)
            self._victims_of.add(r.tenant)
        return len(found[1])

    def _reserve(self, now: float, host: Host, item: Queued, usable: NDArray[np.bool_]) -> None:
        """Keep for ``item`` (waited past RESERVE_AFTER_S) the usable pool with most room."""
        tenant = item.job.tenant
        if tenant in self.reserving or now - item.job.submit_s < RESERVE_AFTER_S:
            return
        pools = item.info.pools[usable]
        p = int(pools[np.argmax(host.free[pools])])
        self.reserved[p] = item.key
        self.reserving[tenant] = p

    def _keep(self, now: float, host: Host, item: Queued, usable: NDArray[np.bool_]) -> None:
        """Keep for ``item``, a job without a claim at the head of its queue that waited past
        RESERVE_AFTER_S, the usable pool where most units are free or held by borrowed runs
        of tenants standing higher than its own would after running: units freed there go to
        no other borrower standing as high (a large gang of a borrower standing low is not
        starved by the small jobs of one standing higher); claims still start there. One
        pool per tenant, until the job starts or is deferred."""
        shares = self.shares
        assert shares is not None
        tenant = item.job.tenant
        if tenant in self.keeping or now - item.job.submit_s < RESERVE_AFTER_S:
            return
        pools = item.info.pools[usable]
        after = shares.standing(tenant, float(item.where.rate[usable].min()))
        room = {int(p): int(host.free[p]) for p in pools.tolist() if int(p) not in self.kept}
        if not room:
            return
        for r in host.runs_on(set(room), now):
            tier = shares.tier_now(r.tenant, r.tier, r.rate)
            if tier >= Tier.NETWORK and shares.standing(r.tenant) > after:
                room[r.pool] += r.units
        p = max(room, key=lambda q: (room[q], -q))
        self.kept[p] = (item.key, tenant)
        self.keeping[tenant] = p


class _Turns:
    """The queues of a pass in turn order: a heap of their keys, updated lazily (a queue's
    entry is stale once it is pushed again or taken)."""

    def __init__(
        self, pq: PlatformQueue, now: float, keys: Sequence[QueueKey], skip: dict[QueueKey, int]
    ) -> None:
        self.pq, self.now, self.skip = pq, now, skip
        self.rank = {k: i for i, k in enumerate(keys)}  # ties: the order queues were listed
        self.version: dict[QueueKey, int] = {}
        self.waiting: set[QueueKey] = set()  # queues with a live entry
        self.heap: list[tuple[tuple[int, float, float], int, int, QueueKey]] = []
        self.by_tenant: dict[str, list[QueueKey]] = {}
        for k in keys:
            self.by_tenant.setdefault(k[0], []).append(k)
            self.push(k)

    def push(self, k: QueueKey) -> None:
        v = self.version.get(k, 0) + 1
        self.version[k] = v
        self.waiting.add(k)
        key = self.pq.key_of(self.now, k, self.skip.get(k, 0))
        heapq.heappush(self.heap, (key, self.rank[k], v, k))

    def pop(self) -> QueueKey | None:
        """The queue whose next job goes first (it leaves the heap until pushed again)."""
        while self.heap:
            _, _, v, k = heapq.heappop(self.heap)
            if k in self.waiting and self.version[k] == v:
                self.waiting.discard(k)
                return k
        return None

    def restand(self, tenants: set[str]) -> None:
        """Their standing moved: their waiting queues take their new turn."""
        for t in tenants:
            for k in self.by_tenant.get(t, ()):
                if k in self.waiting:
                    self.push(k)
