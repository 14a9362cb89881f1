"""Seeded synthetic workloads calibrated to the public picture of China's compute demand.

* Origins: provinces drawn by ``demand_weight`` (GDP share proxy, so most demand is East);
  40% of jobs come from a named city of that province where the scenario has one.
* Arrivals: uniform over days, local hour drawn from a diurnal profile (peak 10:00-17:00, trough
  03:00-06:00 China time) like the submit curves of public GPU cluster traces (Philly, Helios).
* Sizes: accelerator counts 1-64 with most jobs on one card and a heavy tail; CPU jobs 8-256
  cores.
* Durations: lognormal per kind (sigma 1.3, capped at 72 h on the reference chip). With ``load``
  set, durations are scaled by one factor (cards and CPU cores separately, each job capped at
  96 h) so that the work offered equals ``load`` x the scenario's capacity over the ``days`` of
  arrivals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from suanwang.core.hardware import Precision
from suanwang.core.jobs import ANY_ACCELERATOR, Job, JobKind, Priority
from suanwang.core.network import Network

DEFAULT_MIX: dict[JobKind, float] = {
    JobKind.INFERENCE: 0.28,
    JobKind.INTERACTIVE: 0.10,
    JobKind.TRAINING: 0.12,
    JobKind.FINETUNE: 0.15,
    JobKind.HPC: 0.10,
    JobKind.RENDER: 0.08,
    JobKind.ANALYTICS: 0.12,
    JobKind.BACKUP: 0.05,
}

# local-hour weights of arrivals (0..23)
DIURNAL = np.array(
    [0.45, 0.35, 0.3, 0.25, 0.25, 0.3, 0.45, 0.7, 0.95, 1.2, 1.35, 1.4,
     1.25, 1.3, 1.45, 1.45, 1.4, 1.3, 1.15, 1.1, 1.05, 0.95, 0.8, 0.6]
)  # fmt: skip

_MEDIAN_H = {
    JobKind.INFERENCE: 2.0,
    JobKind.INTERACTIVE: 1.0,
    JobKind.TRAINING: 10.0,
    JobKind.FINETUNE: 3.0,
    JobKind.HPC: 4.0,
    JobKind.RENDER: 1.5,
    JobKind.ANALYTICS: 0.75,
    JobKind.BACKUP: 1.0,
}
_DATA_MEDIAN_GB = {
    JobKind.INFERENCE: 0.5,
    JobKind.INTERACTIVE: 1.0,
    JobKind.TRAINING: 80.0,
    JobKind.FINETUNE: 20.0,
    JobKind.HPC: 20.0,
    JobKind.RENDER: 15.0,
    JobKind.ANALYTICS: 60.0,
    JobKind.BACKUP: 300.0,
}
MAX_DURATION_H = 96.0  # longest job on the reference chip after load scaling
_CHECKPOINTABLE = {
    JobKind.TRAINING: 0.8,
    JobKind.FINETUNE: 0.6,
    JobKind.HPC: 0.5,
    JobKind.RENDER: 0.3,
}
_GPU_SIZES = np.array([1, 2, 4, 8, 16, 32, 64])
_GPU_P = {
    "small": np.array([0.70, 0.12, 0.10, 0.08, 0.0, 0.0, 0.0]),
    "large": np.array([0.35, 0.12, 0.15, 0.25, 0.08, 0.04, 0.01]),
}
_CPU_SIZES = np.array([8, 16, 32, 64, 128, 256])
_CPU_P = np.array([0.25, 0.25, 0.2, 0.15, 0.1, 0.05])
# software stacks a job can run on (AI work); most code is CUDA-only, a growing share ports.
_AI_STACKS: list[tuple[frozenset[str], float]] = [
    (frozenset({"cuda"}), 0.45),
    (frozenset({"cuda", "cann"}), 0.25),
    (frozenset({"cann"}), 0.12),
    (frozenset({"cuda", "dtk"}), 0.08),
    (frozenset({"cuda", "cann", "dtk", "neuware"}), 0.10),
]
_HPC_STACKS: list[tuple[frozenset[str], float]] = [
    (frozenset({"dtk"}), 0.35),
    (frozenset({"cuda", "dtk"}), 0.45),
    (frozenset({"cuda"}), 0.20),
]


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    jobs: int
    days: float
    seed: int = 0
    load: float | None = None
    mix: dict[JobKind, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    deadline_share: float = 0.3
    #: tenants (0: all work is the default tenant's): job i goes to tenant k with probability
    #: proportional to 1 / k**tenant_skew (unequal demand); ``urgent_share`` of the jobs that
    #: may not wait and ``preemptible_share`` of the deferrable ones get those classes
    tenants: int = 0
    #: the tenants' names (default ``t01``, ``t02``, ...: :func:`tenant_names`)
    names: tuple[str, ...] = ()
    tenant_skew: float = 1.0
    urgent_share: float = 0.0
    preemptible_share: float = 0.0


def _pick(
    rng: np.random.Generator, options: list[tuple[frozenset[str], float]], n: int
) -> list[frozenset[str]]:
    p = np.array([w for _, w in options])
    idx = rng.choice(len(options), size=n, p=p / p.sum())
    return [options[i][0] for i in idx]


def _scale_to(dur_h: np.ndarray, size: np.ndarray, target: float) -> np.ndarray:
    """Scale durations by one factor, capped at MAX_DURATION_H, so sum(size x dur) == target.

    The capped sum is monotone in the factor, so bisection finds it; if even the cap cannot
    reach the target, every job runs the cap.
    """

    def offered(f: float) -> float:
        return float((size * np.minimum(dur_h * f, MAX_DURATION_H)).sum())

    lo, hi = 0.0, 1.0
    while offered(hi) < target and hi < 1e6:
        hi *= 2.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if offered(mid) < target else (lo, mid)
    out: np.ndarray = np.minimum(dur_h * hi, MAX_DURATION_H)
    return out


def _arrivals(rng: np.random.Generator, n: int, days: float, local_start_h: float) -> np.ndarray:
    """``n`` arrival times (s from start) within ``days``: day uniform, local hour diurnal.

    Draws that fall past the end (a fractional last day) are drawn again, so the diurnal shape
    holds on every day and nothing piles up at the end.
    """
    out = np.empty(n)
    todo = np.arange(n)
    end = days * 86400.0
    p = DIURNAL / DIURNAL.sum()
    while todo.size:
        m = todo.size
        day = rng.integers(0, max(int(np.ceil(days)), 1), size=m)
        hour = rng.choice(24, size=m, p=p)
        t = day * 86400.0 + ((hour - local_start_h) % 24) * 3600.0 + rng.random(m) * 3600.0
        ok = t < end
        out[todo[ok]] = t[ok]
        todo = todo[~ok]
    return out


def origin_sampler(net: Network) -> tuple[list[str], np.ndarray]:
    """Places and their probabilities: province demand weight, 40% moved to its cities."""
    sc = net.scenario
    places: list[str] = []
    weights: list[float] = []
    total = sum(p.demand_weight for p in sc.provinces) or 1.0
    for p in sc.provinces:
        w = p.demand_weight / total
        cities = [c.id for c in sc.cities if c.province == p.id]
        share = 0.4 if cities else 0.0
        places.append(p.id)
        weights.append(w * (1.0 - share))
        for c in cities:
            places.append(c)
            weights.append(w * share / len(cities))
    arr = np.array(weights)
    return places, arr / arr.sum()


def synthetic_jobs(net: Network, spec: WorkloadSpec, start: datetime) -> list[Job]:
    """A reproducible workload of ``spec.jobs`` jobs arriving over ``spec.days`` days."""
    if spec.jobs < 0 or spec.days <= 0:
        raise ValueError("jobs must be >= 0 and days > 0")
    rng = np.random.default_rng(spec.seed)
    n = spec.jobs
    kinds = list(spec.mix)
    kp = np.array([spec.mix[k] for k in kinds], dtype=float)
    kind_idx = rng.choice(len(kinds), size=n, p=kp / kp.sum())

    # arrivals: day uniform, local hour from the diurnal profile
    tz = ZoneInfo(net.scenario.timezone)
    local = start.astimezone(tz)
    local_start_h = local.hour + local.minute / 60 + local.second / 3600
    t = _arrivals(rng, n, spec.days, local_start_h)
    order = np.argsort(t, kind="stable")

    places, pp = origin_sampler(net)
    origin_idx = rng.choice(len(places), size=n, p=pp)
    dur_h = np.empty(n)
    units = np.zeros(n, dtype=np.int64)
    cpus = np.zeros(n, dtype=np.int64)
    data = np.empty(n)
    for k_i, kind in enumerate(kinds):
        m = kind_idx == k_i
        cnt = int(m.sum())
        dur_h[m] = np.minimum(_MEDIAN_H[kind] * rng.lognormal(0.0, 1.3, cnt), 72.0)
        data[m] = _DATA_MEDIAN_GB[kind] * rng.lognormal(0.0, 1.0, cnt)
        if kind in (JobKind.ANALYTICS, JobKind.BACKUP):
            cpus[m] = rng.choice(_CPU_SIZES, size=cnt, p=_CPU_P)
        else:
            big = kind in (JobKind.TRAINING, JobKind.HPC)
            units[m] = rng.choice(_GPU_SIZES, size=cnt, p=_GPU_P["large" if big else "small"])
            cpus[m] = units[m] * 8

    # scale durations so the offered work is `load` x capacity over the arrival days
    gpu = units > 0
    cards = int(net.pool_capacity[~net.pool_is_cpu].sum())
    cores = int(net.pool_capacity[net.pool_is_cpu].sum())
    horizon_h = spec.days * 24.0
    if spec.load is not None:
        for sel, size, cap in ((gpu, units, cards), (~gpu, cpus, cores)):
            if sel.any() and cap:
                dur_h[sel] = _scale_to(dur_h[sel], size[sel], spec.load * cap * horizon_h)

    ai_stacks = _pick(rng, _AI_STACKS, n)
    hpc_stacks = _pick(rng, _HPC_STACKS, n)
    ckpt_u = rng.random(n)
    dl_u = rng.random(n)
    dl_f = rng.uniform(1.5, 4.0, n)
    dl_pad = rng.uniform(1.0, 12.0, n)
    catalog = net.scenario.catalog

    jobs: list[Job] = []
    for rank, i in enumerate(order):
        kind = kinds[int(kind_idx[i])]
        if units[i] > 0:
            stacks = hpc_stacks[i] if kind is JobKind.HPC else ai_stacks[i]
            work = catalog.work_scu(float(dur_h[i]), int(units[i]), 0, kind.precision)
        else:
            stacks = frozenset({"cpu"})
            work = catalog.work_scu(float(dur_h[i]), 0, int(cpus[i]), Precision.CPU)
        deadline = None
        if kind.deferrable and dl_u[i] < spec.deadline_share:
            deadline = float(dur_h[i] * 3600.0 * dl_f[i] + dl_pad[i] * 3600.0)
        jobs.append(
            Job(
                job_id=f"syn-{rank:07d}",
                submit_s=float(t[i]),
                kind=kind,
                origin=places[int(origin_idx[i])],
                cards=int(units[i]),
                cpus=int(cpus[i]),
                mem_gb=float(max(cpus[i], 1) * 4),
                accelerator=ANY_ACCELERATOR,
                stacks=stacks,
                work_scu=work,
                deadline_s=deadline,
                data_gb=float(round(data[i], 3)),
                checkpointable=bool(ckpt_u[i] < _CHECKPOINTABLE.get(kind, 0.0)),
            )
        )
    return with_tenants(jobs, spec) if spec.tenants else jobs


def tenant_names(count: int) -> list[str]:
    """``t01``, ``t02``, ... (as many digits as ``count`` needs)."""
    width = max(len(str(count)), 2)
    return [f"t{k:0{width}d}" for k in range(1, count + 1)]


def with_tenants(jobs: Sequence[Job], spec: WorkloadSpec) -> list[Job]:
    """``jobs`` shared among ``spec.tenants`` tenants of unequal demand, some urgent and some
    preemptible (drawn from their own seeded stream: the jobs themselves do not change)."""
    rng = np.random.default_rng([spec.seed, 14])
    names = list(spec.names) or tenant_names(spec.tenants)
    if len(names) != spec.tenants:
        raise ValueError(f"{spec.tenants} tenants but {len(names)} names")
    w = 1.0 / np.arange(1, spec.tenants + 1, dtype=np.float64) ** spec.tenant_skew
    who = rng.choice(spec.tenants, size=len(jobs), p=w / w.sum())
    u = rng.random(len(jobs))
    out = []
    for i, job in enumerate(jobs):
        share = spec.preemptible_share if job.kind.deferrable else spec.urgent_share
        cls = None
        if u[i] < share:
            cls = Priority.PREEMPTIBLE if job.kind.deferrable else Priority.URGENT
        out.append(replace(job, tenant=names[int(who[i])], priority=cls))
    return out
