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

from dataclasses import dataclass, replace
from pathlib import Path

from suanwang.core.jobs import Job
from suanwang.core.network import Network
from suanwang.sim.traces.columns import (
    ALIBABA_COLUMNS,
    COLUMNS,
    PHILLY_COLUMNS,
    REQUIRED,
    SUANWANG_COLUMNS,
    TRACE_FORMATS,
)
from suanwang.sim.traces.formats import PARSERS
from suanwang.sim.traces.rows import Context, TraceError, TraceProblem, read_table, stable_uniform

__all__ = [
    "ALIBABA_COLUMNS",
    "PHILLY_COLUMNS",
    "SUANWANG_COLUMNS",
    "TRACE_FORMATS",
    "TraceError",
    "TraceProblem",
    "TraceResult",
    "load_trace",
    "stable_uniform",
]


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
    if fmt not in COLUMNS:
        raise ValueError(
            f"unknown trace format {fmt!r}; expected one of {', '.join(TRACE_FORMATS)}"
        )
    ctx = Context(str(path), net, seed)
    table = read_table(Path(path), ctx, COLUMNS[fmt], REQUIRED[fmt])
    if table is not None:
        for row in table:
            ctx.rows += 1
            PARSERS[fmt](row, ctx)
    if ctx.problems:
        raise TraceError(ctx.problems)
    ctx.jobs.sort(key=lambda lj: (lj[1].submit_s, lj[0]))
    t0 = ctx.jobs[0][1].submit_s if ctx.jobs else 0.0
    jobs = [replace(job, submit_s=job.submit_s - t0) for _, job in ctx.jobs]
    return TraceResult(jobs=jobs, skipped=dict(sorted(ctx.skipped.items())), rows=ctx.rows)
