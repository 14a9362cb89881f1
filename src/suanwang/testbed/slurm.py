"""Real, independent Slurm clusters on one machine: the local multi-center testbed.

Each cluster stands in for one center of a scenario: its own ``slurmctld``, one ``slurmd`` (one
node whose CPUs and GRES are declared, not detected: ``SlurmdParameters=config_overrides``) and
a ``slurmrestd`` speaking OpenAPI ``v0.0.38`` with JWT authentication
(``AuthAltTypes=auth/jwt``), all on free loopback ports, all state under ``DIR/<center>/``. One
``munged`` under ``DIR/munge/`` serves every cluster's internal authentication.

Accelerators are GRES ``gpu:<model>`` (model ids with ``-`` → ``_``) backed by character
devices made with ``mknod`` (a copy of ``/dev/null``), so Slurm allocates and accounts cards
exactly as on a real GPU node while no real accelerator is needed. Jobs run as the user who
started the testbed (the JWT's ``sun`` claim); ``slurmrestd`` runs with ``SLURM_JWT=daemon`` so
it passes the caller's token on to ``slurmctld`` (without it every token is refused with
"Rejecting thread config token").

A power cut (:func:`stop_cluster`) kills ``slurmctld``, ``slurmd``, ``slurmrestd`` and every job
step of that cluster with ``SIGKILL``; :func:`start_cluster` brings the cluster back with its
saved state (``StateSaveLocation``). Slurm does not requeue jobs on its own
(``JobRequeue=0``): after an outage the platform decides what runs again, so nothing runs twice.

Linux only (``/proc``); needs root (``slurmd`` launches jobs as another user; ``mknod``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The REST API version the executor speaks (Slurm 22.05 – 23.02 serve it).
API_VERSION = "v0.0.38"
STATE_FILE = "testbed.json"
PLATFORM_FILE = "platform.yaml"
#: Environment variable carried by every daemon (and so every job step) of a cluster.
MARKER_ENV = "SUANWANG_TESTBED_CLUSTER"
#: Cards of each accelerator model a testbed node offers, and its CPUs and memory.
NODE_CARDS = 8
NODE_CPUS = 256
NODE_MEM_MB = 1_024_000
TOKEN_LIFESPAN_S = 365 * 24 * 3600
PARTITION = "suanwang"

#: Centers a testbed takes by default, in this order: west and east, hubs and city centers.
PREFERRED_CENTERS = (
    "zhongwei",
    "beijing-yizhuang",
    "horinger",
    "shanghai-lingang",
    "guian",
    "shaoguan",
    "qingyang",
    "hangzhou",
)

DAEMONS = ("slurmctld", "slurmd", "slurmrestd")


class TestbedError(RuntimeError):
    """The testbed could not do what was asked; the message says what and where."""

    __test__ = False  # not a pytest test class


@dataclass
class Cluster:
    """One Slurm cluster standing in for ``center_id``; paths are absolute."""

    center_id: str
    name: str
    dir: str
    ctld_port: int
    slurmd_port: int
    rest_port: int
    gres: dict[str, int]
    cpus: int = NODE_CPUS
    mem_mb: int = NODE_MEM_MB
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def slurm_conf(self) -> str:
        return str(Path(self.dir) / "slurm.conf")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def node(self) -> str:
        return f"{self.name}n1"

    @property
    def token_file(self) -> str:
        return str(Path(self.dir) / "token")

    @property
    def jobs_dir(self) -> str:
        return str(Path(self.dir) / "jobs")

    @property
    def marker(self) -> str:
        """The value of :data:`MARKER_ENV` in this cluster's processes."""
        return self.dir


