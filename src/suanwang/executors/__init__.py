"""Executors: run a placed job at its center (local processes; Slurm and others later)."""

from suanwang.executors.base import (
    CHECKPOINT_EXIT_CODE,
    CHECKPOINT_SIGNAL,
    ENV_USAGE_FILE,
    Capacity,
    Executor,
    ExecutorError,
    ExecutorStatus,
    RunUsage,
    Submission,
    parse_usage,
)
from suanwang.executors.local import LocalExecutor

__all__ = [
    "CHECKPOINT_EXIT_CODE",
    "CHECKPOINT_SIGNAL",
    "ENV_USAGE_FILE",
    "Capacity",
    "Executor",
    "ExecutorError",
    "ExecutorStatus",
    "LocalExecutor",
    "RunUsage",
    "Submission",
    "parse_usage",
]
