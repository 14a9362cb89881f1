"""The simulator with the platform's queue: quotas, fair share, priorities and preemption.

Jobs wait in the platform's queue, one queue per tenant and class in submit order, and are
taken in rounds every ``round_s`` as the live dispatcher takes them (docs/governance.md): the
next job is the one of the highest class whose tenant stands lowest against its entitlement,
aged by its wait (:meth:`Shares.order_key`). A job is placed, through the one seam
(:func:`~suanwang.scheduling.placement.place`), only on pools where it can start now and in
the best quota tier those allow (:meth:`Shares.tiers`): first the jobs with a claim (within
their nominal quota or their cohort's lending, and ``urgent`` work), then, on what is left,
those without one (network-borrowed and ``preemptible``). A job with a claim that finds no
room preempts (:func:`~suanwang.scheduling.fairshare.victims`): a checkpointable victim keeps
its progress, another loses the work of its run; both go back to the queue. A planned
deferral (price) sends the job back to the queue until its start.

With ``governance=None`` (the ``fifo`` comparison) the same engine takes jobs oldest first
with no quotas, tiers or preemption. No center queue decides who runs: a job is admitted only
where it starts at once, and its units are held from admission (its data arriving meanwhile).
The events are those of :mod:`suanwang.sim.engine`; a preemption is ``running -> migrating``
(the run stopped, checkpointed if it can) and the job is placed again later.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from suanwang.core.governance import Governance
from suanwang.core.jobs import Job, Priority
from suanwang.core.lifecycle import NO_STATE
from suanwang.core.network import JobClassInfo, Network
from suanwang.core.signals import Signals
from suanwang.scheduling.fairshare import (
    Claimant,
    Run,
    Shares,
    Tier,
    Where,
    may_preempt,
    victims,
)
from suanwang.scheduling.placement import place
from suanwang.scheduling.policies import Policy
from suanwang.scheduling.state import NO_MARKET, CapacityState, Market
from suanwang.sim.engine import (
    FAILED,
    MIGRATING,
    PENDING,
    RUNNING,
    SCHEDULED,
    SUCCEEDED,
    EventLog,
    Outcome,
)

ROUND_S = 60.0
#: a job with a claim that has waited this long at the head of its queue for room reserves a
#: pool (nothing else starts there until it does: large gangs are not starved by small jobs)
RESERVE_AFTER_S = 600.0
#: jobs tried per queue and round after its head found no room (smaller ones may fit)
BACKFILL = 4


@dataclass(frozen=True, slots=True)
class Preemption:
    job: int
    at_s: float
    pool: int
    lost_scu: float
    by: int  # the job it made room for


@dataclass
class GovernedOutcome:
    """What the engine's :class:`Outcome` holds, plus the preemptions, the tier of each run
    and, per round, which tenants had work waiting (backlogged)."""

    outcome: Outcome
    tenants: tuple[str, ...]
    preemptions: list[Preemption]
    round_s: NDArray[np.float64]  # the time of each round
    backlogged: NDArray[np.bool_]  # (rounds, tenants)
    tier: NDArray[np.int64]  # per run begun (in event order of `running`): its Tier
    governance: Governance  # the quotas it ran with, or (fifo) would have: to measure by
    fair: bool = True  # False: the fifo comparison (no quotas, order or preemption)
    waiting: dict[str, int] = field(default_factory=dict)  # job waits by reason (round samples)


@dataclass(slots=True)
class _Live:
    pool: int
    tier: Tier
    rate: float
    start_s: float
    runtime_s: float
    family: str
    hub: str | None


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


def simulate_governed(
    net: Network,
    signals: Signals,
    jobs: Sequence[Job],
    policy: Policy,
    governance: Governance | None,
    market: Market = NO_MARKET,
    round_s: float = ROUND_S,
) -> GovernedOutcome:
    """Run ``jobs`` (in submit order) through the platform's queue and the network."""
    n = len(jobs)
    nan = float("nan")
    state = CapacityState.empty(net, signals)
    horizon = signals.horizon_s
    tenants = tuple(sorted({j.tenant for j in jobs}))
    fair = governance is not None
    gov = governance if governance is not None else Governance(tenants={})
    gov = gov.with_tenants(tenants, capacity_scu_per_h(net))
    shares = Shares(gov)
    rules = gov.rules
    fam_of, hub_of = pool_families(net), pool_hubs(net)
    free = state.free
    log = EventLog.empty()
    event = log.add

    pool = [-1] * n
    release = [nan] * n
    first_start = [nan] * n
    start = [nan] * n
    end = [nan] * n
    latency = [nan] * n
    transfer_cny = [0.0] * n
    remaining = [j.work_scu for j in jobs]
    epoch = [0] * n
    decision_s = [nan] * n
    protect_until = [-1.0] * n  # a preempted job's next run is protected until then
    requeued: set[int] = set()  # preempted, not yet started again
    units = [j.demand_units for j in jobs]
    prio = [j.priority_class for j in jobs]
    infos: list[JobClassInfo | None] = [None] * n
    seg: list[tuple[int, int, float, float]] = []
    tiers_run: list[int] = []
    live: dict[int, _Live] = {}
    by_pool: list[dict[int, None]] = [{} for _ in range(net.n_pools)]
    queues: dict[tuple[str, Priority], deque[int]] = {}
    deferred: list[tuple[float, int]] = []
    deferred_once: set[int] = set()  # a job is deferred for price once, then starts when due
    reserved: dict[int, int] = {}  # pool -> the job it is kept for
    reserving: dict[str, int] = {}  # tenant -> its pool kept (one at a time)
    finishes: list[tuple[float, int, int]] = []
    preemptions: list[Preemption] = []
    rounds: list[float] = []
    backlog_rows: list[list[bool]] = []
    waiting: dict[str, int] = {}
    decide_s = 0.0
    decisions = 0
    perf = time.perf_counter
    tenant_index = {t: i for i, t in enumerate(tenants)}

    def enqueue(j: int, front: bool = False) -> None:
        q = queues.setdefault((jobs[j].tenant, prio[j]), deque())
        if front:
            q.appendleft(j)
        else:
            q.append(j)

    def where(j: int, info: JobClassInfo) -> Where:
        pools = info.pools.tolist()
        return Where(
            rate=units[j] * info.speed,
            family=[fam_of[p] for p in pools],
            hub=[hub_of[p] for p in pools],
        )

    def stop(j: int, now: float, to: int) -> _Live:
        r = live.pop(j)
        del by_pool[r.pool][j]
        free[r.pool] += units[j]
        shares.release(jobs[j].tenant, r.tier, r.rate, r.family, r.hub)
        event(j, now, RUNNING, to, r.pool)
        return r

    def finish_until(t: float) -> None:
        while finishes and finishes[0][0] <= t:
            at, j, ep = heapq.heappop(finishes)
            if ep != epoch[j] or j not in live:
                continue
            stop(j, at, SUCCEEDED)
            end[j] = at

    def preempt(v: int, now: float, by: int) -> None:
        r = stop(v, now, MIGRATING)
        done = min(max((now - r.start_s) / r.runtime_s, 0.0), 1.0) if r.runtime_s > 0 else 1.0
        lost = 0.0
        if jobs[v].checkpointable:
            remaining[v] *= 1.0 - done
        else:
            lost = remaining[v] * done
        seg.append((v, r.pool, r.start_s, now))
        epoch[v] += 1
        requeued.add(v)
        preemptions.append(Preemption(v, now, r.pool, lost, by))
        event(v, now, MIGRATING, PENDING, -1)
        enqueue(v, front=True)

    def admit(j: int, now: float, info: JobClassInfo, tier_of: NDArray[np.int64]) -> bool:
        """Place ``j`` on the pools of ``info`` (all with room now); False: deferred."""
        nonlocal decide_s, decisions
        job = jobs[j]
        state.now_s = now
        if pool[j] >= 0:  # placed before (preempted): its work is what is left
            job = _with_work(job, remaining[j])
        t0 = perf()
        placed = place(job, info, state, policy, market)
        dt = perf() - t0
        decide_s += dt
        decisions += 1
        if decision_s[j] != decision_s[j]:
            decision_s[j] = dt
        begin = placed.start_s
        if placed.deferred:
            state.book(placed.pool, -units[j], begin, begin + placed.runtime_s)
            if j not in deferred_once and begin < horizon:
                deferred_once.add(j)
                heapq.heappush(deferred, (now + placed.deferred_s, j))
                return False
            # deferred once already: it starts now, where the planner wanted it
            begin -= placed.deferred_s
            state.book(placed.pool, units[j], begin, begin + placed.runtime_s)
        p, pos = placed.pool, placed.pos
        tier = Tier(int(tier_of[pos]))
        rate = units[j] * float(info.speed[pos])
        if pool[j] < 0:
            transfer_cny[j] = job.data_gb * float(info.transfer_cost_cny_per_gb[pos])
            release[j] = begin
        pool[j] = p
        kept = next((q for q, k in reserved.items() if k == j), None)
        if kept is not None:
            del reserved[kept]
            del reserving[job.tenant]
        latency[j] = float(info.latency_ms[pos])
        event(j, now, PENDING, SCHEDULED, p)
        event(j, begin, SCHEDULED, RUNNING, p)
        tiers_run.append(int(tier))
        if first_start[j] != first_start[j]:
            first_start[j] = begin
        start[j] = begin
        free[p] -= units[j]
        live[j] = _Live(p, tier, rate, begin, placed.runtime_s, fam_of[p], hub_of[p])
        by_pool[p][j] = None
        shares.admit(job.tenant, tier, rate, fam_of[p], hub_of[p])
        if j in requeued:
            requeued.discard(j)
            protect_until[j] = begin + rules.protect_s
        heapq.heappush(finishes, (begin + placed.runtime_s, j, epoch[j]))
        return True

    def candidates(now: float, claimant: Claimant, pools: set[int]) -> list[Run]:
        over = {claimant.cohort: shares.overdrawn(claimant.cohort)}
        out = []
        for p in pools:
            for v in by_pool[p]:
                r = live[v]
                if r.start_s > now:
                    continue  # not begun (its data is arriving): nothing to stop yet
                ckpt = jobs[v].checkpointable
                done = min((now - r.start_s) / r.runtime_s, 1.0) if r.runtime_s > 0 else 1.0
                run = Run(
                    key=v,
                    tenant=jobs[v].tenant,
                    priority=prio[v],
                    tier=r.tier,
                    pool=p,
                    units=units[v],
                    checkpointable=ckpt,
                    lost_scu=0.0 if ckpt else remaining[v] * done,
                    standing_after=shares.standing(jobs[v].tenant, -r.rate),
                    protected=protect_until[v] > now,
                )
                if may_preempt(claimant, run, shares.cohort_of, over):
                    out.append(run)
        return out

    def try_preempt(
        now: float, j: int, info: JobClassInfo, mask: NDArray[np.bool_], entitled: bool,
        budget: int,
    ) -> int:  # fmt: skip
        """Make room for ``j`` on a pool of ``mask`` by preempting (:func:`victims`) at most
        ``budget`` runs; the number preempted (0: no room can be made)."""
        tenant = jobs[j].tenant
        claimant = Claimant(
            tenant=tenant,
            priority=prio[j],
            cohort=shares.cohort_of[tenant],
            entitled=entitled,
            standing_after=shares.standing(tenant, float((units[j] * info.speed[mask]).min())),
        )
        pools = {int(p) for p in info.pools[mask]}
        runs = candidates(now, claimant, pools)
        found = victims(units[j], {p: int(free[p]) for p in pools}, runs) if runs else None
        if found is None or not found[1] or len(found[1]) > budget:
            return 0
        for r in found[1]:
            preempt(r.key, now, j)
        return len(found[1])

    def take(j: int, now: float, info: JobClassInfo, tier_of: NDArray[np.int64],
             ok: NDArray[np.bool_]) -> bool:  # fmt: skip
        """Admit ``j`` on one of the ``ok`` pools, in the tier that pool gives; False:
        deferred."""
        return admit(j, now, info.subset(ok), tier_of[ok])

    def reserve(j: int, now: float, info: JobClassInfo, usable: NDArray[np.bool_]) -> None:
        """Keep for ``j`` (waited past RESERVE_AFTER_S) the usable pool with most room."""
        tenant = jobs[j].tenant
        if tenant in reserving or now - jobs[j].submit_s < RESERVE_AFTER_S:
            return
        pools = info.pools[usable]
        p = int(pools[np.argmax(free[pools])])
        reserved[p] = j
        reserving[tenant] = p

    def run_round(now: float) -> None:
        budget = rules.max_preemptions_per_round if fair and rules.preemption else 0
        tried: dict[tuple[str, Priority], int] = {}
        later: list[tuple[str, Priority]] = []  # queues whose head has no claim (pass 2)
        for second in (False, True):
            active = list(later) if second else [k for k, q in queues.items() if q]
            skip: dict[tuple[str, Priority], int] = {}  # position in queue to look at next
            while active:
                best_k = None
                best_key: tuple[int, float, float] | None = None
                for k in active:
                    j = queues[k][skip.get(k, 0)]
                    if fair:
                        key = shares.order_key(k[0], k[1], jobs[j].submit_s, now - jobs[j].submit_s)
                    else:
                        key = (0, 0.0, jobs[j].submit_s)
                    if best_key is None or key < best_key:
                        best_k, best_key = k, key
                assert best_k is not None
                q = queues[best_k]
                at = skip.get(best_k, 0)
                j = q[at]
                info = infos[j]
                assert info is not None
                open_ = _open_to(j, info.pools, reserved)
                room = (free[info.pools] >= units[j]) & open_
                if fair:
                    tier_of = shares.tiers(jobs[j].tenant, prio[j], where(j, info))
                else:
                    tier_of = np.full(info.pools.size, int(Tier.NETWORK), dtype=np.int64)
                claim = (tier_of >= 0) & (tier_of <= Tier.COHORT)
                if prio[j] is Priority.URGENT:
                    claim = tier_of >= 0
                # first pass: only jobs with a claim (fifo: every job, one pass)
                usable = (claim if fair and not second else tier_of >= 0) & open_
                ok = usable & room
                done = False
                if ok.any():
                    if not take(j, now, info, tier_of, ok):
                        waiting["deferred for price"] = waiting.get("deferred for price", 0) + 1
                    del q[at]
                    done = True
                elif (
                    usable.any()
                    and budget > 0
                    and (stopped := try_preempt(now, j, info, usable, not second, budget))
                ):
                    budget -= stopped  # runs preempted, not claims served
                    ok = usable & (free[info.pools] >= units[j])
                    if ok.any():
                        take(j, now, info, tier_of, ok)
                        del q[at]
                        done = True
                if done:
                    if at >= len(q):  # nothing left to look at in this queue
                        active.remove(best_k)
                    continue
                # not admitted: why, and whether to look further in this queue
                if not second and fair and not claim.any() and (tier_of >= 0).any():
                    reason = "quota used up"
                    if best_k not in later:
                        later.append(best_k)
                    active.remove(best_k)
                else:
                    reason = "capacity" if (tier_of >= 0).any() else "quota used up"
                    if fair and not second and at == 0 and usable.any():
                        reserve(j, now, info, usable)
                    n_tried = tried.get(best_k, 0) + 1
                    tried[best_k] = n_tried
                    if n_tried > BACKFILL or at + 1 >= len(q):
                        active.remove(best_k)
                    else:
                        skip[best_k] = at + 1
                waiting[reason] = waiting.get(reason, 0) + 1
        rounds.append(now)
        row = [False] * len(tenants)
        for (tenant, cls), q in queues.items():
            if q and cls is not Priority.PREEMPTIBLE:
                row[tenant_index[tenant]] = True
        backlog_rows.append(row)

    # ------------------------------------------------------------------ the clock
    arrivals = 0
    now = 0.0
    if n:
        now = jobs[0].submit_s - (jobs[0].submit_s % round_s) + round_s
    while now <= horizon and (arrivals < n or live or deferred or any(queues.values())):
        finish_until(now)
        while arrivals < n and jobs[arrivals].submit_s <= now:
            j = arrivals
            arrivals += 1
            t = jobs[j].submit_s
            info = net.job_class(jobs[j])
            event(j, t, NO_STATE, PENDING, -1)
            if info.pools.size == 0:
                event(j, t, PENDING, FAILED, -1)
                continue
            infos[j] = info
            enqueue(j)
        while deferred and deferred[0][0] <= now:
            _, j = heapq.heappop(deferred)
            enqueue(j, front=True)
        shares.advance(now)
        if any(queues.values()):
            run_round(now)
        now = _next_round(now, round_s, arrivals, n, jobs, finishes, deferred, queues)
    finish_until(horizon)
    outcome = Outcome.of_lists(
        pool, release, first_start, start, end, latency, transfer_cny, [0] * n, seg,
        decide_s, decisions, decision_s, horizon, log,
    )  # fmt: skip
    return GovernedOutcome(
        outcome=outcome,
        tenants=tenants,
        preemptions=preemptions,
        round_s=np.array(rounds, dtype=np.float64),
        backlogged=np.array(backlog_rows, dtype=bool).reshape(-1, len(tenants)),
        tier=np.array(tiers_run, dtype=np.int64),
        governance=gov,
        fair=fair,
        waiting=waiting,
    )


