"""Load and validate scenarios: the built-in ones and directories users write.

A scenario directory holds ``scenario.yaml`` (see :mod:`suanwang.scenarios.schema`) and optional
``signals/<center_id>.csv`` files with header
``time,price_cny_per_kwh,carbon_g_per_kwh,green_fraction``. Every problem found is reported
with file, line and field; loading fails with :class:`ScenarioError` listing all of them.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ValidationError

from suanwang.core.hardware import Accelerator, Catalog
from suanwang.core.scenario import (
    Center,
    City,
    Cluster,
    DeferralRule,
    Hub,
    Link,
    MeasuredSeries,
    NetworkParams,
    PowerSupply,
    Province,
    Scenario,
    SignalModelParams,
    Tariff,
    TariffPeriod,
)
from suanwang.scenarios.schema import AcceleratorSpec, ScenarioSpec

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

BUILTIN = ("china",)
SIGNAL_HEADER = ("time", "price_cny_per_kwh", "carbon_g_per_kwh", "green_fraction")
_Core = TypeVar("_Core", bound="DataclassInstance")


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ScenarioError(ValueError):
    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# --------------------------------------------------------------------------- YAML with lines


#: Bounds on every YAML file and text the platform reads (scenarios, tenants files, job files,
#: offers files, ``scenario_yaml``): nesting depth, nodes once aliases are expanded, the
#: characters of a number, the whole text. Within them nothing can exhaust the stack, the
#: memory or Python's limit on the digits of an int; beyond them the reader gets a clear error.
MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 1_000_000
MAX_NUMBER_CHARS = 64
MAX_YAML_CHARS = 16 * 1024 * 1024

_NUMBERISH = yaml.resolver.Resolver()


def _looks_numeric(value: str) -> bool:
    """A plain scalar that YAML would read as an int or a float."""
    tag = _NUMBERISH.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    return tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def check_yaml_bounds(text: str, file: str) -> None:
    """Walk ``text``'s YAML events (no recursion, nothing built) and refuse it, with the line,
    if it is nested deeper than :data:`MAX_YAML_DEPTH`, expands (aliases included) to more than
    :data:`MAX_YAML_NODES` nodes or has a number longer than :data:`MAX_NUMBER_CHARS`."""

    def refuse(event: yaml.Event, message: str) -> ScenarioError:
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        return ScenarioError([Problem(file, line, "", message)])

    if len(text) > MAX_YAML_CHARS:
        raise ScenarioError(
            [Problem(file, None, "", f"too large: over {MAX_YAML_CHARS:,} characters")]
        )
    nodes = 0
    sizes: dict[str, int] = {}  # an anchor's nodes, its aliases' included
    open_: list[tuple[str | None, int]] = []  # (anchor, nodes before it) of open collections
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_) >= MAX_YAML_DEPTH:
                raise refuse(event, f"nested too deeply (more than {MAX_YAML_DEPTH} levels)")
            open_.append((event.anchor, nodes))
            nodes += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before = open_.pop()
            if anchor is not None:
                sizes[anchor] = nodes - before
        elif isinstance(event, yaml.ScalarEvent):
            nodes += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
            plain = event.implicit[0] and event.style is None
            if plain and len(event.value) > MAX_NUMBER_CHARS and _looks_numeric(event.value):
                raise refuse(event, f"a number longer than {MAX_NUMBER_CHARS} characters")
        elif isinstance(event, yaml.AliasEvent):
            nodes += sizes.get(event.anchor or "", 1)
        if nodes > MAX_YAML_NODES:
            raise refuse(event, f"too large: over {MAX_YAML_NODES:,} values (aliases expanded)")


def safe_yaml(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    """The data and node tree of the YAML ``text`` (``file`` labels problems), within the
    bounds above: the one reader of every YAML input. Raises :class:`ScenarioError` with the
    line for invalid or oversized YAML, never anything else."""
    try:
        check_yaml_bounds(text, file)
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ScenarioError([Problem(file, line, "", f"not valid YAML: {exc}")]) from None
    except ScenarioError:
        raise
    except (ValueError, OverflowError, RecursionError) as exc:  # what bounds cannot foresee
        raise ScenarioError([Problem(file, None, "", f"not readable: {exc}")]) from None
    return data, node


_compose = safe_yaml


def _line_of(node: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """Line (1-based) of the YAML node at path ``loc``, or of its deepest existing parent.

    A step of ``loc`` that names the mapping's ``type`` (pydantic puts a tagged union's tag in
    the path: ``executor.local.cpus``) stays on that mapping."""
    best = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(key):
                    nxt = v
                    best = k.start_mark.line + 1
                    break
            tags = [v.value for k, v in node.value if k.value == "type"]
            if nxt is None and tags == [str(key)]:
                continue
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            node = node.value[key] if key < len(node.value) else None
            if node is not None:
                best = node.start_mark.line + 1
        else:
            break
        if node is None:
            break
    return best


def duplicate_keys(
    node: yaml.Node | None, loc: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], int, str]]:
    """(path, line, message) for every key given twice in a mapping (YAML keeps the last)."""
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for k, v in node.value:
            key = str(k.value)
            line = k.start_mark.line + 1
            if key in first:
                yield (*loc, key), line, f"given twice (also on line {first[key]})"
            else:
                first[key] = line
            yield from duplicate_keys(v, (*loc, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            yield from duplicate_keys(v, (*loc, i))


def _field(loc: Sequence[str | int]) -> str:
    out = ""
    for k in loc:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out


# --------------------------------------------------------------------------- accelerators


def _builtin_text(name: str) -> str:
    return resources.files("suanwang.scenarios").joinpath("data", name).read_text("utf-8")


def builtin_catalog_specs() -> list[AcceleratorSpec]:
    data = yaml.safe_load(_builtin_text("accelerators.yaml"))
    return [AcceleratorSpec.model_validate(a) for a in data["accelerators"]]


def _from_spec(cls: type[_Core], spec: BaseModel, **converted: object) -> _Core:
    """A core dataclass from its file schema (the names match, see :mod:`~.schema`): each
    field of ``cls`` is the same-named field of ``spec``, but those given in ``converted``."""
    same = {f.name: getattr(spec, f.name) for f in fields(cls) if f.name not in converted}
    return cls(**same, **converted)


def _accelerator(a: AcceleratorSpec) -> Accelerator:
    return _from_spec(Accelerator, a)


# --------------------------------------------------------------------------- checks


def _cross_check(spec: ScenarioSpec, models: set[str]) -> list[tuple[tuple[str | int, ...], str]]:
    """Reference and consistency checks pydantic cannot express; (path, message) pairs."""
    out: list[tuple[tuple[str | int, ...], str]] = []

    def unique(items: Sequence[Any], section: str) -> set[str]:
        seen: set[str] = set()
        for i, it in enumerate(items):
            if it.id in seen:
                out.append(((section, i, "id"), f"duplicate id {it.id!r}"))
            seen.add(it.id)
        return seen

    hubs = unique(spec.hubs, "hubs")
    clusters = unique(spec.clusters, "clusters")
    provinces = unique(spec.provinces, "provinces")
    cities = unique(spec.cities, "cities")
    unique(spec.centers, "centers")
    for i, city in enumerate(spec.cities):
        if city.id in provinces:
            out.append((("cities", i, "id"), f"city id {city.id!r} is also a province id"))
        if city.province not in provinces:
            out.append((("cities", i, "province"), f"unknown province {city.province!r}"))
    for i, cl in enumerate(spec.clusters):
        if cl.hub not in hubs:
            out.append((("clusters", i, "hub"), f"unknown hub {cl.hub!r}"))
    for i, p in enumerate(spec.provinces):
        hours: set[int] = set()
        for j, per in enumerate(p.tariff.periods):
            loc: tuple[str | int, ...] = ("provinces", i, "tariff", "periods", j)
            if per.end_h <= per.start_h:
                out.append(((*loc, "end_h"), f"end_h {per.end_h} must be after start_h"))
            span = set(range(per.start_h, per.end_h))
            if span & hours:
                out.append((loc, f"period {per.name!r} overlaps another period"))
            hours |= span
    for i, c in enumerate(spec.centers):
        if c.province not in provinces:
            out.append((("centers", i, "province"), f"unknown province {c.province!r}"))
        if c.hub is not None and c.hub not in hubs:
            out.append((("centers", i, "hub"), f"unknown hub {c.hub!r}"))
        if c.cluster is not None and c.cluster not in clusters:
            out.append((("centers", i, "cluster"), f"unknown cluster {c.cluster!r}"))
        for model, n in c.inventory.items():
            if model not in models:
                known = ", ".join(sorted(models))
                out.append(
                    (("centers", i, "inventory", model), f"unknown accelerator {model!r} ({known})")
                )
            if n < 0:
                out.append((("centers", i, "inventory", model), "card count must be >= 0"))
        if not c.inventory and c.cpu_cores == 0:
            out.append((("centers", i), "center has neither accelerators nor cpu_cores"))
        _ = cities
    try:
        ZoneInfo(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        out.append((("timezone",), f"unknown time zone {spec.timezone!r}"))
    return out


# --------------------------------------------------------------------------- signals CSV


def _parse_time(text: str) -> datetime:
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    t = datetime.fromisoformat(value)
    if t.tzinfo is None:
        raise ValueError("needs a UTC offset (e.g. 2025-07-01T00:00:00+08:00 or ...Z)")
    return t.astimezone(UTC)


def read_signal_csv(path: Path, label: str) -> tuple[MeasuredSeries | None, list[Problem]]:
    problems: list[Problem] = []
    times: list[datetime] = []
    cols: list[list[float]] = [[], [], []]
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != SIGNAL_HEADER:
            got = ",".join(header) if header else "nothing"
            return None, [
                Problem(label, 1, "header", f"expected {','.join(SIGNAL_HEADER)}, got {got}")
            ]
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(SIGNAL_HEADER):
                problems.append(
                    Problem(
                        label, line, "row", f"expected {len(SIGNAL_HEADER)} fields, got {len(row)}"
                    )
                )
                continue
            try:
                t = _parse_time(row[0])
            except ValueError as exc:
                problems.append(Problem(label, line, "time", f"{row[0]!r}: {exc}"))
                continue
            vals: list[float] = []
            for k, (name, raw) in enumerate(zip(SIGNAL_HEADER[1:], row[1:], strict=True)):
                try:
                    v = float(raw)
                    if not math.isfinite(v):
                        raise ValueError
                except ValueError:
                    problems.append(Problem(label, line, name, f"{raw!r} is not a number"))
                    break
                if k == 1 and v < 0:
                    problems.append(Problem(label, line, name, f"{v} must be >= 0"))
                    break
                if k == 2 and not 0.0 <= v <= 1.0:
                    problems.append(Problem(label, line, name, f"{v} must be within 0..1"))
                    break
                vals.append(v)
            else:
                if times and t <= times[-1]:
                    problems.append(Problem(label, line, "time", "times must increase strictly"))
                    continue
                times.append(t)
                for col, v in zip(cols, vals, strict=True):
                    col.append(v)
    if not times and not problems:
        problems.append(Problem(label, None, "", "no data rows"))
    if problems:
        return None, problems
    return MeasuredSeries(tuple(times), tuple(cols[0]), tuple(cols[1]), tuple(cols[2])), []


# --------------------------------------------------------------------------- build


def _build(spec: ScenarioSpec, catalog: Catalog, measured: dict[str, MeasuredSeries]) -> Scenario:
    return Scenario(
        name=spec.name,
        description=spec.description,
        timezone=spec.timezone,
        catalog=catalog,
        hubs=tuple(Hub(h.id, h.name, h.name_zh, h.lat, h.lon) for h in spec.hubs),
        clusters=tuple(
            Cluster(c.id, c.hub, c.name, c.name_zh, c.lat, c.lon) for c in spec.clusters
        ),
        provinces=tuple(
            _from_spec(
                Province,
                p,
                tariff=Tariff(
                    p.tariff.flat_cny_per_kwh,
                    tuple(
                        TariffPeriod(t.name, t.start_h, t.end_h, t.ratio) for t in p.tariff.periods
                    ),
                ),
            )
            for p in spec.provinces
        ),
        cities=tuple(City(c.id, c.name_zh, c.province, c.lat, c.lon) for c in spec.cities),
        network=NetworkParams(
            fibre_km_per_ms=spec.network.fibre_km_per_ms,
            fibre_route_factor=spec.network.fibre_route_factor,
            base_latency_ms=spec.network.base_latency_ms,
            same_region=Link(
                spec.network.regions.same_region.bandwidth_gbps,
                spec.network.regions.same_region.transfer_cost_cny_per_gb,
            ),
            cross_region=Link(
                spec.network.regions.cross_region.bandwidth_gbps,
                spec.network.regions.cross_region.transfer_cost_cny_per_gb,
            ),
        ),
        centers=tuple(
            _from_spec(
                Center,
                c,
                inventory=tuple(sorted(c.inventory.items())),
                power=_from_spec(PowerSupply, c.power),
            )
            for c in spec.centers
        ),
        signal_model=SignalModelParams(
            **spec.signal_model.model_dump(exclude={"source"}),
        ),
        deferral=DeferralRule(**spec.deferral.model_dump(exclude={"source"})),
        measured=measured,
    )


def parse_scenario_text(
    text: str, label: str
) -> tuple[ScenarioSpec | None, Catalog | None, list[Problem]]:
    """Parse and check a scenario.yaml text; returns the spec, its catalog and all problems."""
    try:
        data, node = _compose(text, label)
    except ScenarioError as exc:
        return None, None, exc.problems
    if not isinstance(data, dict):
        return None, None, [Problem(label, 1, "", "top level must be a mapping")]
    try:
        spec = ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        probs = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            probs.append(Problem(label, _line_of(node, loc), _field(loc), err["msg"]))
        return None, None, probs
    specs = {a.model: a for a in builtin_catalog_specs()}
    for a in spec.accelerators:
        specs[a.model] = a
    catalog = Catalog(tuple(_accelerator(a) for a in specs.values()))
    problems = [
        Problem(label, _line_of(node, loc), _field(loc), msg)
        for loc, msg in _cross_check(spec, set(specs))
    ]
    return spec, catalog, problems


def validate_dir(path: Path) -> list[Problem]:
    """Every problem in a scenario directory (empty list: valid)."""
    _, problems = _load_dir(path)
    return problems


def _load_dir(path: Path) -> tuple[Scenario | None, list[Problem]]:
    yaml_path = path / "scenario.yaml"
    if not path.is_dir():
        return None, [Problem(str(path), None, "", "not a directory")]
    if not yaml_path.is_file():
        return None, [Problem(str(yaml_path), None, "", "missing scenario.yaml")]
    spec, catalog, problems = parse_scenario_text(yaml_path.read_text("utf-8"), str(yaml_path))
    measured: dict[str, MeasuredSeries] = {}
    center_ids = {c.id for c in spec.centers} if spec else set()
    sig_dir = path / "signals"
    if sig_dir.is_dir():
        for csv_path in sorted(sig_dir.iterdir()):
            label = str(csv_path)
            if csv_path.suffix != ".csv":
                problems.append(Problem(label, None, "", "signal files must be <center_id>.csv"))
                continue
            cid = csv_path.stem
            if spec is not None and cid not in center_ids:
                problems.append(Problem(label, None, "", f"no center {cid!r} in scenario.yaml"))
                continue
            series, probs = read_signal_csv(csv_path, label)
            problems += probs
            if series is not None:
                measured[cid] = series
    if problems or spec is None or catalog is None:
        return None, problems
    return _build(spec, catalog, measured), []


def load_scenario(name_or_path: str | Path) -> Scenario:
    """``china`` (built-in) or a scenario directory; raises :class:`ScenarioError`."""
    if isinstance(name_or_path, str) and name_or_path in BUILTIN:
        label = f"<built-in {name_or_path}>/scenario.yaml"
        spec, catalog, problems = parse_scenario_text(_builtin_text(f"{name_or_path}.yaml"), label)
        if problems or spec is None or catalog is None:
            raise ScenarioError(problems)
        return _build(spec, catalog, {})
    scenario, problems = _load_dir(Path(name_or_path))
    if scenario is None:
        raise ScenarioError(problems)
    return scenario


def builtin_text(name: str) -> str:
    """The YAML source of a built-in scenario (for export)."""
    if name not in BUILTIN:
        raise ScenarioError([Problem(name, None, "", f"no built-in scenario {name!r}")])
    return _builtin_text(f"{name}.yaml")
