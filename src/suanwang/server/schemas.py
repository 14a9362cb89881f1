"""Pydantic models at the HTTP boundary: the job spec users send and what the API returns.

Strings are length-limited and may not contain NUL, lone surrogates or (in names) other control
characters, so nothing a client sends can fail later in the database instead of at validation.
Which origins, accelerators and stacks exist depends on the scenario; the app adds them to the
OpenAPI document as enums (see :func:`suanwang.server.app.create_app`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    computed_field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from suanwang.core.jobs import ANY_ACCELERATOR, JobKind, Priority
from suanwang.core.lifecycle import JobState
from suanwang.server.database.models import JobEvent, JobRow
from suanwang.server.decisions import DecisionPublic

MAX_CPUS = 1_000_000
MAX_CARDS = 100_000
MAX_MEM_GB = 1e7
MAX_DURATION_S = 1e9
MAX_LATENCY_MS = 1e5
MAX_DATA_GB = 1e9
MAX_COMMAND_CHARS = 16_384
MAX_SCRIPT_CHARS = 60_000
MAX_STACKS = 16
_Model = TypeVar("_Model", bound=BaseModel)


def from_fields(model: type[_Model], source: object, **given: object) -> _Model:
    """A ``model`` of ``source`` (e.g. a scenario's center): each field is the same-named
    attribute of ``source``, but those in ``given``."""
    same = {name: getattr(source, name) for name in model.model_fields if name not in given}
    return model.model_validate({**same, **given})


#: No control characters (C0, DEL, C1); expressed as a pattern so the OpenAPI schema says it.
#: A pattern also refuses a lone surrogate ("\ud800", which JSON may carry and no database
#: stores): pydantic matches the text as UTF-8, which has none (tests/server/test_server_hardening)
NO_CONTROL = r"^[^\u0000-\u001f\u007f-\u009f]+$"
NO_NUL = r"^[^\u0000]+$"

#: A short identifier-like string: a place, accelerator model or stack.
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=NO_CONTROL)]
JobName = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_CONTROL)]
Command = Annotated[
    str,
    Field(min_length=1, max_length=MAX_COMMAND_CHARS, pattern=NO_NUL),
]
Script = Annotated[
    str,
    Field(min_length=1, max_length=MAX_SCRIPT_CHARS, pattern=NO_NUL),
]


def _json_integer(value: object) -> object:
    # a JSON integer (8, or 8.0: the same number) but never a boolean or a text ("8")
    if isinstance(value, bool | str | bytes):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


#: An integer as JSON Schema has it (``8`` or ``8.0``), never coerced from a boolean or a text.
JsonInt = Annotated[int, BeforeValidator(_json_integer)]


def _count_in_schema(schema: dict[str, Any]) -> None:
    schema["properties"].setdefault("count", _COUNT_SCHEMA)
    schema["not"] = {"required": ["cards", "count"]}  # one of the two names, not both


_COUNT_SCHEMA = {
    "type": "integer",
    "minimum": 0,
    "maximum": MAX_CARDS,
    "deprecated": True,
    "description": "the old name of cards, still accepted (give one of the two)",
}


def cards_of(resources: Mapping[str, Any]) -> int:
    """The cards of a stored spec's ``resources`` (specs stored before ``cards`` was named
    so have only ``count``), for readers that skip validating the whole spec."""
    return int(resources.get("cards", resources.get("count", 0)))


class Resources(BaseModel):
    """What one job holds while it runs: accelerator cards or CPU cores.

    ``cards`` was called ``count`` before: a request may still give ``count`` instead (not
    both), and every job the API shows has it next to ``cards`` (:class:`ResourcesPublic`), so
    clients written for it keep working. Specs are stored with ``cards`` (older ones have
    ``count``: both read).
    """

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra=lambda schema, _: _count_in_schema(schema),
    )

    cpus: JsonInt = Field(1, ge=1, le=MAX_CPUS, description="CPU cores")
    cards: JsonInt = Field(
        0,
        ge=0,
        le=MAX_CARDS,
        description="accelerator cards (gang); 0 = a CPU-only job",
    )
    accelerator: Name = Field(
        ANY_ACCELERATOR, description="accelerator model of the scenario's catalog, or 'any'"
    )
    mem_gb: float = Field(4.0, gt=0, le=MAX_MEM_GB, description="memory (GB)", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _count_is_cards(cls, data: Any) -> Any:
        if isinstance(data, dict) and "count" in data:
            data = dict(data)
            if "cards" in data:
                raise ValueError("give cards or count (its old name), not both")
            data["cards"] = data.pop("count")
        return data


class ResourcesPublic(Resources):
    """:class:`Resources` as the API shows them: with ``count``, the old name of ``cards``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra=None)

    @computed_field(  # type: ignore[prop-decorator]
        description="the old name of cards", json_schema_extra={"deprecated": True}
    )
    @property
    def count(self) -> int:
        return self.cards


