"""The sweep file (``SWEEP.yaml``): pydantic models at the boundary, and :func:`load_sweep`,
which reads one and refuses it with every problem as ``file:line: field: message``.

A sweep is a grid: named scenario edits x named workloads x policies x seeds, on one scenario
(docs/sweeps.md)::

    scenario: china              # a built-in, or a scenario directory (relative to this file)
    start: "2025-07-01"          # local time of the scenario unless it has an offset
    drain_days: 2
    bound: true                  # also the offline bound of each (edits, workload, seed);
                                 # tight: the non-preemptive bound (simulate --tight-bound)
    edits:                       # name -> changes (as a what-if's ``edits``); default: base: {}
      base: {}
      dear-power: {tariff_scale: 1.5}
    workloads:                   # name -> synthetic (jobs, days, load, ...) or a trace
      small: {jobs: 300, days: 0.5}
      philly: {trace: philly.csv, format: philly, jobs: 1000}
      small-fc: {jobs: 300, days: 0.5, forecast_error: realistic}  # wrong forecasts
    policies: [nearest, suanwang]
    seeds: 5                     # 0..4, or a list: [0, 7, 42]

Numbers are read strictly (a text, a boolean, NaN or infinity is refused, never converted).
The edits are applied to the scenario here, so an edit naming no center of the scenario is
refused with its line before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from suanwang.core.jobs import JobKind
from suanwang.core.scenario import Scenario
from suanwang.scenarios.forecasts import forecast_error_level
from suanwang.scenarios.loader import (
    BUILTIN,
    Problem,
    ScenarioError,
    _field,
    _line_of,
    duplicate_keys,
    load_scenario,
    safe_yaml,
)
from suanwang.server.services.whatif_input import InputError, ScenarioEdits, apply_edits
from suanwang.sim.run import POLICIES

#: Most runs one sweep file may describe (the grid's size): a typo like ``seeds: 100000``
#: is refused rather than queued.
MAX_RUNS = 100_000
#: Synthetic jobs of a workload that does not say (as ``suanwang simulate``).
DEFAULT_JOBS = 20_000
MAX_JOBS = 10_000_000
MAX_SEED = 2**31 - 1
#: Names of edits and workloads: they label rows of the results and lines of the summary.
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][\w.+-]*$")]
TraceFormat = Literal["suanwang", "philly", "alibaba-gpu-2023"]
Strict = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


def _whole(value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a whole number")
    if not low <= value <= high:
        raise ValueError(f"{value} is not within {low} and {high:,}")
    return value


def _seeds(value: object) -> list[int]:
    """``seeds``: a count N (0..N-1) or a list of distinct seeds."""
    if isinstance(value, list):
        if not value:
            raise ValueError("no seed: give a count (5) or a list ([0, 7, 42])")
        seeds = []
        for i, v in enumerate(value):
            try:
                seeds.append(_whole(v, 0, MAX_SEED))
            except ValueError as exc:
                raise ValueError(f"seed [{i}]: {exc}") from None
        if len(set(seeds)) != len(seeds):
            raise ValueError("a seed is listed twice")
        return seeds
    try:
        return list(range(_whole(value, 1, MAX_RUNS)))
    except ValueError as exc:
        raise ValueError(f"a count of seeds or a list of seeds: {exc}") from None


def _start(value: object) -> datetime:
    """``start``: an ISO date or date and time (YAML reads an unquoted date as a date)."""
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, date):
        t = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO date (e.g. 2025-07-01)") from None
    else:
        raise ValueError(f"{value!r} is not an ISO date (e.g. 2025-07-01)")
    if not 2000 <= t.year <= 2100:
        raise ValueError(f"must be in the years 2000 to 2100 (got {t.year})")
    return t


class WorkloadEntry(BaseModel):
    """A synthetic workload (the fields of ``suanwang simulate``'s options), or a trace."""

    model_config = Strict

    trace: str | None = Field(None, min_length=1, description="a trace CSV (relative to file)")
    format: TraceFormat = Field("suanwang", description="the trace's format")
    jobs: int | None = Field(
        None, ge=0, le=MAX_JOBS, strict=True, description="synthetic: number; trace: first N"
    )
    days: float | None = Field(None, gt=0, le=366, strict=True, description="days of arrivals")
    load: float | None = Field(None, gt=0, le=1, strict=True, description="mean load (0-1]")
    deadline_share: float | None = Field(None, ge=0, le=1, strict=True)
    mix: dict[JobKind, Annotated[float, Field(ge=0, le=1e6, strict=True)]] | None = Field(
        None, min_length=1, description="weights of the job kinds"
    )
    forecast_error: str | None = Field(
        None, description="the forecasts policies plan on while running it (none, realistic...)"
    )

    @field_validator("forecast_error")
    @classmethod
    def _level(cls, value: str | None) -> str | None:
        if value is not None:
            forecast_error_level(value)  # ValueError names the levels
        return value

    @model_validator(mode="after")
    def _kind(self) -> Self:
        synthetic_only = ("days", "load", "deadline_share", "mix")
        if self.trace is not None:
            given = [f for f in synthetic_only if getattr(self, f) is not None]
            if given:
                raise ValueError(f"a trace workload has no {', '.join(given)} (synthetic only)")
        elif "format" in self.model_fields_set:
            raise ValueError("format is a trace's: give trace: FILE as well")
        if self.mix is not None and sum(self.mix.values()) <= 0:
            raise ValueError("mix: the weights must not all be 0")
        return self


def _bound(value: object) -> object:
    """``bound``: true, false or tight, nothing converted (not 1, not "yes")."""
    if isinstance(value, bool) or value == "tight":
        return value
    raise ValueError(f"must be true, false or tight, not {value!r}")


class SweepSpec(BaseModel):
    """The whole file."""

    model_config = Strict

    scenario: str = Field("china", min_length=1, max_length=4096)
    start: Annotated[datetime, BeforeValidator(_start)] = Field(
        datetime(2025, 7, 1),
        description="ISO date or time; the scenario's local time unless it has an offset",
    )
    drain_days: float = Field(14.0, ge=0, le=366, strict=True)
    bound: Annotated[bool | Literal["tight"], BeforeValidator(_bound)] = Field(
        False,
        description="the offline bound per workload/seed: true (relaxed) or tight",
    )
    bound_time_limit_s: float = Field(
        120.0, gt=0, le=86400, strict=True, description="tight: HiGHS's limit per solve"
    )
    edits: dict[Name, ScenarioEdits] = Field(
        default_factory=lambda: {"base": ScenarioEdits()}, min_length=1, max_length=1000
    )
    workloads: dict[Name, WorkloadEntry] = Field(min_length=1, max_length=1000)
    policies: list[str] = Field(min_length=1, max_length=len(POLICIES) + 1)
    seeds: Annotated[list[int], BeforeValidator(_seeds)] = Field(
        description="a count N (seeds 0..N-1) or a list of seeds"
    )

    @property
    def bound_kind(self) -> str | None:
        """The kind of bound the bound's runs compute, as ``simulate --json`` names it."""
        if not self.bound:
            return None
        return "non-preemptive" if self.bound == "tight" else "relaxed"

    @field_validator("policies")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        from suanwang.sim.run import policy_names

        return policy_names(value)  # ValueError names an unknown policy


#: The keys each mapping of the file may have, by its path (names of entries left out).
KNOWN_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    (): tuple(SweepSpec.model_fields),
    ("workloads",): tuple(WorkloadEntry.model_fields),
    ("edits",): tuple(ScenarioEdits.model_fields),
}


