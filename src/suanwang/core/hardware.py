"""Accelerator catalog and the standard compute unit (标准算力单位, SCU).

Standard compute unit
---------------------
One SCU is the work an NVIDIA A100 SXM 80GB card delivers in one hour at the peak of the
precision the workload uses:

* AI work (``training``, ``finetune``, ``inference``, ``interactive``): FP16/BF16 dense,
  1 SCU = 312 TFLOP/s x 3600 s = 1.1232 EFLOP;
* HPC work (``hpc``): FP64 (tensor-core where the chip has it), 1 SCU = 19.5 TFLOP/s x 1 h;
* rendering (``render``): FP32, 1 SCU = 19.5 TFLOP/s x 1 h;
* CPU work (``analytics``, ``backup``): FP64 of CPU cores, 1 SCU = the same 19.5 TFLOP/s x 1 h.

A chip's *speed* for a workload is its peak at that precision divided by the A100's, times an
optional ``efficiency`` (software maturity of the stack). A job of ``w`` SCU on ``n`` cards of a
chip with speed ``v`` runs ``w / (n * v)`` hours. Capacity (cards x speed), demand (SCU), usage
and prices (CNY per SCU) are therefore comparable across vendors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Precision(StrEnum):
    """Arithmetic a workload is limited by."""

    FP16 = "fp16"
    FP32 = "fp32"
    FP64 = "fp64"
    CPU = "cpu"


@dataclass(frozen=True, slots=True)
class Accelerator:
    """One accelerator model (or, for ``stack == 'cpu'``, one CPU server node)."""

    model: str
    name: str
    vendor: str
    stack: str
    fp64_tflops: float
    fp32_tflops: float
    fp16_tflops: float
    int8_tops: float
    memory_gb: float
    bandwidth_tbps: float
    power_w: float
    host_w: float
    source: str
    cores: int = 0
    efficiency: float = 1.0

    @property
    def is_cpu(self) -> bool:
        return self.stack == "cpu"

    def peak_tflops(self, precision: Precision) -> float:
        if precision is Precision.FP16:
            return self.fp16_tflops
        if precision is Precision.FP32:
            return self.fp32_tflops
        return self.fp64_tflops

    def unit_power_w(self) -> float:
        """IT power drawn by one schedulable unit: a card (with its host share) or a CPU core."""
        if self.is_cpu:
            return self.power_w / max(self.cores, 1)
        return self.power_w + self.host_w


#: The reference card that defines one SCU per hour.
REFERENCE_MODEL = "a100"
REFERENCE_TFLOPS = {
    Precision.FP16: 312.0,
    Precision.FP32: 19.5,
    Precision.FP64: 19.5,
    Precision.CPU: 19.5,
}


def speed_scu_per_hour(acc: Accelerator, precision: Precision) -> float:
    """SCU one unit (card, or CPU core for CPU nodes) delivers per hour; 0 means cannot run."""
    if precision is Precision.CPU:
        if not acc.is_cpu:
            return 0.0
        per_core = acc.fp64_tflops / max(acc.cores, 1)
        return per_core / REFERENCE_TFLOPS[Precision.CPU] * acc.efficiency
    if acc.is_cpu:
        return 0.0
    return acc.peak_tflops(precision) / REFERENCE_TFLOPS[precision] * acc.efficiency


@dataclass(frozen=True, slots=True)
class Catalog:
    """Accelerator models by id."""

    accelerators: tuple[Accelerator, ...]
    _by_model: dict[str, Accelerator] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_model = {a.model: a for a in self.accelerators}
        if len(by_model) != len(self.accelerators):
            raise ValueError("duplicate accelerator model ids in catalog")
        object.__setattr__(self, "_by_model", by_model)  # a lookup, not state: frozen stays

    def get(self, model: str) -> Accelerator:
        return self._by_model[model]

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and model in self._by_model

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(a.model for a in self.accelerators)

    @property
    def stacks(self) -> frozenset[str]:
        return frozenset(a.stack for a in self.accelerators)

    @property
    def cpu_model(self) -> Accelerator | None:
        """The model CPU-only work runs on (the catalog's first CPU), or None."""
        return next((a for a in self.accelerators if a.is_cpu), None)

    def work_scu(self, hours: float, cards: int, cpus: int, precision: Precision) -> float:
        """The work, in SCU, of a job that runs ``hours`` on the reference chip.

        ``cards`` reference cards (the A100; speed 1 if the catalog lacks it) give
        ``hours x cards x speed(A100, precision)``; a CPU-only job (``cards == 0``) on ``cpus``
        cores gives ``hours x cpus x speed(cpu model, CPU)``. The one rule for job files, the
        API, trace importers and synthetic workloads. Raises ``ValueError`` for CPU work
        without a CPU model.
        """
        if cards > 0:
            speed = 1.0
            if REFERENCE_MODEL in self:
                speed = speed_scu_per_hour(self.get(REFERENCE_MODEL), precision)
            return hours * cards * speed
        cpu = self.cpu_model
        if cpu is None:
            raise ValueError("the scenario has no CPU model, so CPU-only jobs (count 0) cannot run")
        return hours * cpus * speed_scu_per_hour(cpu, Precision.CPU)
