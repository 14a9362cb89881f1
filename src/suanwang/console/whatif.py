"""What-if runs from the console: the simulator as a background task (operators).

``POST /v1/whatif`` starts a simulation in a background thread and returns at once: a scenario
(the served one or a bundled one, ``GET /v1/whatif/scenarios``), optionally with edits of its key
parameters (capacity, PUE, green power, tariffs), a workload (synthetic, or an uploaded trace),
the chosen policies and optionally the offline bound. Edits and traces are checked before the
run starts (a 422 names the field, and the line of the trace). ``GET /v1/whatif/{id}`` reports
its progress and, once done, the same JSON document as ``suanwang simulate --json``. One run at
a time per server (a second is a 409), bounded in jobs and simulated days (see
:mod:`suanwang.console.whatif_input`); runs live in the server's memory (the last 20 are kept,
none survive a restart).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from suanwang.console.whatif_input import (
    MAX_BOUND_JOBS,
    MAX_JOBS,
    MAX_YAML_CHARS,
    SERVED,
    InputError,
    Problem,
    ScenarioEdits,
    TraceUpload,
    apply_edits,
    choose,
    describe_edits,
    from_yaml,
    scenario_choices,
    scenario_yaml,
    trace_workload,
)
from suanwang.core.network import Network
from suanwang.core.scenario import Scenario
from suanwang.scenarios.loader import BUILTIN
from suanwang.server.api.deps import AUTH_RESPONSES, CurrentTenant
from suanwang.server.database.models import Tenant, TenantRole
from suanwang.server.schemas import ErrorResponse
from suanwang.sim.run import POLICIES, Workload, make_workload, policy_names, run

KEEP = 20
#: Synthetic jobs of a run that does not say.
SYNTHETIC_JOBS = 2000
router = APIRouter(prefix="/v1/whatif", tags=["what-if"], responses=AUTH_RESPONSES)
FORBIDDEN: dict[int | str, dict[str, object]] = {
    403: {"model": ErrorResponse, "description": "what-if runs are for operators"}
}


class WhatIfRequest(BaseModel):
    """A simulation: scenario (and edits), workload (synthetic or a trace), policies."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    policies: list[str] = Field(
        default_factory=lambda: ["all"], min_length=1, max_length=10,
        description="policy names, or 'all'",
        json_schema_extra={"items": {"type": "string", "enum": ["all", *POLICIES]}},
    )  # fmt: skip
    scenario: str = Field(
        SERVED, max_length=64, description="'served' or a bundled one (GET /v1/whatif/scenarios)",
        json_schema_extra={"enum": [SERVED, *BUILTIN]},
    )  # fmt: skip
    scenario_yaml: str | None = Field(
        None, min_length=1, max_length=MAX_YAML_CHARS,
        description="a whole scenario.yaml to simulate instead of `scenario` "
        "(GET /v1/whatif/scenarios/{id}/yaml gives one to start from)",
    )  # fmt: skip
    edits: ScenarioEdits | None = Field(None, description="changes to the scenario")
    trace: TraceUpload | None = Field(None, description="simulate this trace (else synthetic)")
    jobs: int | None = Field(
        None, ge=10, le=MAX_JOBS,
        description="synthetic jobs (default 2000); with a trace: simulate at most its first N",
    )  # fmt: skip
    days: float = Field(1.0, gt=0, le=7, description="synthetic: days over which jobs arrive")
    load: float | None = Field(
        None, gt=0, le=1.5, description="synthetic: scale durations to this load"
    )
    seed: int = Field(0, ge=0, le=2**31 - 1)
    start: datetime = Field(
        default_factory=lambda: datetime(2025, 7, 1, tzinfo=UTC),
        description="first day (UTC; years 2000 to 2100)",
    )
    drain_days: float = Field(2.0, ge=0, le=14, description="simulated days after arrivals")
    bound: bool = Field(False, description="also solve the offline LP bound (slower)")

    @field_validator("policies")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return policy_names(value)  # ValueError names an unknown policy

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        try:
            utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00+14:00
            raise ValueError("out of range") from None
        if not 2000 <= utc.year <= 2100:
            raise ValueError(f"must be in the years 2000 to 2100 (got {utc.year})")
        return utc


class TraceInfo(BaseModel):
    name: str
    format: str
    chars: int


class WhatIfRun(BaseModel):
    id: str
    state: Literal["running", "done", "failed"]
    created_at: datetime
    request: WhatIfRequest = Field(description="as sent, without the trace and the YAML")
    trace: TraceInfo | None = Field(None, description="the uploaded trace")
    changes: list[str] = Field(default_factory=list, description="the scenario edits, in words")
    progress: float = Field(description="0..1")
    step: str = Field(description="what it is doing now")
    seconds: float
    result: dict[str, Any] | None = Field(description="as `suanwang simulate --json`, once done")
    error: str | None = None


@dataclass
class _Run:
    id: str
    request: WhatIfRequest
    scenario: Scenario | None = None
    workload: Workload | None = None
    changes: list[str] = field(default_factory=list)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    state: Literal["running", "done", "failed"] = "running"
    progress: float = 0.0
    step: str = "building the workload"
    result: dict[str, Any] | None = None
    error: str | None = None

    def public(self) -> WhatIfRun:
        end = self.ended if self.ended is not None else time.monotonic()
        trace = self.request.trace
        info = None
        if trace is not None:
            info = TraceInfo(name=trace.name, format=trace.format, chars=len(trace.text))
        return WhatIfRun(
            id=self.id, state=self.state, created_at=self.created_at,
            request=self.request.model_copy(update={"trace": None, "scenario_yaml": None}),
            trace=info,
            changes=self.changes, progress=self.progress, step=self.step,
            seconds=round(end - self.started, 2), result=self.result, error=self.error,
        )  # fmt: skip


