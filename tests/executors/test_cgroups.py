"""The local executor's per-run cgroups, for real (root, and the writable cgroup v1 ``memory``
and ``pids`` hierarchies of CI and this machine: the tests fail, never skip, where they are
missing). Each limit test runs once more with cgroups off (``Sandbox(cgroups=False)``: rlimits
only, the fallback), where the same job shows the difference: so they fail if the cgroups are
not made, not joined or not limited."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanwang.core.lifecycle import JobState
from suanwang.executors import LocalExecutor, Submission
from suanwang.executors.base import ExecutorStatus
from suanwang.executors.limits import Limits
from suanwang.executors.local import Sandbox
from suanwang.executors.local.cgroups import RUN_PREFIX, Ended, RunCgroups

CENTER = "c1"
#: This session's own tenant (account): ``RLIMIT_NPROC`` counts all processes of an account.
TENANT = f"t-cg-{os.getpid()}"

#: Three processes, each under the address space limit (it is per process), that together use
#: more memory than the job's: only a cgroup (it counts the run's memory) stops them.
HOGS = """#!/usr/bin/python3
import mmap, os, sys, time
children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        m = mmap.mmap(-1, 120 << 20)
        for i in range(0, len(m), 4096):
            m[i] = 1
        time.sleep(2)  # all three hold theirs at once
        os._exit(0)
    children.append(pid)
bad = [os.waitpid(pid, 0)[1] for pid in children]
print("statuses", bad, flush=True)
sys.exit(1 if any(bad) else 0)
"""

#: Starts processes that wait until it cannot start more; prints how many it started.
FORKS = """#!/usr/bin/python3
import os, signal, sys, time
started = []
try:
    while len(started) < 500:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        started.append(pid)
except OSError as exc:
    print("refused after", len(started), exc, flush=True)
