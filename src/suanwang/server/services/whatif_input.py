"""What a what-if run simulates (:class:`WhatIfRequest`): a scenario (bundled or served), edits
of its key parameters, and an uploaded workload trace or a synthetic workload.

Everything here runs while the ``POST /v1/whatif`` request is answered, so a bad edit or a bad
trace is a 422 naming the field (and for a trace the file line) before any simulation starts.
The bounds (:data:`MAX_TRACE_CHARS`, :data:`MAX_JOBS`, :data:`MAX_ARRIVAL_DAYS`) keep one run
small enough that it cannot stall the server.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from suanwang.core.network import Network
from suanwang.core.scenario import Center, Province, Scenario, Tariff
from suanwang.scenarios.loader import (
    BUILTIN,
    ScenarioError,
    builtin_text,
    load_scenario,
    parse_scenario_text,
)
from suanwang.server.schemas import JsonInt
from suanwang.sim.run import POLICIES, Workload, policy_names
from suanwang.sim.traces import TraceError, load_trace

#: Largest uploaded trace (characters of CSV text); the request body limit of the server
#: (64 KiB by default) applies as well. Bigger traces: ``suanwang simulate --trace FILE``.
MAX_TRACE_CHARS = 48_000
#: Most jobs one run simulates (synthetic, or the first of a trace).
MAX_JOBS = 50_000
#: Arrivals of a trace after this many days are not simulated (counted as skipped).
MAX_ARRIVAL_DAYS = 7.0
#: The offline bound is an LP over every job: only for runs of at most this many jobs.
MAX_BOUND_JOBS = 5_000
#: Largest ``scenario_yaml`` (characters): a whole scenario.yaml, as the console edits it.
MAX_YAML_CHARS = 48_000
#: Synthetic jobs of a run that does not say.
SYNTHETIC_JOBS = 2000
#: ``scenario`` of a request: the scenario the server serves.
SERVED = "served"
#: File name of ``scenario_yaml`` in messages (``scenario.yaml:12: centers[0].pue: ...``).
YAML_LABEL = "scenario.yaml"

#: :data:`suanwang.sim.traces.TRACE_FORMATS` (a test checks they agree)
TraceFormat = Literal["suanwang", "philly", "alibaba-gpu-2023"]
Key = Annotated[str, Field(min_length=1, max_length=64)]


class CenterEdit(BaseModel):
    """New values for one center (fields left out keep theirs)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    pue: float | None = Field(
        None, ge=1.0, le=3.0, description="power usage effectiveness", strict=True
    )
    cards: JsonInt | None = Field(
        None, ge=0, le=1_000_000,
        description="total accelerator cards, split over the center's models as today",
    )  # fmt: skip
    inventory: dict[Key, Annotated[int, Field(ge=0, le=1_000_000)]] | None = Field(
        None, max_length=20, description="cards per accelerator model (replaces the inventory)"
    )
    cpu_cores: JsonInt | None = Field(None, ge=0, le=100_000_000)
    green_ppa_share: float | None = Field(
        None,
        ge=0,
        le=1,
        description="share of energy bought as green power (PPA)",
        strict=True,
    )


class ScenarioEdits(BaseModel):
    """Changes to the chosen scenario before it is simulated."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    capacity_scale: float = Field(
        1.0,
        ge=0,
        le=10,
        description="multiply every center's cards and CPU cores",
        strict=True,
    )
    tariff_scale: float = Field(
        1.0,
        ge=0.1,
        le=10,
        description="multiply every province's grid electricity tariff",
        strict=True,
    )
    centers: dict[Key, CenterEdit] = Field(
        default_factory=dict, max_length=200, description="per-center changes, by center id"
    )


class TraceUpload(BaseModel):
    """A workload trace, as the text of its CSV file (formats: docs/formats-traces.md)."""

    model_config = ConfigDict(extra="forbid")

    format: TraceFormat = "suanwang"
    name: str = Field(
        "trace.csv", pattern=r"^[\w.+-][\w .+-]{0,99}$", description="the file's name (messages)"
    )
    text: str = Field(min_length=1, max_length=MAX_TRACE_CHARS, description="the CSV text")


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
    jobs: JsonInt | None = Field(
        None, ge=10, le=MAX_JOBS,
        description=f"synthetic jobs (default {SYNTHETIC_JOBS}); with a trace: simulate at most "
        "its first N",
    )  # fmt: skip
    days: float = Field(
        1.0, gt=0, le=7, description="synthetic: days over which jobs arrive", strict=True
    )
    load: float | None = Field(
        None,
        gt=0,
        le=1.5,
        description="synthetic: scale durations to this load",
        strict=True,
    )
    seed: JsonInt = Field(0, ge=0, le=2**31 - 1)
    start: datetime = Field(
        default_factory=lambda: datetime(2025, 7, 1, tzinfo=UTC),
        description="first day (UTC; years 2000 to 2100)",
    )
    drain_days: float = Field(
        2.0, ge=0, le=14, description="simulated days after arrivals", strict=True
    )
    bound: bool = Field(False, description="also solve the offline LP bound (slower)", strict=True)

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


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a request (``loc`` inside the body); ``line``: of the trace file."""

    loc: tuple[str | int, ...]
    msg: str
    input: Any = None
    type: str = "whatif"
    line: int | None = None
    field: str | None = None

    def error(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "loc": ("body", *self.loc), "msg": self.msg,
                               "input": self.input}  # fmt: skip
        if self.line is not None:
            out.update(line=self.line, field=self.field)
        return out


