"""The local executor's sandbox, for real (root and bubblewrap, as in CI): what a job can and
cannot reach. Every probe runs once more with the sandbox off (``SharedUser``, what
``--unsafe-shared-user`` does), where it must reach what the sandbox hides: so these tests
fail if the sandbox is removed or stops hiding something."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from suanwang.core.lifecycle import JobState
from suanwang.executors import LocalExecutor, Submission
from suanwang.executors.base import ExecutorError
from suanwang.executors.local import Sandbox, SandboxUnavailable, SharedUser
from suanwang.executors.local.sandbox import ACCOUNT_PREFIX

CENTER = "c1"
PG_SOCKET = Path("/var/run/postgresql/.s.PGSQL.5432")

#: Tries everything a hostile job would; prints one JSON object: what it reached.
PROBE = """#!/usr/bin/python3
import json, os, socket, sys
secret, other, outside = sys.argv[1:4]
found = {"uid": os.getuid()}
def attempt(name, fn):
    try:
        fn()
        found[name] = True
    except OSError as exc:
        found[name] = False
def read(path):
    with open(path, "rb") as f:
        f.read(1)
def tcp():
    socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
def unix():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect("/var/run/postgresql/.s.PGSQL.5432")
    s.close()
def write():
    with open(outside, "a") as f:
        f.write("tampered")