class SweepError(ValueError):
    """A sweep file is malformed; ``problems`` lists everything found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: p.line or 0)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Sweep:
    """A checked sweep file: the scenario (with each named edit applied) and the grid."""

    file: Path
    spec: SweepSpec
    scenario: str  # as given: a built-in name, or the directory (resolved)
    base: Scenario
    edited: Mapping[str, Scenario]  # by edits name
    start: datetime  # UTC
    traces: Mapping[str, Path]  # workload name -> resolved trace path

    @property
    def seeds(self) -> list[int]:
        return list(self.spec.seeds)


def load_sweep(path: Path) -> Sweep:
    """Read and check a sweep file; raises :class:`SweepError` with every problem."""
    file = str(path)
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise SweepError([Problem(file, None, "", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise SweepError(
            [Problem(file, None, "", f"not UTF-8 text (byte offset {exc.start})")]
        ) from None
    return parse_sweep_text(text, Path(path))


def parse_sweep_text(text: str, path: Path) -> Sweep:
    """Check the text of the sweep file at ``path`` (relative paths in it are from its
    directory); raises :class:`SweepError` with every problem."""
    file = str(path)
    try:
        data, node = safe_yaml(text, file)
    except ScenarioError as exc:
        raise SweepError(exc.problems) from None
    if not isinstance(data, dict):
        line = node.start_mark.line + 1 if node is not None else 1
        raise SweepError([Problem(file, line, "", "top level must be a mapping (workloads, ...)")])
    problems = [Problem(file, line, _field(loc), msg) for loc, line, msg in duplicate_keys(node)]

    def at(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem(file, _line_of(node, loc), _field(loc), message))

    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            loc, message = tuple(e["loc"]), _message(e)
            if loc[-1:] == ("[key]",):  # the name of an entry, not its value
                loc, message = loc[:-1], f"as a name: {message}"
            at(loc, message)
        raise SweepError(problems) from None
    cells = len(spec.policies) + bool(spec.bound)
    runs = len(spec.edits) * len(spec.workloads) * len(spec.seeds) * cells
    if runs > MAX_RUNS:
        at(("seeds",), f"the grid has {runs:,} runs (at most {MAX_RUNS:,})")
    base_dir = path.parent
    scenario_name = spec.scenario
    if spec.scenario not in BUILTIN:
        scenario_name = str((base_dir / spec.scenario).resolve())
    base: Scenario | None = None
    try:
        base = load_scenario(scenario_name)
    except ScenarioError as exc:
        known = ", ".join(BUILTIN)
        if not Path(scenario_name).exists():
            at(("scenario",), f"neither a built-in ({known}) nor a directory: {spec.scenario!r}")
        else:
            first = exc.problems[0] if exc.problems else ""
            at(("scenario",), f"has {len(exc.problems)} problem(s); first: {first}")
    edited: dict[str, Scenario] = {}
    if base is not None:
        for name, edits in spec.edits.items():
            try:
                edited[name] = apply_edits(base, edits)
            except InputError as exc:
                for p in exc.problems:  # loc: ("edits", "centers", id, ...)
                    at(("edits", name, *p.loc[1:]), p.msg)
    traces: dict[str, Path] = {}
    for name, w in spec.workloads.items():
        if w.trace is not None:
            trace = (base_dir / w.trace).resolve()
            if not trace.is_file():
                at(("workloads", name, "trace"), f"no such file: {str(trace)!r}")
            traces[name] = trace
    start = spec.start
    if start.tzinfo is None and base is not None:
        start = start.replace(tzinfo=ZoneInfo(base.timezone))
    if problems or base is None:
        raise SweepError(problems)
    return Sweep(path, spec, scenario_name, base, edited, start.astimezone(UTC), traces)


def _message(err: Mapping[str, Any]) -> str:
    """Pydantic's message, without its ``Value error,`` prefix; unknown keys with the known."""
    if err["type"] == "value_error":
        return str(err["ctx"]["error"])
    if err["type"] == "extra_forbidden":
        path = tuple(err["loc"])[:-1]
        # entries of edits and workloads are named by the user: drop their names
        key = tuple(k for i, k in enumerate(path) if isinstance(k, str) and i != 1)
        if path[:1] == ("edits",) and len(path) > 2:
            return "unknown key (known: pue, cards, inventory, cpu_cores, green_ppa_share)"
        known = KNOWN_KEYS.get(key)
        return f"unknown key (known: {', '.join(known)})" if known else "unknown key"
    return str(err["msg"])
