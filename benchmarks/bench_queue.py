"""The platform's queue at scale (issue 14): 1,000 tenants, 100,000 pending jobs.

Run: .venv/bin/python benchmarks/bench_queue.py [--tenants 1000] [--jobs 100000] [--repeat 3]

The built-in `china` scenario; synthetic jobs (one day of arrivals, all pending at once)
shared among ``--tenants`` tenants of Zipf demand with equal quotas. A host as small as the
queue allows: the engine places each job (`suanwang` policy, through the one seam) on the
pools with room and the host takes its units. Measured per repeat, on a fresh queue:
round 1 (the network empty: every job that fits starts) and round 2 (nothing has ended: the
network is full for most jobs), wall time and placement decisions per second. Prints one JSON
line per repeat and one of medians; docs/benchmarks.md records them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from suanwang.core.governance import equal_shares
from suanwang.core.jobs import Job
from suanwang.core.network import JobClassInfo, Network
from suanwang.scenarios.loader import load_scenario
from suanwang.scenarios.signals import build_signals
from suanwang.scheduling.fairshare import Run, Shares
from suanwang.scheduling.placement import place
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.queue import (
    PlatformQueue,
    Queued,
    capacity_scu_per_h,
    pool_families,
    pool_hubs,
    where_of,
)
from suanwang.scheduling.state import CapacityState
from suanwang.sim.workload import WorkloadSpec, synthetic_jobs, tenant_names

START = datetime(2025, 7, 1, tzinfo=UTC)


class Host:
    def __init__(self, state: CapacityState, policy: SuanwangPolicy) -> None:
        self.state, self.policy, self.decisions = state, policy, 0

    @property
    def free(self) -> NDArray[np.int64]:
        return self.state.free

    def admit(self, q: Queued, info: JobClassInfo, tier_of: NDArray[np.int64]) -> bool:
        placed = place(q.job, info, self.state, self.policy)
        self.decisions += 1
        self.state.free[placed.pool] -= q.job.demand_units
        return True

    def runs_on(self, pools: set[int], now: float) -> Sequence[Run]:
        return ()

    def preempt(self, key: int, by: int) -> None:
        raise AssertionError("no runs offered")


def one(net: Network, jobs: list[Job], tenants: list[str], seed: int) -> dict[str, float]:
    sig = build_signals(net.scenario, START, 48, seed)
    gov = equal_shares(tenants, capacity_scu_per_h(net))
    families, hubs = pool_families(net), pool_hubs(net)
    now = max(j.submit_s for j in jobs)
    t = time.perf_counter()
    queue = PlatformQueue(Shares(gov, now_s=now), gov.rules)
    for i, job in enumerate(jobs):
        info = net.job_class(job)
        if info.pools.size:
            queue.push(Queued(i, job, info, where_of(job, info, families, hubs)))
    fill_s = time.perf_counter() - t
    state = CapacityState.empty(net, sig)
    state.now_s = now
    host = Host(state, SuanwangPolicy(max_defer_h=0))
    out: dict[str, float] = {"enqueue_s": round(fill_s, 3)}
    for r in (1, 2):
        before = host.decisions
        t = time.perf_counter()
        queue.round(now, host)
        dt = time.perf_counter() - t
        out[f"round{r}_s"] = round(dt, 3)
        out[f"round{r}_decisions"] = host.decisions - before
        out[f"round{r}_decisions_per_s"] = round((host.decisions - before) / dt, 1) if dt else 0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    sc = load_scenario("china")
    net = Network(sc)
    spec = WorkloadSpec(jobs=a.jobs, days=1.0, seed=7, tenants=a.tenants)
    jobs = synthetic_jobs(net, spec, START)
    rows = []
    for r in range(a.repeat):
        rows.append(one(net, jobs, tenant_names(a.tenants), seed=r))
        print(json.dumps({"repeat": r, **rows[-1]}), flush=True)
    med = {k: statistics.median(float(x[k]) for x in rows) for k in rows[0]}
    print(json.dumps({"median": med, "tenants": a.tenants, "jobs": a.jobs,
                      "target": "round <= 1 s, >= 2,000 decisions/s"}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