class JobSpec(BaseModel):
    """A job as submitted (``POST /v1/jobs``). Give exactly one of ``command`` or ``script``.

    ``duration_s`` estimates the runtime on the reference chip (A100; for CPU jobs the
    scenario's CPU node) with the requested resources. ``kind`` defaults to ``training`` for
    accelerator jobs and ``analytics`` for CPU jobs, ``stacks`` to ``["cuda"]`` / ``["cpu"]``;
    the stored and returned spec has these defaults filled in.
    """

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            # "exactly one of command or script", as JSON Schema (null counts as absent)
            "oneOf": [
                {"required": ["command"], "properties": {"command": {"type": "string"}}},
                {"required": ["script"], "properties": {"script": {"type": "string"}}},
            ]
        },
    )

    name: JobName
    command: Command | None = Field(None, description="a shell command line")
    script: Script | None = Field(None, description="a shell script (its text)")
    resources: Resources = Field(default_factory=Resources)
    duration_s: float = Field(gt=0, le=MAX_DURATION_S, strict=True)
    kind: JobKind | None = Field(None, description="training if resources.cards > 0 else analytics")
    origin: Name = Field(
        description="province or city (id) the job's users and data are in",
        examples=["beijing", "guangdong"],
    )
    deadline_s: float | None = Field(
        None,
        gt=0,
        le=MAX_DURATION_S,
        description="finish within this long after submission",
        strict=True,
    )
    latency_ms: float | None = Field(
        None,
        gt=0,
        le=MAX_LATENCY_MS,
        description="one-way latency bound from origin",
        strict=True,
    )
    data_gb: float = Field(
        0.0, ge=0, le=MAX_DATA_GB, description="input data to move (GB)", strict=True
    )
    checkpointable: bool = Field(False, strict=True)
    network: StrictBool = Field(
        False,
        description="the job needs network access (its sandbox has none otherwise); only "
        "where the platform allows it (else 422)",
    )
    priority: Priority | None = Field(
        None,
        description="who runs first when capacity is short (docs/governance.md): urgent, "
        "normal, batch or preemptible; batch for deferrable kinds, else normal",
    )
    stacks: list[Name] | None = Field(
        None,
        min_length=1,
        max_length=MAX_STACKS,
        description='software stacks the job runs on; ["cuda"] if resources.cards > 0 else ["cpu"]',
    )

    @model_validator(mode="after")
    def _exactly_one_program_and_defaults(self) -> Self:
        if (self.command is None) == (self.script is None):
            raise ValueError("give exactly one of 'command' or 'script'")
        gpu = self.resources.cards > 0
        if self.kind is None:
            self.kind = JobKind.TRAINING if gpu else JobKind.ANALYTICS
        if self.stacks is None:
            self.stacks = ["cuda"] if gpu else ["cpu"]
        else:
            self.stacks = sorted(set(self.stacks))
        return self

    @property
    def job_kind(self) -> JobKind:
        """``kind`` with its default applied (always set after validation)."""
        if self.kind is not None:
            return self.kind
        return JobKind.TRAINING if self.resources.cards > 0 else JobKind.ANALYTICS

    @property
    def job_stacks(self) -> frozenset[str]:
        if self.stacks is not None:
            return frozenset(self.stacks)
        return frozenset({"cuda"} if self.resources.cards > 0 else {"cpu"})


class JobSpecPublic(JobSpec):
    """A stored spec as the API shows it (its resources with ``count`` too)."""

    resources: ResourcesPublic = Field(default_factory=ResourcesPublic)


