"""Running a cluster: starting its daemons detached and waiting until it serves, ``scontrol``,
and finding and killing every process of it (a power cut) through ``/proc``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from suanwang.testbed.slurm.cluster import API_VERSION, DAEMONS, MARKER_ENV, Cluster, TestbedError


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def require(binary: str) -> str:
    path = shutil.which(binary, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if path is None:
        raise TestbedError(
            f"{binary} not found: install Debian's slurm-wlm, slurmrestd and munge packages "
            "(apt-get install slurm-wlm slurmrestd munge)"
        )
    return path


def spawn(argv: Sequence[str], log: Path, env: dict[str, str]) -> int:
    """Start a daemon detached from us (a short-lived ``sh`` backgrounds it); its pid."""
    r = subprocess.run(
        ["/bin/sh", "-c", 'exec "$@" >>"$0" 2>&1 </dev/null & echo $!', str(log), *argv],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    )
    return int(r.stdout.strip())


def _env(c: Cluster) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    env.update({"SLURM_CONF": c.slurm_conf, MARKER_ENV: c.marker})
    return env


def _wait_port(port: int, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TestbedError(f"{what} did not open 127.0.0.1:{port} within {timeout_s:.0f} s")


def scontrol(c: Cluster, *args: str, timeout_s: float = 10.0) -> str:
    r = subprocess.run(
        [require("scontrol"), *args],
        env=_env(c),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if r.returncode != 0:
        raise TestbedError(f"scontrol {' '.join(args)} on {c.center_id}: {r.stderr.strip()}")
    return r.stdout


def _wait_ctld(c: Cluster, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(TestbedError, subprocess.TimeoutExpired):
            if "is UP" in scontrol(c, "ping", timeout_s=5):
                return
        time.sleep(0.1)
    raise TestbedError(f"slurmctld of {c.center_id} not answering within {timeout_s:.0f} s")


def _wait_node_ready(c: Cluster, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    state = "?"
    while time.monotonic() < deadline:
        with contextlib.suppress(TestbedError, subprocess.TimeoutExpired):
            out = scontrol(c, "-o", "show", "node", c.node)
            state = out.split("State=", 1)[1].split()[0] if "State=" in out else "?"
            if any(s in state for s in ("DRAIN", "INVAL", "FAIL", "DOWN")):
                scontrol(c, "update", f"nodename={c.node}", "state=resume")
            elif not any(s in state for s in ("UNKNOWN", "NOT_RESPONDING")):
                return
        time.sleep(0.2)
    raise TestbedError(
        f"node {c.node} of center {c.center_id} not ready within {timeout_s:.0f} s "
        f"(state {state}; see {Path(c.dir) / 'log'})"
    )


def start_cluster(c: Cluster, fresh: bool = False, timeout_s: float = 60.0) -> None:
    """Start the cluster's daemons (``fresh``: discard saved state) and wait until it serves."""
    if cluster_up(c):
        return
    kill_cluster(c)  # whatever is left of a half-dead cluster
    d = Path(c.dir)
    env = _env(c)
    ctld = [require("slurmctld"), "-D"] + (["-i"] if fresh else [])
    c.pids["slurmctld"] = spawn(ctld, d / "log" / "slurmctld.out", env)
    _wait_port(c.ctld_port, timeout_s, f"slurmctld of {c.center_id}")
    _wait_ctld(c, timeout_s)
    if not fresh:
        # The node lost power with the rest: what ran there is gone. Say so, as an operator
        # would, so its jobs end as NODE_FAIL instead of waiting on a node that forgot them.
        scontrol(c, "update", f"nodename={c.node}", "state=down", "reason=power cut (testbed)")
    slurmd = [require("slurmd"), "-D", "-N", c.node] + ([] if fresh else ["-b"])
    c.pids["slurmd"] = spawn(slurmd, d / "log" / "slurmd.out", env)
    rest_env = dict(env, SLURM_JWT="daemon", SLURMRESTD_SECURITY="disable_user_check")
    rest = [require("slurmrestd"), "-a", "rest_auth/jwt", "-s", f"openapi/{API_VERSION}"]
    c.pids["slurmrestd"] = spawn(
        [*rest, f"127.0.0.1:{c.rest_port}"], d / "log" / "slurmrestd.log", rest_env
    )
    _wait_port(c.rest_port, timeout_s, f"slurmrestd of {c.center_id}")
    _wait_node_ready(c, timeout_s)


def _proc_env(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out


def _pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[3]) if fields[0] != "Z" else None


def _is_step_of(pid: int, root: str) -> bool:
    """Whether ``pid`` is a ``slurmstepd`` of the cluster in ``root``.

    Job steps run with an empty environment; they keep the cluster's ``slurmd`` log open.
    """
    try:
        if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"slurmstepd"):
            return False
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(root + os.sep):
                return True
    return False


def cluster_processes(c: Cluster) -> list[int]:
    """Every live process of the cluster: its daemons, job steps and the jobs they run."""
    pids = [p for p in _pids() if session_of(p) is not None]
    marked = [p for p in pids if _proc_env(p).get(MARKER_ENV) == c.marker]
    steps = [p for p in pids if p not in marked and _is_step_of(p, c.dir)]
    sessions = {session_of(p) for p in steps}
    jobs = [p for p in pids if p not in marked and p not in steps and session_of(p) in sessions]
    return marked + steps + jobs


def kill_cluster(c: Cluster) -> int:
    """Kill every process of the cluster with ``SIGKILL`` (a power cut). Returns how many."""
    victims = cluster_processes(c)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(session_of(p) is not None for p in victims):
        time.sleep(0.05)
    c.pids.clear()
    return len(victims)


def stop_cluster(c: Cluster) -> int:
    """Take the cluster down as a power cut would. Returns the number of processes killed."""
    return kill_cluster(c)


def cluster_up(c: Cluster) -> bool:
    """Whether all three daemons run and the REST port answers."""
    alive = [p for p in (c.pids.get(d) for d in DAEMONS) if p and session_of(p) is not None]
    if len(alive) < len(DAEMONS):
        return False
    try:
        with socket.create_connection(("127.0.0.1", c.rest_port), 0.5):
            return True
    except OSError:
        return False
