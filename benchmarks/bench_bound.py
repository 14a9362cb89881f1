"""The offline bounds' cost and solve time on the built-in `china` scenario (issue 17, item 1).

Run: .venv/bin/python benchmarks/bench_bound.py [--jobs 2000] [--days 1] [--load 0.6]
     [--seeds 1] [--repeat 1] [--src DIR ...] [--bounds relaxed,tight]

For each seed: synthetic jobs (``simulate``'s workload: ``--jobs`` over ``--days`` days of
arrivals at mean load ``--load``), the scenario's modelled signals over the arrivals plus 14
days of drain, then the relaxed bound (``scheduling.bound.offline_bound``) and the
non-preemptive one (``scheduling.tight_bound.tight_bound``), each timed (wall and this
process's CPU seconds). ``--src DIR`` (repeatable) runs the same in a child process with
``DIR`` first on ``PYTHONPATH`` (e.g. a worktree of an earlier commit), alternating with this
checkout's ``src`` ``--repeat`` times, so before and after share the machine's load.
``--bounds tight`` times only the non-preemptive bound. Each run also reports its process's
peak RSS (MB).
Prints one JSON line per run, then the medians per source.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

#: ``simulate``'s default start: midnight of 2025-07-01 in the scenario's time zone (it was
#: UTC midnight here, 8 hours earlier in ``china``: other signals and arrivals than
#: ``simulate``'s, so the bounds differed, e.g. 690,717 against 691,147 CNY at 20,000 jobs)
START_DAY = datetime(2025, 7, 1)
HERE = Path(__file__).resolve().parents[1] / "src"


def one(jobs: int, days: float, load: float, seed: int, bounds: str) -> dict[str, object]:
    """Both bounds on one seed's jobs (in this process, with whatever ``suanwang`` it has)."""
    import suanwang
    from suanwang.core.network import Network
    from suanwang.scenarios.loader import load_scenario
    from suanwang.scenarios.signals import build_signals
    from suanwang.scheduling.bound import offline_bound
    from suanwang.scheduling.tight_bound import tight_bound
    from suanwang.sim.run import make_workload

    sc = load_scenario("china")
    start = START_DAY.replace(tzinfo=ZoneInfo(sc.timezone))
    net = Network(sc)
    w = make_workload(net, trace="synthetic", fmt="suanwang", jobs=jobs, days=days, seed=seed,
                      start=start, load=load)  # fmt: skip
    signals = build_signals(sc, start, math.ceil(days * 24 + 14 * 24), seed)
    out: dict[str, object] = {"src": str(Path(suanwang.__file__).parents[1]), "seed": seed,
                              "jobs": jobs, "days": days, "load": load}  # fmt: skip
    for name, fn in (("relaxed", offline_bound), ("tight", tight_bound)):
        if name not in bounds.split(","):
            continue
        wall, cpu = time.perf_counter(), time.process_time()
        b = fn(net, signals, w.jobs, time_limit_s=3600.0)
        out[name] = {
            "cost_cny": round(b.cost_cny, 4),
            "wall_s": round(time.perf_counter() - wall, 2),
            "cpu_s": round(time.process_time() - cpu, 2),
            "variables": b.variables,
            "classes": b.classes,
            # jobs the bound let expire (an earlier commit has no expiry: 0)
            "expiry_cny": round(getattr(b, "expiry_cost_cny", 0.0), 4),
        }
    import resource

    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--load", type=float, default=0.6)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--src", action="append", default=[], help="another src dir to compare")
    ap.add_argument("--bounds", default="relaxed,tight", help="which bounds to time")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        for seed in range(1, a.seeds + 1):
            print(json.dumps(one(a.jobs, a.days, a.load, seed, a.bounds)), flush=True)
        return
    runs: list[dict[str, object]] = []
    srcs = [str(HERE), *a.src]
    for _ in range(a.repeat):
        for src in srcs:
            env = {**os.environ, "PYTHONPATH": src}
            cmd = [sys.executable, __file__, "--child", "--jobs", str(a.jobs), "--days",
                   str(a.days), "--load", str(a.load), "--seeds", str(a.seeds),
                   "--bounds", a.bounds]  # fmt: skip
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(json.dumps({"src": src, "error": done.stderr[-2000:]}), flush=True)
                continue
            for line in done.stdout.splitlines():
                print(line, flush=True)
                runs.append(json.loads(line))
    for src in srcs:
        mine = [r for r in runs if r["src"] == src]
        if not mine:
            continue
        summary: dict[str, object] = {"src": src, "runs": len(mine)}
        for name in ("relaxed", "tight"):
            parts = [r[name] for r in mine if name in r]
            if not parts:
                continue
            for key in ("cost_cny", "wall_s", "cpu_s"):
                summary[f"{name}_{key}_median"] = statistics.median(
                    float(p[key])
                    for p in parts  # type: ignore[index]
                )
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