def _next_round(
    now: float,
    round_s: float,
    arrivals: int,
    n: int,
    jobs: Sequence[Job],
    finishes: list[tuple[float, int, int]],
    deferred: list[tuple[float, int]],
    queues: dict[tuple[str, Priority], deque[int]],
) -> float:
    """The next round: the next one on the grid, or, when nothing waits, the first round at or
    after the next arrival, finish or deferred start."""
    nxt = now + round_s
    if any(queues.values()):
        return nxt
    soon = [t for t in (
        jobs[arrivals].submit_s if arrivals < n else None,
        finishes[0][0] if finishes else None,
        deferred[0][0] if deferred else None,
    ) if t is not None]  # fmt: skip
    if not soon:
        return nxt
    first = min(soon)
    if first <= nxt:
        return nxt
    return nxt + ((first - nxt) // round_s + (1 if (first - nxt) % round_s else 0)) * round_s


def _open_to(j: int, pools: NDArray[np.int64], reserved: dict[int, int]) -> NDArray[np.bool_]:
    """Which of ``pools`` job ``j`` may start on: those not kept for another job."""
    if not reserved:
        return np.ones(pools.size, dtype=bool)
    return np.array([reserved.get(p, j) == j for p in pools.tolist()], dtype=bool)


def _with_work(job: Job, work_scu: float) -> Job:
    return replace(job, work_scu=work_scu)
