"""Running a sweep: the runs not yet finished in the results directory, in parallel on Ray (a
local runtime by default, or the cluster at ``address``), or one after another in this
process; each result is saved as soon as it arrives, so an interrupted sweep resumes where it
stopped.

The results directory (docs/sweeps.md)::

    runs/<key>.json      one finished run: its labels, metrics and seconds
    failed/<key>.json    one failed run: its labels, the error and the traceback (run again
                         by the next sweep; removed once it succeeds)
    results.csv, results.parquet, summary.html   (suanwang.sim.sweep.results)

The key (:func:`suanwang.sim.sweep.runs.grid`) hashes what a run simulates: a run whose
``runs/<key>.json`` exists is not repeated.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suanwang.core.scenario import Scenario
from suanwang.sim.sweep.runs import RunSpec, execute

#: Set for a local Ray runtime started here (unless already set): no usage statistics are
#: sent, nothing is fetched, no dashboard. The runtime's processes inherit them.
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    "RAY_DISABLE_IMPORT_WARNING": "1",
}


def set_ray_env() -> list[str]:
    """Set the variables of :data:`RAY_ENV` the environment lacks (a runtime started now,
    and its processes, read them) and return their names, for :func:`unset_env` once the
    runtime is shut down: the process's environment is not changed for good."""
    added = [k for k in RAY_ENV if k not in os.environ]
    for k in added:
        os.environ[k] = RAY_ENV[k]
    return added


def unset_env(names: Sequence[str]) -> None:
    """Take ``names`` out of the environment again (:func:`set_ray_env`)."""
    for k in names:
        os.environ.pop(k, None)


#: Runs in flight per CPU of the runtime: enough to keep every worker busy, few enough that
#: waiting on them stays cheap with 100,000 runs queued.
IN_FLIGHT_PER_CPU = 2

OnResult = Callable[[dict[str, Any]], None]


class ResultStore:
    """The results directory: finished runs by key, failed runs by key."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.failed = self.root / "failed"

    def finished(self, key: str) -> dict[str, Any] | None:
        """The saved result of run ``key``, or None (never run, failed, or unreadable)."""
        path = self.runs / f"{key}.json"
        try:
            doc = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and doc.get("status") == "ok" else None

    def save(self, result: Mapping[str, Any]) -> None:
        """Save a result (written whole, then renamed: a crash leaves no half file)."""
        ok = result["status"] == "ok"
        folder = self.runs if ok else self.failed
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{result['key']}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", "utf-8")
        tmp.replace(path)
        if ok:
            (self.failed / f"{result['key']}.json").unlink(missing_ok=True)


@dataclass
class SweepOutcome:
    """Every run's result in grid order; how many were taken from earlier sweeps."""

    results: list[dict[str, Any]]
    reused: int
    ran: int
    failed: list[dict[str, Any]] = field(default_factory=list)


def run_sweep(
    runs: Sequence[RunSpec],
    scenarios: Mapping[str, Scenario],
    out_dir: Path,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    serial: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_result: OnResult | None = None,
) -> SweepOutcome:
    """Run every run of ``runs`` not finished in ``out_dir`` (``scenarios``: the edited
    scenario of each edits name) and return all results.

    On Ray unless ``serial``: an already initialised runtime of this process is used as it
    is; else ``address`` names a cluster to join, or a local runtime of ``num_cpus`` CPUs
    (default: all) starts and stops here. ``on_start(reused, to_run)`` is called once,
    ``on_result`` with each result as it arrives (failed ones included)."""
    store = ResultStore(out_dir)
    done: dict[str, dict[str, Any]] = {}
    todo: list[RunSpec] = []
    for r in runs:
        saved = store.finished(r.key)
        if saved is not None:
            done[r.key] = {**saved, **r.labels()}  # the names of this file
        else:
            todo.append(r)
    reused = len(done)
    if on_start is not None:
        on_start(reused, len(todo))

    def arrived(result: dict[str, Any]) -> None:
        store.save(result)
        done[result["key"]] = result
        if on_result is not None:
            on_result(result)

    if todo:
        if serial:
            for r in todo:
                arrived(execute(scenarios[r.edits], r))
        else:
            _on_ray(todo, scenarios, arrived, address=address, num_cpus=num_cpus)
    results = [done[r.key] for r in runs]
    failed = [x for x in results if x["status"] != "ok"]
    return SweepOutcome(results, reused, len(todo), failed)


def _on_ray(
    todo: Sequence[RunSpec],
    scenarios: Mapping[str, Scenario],
    arrived: OnResult,
    *,
    address: str | None,
    num_cpus: int | None,
) -> None:
    import ray
    from ray.exceptions import RayError

    started, added = False, []
    if not ray.is_initialized():
        added = set_ray_env()
        try:
            ray.init(
                address=address,
                num_cpus=None if address else num_cpus,
                include_dashboard=False,
                log_to_driver=False,  # a run's solver output stays in the worker's log
                logging_level=logging.WARNING,
            )
        except BaseException:
            unset_env(added)
            raise
        started = True
    try:
        # a crashed worker is not retried: its run is reported as failed with the error
        task = ray.remote(num_cpus=1, max_retries=0)(execute)
        refs = {name: ray.put(sc) for name, sc in scenarios.items()}
        cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        limit = max(1, cpus) * IN_FLIGHT_PER_CPU
        queue = list(reversed(todo))
        pending: dict[Any, RunSpec] = {}
        while queue or pending:
            while queue and len(pending) < limit:
                r = queue.pop()
                pending[task.remote(refs[r.edits], r)] = r
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                r = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except RayError as exc:  # the worker died (out of memory, killed, ...)
                    result = {**r.labels(), "status": "failed", "seconds": None,
                              "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
                arrived(result)
    finally:
        if started:
            ray.shutdown()
            unset_env(added)
