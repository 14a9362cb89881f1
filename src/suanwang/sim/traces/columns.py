"""The columns of each trace format (docs/formats-traces.md): all it knows, in canonical
order, and those it requires."""

from __future__ import annotations

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
    "tenant",
    "priority",
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
REQUIRED = {
    "suanwang": frozenset({"submit_time_s", "duration_s"}),
    "philly": frozenset({"timestamp", "duration", "num_gpus", "cluster"}),
    "alibaba-gpu-2023": frozenset(ALIBABA_COLUMNS) - {"gpu_spec", "pod_phase"},
}
COLUMNS = {
    "suanwang": SUANWANG_COLUMNS,
    "philly": PHILLY_COLUMNS,
    "alibaba-gpu-2023": ALIBABA_COLUMNS,
}
