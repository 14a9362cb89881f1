"""The local executor's sandbox: every job as an unprivileged account, in namespaces, limited.

A tenant's job is a stranger's code. The local executor (run by root) starts it

* as an unprivileged Unix account: by default one per tenant, ``sw-t-<12 hex digits of the
  SHA-256 of the tenant id>``, created on first use (``useradd --system``, no home, no login
  shell; its comment names the tenant, and an account whose comment names another tenant is
  refused), or one fixed account for every job (:attr:`Sandbox.account`); never root and
  never the server's own user;
* in Debian's ``bubblewrap`` (``bwrap``): its own PID namespace (it sees only its own
  processes), IPC and UTS namespaces, a read-only view of ``/usr`` (and the ``/bin``, ``/lib``
  links), a minimal read-only ``/etc``, its own ``/proc``, ``/dev`` and ``/tmp``; nothing else
  of the host: not the server's files, not other runs' directories, not the database files or
  sockets (``/run``, ``/var/run``). Its own directories (the run's ``work/``, its checkpoint
  directory, the run it resumes from, its usage file and its script) are bound at the same
  paths as on the host, so the ``SUANWANG_*`` variables hold for both;
* in a network namespace of its own (``--unshare-net``): a loopback of its own, nothing else;
  a job that asks for network where the operator allows it (:attr:`Sandbox.allow_network`)
  gets an **outbound-only** network there (:mod:`suanwang.executors.local.outbound`:
  ``slirp4netns --disable-host-loopback`` and ``prohibit`` routes to every address of the
  host and to :attr:`Sandbox.deny_networks`), never the host's own network;
* under resource limits (:mod:`suanwang.executors.limits`, the rule the Slurm executor's
  contained runs share): where the host has a writable cgroup ``memory`` (``pids``)
  controller and :attr:`Sandbox.cgroups` is on, the run's own cgroup holds its memory (the
  job's ``mem_gb``, what it uses) and its processes (:mod:`suanwang.executors.local.cgroups`;
  the job's first process joins it before it runs anything); otherwise, and for CPU seconds
  and file size always, rlimits set with ``prlimit`` (address space = the job's ``mem_gb``,
  processes of its account).

Signals: the executor signals the run's process group (``SIGUSR1`` to checkpoint, ``SIGTERM``
to cancel). ``bwrap`` and its init ignore both (so the sandbox outlives the signal), the job
gets them with their default action (``env --default-signal``), so it may trap them as before.
When the run's processes are killed (``SIGKILL``, after the grace period), ``bwrap`` dies and
takes the whole PID namespace with it (``--die-with-parent``): a job's process that left the
process group or cleared its environment goes too.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from suanwang.executors.contain import bwrap_args, restore_signals
from suanwang.executors.limits import Limits
from suanwang.executors.local.cgroups import JOIN

#: The prefix of per-tenant accounts.
ACCOUNT_PREFIX = "sw-t-"
#: The comment (GECOS field) of a per-tenant account: names the tenant it belongs to.
ACCOUNT_COMMENT = "suanwang tenant {tenant}"
#: The programs the sandbox needs (Debian: bubblewrap, util-linux, coreutils, passwd).
TOOLS = ("bwrap", "setpriv", "prlimit", "env", "useradd")
#: What a network job needs besides (Debian: slirp4netns, iproute2).
NETWORK_TOOLS = ("slirp4netns", "ip")
#: The helper that gives a network job its outbound-only network (run as a file: stdlib only).
OUTBOUND = Path(__file__).with_name("outbound.py")


@dataclass(frozen=True, slots=True)
class SharedUser:
    """No sandbox (``--unsafe-shared-user``): jobs run as the server's own user, with its
    rights: they can read its files and command lines, reach its database and change
    balances. Dangerous; for a laptop, never for strangers' code."""

    def describe(self) -> str:
        return (
            "DANGEROUS: --unsafe-shared-user: jobs run unsandboxed as the server's own user "
            f"(uid {os.getuid()}) and can read its files and reach its database"
        )


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run here (not root, or a program is missing): the message says why
    and that ``--unsafe-shared-user`` is the (dangerous) way around it."""


@dataclass(frozen=True, slots=True)
class Account:
    """The Unix account a job runs as."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class Sandbox:
    """How the local executor contains jobs (see the module docstring).

    ``account``: one fixed account for every job (created if missing); ``None``: one account
    per tenant. ``allow_network``: jobs that ask for network (``Submission.network``) get an
    outbound-only one (no address of the host, nor ``deny_networks``, IPv4 networks such as
    the platform's database host elsewhere, is reachable); otherwise such a job is refused.
    ``limits``: the job's resource limits (:class:`~suanwang.executors.limits.Limits`).
    ``cgroups``: memory and processes limited by a cgroup per run where the host has one
    (off: rlimits only).
    """

    account: str | None = None
    allow_network: bool = False
    deny_networks: tuple[str, ...] = ()
    limits: Limits = Limits()  # noqa: RUF009 (frozen: shared safely)
    cgroups: bool = True

    def __post_init__(self) -> None:
        if self.account is not None and not _valid_name(self.account):
            raise ValueError(f"sandbox account {self.account!r}: not a valid account name")
        for net in self.deny_networks:
            try:
                ipaddress.IPv4Network(net, strict=False)
            except ValueError:
                raise ValueError(f"deny network {net!r}: not an IPv4 network") from None

    def check(self) -> None:
        """Raise :class:`SandboxUnavailable` unless jobs can be sandboxed here."""
        why = []
        if os.geteuid() != 0:
            why.append(f"the server runs as uid {os.geteuid()}, not root")
        missing = [t for t in TOOLS if shutil.which(t, path=_SYSTEM_PATH) is None]
        if missing:
            why.append(f"missing {', '.join(missing)} (Debian: apt-get install bubblewrap)")
        if self.allow_network:
            missing = [t for t in NETWORK_TOOLS if shutil.which(t, path=_SYSTEM_PATH) is None]
            if missing:
                why.append(
                    f"jobs may have network but {', '.join(missing)} is missing (Debian: "
                    "apt-get install slirp4netns)"
                )
        if why:
            raise SandboxUnavailable(
                "cannot sandbox jobs: " + "; ".join(why) + ". Jobs would run as the server's "
                "own user and could read its files and database: pass --unsafe-shared-user to "
                "run them so anyway (dangerous; for a laptop, never for strangers' code)"
            )
        if self.account is not None:
            account = self.account_for("")
            if account.uid == 0 or account.uid == os.getuid():
                raise SandboxUnavailable(f"sandbox account {self.account!r} is privileged")

    def describe(self) -> str:
        """One line for the startup log."""
        who = f"as {self.account}" if self.account else f"as per-tenant accounts {ACCOUNT_PREFIX}*"
        net = "outbound-only network on request" if self.allow_network else "no network"
        how = (
            "memory and processes by a cgroup per run where the host has one (the executor "
            "logs which), else rlimits; CPU time and file size by rlimits"
            if self.cgroups
            else "rlimits via prlimit (cgroups off)"
        )
        return (
            f"jobs run sandboxed (bubblewrap) {who}, {net}; limits: {how}: {self.limits.describe()}"
        )

    def account_for(self, tenant: str) -> Account:
        """The account a job of ``tenant`` runs as, created on first use."""
        if self.account is not None:
            return _ensure_account(self.account, comment="suanwang jobs", check_comment=False)
        digest = hashlib.sha256(tenant.encode()).hexdigest()[:12]
        comment = ACCOUNT_COMMENT.format(tenant=tenant or "-")
        return _ensure_account(ACCOUNT_PREFIX + digest, comment=comment, check_comment=True)

    def command(
        self,
        account: Account,
        *,
        work: Path,
        writable: list[Path],
        readable: list[Path],
        mem_gb: float,
        network: bool,
        cgroup_procs: Sequence[Path] = (),
        cgroup_memory: bool = False,
        cgroup_processes: bool = False,
    ) -> list[str]:
        """The command that runs a job's program (appended to it) in the sandbox.

        ``work`` is its directory (its cwd and ``$HOME``); ``writable`` and ``readable`` are
        bound read-write and read-only at their own paths. ``cgroup_procs``: the run's cgroups
        its first process joins (:data:`~suanwang.executors.local.cgroups.JOIN`), which hold
        its memory (``cgroup_memory``) and processes (``cgroup_processes``) limits instead of
        rlimits. Run it with ``SIGUSR1`` and ``SIGTERM`` ignored (the job gets them back with
        their default action).
        """
        if network and not self.allow_network:
            raise SandboxUnavailable("the job asks for network and this executor allows none")
        limits = self.limits.prlimit(
            mem_gb, memory=not cgroup_memory, processes=not cgroup_processes
        )
        join: list[str] = []
        if cgroup_procs:
            join = ["/bin/sh", "-c", JOIN, "sh", str(len(cgroup_procs)), *map(str, cgroup_procs)]
        bwrap = bwrap_args(
            work=work, writable=writable, readable=readable, user=account.name, network=network
        )  # a network job's namespace is OUTBOUND's, made before bwrap starts
        drop = [
            "setpriv",
            f"--reuid={account.uid}",
            f"--regid={account.gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]
        restore = restore_signals()
        outbound: list[str] = []
        if network:
            outbound = [sys.executable, "-I", "-S", str(OUTBOUND)]
            for net in self.deny_networks:
                outbound += ["--deny", net]
            outbound.append("--")
        return [*outbound, *join, *limits, *bwrap, *drop, *restore]


def give(path: Path, account: Account, mode: int) -> None:
    """Make ``path`` (not followed if a link) the account's, with ``mode``."""
    os.chown(path, account.uid, account.gid, follow_symlinks=False)
    if not path.is_symlink():
        path.chmod(mode)


def give_tree(top: Path, account: Account) -> None:
    """Make everything under ``top`` the account's (links are not followed): a checkpoint
    written by an earlier run of the same job, for the run that resumes from it."""
    os.chown(top, account.uid, account.gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in (*dirnames, *filenames):
            os.chown(Path(dirpath) / name, account.uid, account.gid, follow_symlinks=False)


_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _valid_name(name: str) -> bool:
    return (
        0 < len(name) <= 32
        and name[0].isascii()
        and (name[0].isalpha() or name[0] == "_")
        and all(c.isascii() and (c.isalnum() or c in "_-") for c in name)
    )


def _ensure_account(name: str, *, comment: str, check_comment: bool) -> Account:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = _create_account(name, comment)
    if check_comment and entry.pw_gecos != comment:
        raise SandboxUnavailable(
            f"account {name} exists but is not this tenant's ({entry.pw_gecos!r}, expected "
            f"{comment!r}): refusing to run the job as it"
        )
    if entry.pw_uid == 0:
        raise SandboxUnavailable(f"account {name} is root: refusing to run jobs as it")
    return Account(name, entry.pw_uid, entry.pw_gid)


def _create_account(name: str, comment: str) -> pwd.struct_passwd:
    done = subprocess.run(
        [
            shutil.which("useradd", path=_SYSTEM_PATH) or "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            "--comment",
            comment,
            name,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        return pwd.getpwnam(name)  # made now, or by another executor at the same time
    except KeyError:
        raise SandboxUnavailable(
            f"could not create the account {name}: {done.stderr.strip() or done.returncode}"
        ) from None