for pid in started:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
sys.exit(1 if len(started) < 500 else 0)
"""


@pytest.fixture
def executors(tmp_path: Path) -> Iterator[list[LocalExecutor]]:
    """Executors the test makes; afterwards their cgroup parents go (nothing else is ours)."""
    made: list[LocalExecutor] = []
    yield made
    parents = {p for ex in made if ex.cgroups for p in (ex.cgroups.memory, ex.cgroups.pids) if p}
    for parent in parents:
        parent.rmdir()  # empty: every run's cgroup is gone


def executor(made: list[LocalExecutor], root: Path, cgroups: bool, **limits: int) -> LocalExecutor:
    ex = LocalExecutor(root, CENTER, cpus=4, cards=0, kill_grace_s=0.5,
                       sandbox=Sandbox(cgroups=cgroups, limits=Limits(**limits)))  # fmt: skip
    made.append(ex)
    if cgroups:  # this machine and CI have them: a missing one is a failure, not a skip
        assert ex.cgroups is not None and ex.cgroups.memory is not None, "no cgroup memory"
        assert ex.cgroups.pids is not None, "no cgroup pids controller"
    else:
        assert ex.cgroups is None
    return ex


def run(
    ex: LocalExecutor, job: str, script: str, mem_gb: float = 0.25, timeout: float = 60
) -> tuple[ExecutorStatus, str]:
    ref = ex.submit(Submission(job, job, None, script, mem_gb=mem_gb, tenant_id=TENANT))
    deadline = time.monotonic() + timeout
    while not (st := ex.poll([ref])[ref]).state.is_terminal:
        assert time.monotonic() < deadline, f"{ref} still {st.state}"
        time.sleep(0.05)
    return st, ex.logs(ref)


def run_cgroups(ex: LocalExecutor, job: str) -> list[Path]:
    assert ex.cgroups is not None
    parents = {ex.cgroups.memory, ex.cgroups.pids} - {None}
    return [p / (RUN_PREFIX + job) for p in parents if p is not None]


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroups", "rlimits"])
def test_a_job_using_more_memory_than_it_asked_is_killed_by_its_cgroup(
    tmp_path: Path, executors: list[LocalExecutor], cgroups: bool
) -> None:
    ex = executor(executors, tmp_path, cgroups)
    st, log = run(ex, "hogs", HOGS, mem_gb=0.25)  # 3 x 120 MiB used in 256 MiB
    if cgroups:
        assert st.state is JobState.FAILED, log
        assert "killed by its memory limit (0.25 GiB, cgroup): the kernel's OOM killer" in st.reason
        assert all(not p.exists() for p in run_cgroups(ex, "hogs"))
    else:  # each process is under its address space limit: rlimits let them all through
        assert (st.state, log) == (JobState.SUCCEEDED, "statuses [0, 0, 0]\n")
    st, log = run(ex, "fits", HOGS, mem_gb=1.0)  # the same in 1 GiB: a normal job
    assert (st.state, log) == (JobState.SUCCEEDED, "statuses [0, 0, 0]\n")


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroups", "rlimits"])
def test_a_fork_bomb_stops_at_the_process_limit(
    tmp_path: Path, executors: list[LocalExecutor], cgroups: bool
) -> None:
    ex = executor(executors, tmp_path, cgroups, max_processes=40)
    st, log = run(ex, "forks", FORKS)
    assert st.state is JobState.FAILED, log
    started = int(log.split()[2])
    assert 30 <= started < 40, log  # the run's own few processes (sandbox, job) count too
    if cgroups:
        assert (
            st.reason == "exit code 1: ran into its process limit (40 processes of the run, cgroup)"
        )
    else:
        assert st.reason == "exit code 1: ran into its process limit (40 processes of its account)"


def test_a_run_is_in_its_own_cgroup_with_its_limits_and_it_goes_with_the_run(
    tmp_path: Path, executors: list[LocalExecutor]
) -> None:
    ex = executor(executors, tmp_path, cgroups=True, max_processes=50)
    job = "#!/bin/sh\ncat /proc/self/cgroup\ntouch started\nsleep 30\n"
    ref = ex.submit(Submission("long", "long", None, job, mem_gb=0.5, tenant_id=TENANT))
    started = tmp_path / CENTER / "long" / "work" / "started"
    deadline = time.monotonic() + 30
    while not started.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ex.cgroups is not None and ex.cgroups.memory and ex.cgroups.pids
    memory, pids = (p / f"{RUN_PREFIX}long" for p in (ex.cgroups.memory, ex.cgroups.pids))
    assert int((memory / "memory.limit_in_bytes").read_text()) == 2**29
    assert (pids / "pids.max").read_text().strip() == "50"
    assert len((memory / "cgroup.procs").read_text().split()) >= 2  # the sandbox and the job
    # a restarted executor keeps a running run's cgroup, and removes one of no active run
    ghost = pids.parent / (RUN_PREFIX + "ghost")
    ghost.mkdir()
    again = executor(executors, tmp_path, cgroups=True, max_processes=50)
    assert not ghost.exists() and memory.exists() and pids.exists()
    again.cancel(ref)
    assert again.poll([ref])[ref].state is JobState.CANCELLED
    assert not memory.exists() and not pids.exists()
    # in its own cgroup namespace, the job sees its cgroup as the root of every hierarchy
    assert "4:memory:/\n" in again.logs(ref)


def test_without_cgroups_the_executor_says_so_and_uses_rlimits(
    tmp_path: Path, executors: list[LocalExecutor], caplog: pytest.LogCaptureFixture
) -> None:
    found, why = RunCgroups.detect("k", root=tmp_path / "no-cgroups")  # no hierarchy there
    assert (
        found is None and why == "no writable cgroup memory or pids controller here: rlimits only"
    )
    with caplog.at_level(logging.INFO, logger="suanwang.executors.local.executor"):
        executor(executors, tmp_path / "off", cgroups=False)
        executor(executors, tmp_path / "on", cgroups=True)
    assert "job limits: cgroups off: rlimits only" in caplog.text
    assert "job limits: cgroup v1 limits memory and processes per run" in caplog.text


def test_cgroup_v2_files_and_counters(tmp_path: Path) -> None:
    """cgroup v2 has no controller on this machine: its file layout, on a plain directory in
    place of the kernel's (what is written, what is read back)."""
    cgroups = RunCgroups(2, tmp_path, tmp_path)
    assert cgroups.procs("r1") == [tmp_path / "run-r1" / "cgroup.procs"]  # one hierarchy
    cgroups.create("r1", memory_bytes=2**28, max_processes=9)
    run = tmp_path / "run-r1"
    written = {f.name: f.read_text() for f in run.iterdir()}
    assert written == {"memory.max": str(2**28), "memory.swap.max": "0", "pids.max": "9"}
    (run / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    (run / "pids.events").write_text("max 3\n")
    assert cgroups.ended("r1") == Ended(oom_kills=1, forks_refused=3)
    assert cgroups.ended("gone") == Ended()