class JobCreate(JobSpec):
    """The body of ``POST /v1/jobs``: a :class:`JobSpec`.

    Its own OpenAPI component, so that the app can list the scenario's origins, accelerators
    and stacks as enums for requests without constraining the specs of stored jobs.
    """


class JobPublic(BaseModel):
    """A job as the API shows it."""

    id: str
    tenant_id: str
    name: str
    state: JobState
    kind: JobKind
    origin: str
    center_id: str | None
    pool_model: str | None
    submitted_at: datetime
    scheduled_at: datetime | None
    start_at: datetime | None = Field(
        description="planned start, once placed: a deferred job stays scheduled until then"
    )
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None
    decision: DecisionPublic | None = Field(
        description="placement explanation once placed, or why no center can run the job"
    )
    spec: JobSpecPublic
    # billing (issue 5): set by GET /v1/jobs/{id} once the finished job has been charged
    charge_cny: Decimal | None = Field(
        default=None, description="what the finished job was charged (CNY), once settled"
    )

    @classmethod
    def from_row(cls, row: JobRow, spec: JobSpec | None = None) -> JobPublic:
        """The public view of ``row``; ``spec``: the row's spec already validated (the submit
        path has it), else it is validated from the stored JSON."""
        if spec is None:
            shown = JobSpecPublic.model_validate(row.spec)
        else:  # already valid: the same fields, its resources shown with their old name too
            fields = {name: getattr(spec, name) for name in JobSpec.model_fields}
            fields["resources"] = ResourcesPublic.model_construct(**dict(spec.resources))
            shown = JobSpecPublic.model_construct(**fields)
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            name=row.name,
            state=JobState(row.state),
            kind=shown.job_kind,
            origin=shown.origin,
            center_id=row.center_id,
            pool_model=row.pool_model,
            submitted_at=row.submitted_at,
            scheduled_at=row.scheduled_at,
            start_at=row.start_at,
            started_at=row.started_at,
            ended_at=row.ended_at,
            exit_code=row.exit_code,
            decision=DecisionPublic.model_validate(row.decision) if row.decision else None,
            spec=shown,
        )


class JobList(BaseModel):
    """One page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[JobPublic]
    next_cursor: str | None


class JobEventPublic(BaseModel):
    """One lifecycle transition (``from_state`` is null for the submission)."""

    id: int
    at: datetime
    from_state: JobState | None
    to_state: JobState
    detail: dict[str, Any]

    @classmethod
    def from_row(cls, row: JobEvent) -> JobEventPublic:
        return cls(
            id=row.id,
            at=row.at,
            from_state=JobState(row.from_state) if row.from_state is not None else None,
            to_state=JobState(row.to_state),
            detail=row.detail,
        )


class TransitionConflict(BaseModel):
    msg: str
    state: JobState
    allowed: list[JobState]


class ConflictResponse(BaseModel):
    detail: TransitionConflict


class ErrorResponse(BaseModel):
    detail: str


class Health(BaseModel):
    status: str
    database: str


# --------------------------------------------------------------------------- centers, network


class PoolCounts(BaseModel):
    """Accelerator cards by model and CPU cores."""

    cards: dict[str, int]
    cpu_cores: int


class Utilization(BaseModel):
    """Share of capacity in use (0..1): all cards, each model, CPU cores."""

    cards: float
    by_model: dict[str, float]
    cpu: float


class CenterSignals(BaseModel):
    """Modelled energy signals for the current hour.

    ``carbon_g_per_kwh`` is per kWh the center draws: the grid share's intensity times
    ``1 - green_fraction``.
    """

    hour: datetime
    price_cny_per_kwh: float
    green_fraction: float
    carbon_g_per_kwh: float


class CenterPublic(BaseModel):
    id: str
    name: str
    name_zh: str
    type: str
    province: str
    hub: str | None
    pue: float
    capacity: PoolCounts
    used: PoolCounts
    utilization: Utilization
    signals: CenterSignals


class CenterList(BaseModel):
    scenario: str
    centers: list[CenterPublic]


class Totals(BaseModel):
    """Capacity and use summed over a group of centers."""

    id: str | None = Field(description="hub id; null for the centers outside every hub")
    name: str
    centers: int
    capacity: PoolCounts
    used: PoolCounts
    utilization: Utilization


class NetworkPublic(BaseModel):
    scenario: str
    hubs: list[Totals]
    national: Totals
