"""The runs of a sweep: the grid expanded (:func:`grid`), each run's key (a hash of what it
simulates) and :func:`execute`, which simulates one run exactly as ``suanwang simulate`` would
with the same options (same functions, same order), for one policy or the bound.

Nothing here touches Ray: :mod:`suanwang.sim.sweep.execute` sends :func:`execute` to its
workers, and running the runs one after another is a plain loop over it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from suanwang import __version__
from suanwang.core.network import Network
from suanwang.core.scenario import Scenario
from suanwang.sim.run import Workload, make_workload, run
from suanwang.sim.sweep.spec import DEFAULT_JOBS, Sweep, WorkloadEntry
from suanwang.sim.workload import WorkloadSpec, synthetic_jobs

#: The ``policy`` of a run that computes the offline bound instead of simulating a policy.
BOUND = "bound"
#: Bumped when what a run computes changes meaning (results of older runs are not reused).
KEY_VERSION = 1


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid: what :func:`execute` needs besides the (edited) scenario."""

    key: str
    edits: str  # the edits' name in the sweep file
    workload: str  # the workload's name
    policy: str  # a policy name, or BOUND
    seed: int
    entry: WorkloadEntry
    trace: Path | None
    start: datetime  # UTC
    drain_days: float
    tight: bool = False  # the bound's run: the non-preemptive bound (``bound: tight``)
    bound_limit_s: float = 120.0  # HiGHS's time limit for it

    def labels(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "edits": self.edits,
            "workload": self.workload,
            "policy": self.policy,
            "seed": self.seed,
        }


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def scenario_fingerprint(sweep: Sweep) -> str:
    """What identifies the scenario: a built-in's name (and this version of suanwang), or the
    hash of every file of the scenario directory."""
    if not Path(sweep.scenario).is_dir():
        return f"builtin:{sweep.scenario}"
    h = hashlib.sha256()
    root = Path(sweep.scenario)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0" + _file_digest(f).encode() + b"\0")
    return f"dir:{h.hexdigest()}"


def grid(sweep: Sweep) -> list[RunSpec]:
    """Every run of the sweep, in the file's order: edits, workloads, policies (then the
    bound), seeds. The key hashes what the run simulates (the scenario's content, the edits'
    values, the workload's values and its trace's content, policy, seed, start, drain days,
    the version of suanwang), not the names, so renaming an entry keeps its results."""
    spec = sweep.spec
    base = {
        "v": KEY_VERSION,
        "suanwang": __version__,
        "scenario": scenario_fingerprint(sweep),
        "start": sweep.start.isoformat(),
        "drain_days": spec.drain_days,
    }
    traces = {name: _file_digest(p) for name, p in sweep.traces.items() if p.is_file()}
    policies = [*spec.policies, *([BOUND] if spec.bound else [])]
    tight = spec.bound == "tight"
    runs: list[RunSpec] = []
    for e_name, edits in spec.edits.items():
        for w_name, entry in spec.workloads.items():
            for policy in policies:
                for seed in sweep.seeds:
                    values = entry.model_dump(mode="json", exclude_none=True)
                    values.pop("trace", None)  # its content counts, not its path
                    doc = {
                        **base,
                        "edits": edits.model_dump(mode="json", exclude_defaults=True),
                        "workload": values,
                        "trace": traces.get(w_name),
                        "policy": policy,
                        "seed": seed,
                    }
                    if policy == BOUND and tight:  # relaxed bounds keep their keys
                        doc["bound_kind"] = spec.bound_kind
                    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
                    runs.append(
                        RunSpec(
                            key=_digest(text.encode())[:24],
                            edits=e_name,
                            workload=w_name,
                            policy=policy,
                            seed=seed,
                            entry=entry,
                            trace=sweep.traces.get(w_name),
                            start=sweep.start,
                            drain_days=spec.drain_days,
                            tight=tight and policy == BOUND,
                            bound_limit_s=spec.bound_time_limit_s,
                        )
                    )
    return runs


def workload(net: Network, r: RunSpec) -> Workload:
    """The run's jobs: as ``simulate --jobs --days --load`` (a synthetic workload with the
    file's ``mix`` and ``deadline_share`` where given), or ``simulate --trace --format``."""
    e = r.entry
    if r.trace is None:
        days = e.days if e.days is not None else 2.0
        extra: dict[str, Any] = {}
        if e.mix is not None:
            extra["mix"] = dict(e.mix)
        if e.deadline_share is not None:
            extra["deadline_share"] = e.deadline_share
        jobs = e.jobs if e.jobs is not None else DEFAULT_JOBS
        spec = WorkloadSpec(jobs=jobs, days=days, seed=r.seed, load=e.load, **extra)
        return Workload(synthetic_jobs(net, spec, r.start), days, "synthetic", rows=spec.jobs)
    return make_workload(net, trace=str(r.trace), fmt=e.format, jobs=e.jobs, days=2.0,
                         seed=r.seed, start=r.start, load=None)  # fmt: skip


def execute(scenario: Scenario, r: RunSpec) -> dict[str, Any]:
    """Simulate one run; never raises: a failure is returned with its error and traceback.

    The result: the run's labels, ``status`` (``ok`` or ``failed``), ``seconds`` (wall time of
    the whole run) and ``metrics``: the policy's metrics as in ``simulate --json`` (or the
    bound's ``cost_cny``, ``energy_kwh``, ``carbon_t``), with ``jobs``."""
    t = time.perf_counter()
    out: dict[str, Any] = r.labels()
    try:
        net = Network(scenario)
        w = workload(net, r)
        bound = r.policy == BOUND
        result = run(scenario, w, start=r.start, policies=[] if bound else [r.policy],
                     seed=r.seed, drain_days=r.drain_days, with_bound=bound,
                     tight=r.tight, tight_limit_s=r.bound_limit_s,
                     forecast_error=r.entry.forecast_error or "none")  # fmt: skip
        doc = result.to_json()
        if bound:
            if r.tight and result.tight is None:
                raise RuntimeError(f"tight bound not computed: {result.tight_error}")
            if doc["bound"] is None:
                raise RuntimeError(f"bound not computed: {result.bound_error}")
            metrics = dict(doc["bound"])
            if "seconds" in metrics:  # the tight bound's solve time; the run has its seconds
                metrics["solve_s"] = metrics.pop("seconds")
        else:
            metrics = dict(doc["policies"][r.policy])
        metrics["jobs"] = doc["jobs"]
        out.update(status="ok", metrics=_plain(metrics))
    except Exception as exc:  # a failed run is a result: reported, the others go on
        out.update(
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(limit=20),
        )
    out["seconds"] = time.perf_counter() - t
    return out


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """Numbers as JSON numbers (numpy scalars to Python), NaN as None."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        x = v.item() if hasattr(v, "item") else v  # a numpy scalar
        out[k] = None if isinstance(x, float) and not math.isfinite(x) else x
    return out