attempt("read_secret", lambda: read(secret))
attempt("write_secret", lambda: open(secret, "ab").close())
attempt("read_other_run", lambda: read(other))
attempt("write_outside", write)
attempt("postgres_tcp", tcp)
attempt("postgres_socket", unix)
attempt("outside_net", lambda: socket.create_connection(("192.0.2.1", 80), timeout=1).close())
found["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
found["server_visible"] = str(int(sys.argv[4])) in os.listdir("/proc")
print(json.dumps(found))
"""


def run_job(ex: LocalExecutor, sub: Submission, timeout: float = 30) -> tuple[JobState, str]:
    ref = ex.submit(sub)
    deadline = time.monotonic() + timeout
    while not (st := ex.poll([ref])[ref]).state.is_terminal:
        assert time.monotonic() < deadline, f"{ref} still {st.state}"
        time.sleep(0.05)
    return st.state, ex.logs(ref)


def probe_job(job_id: str, tenant: str, *args: str, mem_gb: float = 1.0) -> Submission:
    argv = " ".join((*args, str(os.getpid())))
    return Submission(
        job_id, job_id, None, PROBE.replace("sys.argv[1:4]", f"{argv!r}.split()[:3]")
        .replace("sys.argv[4]", f"{argv!r}.split()[3]"),
        mem_gb=mem_gb, tenant_id=tenant,
    )  # fmt: skip


def postgres_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("contained", [True, False], ids=["sandbox", "unsafe-shared-user"])
def test_a_job_reaches_nothing_of_the_server_or_other_tenants(
    tmp_path: Path, contained: bool
) -> None:
    assert postgres_reachable() and PG_SOCKET.exists(), "the probe needs PostgreSQL running"
    sandbox = Sandbox() if contained else SharedUser()
    ex = LocalExecutor(tmp_path / "runs", CENTER, cpus=4, cards=0, sandbox=sandbox)
    secret = tmp_path / "server.db"  # the server's SQLite database, say
    secret.write_text("balances")
    outside = tmp_path / "outside.txt"
    outside.write_text("")
    state, _ = run_job(ex, Submission("theirs", "theirs", "echo private > mine", None,
                                      tenant_id="tenant-b"))  # fmt: skip
    assert state is JobState.SUCCEEDED
    other = tmp_path / "runs" / CENTER / "theirs" / "work" / "mine"
    assert other.read_text() == "private\n"

    state, log = run_job(ex, probe_job("probe", "tenant-a", str(secret), str(other), str(outside)))
    assert state is JobState.SUCCEEDED, log
    found = json.loads(log.strip().splitlines()[-1])
    reached = [k for k, v in found.items() if v is True]
    if contained:
        assert reached == []
        assert found["uid"] not in (0, os.getuid())
        assert len(found["pids"]) <= 3  # bwrap's init, the probe (and a shell): nothing else
        assert outside.read_text() == "" and secret.read_text() == "balances"
    else:  # the same job unsandboxed reaches all of it: the probe can tell
        assert found["uid"] == os.getuid()
        assert {"read_secret", "read_other_run", "write_outside", "postgres_tcp",
                "postgres_socket", "server_visible"} <= set(reached)  # fmt: skip
        assert outside.read_text() == "tampered"


def test_each_tenant_runs_as_its_own_account_and_owns_only_its_directories(
    tmp_path: Path,
) -> None:
    ex = LocalExecutor(tmp_path, CENTER, cpus=4, cards=0, kill_grace_s=1.0)
    uids = {}
    for tenant in ("tenant-a", "tenant-b"):
        state, log = run_job(
            ex, Submission(tenant, tenant, "id -un; id -u", None, tenant_id=tenant)
        )
        assert state is JobState.SUCCEEDED, log
        name, uid = log.split()
        assert name.startswith(ACCOUNT_PREFIX)
        assert pwd.getpwnam(name).pw_gecos == f"suanwang tenant {tenant}"
        uids[tenant] = int(uid)
        run = tmp_path / CENTER / tenant
        work = (run / "work").stat()
        assert (work.st_uid, work.st_mode & 0o777) == (int(uid), 0o700)
        assert run.stat().st_uid == 0 and run.stat().st_mode & 0o777 == 0o700
        assert (run / "exit_code").stat().st_uid == 0  # its records are the executor's
    assert len(set(uids.values())) == 2 and 0 not in uids.values()
    # the same tenant again: the same account
    state, log = run_job(ex, Submission("again", "again", "id -u", None, tenant_id="tenant-a"))
    assert int(log) == uids["tenant-a"]


def test_one_fixed_account_for_every_job(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path, CENTER, cpus=1, cards=0, sandbox=Sandbox(account="sw-jobs"))
    state, log = run_job(ex, Submission("j", "j", "id -un", None, tenant_id="tenant-a"))
    assert (state, log) == (JobState.SUCCEEDED, "sw-jobs\n")


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroup", "rlimit"])
def test_a_job_over_its_memory_is_stopped(tmp_path: Path, cgroups: bool) -> None:
    """By the run's cgroup where there is one (this machine, CI): the kernel kills it when it
    uses more; else by its address space rlimit: it gets no more (``MemoryError``)."""
    ex = LocalExecutor(tmp_path, CENTER, cpus=1, cards=0, sandbox=Sandbox(cgroups=cgroups))
    assert (ex.cgroups is not None) is cgroups
    grab = "python3 -c 'b = bytearray(1 << 30); print(\"got 1 GiB\")'"  # zeroed: all used
    ref = ex.submit(Submission("hog", "hog", grab, None, mem_gb=0.5, tenant_id="t"))
    state, log = run_job(ex, Submission("hog", "hog", grab, None, mem_gb=0.5, tenant_id="t"))
    assert state is JobState.FAILED and "got 1 GiB" not in log
    reason = ex.poll([ref])[ref].reason
    if cgroups:
        assert "killed by its memory limit (0.5 GiB, cgroup)" in reason
    else:
        assert "MemoryError" in log
        assert "ran out of its memory limit (0.5 GiB of address space)" in reason
    state, log = run_job(ex, Submission("fits", "fits", grab, None, mem_gb=2.0, tenant_id="t"))
    assert (state, log) == (JobState.SUCCEEDED, "got 1 GiB\n")


def test_network_only_where_allowed(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path, CENTER, cpus=1, cards=0)
    with pytest.raises(ExecutorError, match="asks for network and this center allows none"):
        ex.submit(Submission("net", "net", "true", None, network=True))
    # the interfaces a job sees: its own loopback only
    state, log = run_job(ex, Submission("ifs", "ifs", "ls /sys/class/net 2>/dev/null || "
                                        "cat /proc/net/dev", None))  # fmt: skip
    assert state is JobState.SUCCEEDED
    assert "lo" in log and "eth" not in log


def test_cancel_kills_what_left_the_process_group(tmp_path: Path) -> None:
    """A job that starts a process in a session of its own and clears its environment: the
    cancel still ends it (its PID namespace goes with the sandbox)."""
    ex = LocalExecutor(tmp_path, CENTER, cpus=1, cards=0, kill_grace_s=0.5)
    cmd = "setsid env -i sh -c 'trap \"\" TERM; while :; do sleep 0.05; done' & touch ready; wait"
    ref = ex.submit(Submission("escape", "escape", cmd, None))
    ready = tmp_path / CENTER / "escape" / "work" / "ready"
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ex.cancel(ref)
    assert ex.poll([ref])[ref].state is JobState.CANCELLED
    left = subprocess.run(["pgrep", "-f", "while :; do sleep 0.05"], capture_output=True)
    assert left.stdout == b""


def test_without_root_the_executor_refuses_to_start_unless_told_it_is_unsafe() -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from suanwang.executors.local import LocalExecutor, SandboxUnavailable, SharedUser\n"
        "try:\n    LocalExecutor(Path(sys.argv[1]), 'c1', cpus=1, cards=0)\n"
        "except SandboxUnavailable as exc:\n    print(exc)\n"
        "LocalExecutor(Path(sys.argv[1]), 'c1', cpus=1, cards=0, sandbox=SharedUser())\n"
        "print('unsafe ok')\n"
    )
    with tempfile.TemporaryDirectory(dir="/tmp") as top:  # where nobody may write
        Path(top).chmod(0o777)
        done = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
             sys.executable, "-c", code, f"{top}/runs"],
            capture_output=True, text=True, timeout=60, check=False, cwd="/",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "not root" in done.stdout and "--unsafe-shared-user" in done.stdout
    assert "dangerous" in done.stdout
    assert done.stdout.endswith("unsafe ok\n")


def test_sandbox_unavailable_names_the_way_out() -> None:
    assert issubclass(SandboxUnavailable, RuntimeError)
    assert "DANGEROUS" in SharedUser().describe()
    assert "no network" in Sandbox().describe()
