"""A contained job's resource limits: one rule for the local sandbox
(:mod:`suanwang.executors.local.sandbox`) and the Slurm executor's run wrapper
(:mod:`suanwang.executors.slurm`).

The limits are rlimits, set with ``prlimit`` (util-linux) on the process that starts the
job's sandbox, so the job and everything it starts inherit them (and cannot raise them above
the hard limits), never on what runs around it (the wrapper that records the end):

* memory: the address space of each process, the job's ``mem_gb`` (the platform's default,
  :data:`DEFAULT_MEM_GB`, when it asks none; never less than ``min_mem_gb``); a process over
  it gets no more memory (``MemoryError``, ``std::bad_alloc``, a failed ``malloc``);
* CPU time: ``cpu_time_s`` seconds per process, then ``SIGXCPU`` (and ``SIGKILL``
  :data:`CPU_GRACE_S` seconds later if it goes on: a hard limit equal to the soft one would
  kill with ``SIGKILL`` at once, which says nothing of why);
* processes: ``max_processes`` of the job's account (all of its running jobs together): a
  fork bomb stops there, the node and other accounts' jobs go on;
* file size: ``max_file_gb`` for any file it writes (its log included), then ``SIGXFSZ``.

cgroups limit the memory a job uses rather than what it maps, and the processes of one job
rather than of its account. The local executor, which runs as root, puts each run in a cgroup
of its own where the host has a writable ``memory``/``pids`` controller
(:mod:`suanwang.executors.local.cgroups`); the memory and process rlimits are then left out
(:meth:`Limits.prlimit`), CPU time and file size stay rlimits (cgroups do not limit those).
Where a center has cgroups for its Slurm jobs (``task/cgroup`` with ``ConstrainRAMSpace``),
they apply on top of these rlimits (see docs/security.md).

:func:`limit_hit` reads the end of a job against its limits, for the reason a failed run
gives.
"""

from __future__ import annotations

import json
import signal
from dataclasses import asdict, dataclass
from typing import Any

#: A job's memory when it asks none: the API's default ``resources.mem_gb``.
DEFAULT_MEM_GB = 4.0
#: CPU seconds a process may go on after ``SIGXCPU`` (it may trap it to save its work).
CPU_GRACE_S = 5
#: What a log says when a process found no more memory (Python, C++, glibc, shells).
_OUT_OF_MEMORY = ("MemoryError", "std::bad_alloc", "Cannot allocate memory", "out of memory")
#: What a log says when a process could not start another (Python, glibc, shells).
_NO_PROCESS = ("Resource temporarily unavailable", "fork: retry", "can't fork", "Cannot fork")


@dataclass(frozen=True, slots=True)
class Limits:
    """A contained job's rlimits (see the module docstring)."""

    cpu_time_s: int = 7 * 24 * 3600
    max_processes: int = 1024
    max_file_gb: float = 16.0
    min_mem_gb: float = 0.25

    def __post_init__(self) -> None:
        if self.cpu_time_s < 1 or self.max_processes < 1 or self.max_file_gb <= 0:
            raise ValueError("job limits must be positive")
        if self.min_mem_gb <= 0:
            raise ValueError("min_mem_gb must be positive")

    def memory_bytes(self, mem_gb: float) -> int:
        """The address space a job of ``mem_gb`` gets (0: it asked none)."""
        return int(max(mem_gb if mem_gb > 0 else DEFAULT_MEM_GB, self.min_mem_gb) * 2**30)

    def prlimit(self, mem_gb: float, *, memory: bool = True, processes: bool = True) -> list[str]:
        """``prlimit … --``: the job's program (its sandbox) follows. ``memory`` or
        ``processes`` false: that limit is a cgroup's, not an rlimit."""
        return [
            "prlimit",
            *([f"--as={self.memory_bytes(mem_gb)}"] if memory else []),
            f"--cpu={self.cpu_time_s}:{self.cpu_time_s + CPU_GRACE_S}",
            *([f"--nproc={self.max_processes}"] if processes else []),
            f"--fsize={int(self.max_file_gb * 2**30)}",
            "--",
        ]

    def describe(self) -> str:
        """The limits, for a log line."""
        return (
            f"{self.cpu_time_s} CPU s per process, {self.max_processes} processes, "
            f"files up to {self.max_file_gb:g} GB, memory = the job's mem_gb"
        )

    def record(self, mem_gb: float) -> str:
        """What a run's ``limits`` file holds: the limits it runs under (JSON)."""
        return json.dumps({**asdict(self), "memory_bytes": self.memory_bytes(mem_gb)})


def parse_record(text: str) -> tuple[Limits, int] | None:
    """The limits and memory a run's ``limits`` file (:meth:`Limits.record`) names; ``None``:
    not one of ours."""
    try:
        raw: Any = json.loads(text)
        memory = int(raw.pop("memory_bytes"))
        return Limits(**raw), memory
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def limit_hit(
    code: int | None,
    log_tail: str,
    limits: Limits,
    memory_bytes: int,
    *,
    oom_kills: int = 0,
    forks_refused: int = 0,
) -> str:
    """Which limit a run that ended with ``code`` (``128 + n``: killed by signal ``n``) ran
    into, from its code and the end of its log; ``""``: none it shows. Under rlimits memory
    and processes are refused, not killed, so the job's own words (its log) tell them; under
    a run's cgroup, its counters do: ``oom_kills`` (processes the kernel's OOM killer ended
    at the cgroup's memory limit) and ``forks_refused`` (by its ``pids.max``)."""
    if code and oom_kills:
        return (
            f"killed by its memory limit ({memory_bytes / 2**30:g} GiB, cgroup): the kernel's "
            f"OOM killer ended {oom_kills} of its processes"
        )
    if code and forks_refused:
        return f"ran into its process limit ({limits.max_processes} processes of the run, cgroup)"
    if code == 128 + signal.SIGXCPU:
        return f"killed by its CPU time limit ({limits.cpu_time_s} CPU s per process)"
    if code == 128 + signal.SIGXFSZ:
        return f"killed by its file size limit ({limits.max_file_gb:g} GB per file)"
    if not code:
        return ""
    if any(s in log_tail for s in _OUT_OF_MEMORY):
        return f"ran out of its memory limit ({memory_bytes / 2**30:g} GiB of address space)"
    if any(s in log_tail for s in _NO_PROCESS):
        return f"ran into its process limit ({limits.max_processes} processes of its account)"
    return ""
