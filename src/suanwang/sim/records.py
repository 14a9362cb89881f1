"""Every simulated job's record as CSV: where and when it ran and what it cost.

``simulate --out DIR`` writes ``jobs-<policy>.csv`` for each policy, one row per job, in the
input order: its id, kind, origin and size; its final state; the center and accelerator of its
last run; when it was submitted, first started and ended (UTC, ISO 8601; empty if never);
its wait, migrations, and the cost breakdown of its runs at the realised signals (energy,
energy cost, data transfer, green energy, grid carbon). The sums of the columns are the
policy's metrics in ``results.json`` (its ``cost_cny`` less ``expiry_cost_cny``: a job that
expired under the deferral rule is ``failed`` and its penalty is the run's, not a column).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from suanwang.core import csvcells
from suanwang.core.jobs import Job
from suanwang.core.network import Network
from suanwang.sim.engine import Outcome
from suanwang.sim.metrics import PolicyReport

COLUMNS = (
    "job_id", "kind", "origin", "units", "work_scu", "state", "center", "accelerator",
    "submit_at", "first_start_at", "end_at", "wait_s", "migrations", "energy_kwh",
    "energy_cost_cny", "transfer_cost_cny", "cost_cny", "green_kwh", "carbon_kg",
)  # fmt: skip


def _at(t0: datetime, seconds: float) -> str:
    return (t0 + timedelta(seconds=seconds)).isoformat() if math.isfinite(seconds) else ""


def _num(x: float, digits: int = 6) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else ""


def write_job_records(
    path: Path,
    net: Network,
    start: datetime,
    jobs: Sequence[Job],
    outcome: Outcome,
    report: PolicyReport,
) -> None:
    """Write one CSV row per job of one policy's run (see the module docstring)."""
    rec = report.jobs
    if rec is None:
        raise ValueError(f"policy {report.name}: no job records in its report")
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csvcells.writer(f)
        out.writerow(COLUMNS)
        for i, job in enumerate(jobs):
            pool = int(outcome.pool[i])
            placed = pool >= 0
            first, end = float(rec.first_start_s[i]), float(rec.end_s[i])
            if not placed or (rec.expired.size and rec.expired[i]):
                state = "failed"  # no feasible pool, or expired (the deferral rule)
            elif math.isfinite(end):
                state = "succeeded"
            else:
                state = "running" if math.isfinite(first) else "scheduled"
            released = placed and float(outcome.release_s[i]) <= outcome.horizon_s
            transfer = float(outcome.transfer_cost_cny[i]) if released else 0.0
            energy_cost = float(rec.energy_cost_cny[i])
            out.writerow(
                (
                    job.job_id,
                    job.kind.value,
                    job.origin,
                    job.demand_units,
                    _num(job.work_scu),
                    state,
                    net.center_ids[int(net.pool_center[pool])] if placed else "",
                    net.pool_model[pool] if placed else "",
                    _at(start, job.submit_s),
                    _at(start, first),
                    _at(start, end),
                    _num(first - job.submit_s, 1),
                    int(outcome.migrations[i]),
                    _num(float(rec.energy_kwh[i])),
                    _num(energy_cost),
                    _num(transfer),
                    _num(energy_cost + transfer),
                    _num(float(rec.green_kwh[i])),
                    _num(float(rec.carbon_kg[i])),
                )
            )