class WhatIfRunner:
    """The runs of one app; at most one simulates at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, _Run] = OrderedDict()

    def _check_idle(self) -> None:
        busy = [r for r in self._runs.values() if r.state == "running"]
        if busy:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"what-if run {busy[0].id} is still running; wait for it to finish",
            )

    def start(self, served: Scenario, request: WhatIfRequest) -> _Run:
        """Check the request's scenario, edits and trace, then simulate in a thread."""
        with self._lock:
            self._check_idle()  # before parsing a trace for nothing
        try:
            scenario, changes, workload = _prepare(served, request)
        except InputError as exc:
            raise RequestValidationError([p.error() for p in exc.problems]) from None
        with self._lock:
            self._check_idle()
            job = _Run(id=str(uuid.uuid4()), request=request, scenario=scenario,
                       workload=workload, changes=changes)  # fmt: skip
            self._runs[job.id] = job
            while len(self._runs) > KEEP:
                self._runs.popitem(last=False)
        threading.Thread(
            target=self._simulate, args=(scenario, job), name=f"whatif-{job.id[:8]}", daemon=True
        ).start()
        return job

    def get(self, run_id: str) -> _Run | None:
        with self._lock:
            return self._runs.get(run_id)

    def all(self) -> list[_Run]:
        with self._lock:
            return list(reversed(self._runs.values()))

    def _simulate(self, scenario: Scenario, job: _Run) -> None:
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


def _runner(request: Request) -> WhatIfRunner:
    runner: WhatIfRunner | None = getattr(request.app.state, "whatif", None)
    if runner is None:
        runner = request.app.state.whatif = WhatIfRunner()
    return runner


def _operator(tenant: CurrentTenant) -> Tenant:
    """The tenant, if an operator; 403 otherwise (before a request body is looked at)."""
    if tenant.tenant_role is not TenantRole.OPERATOR:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "what-if runs are for operators")
    return tenant


Operator = Annotated[Tenant, Depends(_operator)]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **FORBIDDEN,
        400: {"model": ErrorResponse, "description": "the body could not be read"},
        409: {"model": ErrorResponse, "description": "a run is going"},
        413: {"model": ErrorResponse, "description": "request body over the server's limit"},
    },
)
def start_whatif(body: WhatIfRequest, request: Request, _tenant: Operator) -> WhatIfRun:
    """Start a simulation; poll ``GET /v1/whatif/{id}`` for progress.

    A bad edit or trace is a 422 naming it (``loc``; a trace's problems also carry ``line`` and
    ``field`` of the file) before anything runs.
    """
    scenario: Scenario = request.app.state.scenario
    return _runner(request).start(scenario, body).public()


class ScenarioCenter(BaseModel):
    id: str
    name: str
    province: str
    pue: float
    cards: int
    inventory: dict[str, int] = Field(description="cards per accelerator model")
    cpu_cores: int
    green_ppa_share: float


class ScenarioChoice(BaseModel):
    """A scenario a what-if run may simulate, with the parameters the console lets you edit."""

    id: str = Field(description="'served' (the scenario of this server) or a bundled one")
    name: str
    description: str
    models: list[str] = Field(description="accelerator models of its catalog")
    centers: list[ScenarioCenter]


class ScenarioList(BaseModel):
    items: list[ScenarioChoice]


@router.get("/scenarios", responses=FORBIDDEN)
def list_scenarios(request: Request, _tenant: Operator) -> ScenarioList:
    """The scenarios a run may use (``scenario`` of ``POST /v1/whatif``) and their centers."""
    items = []
    for key, sc in scenario_choices(request.app.state.scenario).items():
        centers = [
            ScenarioCenter(
                id=c.id,
                name=c.name,
                province=c.province,
                pue=c.pue,
                cards=c.cards,
                inventory=dict(c.inventory),
                cpu_cores=c.cpu_cores,
                green_ppa_share=c.power.green_ppa_share,
            )
            for c in sc.centers
        ]
        items.append(ScenarioChoice(id=key, name=sc.name, description=sc.description,
                                    models=list(sc.catalog.models), centers=centers))  # fmt: skip
    return ScenarioList(items=items)


class ScenarioYaml(BaseModel):
    id: str
    yaml: str = Field(description="scenario.yaml without comments, sources and defaults")


@router.get(
    "/scenarios/{scenario_id}/yaml",
    responses={**FORBIDDEN, 404: {"model": ErrorResponse, "description": "no such scenario"}},
)
def get_scenario_yaml(
    scenario_id: Annotated[str, Path(max_length=64)], request: Request, _tenant: Operator
) -> ScenarioYaml:
    """A scenario as YAML to edit and send back as ``scenario_yaml`` (measured signals of a
    scenario directory are not included: a run from YAML models every center's signals)."""
    if scenario_id not in scenario_choices(request.app.state.scenario):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no scenario {scenario_id!r}")
    text = scenario_yaml(request.app.state.settings.scenario, scenario_id)
    return ScenarioYaml(id=scenario_id, yaml=text)


@router.get("", responses=FORBIDDEN)
def list_whatif(request: Request, _tenant: Operator) -> list[WhatIfRun]:
    """The server's recent what-if runs, newest first."""
    return [r.public() for r in _runner(request).all()]


@router.get(
    "/{run_id}",
    responses={**FORBIDDEN, 404: {"model": ErrorResponse, "description": "no such run"}},
)
def get_whatif(
    run_id: Annotated[str, Path(max_length=64)], request: Request, _tenant: Operator
) -> WhatIfRun:
    found = _runner(request).get(run_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no what-if run {run_id!r}")
    return found.public()