class InputError(ValueError):
    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(p.msg for p in self.problems))


def scenario_choices(served: Scenario) -> dict[str, Scenario]:
    """The scenarios a run may use: the served one, then every bundled one, by id."""
    choices = {SERVED: served}
    for name in BUILTIN:
        choices[name] = _bundled(name)
    return choices


@functools.cache
def _bundled(name: str) -> Scenario:
    return load_scenario(name)


def choose(served: Scenario, name: str) -> Scenario:
    choices = scenario_choices(served)
    if name not in choices:
        known = ", ".join(choices)
        raise InputError([Problem(("scenario",), f"no scenario {name!r} (choose from {known})",
                                  name)])  # fmt: skip
    return choices[name]


def compact_yaml(text: str, label: str) -> str:
    """A scenario.yaml ``text`` without comments, sources and defaults: short enough to edit in
    the browser (the built-in china is 113 kB with its sources, about 32 kB without)."""
    spec, _, problems = parse_scenario_text(text, label)
    if spec is None or problems:
        raise ScenarioError(problems)
    return yaml.dump(
        _without_sources(spec.model_dump(mode="json", exclude_defaults=True)),
        Dumper=_FlowLeaves, sort_keys=False, allow_unicode=True, width=100,
    )  # fmt: skip


def _without_sources(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_sources(v) for k, v in value.items() if k not in ("source", "sources")}
    if isinstance(value, list):
        return [_without_sources(v) for v in value]
    return value


class _FlowLeaves(yaml.SafeDumper):
    """Mappings of plain values on one line (``{id: x, lat: 1.0}``), others as blocks."""


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.MappingNode:
    flow = all(not isinstance(v, dict | list) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=flow)


_FlowLeaves.add_representer(dict, _represent_dict)


def scenario_yaml(served_setting: str, name: str) -> str:
    """The compact YAML of scenario ``name`` (``served``: as the server was started with)."""
    if name == SERVED:
        if served_setting in BUILTIN:
            return compact_yaml(builtin_text(served_setting), served_setting)
        path = Path(served_setting) / "scenario.yaml"
        return compact_yaml(path.read_text("utf-8"), str(path))
    return compact_yaml(builtin_text(name), name)


def from_yaml(text: str) -> Scenario:
    """The scenario of a scenario.yaml text; :class:`InputError` names each problem's line."""
    _, _, problems = parse_scenario_text(text, YAML_LABEL)
    if not problems:
        with tempfile.TemporaryDirectory(prefix="suanwang-whatif-") as tmp:
            (Path(tmp) / "scenario.yaml").write_text(text, encoding="utf-8")
            try:
                return load_scenario(Path(tmp))
            except ScenarioError as exc:  # not expected: the text was just checked
                problems = exc.problems
    raise InputError(
        [
            Problem(("scenario_yaml",), f"{YAML_LABEL}:{p.line or 1}: {p.field or 'file'}: "
                    f"{p.message}", type="scenario", line=p.line or 1, field=p.field or "file")
            for p in problems
        ]
    )  # fmt: skip


def _split(inventory: tuple[tuple[str, int], ...], total: int) -> tuple[tuple[str, int], ...]:
    """``total`` cards over the models of ``inventory`` in its proportions (largest remainder)."""
    have = sum(n for _, n in inventory)
    if have == 0:
        return inventory
    shares = [(model, total * n / have) for model, n in inventory]
    counts = {model: int(x) for model, x in shares}
    left = total - sum(counts.values())
    by_remainder = sorted(shares, key=lambda mx: (-(mx[1] - int(mx[1])), mx[0]))
    for model, _ in by_remainder[:left]:
        counts[model] += 1
    return tuple((model, counts[model]) for model, _ in inventory)


def _edit_center(center: Center, edit: CenterEdit | None, scale: float, scenario: Scenario,
                 problems: list[Problem]) -> Center:  # fmt: skip
    inventory = tuple((m, round(n * scale)) for m, n in center.inventory)
    cpu_cores = round(center.cpu_cores * scale)
    changes: dict[str, Any] = {}
    if edit is not None:
        loc = ("edits", "centers", center.id)
        if edit.inventory is not None:
            for model in edit.inventory:
                if model not in scenario.catalog:
                    msg = (f"unknown accelerator model {model!r} (models: "
                           f"{', '.join(scenario.catalog.models)})")  # fmt: skip
                    problems.append(Problem((*loc, "inventory", model), msg, model))
            inventory = tuple(sorted(edit.inventory.items()))
        elif edit.cards is not None:
            if center.cards == 0 and edit.cards > 0:
                msg = "this center has no cards to scale: give its inventory per model instead"
                problems.append(Problem((*loc, "cards"), msg, edit.cards))
            inventory = _split(center.inventory, edit.cards)
        if edit.cpu_cores is not None:
            cpu_cores = edit.cpu_cores
        if edit.pue is not None:
            changes["pue"] = edit.pue
        if edit.green_ppa_share is not None:
            changes["power"] = dataclasses.replace(
                center.power, green_ppa_share=edit.green_ppa_share
            )
    return dataclasses.replace(center, inventory=inventory, cpu_cores=cpu_cores, **changes)


