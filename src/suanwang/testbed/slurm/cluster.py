"""One Slurm cluster of the testbed: what it is (ports, directories, cards), its JWT and its
configuration files (``slurm.conf``, ``gres.conf``, the devices standing in for cards)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pwd
import time
from dataclasses import dataclass, field
from pathlib import Path

#: The REST API version the executor speaks (Slurm 22.05 – 23.02 serve it).
API_VERSION = "v0.0.38"
#: Environment variable carried by every daemon (and so every job step) of a cluster.
MARKER_ENV = "SUANWANG_TESTBED_CLUSTER"
#: Cards of each accelerator model a testbed node offers, and its CPUs and memory.
NODE_CARDS = 8
NODE_CPUS = 256
NODE_MEM_MB = 1_024_000
TOKEN_LIFESPAN_S = 365 * 24 * 3600
PARTITION = "suanwang"

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
    def tokens_dir(self) -> str:
        """One JWT per tenant account, named after the account (``account_tokens``)."""
        return str(Path(self.dir) / "tokens")

    @property
    def marker(self) -> str:
        """The value of :data:`MARKER_ENV` in this cluster's processes."""
        return self.dir


def gres_type(model: str) -> str:
    """The GRES type name of an accelerator model (Slurm type names take no ``-``)."""
    return model.replace("-", "_")


def job_user() -> str:
    """The user testbed jobs run as: whoever runs the testbed."""
    return pwd.getpwuid(os.getuid()).pw_name


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


def make_devices(c: Cluster) -> None:
    """Character devices standing in for cards (major 1, minor 3: a ``/dev/null``)."""
    dev = Path(c.dir) / "dev"
    dev.mkdir(exist_ok=True)
    for model, n in c.gres.items():
        for i in range(n):
            path = dev / f"{gres_type(model)}{i}"
            if not path.exists():
                os.mknod(path, 0o666 | 0o020000, os.makedev(1, 3))
