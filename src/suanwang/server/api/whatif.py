"""``/v1/whatif``: what-if runs from the console, the simulator as a background task (operators).

``POST /v1/whatif`` starts a simulation and returns at once (202): a scenario (the served one
or a bundled one, ``GET /v1/whatif/scenarios``), optionally with edits of its key parameters
(capacity, PUE, green power, tariffs) or as a whole YAML, a workload (synthetic, or an uploaded
trace), the chosen policies and optionally the offline bound. Edits and traces are checked
before the run starts (a 422 names the field, and the line of the trace). ``GET
/v1/whatif/{id}`` reports its progress and, once done, the same JSON document as ``suanwang
simulate --json``. One run at a time per server (a second is a 409), bounded in jobs and
simulated days (:mod:`suanwang.server.services.whatif_input`); the runs are kept by
:class:`suanwang.server.services.whatif.WhatIfRunner`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from suanwang.core.instants import WHATIF_START, matches
from suanwang.core.scenario import Scenario
from suanwang.server.api.deps import AUTH_RESPONSES, operator_only
from suanwang.server.database.models import Tenant
from suanwang.server.schemas import ErrorResponse, from_fields
from suanwang.server.services.whatif import Busy, Run, WhatIfRunner
from suanwang.server.services.whatif_input import (
    InputError,
    WhatIfRequest,
    scenario_choices,
    scenario_yaml,
)

router = APIRouter(prefix="/v1/whatif", tags=["what-if"], responses=AUTH_RESPONSES)
REFUSAL = "what-if runs are for operators"
FORBIDDEN: dict[int | str, dict[str, object]] = {
    403: {"model": ErrorResponse, "description": REFUSAL}
}
OperatorDep = Annotated[Tenant, operator_only(REFUSAL)]


def _start_text(value: object) -> object:
    """``start`` as the schema publishes it: a text matching :data:`WHATIF_START` (a datetime
    is what the default is); anything else is refused before it is parsed."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not matches(WHATIF_START, value):
        raise PydanticCustomError(
            "value_error",
            "must be an ISO 8601 date and time in the years 2000 to 2100 in UTC, e.g. "
            "2025-07-01T00:00Z or 2025-07-01T08:00+08:00 (a valid date, hours and minutes, "
            "an offset of at most 23:59)",
        )
    return value


class WhatIfBody(WhatIfRequest):
    """The body of ``POST /v1/whatif``: a :class:`WhatIfRequest` whose ``start`` the OpenAPI
    schema describes exactly (a pattern the server checks first: any valid date and time in
    the years 2000 to 2100 in UTC, never a number)."""

    start: Annotated[
        datetime,
        BeforeValidator(_start_text),
        WithJsonSchema(
            {
                "type": "string",
                "pattern": WHATIF_START,
                "description": "first day (ISO 8601; UTC if no offset; years 2000 to 2100 in "
                "UTC), e.g. 2025-07-01T00:00Z; default 2025-07-01T00:00Z",
            }
        ),
    ] = Field(default_factory=lambda: datetime(2025, 7, 1, tzinfo=UTC))


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


def _public(run: Run) -> WhatIfRun:
    end = run.ended if run.ended is not None else time.monotonic()
    trace = run.request.trace
    info = None
    if trace is not None:
        info = TraceInfo(name=trace.name, format=trace.format, chars=len(trace.text))
    return WhatIfRun(
        id=run.id, state=run.state, created_at=run.created_at,
        request=run.request.model_copy(update={"trace": None, "scenario_yaml": None}),
        trace=info,
        changes=run.changes, progress=run.progress, step=run.step,
        seconds=round(end - run.started, 2), result=run.result, error=run.error,
    )  # fmt: skip


def _runner(request: Request) -> WhatIfRunner:
    """The app's runner, dating its runs by the app's clock."""
    runner: WhatIfRunner | None = getattr(request.app.state, "whatif", None)
    if runner is None:
        runner = request.app.state.whatif = WhatIfRunner(request.app.state.signals.clock)
    return runner


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
def start_whatif(body: WhatIfBody, request: Request, _tenant: OperatorDep) -> WhatIfRun:
    """Start a simulation; poll ``GET /v1/whatif/{id}`` for progress.

    A bad edit or trace is a 422 naming it (``loc``; a trace's problems also carry ``line`` and
    ``field`` of the file) before anything runs.
    """
    scenario: Scenario = request.app.state.scenario
    try:
        run = _runner(request).start(scenario, body)
    except Busy as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except InputError as exc:
        raise RequestValidationError([p.error() for p in exc.problems]) from None
    return _public(run)


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
def list_scenarios(request: Request, _tenant: OperatorDep) -> ScenarioList:
    """The scenarios a run may use (``scenario`` of ``POST /v1/whatif``) and their centers."""
    items = []
    for key, sc in scenario_choices(request.app.state.scenario).items():
        centers = [
            from_fields(
                ScenarioCenter,
                c,
                inventory=dict(c.inventory),
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
    scenario_id: Annotated[str, Path(max_length=64)], request: Request, _tenant: OperatorDep
) -> ScenarioYaml:
    """A scenario as YAML to edit and send back as ``scenario_yaml`` (measured signals of a
    scenario directory are not included: a run from YAML models every center's signals)."""
    if scenario_id not in scenario_choices(request.app.state.scenario):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no scenario {scenario_id!r}")
    text = scenario_yaml(request.app.state.settings.scenario, scenario_id)
    return ScenarioYaml(id=scenario_id, yaml=text)


@router.get("", responses=FORBIDDEN)
def list_whatif(request: Request, _tenant: OperatorDep) -> list[WhatIfRun]:
    """The server's recent what-if runs, newest first."""
    return [_public(r) for r in _runner(request).all()]


@router.get(
    "/{run_id}",
    responses={**FORBIDDEN, 404: {"model": ErrorResponse, "description": "no such run"}},
)
def get_whatif(
    run_id: Annotated[str, Path(max_length=64)], request: Request, _tenant: OperatorDep
) -> WhatIfRun:
    found = _runner(request).get(run_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no what-if run {run_id!r}")
    return _public(found)
