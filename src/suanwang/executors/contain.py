"""The view a contained job gets: the ``bwrap`` (Debian's ``bubblewrap``) arguments, shared by
the local executor's sandbox (:mod:`suanwang.executors.local.sandbox`, ``bwrap`` run as root,
then ``setpriv`` to the job's account) and the Slurm executor's run wrapper
(:mod:`suanwang.executors.slurm`, ``bwrap`` run by the job's own unprivileged account on the
compute node, in an unprivileged user namespace).

The job gets its own PID, IPC and UTS namespaces (and a cgroup namespace where it can), by
default its own network namespace (a loopback of its own, nothing else), a read-only ``/usr``
(and the ``/bin``, ``/lib``… links), a minimal read-only ``/etc``, its own ``/proc``, ``/dev``,
``/tmp`` and ``/var/tmp``, and of the host's files only its own directories, bound at their
own paths (``writable`` read-write, ``readable`` read-only; ``hidden`` ones empty, with what
is bound inside them on top). The directories above them are traversable, not listable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

#: Files of ``/etc`` a job sees (read-only, those that exist): names, libraries, time zone,
#: certificates and resolver (for jobs with network).
ETC = (
    "passwd", "group", "nsswitch.conf", "hosts", "resolv.conf", "host.conf", "localtime",
    "timezone", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "ssl",
    "ca-certificates", "ca-certificates.conf", "mime.types", "protocols", "services",
)  # fmt: skip
#: Top-level links or directories into ``/usr`` (merged /usr: links).
SYSTEM = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: What a job's environment has for the programs it runs.
JOB_PATH = "/usr/local/bin:/usr/bin:/bin"
#: The signals the platform sends a run: the sandbox ignores them, the job gets them.
RUN_SIGNALS = ("USR1", "TERM")


def bwrap_args(
    *,
    work: Path,
    writable: Sequence[Path],
    readable: Sequence[Path],
    user: str,
    network: bool,
    here: bool = True,
    hidden: Sequence[Path] = (),
) -> list[str]:
    """``bwrap …`` up to and including its ``--``: the job's program (and how it drops
    privileges, if it must) follows.

    ``work`` is the job's cwd and ``$HOME``; ``user`` its ``$USER``. ``network``: keep the
    network namespace it is started in (the local sandbox's outbound-only one), else
    ``--unshare-net``. ``here``: the command runs on this host, so ``/bin`` and the others are
    made links or binds as they are here; otherwise (a compute node elsewhere) each is bound
    if it exists there (a link there is followed: the same files either way). ``hidden``:
    directories replaced by an empty one in the view (what a bound directory holds that the
    job must not see); what lies in them is bound again on top. The binds go outermost first,
    so a directory is bound (or hidden) before what lies in it.
    """
    bwrap = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc"]
    bwrap += ["--unshare-uts", "--hostname", "suanwang-job", "--unshare-cgroup-try"]
    if not network:
        bwrap.append("--unshare-net")
    bwrap += ["--ro-bind", "/usr", "/usr"]
    for name in SYSTEM:
        path = Path("/") / name
        if not here:
            bwrap += ["--ro-bind-try", str(path), str(path)]
        elif path.is_symlink():
            bwrap += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            bwrap += ["--ro-bind", str(path), str(path)]
    bwrap += ["--dir", "/etc"]
    for name in ETC:
        bwrap += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    bwrap += ["--proc", "/proc", "--dev", "/dev"]
    bwrap += ["--perms", "1777", "--tmpfs", "/tmp", "--perms", "1777", "--tmpfs", "/var/tmp"]
    # the directories above the bound ones: traversable, not listable (bwrap's are 0700)
    above = {p for path in (*writable, *readable) for p in path.parents}
    for path in sorted(above - {Path("/"), Path("/tmp"), Path("/var/tmp")}, key=_depth):
        bwrap += ["--perms", "0711", "--dir", str(path)]
    mounts = [("--bind", p) for p in writable] + [("--ro-bind", p) for p in readable]
    mounts += [("--tmpfs", p) for p in hidden]  # after a bind of the same directory
    for op, path in sorted(mounts, key=lambda m: (len(m[1].parts), m[0] == "--tmpfs")):
        if op == "--tmpfs":
            bwrap += ["--perms", "0711", "--tmpfs", str(path)]
        else:
            bwrap += [op, str(path), str(path)]
    bwrap += ["--chdir", str(work), "--setenv", "HOME", str(work), "--setenv", "TMPDIR", "/tmp"]
    bwrap += ["--setenv", "USER", user, "--setenv", "LOGNAME", user]
    bwrap += ["--setenv", "PATH", JOB_PATH, "--"]
    return bwrap


def restore_signals() -> list[str]:
    """``env …``: the job gets :data:`RUN_SIGNALS` back with their default action (the sandbox
    around it runs with them ignored, so a signal to the whole run does not end it)."""
    return ["env", *(f"--default-signal={s}" for s in RUN_SIGNALS), "--"]


def _depth(path: Path) -> tuple[int, str]:
    return len(path.parts), str(path)
