"""Discrete-event simulation of the network on the placement engine.

The event loop takes ``(time, seq, kind, job, epoch)`` in that order from two heaps (releases,
and the rest) as from one; the sequence number makes runs deterministic. Jobs arrive in submit
order and are placed by the policy at once; a job is released to its pool's FIFO queue when its
data has arrived and its planned start has come, starts when the pool has room for all its
units (gang), and finishes after its runtime on that chip. Queues are FIFO with a bounded
backfill scan.

Policies that implement :class:`Migrator` are asked every ``replan_s`` of simulated time which
running checkpointable jobs to move. A move checkpoints the job, frees its units, sends the
checkpoint to the new center (time and money as in the cost model) and releases the remaining
work there; the finish event of the old run is fenced off by an epoch counter, so a job
completes exactly once.

Every job must start within the scenario's deferral limit (:class:`DeferralRule`): by its data's
arrival at its pool plus ``max_defer_h`` (and a second of slack). A job that waits in a queue
past that expires there: it leaves the queue, never runs, and is handed back and refused,
``scheduled -> pending -> failed`` on its pool (not ``scheduled -> failed``, which billing
meters as a run it did not see); the metrics charge the rule's penalty. A policy that plans
further ahead than the rule (``max_defer_h`` above it) is refused. The check costs nothing
for jobs that start on release: only a job that has to queue gets an expiry event.

The run ends when every job has finished or the signal horizon is reached; what has not
finished by then is ``unfinished``.

The simulator is a host of the engine as the control plane is, and writes the same lifecycle
events (:class:`EventLog`): ``pending`` at submission, ``scheduled`` when placed (``failed``
when no pool can run the job), ``running`` when started, ``succeeded`` when done, and
``migrating`` then ``scheduled`` again for a move. The metrics
(:func:`suanwang.sim.metrics.measure`) measure runs found in that log with the rule billing
applies to live events (:func:`suanwang.core.lifecycle.run_events`).
"""

from __future__ import annotations

import heapq
import time
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from suanwang.core.cost import run_seconds
from suanwang.core.jobs import Job
from suanwang.core.lifecycle import NO_STATE, STATE_CODE, JobState
from suanwang.core.network import JobClassInfo, Network
from suanwang.core.signals import Signals
from suanwang.scheduling.placement import place
from suanwang.scheduling.policies import Policy
from suanwang.scheduling.state import NO_MARKET, CapacityState, Market, Running

RELEASE, FINISH, REPLAN, EXPIRE = 0, 1, 2, 3
BACKFILL_SCAN = 16
#: no queued job: nothing to scan for, however many units are free
NEED_NONE = 1 << 62
#: jobs whose feasible pools (and, for a planning policy, first grids: ``prepare``) the
#: simulator works out together, ahead of them
LOOKAHEAD = 512
PENDING, SCHEDULED, RUNNING, SUCCEEDED, FAILED, MIGRATING = (
    STATE_CODE[s]
    for s in (
        JobState.PENDING,
        JobState.SCHEDULED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.MIGRATING,
    )
)


@dataclass
class EventLog:
    """Lifecycle events in the order they happened, as columns: the job (its index), the
    time (s from the signals' start), the states it moved from and to (codes of
    :data:`~suanwang.core.lifecycle.STATE_CODE`; from ``-1`` for its first event) and the pool
    it is placed on then (-1: none)."""

    job: array[int]
    at_s: array[float]
    frm: array[int]
    to: array[int]
    pool: array[int]

    @classmethod
    def empty(cls) -> EventLog:
        return cls(array("l"), array("d"), array("b"), array("b"), array("l"))

    def add(self, job: int, at_s: float, frm: int, to: int, pool: int) -> None:
        self.job.append(job)
        self.at_s.append(at_s)
        self.frm.append(frm)
        self.to.append(to)
        self.pool.append(pool)

    def pair(self, job: int, at_s: float, frm: int, mid: int, to: int, pool_mid: int,
             pool_to: int) -> None:  # fmt: skip
        """Two events of ``job`` at ``at_s``: ``frm -> mid`` on ``pool_mid``, then ``mid ->
        to`` on ``pool_to`` (as two :meth:`add` calls, with half the calls)."""
        self.job.extend((job, job))
        self.at_s.extend((at_s, at_s))
        self.frm.extend((frm, mid))
        self.to.extend((mid, to))
        self.pool.extend((pool_mid, pool_to))

    def __len__(self) -> int:
        return len(self.job)

    def columns(self) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64],
                               NDArray[np.int64], NDArray[np.int64]]:  # fmt: skip
        """(job, at_s, frm, to, pool) as numpy arrays."""
        return (
            np.frombuffer(self.job, dtype=np.int_).astype(np.int64),
            np.frombuffer(self.at_s, dtype=np.float64),
            np.frombuffer(self.frm, dtype=np.int8).astype(np.int64),
            np.frombuffer(self.to, dtype=np.int8).astype(np.int64),
            np.frombuffer(self.pool, dtype=np.int_).astype(np.int64),
        )


