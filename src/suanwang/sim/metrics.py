"""Metrics of a simulated run: money, energy, carbon, service quality, and hourly series."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from suanwang.core.cost import carbon_kg, energy_cost_cny, green_kwh
from suanwang.core.jobs import Job
from suanwang.core.lifecycle import STATE_CODE, JobState, run_events
from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.sim.engine import Outcome

if TYPE_CHECKING:
    from suanwang.sim.fairness import SharingSeries

Array = NDArray[np.float64]

#: The metrics that count jobs or events (whole numbers).
COUNT_KEYS = (
    "deadline_misses",
    "latency_violations",
    "completed",
    "rejected",
    "expired",
    "unfinished",
    "migrations",
)
METRIC_KEYS = (
    "cost_cny",
    "energy_cost_cny",
    "transfer_cost_cny",
    "expiry_cost_cny",
    "energy_kwh",
    "green_share",
    "carbon_t",
    "mean_wait_s",
    "p95_wait_s",
    "mean_jct_s",
    *COUNT_KEYS,
    "utilization",
    "decisions_per_s",
)


@dataclass
class JobRecords:
    """Per job (index = position in the input list), from the events: first start and end
    (nan: never), and what its runs used at the realised signals."""

    first_start_s: Array
    end_s: Array
    energy_kwh: Array
    energy_cost_cny: Array
    green_kwh: Array
    carbon_kg: Array
    #: expired under the deferral rule (placed, never started: refused at its limit)
    expired: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))


@dataclass
class PolicyReport:
    name: str
    metrics: dict[str, float | int]
    hourly_energy_kwh: Array  # (centers, hours) facility energy
    hourly_green_kwh: Array
    hourly_busy_units: Array  # (pools, hours) mean busy units per hour
    flows_scu: Array  # (places, centers) SCU placed from each origin to each center
    job_energy_kwh: Array = field(repr=False, default_factory=lambda: np.zeros(0))
    jobs: JobRecords | None = field(repr=False, default=None)
    #: a governed run's tenants, fairness and classes (suanwang.sim.fairness); None: ungoverned
    governance: dict[str, Any] | None = field(repr=False, default=None)
    #: the same run hour by hour, for the report (suanwang.sim.fairness.sharing_series)
    sharing: SharingSeries | None = field(repr=False, default=None)


def busy_by_hour(
    pools: NDArray[np.int64], start_s: Array, end_s: Array, weight: Array, n_pools: int, hours: int
) -> Array:
    """Sum of ``weight`` x overlap of [start, end) with each hour, per pool (hours clipped)."""
    out = np.zeros((n_pools, hours + 2))
    s = np.clip(start_s / 3600.0, 0.0, hours)
    e = np.clip(end_s / 3600.0, 0.0, hours)
    keep = e > s
    pools, s, e, w = pools[keep], s[keep], e[keep], weight[keep]
    hs = np.floor(s).astype(np.int64)
    he = np.floor(e).astype(np.int64)
    same = hs == he
    np.add.at(out, (pools[same], hs[same]), w[same] * (e[same] - s[same]))
    d = ~same
    p, hs, he, s, e, w = pools[d], hs[d], he[d], s[d], e[d], w[d]
    np.add.at(out, (p, hs), w * (hs + 1 - s))
    np.add.at(out, (p, he), w * (e - he))
    diff = np.zeros_like(out)
    np.add.at(diff, (p, hs + 1), w)
    np.add.at(diff, (p, he), -w)
    out += np.cumsum(diff, axis=1)
    return out[:, :hours]


def expiry_penalty_cny(net: Network, job: Job) -> float:
    """What an expired job costs (the scenario's :class:`DeferralRule`): its energy on its most
    efficient feasible pool (kWh) x ``expiry_cny_per_kwh``; 0 for a job no pool can run."""
    info = net.job_class(job)
    if info.pools.size == 0:
        return 0.0
    kwh_per_scu = float((info.facility_kw_per_unit / info.speed).min())
    return net.scenario.deferral.expiry_cny_per_kwh * job.work_scu * kwh_per_scu


def measure(
    name: str,
    net: Network,
    signals: Signals,
    jobs: Sequence[Job],
    outcome: Outcome,
    arrival_days: float,
) -> PolicyReport:
    n = len(jobs)
    o = outcome
    submit = np.fromiter((j.submit_s for j in jobs), dtype=np.float64, count=n)
    units = np.fromiter((j.demand_units for j in jobs), dtype=np.float64, count=n)
    work = np.fromiter((j.work_scu for j in jobs), dtype=np.float64, count=n)
    deadline = np.fromiter(
        (np.nan if j.deadline_s is None else j.deadline_s for j in jobs), dtype=np.float64, count=n
    )
    bound = np.fromiter(
        (np.inf if j.effective_latency_ms is None else j.effective_latency_ms for j in jobs),
        dtype=np.float64,
        count=n,
    )
    origin = np.fromiter((net.place_index[j.origin] for j in jobs), dtype=np.int64, count=n)

    # what happened, read from the lifecycle events the simulator wrote (as live ones are)
    ev_job, ev_at, ev_from, ev_to, ev_pool = o.events.columns()
    begin, finish, _, _ = run_events(ev_job, ev_from, ev_to)
    started_ev = ev_to == STATE_CODE[JobState.RUNNING]
    first_start = np.full(n, np.nan)
    np.fmin.at(first_start, ev_job[started_ev], ev_at[started_ev])
    end = np.full(n, np.nan)
    done_ev = ev_to == STATE_CODE[JobState.SUCCEEDED]
    end[ev_job[done_ev]] = ev_at[done_ev]
    failed_ev = ev_to == STATE_CODE[JobState.FAILED]

    placed = o.pool >= 0
    started = ~np.isnan(first_start)
    completed = ~np.isnan(end)
    # failed on no pool (no feasible one): rejected; failed on its pool, handed back at its
    # deferral limit (suanwang.core.scenario.DeferralRule): expired, charged the rule's penalty
    expired_ev = failed_ev & (ev_pool >= 0)
    expired_jobs = np.unique(ev_job[expired_ev])
    rejected = int(np.unique(ev_job[failed_ev & ~expired_ev]).size)
    expiry = float(sum(expiry_penalty_cny(net, jobs[j]) for j in expired_jobs.tolist()))
    n_completed = int(completed.sum())

    # runs: from each start to the job's next event (or the horizon: still running)
    run_job = ev_job[begin]
    run_pool = ev_pool[begin]
    t0 = ev_at[begin]
    t1 = np.where(finish >= 0, ev_at[np.maximum(finish, 0)], o.horizon_s)
    t1 = np.maximum(t1, t0)
    centers = net.pool_center[run_pool]
    kw = units[run_job] * net.pool_facility_kw[run_pool]
    energy_kwh_j = np.zeros(n)
    np.add.at(energy_kwh_j, run_job, kw * (t1 - t0) / 3600.0)
    per_run = {
        "energy_cost_cny": energy_cost_cny(signals, centers, kw, t0, t1),
        "green_kwh": green_kwh(signals, centers, kw, t0, t1),
        "carbon_kg": carbon_kg(signals, centers, kw, t0, t1),
    }
    per_job: dict[str, Array] = {"energy_kwh": energy_kwh_j}
    for key, values in per_run.items():
        per_job[key] = np.zeros(n)
        np.add.at(per_job[key], run_job, values)
    energy_cost = float(per_run["energy_cost_cny"].sum())
    green = float(per_run["green_kwh"].sum())
    carbon = float(per_run["carbon_kg"].sum()) / 1000.0
    released = placed & (np.nan_to_num(o.release_s, nan=np.inf) <= o.horizon_s)
    transfer = float(o.transfer_cost_cny[released].sum())
    energy = float(energy_kwh_j.sum())

    wait = (first_start - submit)[started]
    jct = (end - submit)[completed]
    has_deadline = ~np.isnan(deadline) & placed
    late = completed & has_deadline & ((end - submit) > deadline + 1e-6)
    missed = int(late.sum() + (has_deadline & ~completed).sum())
    violations = int((placed & (np.nan_to_num(o.latency_ms, nan=0.0) > bound + 1e-9)).sum())

    busy = busy_by_hour(run_pool, t0, t1, units[run_job], net.n_pools, signals.hours)
    hours_arr = max(int(np.ceil(arrival_days * 24)), 1)
    acc = ~net.pool_is_cpu
    cards = float(net.pool_capacity[acc].sum())
    util = float(busy[acc, :hours_arr].sum() / (cards * hours_arr)) if cards else 0.0
    kw_pool = net.pool_facility_kw
    hourly_e = np.zeros((net.n_centers, signals.hours))
    np.add.at(hourly_e, net.pool_center, busy * kw_pool[:, None])
    hourly_g = hourly_e * signals.green_fraction

    flows = np.zeros((len(net.place_ids), net.n_centers))
    np.add.at(flows, (origin[placed], net.pool_center[o.pool[placed]]), work[placed])

    metrics: dict[str, float | int] = {
        "cost_cny": energy_cost + transfer + expiry,
        "energy_cost_cny": energy_cost,
        "transfer_cost_cny": transfer,
        "expiry_cost_cny": expiry,
        "energy_kwh": energy,
        "green_share": green / energy if energy > 0 else 0.0,
        "carbon_t": carbon,
        "mean_wait_s": float(wait.mean()) if wait.size else 0.0,
        "p95_wait_s": float(np.percentile(wait, 95)) if wait.size else 0.0,
        "mean_jct_s": float(jct.mean()) if jct.size else 0.0,
        "deadline_misses": missed,
        "latency_violations": violations,
        "completed": n_completed,
        "rejected": rejected,
        "expired": int(expired_jobs.size),
        "unfinished": n - n_completed - rejected - int(expired_jobs.size),
        "migrations": int(o.migrations.sum()),
        "utilization": util,
        "decisions_per_s": o.decisions / o.decide_seconds if o.decide_seconds > 0 else 0.0,
    }
    return PolicyReport(
        name=name,
        metrics=metrics,
        hourly_energy_kwh=hourly_e,
        hourly_green_kwh=hourly_g,
        hourly_busy_units=busy,
        flows_scu=flows,
        job_energy_kwh=energy_kwh_j,
        jobs=JobRecords(
            first_start_s=first_start,
            end_s=end,
            energy_kwh=energy_kwh_j,
            energy_cost_cny=per_job["energy_cost_cny"],
            green_kwh=per_job["green_kwh"],
            carbon_kg=per_job["carbon_kg"],
            expired=np.isin(np.arange(n), expired_jobs),
        ),
    )
