"""Engine-driven migration in live mode: a running checkpointable job moves to a cheaper center.

Local executors (real processes) stand in for an eastern and a western center. The job starts
in the east (the west is drained at first); once the west opens, the engine's migration round
(the same ``SuanwangPolicy.migrations`` the simulator runs hourly) finds the move worth its
checkpoint transfer and asks for it; the job checkpoints, moves and finishes in the west.
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.executors.base import Executor
from suanwang.executors.local import LocalExecutor
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.server.database.models import CenterDrain, JobRow
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.failover import Migrations
from suanwang.server.services.live import LiveNetwork
from suanwang.server.services.reconciler import Reconciler

EAST, WEST = "shanghai-lingang", "zhongwei"

SCRIPT = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import os, signal, sys, time
    ckpt = os.environ["SUANWANG_CHECKPOINT_DIR"]
    resume = os.environ.get("SUANWANG_RESUME_FROM")
    if resume:
        print("resumed from step", open(os.path.join(resume, "step")).read(), flush=True)
        sys.exit(0)
    step = 0
    def stop(*_):
        open(os.path.join(ckpt, "step"), "w").write(str(step))
        sys.exit(85)
    signal.signal(signal.SIGUSR1, stop)
    print("ready", flush=True)
    while True:
        step += 1
        time.sleep(0.05)
    """
)


