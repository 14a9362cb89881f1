"""Reading a trace file: the header, the rows, typed cells, and every problem recorded with
its file, line and field; the load's context (network facts, kept jobs, skip counts) and the
reproducible draws (:func:`stable_uniform`) for what a trace does not say."""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from suanwang.core.hardware import REFERENCE_MODEL, Accelerator, Precision
from suanwang.core.jobs import Job, JobKind, Priority
from suanwang.core.network import Network
from suanwang.sim.traces.columns import COLUMNS, REQUIRED
from suanwang.sim.workload import origin_sampler

MAX_PROBLEMS_SHOWN = 100
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


@dataclass(frozen=True, slots=True)
class TraceProblem:
    """One thing wrong with a trace file. ``line`` is 1-based (header = 1; 0 = whole file)."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class TraceError(ValueError):
    """A trace file is malformed; ``problems`` lists everything found, in file order."""

    def __init__(self, problems: Sequence[TraceProblem]) -> None:
        self.problems: tuple[TraceProblem, ...] = tuple(problems)
        shown = [str(p) for p in self.problems[:MAX_PROBLEMS_SHOWN]]
        more = len(self.problems) - len(shown)
        if more > 0:
            shown.append(f"... and {more} more")
        n = len(self.problems)
        files = sorted({p.file for p in self.problems})
        head = f"{n} problem{'s' if n != 1 else ''} in trace {', '.join(files)}"
        super().__init__("\n".join([head, *shown]))


def stable_uniform(*parts: object) -> float:
    """A uniform number in [0, 1) determined by ``parts`` (sha256; stable across runs/platforms)."""
    key = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0**64


class Context:
    """State of one load: network facts, problems, kept jobs and skip counts."""

    def __init__(self, file: str, net: Network, seed: int) -> None:
        self.file = file
        self.net = net
        self.seed = seed
        self.problems: list[TraceProblem] = []
        self.jobs: list[tuple[int, Job]] = []
        self.skipped: dict[str, int] = {}
        self.rows = 0
        self.seen_ids: dict[str, int] = {}
        self._origin_places: list[str] | None = None
        self._origin_cum: list[float] = []
        catalog = net.scenario.catalog
        self.reference: Accelerator | None = (
            catalog.get(REFERENCE_MODEL) if REFERENCE_MODEL in catalog else None
        )
        self.cpu_model: Accelerator | None = next(
            (a for a in catalog.accelerators if a.is_cpu), None
        )

    def problem(self, line: int, field: str, message: str) -> None:
        self.problems.append(TraceProblem(self.file, line, field, message))

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def draw_origin(self, *key: object) -> str:
        """The origin for ``key``: inverse CDF of origin_sampler(net) at stable_uniform(key)."""
        if self._origin_places is None:
            places, p = origin_sampler(self.net)
            self._origin_places = places
            self._origin_cum = list(accumulate(float(x) for x in p))
        u = stable_uniform(*key)
        i = bisect.bisect_right(self._origin_cum, u)
        return self._origin_places[min(i, len(self._origin_places) - 1)]

    def gpu_work(self, duration_s: float, units: int, kind: JobKind) -> float:
        """SCU of ``units`` reference cards busy for ``duration_s`` at the kind's precision."""
        return self.net.scenario.catalog.work_scu(duration_s / 3600.0, units, 0, kind.precision)

    def cpu_work(self, duration_s: float, cpus: int) -> float:
        return self.net.scenario.catalog.work_scu(duration_s / 3600.0, 0, cpus, Precision.CPU)

    def keep(self, line: int, job: Job) -> None:
        self.jobs.append((line, job))


