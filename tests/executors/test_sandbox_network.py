"""A job given network (``network: true``, where the operator allows it) gets an outbound-only
network, for real (root, bubblewrap and slirp4netns, as in CI).

"Outside" is a network namespace the test makes (``ip netns``) behind a veth pair: a machine
that is not this host. "The platform" is everything on this host: PostgreSQL on 127.0.0.1:5432
and a listener on ``0.0.0.0`` standing for the API, reachable on every address of the host
(the veth's host end included). Every probe also runs on the host itself, unsandboxed, where it
must reach all of it: so the test fails if the job's network stops blocking any of it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from suanwang.core.lifecycle import JobState
from suanwang.executors import LocalExecutor, Submission
from suanwang.executors.local import Sandbox
from suanwang.executors.local.outbound import host_addresses, main

CENTER = "c1"

#: Tries each target; prints one JSON object: target -> what happened.
PROBE = r"""
import json, socket, sys
targets, bound = json.loads(sys.argv[1]), json.loads(sys.argv[2])
found = {}
def attempt(host, port, device=None):
    s = socket.socket()
    s.settimeout(3)
    try:
        if device:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        s.connect((host, port))
    except OSError as exc:
        return type(exc).__name__
    try:
        s.settimeout(0.5)
        return s.recv(16).decode() or "connected"
    except OSError as exc:  # PostgreSQL waits for the client to speak first
        return "connected" if isinstance(exc, TimeoutError) else type(exc).__name__
        return type(exc).__name__
    finally:
        s.close()  # (the return above has its value already)
for host, port in targets:
    found[f"{host}:{port}"] = attempt(host, port)
for host, port, device in bound:
    found[f"{host}:{port}@{device}"] = attempt(host, port, device)
print(json.dumps(found))
"""


@dataclass(frozen=True)
class Outside:
    address: str  # in the outside namespace
    port: int
    host_end: str  # the veth's end on this host: an address of the host


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def outside() -> Iterator[Outside]:
    """A namespace with a TCP server answering ``outside``, routed from this host."""
    tag = f"sw{os.getpid() % 100000}"
    ns, here, there = f"{tag}-out", f"{tag}h", f"{tag}o"
    base = 4 * (os.getpid() % 63)
    host_end, address = f"198.51.100.{base + 1}", f"198.51.100.{base + 2}"
    _ip("netns", "add", ns)
    server = None
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        _ip("link", "set", there, "netns", ns)
        _ip("addr", "add", f"{host_end}/30", "dev", here)
        _ip("link", "set", here, "up")
        _ip("-n", ns, "addr", "add", f"{address}/30", "dev", there)
        _ip("-n", ns, "link", "set", there, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        code = (
            "import socket\ns = socket.create_server(('0.0.0.0', 0))\n"
            "print(s.getsockname()[1], flush=True)\n"
            "while True:\n    c, _ = s.accept()\n    c.sendall(b'outside')\n    c.close()\n"
        )
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code], stdout=subprocess.PIPE
        )
        assert server.stdout is not None
        port = int(server.stdout.readline())
        yield Outside(address, port, host_end)
    finally:
        if server is not None:
            server.kill()
            server.wait()
            if server.stdout is not None:
                server.stdout.close()
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", here)
        _ip("netns", "del", ns)


@pytest.fixture
def platform_port() -> Iterator[int]:
    """A listener on every address of this host, answering ``platform`` (as the API would)."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    port = server.getsockname()[1]
    stop = False

    def serve() -> None:
        while not stop:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.sendall(b"platform")
            conn.close()

    import threading

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop = True
    thread.join()
    server.close()


