"""Helpers of the tests that start the platform's processes themselves."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable

import httpx


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(
    url: str, proc: subprocess.Popen[bytes], why: Callable[[], str], timeout: float = 60
) -> None:
    """Until ``url``/healthz answers 200; fails with ``why()`` (its log) when ``proc`` ends
    or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("server did not start:\n" + why())
        time.sleep(0.2)


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 20) -> None:
    """Ask every process still running to end (waking stopped ones first: a SIGSTOPped
    process would not see SIGTERM), then kill those that have not ended within ``timeout``
    seconds of the ask."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
    for proc in running:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
