"""Resource limits of contained Slurm jobs (issue 15: a job "cannot ... exceed its memory
limit", "the same for two tenants on the Slurm testbed"), on the real testbed.

The testbed's Slurm has no cgroups (``task/none``): the run wrapper sets the job's rlimits
(:mod:`suanwang.executors.limits`, the local sandbox's rule). Alice's memory hog (2 GiB in a job
of 1 GB) gets no more memory; bob's CPU burner is killed by its CPU time limit and his fork
bomb stops at his account's process limit; each fails with a reason naming its limit. Alice's
ordinary job, which starts more processes than bob has left, runs from its start to its end
while his bomb holds all of his; the platform answers; the balances, the ledger and ``ledger
verify`` are the same afterwards (the jobs' own charges at most).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from slurm_platform import FINAL, SMALL, Platform, events, get, run_until
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.executors.limits import Limits
from suanwang.executors.slurm import SlurmExecutor
from suanwang.server.database.models import Account, LedgerTransaction, TenantRole
from suanwang.server.models.billing.verify import verify
from suanwang.testbed import slurm

#: "alice" and "bob" here, with accounts only this test uses
TENANTS = ("limits-alice", "limits-bob")
#: their limits here: a CPU burner dies in seconds, a fork bomb stops at 40 processes
LIMITS = Limits(cpu_time_s=3, max_processes=40)

HOG = "#!/usr/bin/env python3\nb = bytearray(2 << 30)\nprint('got 2 GiB')\n"
BURNER = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import time
    while time.process_time() < 20:
        pass
    print("burnt 20 CPU s")
    """
)
# forks until it cannot (or 150 processes), its children holding on for a while; then says
# how far it got and fails if a fork was refused
BOMB = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import os, sys, time
    n = 0
    try:
        while n < 150:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            n += 1
    except OSError as exc:
        print("forked", n, "then:", exc, flush=True)
        time.sleep(30)
        sys.exit(1)
    print("forked", n)
    """
)
# alice's ordinary job: 25 processes at once (more than bob has left while his bomb holds his 40)
BUSY = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import subprocess
    procs = [subprocess.Popen(["sleep", "2"]) for _ in range(25)]
    print("done", sum(p.wait() == 0 for p in procs))
    """
)


def _books(sessions: sessionmaker[Session]) -> tuple[dict[str, Any], set[Any], list[str]]:
    with sessions() as s:
        balances = {a.id: a.balance for a in s.scalars(select(Account)) if a.balance}
        txs = set(s.execute(select(LedgerTransaction.kind, LedgerTransaction.job_id)).all())
        return balances, txs, verify(session=s)


# about Slurm, not the database: PostgreSQL only (the production one; it keeps CI short)
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_tenants_jobs_fail_by_their_limits_and_touch_nothing_else(
    app: FastAPI,
    client: TestClient,
    sessions: sessionmaker[Session],
    slurm_testbed: slurm.Testbed,
    shared_tmp: Path,
    make_tenant: Callable[..., Any],
    submit: Callable[..., dict[str, Any]],
) -> None:
    # tenants of their own: the process limit counts all of an account's processes, and other
    # tests (of other test sessions on this host too) run jobs as sw-alice and sw-bob
    slurm.add_tenants(slurm_testbed, TENANTS)
    alice, bob = (make_tenant(TenantRole.CONSUMER, t) for t in TENANTS)
    platform = Platform(app, sessions, slurm_testbed, shared_tmp, shared_dirs=[], lease_s=30)
    for ex in platform.executors.values():
        assert isinstance(ex, SlurmExecutor) and ex.contain  # the default here
        ex.limits = LIMITS
    jobs: list[tuple[Any, dict[str, Any]]] = []

    def start(who: Any, name: str, script: str) -> dict[str, Any]:
        job = submit(who, name=name, command=None, script=script, **SMALL)
        jobs.append((who, job))
        return job

    def ended(who: Any, job: dict[str, Any]) -> bool:
        return get(client, who, job["id"])["state"] in FINAL

    try:
        books = _books(sessions)
        assert books[2] == []
        # one job of each tenant at a time: a tenant's jobs share its process limit
        hog, burner = start(alice, "hog", HOG), start(bob, "burner", BURNER)
        run_until(platform, lambda: ended(alice, hog) and ended(bob, burner), timeout=240,
                  what="the hog and the burner end")  # fmt: skip
        bomb = start(bob, "bomb", BOMB)
        bomb_log = f"/v1/jobs/{bomb['id']}/logs"
        run_until(platform, lambda: "forked" in client.get(bomb_log, headers=bob.headers).text
                  or ended(bob, bomb), timeout=240,
                  what="the bomb holds all the processes bob may have")  # fmt: skip
        busy = start(alice, "busy", BUSY)  # while the bomb holds them
        run_until(platform, lambda: ended(alice, busy), timeout=240, what="alice's job ends")
        bomb_then = get(client, bob, bomb["id"])["state"]
        run_until(platform, lambda: ended(bob, bomb), timeout=240, what="the bomb ends")
        assert client.get("/healthz").status_code == 200
    finally:
        platform.close()
    assert bomb_then == "running"  # alice's job ran from start to end while bob's bomb held
    found = {}
    for who, job in jobs:
        done = get(client, who, job["id"])
        log = client.get(f"/v1/jobs/{job['id']}/logs", headers=who.headers).text
        ends = [e["detail"].get("reason", "") for e in events(client, who, job["id"])]
        found[job["name"]] = (done["state"], log, ends[-1])
    state, log, reason = found["hog"]
    assert (state, "got 2 GiB" in log) == ("failed", False), found["hog"]
    assert "MemoryError" in log and "memory limit (1 GiB" in reason, found["hog"]
    state, log, reason = found["burner"]
    assert (state, log) == ("failed", ""), found["burner"]
    assert "CPU time limit (3 CPU s" in reason, found["burner"]
    state, log, reason = found["bomb"]
    assert state == "failed" and "process limit (40 processes" in reason, found["bomb"]
    assert int(log.split()[1]) < LIMITS.max_processes, found["bomb"]
    assert found["busy"][:2] == ("succeeded", "done 25\n"), found["busy"]
    after = _books(sessions)  # nothing moved but the jobs' own charges
    assert (after[0], after[2]) == (books[0], [])
    assert after[1] - books[1] <= {("charge", j["id"]) for _, j in jobs}
