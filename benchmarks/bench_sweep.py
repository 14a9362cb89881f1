"""Benchmark of `suanwang sweep`: 100 small runs on the built-in `china` scenario (2 edits x
1 workload of 500 jobs over half a day x 2 policies x 25 seeds), one after another in this
process, then on a local Ray runtime; both into fresh results directories.

Run: .venv/bin/python benchmarks/bench_sweep.py [SEEDS] [CPUS]
Prints one JSON line: wall times, runs/s, and whether both gave the same metrics (timings
aside). docs/benchmarks.md records the results.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from suanwang.sim.sweep.execute import run_sweep
from suanwang.sim.sweep.runs import grid
from suanwang.sim.sweep.spec import load_sweep

SWEEP = """\
scenario: china
start: 2025-07-01
drain_days: 2
edits:
  base: {{}}
  dear-power: {{tariff_scale: 1.5}}
workloads:
  small: {{jobs: 500, days: 0.5}}
policies: [nearest, suanwang]
seeds: {seeds}
"""
TIMINGS = ("decisions_per_s",)


def metrics(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r["metrics"].items() if k not in TIMINGS} for r in results]


def main(seeds: int = 25, cpus: int = 2) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(SWEEP.format(seeds=seeds))
        sweep = load_sweep(path)
        runs = grid(sweep)
        t = time.perf_counter()
        serial = run_sweep(runs, sweep.edited, Path(tmp) / "serial", serial=True)
        serial_s = time.perf_counter() - t
        t = time.perf_counter()
        on_ray = run_sweep(runs, sweep.edited, Path(tmp) / "ray", num_cpus=cpus)
        ray_s = time.perf_counter() - t  # the runtime's start and stop included
    same = metrics(serial.results) == metrics(on_ray.results)
    run_s = [r["seconds"] for r in serial.results]
    print(json.dumps({
        "bench": "sweep", "runs": len(runs), "cpus": cpus,
        "serial_s": round(serial_s, 1), "ray_s": round(ray_s, 1),
        "speedup": round(serial_s / ray_s, 2), "mean_run_s": round(sum(run_s) / len(run_s), 2),
        "failed": len(serial.failed) + len(on_ray.failed), "same_metrics": same,
    }))  # fmt: skip


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
