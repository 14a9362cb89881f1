"""Discrete-event simulation of the network on the placement engine.

The event loop is a heap of ``(time, seq, kind, job, epoch)``; the sequence number makes runs
deterministic. Jobs arrive in submit order and are placed by the policy at once; a job is
released to its pool's FIFO queue when its data has arrived and its planned start has come,
starts when the pool has room for all its units (gang), and finishes after its runtime on that
chip. Queues are FIFO with a bounded backfill scan.

Policies that implement :class:`Migrator` are asked every ``replan_s`` of simulated time which
running checkpointable jobs to move. A move checkpoints the job, frees its units, sends the
checkpoint to the new center (time and money as in the cost model) and releases the remaining
work there; the finish event of the old run is fenced off by an epoch counter, so a job
completes exactly once.

The run ends when every job has finished or the signal horizon is reached; what has not
finished by then is ``unfinished``.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from suanwang.core.jobs import Job
from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scheduling.policies import Policy
from suanwang.scheduling.state import CapacityState, Running

RELEASE, FINISH, REPLAN = 0, 1, 2
BACKFILL_SCAN = 16


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


def simulate(
    net: Network,
    signals: Signals,
    jobs: Sequence[Job],
    policy: Policy,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    n = len(jobs)
    state = CapacityState.empty(net, signals)
    horizon = signals.horizon_s
    pool = np.full(n, -1, dtype=np.int64)
    release = np.full(n, np.nan)
    first_start = np.full(n, np.nan)
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    latency = np.full(n, np.nan)
    transfer_cny = np.zeros(n)
    runtime = np.zeros(n)
    remaining = np.array([j.work_scu for j in jobs], dtype=np.float64)
    speed = np.zeros(n)
    epoch = np.zeros(n, dtype=np.int64)
    moves = np.zeros(n, dtype=np.int64)
    units = np.array([j.demand_units for j in jobs], dtype=np.int64)
    queues: list[deque[int]] = [deque() for _ in range(net.n_pools)]
    running: dict[int, None] = {}  # insertion-ordered set of running jobs
    seg: list[tuple[int, int, float, float]] = []
    free = state.free
    backlog = state.backlog_unit_s
    events: list[tuple[float, int, int, int, int]] = []
    seq = 0
    decide_s = 0.0
    decisions = 0
    decision_s = np.full(n, np.nan)
    migrator = policy if isinstance(policy, Migrator) else None

    def push(t: float, kind: int, j: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, j, int(epoch[j]) if j >= 0 else 0))

    def try_start(p: int, now: float) -> None:
        q = queues[p]
        scanned = 0
        i = 0
        while i < len(q) and scanned <= BACKFILL_SCAN:
            j = q[i]
            if units[j] <= free[p]:
                del q[i]
                free[p] -= units[j]
                backlog[p] -= units[j] * runtime[j]
                start[j] = now
                if np.isnan(first_start[j]):
                    first_start[j] = now
                running[j] = None
                push(now + runtime[j], FINISH, j)
            else:
                i += 1
                scanned += 1

    def replan(now: float) -> None:
        assert migrator is not None
        state.now_s = now
        view = [
            Running(
                j,
                int(pool[j]),
                float(start[j]),
                remaining[j] * max(0.0, 1.0 - (now - start[j]) / runtime[j]),
            )
            for j in running
            if jobs[j].checkpointable
        ]
        touched: set[int] = set()
        for j, q, move_s, move_cny in migrator.migrations(jobs, view, state):
            p = int(pool[j])
            seg.append((j, p, float(start[j]), now))
            remaining[j] *= max(0.0, 1.0 - (now - start[j]) / runtime[j])
            del running[j]
            free[p] += units[j]
            touched.add(p)
            epoch[j] += 1
            moves[j] += 1
            info = net.job_class(jobs[j])
            pos = int(np.flatnonzero(info.pools == q)[0])
            pool[j] = q
            speed[j] = info.speed[pos]
            latency[j] = info.latency_ms[pos]
            runtime[j] = remaining[j] / (units[j] * speed[j]) * 3600.0
            transfer_cny[j] += move_cny
            start[j] = np.nan
            push(now + move_s, RELEASE, j)
        for p in sorted(touched):
            try_start(p, now)

    def process_until(t: float) -> None:
        while events and events[0][0] <= t:
            now, _, kind, j, ep = heapq.heappop(events)
            if kind == REPLAN:
                replan(now)
                if now + migrator.replan_s < horizon and (running or events):  # type: ignore[union-attr]
                    push(now + migrator.replan_s, REPLAN, -1)  # type: ignore[union-attr]
                continue
            if ep != epoch[j]:
                continue  # fenced: the job moved since this event was scheduled
            p = int(pool[j])
            if kind == FINISH:
                end[j] = now
                free[p] += units[j]
                del running[j]
                try_start(p, now)
            else:
                queues[p].append(j)
                backlog[p] += units[j] * runtime[j]
                try_start(p, now)

    if migrator is not None and n:
        push(migrator.replan_s, REPLAN, -1)
    for i, job in enumerate(jobs):
        t = job.submit_s
        process_until(min(t, horizon))
        if progress is not None and i % 10000 == 0:
            progress(i)
        info = net.job_class(job)
        if info.pools.size == 0:
            continue
        state.now_s = t
        t0 = time.perf_counter()
        decision = policy.decide(job, info, state)
        dt = time.perf_counter() - t0
        decision_s[i] = dt
        decide_s += dt
        decisions += 1
        pos = decision.pos
        p = int(info.pools[pos])
        pool[i] = p
        speed[i] = info.speed[pos]
        latency[i] = info.latency_ms[pos]
        transfer_cny[i] = job.data_gb * info.transfer_cost_cny_per_gb[pos]
        runtime[i] = job.work_scu / (units[i] * speed[i]) * 3600.0
        rel = max(decision.start_s, t + job.data_gb * info.transfer_s_per_gb[pos])
        release[i] = rel
        push(rel, RELEASE, i)
    process_until(horizon)
    if progress is not None:
        progress(n)
    seg_arr = np.array(seg, dtype=np.float64).reshape(-1, 4)
    return Outcome(
        pool=pool,
        release_s=release,
        first_start_s=first_start,
        start_s=start,
        end_s=end,
        latency_ms=latency,
        transfer_cost_cny=transfer_cny,
        migrations=moves,
        seg_job=seg_arr[:, 0].astype(np.int64),
        seg_pool=seg_arr[:, 1].astype(np.int64),
        seg_start_s=seg_arr[:, 2],
        seg_end_s=seg_arr[:, 3],
        decide_seconds=decide_s,
        decisions=decisions,
        decision_s=decision_s,
        horizon_s=horizon,
    )
