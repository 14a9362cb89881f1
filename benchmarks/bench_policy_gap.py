"""Where ``suanwang`` loses against the tight bound: policy variants on one workload.

    python benchmarks/bench_policy_gap.py --seed 1 --jobs 20000 --days 7 --load 0.6 \
        --variant base --variant carbon_price_cny_per_kg=0

Each variant is ``base``, ``suspend`` or ``field=value[,field=value]`` of
:class:`SuanwangPolicy`; prints cost, energy, transfer, deadline misses, latency violations,
unfinished and cost / tight bound (``--nearest``: the ``nearest`` policy too), and the jobs
that expired under the scenario's deferral rule (``--max-defer-h`` sets its limit; policies
and bound obey it). The tight bound is cached in /tmp per workload and limit (a minute at
20,000 jobs); ``--bound-cny`` gives it instead (e.g. from docs/benchmarks.md at 200,000
jobs); ``--scenario DIR`` runs on a scenario directory (e.g. measured signals:
``grid_scenario.py``) instead of the built-in ``china``; ``--plan`` prints the LP's choice;
``--breakdown`` prints kWh and energy CNY by precision and chip model for the LP's plan and
each policy (a job's energy counted on its last pool).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from suanwang.core.jobs import Job
from suanwang.core.network import PRECISION_INDEX, PRECISIONS, Network
from suanwang.core.signals import Signals
from suanwang.scenarios.loader import load_scenario
from suanwang.scenarios.signals import build_signals
from suanwang.scheduling.planner import SUSPEND_WINDOW_H, SuanwangPolicy
from suanwang.scheduling.policies import Nearest
from suanwang.scheduling.state import Market
from suanwang.scheduling.tight_bound import tight_bound
from suanwang.sim.engine import simulate
from suanwang.sim.metrics import measure
from suanwang.sim.run import make_workload


def variant(spec: str, max_defer_h: int) -> SuanwangPolicy:
    """The policy as ``simulate`` makes it, then ``spec``'s edits (``suspend``: suspending
    checkpointable work through price peaks, ``suspend_window_h`` =
    :data:`~suanwang.scheduling.planner.SUSPEND_WINDOW_H`)."""
    policy = SuanwangPolicy(max_defer_h=max_defer_h)
    if spec == "suspend":
        spec = f"suspend_window_h={SUSPEND_WINDOW_H}"
    if spec != "base":
        for part in spec.split(","):
            key, value = part.split("=")
            kind = type(getattr(policy, key))
            setattr(policy, key, kind(float(value)) if kind is int else kind(value))
        policy.__post_init__()
    return policy


def by_model(who: str, net: Network, prec: np.ndarray, pool: np.ndarray, kwh: np.ndarray,
             cny: np.ndarray) -> None:  # fmt: skip
    """kWh, CNY and CNY per kWh by (precision, chip model) of ``pool``."""
    models = np.array(net.pool_model)[pool.astype(np.int64)]
    for i, name in enumerate(PRECISIONS):
        for m in sorted(set(models[prec == i].tolist())):
            sel = (prec == i) & (models == m)
            k, c = float(kwh[sel].sum()), float(cny[sel].sum())
            if k > 0:
                print(f"{who} {name.value} {m}: {k:.0f} kWh, {c:.0f} CNY, {c / k:.3f} CNY/kWh")


def show_plan(net: Network, signals: Signals, jobs: list[Job], breakdown: bool) -> None:
    """What the LP chose: kWh and CNY by precision (whole jobs, checkpointable work) and how
    long after its class's first arrival whole-job energy starts (kWh-weighted shares);
    ``breakdown``: by precision and chip model too."""
    plan: dict[str, np.ndarray] = {}
    tight_bound(net, signals, jobs, time_limit_s=600, plan=plan)
    if breakdown:
        by_model("LP whole", net, plan["precision"], plan["pool"], plan["kwh"], plan["cny"])
        by_model("LP fluid", net, plan["fluid_precision"], plan["fluid_pool"],
                 plan["fluid_kwh"], plan["fluid_cny"])  # fmt: skip
    for part, prefix in (("whole", ""), ("fluid", "fluid_")):
        prec = plan[f"{prefix}precision"].astype(np.int64)
        for i, name in enumerate(PRECISIONS):
            kwh = float(plan[f"{prefix}kwh"][prec == i].sum())
            cny = float(plan[f"{prefix}cny"][prec == i].sum())
            if kwh > 0:
                print(f"LP {part} {name.value}: {kwh:.0f} kWh, {cny:.0f} CNY")
    delay = plan["start_h"] - plan["arrival_h"]
    kwh = plan["kwh"]
    for h in (2, 12, 24, 72):
        share = kwh[delay > h].sum() / kwh.sum()
        print(f"LP whole-job kWh starting > {h} h after arrival: {share:.0%}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--load", type=float, default=0.6)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--nearest", action="store_true")
    ap.add_argument("--bound-cny", type=float, help="the tight bound if known (not computed)")
    ap.add_argument("--plan", action="store_true", help="the LP's choice: kWh by precision, delay")
    ap.add_argument("--breakdown", action="store_true", help="kWh and CNY by precision, chip")
    ap.add_argument("--max-defer-h", type=int, help="the scenario's deferral limit (hours)")
    ap.add_argument("--scenario", default="china", help="a built-in or a scenario directory")
    a = ap.parse_args()
    scenario = load_scenario(a.scenario)
    if a.max_defer_h is not None:
        scenario = replace(scenario, deferral=replace(scenario.deferral, max_defer_h=a.max_defer_h))
    rule = scenario.deferral
    start = datetime(2025, 7, 1, tzinfo=ZoneInfo(scenario.timezone))  # as `simulate` has it
    net = Network(scenario)
    w = make_workload(net, trace="synthetic", fmt="suanwang", jobs=a.jobs, days=a.days,
                      seed=a.seed, start=start, load=a.load)  # fmt: skip
    signals = build_signals(scenario, start, int(a.days * 24 + 14 * 24), a.seed)
    where = "" if a.scenario == "china" else "-" + Path(a.scenario).resolve().name
    cache = Path(
        f"/tmp/tight{where}-{a.jobs}-{a.days}-{a.load}-{a.seed}-defer{rule.max_defer_h}"
        f"-{rule.expiry_cny_per_kwh:g}.json"
    )
    if a.bound_cny is not None:
        cache.write_text(json.dumps({"cost": a.bound_cny}))
    if not cache.exists():
        tb = tight_bound(net, signals, w.jobs, time_limit_s=600)
        found = {"cost": tb.cost_cny, "energy": tb.energy_cost_cny,
                 "transfer": tb.transfer_cost_cny, "kwh": tb.energy_kwh,
                 "expiry": tb.expiry_cost_cny, "expired_jobs": tb.expired_jobs,
                 "solve_s": tb.solve_s}  # fmt: skip
        cache.write_text(json.dumps(found))
    tb = json.loads(cache.read_text())
    print(f"tight bound {tb}")
    if a.plan or a.breakdown:
        show_plan(net, signals, w.jobs, a.breakdown)
    runs = [("nearest", Nearest())] if a.nearest else []
    runs += [(v, variant(v, rule.max_defer_h)) for v in a.variant or ["base"]]
    for name, policy in runs:
        t = time.perf_counter()
        out = simulate(net, signals, w.jobs, policy, None, Market())
        report = measure(name, net, signals, w.jobs, out, w.arrival_days)
        m = report.metrics
        if a.breakdown and report.jobs is not None:
            placed = out.pool >= 0
            prec = np.array([PRECISION_INDEX[j.precision] for j in w.jobs])[placed]
            rec = report.jobs
            by_model(name, net, prec, out.pool[placed], rec.energy_kwh[placed],
                     rec.energy_cost_cny[placed])  # fmt: skip
        cost = m["cost_cny"]
        keys = ("energy_cost_cny", "transfer_cost_cny", "energy_kwh", "deadline_misses",
                "latency_violations", "unfinished", "expired", "expiry_cost_cny")  # fmt: skip
        extra = " ".join(f"{k}={m.get(k)}" for k in keys)
        print(f"{name}: cost={cost:.0f} /tight={cost / tb['cost']:.3f} {extra} "
              f"({time.perf_counter() - t:.0f}s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
