"""Job vocabulary: precision, latency classes, demand."""

from __future__ import annotations

from suanwang.core.hardware import Precision
from suanwang.core.jobs import ANY_ACCELERATOR, Job, JobKind


def _job(kind: JobKind, units: int = 1, cpus: int = 8, latency_ms: float | None = None) -> Job:
    return Job(
        job_id="j",
        submit_s=0.0,
        kind=kind,
        origin="beijing",
        cards=units,
        cpus=cpus,
        mem_gb=8.0,
        accelerator=ANY_ACCELERATOR,
        stacks=frozenset({"cuda"}),
        work_scu=1.0,
        latency_ms=latency_ms,
    )


def test_precision_by_kind() -> None:
    assert _job(JobKind.TRAINING).precision is Precision.FP16
    assert _job(JobKind.INFERENCE).precision is Precision.FP16
    assert _job(JobKind.HPC).precision is Precision.FP64
    assert _job(JobKind.RENDER).precision is Precision.FP32
    # no cards: a CPU job whatever the kind
    assert _job(JobKind.ANALYTICS, units=0, cpus=16).precision is Precision.CPU
    assert _job(JobKind.TRAINING, units=0, cpus=16).precision is Precision.CPU


def test_latency_classes() -> None:
    assert _job(JobKind.INFERENCE).effective_latency_ms == 5.0
    assert _job(JobKind.INTERACTIVE).effective_latency_ms == 20.0
    assert _job(JobKind.TRAINING).effective_latency_ms is None
    assert _job(JobKind.TRAINING, latency_ms=3.0).effective_latency_ms == 3.0
    assert _job(JobKind.INFERENCE, latency_ms=50.0).effective_latency_ms == 50.0


def test_deferrable() -> None:
    assert not JobKind.INFERENCE.deferrable
    assert not JobKind.INTERACTIVE.deferrable
    for kind in (JobKind.TRAINING, JobKind.HPC, JobKind.BACKUP, JobKind.ANALYTICS):
        assert kind.deferrable


def test_demand_units() -> None:
    assert _job(JobKind.TRAINING, units=8, cpus=64).demand_units == 8
    assert _job(JobKind.ANALYTICS, units=0, cpus=64).demand_units == 64
