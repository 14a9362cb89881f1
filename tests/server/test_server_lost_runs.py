"""A run its executor reports lost while the center answers (Slurm's ``JobLaunchFailure``, a
node failure, a job the cluster forgot): the job is placed again away from that center while
another can run it, and fails after ``max_lost_runs`` such losses, naming where and why; losses
to a failover (a silent center) count for nothing (docs/centers.md, "A run lost at an
answering center"). Real local executors, every round as the services run it, on SQLite and
PostgreSQL (the ``db_url`` fixture)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi import FastAPI
from pinned import NOW
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.core.governance import Governance, TenantQuota
from suanwang.core.lifecycle import JobState
from suanwang.executors.base import CENTER, LEASE, PREEMPTED, ExecutorStatus, Submission
from suanwang.executors.local import LocalExecutor
from suanwang.executors.local.rundir import base_run
from suanwang.executors.slurm import LEASE_EXIT_CODE
from suanwang.server.database.models import AgentRun, JobRow, LedgerTransaction, UsageRecord
from suanwang.server.database.session import alembic_config, make_engine, session_factory
from suanwang.server.models.billing.config import set_config
from suanwang.server.models.billing.verify import verify
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.failover import Failover
from suanwang.server.services.live import LiveNetwork
from suanwang.server.services.reconciler import Reconciler
from suanwang.server.settings import Settings

LAUNCH_FAILURE = "slurm FAILED (JobLaunchFailure)"


class LaunchFails(LocalExecutor):
    """A local center whose launches fail while ``failing`` (or while ``fails_left``, shared
    by centers, counts launches to fail anywhere): it takes the job and reports its run lost,
    as Slurm does after a ``JobLaunchFailure`` (the center answers all along)."""

    failing = False
    fails_left: list[int] | None = None

    def __init__(self, root: Path, center_id: str) -> None:
        super().__init__(root, center_id, cpus=64, cards=16)
        self.failed: set[str] = set()

    def submit(self, sub: Submission) -> str:
        if self.fails_left and self.fails_left[0] > 0:
            self.fails_left[0] -= 1
        elif not self.failing:
            return super().submit(sub)
        ref = f"{self.center_id}/{base_run(sub)}"
        self.failed.add(ref)  # never started: no run directory, no recorded exit
        return ref

    def poll(self, refs: Sequence[str]) -> dict[str, ExecutorStatus]:
        out = super().poll([r for r in refs if r not in self.failed])
        for ref in refs:
            if ref in self.failed:
                out[ref] = ExecutorStatus(
                    ref, JobState.LOST, exit_code=1, reason=LAUNCH_FAILURE, cause=CENTER
                )
        return out


Rounds = Callable[[], None]


@dataclass
class World:
    """The platform a test drives: its app and database, a client, a tenant and where the
    centers keep their runs."""

    app: FastAPI
    client: TestClient
    sessions: sessionmaker[Session]
    root: Path
    alice: Any
    submit: Callable[..., dict[str, Any]]

    def live(
        self, *centers: str, failing: bool = False, clock: Callable[[], datetime] | None = None
    ) -> LiveNetwork:
        """Local centers (failing their launches if ``failing``) on the app's pinned clock, or
        on ``clock``."""
        executors = {c: LaunchFails(self.root, c) for c in centers}
        for executor in executors.values():
            executor.failing = failing
        return LiveNetwork(
            net=self.app.state.network,
            signals=self.app.state.signals.current,
            executors=dict(executors),
            clock=clock or self.app.state.signals.clock,
        )

    def rounds(
        self,
        live: LiveNetwork,
        max_lost_runs: int = 3,
        governance: Governance | None = None,
        backoff_s: float = 0.0,
    ) -> tuple[Dispatcher, Rounds]:
        """A dispatcher (under ``governance``'s quotas, if any) and the services' rounds (place
        and hand over, then poll); no back-off after a lost run unless ``backoff_s`` (the
        app's clock stands still)."""
        dispatcher = Dispatcher(self.sessions, live, lost_run_backoff_s=backoff_s)
        if governance is not None:
            dispatcher.governance = lambda session: governance
        reconciler = Reconciler(
            self.sessions, live, max_lost_runs=max_lost_runs, lost_run_backoff_s=backoff_s
        )

        def rounds() -> None:
            dispatcher.run_once()
            reconciler.run_once()

        return dispatcher, rounds

    def job(self, job_id: str) -> dict[str, Any]:
        got: dict[str, Any] = self.client.get(
            f"/v1/jobs/{job_id}", headers=self.alice.headers
        ).json()
        return got

    def events(self, job_id: str) -> list[dict[str, Any]]:
        got = self.client.get(f"/v1/jobs/{job_id}/events", headers=self.alice.headers)
        evs: list[dict[str, Any]] = got.json()
        return evs

    def until(self, rounds: Rounds, job_id: str, states: set[str]) -> dict[str, Any]:
        """Run ``rounds`` until the job is in one of ``states``."""
        deadline = time.monotonic() + 30
        while True:
            rounds()
            job = self.job(job_id)
            if job["state"] in states:
                return job
            assert time.monotonic() < deadline, f"still {job['state']}"
            time.sleep(0.05)


@pytest.fixture
def world(
    app: FastAPI,
    client: TestClient,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> World:
    return World(app, client, sessions, tmp_path / "centers", alice, submit)


def test_a_job_whose_run_was_lost_at_an_answering_center_goes_elsewhere(world: World) -> None:
    live = world.live("zhangjiakou", "zhongwei", "horinger")
    job = world.submit(world.alice, name="ok", command="echo ran", duration_s=60)
    dispatcher, rounds = world.rounds(live)
    assert dispatcher.place() == 1
    first = world.job(job["id"])["center_id"]
    broken = live.executors[first]
    assert isinstance(broken, LaunchFails)
    broken.failing = True  # the center the policy likes best cannot launch it
    done = world.until(rounds, job["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded" and done["center_id"] != first, done
    assert done["decision"]["avoided"] == {
        "centers": [first],
        "back": False,
        "reason": f"kept away from {first}: it lost runs there while the centers answered",
    }
    evs = world.events(job["id"])
    assert [e["to_state"] for e in evs if e["to_state"] != "running"] == [
        "pending", "scheduled", "lost", "pending", "scheduled", "succeeded"
    ]  # fmt: skip
    # (a short run may end between two polls: never seen running)
    lost, again, placed = evs[2]["detail"], evs[3]["detail"], evs[4]["detail"]
    assert (lost["center"], lost["lost_runs"], lost["max_lost_runs"]) == (first, 1, 3)
    assert LAUNCH_FAILURE in lost["reason"]
    assert again["avoids"] == [first]
    assert f"kept away from {first} while another center can run it" in again["reason"]
    assert placed["center"] == done["center_id"] and placed["avoided"]["back"] is False
    with world.sessions() as s:
        row = s.get_one(JobRow, job["id"])
        at = evs[2]["at"]  # the loss's time, as its ``lost`` event has it
        assert row.lost_runs == [
            {"center": first, "reason": LAUNCH_FAILURE, "attempt": 0, "at": row.lost_runs[0]["at"]}
        ]
        assert datetime.fromisoformat(row.lost_runs[0]["at"]) == datetime.fromisoformat(at)


def test_under_quotas_too_a_job_lost_at_a_center_goes_elsewhere(world: World) -> None:
    """The platform's queue keeps each job's entry between rounds: one from before the loss,
    placed and lost between two rounds, must not send the job back where it was lost."""
    live = world.live("zhangjiakou", "zhongwei", "horinger")
    fails_left = [1]  # the first launch fails, wherever the policy sends the job
    for executor in live.executors.values():
        assert isinstance(executor, LaunchFails)
        executor.fails_left = fails_left
    quota = TenantQuota(name="alice", cohort="c-alice", quota_scu_per_h=500.0)
    _, rounds = world.rounds(live, governance=Governance(tenants={"alice": quota}))
    job = world.submit(world.alice, name="ok", command="echo ran", duration_s=60)
    done = world.until(rounds, job["id"], {"succeeded", "failed"})
    lost = [e["detail"] for e in world.events(job["id"]) if e["to_state"] == "lost"]
    assert fails_left == [0] and len(lost) == 1
    assert done["state"] == "succeeded" and done["center_id"] != lost[0]["center"], done
    assert done["decision"]["avoided"]["centers"] == [lost[0]["center"]]


def test_a_job_lost_max_lost_runs_times_fails_naming_where_and_why(
    world: World, operator: Any
) -> None:
    """One center only: the job goes back to it (nowhere else can run it) until its third loss
    fails it; its hold is taken once and nothing is charged for the lost runs."""
    with world.sessions.begin() as s:
        set_config(session=s, billing_required=True, now=datetime.now(UTC))
    topup = {"tenant": "alice", "amount_cny": "100000.00"}
    assert world.client.post("/v1/billing/topups", json=topup, headers=operator.headers).is_success
    live = world.live("zhangjiakou", failing=True)
    job = world.submit(world.alice, name="never", command="echo never", duration_s=60)
    _, rounds = world.rounds(live)
    done = world.until(rounds, job["id"], {"succeeded", "failed", "cancelled"})
    why = f"lost its run 3 times: {', '.join([f'zhangjiakou ({LAUNCH_FAILURE})'] * 3)}"
    assert done["state"] == "failed" and done["center_id"] is None
    assert done["decision"]["placed"] is False and done["decision"]["reason"] == why
    evs = world.events(job["id"])
    assert [e["to_state"] for e in evs] == [
        "pending", "scheduled", "lost", "pending", "scheduled", "lost", "pending", "scheduled",
        "lost", "failed",
    ]  # fmt: skip
    assert [e["detail"]["lost_runs"] for e in evs if e["to_state"] == "lost"] == [1, 2, 3]
    assert evs[-1]["detail"]["reason"] == why
    assert [loss["attempt"] for loss in evs[-1]["detail"]["lost_runs"]] == [0, 1, 2]
    back = [e["detail"]["avoided"] for e in evs[4:] if e["to_state"] == "scheduled"]
    assert [(b["centers"], b["back"]) for b in back] == [(["zhangjiakou"], True)] * 2
    assert "no other open center can run it" in back[0]["reason"]
    rounds()  # settles the failed job (again: idempotent)
    with world.sessions() as s:
        assert verify(session=s) == []
        kinds = [t.kind for t in s.scalars(
            select(LedgerTransaction).where(LedgerTransaction.job_id == job["id"]))]  # fmt: skip
        assert kinds.count("hold") == 1 and kinds.count("charge") == 1, kinds  # once
        usage = s.scalars(select(UsageRecord).where(UsageRecord.job_id == job["id"])).all()
        assert not any(u.billable for u in usage)  # lost runs are never billed


def test_max_lost_runs_is_a_setting(world: World) -> None:
    assert Settings.from_env({"SUANWANG_MAX_LOST_RUNS": "1"}).max_lost_runs == 1
    assert Settings.from_env({}).max_lost_runs == 3
    with pytest.raises(ValueError, match="max_lost_runs must be at least 1, not 0"):
        Settings.from_env({"SUANWANG_MAX_LOST_RUNS": "0"})
    with pytest.raises(ValueError, match="SUANWANG_MAX_LOST_RUNS: 'x' is not an integer"):
        Settings.from_env({"SUANWANG_MAX_LOST_RUNS": "x"})
    live = world.live("zhangjiakou", "zhongwei", failing=True)
    job = world.submit(world.alice, name="once", command="echo once", duration_s=60)
    _, rounds = world.rounds(live, max_lost_runs=1)
    done = world.until(rounds, job["id"], {"failed"})
    assert done["decision"]["reason"].startswith("lost its run 1 times: ")
    states = [e["to_state"] for e in world.events(job["id"])]
    assert states == ["pending", "scheduled", "lost", "failed"]


def test_runs_lost_to_a_failover_count_for_nothing(world: World) -> None:
    """A center silent past its grace (a power cut) is failed over: the job is not at fault, so
    the loss is not recorded against it, however often, and it may go back there."""
    live = world.live("zhangjiakou")
    center = live.executors["zhangjiakou"]
    job = world.submit(world.alice, name="slow", command="sleep 30", duration_s=60)
    dispatcher, _ = world.rounds(live, backoff_s=30.0)  # (the app's clock stands still)
    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    now = [t0]
    live.health.clock = lambda: now[0]
    failover = Failover(world.sessions, live, lost_after_s=4.0)
    refs: list[str] = []
    try:
        for n in range(4):  # more than max_lost_runs
            dispatcher.run_once()
            with world.sessions() as s:
                row = s.get_one(JobRow, job["id"])
                assert (row.state, row.center_id) == ("scheduled", "zhangjiakou"), row.state
                assert row.executor_ref is not None
                refs.append(row.executor_ref)
            live.health.failed("zhangjiakou", "power cut")
            now[0] += timedelta(seconds=5)  # past lost_after_s
            assert failover.fail_over() == 1
            live.health.ok("zhangjiakou")
            assert world.job(job["id"])["state"] == "pending", n
        evs = world.events(job["id"])
        lost = [e["detail"] for e in evs if e["to_state"] == "lost"]
        assert len(lost) == 4 and not any("lost_runs" in d for d in lost)
        assert not any("avoids" in e["detail"] for e in evs if e["to_state"] == "pending")
        assert "failed" not in [e["to_state"] for e in evs]
        with world.sessions() as s:
            assert s.get_one(JobRow, job["id"]).lost_runs is None
    finally:
        for ref in refs:
            center.cancel(ref)


def lose_the_run(world: World, exit_code: int | None, reason: str, cause: str | None) -> str:
    """Place a job and have its executor report its run lost so; the job's state after."""
    live = world.live("zhangjiakou", "zhongwei")
    job = world.submit(world.alice, name="slow", command="sleep 30", duration_s=60)
    dispatcher, _ = world.rounds(live)
    dispatcher.run_once()
    with world.sessions.begin() as s:
        row = s.get_one(JobRow, job["id"])
        center, ref = row.center_id or "", row.executor_ref or ""
        lost = ExecutorStatus(ref, JobState.LOST, exit_code, reason=reason, cause=cause)
        try:
            assert Reconciler(world.sessions, live, max_lost_runs=1).apply(s, row, lost, center)
        finally:
            live.executors[center].cancel(ref)
    return str(job["id"])


@pytest.mark.parametrize(
    ("exit_code", "reason", "cause"),
    [
        (None, "stopped by its lease: no poll saw it alive for longer than the lease", LEASE),
        (None, "stopped by the agent of center zhangjiakou: no contact with the control plane "
               "for 75 s (lease 60 s)", LEASE),
        (LEASE_EXIT_CODE, "slurm FAILED", LEASE),  # its lease ran out before Slurm started it
        (None, "slurm PREEMPTED", PREEMPTED),  # the cluster preempted it
        (None, "reworded: the run gave up waiting", LEASE),  # the cause decides, not the words
        # no cause (an agent older than causes): the old text rule
        (None, "stopped by its lease: no poll saw it alive for longer than the lease", None),
        (None, "stopped by the agent of center zhangjiakou: no contact with the control plane "
               "for 75 s (lease 60 s)", None),
        (LEASE_EXIT_CODE, "slurm FAILED", None),
        (None, "slurm PREEMPTED", None),
    ],
)  # fmt: skip
def test_a_run_stopped_by_its_lease_or_preempted_counts_for_nothing(
    world: World, exit_code: int | None, reason: str, cause: str | None
) -> None:
    """The platform was silent longer than the run's lease (the control plane down, or cut off
    from the center) and the run stopped itself, or the cluster preempted it: the job is not at
    fault, as in a failover."""
    job_id = lose_the_run(world, exit_code, reason, cause)
    assert world.job(job_id)["state"] == "pending"
    evs = world.events(job_id)
    assert "lost_runs" not in evs[-2]["detail"] and "avoids" not in evs[-1]["detail"]
    with world.sessions() as s:
        assert s.get_one(JobRow, job_id).lost_runs is None


@pytest.mark.parametrize(
    ("exit_code", "reason"),
    [
        (None, "node failed to release its GPUs"),
        (1, "slurm NODE_FAIL (lease-42 job of alice)"),  # a name that says "lease"
        (None, "slurm PREEMPTED"),  # a text that says preempted, from a center that says not
        (LEASE_EXIT_CODE, "exit code 75"),  # the job's own exit code 75
    ],
)
def test_a_lost_run_whose_reason_only_mentions_a_lease_counts_against_the_job(
    world: World, exit_code: int | None, reason: str
) -> None:
    """The words of a reason are for people: a run its executor lost for another cause
    (:data:`CENTER`) counts against the job whatever its reason says (issue 16)."""
    job_id = lose_the_run(world, exit_code, reason, CENTER)
    assert world.job(job_id)["state"] == "failed"  # max_lost_runs=1
    with world.sessions() as s:
        row = s.get_one(JobRow, job_id)
        assert row.lost_runs is not None and [lost["reason"] for lost in row.lost_runs] == [reason]


def test_0015_is_expand_only_for_replicas_of_0014(fresh_db_url: str) -> None:
    """A rolling upgrade: 0014's processes keep writing jobs as they did (their SQL names no
    ``lost_runs``) next to 0015's, which read null as no loss; 0015's losses survive 0014's
    writes; and going back to 0014 keeps every job and event."""
    engine = make_engine(fresh_db_url)

    def to(step: str, target: str) -> None:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            getattr(command, step)(cfg, target)

    old_insert = text(
        "INSERT INTO jobs (id, tenant_id, name, spec, state, submitted_at, updated_at) "
        "VALUES (:id, 't', 'x', '{}', 'pending', :at, :at)"
    )
    at = datetime(2026, 12, 6, tzinfo=UTC)
    try:
        to("upgrade", "0014")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO tenants (id, name, role, api_key_hash, created_at) "
                    "VALUES ('t', 'n', 'consumer', :h, :at)"
                ),
                {"h": "0" * 64, "at": at},
            )
            conn.execute(old_insert, {"id": "before", "at": at})
            conn.execute(
                text(
                    "INSERT INTO job_events (job_id, at, to_state, detail) "
                    "VALUES ('before', :at, 'pending', '{}')"
                ),
                {"at": at},
            )
        to("upgrade", "head")
        with engine.begin() as conn:
            conn.execute(old_insert, {"id": "during", "at": at})  # a 0014 replica submits
        with session_factory(engine).begin() as s:
            assert [s.get_one(JobRow, i).lost_runs for i in ("before", "during")] == [None, None]
            s.get_one(JobRow, "before").lost_runs = [{"center": "c1", "reason": "r", "attempt": 0}]
        with engine.begin() as conn:  # a 0014 replica moves the job on
            conn.execute(text("UPDATE jobs SET state = 'scheduled' WHERE id = 'before'"))
        with session_factory(engine)() as s:
            assert s.get_one(JobRow, "before").lost_runs == [
                {"center": "c1", "reason": "r", "attempt": 0}
            ]
        to("downgrade", "0014")
        with engine.connect() as conn:
            assert "lost_runs" not in {c["name"] for c in inspect(conn).get_columns("jobs")}
            assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 2
            assert conn.execute(text("SELECT count(*) FROM job_events")).scalar() == 1
    finally:
        engine.dispose()


def test_0016_is_expand_only_for_replicas_of_0015(fresh_db_url: str) -> None:
    """``agent_runs.cause``: 0015's processes keep recording agents' reports as they did
    (their SQL names no ``cause``) next to 0016's, which read null as not said (the old text
    rule); going back to 0015 keeps every run."""
    engine = make_engine(fresh_db_url)

    def to(step: str, target: str) -> None:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            getattr(command, step)(cfg, target)

    old_insert = text(
        "INSERT INTO agent_runs (ref, center_id, job_id, attempt, submission, ask, state, "
        "reason, log_tail, done, created_at, updated_at) VALUES (:ref, 'c', 'j', 0, '{}', "
        "'run', 'lost', 'stopped by its lease', '', :no, :at, :at)"
    )
    at = datetime(2026, 12, 7, tzinfo=UTC)
    try:
        to("upgrade", "0015")
        with engine.begin() as conn:
            conn.execute(old_insert, {"ref": "agent:c/before", "no": False, "at": at})
        to("upgrade", "head")
        with engine.begin() as conn:  # a 0015 replica records a report
            conn.execute(old_insert, {"ref": "agent:c/during", "no": False, "at": at})
        with session_factory(engine).begin() as s:
            rows = s.scalars(select(AgentRun).order_by(AgentRun.ref)).all()
            assert [(r.ref, r.cause) for r in rows] == [
                ("agent:c/before", None), ("agent:c/during", None)
            ]  # fmt: skip
            rows[0].cause = LEASE
        to("downgrade", "0015")
        with engine.connect() as conn:
            assert "cause" not in {c["name"] for c in inspect(conn).get_columns("agent_runs")}
            assert conn.execute(text("SELECT count(*) FROM agent_runs")).scalar() == 2
    finally:
        engine.dispose()


class Clock:
    """The services' clock, moved by the test (the app's stands still at its pinned time)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _until_lost(world: World, rounds: Rounds, job_id: str, n: int) -> list[dict[str, Any]]:
    """Run ``rounds`` until the job's ``n``-th run was lost and it is pending again (or failed):
    its recorded losses."""
    deadline = time.monotonic() + 30
    while True:
        rounds()
        with world.sessions() as s:
            row = s.get_one(JobRow, job_id)
            if len(row.lost_runs or []) >= n and row.state in ("pending", "failed"):
                return list(row.lost_runs or [])
        assert time.monotonic() < deadline, row.state
        time.sleep(0.05)


def _placed(world: World, job_id: str) -> int:
    return [e["to_state"] for e in world.events(job_id)].count("scheduled")


@pytest.mark.parametrize("quotas", [False, True])
def test_a_job_lost_where_only_that_center_can_run_it_backs_off_doubling(
    world: World, quotas: bool
) -> None:
    """One center whose launches fail: after each loss the job goes back there only once the
    back-off from that loss has passed (30 s, then 60 s), saying why it waits and until when,
    in ``GET /v1/jobs/{id}`` and in the ``pending`` event after the loss; oldest first or in
    the platform's queue (quotas)."""
    clock = Clock(NOW + timedelta(minutes=1))
    live = world.live("zhangjiakou", failing=True, clock=clock)
    job = world.submit(world.alice, name="b", command="echo never", duration_s=60)
    quota = TenantQuota(name="alice", cohort="c-alice", quota_scu_per_h=500.0)
    gov = Governance(tenants={"alice": quota}) if quotas else None
    _, rounds = world.rounds(live, backoff_s=30.0, governance=gov)
    for n, wait_s in ((1, 30), (2, 60)):
        losses = _until_lost(world, rounds, job["id"], n)
        assert len(losses) == n
        lost_at = datetime.fromisoformat(losses[-1]["at"])
        assert lost_at == clock.at  # the services' clock, not the wall clock
        until = lost_at + timedelta(seconds=wait_s)
        again = [e for e in world.events(job["id"]) if e["to_state"] == "pending"][-1]["detail"]
        assert again["back_off_until"] == until.isoformat()
        assert f"not before {until.isoformat()} (a back-off of {wait_s} s" in again["reason"]
        placed = _placed(world, job["id"])
        clock.at = until - timedelta(seconds=1)
        for _ in range(3):
            rounds()
        got = world.job(job["id"])
        assert got["state"] == "pending" and _placed(world, job["id"]) == placed
        waiting = got["decision"]["waiting"]
        assert waiting.startswith("backing off after a lost run: back to zhangjiakou"), waiting
        assert f"not before {until.isoformat()} (a back-off of {wait_s} s)" in waiting
        assert got["decision"]["reason"] == f"waiting in the platform's queue: {waiting}"
        clock.at = until  # the back-off is over: placed again (and lost again)
        rounds()
        assert _placed(world, job["id"]) == placed + 1
    losses = _until_lost(world, rounds, job["id"], 3)
    assert world.job(job["id"])["state"] == "failed"  # the third loss: --max-lost-runs


def test_no_back_off_with_0(world: World) -> None:
    """``lost_run_backoff_s`` 0: back at once, the clock standing still."""
    clock = Clock(NOW + timedelta(minutes=1))
    live = world.live("zhangjiakou", failing=True, clock=clock)
    job = world.submit(world.alice, name="b0", command="echo never", duration_s=60)
    _, rounds = world.rounds(live, backoff_s=0.0)
    _until_lost(world, rounds, job["id"], 1)
    again = [e for e in world.events(job["id"]) if e["to_state"] == "pending"][-1]["detail"]
    assert "back_off_until" not in again and "back-off" not in again["reason"]
    rounds()  # the clock has not moved
    assert _placed(world, job["id"]) == 2
    _until_lost(world, rounds, job["id"], 3)  # (failed: out of the way of the next tests)


def test_no_back_off_when_another_center_can_run_it(world: World) -> None:
    """A job another center can run goes there at once whatever the back-off: the fault it
    avoids is where it was lost."""
    clock = Clock(NOW + timedelta(minutes=1))
    live = world.live("zhangjiakou", "zhongwei", "horinger", clock=clock)
    job = world.submit(world.alice, name="b1", command="echo ran", duration_s=60)
    dispatcher, rounds = world.rounds(live, backoff_s=30.0)
    assert dispatcher.place() == 1
    first = world.job(job["id"])["center_id"]
    broken = live.executors[first]
    assert isinstance(broken, LaunchFails)
    broken.failing = True
    _until_lost(world, rounds, job["id"], 1)
    rounds()  # the clock has not moved: placed elsewhere at once
    got = world.job(job["id"])
    assert got["state"] != "pending" and got["center_id"] not in (None, first), got
    assert got["decision"]["avoided"]["back"] is False


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("-1", "must be a number of seconds >= 0 (0: no back-off), not -1.0"),
        ("nan", "must be a number of seconds >= 0 (0: no back-off), not nan"),
        ("inf", "must be a number of seconds >= 0 (0: no back-off), not inf"),
        ("x", "SUANWANG_LOST_RUN_BACKOFF_S: 'x' is not a number"),
    ],
)
def test_lost_run_backoff_s_is_a_setting(value: str, said: str) -> None:
    assert Settings.from_env({}).lost_run_backoff_s == 30.0
    assert Settings.from_env({"SUANWANG_LOST_RUN_BACKOFF_S": "0"}).lost_run_backoff_s == 0.0
    assert Settings.from_env({"SUANWANG_LOST_RUN_BACKOFF_S": "2.5"}).lost_run_backoff_s == 2.5
    with pytest.raises(ValueError, match=re.escape(said)) as refused:
        Settings.from_env({"SUANWANG_LOST_RUN_BACKOFF_S": value})
    assert "SUANWANG_LOST_RUN_BACKOFF_S" in str(refused.value)


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (["--lost-run-backoff-s", "-1"], {}, "--lost-run-backoff-s"),
        (["--lost-run-backoff-s", "soon"], {}, "--lost-run-backoff-s"),
        (["--lost-run-backoff-s", "nan"], {}, "--lost-run-backoff-s"),
        (["--lost-run-backoff-s", "inf"], {}, "lost_run_backoff_s (--lost-run-backoff-s"),
        ([], {"SUANWANG_LOST_RUN_BACKOFF_S": "-5"}, "SUANWANG_LOST_RUN_BACKOFF_S) must be"),
        ([], {"SUANWANG_LOST_RUN_BACKOFF_S": "x"}, "SUANWANG_LOST_RUN_BACKOFF_S: 'x' is not"),
    ],
)
def test_the_worker_refuses_a_bad_lost_run_backoff(
    tmp_path: Path, args: list[str], env: dict[str, str], said: str
) -> None:
    from typer.testing import CliRunner

    from suanwang.cli import app as cli

    db = f"sqlite:///{tmp_path / 'never.db'}"
    handlers = list(logging.getLogger().handlers)
    got = CliRunner().invoke(cli, ["worker", "--db", db, *args], env=env)
    out = " ".join(got.output.replace("│", " ").split())
    assert got.exit_code == 2 and said in out, got.output
    assert not (tmp_path / "never.db").exists()  # refused before it started
    # ... and before it set up logging (which would write to the runner's closed stderr)
    assert logging.getLogger().handlers == handlers
