"""Jobs: what users submit. One vocabulary for the simulator and the live control plane."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from suanwang.core.hardware import Precision


class JobKind(StrEnum):
    """What a job does; decides its precision, default latency class and whether it may wait."""

    INFERENCE = "inference"  # latency-sensitive serving, stays near its users
    INTERACTIVE = "interactive"  # notebooks, debugging: a person waits
    TRAINING = "training"
    FINETUNE = "finetune"
    HPC = "hpc"  # FP64 simulation
    RENDER = "render"
    ANALYTICS = "analytics"  # offline batch analysis
    BACKUP = "backup"  # storage / archival work

    @property
    def precision(self) -> Precision:
        return _PRECISION[self]

    @property
    def default_latency_ms(self) -> float | None:
        """One-way network latency bound from the job's origin, or None (may go anywhere)."""
        return _DEFAULT_LATENCY_MS.get(self)

    @property
    def deferrable(self) -> bool:
        """May be started later than submitted (东数西算 batch work)."""
        return self not in (JobKind.INFERENCE, JobKind.INTERACTIVE)


_PRECISION = {
    JobKind.INFERENCE: Precision.FP16,
    JobKind.INTERACTIVE: Precision.FP16,
    JobKind.TRAINING: Precision.FP16,
    JobKind.FINETUNE: Precision.FP16,
    JobKind.HPC: Precision.FP64,
    JobKind.RENDER: Precision.FP32,
    JobKind.ANALYTICS: Precision.FP32,
    JobKind.BACKUP: Precision.FP32,
}

#: Latency classes follow the network's tiers: 1 ms city, 5 ms region, 20 ms across hubs.
_DEFAULT_LATENCY_MS = {JobKind.INFERENCE: 5.0, JobKind.INTERACTIVE: 20.0}

ANY_ACCELERATOR = "any"


class Priority(StrEnum):
    """Who runs first when capacity is short (docs/governance.md).

    ``urgent`` may preempt every lower class; ``normal`` is the default for work a person or a
    service waits on; ``batch`` (deferrable) the default for training, render, analytics and
    backup; ``preemptible`` runs only on capacity nobody else claims, at the idle discount, and
    may be preempted at any time. Classes are taken in this order.
    """

    URGENT = "urgent"
    NORMAL = "normal"
    BATCH = "batch"
    PREEMPTIBLE = "preemptible"

    @property
    def rank(self) -> int:
        """0 for ``urgent`` .. 3 for ``preemptible``: lower runs first."""
        return _PRIORITY_RANK[self]

    @classmethod
    def default_for(cls, kind: JobKind) -> Priority:
        """``batch`` for deferrable work (training, render, analytics, backup, ...), else
        ``normal``."""
        return cls.BATCH if kind.deferrable else cls.NORMAL


_PRIORITY_RANK = {p: i for i, p in enumerate(Priority)}
#: the tenant of work that names none (a single-tenant trace, a synthetic workload)
DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Job:
    """A unit of work as submitted.

    ``cards`` is the number of accelerator cards (gang: all start together) or, for CPU-only jobs
    (``cards == 0``), the job runs on ``cpus`` CPU cores; what it holds of a pool is its
    :attr:`demand_units` (cards, or cores). ``work_scu`` is the total work in
    standard compute units (see :mod:`suanwang.core.hardware`). ``deadline_s`` is relative to
    submission; ``latency_ms`` is a one-way bound from ``origin``.
    """

    job_id: str
    submit_s: float
    kind: JobKind
    origin: str
    cards: int
    cpus: int
    mem_gb: float
    accelerator: str
    stacks: frozenset[str]
    work_scu: float
    deadline_s: float | None = None
    latency_ms: float | None = None
    data_gb: float = 0.0
    checkpointable: bool = False
    gang: bool = True
    tenant: str = DEFAULT_TENANT
    priority: Priority | None = None  # None: Priority.default_for(kind)
    labels: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def precision(self) -> Precision:
        if self.cards == 0:
            return Precision.CPU
        return self.kind.precision

    @property
    def priority_class(self) -> Priority:
        """The job's class: as given, or the default for its kind."""
        return self.priority if self.priority is not None else Priority.default_for(self.kind)

    @property
    def effective_latency_ms(self) -> float | None:
        return self.latency_ms if self.latency_ms is not None else self.kind.default_latency_ms

    @property
    def demand_units(self) -> int:
        """Units held while running: cards, or CPU cores for CPU-only jobs."""
        return self.cards if self.cards > 0 else self.cpus
