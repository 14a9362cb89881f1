"""Executors: run a placed job at its center (local processes; Slurm and others later)."""

from suanwang.executors.base import (
    CHECKPOINT_EXIT_CODE,
    CHECKPOINT_SIGNAL,
    Capacity,
    Executor,
    ExecutorError,
    ExecutorStatus,
    Submission,
)
from suanwang.executors.local import LocalExecutor

__all__ = [
    "CHECKPOINT_EXIT_CODE",
    "CHECKPOINT_SIGNAL",
    "Capacity",
    "Executor",
    "ExecutorError",
    "ExecutorStatus",
    "LocalExecutor",
    "Submission",
]