def _scale_tariff(province: Province, scale: float) -> Province:
    tariff = Tariff(province.tariff.flat_cny_per_kwh * scale, province.tariff.periods)
    return dataclasses.replace(province, tariff=tariff)


def apply_edits(scenario: Scenario, edits: ScenarioEdits) -> Scenario:
    """``scenario`` with ``edits`` applied; :class:`InputError` names every bad edit."""
    problems: list[Problem] = []
    ids = {c.id for c in scenario.centers}
    for cid in edits.centers:
        if cid not in ids:
            msg = f"no center {cid!r} in scenario {scenario.name}"
            problems.append(Problem(("edits", "centers", cid), msg, cid))
    centers = tuple(
        _edit_center(c, edits.centers.get(c.id), edits.capacity_scale, scenario, problems)
        for c in scenario.centers
    )
    if problems:
        raise InputError(problems)
    if edits == ScenarioEdits():
        return scenario
    return dataclasses.replace(
        scenario,
        name=f"{scenario.name} (edited)",
        centers=centers,
        provinces=tuple(_scale_tariff(p, edits.tariff_scale) for p in scenario.provinces),
    )


def describe_edits(scenario: Scenario, edits: ScenarioEdits) -> list[str]:
    """The edits in words, for the report (``zhongwei: PUE 1.25 → 1.5``)."""
    out = []
    if edits.capacity_scale != 1:
        out.append(f"every center's capacity × {edits.capacity_scale:g}")
    if edits.tariff_scale != 1:
        out.append(f"grid tariffs × {edits.tariff_scale:g}")
    for cid, e in sorted(edits.centers.items()):
        c = scenario.center(cid)
        if e.pue is not None:
            out.append(f"{cid}: PUE {c.pue:g} → {e.pue:g}")
        if e.inventory is not None:
            inv = ", ".join(f"{m} {n}" for m, n in sorted(e.inventory.items())) or "none"
            out.append(f"{cid}: cards {inv}")
        elif e.cards is not None:
            out.append(f"{cid}: cards {c.cards} → {e.cards}")
        if e.cpu_cores is not None:
            out.append(f"{cid}: CPU cores {c.cpu_cores} → {e.cpu_cores}")
        if e.green_ppa_share is not None:
            out.append(f"{cid}: green PPA share {c.power.green_ppa_share:g} → "
                       f"{e.green_ppa_share:g}")  # fmt: skip
    return out


def trace_workload(net: Network, trace: TraceUpload, *, jobs: int | None, seed: int) -> Workload:
    """The jobs of an uploaded trace: the first ``jobs`` (at most :data:`MAX_JOBS`) arriving
    within :data:`MAX_ARRIVAL_DAYS`; :class:`InputError` lists every problem with its line."""
    with tempfile.TemporaryDirectory(prefix="suanwang-whatif-") as tmp:
        path = Path(tmp) / "trace.csv"
        path.write_text(trace.text, encoding="utf-8")
        try:
            result = load_trace(path, trace.format, net, seed=seed)
        except TraceError as exc:
            problems = [
                Problem(
                    ("trace", "text"),
                    f"{trace.name}:{p.line}: {p.field}: {p.message}",
                    type="trace",
                    line=p.line,
                    field=p.field,
                )
                for p in exc.problems
            ]
            raise InputError(problems) from None
    skipped = dict(result.skipped)
    horizon = MAX_ARRIVAL_DAYS * 86400.0
    selected = [j for j in result.jobs if j.submit_s <= horizon]
    if len(selected) < len(result.jobs):
        skipped[f"arriving after day {MAX_ARRIVAL_DAYS:g}"] = len(result.jobs) - len(selected)
    cap = min(jobs if jobs is not None else MAX_JOBS, MAX_JOBS)
    if len(selected) > cap:
        skipped[f"beyond the first {cap} jobs"] = len(selected) - cap
        selected = selected[:cap]
    if not selected:
        why = ", ".join(f"{k}: {n}" for k, n in skipped.items()) or "no data rows"
        msg = f"{trace.name}: no job to simulate ({result.rows} rows; skipped {why})"
        raise InputError([Problem(("trace", "text"), msg, None, "trace")])
    span_days = max(j.submit_s for j in selected) / 86400.0
    return Workload(selected, max(span_days, 1.0 / 24.0), trace.name, skipped, result.rows)