@runtime_checkable
class Migrator(Protocol):
    """A policy that may move running jobs; returns ``(job index, new pool, move seconds,
    move cost CNY)`` for each move."""

    replan_s: float

    def migrations(
        self, jobs: Sequence[Job], running: Sequence[Running], state: CapacityState
    ) -> list[tuple[int, int, float, float]]: ...


@dataclass
class Outcome:
    """Per-job result arrays (index = job position in the input list).

    ``pool``/``start_s``/``end_s`` describe a job's last run; runs it was migrated away from are
    in the ``seg_*`` arrays.
    """

    pool: NDArray[np.int64]  # -1: rejected (no feasible pool)
    release_s: NDArray[np.float64]
    first_start_s: NDArray[np.float64]  # nan: never started
    start_s: NDArray[np.float64]  # start of the last run
    end_s: NDArray[np.float64]  # nan: not finished
    latency_ms: NDArray[np.float64]
    transfer_cost_cny: NDArray[np.float64]  # input data + checkpoints moved
    migrations: NDArray[np.int64]
    seg_job: NDArray[np.int64]
    seg_pool: NDArray[np.int64]
    seg_start_s: NDArray[np.float64]
    seg_end_s: NDArray[np.float64]
    decide_seconds: float
    decisions: int
    decision_s: NDArray[np.float64]  # wall time of each placement decision (nan: none made)
    horizon_s: float
    events: EventLog

    @classmethod
    def of_lists(
        cls,
        pool: list[int],
        release_s: list[float],
        first_start_s: list[float],
        start_s: list[float],
        end_s: list[float],
        latency_ms: list[float],
        transfer_cost_cny: list[float],
        migrations: list[int],
        seg: list[tuple[int, int, float, float]],
        decide_seconds: float,
        decisions: int,
        decision_s: list[float],
        horizon_s: float,
        events: EventLog,
    ) -> Outcome:
        """The outcome of a host's per-job lists; ``seg``: (job, pool, start, end) of the runs
        a job left (migrated or preempted)."""
        seg_arr = np.array(seg, dtype=np.float64).reshape(-1, 4)
        f64 = np.float64
        return cls(
            pool=np.array(pool, dtype=np.int64),
            release_s=np.array(release_s, dtype=f64),
            first_start_s=np.array(first_start_s, dtype=f64),
            start_s=np.array(start_s, dtype=f64),
            end_s=np.array(end_s, dtype=f64),
            latency_ms=np.array(latency_ms, dtype=f64),
            transfer_cost_cny=np.array(transfer_cost_cny, dtype=f64),
            migrations=np.array(migrations, dtype=np.int64),
            seg_job=seg_arr[:, 0].astype(np.int64),
            seg_pool=seg_arr[:, 1].astype(np.int64),
            seg_start_s=seg_arr[:, 2],
            seg_end_s=seg_arr[:, 3],
            decide_seconds=decide_seconds,
            decisions=decisions,
            decision_s=np.array(decision_s, dtype=f64),
            horizon_s=horizon_s,
            events=events,
        )


