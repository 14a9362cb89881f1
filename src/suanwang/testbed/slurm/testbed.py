"""The testbed: its clusters and ``munged`` as saved in ``DIR/testbed.json``, and bringing it
up, a cluster down and back, and everything down."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from suanwang.testbed.slurm.accounts import account_name, ensure_account, reachable, write_token
from suanwang.testbed.slurm.cluster import (
    NODE_CARDS,
    PARTITION,
    Cluster,
    TestbedError,
    gres_conf,
    gres_type,
    job_user,
    make_devices,
    mint_token,
    slurm_conf,
)
from suanwang.testbed.slurm.daemons import (
    cluster_up,
    free_ports,
    kill_cluster,
    require,
    session_of,
    spawn,
    start_cluster,
    stop_cluster,
)

STATE_FILE = "testbed.json"
PLATFORM_FILE = "platform.yaml"

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


@dataclass
class Testbed:
    """Everything ``testbed up`` started, as saved in ``DIR/testbed.json``."""

    __test__ = False  # not a pytest test class

    dir: str
    user: str
    munged_pid: int
    clusters: list[Cluster]
    #: tenant name -> its Unix account (the same at every cluster)
    accounts: dict[str, str] = field(default_factory=dict)

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
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TestbedError(f"{path} is not a testbed's state file: {exc}") from None
        try:
            clusters = [Cluster(**c) for c in raw.pop("clusters")]
            return cls(clusters=clusters, **raw)
        except (AttributeError, KeyError, TypeError) as exc:  # not the shape `save` writes
            raise TestbedError(
                f"{path} is not a testbed's state file (written by another version of "
                f"suanwang, or edited): {exc}"
            ) from None

    def describe(self) -> dict[str, Any]:
        return {
            "dir": self.dir,
            "config": str(Path(self.dir) / PLATFORM_FILE),
            "user": self.user,
            "accounts": dict(self.accounts),
            "centers": [
                {
                    "center_id": c.center_id,
                    "url": c.url,
                    "slurm_conf": c.slurm_conf,
                    "token_file": c.token_file,
                    "account_tokens": c.tokens_dir,
                    "partition": PARTITION,
                    "gres": {gres_type(m): n for m, n in c.gres.items()},
                    "up": cluster_up(c),
                }
                for c in self.clusters
            ],
        }


def _start_munged(root: Path) -> int:
    m = root / "munge"
    m.mkdir(exist_ok=True)
    key = m / "munge.key"
    if not key.exists():
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o600)
    sock = m / "munge.socket"
    argv = [
        require("munged"),
        "-F",
        f"--key-file={key}",
        f"--socket={sock}",
        f"--pid-file={m / 'munged.pid'}",
        f"--log-file={m / 'munged.log'}",
        f"--seed-file={m / 'munged.seed'}",
        "--force",
    ]
    pid = spawn(argv, m / "munged.out", dict(os.environ))
    deadline = time.monotonic() + 10
    while not sock.exists():
        if time.monotonic() > deadline:
            raise TestbedError(f"munged did not create {sock} (see {m / 'munged.log'})")
        time.sleep(0.05)
    return pid


def _munged_alive(tb: Testbed) -> bool:
    return tb.munged_pid > 0 and session_of(tb.munged_pid) is not None


def choose_centers(inventory: dict[str, dict[str, int]], n: int) -> list[str]:
    """``n`` centers with accelerators: :data:`PREFERRED_CENTERS` first, then the rest."""
    with_cards = [c for c, inv in inventory.items() if inv]
    ordered = [c for c in PREFERRED_CENTERS if c in with_cards]
    ordered += [c for c in with_cards if c not in ordered]
    if n > len(ordered):
        raise TestbedError(f"asked for {n} clusters but the scenario has {len(ordered)} centers")
    return ordered[:n]


def add_tenants(tb: Testbed, tenants: Iterable[str]) -> dict[str, str]:
    """Give each of ``tenants`` its Unix account (``sw-<tenant>``) and a JWT for it at every
    cluster; returns the new ``tenant -> account`` entries (tenants that had one are kept)."""
    new = {t: account_name(t) for t in tenants if t not in tb.accounts}
    for account in new.values():
        ensure_account(account)
        for c in tb.clusters:
            write_token(c, account)
    tb.accounts.update(new)
    tb.save()
    return new


#: The longest path of a Unix socket (``sun_path``, its terminating NUL excluded).
UNIX_PATH_MAX = 107
#: The longest name of a job step's socket in ``SlurmdSpoolDir``: ``<node>_<job>.<step>``, with
#: Slurm's largest job id (``MaxJobId``'s default) and step id.
_STEP_SOCKET = "{node}_67043328.4294967295"


def _check_socket_path(spool: Path, node: str) -> None:
    """Refuse a directory too deep for Slurm: ``slurmstepd`` makes each step's Unix socket in
    the node's spool directory and, when that path is too long, dies before the job starts
    (the job then never runs, with the reason only in ``slurmd.log``)."""
    path = spool / _STEP_SOCKET.format(node=node)
    if len(str(path)) > UNIX_PATH_MAX:
        raise TestbedError(
            f"{spool.parent.parent} is too deep for Slurm: a job step's socket would be {path} "
            f"({len(str(path))} characters; a Unix socket's path is at most {UNIX_PATH_MAX}): "
            "use a shorter --dir"
        )


def up(
    root: Path,
    inventory: dict[str, dict[str, int]],
    centers: Sequence[str],
    timeout_s: float = 60.0,
    tenants: Sequence[str] = (),
) -> Testbed:
    """Create and start one cluster per center of ``centers`` under ``root``, with an account
    for each of ``tenants`` (:func:`add_tenants`; more can be added later).

    ``inventory`` maps every center of the scenario to its accelerator models and card counts;
    each cluster offers :data:`NODE_CARDS` cards of each model its center has. Jobs run as
    tenants' accounts, so ``root`` must be reachable by other users (its parents ``o+x``).
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
    for t in tenants:
        account_name(t)  # a clear error before anything starts
    for i, center in enumerate(centers):  # before anything starts
        _check_socket_path(root / center / "spool", f"sw{i}n1")
    root.mkdir(parents=True, exist_ok=True)
    reachable(root)
    root.chmod(0o711)
    user = job_user()
    ports = free_ports(3 * len(centers))
    clusters = []
    for i, center in enumerate(centers):
        d = root / center
        for sub in ("state", "spool", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
            (d / sub).chmod(0o755 if sub == "spool" else 0o700)  # slurmd runs jobs from spool
        d.chmod(0o711)
        # the platform makes each run's directory and hands it to the tenant's account
        (d / "jobs").mkdir(exist_ok=True)
        (d / "jobs").chmod(0o711)  # nobody lists the runs
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
        make_devices(c)
    try:
        add_tenants(tb, tenants)
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
