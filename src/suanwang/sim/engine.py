"""Discrete-event simulation of the network on the placement engine.

The event loop is a heap of ``(time, seq, kind, job)``; the sequence number makes runs
deterministic. Jobs arrive in submit order and are placed by the policy at once; a job is
released to its pool's FIFO queue when its data has arrived and its planned start has come,
starts when the pool has room for all its units (gang), and finishes after its runtime on that
chip. Queues are FIFO with a bounded backfill scan. The run ends when every job has finished or
the signal horizon is reached; what has not finished by then is ``unfinished``.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from suanwang.core.jobs import Job
from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scheduling.policies import Policy
from suanwang.scheduling.state import CapacityState

RELEASE, FINISH = 0, 1
BACKFILL_SCAN = 16


@dataclass
class Outcome:
    """Per-job result arrays (index = job position in the input list)."""

    pool: NDArray[np.int64]  # -1: rejected (no feasible pool)
    release_s: NDArray[np.float64]
    start_s: NDArray[np.float64]  # nan: never started
    end_s: NDArray[np.float64]  # nan: not finished
    latency_ms: NDArray[np.float64]
    transfer_cost_cny: NDArray[np.float64]
    decide_seconds: float
    decisions: int
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
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    latency = np.full(n, np.nan)
    transfer_cny = np.zeros(n)
    runtime = np.zeros(n)
    units = np.array([j.demand_units for j in jobs], dtype=np.int64)
    queues: list[deque[int]] = [deque() for _ in range(net.n_pools)]
    free = state.free
    backlog = state.backlog_unit_s
    events: list[tuple[float, int, int, int]] = []
    seq = 0
    decide_s = 0.0
    decisions = 0

    def try_start(p: int, now: float) -> None:
        nonlocal seq
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
                seq += 1
                heapq.heappush(events, (now + runtime[j], seq, FINISH, j))
            else:
                i += 1
                scanned += 1

    def process_until(t: float) -> None:
        while events and events[0][0] <= t:
            now, _, kind, j = heapq.heappop(events)
            p = int(pool[j])
            if kind == FINISH:
                end[j] = now
                free[p] += units[j]
                try_start(p, now)
            else:
                queues[p].append(j)
                backlog[p] += units[j] * runtime[j]
                try_start(p, now)

    for i, job in enumerate(jobs):
        t = job.submit_s
        process_until(t)
        if progress is not None and i % 10000 == 0:
            progress(i)
        info = net.job_class(job)
        if info.pools.size == 0:
            continue
        state.now_s = t
        t0 = time.perf_counter()
        decision = policy.decide(job, info, state)
        decide_s += time.perf_counter() - t0
        decisions += 1
        pos = decision.pos
        p = int(info.pools[pos])
        pool[i] = p
        latency[i] = info.latency_ms[pos]
        transfer_cny[i] = job.data_gb * info.transfer_cost_cny_per_gb[pos]
        runtime[i] = job.work_scu / (units[i] * info.speed[pos]) * 3600.0
        rel = max(decision.start_s, t + job.data_gb * info.transfer_s_per_gb[pos])
        release[i] = rel
        seq += 1
        heapq.heappush(events, (rel, seq, RELEASE, i))
    process_until(horizon)
    if progress is not None:
        progress(n)
    # jobs still running at the horizon are unfinished
    return Outcome(
        pool=pool,
        release_s=release,
        start_s=start,
        end_s=end,
        latency_ms=latency,
        transfer_cost_cny=transfer_cny,
        decide_seconds=decide_s,
        decisions=decisions,
        horizon_s=horizon,
    )
