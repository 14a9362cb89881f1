"""Load job traces (CSV) into :class:`~suanwang.core.jobs.Job` lists for the simulator.

Three formats (columns, units, defaults and every seeded rule: ``docs/formats-traces.md``):

* ``suanwang``: the platform's own format; only ``submit_time_s`` and ``duration_s`` required.
* ``philly``: the Microsoft Philly per-job extract ``timestamp,duration,num_gpus,gpu_time,cluster``.
* ``alibaba-gpu-2023``: the pod list of Alibaba ``cluster-trace-gpu-v2023``.

Durations in every format are runtimes on the reference chip (A100), so the work of a job on
``n`` cards is ``duration_h x n x speed_scu_per_hour(A100, kind precision)`` SCU (= 1 SCU per
card-hour), and of a CPU-only job ``duration_h x cpus x speed_scu_per_hour(cpu model, CPU)``.

Whatever a trace does not say (origin, part of the job kind) is drawn reproducibly: a draw is
``u = int.from_bytes(sha256("\\x1f".join(parts)).digest()[:8], "big") / 2**64`` from a
tuple of strings that includes the seed, and an origin is the first place of
:func:`~suanwang.sim.workload.origin_sampler` whose cumulative probability exceeds ``u``. A job's
draws therefore depend only on the seed and the job's own key, not on the other rows.

Every problem in a file is collected (file, 1-based line with the header on line 1, field,
message) and reported together in one :class:`TraceError`; rows that a format legitimately
leaves out (e.g. pods that were never scheduled) are counted by reason in
:attr:`TraceResult.skipped`.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import accumulate
from pathlib import Path

from suanwang.core.hardware import REFERENCE_MODEL, Accelerator, Precision, speed_scu_per_hour
from suanwang.core.jobs import ANY_ACCELERATOR, Job, JobKind
from suanwang.core.network import Network
from suanwang.sim.workload import origin_sampler

TRACE_FORMATS = ("suanwang", "philly", "alibaba-gpu-2023")

#: Columns of each format: (all known columns in canonical order, required columns).
SUANWANG_COLUMNS = (
    "job_id",
    "submit_time_s",
    "duration_s",
    "gpus",
    "cpus",
    "mem_gb",
    "kind",
    "origin",
    "accelerator",
    "stacks",
    "deadline_s",
    "data_gb",
    "checkpointable",
)
PHILLY_COLUMNS = ("timestamp", "duration", "num_gpus", "gpu_time", "cluster")
ALIBABA_COLUMNS = (
    "name",
    "cpu_milli",
    "memory_mib",
    "num_gpu",
    "gpu_milli",
    "gpu_spec",
    "qos",
    "pod_phase",
    "creation_time",
    "deletion_time",
    "scheduled_time",
)
_REQUIRED = {
    "suanwang": frozenset({"submit_time_s", "duration_s"}),
    "philly": frozenset({"timestamp", "duration", "num_gpus", "cluster"}),
    "alibaba-gpu-2023": frozenset(ALIBABA_COLUMNS) - {"gpu_spec", "pod_phase"},
}
_COLUMNS = {
    "suanwang": SUANWANG_COLUMNS,
    "philly": PHILLY_COLUMNS,
    "alibaba-gpu-2023": ALIBABA_COLUMNS,
}

MAX_PROBLEMS_SHOWN = 100
PHILLY_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
PHILLY_INTERACTIVE_BELOW_S = 15 * 60
PHILLY_MAX_GPUS = 128
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_ALIBABA_QOS = ("LS", "Burstable", "BE", "Guaranteed")
_ALIBABA_GPU_KIND = {
    "LS": JobKind.INFERENCE,
    "Burstable": JobKind.INTERACTIVE,
    "BE": JobKind.TRAINING,
    "Guaranteed": JobKind.TRAINING,
}
_EPOCH = datetime(1970, 1, 1)


# --------------------------------------------------------------------------- public types


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


@dataclass(frozen=True, slots=True)
class TraceResult:
    """Jobs sorted by ``submit_s`` (first kept submission = 0), skipped rows by reason, rows read.

    ``rows`` counts data rows (not the header, not blank lines): ``len(jobs) + sum(skipped)``.
    """

    jobs: list[Job]
    skipped: dict[str, int]
    rows: int


def load_trace(path: Path, fmt: str, net: Network, *, seed: int = 0) -> TraceResult:
    """Read a trace of format ``fmt`` (one of :data:`TRACE_FORMATS`) for the scenario of ``net``.

    Raises :class:`TraceError` listing every problem if the file cannot be read or is malformed,
    and :class:`ValueError` for an unknown ``fmt``.
    """
    if fmt not in _COLUMNS:
        raise ValueError(
            f"unknown trace format {fmt!r}; expected one of {', '.join(TRACE_FORMATS)}"
        )
    ctx = _Context(str(path), net, seed)
    table = _read_table(Path(path), ctx, _COLUMNS[fmt], _REQUIRED[fmt])
    if table is not None:
        parse = {"suanwang": _suanwang_row, "philly": _philly_row, "alibaba-gpu-2023": _alibaba_row}
        for row in table:
            ctx.rows += 1
            parse[fmt](row, ctx)
    if ctx.problems:
        raise TraceError(ctx.problems)
    ctx.jobs.sort(key=lambda lj: (lj[1].submit_s, lj[0]))
    t0 = ctx.jobs[0][1].submit_s if ctx.jobs else 0.0
    jobs = [replace(job, submit_s=job.submit_s - t0) for _, job in ctx.jobs]
    return TraceResult(jobs=jobs, skipped=dict(sorted(ctx.skipped.items())), rows=ctx.rows)


# --------------------------------------------------------------------------- shared machinery


def stable_uniform(*parts: object) -> float:
    """A uniform number in [0, 1) determined by ``parts`` (sha256; stable across runs/platforms)."""
    key = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0**64


class _Context:
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
        speed = 1.0
        if self.reference is not None:
            speed = speed_scu_per_hour(self.reference, kind.precision)
        return duration_s / 3600.0 * units * speed

    def cpu_work(self, duration_s: float, cpus: int) -> float:
        assert self.cpu_model is not None
        return duration_s / 3600.0 * cpus * speed_scu_per_hour(self.cpu_model, Precision.CPU)

    def keep(self, line: int, job: Job) -> None:
        self.jobs.append((line, job))


class _Row:
    """One data row with typed accessors that record problems against (line, column)."""

    def __init__(self, ctx: _Context, line: int, values: dict[str, str]) -> None:
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

    def number(self, col: str, *, required: bool = False, positive: bool = False) -> float | None:
        """A finite number >= 0 (> 0 with ``positive``); None if empty or invalid."""
        s = self.text(col, required=required)
        if s is None:
            return None
        try:
            x = float(s)
        except ValueError:
            self.bad(col, f"not a number: {s!r}")
            return None
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
        s = self.text(col, required=required)
        if s is None:
            return None
        try:
            x = float(s)
        except ValueError:
            self.bad(col, f"not an integer: {s!r}")
            return None
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

    def origin(self, col: str) -> str | None:
        s = self.text(col)
        if s is not None and s not in self.ctx.net.place_index:
            self.bad(col, f"unknown origin {s!r}: not a province or city of the scenario")
            return None
        return s


def _read_table(
    path: Path, ctx: _Context, columns: Sequence[str], required: frozenset[str]
) -> Iterator[_Row] | None:
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
        others = [f for f, cols in _COLUMNS.items() if _REQUIRED[f] <= set(names)]
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
    return _rows(reader, names, ctx)


def _rows(reader: Iterator[list[str]], names: list[str], ctx: _Context) -> Iterator[_Row]:
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
        yield _Row(ctx, start, dict(zip(names, values, strict=True)))


# --------------------------------------------------------------------------- suanwang


def _suanwang_row(row: _Row, ctx: _Context) -> None:
    net = ctx.net
    line = row.line
    job_id = row.text("job_id") or f"job-{line}"
    row.unique_id("job_id", job_id)
    submit = row.number("submit_time_s", required=True)
    duration = row.number("duration_s", required=True, positive=True)
    gpus_in = row.integer("gpus")
    gpus = 1 if gpus_in is None else gpus_in
    cpus_in = row.integer("cpus")
    cpus = cpus_in if cpus_in is not None else (8 * gpus if gpus > 0 else 8)
    if gpus == 0 and cpus_in == 0:
        row.bad("cpus", "a CPU-only job (gpus 0) needs at least 1 CPU core")
    mem = row.number("mem_gb")
    kind = row.kind("kind") or (JobKind.TRAINING if gpus > 0 else JobKind.ANALYTICS)
    origin = row.origin("origin")

    acc = row.text("accelerator") or ANY_ACCELERATOR
    acc_spec: Accelerator | None = None
    if acc != ANY_ACCELERATOR:
        if acc not in net.known_models:
            row.bad("accelerator", f"unknown accelerator {acc!r}")
        else:
            acc_spec = net.scenario.catalog.get(acc)
            if acc_spec.is_cpu and gpus > 0:
                row.bad("accelerator", f"{acc!r} is a CPU model but gpus is {gpus} (use gpus 0)")
            elif not acc_spec.is_cpu and gpus == 0:
                row.bad("accelerator", f"{acc!r} is an accelerator card but gpus is 0")

    stacks_s = row.text("stacks")
    if stacks_s is None:
        if gpus == 0:
            stacks = frozenset({"cpu"})
        elif acc_spec is not None:
            stacks = frozenset({acc_spec.stack})
        else:
            stacks = frozenset({"cuda"})
    else:
        parts = [s.strip() for s in stacks_s.split("|")]
        stacks = frozenset(parts)
        unknown = sorted(s for s in stacks if s and s not in net.known_stacks)
        if "" in stacks:
            row.bad("stacks", f"empty stack name in {stacks_s!r} (separate stacks with '|')")
        elif unknown:
            known = ", ".join(sorted(net.known_stacks))
            row.bad("stacks", f"unknown stack {', '.join(unknown)} (known: {known})")
        elif acc_spec is not None and gpus > 0 and acc_spec.stack not in stacks:
            row.bad("stacks", f"do not include {acc_spec.stack!r}, the stack of {acc!r}")

    deadline = row.number("deadline_s")
    data_gb = row.number("data_gb")
    ckpt = row.boolean("checkpointable")
    if gpus == 0 and ctx.cpu_model is None:
        row.bad("gpus", "the scenario has no CPU model, so CPU-only jobs (gpus 0) cannot run")
    if row.failed or submit is None or duration is None:
        return
    work = ctx.gpu_work(duration, gpus, kind) if gpus > 0 else ctx.cpu_work(duration, cpus)
    if origin is None:
        origin = ctx.draw_origin("suanwang", "origin", ctx.seed, job_id)
    ctx.keep(
        line,
        Job(
            job_id=job_id,
            submit_s=submit,
            kind=kind,
            origin=origin,
            units=gpus,
            cpus=cpus,
            mem_gb=mem if mem is not None else 4.0 * cpus,
            accelerator=acc,
            stacks=stacks,
            work_scu=work,
            deadline_s=deadline,
            data_gb=data_gb or 0.0,
            checkpointable=bool(ckpt),
            labels={"trace": "suanwang", "line": str(line)},
        ),
    )


# --------------------------------------------------------------------------- philly


def _philly_row(row: _Row, ctx: _Context) -> None:
    line = row.line
    ts = row.text("timestamp", required=True)
    submit: float | None = None
    if ts is not None:
        try:
            submit = (datetime.strptime(ts, PHILLY_TIME_FORMAT) - _EPOCH).total_seconds()
        except ValueError:
            row.bad("timestamp", f"not a time of the form YYYY-MM-DD HH:MM:SS: {ts!r}")
    duration = row.number("duration", required=True)
    gpus = row.integer("num_gpus", required=True, lo=1, hi=PHILLY_MAX_GPUS)
    row.number("gpu_time")  # not used, but must be a number when given
    cluster = row.text("cluster", required=True)
    if row.failed or submit is None or duration is None or gpus is None or cluster is None:
        return
    if duration == 0:
        ctx.skip("zero_duration")
        return
    job_id = f"philly-{line}"
    if duration < PHILLY_INTERACTIVE_BELOW_S:
        kind = JobKind.INTERACTIVE
    elif gpus >= 8 or stable_uniform("philly", "kind", ctx.seed, job_id) < 0.5:
        kind = JobKind.TRAINING
    else:
        kind = JobKind.FINETUNE
    ctx.keep(
        line,
        Job(
            job_id=job_id,
            submit_s=submit,
            kind=kind,
            origin=ctx.draw_origin("philly", "vc", ctx.seed, cluster),
            units=gpus,
            cpus=8 * gpus,
            mem_gb=32.0 * gpus,
            accelerator=ANY_ACCELERATOR,
            stacks=frozenset({"cuda"}),
            work_scu=ctx.gpu_work(duration, gpus, kind),
            labels={"trace": "philly", "line": str(line), "vc": cluster},
        ),
    )


# --------------------------------------------------------------------------- alibaba


def _alibaba_row(row: _Row, ctx: _Context) -> None:
    line = row.line
    name = row.text("name", required=True)
    if name is not None:
        row.unique_id("name", name)
    cpu_milli = row.number("cpu_milli", required=True)
    memory_mib = row.number("memory_mib", required=True)
    num_gpu = row.integer("num_gpu", required=True)
    gpu_milli = row.integer("gpu_milli", required=True, hi=1000)
    if num_gpu is not None and gpu_milli is not None:
        if num_gpu > 0 and gpu_milli == 0:
            row.bad("gpu_milli", f"is 0 but num_gpu is {num_gpu}")
        elif num_gpu == 0 and gpu_milli > 0:
            row.bad("gpu_milli", f"is {gpu_milli} but num_gpu is 0")
    gpu_spec = row.text("gpu_spec")
    qos = row.text("qos", required=True)
    if qos is not None and qos not in _ALIBABA_QOS:
        row.bad("qos", f"unknown qos {qos!r} (expected one of {', '.join(_ALIBABA_QOS)})")
    phase = row.text("pod_phase")
    created = row.number("creation_time", required=True)
    deleted = row.number("deletion_time")
    scheduled = row.number("scheduled_time")
    if (
        row.failed
        or name is None
        or cpu_milli is None
        or memory_mib is None
        or num_gpu is None
        or gpu_milli is None
        or qos is None
        or created is None
    ):
        return
    if scheduled is None:
        ctx.skip("never_scheduled")
        return
    if deleted is None:
        ctx.skip("no_deletion_time")
        return
    duration = deleted - scheduled
    if duration <= 0:
        ctx.skip("non_positive_duration")
        return
    cpus = max(1, math.ceil(cpu_milli / 1000.0))
    if num_gpu > 0:
        kind = _ALIBABA_GPU_KIND[qos]
        stacks = frozenset({"cuda"})
        work = ctx.gpu_work(duration, num_gpu, kind)
    else:
        if ctx.cpu_model is None:
            row.bad("num_gpu", "the scenario has no CPU model, so CPU-only pods cannot run")
            return
        kind = JobKind.ANALYTICS
        stacks = frozenset({"cpu"})
        work = ctx.cpu_work(duration, cpus)
    labels = {"trace": "alibaba-gpu-2023", "line": str(line), "qos": qos}
    labels["gpu_milli"] = str(gpu_milli)
    if phase is not None:
        labels["pod_phase"] = phase
    if gpu_spec is not None:
        labels["gpu_spec"] = gpu_spec
    ctx.keep(
        line,
        Job(
            job_id=name,
            submit_s=created,
            kind=kind,
            origin=ctx.draw_origin("alibaba-gpu-2023", "origin", ctx.seed, name),
            units=num_gpu,
            cpus=cpus,
            mem_gb=memory_mib / 1024.0,
            accelerator=ANY_ACCELERATOR,
            stacks=stacks,
            work_scu=work,
            labels=labels,
        ),
    )
