"""Benchmarks of the placement engine and the simulator on the built-in `china` scenario.

Run: .venv/bin/python benchmarks/bench_engine.py [placement|simulate|bound|quality|all]
     [--jobs N] [--days D] [--policy NAME ...]   (simulate only; --help)

* placement: decisions/s and per-decision latency (p50, p99) of every policy, 50,000 jobs;
* simulate: 1,000,000 synthetic jobs over 7 days through `nearest` and `suanwang` (wall and
  CPU time, and a digest of every decision and event: equal digests, equal runs);
* bound: the offline LP bound for 200,000 jobs over 7 days (wall time);
* quality: 200,000 jobs, 7 days, load 0.6: every policy and the bound.
Each prints one JSON line per measurement; docs/benchmarks.md records the results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from datetime import UTC, datetime

import numpy as np

from suanwang.core.network import Network
from suanwang.scenarios.loader import load_scenario
from suanwang.scenarios.signals import build_signals
from suanwang.scheduling.bound import offline_bound
from suanwang.sim.engine import Outcome, simulate
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


def digest(out: Outcome) -> str:
    """A hash of what a run decided and what happened: every per-job array and every event
    (not the time decisions took)."""
    h = hashlib.sha256()
    for a in (out.pool, out.release_s, out.first_start_s, out.start_s, out.end_s,
              out.latency_ms, out.transfer_cost_cny, out.migrations, out.seg_job,
              out.seg_pool, out.seg_start_s, out.seg_end_s, *out.events.columns()):  # fmt: skip
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def simulate_1m(
    jobs_n: int = 1_000_000, policies: tuple[str, ...] = ("nearest", "suanwang"), days: float = 7
) -> None:
    net, sig, jobs, gen_s = setup(jobs_n, days, None)
    emit(bench="generate", jobs=len(jobs), seconds=round(gen_s, 1))
    for name in policies:
        t, cpu = time.perf_counter(), time.process_time()
        out = simulate(net, sig, jobs, POLICIES[name]())
        sim_s, cpu_s = time.perf_counter() - t, time.process_time() - cpu
        m = measure(name, net, sig, jobs, out, 7).metrics
        emit(
            bench="simulate",
            policy=name,
            jobs=len(jobs),
            seconds=round(sim_s, 1),
            cpu_seconds=round(cpu_s, 1),
            digest=digest(out),
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="?", default="all",
                        choices=("placement", "bound", "quality", "simulate", "all"))  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1_000_000, help="simulate: jobs (1,000,000)")
    parser.add_argument("--days", type=float, default=7.0, help="simulate: days of arrivals (7)")
    parser.add_argument("--policy", action="append", choices=sorted(POLICIES),
                        help="simulate: policy (repeatable; nearest and suanwang)")  # fmt: skip
    args = parser.parse_args()
    names = tuple(args.policy or ("nearest", "suanwang"))
    for key, fn in (
        ("placement", placement),
        ("bound", bound),
        ("quality", quality),
        ("simulate", lambda: simulate_1m(args.jobs, names, args.days)),
    ):
        if args.which in (key, "all"):
            fn()