@dataclass
class Testbed:
    """Everything ``testbed up`` started, as saved in ``DIR/testbed.json``."""

    __test__ = False  # not a pytest test class

    dir: str
    user: str
    munged_pid: int
    clusters: list[Cluster]

    def cluster(self, center_id: str) -> Cluster:
        for c in self.clusters:
            if c.center_id == center_id:
                return c
        known = ", ".join(c.center_id for c in self.clusters)
        raise TestbedError(f"no cluster for center {center_id!r} in {self.dir} (has: {known})")

    def save(self) -> None:
        path = Path(self.dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, root: Path) -> Testbed:
        path = root.resolve() / STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise TestbedError(f"no testbed in {root} ({path} is missing)") from None
        clusters = [Cluster(**c) for c in raw.pop("clusters")]
        return cls(clusters=clusters, **raw)

    def describe(self) -> dict[str, Any]:
        return {
            "dir": self.dir,
            "config": str(Path(self.dir) / PLATFORM_FILE),
            "user": self.user,
            "centers": [
                {
                    "center_id": c.center_id,
                    "url": c.url,
                    "slurm_conf": c.slurm_conf,
                    "token_file": c.token_file,
                    "partition": PARTITION,
                    "gres": {gres_type(m): n for m, n in c.gres.items()},
                    "up": cluster_up(c),
                }
                for c in self.clusters
            ],
        }


def gres_type(model: str) -> str:
    """The GRES type name of an accelerator model (Slurm type names take no ``-``)."""
    return model.replace("-", "_")


def job_user() -> str:
    """The user testbed jobs run as: whoever runs the testbed."""
    return pwd.getpwuid(os.getuid()).pw_name


# --------------------------------------------------------------------------- tokens


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(key: bytes, user: str, lifespan_s: int = TOKEN_LIFESPAN_S) -> str:
    """An HS256 JWT as Slurm's ``auth/jwt`` expects (claims ``iat``, ``exp``, ``sun``)."""
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"iat": now, "exp": now + lifespan_s, "sun": user}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    sig = hmac.new(key, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(sig)}"


# --------------------------------------------------------------------------- config files