def simulate(
    net: Network,
    signals: Signals,
    jobs: Sequence[Job],
    policy: Policy,
    progress: Callable[[int], None] | None = None,
    market: Market = NO_MARKET,
) -> Outcome:
    """Run ``jobs`` (in submit order) through the network, each placed by ``policy`` through
    the placement seam with ``market`` (offers), and return what happened to each.

    ValueError: ``policy`` plans deferrals beyond the scenario's deferral limit."""
    n = len(jobs)
    rule = net.scenario.deferral
    planned = getattr(policy, "max_defer_h", None)
    if planned is not None and planned > rule.max_defer_h:
        raise ValueError(
            f"policy {policy.name} defers up to {planned} h, beyond the scenario's deferral "
            f"limit max_defer_h={rule.max_defer_h} h"
        )
    max_defer_s = rule.max_defer_s
    nan = float("nan")
    limit = [nan] * n  # latest first start
    state = CapacityState.empty(net, signals)
    horizon = signals.horizon_s
    # per-job state as Python lists: the loop touches single elements, which lists do fastest
    pool = [-1] * n
    release = [nan] * n
    first_start = [nan] * n
    start = [nan] * n
    end = [nan] * n
    latency = [nan] * n
    transfer_cny = [0.0] * n
    runtime = [0.0] * n
    remaining = [j.work_scu for j in jobs]
    epoch = [0] * n
    moves = [0] * n
    units = [j.demand_units for j in jobs]
    queues: list[deque[int]] = [deque() for _ in range(net.n_pools)]
    running: dict[int, None] = {}  # insertion-ordered set of running jobs
    movable: dict[int, None] = {}  # the running jobs that can checkpoint (migration candidates)
    checkpointable = [j.checkpointable for j in jobs]
    seg: list[tuple[int, int, float, float]] = []
    free = state.free
    backlog = state.backlog_unit_s
    # Two heaps of (time, seq, kind, job, epoch), taken from as one (the smaller head first:
    # the same order as a single heap, seq being unique): releases, which wait only for
    # their data (seconds to minutes, so few at a time), and the rest (a finish for every
    # running job: many). A release then costs a push and a pop on a small heap.
    events: list[tuple[float, int, int, int, int]] = []
    releases: list[tuple[float, int, int, int, int]] = []
    seq = 0
    decide_s = 0.0
    decisions = 0
    decision_s = [nan] * n
    log = EventLog.empty()
    events2 = log.pair
    migrator = policy if isinstance(policy, Migrator) else None
    # a migrator that takes the running jobs as columns (SuanwangPolicy.migrations_of)
    migrate_of = getattr(migrator, "migrations_of", None)
    heappush, heappop = heapq.heappush, heapq.heappop
    perf = time.perf_counter

    # need[p]: no job among the first BACKFILL_SCAN + 1 of pool p's queue (the jobs a scan
    # that starts nothing reads) holds fewer units; 0: not known. With fewer units free, a
    # scan would start nothing and change nothing, so it is not made: on a busy pool most
    # finishes and arrivals would otherwise read the same 17 queued jobs again.
    need = [0] * net.n_pools
    # an event appended in place (EventLog.add without its call), where one is made per job
    job_at, at_at, frm_at, to_at, pool_at = (log.job.append, log.at_s.append, log.frm.append,
                                             log.to.append, log.pool.append)  # fmt: skip

    def begin(p: int, j: int, now: float) -> None:
        """Start queued job ``j`` on ``p`` (its units already taken from what is free)."""
        nonlocal seq
        backlog[p] -= units[j] * runtime[j]
        start[j] = now
        job_at(j)  # the event (j, now, SCHEDULED, RUNNING, p), appended in place
        at_at(now)
        frm_at(SCHEDULED)
        to_at(RUNNING)
        pool_at(p)
        if first_start[j] != first_start[j]:  # nan: first start
            first_start[j] = now
        running[j] = None
        if checkpointable[j]:
            movable[j] = None
        seq += 1
        heappush(events, (now + runtime[j], seq, FINISH, j, epoch[j]))

    def try_start(p: int, now: float) -> None:
        f = int(free[p])
        if f < need[p]:
            return  # nothing within the scan fits
        q = queues[p]
        n_q = len(q)
        scanned = 0
        i = 0
        low = NEED_NONE
        f0 = f
        while i < n_q and scanned <= BACKFILL_SCAN:
            j = q[i]
            u = units[j]
            if u <= f:
                del q[i]
                n_q -= 1
                f -= u
                begin(p, j, now)
            else:
                if u < low:
                    low = u
                i += 1
                scanned += 1
        if f != f0:
            free[p] = f
        # what is left of the scan's jobs are the first of the queue, all needing more
        need[p] = low

    def enqueue(p: int, j: int) -> None:
        q = queues[p]
        q.append(j)
        if len(q) <= BACKFILL_SCAN + 1 and units[j] < need[p]:
            need[p] = units[j]  # it is among the jobs a scan reads

    def replan(now: float) -> None:
        nonlocal seq
        assert migrator is not None
        if not movable:
            return
        state.now_s = now
        if migrate_of is not None:  # the running jobs as columns: no object for each
            js, m = list(movable), len(movable)
            at = np.fromiter(map(start.__getitem__, js), dtype=np.float64, count=m)
            took = np.fromiter(map(runtime.__getitem__, js), dtype=np.float64, count=m)
            left = np.fromiter(map(remaining.__getitem__, js), dtype=np.float64, count=m)
            moving = migrate_of(
                jobs,
                np.array(js, dtype=np.int64),
                np.fromiter(map(pool.__getitem__, js), dtype=np.int64, count=m),
                left * np.maximum(0.0, 1.0 - (now - at) / took),  # as below, for each
                state,
            )
        else:
            view = [
                Running(j, pool[j], start[j],
                        remaining[j] * max(0.0, 1.0 - (now - start[j]) / runtime[j]))
                for j in movable
            ]  # fmt: skip
            moving = migrator.migrations(jobs, view, state)
        touched: set[int] = set()
        for j, q, move_s, move_cny in moving:
            p = pool[j]
            seg.append((j, p, start[j], now))
            events2(j, now, RUNNING, MIGRATING, SCHEDULED, p, q)
            remaining[j] *= max(0.0, 1.0 - (now - start[j]) / runtime[j])
            del running[j]
            del movable[j]
            free[p] += units[j]
            touched.add(p)
            epoch[j] += 1
            moves[j] += 1
            info = net.job_class(jobs[j])
            pos = int(np.flatnonzero(info.pools == q)[0])
            pool[j] = q
            latency[j] = float(info.latency_ms[pos])
            runtime[j] = run_seconds(remaining[j], units[j], float(info.speed[pos]))
            transfer_cny[j] += move_cny
            start[j] = nan
            seq += 1
            heappush(releases, (now + move_s, seq, RELEASE, j, epoch[j]))
        for p in sorted(touched):
            try_start(p, now)

    def process_until(t: float) -> None:
        nonlocal seq
        while True:
            if releases and (not events or releases[0] < events[0]):
                if releases[0][0] > t:
                    return
                now, _, kind, j, ep = heappop(releases)
            elif events and events[0][0] <= t:
                now, _, kind, j, ep = heappop(events)
            else:
                return
            if kind == REPLAN:
                assert migrator is not None
                replan(now)
                if now + migrator.replan_s < horizon and (running or events or releases):
                    seq += 1
                    heappush(events, (now + migrator.replan_s, seq, REPLAN, -1, 0))
                continue
            if ep != epoch[j]:
                continue  # fenced: the job moved since this event was scheduled
            p = pool[j]
            if kind == EXPIRE:
                if start[j] != start[j]:  # nan: still queued at its limit
                    queues[p].remove(j)
                    need[p] = 0  # a job further back may now be among the first
                    backlog[p] -= units[j] * runtime[j]
                    epoch[j] += 1
                    events2(j, now, SCHEDULED, PENDING, FAILED, p, p)
                    try_start(p, now)  # the jobs behind it
                continue
            if kind == FINISH:
                end[j] = now
                job_at(j)  # the event (j, now, RUNNING, SUCCEEDED, p)
                at_at(now)
                frm_at(RUNNING)
                to_at(SUCCEEDED)
                pool_at(p)
                free[p] += units[j]
                del running[j]
                movable.pop(j, None)
                if queues[p]:  # (nothing to start on an empty queue: no call)
                    try_start(p, now)
            elif now > limit[j] and first_start[j] != first_start[j]:
                events2(j, now, SCHEDULED, PENDING, FAILED, p, p)  # released past its limit
            elif not queues[p] and units[j] <= free[p]:
                # room and no queue: what the queue and its scan would do, without them
                backlog[p] += units[j] * runtime[j]
                free[p] -= units[j]
                begin(p, j, now)
                need[p] = NEED_NONE
            else:
                enqueue(p, j)
                backlog[p] += units[j] * runtime[j]
                try_start(p, now)
                if start[j] != start[j] and first_start[j] != first_start[j]:
                    seq += 1  # queued before its first start: it expires at its limit
                    heappush(events, (max(limit[j], now), seq, EXPIRE, j, epoch[j]))

    if migrator is not None and n:
        seq += 1
        heappush(events, (migrator.replan_s, seq, REPLAN, -1, 0))
    prepare = getattr(policy, "prepare", None) if market.prices is None else None
    job_class = net.job_class
    infos: list[JobClassInfo] = []
    base = 0
    for i, job in enumerate(jobs):
        t = job.submit_s
        if i - base == len(infos):  # the next jobs' feasible pools (and grids) at once
            base, ahead = i, jobs[i : i + LOOKAHEAD]
            infos = [job_class(j) for j in ahead]
            if prepare is not None:
                prepare(ahead, infos, state)
        if (events and events[0][0] <= t) or (releases and releases[0][0] <= t):
            process_until(min(t, horizon))
        if progress is not None and i % 10000 == 0:
            progress(i)
        info = infos[i - base]
        if not info.pool_list:
            events2(i, t, NO_STATE, PENDING, FAILED, -1, -1)
            continue
        state.now_s = t
        t0 = perf()
        placed = place(job, info, state, policy, market)
        dt = perf() - t0
        decision_s[i] = dt
        decide_s += dt
        decisions += 1
        pos = placed.pos
        pool[i] = placed.pool
        events2(i, t, NO_STATE, PENDING, SCHEDULED, -1, placed.pool)  # submitted, placed
        latency[i] = info.latency_list[pos]
        transfer_cny[i] = job.data_gb * info.transfer_cost_list[pos]
        runtime[i] = placed.runtime_s
        rel = placed.start_s
        release[i] = rel
        limit[i] = rel - placed.deferred_s + max_defer_s
        seq += 1
        heappush(releases, (rel, seq, RELEASE, i, 0))
    process_until(horizon)
    if progress is not None:
        progress(n)
    return Outcome.of_lists(
        pool, release, first_start, start, end, latency, transfer_cny, moves, seg,
        decide_s, decisions, decision_s, horizon, log,
    )  # fmt: skip
