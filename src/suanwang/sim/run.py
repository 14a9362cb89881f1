"""One simulation run: scenario + workload + policies (+ bound) -> results. Used by the CLI."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from suanwang.billing.market import paid, posted_prices, precision_indices, scu_prices
from suanwang.billing.offers import OfferBook
from suanwang.billing.pricing import PriceBook
from suanwang.core.cost import ScuPrices
from suanwang.core.governance import Governance
from suanwang.core.jobs import Job
from suanwang.core.network import Network
from suanwang.core.scenario import DeferralRule, Scenario
from suanwang.core.signals import Signals
from suanwang.scenarios.forecasts import (
    ForecastErrorLevel,
    forecast_error_level,
    with_forecast_errors,
)
from suanwang.scenarios.signals import build_signals
from suanwang.scheduling.bound import Bound, offline_bound
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import Cheapest, FirstFit, Greenest, Nearest, Policy
from suanwang.scheduling.state import Market
from suanwang.scheduling.tight_bound import TightBound, tight_bound
from suanwang.sim.engine import Outcome, simulate
from suanwang.sim.fairness import governance_metrics, sharing_series
from suanwang.sim.governed import simulate_governed
from suanwang.sim.metrics import PolicyReport, measure
from suanwang.sim.records import write_job_records
from suanwang.sim.traces import load_trace
from suanwang.sim.workload import WorkloadSpec, synthetic_jobs

POLICIES: dict[str, Callable[[], Policy]] = {
    "nearest": Nearest,
    "first-fit": FirstFit,
    "cheapest": Cheapest,
    "greenest": Greenest,
    "suanwang": SuanwangPolicy,
}


#: With forecasts that can be wrong, ``suanwang`` defers only for a gain above this many
#: sigmas of the day-ahead price error (docs/model.md, "Forecast errors").
DEFERRAL_GAIN_SIGMAS = 2.0


def make_policy(name: str, level: ForecastErrorLevel, rule: DeferralRule | None = None) -> Policy:
    """A fresh policy ``name``; a planner defers up to the scenario's deferral ``rule`` (its
    ``max_defer_h``); ``suanwang`` made robust to the forecasts' error ``level``:
    a deferral must gain more than :data:`DEFERRAL_GAIN_SIGMAS` x the level's day-ahead price
    sigma (a share of its objective). Level ``none``: exactly the policy as it always was."""
    policy = POLICIES[name]()
    rule = DeferralRule() if rule is None else rule
    if isinstance(policy, SuanwangPolicy) and policy.max_defer_h != rule.max_defer_h:
        policy = replace(policy, max_defer_h=rule.max_defer_h)
    if name == "suanwang" and isinstance(policy, SuanwangPolicy) and not level.is_none:
        policy.min_deferral_gain_share = DEFERRAL_GAIN_SIGMAS * level.price_sigma_24
    return policy


#: synthetic tenants' share of urgent (of non-deferrable) and preemptible (of deferrable) jobs
SYNTHETIC_CLASS_SHARE = 0.05


def policy_names(requested: Sequence[str]) -> list[str]:
    """Expand ``all`` and check names; raises ValueError naming an unknown policy."""
    names: list[str] = []
    for name in requested or ["all"]:
        if name == "all":
            names += [n for n in POLICIES if n not in names]
        elif name in POLICIES:
            if name not in names:
                names.append(name)
        else:
            raise ValueError(f"unknown policy {name!r} (choose from {', '.join(POLICIES)}, all)")
    return names


@dataclass
class Workload:
    jobs: list[Job]
    arrival_days: float
    source: str
    skipped: dict[str, int] = field(default_factory=dict)
    rows: int = 0


def make_workload(
    net: Network,
    *,
    trace: str,
    fmt: str,
    jobs: int | None,
    days: float,
    seed: int,
    start: datetime,
    load: float | None,
    tenants: int = 0,
    names: tuple[str, ...] = (),
) -> Workload:
    """The jobs to simulate: synthetic (``tenants`` > 0 shares them among that many tenants,
    named ``names`` or ``t01``, ``t02``, ..., of unequal demand, 5% of the work that cannot
    wait ``urgent`` and 5% of the deferrable work ``preemptible``), or read from a trace."""
    if trace == "synthetic":
        spec = WorkloadSpec(
            jobs=jobs if jobs is not None else 20000,
            days=days,
            seed=seed,
            load=load,
            tenants=tenants,
            names=names,
            urgent_share=SYNTHETIC_CLASS_SHARE if tenants else 0.0,
            preemptible_share=SYNTHETIC_CLASS_SHARE if tenants else 0.0,
        )
        return Workload(synthetic_jobs(net, spec, start), days, "synthetic", rows=spec.jobs)
    result = load_trace(Path(trace), fmt, net, seed=seed)
    selected = result.jobs[:jobs] if jobs is not None else result.jobs
    span_days = max((j.submit_s for j in selected), default=0.0) / 86400.0
    arrival_days = max(span_days, 1.0 / 24.0)
    skipped = dict(result.skipped)
    if jobs is not None and len(result.jobs) > jobs:
        skipped["beyond --jobs"] = len(result.jobs) - jobs
    return Workload(selected, arrival_days, str(trace), skipped, result.rows)


@dataclass
class SimulationResult:
    scenario: str
    workload: Workload
    signals: Signals
    network: Network
    reports: list[PolicyReport]
    bound: Bound | None
    bound_error: str | None
    seconds: dict[str, float]
    #: the non-preemptive bound (None: not computed, or not solved in its time limit)
    tight: TightBound | None = None
    tight_error: str | None = None
    offers: int | None = None  # offers in force (None: run without offers)
    forecast_error: str = "none"  # the forecast-error level policies planned on

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scenario": self.scenario,
            "jobs": len(self.workload.jobs),
            "policies": {r.name: {**r.metrics, **(r.governance or {})} for r in self.reports},
            "bound": None,
        }
        relaxed = None
        if self.bound is not None:
            relaxed = {
                "cost_cny": self.bound.cost_cny,
                "energy_kwh": self.bound.energy_kwh,
                "carbon_t": self.bound.carbon_t,
                "kind": "relaxed",
            }
        out["bound"] = relaxed
        # both are valid lower bounds: "bound" is the tighter (higher) one
        old = self.bound.cost_cny if self.bound is not None else -1.0
        if self.tight is not None and self.tight.cost_cny > old:
            out["bound"] = {
                "cost_cny": self.tight.cost_cny,
                "energy_kwh": self.tight.energy_kwh,
                "carbon_t": self.tight.carbon_t,
                "kind": "non-preemptive",
                "seconds": self.tight.solve_s,
            }
        out["bound_relaxed"] = relaxed
        if self.tight_error:
            out["bound_tight_error"] = self.tight_error
        out["workload"] = {
            "source": self.workload.source,
            "rows": self.workload.rows,
            "skipped": self.workload.skipped,
            "arrival_days": self.workload.arrival_days,
        }
        if self.bound_error:
            out["bound_error"] = self.bound_error
        if self.offers is not None:
            out["offers"] = self.offers
        if self.forecast_error != "none":
            out["forecast_error"] = self.forecast_error
        out["seconds"] = self.seconds
        return out


def _progress_callback(
    on_policy: Callable[[str, int, int], None], name: str, total: int
) -> Callable[[int], None]:
    def progress(done: int) -> None:
        on_policy(name, done, total)

    return progress


def run(
    scenario: Scenario,
    workload: Workload,
    *,
    start: datetime,
    policies: Sequence[str],
    seed: int,
    drain_days: float = 14.0,
    with_bound: bool = True,
    on_policy: Callable[[str, int, int], None] | None = None,
    offers: OfferBook | None = None,
    records_dir: Path | None = None,
    governance: Governance | None = None,
    fifo: bool = False,
    tight_limit_s: float = 120.0,
    tight: bool = False,
    forecast_error: str = "none",
) -> SimulationResult:
    """Simulate every policy on the same jobs and signals; compute the bound unless disabled.

    With ``offers``, the ``suanwang`` policy prices them into its placements and every
    policy's metrics add what consumers paid at offer prices (``paid_offer_cny``, where an
    offer had room) against posted prices (``paid_posted_cny``), each job at its start hour's
    price per SCU, and ``jobs_under_offers``. With ``records_dir``, every job's record is
    written to ``records_dir/jobs-<policy>.csv`` (:mod:`suanwang.sim.records`).

    With ``governance``, jobs wait in the platform's queue and run by its quotas, fair share,
    classes and preemption (:mod:`suanwang.sim.governed`), and each policy's metrics gain
    ``tenants``, ``fairness`` and ``classes`` (:mod:`suanwang.sim.fairness`); ``fifo`` adds,
    for each policy, ``<policy>/fifo``: the same engine without quotas, oldest first.

    ``forecast_error`` names a level of :data:`suanwang.scenarios.forecasts.LEVELS`: the
    policies plan on forecasts with that error (seeded by ``seed``; ``suanwang`` made robust to
    it by :func:`make_policy`), every run is billed on the realised signals, and the bounds see
    only the realised signals (ValueError: unknown level).
    """
    level = forecast_error_level(forecast_error)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    net = Network(scenario)
    hours = math.ceil(workload.arrival_days * 24 + drain_days * 24)
    signals = build_signals(scenario, start, hours, seed)
    signals = with_forecast_errors(signals, level, timezone=scenario.timezone, seed=seed)
    seconds["signals"] = time.perf_counter() - t
    prices = posted = None
    if offers is not None:
        book = PriceBook(scenario, offers=offers)
        prices = scu_prices(net, book, signals.start, signals.hours)
        posted = (
            prices.posted
            if prices is not None
            else posted_prices(net, book, signals.start, signals.hours)
        )
    reports: list[PolicyReport] = []
    runs: list[tuple[str, str, bool]] = [(name, name, True) for name in policies]
    if governance is not None and fifo:
        runs = [r for name in policies for r in ((name, name, True), (f"{name}/fifo", name, False))]
    for name, policy_name, governed in runs:
        policy = make_policy(policy_name, level, scenario.deferral)
        t = time.perf_counter()
        progress = None
        if on_policy is not None:
            progress = _progress_callback(on_policy, name, len(workload.jobs))
        gm = series = None
        if governance is None:
            outcome = simulate(net, signals, workload.jobs, policy, progress, Market(prices=prices))
        else:
            g = simulate_governed(
                net,
                signals,
                workload.jobs,
                policy,
                governance if governed else None,
                Market(prices=prices),
            )
            outcome = g.outcome
            series = sharing_series(net, workload.jobs, g, workload.arrival_days)
            gm = governance_metrics(net, workload.jobs, g, workload.arrival_days, series)
            if progress is not None:
                progress(len(workload.jobs))
        report = measure(name, net, signals, workload.jobs, outcome, workload.arrival_days)
        report.governance = gm
        report.sharing = series
        if posted is not None:
            report.metrics.update(_paid(prices, net, workload.jobs, outcome, posted))
        m = report.metrics
        if m["completed"] + m["rejected"] + m["expired"] + m["unfinished"] != len(workload.jobs):
            raise AssertionError(f"policy {name} lost jobs")  # conservation, never expected
        if records_dir is not None:
            records_dir.mkdir(parents=True, exist_ok=True)
            path = records_dir / f"jobs-{name.replace('/', '-')}.csv"  # suanwang/fifo
            write_job_records(path, net, signals.start, workload.jobs, outcome, report)
        reports.append(report)
        seconds[name] = time.perf_counter() - t
    bound = None
    bound_error = None
    tight_found: TightBound | None = None
    tight_error = None
    if with_bound:
        t = time.perf_counter()
        try:
            bound = offline_bound(net, signals, workload.jobs)
        except RuntimeError as exc:
            bound_error = str(exc)
        seconds["bound"] = time.perf_counter() - t
    if with_bound and tight:  # opt-in: slow at scale (docs/benchmarks.md)
        t = time.perf_counter()
        # the governed engine's platform queue does not hold jobs to the deferral rule (quotas
        # may keep them waiting longer), so under governance the bound's starts are not cut
        bound_net = net
        if governance is not None:
            free = replace(scenario.deferral, max_defer_h=signals.hours)
            bound_net = Network(replace(scenario, deferral=free))
        try:
            tight_found = tight_bound(bound_net, signals, workload.jobs, time_limit_s=tight_limit_s)
        except RuntimeError as exc:  # not solved in time: the relaxed bound stands
            tight_error = str(exc)
        seconds["bound_tight"] = time.perf_counter() - t
    return SimulationResult(
        scenario=scenario.name,
        workload=workload,
        signals=signals,
        network=net,
        reports=reports,
        bound=bound,
        bound_error=bound_error,
        seconds=seconds,
        tight=tight_found,
        tight_error=tight_error,
        offers=None if offers is None else len(offers.offers),
        forecast_error=level.name,
    )


def _paid(
    prices: ScuPrices | None,
    net: Network,
    jobs: Sequence[Job],
    outcome: Outcome,
    posted: np.ndarray,
) -> dict[str, float | int]:
    n = len(jobs)
    money = paid(
        prices,
        net,
        pools=outcome.pool,
        starts_s=outcome.first_start_s,
        ends_s=outcome.end_s,
        work_scu=np.fromiter((j.work_scu for j in jobs), dtype=np.float64, count=n),
        precision_index=precision_indices([j.precision for j in jobs]),
        units=np.fromiter((j.demand_units for j in jobs), dtype=np.float64, count=n),
        posted=posted,
    )
    return {
        "paid_offer_cny": money.offer_cny,
        "paid_posted_cny": money.posted_cny,
        "jobs_under_offers": money.jobs_under_offers,
    }