def slurm_conf(c: Cluster, munge_socket: str) -> str:
    d = Path(c.dir)
    gres = ",".join(f"gpu:{gres_type(m)}:{n}" for m, n in sorted(c.gres.items()))
    node = (
        f"NodeName={c.node} NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={c.cpus} "
        f"RealMemory={c.mem_mb} State=UNKNOWN"
    )
    if gres:
        node += f" Gres={gres}"
    lines = [
        f"# Slurm cluster of the suanwang testbed, standing in for center {c.center_id}.",
        f"ClusterName={c.name}",
        "SlurmctldHost=localhost",
        f"SlurmctldPort={c.ctld_port}",
        f"SlurmdPort={c.slurmd_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        # job credentials expire (and requeued jobs may start again) after 10 s, not 120 s
        f"AuthInfo=socket={munge_socket},cred_expire=10",
        "CredType=cred/munge",
        "AuthAltTypes=auth/jwt",
        f"AuthAltParameters=jwt_key={d / 'jwt.key'}",
        f"StateSaveLocation={d / 'state'}",
        f"SlurmdSpoolDir={d / 'spool'}",
        f"SlurmctldPidFile={d / 'slurmctld.pid'}",
        f"SlurmdPidFile={d / 'slurmd.pid'}",
        f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={d / 'log' / 'slurmd.log'}",
        "SlurmdParameters=config_overrides",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "GresTypes=gpu",
        "MpiDefault=none",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_interval=2",
        "JobRequeue=0",
        "ReturnToService=2",
        "JobCompType=jobcomp/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        "InactiveLimit=0",
        "MinJobAge=86400",
        "MaxJobCount=200000",
        "KillWait=5",
        "DefMemPerCPU=1000",
        node,
        f"PartitionName={PARTITION} Nodes={c.node} Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def gres_conf(c: Cluster) -> str:
    lines = ["AutoDetect=off"]
    for model, n in sorted(c.gres.items()):
        t = gres_type(model)
        files = str(Path(c.dir) / "dev" / f"{t}[0-{n - 1}]")
        lines.append(f"NodeName={c.node} Name=gpu Type={t} File={files}")
    return "\n".join(lines) + "\n"


def _devices(c: Cluster) -> None:
    """Character devices standing in for cards (major 1, minor 3: a ``/dev/null``)."""
    dev = Path(c.dir) / "dev"
    dev.mkdir(exist_ok=True)
    for model, n in c.gres.items():
        for i in range(n):
            path = dev / f"{gres_type(model)}{i}"
            if not path.exists():
                os.mknod(path, 0o666 | 0o020000, os.makedev(1, 3))


# --------------------------------------------------------------------------- processes


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


def _require(binary: str) -> str:
    path = shutil.which(binary, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if path is None:
        raise TestbedError(
            f"{binary} not found: install Debian's slurm-wlm, slurmrestd and munge packages "
            "(apt-get install slurm-wlm slurmrestd munge)"
        )
    return path


def _spawn(argv: Sequence[str], log: Path, env: dict[str, str]) -> int:
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
        [_require("scontrol"), *args],
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
    ctld = [_require("slurmctld"), "-D"] + (["-i"] if fresh else [])
    c.pids["slurmctld"] = _spawn(ctld, d / "log" / "slurmctld.out", env)
    _wait_port(c.ctld_port, timeout_s, f"slurmctld of {c.center_id}")
    _wait_ctld(c, timeout_s)
    if not fresh:
        # The node lost power with the rest: what ran there is gone. Say so, as an operator
        # would, so its jobs end as NODE_FAIL instead of waiting on a node that forgot them.
        scontrol(c, "update", f"nodename={c.node}", "state=down", "reason=power cut (testbed)")
    slurmd = [_require("slurmd"), "-D", "-N", c.node] + ([] if fresh else ["-b"])
    c.pids["slurmd"] = _spawn(slurmd, d / "log" / "slurmd.out", env)
    rest_env = dict(env, SLURM_JWT="daemon", SLURMRESTD_SECURITY="disable_user_check")
    rest = [_require("slurmrestd"), "-a", "rest_auth/jwt", "-s", f"openapi/{API_VERSION}"]
    c.pids["slurmrestd"] = _spawn(
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


def _session(pid: int) -> int | None:
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
    pids = [p for p in _pids() if _session(p) is not None]
    marked = [p for p in pids if _proc_env(p).get(MARKER_ENV) == c.marker]
    steps = [p for p in pids if p not in marked and _is_step_of(p, c.dir)]
    sessions = {_session(p) for p in steps}
    jobs = [p for p in pids if p not in marked and p not in steps and _session(p) in sessions]
    return marked + steps + jobs


def kill_cluster(c: Cluster) -> int:
    """Kill every process of the cluster with ``SIGKILL`` (a power cut). Returns how many."""
    victims = cluster_processes(c)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_session(p) is not None for p in victims):
        time.sleep(0.05)
    c.pids.clear()
    return len(victims)


def stop_cluster(c: Cluster) -> int:
    """Take the cluster down as a power cut would. Returns the number of processes killed."""
    return kill_cluster(c)


def cluster_up(c: Cluster) -> bool:
    """Whether all three daemons run and the REST port answers."""
    alive = [p for p in (c.pids.get(d) for d in DAEMONS) if p and _session(p) is not None]
    if len(alive) < len(DAEMONS):
        return False
    try:
        with socket.create_connection(("127.0.0.1", c.rest_port), 0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- testbed


def _start_munged(root: Path) -> int:
    m = root / "munge"
    m.mkdir(exist_ok=True)
    key = m / "munge.key"
    if not key.exists():
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o600)
    sock = m / "munge.socket"
    argv = [
        _require("munged"),
        "-F",
        f"--key-file={key}",
        f"--socket={sock}",
        f"--pid-file={m / 'munged.pid'}",
        f"--log-file={m / 'munged.log'}",
        f"--seed-file={m / 'munged.seed'}",
        "--force",
    ]
    pid = _spawn(argv, m / "munged.out", dict(os.environ))
    deadline = time.monotonic() + 10
    while not sock.exists():
        if time.monotonic() > deadline:
            raise TestbedError(f"munged did not create {sock} (see {m / 'munged.log'})")
        time.sleep(0.05)
    return pid


def _munged_alive(tb: Testbed) -> bool:
    return tb.munged_pid > 0 and _session(tb.munged_pid) is not None


def choose_centers(inventory: dict[str, dict[str, int]], n: int) -> list[str]:
    """``n`` centers with accelerators: :data:`PREFERRED_CENTERS` first, then the rest."""
    with_cards = [c for c, inv in inventory.items() if inv]
    ordered = [c for c in PREFERRED_CENTERS if c in with_cards]
    ordered += [c for c in with_cards if c not in ordered]
    if n > len(ordered):
        raise TestbedError(f"asked for {n} clusters but the scenario has {len(ordered)} centers")
    return ordered[:n]


def up(
    root: Path,
    inventory: dict[str, dict[str, int]],
    centers: Sequence[str],
    timeout_s: float = 60.0,
) -> Testbed:
    """Create and start one cluster per center of ``centers`` under ``root``.

    ``inventory`` maps every center of the scenario to its accelerator models and card counts;
    each cluster offers :data:`NODE_CARDS` cards of each model its center has.
    """
    if os.getuid() != 0:
        raise TestbedError("the Slurm testbed needs root (slurmd starts jobs as another user)")
    root = root.resolve()
    if (root / STATE_FILE).exists():
        raise TestbedError(f"{root} already holds a testbed: `suanwang testbed down --dir {root}`")
    unknown = [c for c in centers if c not in inventory]
    if unknown:
        raise TestbedError(f"unknown center(s): {', '.join(unknown)}")
    if len(set(centers)) != len(centers):
        raise TestbedError("a center can have one cluster only")
    root.mkdir(parents=True, exist_ok=True)
    user = job_user()
    ports = free_ports(3 * len(centers))
    clusters = []
    for i, center in enumerate(centers):
        d = root / center
        for sub in ("state", "spool", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "jobs").mkdir(exist_ok=True)
        (d / "jobs").chmod(0o1777)
        clusters.append(
            Cluster(
                center_id=center,
                name=f"sw{i}",
                dir=str(d),
                ctld_port=ports[3 * i],
                slurmd_port=ports[3 * i + 1],
                rest_port=ports[3 * i + 2],
                gres={m: NODE_CARDS for m in sorted(inventory[center]) if m != "cpu"},
            )
        )
    tb = Testbed(dir=str(root), user=user, munged_pid=0, clusters=clusters)
    tb.munged_pid = _start_munged(root)
    tb.save()
    sock = str(root / "munge" / "munge.socket")
    for c in clusters:
        d = Path(c.dir)
        key = secrets.token_bytes(32)
        (d / "jwt.key").write_bytes(key)
        (d / "jwt.key").chmod(0o600)
        Path(c.token_file).write_text(mint_token(key, user) + "\n")
        Path(c.token_file).chmod(0o600)
        (d / "slurm.conf").write_text(slurm_conf(c, sock))
        (d / "gres.conf").write_text(gres_conf(c))
        _devices(c)
    try:
        for c in clusters:
            start_cluster(c, fresh=True, timeout_s=timeout_s)
            tb.save()
    except BaseException:
        down(tb)
        raise
    return tb


def start(tb: Testbed, center_id: str, timeout_s: float = 60.0) -> Cluster:
    """Bring one cluster back with its saved state (munged too, if it died)."""
    c = tb.cluster(center_id)
    if not _munged_alive(tb):
        tb.munged_pid = _start_munged(Path(tb.dir))
    start_cluster(c, fresh=False, timeout_s=timeout_s)
    tb.save()
    return c


def stop(tb: Testbed, center_id: str) -> int:
    c = tb.cluster(center_id)
    killed = stop_cluster(c)
    tb.save()
    return killed


def down(tb: Testbed) -> int:
    """Stop every cluster and munged; files stay (logs), the state file goes."""
    killed = sum(kill_cluster(c) for c in tb.clusters)
    if _munged_alive(tb):
        with contextlib.suppress(ProcessLookupError):
            os.kill(tb.munged_pid, signal.SIGKILL)
            killed += 1
    (Path(tb.dir) / STATE_FILE).unlink(missing_ok=True)
    return killed
