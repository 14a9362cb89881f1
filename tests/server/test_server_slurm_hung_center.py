"""A center that hangs delays no other: its ``slurmrestd`` stopped (SIGSTOP: every call to it
blocks until its timeout), the runs at a healthy center keep their short lease and finish
exactly once, and the healthy center's new jobs are handed over meanwhile.

The services run as in ``suanwang serve``: each in a loop thread of its own."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from slurm_platform import FINAL, SMALL, Platform, events, get, run_until
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.server.services.loop import LoopService
from suanwang.testbed import slurm

LEASE_S = 4.0


@pytest.fixture
def platform(
    app: FastAPI, sessions: sessionmaker[Session], slurm_testbed: slurm.Testbed, shared_tmp: Path
) -> Iterator[Platform]:
    # slurmrestd's timeout stays the platform file's (10 s): far longer than the lease
    p = Platform(app, sessions, slurm_testbed, shared_tmp, lease_s=LEASE_S, lost_after_s=600.0)
    yield p
    p.close()


def _loops(p: Platform) -> list[LoopService]:
    return [
        LoopService("dispatcher", p.dispatcher.run_once, 0.5),
        LoopService("reconciler", p.reconciler.run_once, 1.0),
        LoopService("failover", p.failover.run_once, 2.0),
    ]


def _wait(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what}")
        time.sleep(0.5)


# about Slurm, not the database: PostgreSQL only (the production one; it keeps CI short)
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_hung_center_delays_no_other(
    client: TestClient,
    platform: Platform,
    slurm_testbed: slurm.Testbed,
    alice: Any,
    operator: Any,
    submit: Callable[..., dict[str, Any]],
    shared_tmp: Path,
) -> None:
    p = platform
    hung, good = slurm_testbed.clusters[0], slurm_testbed.clusters[1]

    def drain(center: str, on: bool) -> None:
        path = f"/v1/centers/{center}/{'drain' if on else 'undrain'}"
        r = client.post(path, json={"reason": "test"}, headers=operator.headers)
        assert r.status_code == 200, r.text

    markers = shared_tmp / "markers"
    drain(good.center_id, True)
    victim = submit(alice, name="victim", command="sleep 600", **SMALL)["id"]
    loops: list[LoopService] = []
    try:
        run_until(p, lambda: get(client, alice, victim)["state"] == "running", what="victim runs")
        assert get(client, alice, victim)["center_id"] == hung.center_id
        # a job placed at the hung center, its hand-over comes after the hang
        waiting = submit(alice, name="waiting", command=f"echo $SUANWANG_JOB_ID >> {markers}",
                         **SMALL)["id"]  # fmt: skip
        p.dispatcher.place()
        assert get(client, alice, waiting)["center_id"] == hung.center_id
        drain(good.center_id, False)
        drain(hung.center_id, True)
        os.kill(hung.pids["slurmrestd"], signal.SIGSTOP)
        try:
            loops = _loops(p)
            for loop in loops:
                loop.start()
            # longer than the lease: each run lives on only if every round renews it
            slow = f"sleep {3 * LEASE_S:.0f}; echo $SUANWANG_JOB_ID >> {markers}"
            ids = [submit(alice, name=f"ok-{i}", command=slow, **SMALL)["id"] for i in range(3)]
            _wait(lambda: all(get(client, alice, j)["state"] in FINAL for j in [*ids, waiting]),
                  120, "the healthy center's jobs end")  # fmt: skip
        finally:
            os.kill(hung.pids["slurmrestd"], signal.SIGCONT)
        for j in [*ids, waiting]:
            job = get(client, alice, j)
            assert (job["state"], job["center_id"]) == ("succeeded", good.center_id), events(
                client, alice, j
            )
            assert not [e for e in events(client, alice, j) if e["to_state"] == "lost"]
        lines = markers.read_text().splitlines()
        assert sorted(lines) == sorted([*ids, waiting]), "each job's marker exactly once"
    finally:
        for loop in loops:
            loop.stop()
        client.post(f"/v1/jobs/{victim}/cancel", headers=alice.headers)
        run_until(p, lambda: get(client, alice, victim)["state"] in FINAL, what="victim ends")
        drain(hung.center_id, False)
