"""What-if runs: the simulator as a background task of the control plane (operators).

A run (:class:`Run`) simulates a scenario, optionally edited, with a synthetic workload or an
uploaded trace (:mod:`suanwang.server.services.whatif_input` checks all of it before anything
runs), the chosen policies and optionally the offline bound. :class:`WhatIfRunner` starts it in
a background thread and keeps its progress and, once done, the same JSON document as
``suanwang simulate --json``. One run at a time per server; runs live in the server's memory
(the last :data:`KEEP` are kept, none survive a restart). The routes are in
:mod:`suanwang.server.api.whatif`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from suanwang.core.network import Network
from suanwang.core.scenario import Scenario
from suanwang.server.services.whatif_input import (
    MAX_BOUND_JOBS,
    SYNTHETIC_JOBS,
    InputError,
    Problem,
    WhatIfRequest,
    apply_edits,
    choose,
    describe_edits,
    from_yaml,
    trace_workload,
)
from suanwang.sim.run import Workload, make_workload, run

#: Runs kept in memory (the oldest are forgotten first).
KEEP = 20


class Busy(RuntimeError):
    """Another run is still simulating."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"what-if run {run_id} is still running; wait for it to finish")


@dataclass
class Run:
    """One what-if run: its request, progress and, once done, the report."""

    id: str
    request: WhatIfRequest
    created_at: datetime
    scenario: Scenario | None = None
    workload: Workload | None = None
    changes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    state: Literal["running", "done", "failed"] = "running"
    progress: float = 0.0
    step: str = "building the workload"
    result: dict[str, Any] | None = None
    error: str | None = None


class WhatIfRunner:
    """The runs of one app; at most one simulates at a time. ``clock`` (the app's) dates them."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, Run] = OrderedDict()

    def _check_idle(self) -> None:
        busy = [r for r in self._runs.values() if r.state == "running"]
        if busy:
            raise Busy(busy[0].id)

    def start(self, served: Scenario, request: WhatIfRequest) -> Run:
        """Check the request's scenario, edits and trace, then simulate in a thread.

        :class:`Busy` while another run simulates; :class:`InputError` names what is wrong.
        """
        with self._lock:
            self._check_idle()  # before parsing a trace for nothing
        scenario, changes, workload = _prepare(served, request)
        with self._lock:
            self._check_idle()
            job = Run(id=str(uuid.uuid4()), request=request, created_at=self._clock(),
                      scenario=scenario, workload=workload, changes=changes)  # fmt: skip
            self._runs[job.id] = job
            while len(self._runs) > KEEP:
                self._runs.popitem(last=False)
        threading.Thread(
            target=self._simulate, args=(scenario, job), name=f"whatif-{job.id[:8]}", daemon=True
        ).start()
        return job

    def get(self, run_id: str) -> Run | None:
        with self._lock:
            return self._runs.get(run_id)

    def all(self) -> list[Run]:
        with self._lock:
            return list(reversed(self._runs.values()))

    def _simulate(self, scenario: Scenario, job: Run) -> None:
        req = job.request
        steps = len(req.policies) + (1 if req.bound else 0)
        done_policies: list[str] = []

        def on_policy(name: str, done: int, total: int) -> None:
            if done >= total and name not in done_policies:
                done_policies.append(name)
            finished = len(done_policies) + (0 if done >= total else done / max(total, 1))
            job.progress = min(finished / steps, 0.99)
            job.step = f"simulating policy {name}: {done} of {total} jobs"

        try:
            workload = job.workload
            if workload is None:
                workload = make_workload(
                    Network(scenario), trace="synthetic", fmt="suanwang",
                    jobs=req.jobs or SYNTHETIC_JOBS, days=req.days, seed=req.seed,
                    start=req.start, load=req.load,
                )  # fmt: skip
            job.step = "modelling the energy signals"
            result = run(
                scenario, workload, start=req.start, policies=req.policies, seed=req.seed,
                drain_days=req.drain_days, with_bound=req.bound, on_policy=on_policy,
            )  # fmt: skip
            job.result = result.to_json()
            job.state, job.progress, job.step = "done", 1.0, "done"
        except Exception as exc:  # a failed run is reported, never lost in a thread
            job.state, job.error, job.step = "failed", f"{type(exc).__name__}: {exc}", "failed"
        finally:
            job.ended = time.monotonic()
            job.workload = job.scenario = None  # keep only the report in memory


def _prepare(served: Scenario, req: WhatIfRequest) -> tuple[Scenario, list[str], Workload | None]:
    """The scenario to simulate, its edits in words, and the trace's jobs (None: synthetic)."""
    changes: list[str] = []
    if req.scenario_yaml is not None:
        scenario = from_yaml(req.scenario_yaml)
        lines = req.scenario_yaml.count("\n") + 1
        changes.append(f"scenario {scenario.name} from YAML ({lines} lines)")
    else:
        scenario = choose(served, req.scenario)
    if req.edits is not None:
        edited = apply_edits(scenario, req.edits)
        changes += describe_edits(scenario, req.edits)
        scenario = edited
    workload = None
    if req.trace is not None:
        workload = trace_workload(Network(scenario), req.trace, jobs=req.jobs, seed=req.seed)
    jobs = len(workload.jobs) if workload is not None else req.jobs or SYNTHETIC_JOBS
    if req.bound and jobs > MAX_BOUND_JOBS:
        msg = f"the offline bound is solved for at most {MAX_BOUND_JOBS} jobs (this run: {jobs})"
        raise InputError([Problem(("bound",), msg, True)])
    return scenario, changes, workload