class Row:
    """One data row with typed accessors that record problems against (line, column)."""

    def __init__(self, ctx: Context, line: int, values: dict[str, str]) -> None:
        self.ctx = ctx
        self.line = line
        self.values = values
        self.failed = False

    def bad(self, field: str, message: str) -> None:
        self.failed = True
        self.ctx.problem(self.line, field, message)

    def text(self, col: str, *, required: bool = False) -> str | None:
        """The stripped value; None if the column is absent or the cell empty."""
        if col not in self.values:
            return None  # a missing required column is reported once, at the header
        value = self.values[col].strip()
        if not value:
            if required:
                self.bad(col, "value is required")
            return None
        return value

    def _float(self, col: str, required: bool, what: str) -> tuple[str, float] | None:
        """The cell's text and its value as a float; None if empty, or if it does not read as
        a float (a problem: not ``what``)."""
        s = self.text(col, required=required)
        if s is None:
            return None
        try:
            return s, float(s)
        except ValueError:
            self.bad(col, f"not {what}: {s!r}")
            return None

    def number(self, col: str, *, required: bool = False, positive: bool = False) -> float | None:
        """A finite number >= 0 (> 0 with ``positive``); None if empty or invalid."""
        cell = self._float(col, required, "a number")
        if cell is None:
            return None
        s, x = cell
        if not math.isfinite(x):
            self.bad(col, f"not a finite number: {s!r}")
            return None
        if x < 0 or (positive and x == 0):
            self.bad(col, f"must be {'> 0' if positive else '>= 0'}, got {s}")
            return None
        return x

    def integer(
        self, col: str, *, required: bool = False, lo: int = 0, hi: int | None = None
    ) -> int | None:
        """An integer in [lo, hi] (``8`` or ``8.0``); None if empty or invalid."""
        cell = self._float(col, required, "an integer")
        if cell is None:
            return None
        s, x = cell
        if not math.isfinite(x) or not x.is_integer():
            self.bad(col, f"not an integer: {s!r}")
            return None
        n = int(x)
        if n < lo or (hi is not None and n > hi):
            rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
            self.bad(col, f"must be an integer {rng}, got {s}")
            return None
        return n

    def unique_id(self, col: str, job_id: str) -> None:
        """Record ``job_id`` as used by this row; a second use is a problem."""
        first = self.ctx.seen_ids.setdefault(job_id, self.line)
        if first != self.line:
            self.bad(col, f"duplicate job id {job_id!r} (first on line {first})")

    def boolean(self, col: str) -> bool | None:
        s = self.text(col)
        if s is None:
            return None
        v = s.lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        self.bad(col, f"not a boolean (true/false/1/0/yes/no): {s!r}")
        return None

    def kind(self, col: str) -> JobKind | None:
        s = self.text(col)
        if s is None:
            return None
        try:
            return JobKind(s.lower())
        except ValueError:
            names = ", ".join(k.value for k in JobKind)
            self.bad(col, f"unknown kind {s!r} (expected one of {names})")
            return None

    def priority(self, col: str) -> Priority | None:
        s = self.text(col)
        if s is None:
            return None
        try:
            return Priority(s.lower())
        except ValueError:
            names = ", ".join(p.value for p in Priority)
            self.bad(col, f"unknown priority {s!r} (expected one of {names})")
            return None

    def origin(self, col: str) -> str | None:
        s = self.text(col)
        if s is not None and s not in self.ctx.net.place_index:
            self.bad(col, f"unknown origin {s!r}: not a province or city of the scenario")
            return None
        return s


def read_table(
    path: Path, ctx: Context, columns: Sequence[str], required: frozenset[str]
) -> Iterator[Row] | None:
    """Check the header and return an iterator of data rows (None if there is nothing to read)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        ctx.problem(0, "file", f"cannot read: {exc.strerror or exc}")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        ctx.problem(line, "file", f"not UTF-8 text (byte offset {exc.start})")
        return None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        ctx.problem(1, "header", f"not valid CSV: {exc}")
        return None
    if header is None or not any(h.strip() for h in header):
        ctx.problem(1, "header", f"missing header; expected columns {','.join(columns)}")
        return None
    names = [h.strip() for h in header]
    if not set(names) & set(columns):
        others = [f for f, cols in COLUMNS.items() if REQUIRED[f] <= set(names)]
        hint = f"; it looks like format {others[0]!r}" if others else ""
        ctx.problem(1, "header", f"has none of the columns {','.join(columns)}{hint}")
        return None
    seen: set[str] = set()
    for name in names:
        if not name:
            ctx.problem(1, "header", "empty column name")
        elif name in seen:
            ctx.problem(1, name, "duplicate column")
        elif name not in columns:
            ctx.problem(1, name, f"unknown column (known: {','.join(columns)})")
        seen.add(name)
    for name in columns:
        if name in required and name not in seen:
            ctx.problem(1, name, "required column is missing from the header")
    return rows(reader, names, ctx)


def rows(reader: Iterator[list[str]], names: list[str], ctx: Context) -> Iterator[Row]:
    line_num = getattr(reader, "line_num", 1)
    while True:
        start = line_num + 1
        try:
            values = next(reader, None)
        except csv.Error as exc:
            ctx.problem(start, "row", f"not valid CSV: {exc}")
            return
        line_num = getattr(reader, "line_num", start)
        if values is None:
            return
        if not any(v.strip() for v in values):
            continue  # blank line
        if len(values) != len(names):
            ctx.rows += 1
            ctx.problem(start, "row", f"has {len(values)} fields, the header has {len(names)}")
            continue
        yield Row(ctx, start, dict(zip(names, values, strict=True)))