def run_probe(ex: LocalExecutor, job_id: str, argv: list[str], network: bool) -> dict[str, str]:
    command = " ".join(["python3", "-c", _q(PROBE), *map(_q, argv)])
    ref = ex.submit(Submission(job_id, job_id, command, None, tenant_id="t", network=network))
    deadline = time.monotonic() + 60
    while not (st := ex.poll([ref])[ref]).state.is_terminal:
        assert time.monotonic() < deadline, f"{ref} still {st.state}"
        time.sleep(0.05)
    log = ex.logs(ref)
    assert st.state is JobState.SUCCEEDED, log
    found: dict[str, str] = json.loads(log.strip().splitlines()[-1])
    return found


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def test_a_network_job_reaches_the_outside_and_nothing_of_the_host(
    tmp_path: Path, outside: Outside, platform_port: int
) -> None:
    addresses = host_addresses()
    assert outside.host_end in addresses and len(addresses) >= 2
    platform = [(a, platform_port) for a in ["127.0.0.1", *addresses]]
    postgres = [(a, 5432) for a in ["127.0.0.1", *addresses]]
    targets = [*platform, *postgres, ("10.0.2.2", 5432), ("10.0.2.2", platform_port)]
    targets.append((outside.address, outside.port))
    # a socket bound to the job's interface skips its routes: the host still is out of reach
    bound = [(a, platform_port, "tap0") for a in addresses]
    argv = [json.dumps(targets), json.dumps(bound)]

    # on the host, unsandboxed, every one of them answers: the probe can tell
    host = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(targets), "[]"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    seen = json.loads(host.stdout)
    assert all(seen[f"{a}:{p}"] == "platform" for a, p in platform), seen
    assert seen["127.0.0.1:5432"] == "connected"
    assert seen[f"{outside.address}:{outside.port}"] == "outside"

    ex = LocalExecutor(tmp_path, CENTER, cpus=2, cards=0, sandbox=Sandbox(allow_network=True))
    found = run_probe(ex, "net", argv, network=True)
    assert found.pop(f"{outside.address}:{outside.port}") == "outside"
    # the job's 127.0.0.1 is its own loopback; every address of the host is prohibited
    assert found.pop("127.0.0.1:5432") == "ConnectionRefusedError"
    assert found.pop(f"127.0.0.1:{platform_port}") == "ConnectionRefusedError"
    assert set(found.values()) <= {"PermissionError", "TimeoutError", "OSError"}, found
    for address in addresses:
        assert found[f"{address}:5432"] == found[f"{address}:{platform_port}"] == "PermissionError"
        assert found[f"{address}:{platform_port}@tap0"] in {"TimeoutError", "OSError"}

    # without network: true, the same job reaches nothing, not even the outside
    found = run_probe(ex, "none", argv, network=False)
    assert "outside" not in found.values() and "platform" not in found.values(), found
    assert "connected" not in found.values()


def test_extra_denied_networks_and_setup_failures(tmp_path: Path, outside: Outside) -> None:
    """``deny_networks`` (the platform's database elsewhere, say) is out of reach too; a bad
    one is refused up front; if the network cannot be made the job does not run."""
    sandbox = Sandbox(allow_network=True, deny_networks=(f"{outside.address}/32",))
    ex = LocalExecutor(tmp_path, CENTER, cpus=1, cards=0, sandbox=sandbox)
    target = [[outside.address, outside.port]]
    found = run_probe(ex, "deny", [json.dumps(target), "[]"], network=True)
    assert found == {f"{outside.address}:{outside.port}": "PermissionError"}
    with pytest.raises(ValueError, match="not an IPv4 network"):
        Sandbox(allow_network=True, deny_networks=("db.example",))
    assert "outbound-only network on request" in Sandbox(allow_network=True).describe()
    # no bwrap in the command, or a bad network: status 125 and nothing runs
    assert main(["--", "true"]) == 125
    assert main(["--deny", "nonsense", "--", "bwrap", "true"]) == 125


def _slirps() -> set[int]:
    done = subprocess.run(["pgrep", "-x", "slirp4netns"], capture_output=True, text=True)
    return {int(p) for p in done.stdout.split()}


def test_cancelling_a_network_job_ends_its_network_too(tmp_path: Path) -> None:
    ex = LocalExecutor(
        tmp_path, CENTER, cpus=1, cards=0, kill_grace_s=0.5, sandbox=Sandbox(allow_network=True)
    )
    before = _slirps()
    ref = ex.submit(Submission("long", "long", "touch ready; sleep 60", None, network=True))
    ready = tmp_path / CENTER / "long" / "work" / "ready"
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ours = _slirps() - before
    assert ours, "a network job has its slirp4netns"
    ex.cancel(ref)
    assert ex.poll([ref])[ref].state is JobState.CANCELLED
    deadline = time.monotonic() + 10
    while ours & _slirps():
        assert time.monotonic() < deadline, "slirp4netns outlived its job"
        time.sleep(0.05)
    assert not [n for n in os.listdir("/run/netns") if n.startswith("suanwang-job-")]
