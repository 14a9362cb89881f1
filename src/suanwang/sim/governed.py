"""The simulator with the platform's queue: quotas, fair share, priorities and preemption.

Jobs wait in the platform's queue (:class:`~suanwang.scheduling.queue.PlatformQueue`, the
rounds the live dispatcher runs too) and are taken every ``round_s``; this module is the
queue's host in simulated time: what is free, placing and starting a job through the one seam
(:func:`~suanwang.scheduling.placement.place`) on the pools where it can start now, the runs a
preemption may stop and stopping them (a checkpointable victim keeps its progress, another
loses the work of its run; both go back to the front of their queue). A planned deferral
(price) sends the job back to the queue until its start, once: then it starts where the
planner wants it.

A job of a class its tenant may not use is refused at submission (``pending -> failed``), as
the API refuses it. With ``governance=None`` (the ``fifo`` comparison) the same engine takes
jobs oldest first with no quotas, tiers, preemption or reservations. No center queue decides
who runs: a job is admitted only where it starts at once, and its units are held from
admission (its data arriving meanwhile). The events are those of :mod:`suanwang.sim.engine`;
a preemption is ``running -> migrating`` (the run stopped, checkpointed if it can) then
``pending``.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from suanwang.core.governance import Governance
from suanwang.core.jobs import Job
from suanwang.core.lifecycle import NO_STATE
from suanwang.core.network import JobClassInfo, Network
from suanwang.core.signals import Signals
from suanwang.scheduling.fairshare import Run, Shares, Tier
from suanwang.scheduling.placement import place
from suanwang.scheduling.policies import Policy
from suanwang.scheduling.queue import (
    PlatformQueue,
    Queued,
    capacity_scu_per_h,
    pool_families,
    pool_hubs,
    where_of,
)
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
    round_len_s: float = ROUND_S  # how often the queue was taken
    #: the jobs the policy deferred for price: (job, when, back in the queue at)
    deferrals: list[tuple[int, float, float]] = field(default_factory=list)


@dataclass(slots=True)
class _Live:
    pool: int
    tier: Tier
    rate: float
    start_s: float
    runtime_s: float
    family: str
    hub: str | None


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
    seg: list[tuple[int, int, float, float]] = []
    tiers_run: list[int] = []
    live: dict[int, _Live] = {}
    by_pool: list[dict[int, None]] = [{} for _ in range(net.n_pools)]
    deferred: list[tuple[float, int]] = []
    deferred_once: set[int] = set()  # a job is deferred for price once, then starts when due
    deferrals: list[tuple[int, float, float]] = []
    finishes: list[tuple[float, int, int]] = []
    preemptions: list[Preemption] = []
    rounds: list[float] = []
    backlog_rows: list[list[bool]] = []
    waiting: dict[str, int] = {}
    decide_s = 0.0
    decisions = 0
    perf = time.perf_counter
    tenant_index = {t: i for i, t in enumerate(tenants)}

    state.waited_s = np.full(net.n_pools, -np.inf)
    queue = PlatformQueue(shares if fair else None, rules, state.waited_s)
    items: list[Queued | None] = [None] * n

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

    class Host:
        """The simulator as the queue's host (:class:`suanwang.scheduling.queue.Host`)."""

        now = 0.0

        @property
        def free(self) -> NDArray[np.int64]:
            return free

        def admit(self, q: Queued, info: JobClassInfo, tier_of: NDArray[np.int64]) -> bool:
            return admit(q.key, self.now, info, tier_of)

        def runs_on(self, pools: set[int], now: float) -> list[Run]:
            out = []
            for p in pools:
                for v in by_pool[p]:
                    r = live[v]
                    if r.start_s > now:
                        continue  # not begun (its data is arriving): nothing to stop yet
                    ckpt = jobs[v].checkpointable
                    done = min((now - r.start_s) / r.runtime_s, 1.0) if r.runtime_s > 0 else 1.0
                    out.append(
                        Run(
                            key=v,
                            tenant=jobs[v].tenant,
                            priority=prio[v],
                            tier=r.tier,
                            pool=p,
                            units=units[v],
                            checkpointable=ckpt,
                            lost_scu=0.0 if ckpt else remaining[v] * done,
                            protected=protect_until[v] > now,
                            rate=r.rate,
                        )
                    )
            return out

        def preempt(self, key: int, by: int) -> None:
            now, v = self.now, key
            r = stop(v, now, MIGRATING)
            done = min(max((now - r.start_s) / r.runtime_s, 0.0), 1.0) if r.runtime_s else 1.0
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
            item = items[v]
            assert item is not None
            queue.push(item, front=True)

    host = Host()

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
                deferrals.append((j, now, now + placed.deferred_s))
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

    def run_round(now: float) -> None:
        host.now = now
        for reason in queue.round(now, host).values():
            waiting[reason] = waiting.get(reason, 0) + 1
        rounds.append(now)
        row = [False] * len(tenants)
        for tenant in queue.backlogged():
            row[tenant_index[tenant]] = True
        backlog_rows.append(row)

    # ------------------------------------------------------------------ the clock
    arrivals = 0
    now = 0.0
    if n:
        now = jobs[0].submit_s - (jobs[0].submit_s % round_s) + round_s
    while now <= horizon and (arrivals < n or live or deferred or queue):
        finish_until(now)
        while arrivals < n and jobs[arrivals].submit_s <= now:
            j = arrivals
            arrivals += 1
            t = jobs[j].submit_s
            info = net.job_class(jobs[j])
            event(j, t, NO_STATE, PENDING, -1)
            allowed = prio[j] in gov.tenants[jobs[j].tenant].classes or not fair
            if info.pools.size == 0 or not allowed:  # refused, as the API refuses (403)
                event(j, t, PENDING, FAILED, -1)
                continue
            new = Queued(j, jobs[j], info, where_of(jobs[j], info, fam_of, hub_of))
            items[j] = new
            queue.push(new)
        while deferred and deferred[0][0] <= now:
            _, j = heapq.heappop(deferred)
            back = items[j]
            assert back is not None
            queue.push(back, front=True)
        shares.advance(now)
        if queue:
            run_round(now)
        now = _next_round(now, round_s, arrivals, n, jobs, finishes, deferred, bool(queue))
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
        round_len_s=round_s,
        deferrals=deferrals,
    )


def _next_round(
    now: float,
    round_s: float,
    arrivals: int,
    n: int,
    jobs: Sequence[Job],
    finishes: list[tuple[float, int, int]],
    deferred: list[tuple[float, int]],
    waiting: bool,
) -> float:
    """The next round: the next one on the grid, or, when nothing waits, the first round at or
    after the next arrival, finish or deferred start."""
    nxt = now + round_s
    if waiting:
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


def _with_work(job: Job, work_scu: float) -> Job:
    return replace(job, work_scu=work_scu)