def test_the_engine_moves_a_running_job_west_when_it_pays(
    app: FastAPI,
    client: TestClient,
    sessions: sessionmaker[Session],
    alice: Any,
    operator: Any,
    submit: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    executors = {c: LocalExecutor(tmp_path / "centers", c, cpus=64, cards=16) for c in (EAST, WEST)}
    live, dispatcher, reconciler = _services(app, sessions, executors, tmp_path)
    eager = SuanwangPolicy(min_saving_cny=0.0, min_saving_share=0.01, min_remaining_h=0.1)
    migrations = Migrations(sessions, live, policy=eager, replan_s=0.0)
    with sessions.begin() as s:
        s.add(CenterDrain(center_id=WEST, reason="not open yet"))
    job = submit(alice, name="pretrain", command=None, script=SCRIPT, checkpointable=True,
                 kind="training", origin="shanghai", duration_s=20 * 3600,
                 resources={"cpus": 8, "count": 8, "accelerator": "a100", "mem_gb": 64},
                 stacks=["cuda"])  # fmt: skip

    def state() -> dict[str, Any]:
        return _view(client, alice, job["id"])

    def logs() -> str:
        return _logs(client, alice, job["id"])

    _rounds(lambda: state()["state"] == "running" and "ready" in logs(), state, 20,
            dispatcher, reconciler)  # fmt: skip
    assert state()["center_id"] == EAST
    with sessions.begin() as s:
        s.execute(delete(CenterDrain))
    assert migrations.run_once() == 1  # the engine asks the job to move
    _rounds(lambda: state()["state"] in ENDED, state, 30, dispatcher, reconciler)
    done = state()
    evs = client.get(f"/v1/jobs/{job['id']}/events", headers=alice.headers).json()
    assert done["state"] == "succeeded", [(e["to_state"], e["detail"]) for e in evs]
    assert done["center_id"] == WEST
    evs = client.get(f"/v1/jobs/{job['id']}/events", headers=alice.headers).json()
    asked = [e["detail"] for e in evs if e["detail"].get("event") == "checkpoint_requested"]
    assert len(asked) == 1
    assert asked[0]["why"] == "engine" and asked[0]["center"] == EAST and asked[0]["to"] == WEST
    assert asked[0]["move_cost_cny"] > 0 and asked[0]["move_s"] > 0
    steps = [e["to_state"] for e in evs]
    i = steps.index("migrating")
    assert steps[i + 1 : i + 3] == ["scheduled", "running"]
    assert evs[i + 1]["detail"]["center"] == WEST
    assert "resumed from step" in client.get(f"/v1/jobs/{job['id']}/logs",
                                             headers=alice.headers).text  # fmt: skip
    metrics = client.get("/metrics", headers=operator.headers).text
    assert "suanwang_migrations_total 1.0" in metrics
    assert 'suanwang_migration_requests_total{why="engine"} 1.0' in metrics
    assert 'suanwang_migration_requests_total{why="drain"} 0.0' in metrics
    (line,) = [x for x in metrics.splitlines() if x.startswith("suanwang_migration_planned_cost")]
    cost = float(line.split()[1])
    assert cost == asked[0]["move_cost_cny"]
    assert "suanwang_failovers_total 0.0" in metrics


STUBBORN = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import os, signal, sys, time
    ckpt = os.environ["SUANWANG_CHECKPOINT_DIR"]
    resume = os.environ.get("SUANWANG_RESUME_FROM")
    if resume:
        print("resumed from step", open(os.path.join(resume, "step")).read(), flush=True)
        sys.exit(0)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # asked to checkpoint: it does not
    open(os.path.join(ckpt, "step"), "w").write("7")  # an earlier checkpoint
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
    """
)


def test_a_run_that_ignores_the_checkpoint_signal_is_stopped_after_the_grace(
    app: FastAPI,
    client: TestClient,
    sessions: sessionmaker[Session],
    alice: Any,
    submit: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    """Drained, the job is asked to checkpoint and ignores it: before the grace nothing
    happens; after it the run is cancelled at its center, fenced, and the job is placed again
    from its last checkpoint, at the other center, where it resumes and succeeds."""
    later = [0.0]  # seconds the services' clock is moved on
    base = app.state.signals.clock
    executors = {c: LocalExecutor(tmp_path / "centers", c, cpus=64, cards=16) for c in (EAST, WEST)}
    live, dispatcher, reconciler = _services(
        app, sessions, executors, tmp_path, clock=lambda: base() + timedelta(seconds=later[0])
    )
    migrations = Migrations(sessions, live, replan_s=1e9, checkpoint_grace_s=300.0)
    migrations._last_replan = base()  # no engine moves: only the drain asks
    with sessions.begin() as s:
        s.add(CenterDrain(center_id=WEST, reason="not open yet"))
    job = submit(alice, name="stubborn", command=None, script=STUBBORN, checkpointable=True,
                 kind="training", origin="shanghai", duration_s=20 * 3600,
                 resources={"cpus": 8, "count": 8, "accelerator": "a100", "mem_gb": 64},
                 stacks=["cuda"])  # fmt: skip

    def state() -> dict[str, Any]:
        return _view(client, alice, job["id"])

    def logs() -> str:
        return _logs(client, alice, job["id"])

    _rounds(lambda: state()["state"] == "running" and "ready" in logs(), state, 20,
            dispatcher, reconciler)  # fmt: skip
    first_ref = _row(sessions, job["id"]).executor_ref
    assert first_ref is not None
    with sessions.begin() as s:  # the west opens, the east drains
        s.execute(delete(CenterDrain))
        s.add(CenterDrain(center_id=EAST, reason="maintenance"))
    assert migrations.run_once() == 1  # asked to checkpoint
    later[0] = 299.0
    assert migrations.run_once() == 0  # within the grace: nothing
    reconciler.run_once()
    assert state()["state"] == "running" and state()["center_id"] == EAST
    later[0] = 301.0
    assert migrations.run_once() == 1  # stopped
    row = _row(sessions, job["id"])
    assert row.state == "migrating" and row.attempt == 1 and row.executor_ref is None
    _rounds(lambda: state()["state"] in ENDED, state, 30, dispatcher, reconciler)
    done = state()
    evs = client.get(f"/v1/jobs/{job['id']}/events", headers=alice.headers).json()
    assert done["state"] == "succeeded" and done["center_id"] == WEST, evs
    assert "resumed from step 7" in logs()
    (stop,) = [e for e in evs if e["detail"].get("event") == "checkpoint_ignored"]
    assert stop["from_state"] == "running" and stop["to_state"] == "migrating"
    assert stop["detail"]["attempt"] == 0 and stop["detail"]["resume_from"]
    assert "did not checkpoint within 301 s" in stop["detail"]["reason"]
    assert executors[EAST].poll([first_ref])[first_ref].state.value in ("cancelled", "failed")


ENDED = ("succeeded", "failed", "cancelled")


def _services(
    app: FastAPI,
    sessions: sessionmaker[Session],
    executors: Mapping[str, Executor],
    tmp_path: Path,
    clock: Callable[[], datetime] | None = None,
) -> tuple[LiveNetwork, Dispatcher, Reconciler]:
    """The live network on ``executors`` (clock: the app's, unless given), a dispatcher that
    starts every job as soon as it can, and a reconciler."""
    live = LiveNetwork(
        net=app.state.network,
        signals=app.state.signals.current,
        executors=dict(executors),
        clock=clock or app.state.signals.clock,
        checkpoint_root=tmp_path / "checkpoints",
    )
    dispatcher = Dispatcher(sessions, live, policy=SuanwangPolicy(max_defer_h=0))
    return live, dispatcher, Reconciler(sessions, live)


def _view(client: TestClient, who: Any, job_id: str) -> dict[str, Any]:
    out: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=who.headers).json()
    return out


def _logs(client: TestClient, who: Any, job_id: str) -> str:
    return client.get(f"/v1/jobs/{job_id}/logs", headers=who.headers).text


def _rounds(
    done: Callable[[], bool],
    seen: Callable[[], Any],
    timeout_s: float,
    *services: Dispatcher | Reconciler,
) -> None:
    """Run the services' rounds until ``done`` (failing with ``seen()`` after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        for service in services:
            service.run_once()
        assert time.monotonic() < deadline, seen()
        time.sleep(0.1)


def _row(sessions: sessionmaker[Session], job_id: str) -> JobRow:
    with sessions() as s:
        row = s.get(JobRow, job_id)
        assert row is not None
        s.expunge(row)
        return row


class _HangsOnCheckpoint(LocalExecutor):
    """A center whose checkpoint calls hang until ``release`` is set (as a call to a stopped
    ``slurmrestd`` does: ``test_server_slurm_hung_center``), then go through."""

    release = threading.Event()

    def checkpoint(self, ref: str) -> str | None:
        self.release.wait(30)
        return super().checkpoint(ref)


def test_a_center_whose_checkpoint_calls_hang_holds_back_neither_the_round_nor_the_others(
    app: FastAPI,
    client: TestClient,
    sessions: sessionmaker[Session],
    alice: Any,
    submit: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    """Both centers drain, each with a checkpointable run: the east's checkpoint call hangs.
    The round asks both at once, records the west's request and returns within its wait (about
    a second); the east is not asked again while its call hangs; once it answers, the next
    round records that request (late), once. Before, the round called one run after another
    in its transaction and waited for the hung call (up to its HTTP timeout, per run)."""
    east = _HangsOnCheckpoint(tmp_path / "centers", EAST, cpus=64, cards=16)
    east.release = threading.Event()
    executors = {EAST: east, WEST: LocalExecutor(tmp_path / "centers", WEST, cpus=64, cards=16)}
    live, dispatcher, reconciler = _services(app, sessions, executors, tmp_path)
    migrations = Migrations(sessions, live, replan_s=1e9)
    migrations._last_replan = app.state.signals.clock()  # no engine moves: only the drains
    jobs: dict[str, str] = {}
    for center, other in ((EAST, WEST), (WEST, EAST)):  # one run at each center
        with sessions.begin() as s:
            s.execute(delete(CenterDrain))
            s.add(CenterDrain(center_id=other, reason="not this one"))
        jobs[center] = submit(alice, name=f"at-{center}", command=None, script=SCRIPT,
                              checkpointable=True, kind="training", origin="shanghai",
                              duration_s=20 * 3600, stacks=["cuda"],
                              resources={"cpus": 8, "count": 8, "accelerator": "a100",
                                         "mem_gb": 64})["id"]  # fmt: skip
        job_id = jobs[center]
        _rounds(lambda j=job_id: _view(client, alice, j)["state"] == "running"
                and "ready" in _logs(client, alice, j),
                lambda j=job_id: _view(client, alice, j), 20, dispatcher, reconciler)  # fmt: skip
        assert _view(client, alice, job_id)["center_id"] == center
    with sessions.begin() as s:
        s.execute(delete(CenterDrain))
        s.add_all([CenterDrain(center_id=c, reason="maintenance") for c in (EAST, WEST)])

    def requested(center: str) -> int:
        evs = client.get(f"/v1/jobs/{jobs[center]}/events", headers=alice.headers).json()
        return sum(e["detail"].get("event") == "checkpoint_requested" for e in evs)

    t0 = time.monotonic()
    assert migrations.run_once() == 1  # the west's; the east's call has not answered
    assert time.monotonic() - t0 < 5  # the round waited about a second for the east
    assert (requested(EAST), requested(WEST)) == (0, 1)
    assert migrations.run_once() == 0  # the east still hangs: not asked again
    east.release.set()
    deadline = time.monotonic() + 20
    while migrations.calls.busy():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert migrations.run_once() == 1  # the east's late answer, recorded
    assert (requested(EAST), requested(WEST)) == (1, 1)
    assert migrations.run_once() == 0  # both asked: nothing more until the grace
    assert (requested(EAST), requested(WEST)) == (1, 1)
    migrations.calls.close()
