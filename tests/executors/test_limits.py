"""The rule for a contained job's limits (:mod:`suanwang.executors.limits`), shared by the local
sandbox and the Slurm run wrapper, and how a failed run's end names the limit it ran into."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.executors.limits import DEFAULT_MEM_GB, Limits, limit_hit, parse_record
from suanwang.executors.local.sandbox import Account, Sandbox
from suanwang.server.schemas import Resources

GIB = 2**30


def test_the_default_memory_is_the_apis() -> None:
    assert Resources.model_fields["mem_gb"].default == DEFAULT_MEM_GB
    assert Limits().memory_bytes(0) == int(DEFAULT_MEM_GB * GIB)


@given(st.floats(min_value=0, max_value=4096), st.floats(min_value=0.01, max_value=8))
def test_memory_is_the_jobs_own_never_below_the_floor(mem_gb: float, floor: float) -> None:
    limits = Limits(min_mem_gb=floor)
    asked = mem_gb if mem_gb > 0 else DEFAULT_MEM_GB
    assert limits.memory_bytes(mem_gb) == int(max(asked, floor) * GIB)
    assert f"--as={limits.memory_bytes(mem_gb)}" in limits.prlimit(mem_gb)
    assert parse_record(limits.record(mem_gb)) == (limits, limits.memory_bytes(mem_gb))


def test_the_local_sandbox_applies_the_same_rule() -> None:
    limits = Limits(cpu_time_s=60, max_processes=7, max_file_gb=0.5)
    cmd = Sandbox(limits=limits).command(
        Account("sw-x", 60000, 60000), work=Path("/w"), writable=[], readable=[], mem_gb=2,
        network=False,
    )  # fmt: skip
    assert cmd[: len(limits.prlimit(2))] == limits.prlimit(2)
    assert "--cpu=60:65" in cmd and "--nproc=7" in cmd


def test_bad_limits_are_refused() -> None:
    for bad in ({"cpu_time_s": 0}, {"max_processes": 0}, {"max_file_gb": 0}, {"min_mem_gb": 0}):
        with pytest.raises(ValueError, match="must be positive"):
            Limits(**bad)  # type: ignore[arg-type]
    assert parse_record("not json") is None
    assert parse_record('{"memory_bytes": 1, "cpu_time_s": 0}') is None


def test_the_limit_a_failed_run_ran_into() -> None:
    limits, memory = Limits(cpu_time_s=9, max_processes=5, max_file_gb=2), GIB // 2
    cpu = limit_hit(128 + signal.SIGXCPU, "", limits, memory)
    assert cpu == "killed by its CPU time limit (9 CPU s per process)"
    assert "file size limit (2 GB" in limit_hit(128 + signal.SIGXFSZ, "", limits, memory)
    oom = limit_hit(1, "Traceback ...\nMemoryError\n", limits, memory)
    assert oom == "ran out of its memory limit (0.5 GiB of address space)"
    fork = limit_hit(1, "BlockingIOError: [Errno 11] Resource temporarily unavailable", limits,
                     memory)  # fmt: skip
    assert fork == "ran into its process limit (5 processes of its account)"
    assert limit_hit(1, "some other failure", limits, memory) == ""
    assert limit_hit(0, "MemoryError", limits, memory) == ""  # it succeeded: no limit hit
    assert limit_hit(None, "MemoryError", limits, memory) == ""


def test_a_run_s_cgroup_counters_name_the_limit() -> None:
    limits, memory = Limits(max_processes=5), GIB // 4
    oom = limit_hit(137, "Killed", limits, memory, oom_kills=2)
    assert oom == (
        "killed by its memory limit (0.25 GiB, cgroup): the kernel's OOM killer ended 2 of "
        "its processes"
    )
    fork = limit_hit(1, "", limits, memory, forks_refused=40)
    assert fork == "ran into its process limit (5 processes of the run, cgroup)"
    assert limit_hit(0, "", limits, memory, oom_kills=1, forks_refused=1) == ""  # it succeeded


def test_limits_a_cgroup_holds_are_not_rlimits() -> None:
    limits = Limits(cpu_time_s=60, max_processes=7, max_file_gb=0.5)
    cmd = Sandbox(limits=limits).command(
        Account("sw-x", 60000, 60000), work=Path("/w"), writable=[], readable=[], mem_gb=2,
        network=False, cgroup_procs=[Path("/cg/m/cgroup.procs"), Path("/cg/p/cgroup.procs")],
        cgroup_memory=True, cgroup_processes=True,
    )  # fmt: skip
    joined = cmd.index("prlimit")  # the cgroups are joined first, by a shell that becomes it
    assert cmd[:3] == ["/bin/sh", "-c", cmd[2]] and cmd[3:joined] == [
        "sh", "2", "/cg/m/cgroup.procs", "/cg/p/cgroup.procs"
    ]  # fmt: skip
    assert "--cpu=60:65" in cmd and not any(a.startswith(("--as=", "--nproc=")) for a in cmd)
