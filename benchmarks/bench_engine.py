"""Benchmarks of the placement engine and the simulator on the built-in `china` scenario.

Run: .venv/bin/python benchmarks/bench_engine.py [placement|simulate|bound|quality|all]

* placement: decisions/s and per-decision latency (p50, p99) of every policy, 50,000 jobs;
* simulate: 1,000,000 synthetic jobs over 7 days through `nearest` and `suanwang` (wall time);
* bound: the offline LP bound for 200,000 jobs over 7 days (wall time);
* quality: 200,000 jobs, 7 days, load 0.6: every policy and the bound.
Each prints one JSON line per measurement; docs/benchmarks.md records the results.
"""

from __future__ import annotations

import json
import math
import sys
import time
from datetime import UTC, datetime

import numpy as np

from suanwang.core.network import Network
from suanwang.scenarios.loader import load_scenario
from suanwang.scenarios.signals import build_signals
from suanwang.scheduling.bound import offline_bound
from suanwang.sim.engine import simulate
from suanwang.sim.metrics import measure
from suanwang.sim.run import POLICIES
from suanwang.sim.workload import WorkloadSpec, synthetic_jobs

START = datetime(2025, 7, 1, tzinfo=UTC)


def setup(jobs: int, days: float, load: float | None, seed: int = 7):  # type: ignore[no-untyped-def]
    sc = load_scenario("china")
    net = Network(sc)
    sig = build_signals(sc, START, math.ceil(days * 24 + 14 * 24), seed)
    t = time.perf_counter()
    work = synthetic_jobs(net, WorkloadSpec(jobs=jobs, days=days, seed=seed, load=load), START)
    gen_s = time.perf_counter() - t
    return net, sig, work, gen_s


def emit(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def placement() -> None:
    net, sig, jobs, _ = setup(50_000, 2, 0.6)
    for name, factory in POLICIES.items():
        out = simulate(net, sig, jobs, factory())
        d = out.decision_s[~np.isnan(out.decision_s)]
        emit(
            bench="placement",
            policy=name,
            decisions=int(d.size),
            decisions_per_s=round(d.size / d.sum()),
            p50_ms=round(float(np.percentile(d, 50)) * 1000, 4),
            p99_ms=round(float(np.percentile(d, 99)) * 1000, 4),
            max_ms=round(float(d.max()) * 1000, 3),
        )


def simulate_1m() -> None:
    net, sig, jobs, gen_s = setup(1_000_000, 7, None)
    emit(bench="generate", jobs=len(jobs), seconds=round(gen_s, 1))
    for name in ("nearest", "suanwang"):
        t = time.perf_counter()
        out = simulate(net, sig, jobs, POLICIES[name]())
        sim_s = time.perf_counter() - t
        m = measure(name, net, sig, jobs, out, 7).metrics
        emit(
            bench="simulate",
            policy=name,
            jobs=len(jobs),
            seconds=round(sim_s, 1),
            seconds_with_metrics=round(time.perf_counter() - t, 1),
            completed=m["completed"],
            rejected=m["rejected"],
            unfinished=m["unfinished"],
        )


def bound() -> None:
    net, sig, jobs, _ = setup(200_000, 7, 0.6)
    t = time.perf_counter()
    b = offline_bound(net, sig, jobs)
    emit(
        bench="bound",
        jobs=len(jobs),
        seconds=round(time.perf_counter() - t, 1),
        variables=b.variables,
        classes=b.classes,
        bucket_h=b.bucket_h,
        cost_cny=round(b.cost_cny),
    )


def quality() -> None:
    net, sig, jobs, _ = setup(200_000, 7, 0.6)
    b = offline_bound(net, sig, jobs)
    rows = {}
    for name, factory in POLICIES.items():
        out = simulate(net, sig, jobs, factory())
        m = measure(name, net, sig, jobs, out, 7).metrics
        rows[name] = m
        emit(
            bench="quality",
            policy=name,
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()},
        )
    s, n = rows["suanwang"], rows["nearest"]
    emit(
        bench="quality-summary",
        bound_cost_cny=round(b.cost_cny),
        suanwang_over_nearest=round(float(s["cost_cny"]) / float(n["cost_cny"]), 4),
        suanwang_over_bound=round(float(s["cost_cny"]) / b.cost_cny, 4),
        latency_violations=s["latency_violations"],
        deadline_misses_suanwang=s["deadline_misses"],
        deadline_misses_nearest=n["deadline_misses"],
    )


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    for key, fn in (
        ("placement", placement),
        ("bound", bound),
        ("quality", quality),
        ("simulate", simulate_1m),
    ):
        if which in (key, "all"):
            fn()
