"""An outbound-only network for a sandboxed job that asked for one (``network: true``).

Run by the run's wrapper, as root, in front of the sandbox command (``prlimit ... bwrap ...``,
without ``--unshare-net``)::

    python3 -I -S outbound.py [--deny CIDR]... -- prlimit ... bwrap ... -- JOB...

It makes a network namespace for the job (``ip netns add``; the name is removed at once, the
namespace lives as long as its processes), and there, before the job starts:

1. attaches Debian's ``slirp4netns`` with ``--disable-host-loopback``: a user-mode network
   stack (``tap0``, 10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3) whose connections leave
   from the host as ordinary sockets of this root process; ``10.0.2.2`` does not lead to the
   host's loopback;
2. adds ``prohibit`` routes (``connect`` fails with ``EACCES``) to every IPv4 address the host
   has at this moment (they *are* the host: the API and the database listening on
   ``0.0.0.0`` would be reachable through them), to ``10.0.2.2`` again, and to each ``--deny``
   network (the platform's database or API on other machines). The job runs without
   capabilities (``setpriv``), so it cannot change these routes; a socket bound to ``tap0``
   (``SO_BINDTODEVICE``) skips the routes but then needs the address on the link, and
   slirp answers ARP only for its own addresses (tested);
3. starts the command in that namespace; when the job ends, ends ``slirp4netns`` (also if
   this process is killed: its ``--exit-fd`` is a pipe only this process holds) and exits
   with the job's status.

Loopback inside the namespace is the job's own (``127.0.0.1:5432`` is not the host's
PostgreSQL). No IPv6 (slirp4netns without ``--enable-ipv6``): the namespace has no IPv6 route.

Standard library only, run with ``-I -S``: it starts in milliseconds and imports nothing of
the platform. Exit status 125 and a line on stderr (the job's log) if the network could not be
set up; the job does not run then.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence

#: Where the programs are looked up (not the job's or the caller's PATH).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The programs this needs (Debian: slirp4netns, util-linux, iproute2).
TOOLS = ("slirp4netns", "ip")
#: slirp's gateway: the host's loopback unless ``--disable-host-loopback`` (denied anyway).
HOST_LOOPBACK_ALIAS = "10.0.2.2"
TAP = "tap0"
CLONE_NEWNET = 0x40000000
#: The status when the network could not be set up (the job did not run).
SETUP_FAILED = 125
SETUP_TIMEOUT_S = 30.0


class SetupError(RuntimeError):
    pass


def tool(name: str) -> str:
    path = shutil.which(name, path=SYSTEM_PATH)
    if path is None:
        raise SetupError(f"{name} not found (Debian: apt-get install slirp4netns iproute2)")
    return path


def host_addresses() -> list[str]:
    """Every IPv4 address of the host's interfaces now (``ip -j -4 addr``)."""
    links = json.loads(ip("-j", "-4", "addr", "show") or "[]")
    found = {
        info["local"]
        for link in links
        for info in link.get("addr_info", [])
        if info.get("family") == "inet" and "local" in info
    }
    # loopback inside the job's namespace is its own, not the host's
    found = {a for a in found if not ipaddress.IPv4Address(a).is_loopback}
    return sorted(found, key=ipaddress.IPv4Address)


def denied(extra: Sequence[str]) -> list[str]:
    """The networks a job may not reach: the host's addresses, slirp's host alias, ``extra``."""
    nets = [str(ipaddress.IPv4Network(n, strict=False)) for n in extra]
    hosts = [f"{a}/32" for a in (*host_addresses(), HOST_LOOPBACK_ALIAS)]
    return list(dict.fromkeys([*hosts, *nets]))


def parse(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``([--deny CIDR]..., -- COMMAND...)`` into (deny, command)."""
    deny: list[str] = []
    args = list(argv)
    while args and args[0] == "--deny" and len(args) > 1:
        deny.append(args[1])
        args = args[2:]
    if not args or args[0] != "--" or len(args) < 2:
        raise SetupError("usage: outbound.py [--deny CIDR]... -- COMMAND...")
    command = args[1:]
    if not any(os.path.basename(a) == "bwrap" for a in command):
        raise SetupError("the command has no bwrap")
    return deny, command


def attach(netns: str, exit_fd: int) -> subprocess.Popen[bytes]:
    """Start slirp4netns on the namespace at path ``netns``; return once its network is up."""
    ready_r, ready_w = os.pipe()
    slirp = subprocess.Popen(
        [
            tool("slirp4netns"),
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--netns-type=path",
            f"--ready-fd={ready_w}",
            f"--exit-fd={exit_fd}",
            netns,
            TAP,
        ],
        pass_fds=(ready_w, exit_fd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # its chatter would land in the job's log
    )
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        if not ready.read(1):
            slirp.kill()
            raise SetupError(f"slirp4netns ended before the network was up ({slirp.wait()})")
    return slirp


def ip(*args: str, batch: str = "") -> str:
    """Run ``ip`` with ``args`` (``batch`` on its stdin); its output."""
    done = subprocess.run(
        [tool("ip"), *args],
        input=batch,
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise SetupError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def enter(fd: int) -> Callable[[], None]:
    """A ``preexec_fn`` that moves the child into the network namespace open as ``fd``."""
    libc = ctypes.CDLL(None, use_errno=True)

    def join() -> None:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")

    return join


def run(deny: Sequence[str], command: Sequence[str]) -> int:
    """Run ``command`` (a bwrap sandbox) with the outbound-only network; its exit status."""
    nets = denied(deny)
    name = f"suanwang-job-{os.getpid()}"
    path = f"/run/netns/{name}"
    exit_r, exit_w = os.pipe()  # held only here: slirp4netns ends when this process does
    ip("netns", "add", name)
    slirp = None
    try:
        # the namespace lives while this holds it open (and while the job is in it); its name
        # goes at once, so nothing is left behind if this is killed
        held = os.open(path, os.O_RDONLY)
        slirp = attach(path, exit_r)
        routes = "".join(f"route add prohibit {n}\n" for n in nets)
        ip("-n", name, "-batch", "-", batch="link set lo up\n" + routes)
    except (SetupError, OSError, subprocess.SubprocessError) as exc:
        if slirp is not None:
            slirp.kill()
            slirp.wait()
        raise SetupError(str(exc)) from None
    finally:
        os.close(exit_r)
        ip("netns", "delete", name)
    job = subprocess.Popen(command, preexec_fn=enter(held))  # one thread: preexec_fn is safe
    os.close(held)
    code = job.wait()
    os.close(exit_w)
    try:
        slirp.wait(timeout=SETUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        slirp.kill()
        slirp.wait()
    return code if code >= 0 else 128 - code


def main(argv: Sequence[str]) -> int:
    try:
        deny, command = parse(argv)
        for net in deny:
            ipaddress.IPv4Network(net, strict=False)
    except (SetupError, ValueError) as exc:
        print(f"suanwang: {exc}", file=sys.stderr)
        return SETUP_FAILED
    try:
        return run(deny, command)
    except (SetupError, OSError, subprocess.SubprocessError) as exc:
        print(f"suanwang: the job's network could not be set up: {exc}", file=sys.stderr)
        return SETUP_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
