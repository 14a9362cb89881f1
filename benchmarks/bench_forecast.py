"""What wrong forecasts cost each policy, on the built-in `china` scenario (issue 17, item 3).

Run: nice -n 10 .venv/bin/python benchmarks/bench_forecast.py [JOBS] [DAYS] [SEEDS] [LEVEL] [LOAD]
(defaults: 20,000 synthetic jobs over 2 days, seeds 0..4, level ``realistic``, the workload's
own load; LOAD scales durations to that mean load, as ``simulate --load``).

For each seed, on the same jobs and the same realised signals:

* with perfect forecasts (level ``none``: the simulator as before the forecast-error model, bit
  for bit): ``nearest``, ``cheapest``, ``greenest``, ``suanwang``, and ``suanwang+kσ`` — the
  robust deferral rule of LEVEL (:func:`suanwang.sim.run.make_policy`) without forecast errors,
  to tell what the rule does by itself;
* with forecasts at LEVEL: ``suanwang`` as ``simulate --forecast-error LEVEL`` runs it (robust)
  and ``suanwang-plain`` (the rule off). The baselines read no forecast: their runs at LEVEL are
  the same as at ``none`` (tests/sim/test_forecast_errors.py), so they are not run again.

Prints one JSON line per (seed, level, policy), then per policy the medians over the seeds of
cost, carbon, deadline misses and wait, and of the per-seed change against ``suanwang`` with
perfect forecasts.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
import time
from datetime import UTC, datetime

from suanwang.core.network import Network
from suanwang.scenarios.forecasts import forecast_error_level
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.sim import run as sim_run
from suanwang.sim.run import DEFERRAL_GAIN_SIGMAS, make_workload, run

START = datetime(2025, 7, 1, tzinfo=UTC)
KEYS = ("cost_cny", "carbon_t", "deadline_misses", "mean_wait_s", "latency_violations")


def emit(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def main(
    jobs: int = 20_000,
    days: float = 2.0,
    seeds: int = 5,
    level: str = "realistic",
    load: float | None = None,
) -> None:
    from suanwang.scenarios.loader import load_scenario

    sc = load_scenario("china")
    net = Network(sc)
    share = DEFERRAL_GAIN_SIGMAS * forecast_error_level(level).price_sigma_24
    # bench-only names: the robust rule without errors, and no rule with errors
    sim_run.POLICIES["suanwang+ksigma"] = functools.partial(
        SuanwangPolicy, min_deferral_gain_share=share
    )
    sim_run.POLICIES["suanwang-plain"] = SuanwangPolicy  # make_policy sets the rule on suanwang
    plan = {
        "none": ["nearest", "cheapest", "greenest", "suanwang", "suanwang+ksigma"],
        level: ["suanwang", "suanwang-plain"],
    }
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    for seed in range(seeds):
        w = make_workload(net, trace="synthetic", fmt="suanwang", jobs=jobs, days=days,
                          seed=seed, start=START, load=load)  # fmt: skip
        for lv, names in plan.items():
            t = time.perf_counter()
            res = run(sc, w, start=START, policies=names, seed=seed, with_bound=False,
                      forecast_error=lv)  # fmt: skip
            for r in res.reports:
                m = {k: float(r.metrics[k]) for k in KEYS}
                rows.setdefault((r.name, lv), []).append(m)
                emit(seed=seed, level=lv, policy=r.name, **m)
            emit(seed=seed, level=lv, seconds=round(time.perf_counter() - t, 1))
    ref = rows[("suanwang", "none")]
    for (name, lv), ms in rows.items():
        summary: dict[str, object] = {"policy": name, "level": lv, "seeds": len(ms)}
        for k in KEYS:
            summary[k] = statistics.median(m[k] for m in ms)
        if name.startswith("suanwang"):
            for k in ("cost_cny", "carbon_t", "deadline_misses"):
                rel = [(m[k] - r[k]) / max(r[k], 1e-9) for m, r in zip(ms, ref, strict=True)]
                summary[f"{k}_vs_perfect_median"] = round(statistics.median(rel), 4)
                summary[f"{k}_vs_perfect_max"] = round(max(rel), 4)
        emit(summary=True, **summary)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(
        int(a[0]) if len(a) > 0 else 20_000,
        float(a[1]) if len(a) > 1 else 2.0,
        int(a[2]) if len(a) > 2 else 5,
        a[3] if len(a) > 3 else "realistic",
        float(a[4]) if len(a) > 4 else None,
    )
