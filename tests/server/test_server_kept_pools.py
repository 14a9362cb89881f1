"""Pools kept for starved jobs last from round to round live, as in the simulator (issue 14).

The simulator keeps one platform's queue for its run, so a pool kept for a job (a claim's
reservation, a borrower's kept pool: ``PlatformQueue._keep``) stays kept until the job starts
or is deferred. The live dispatcher builds its queue every round; it hands each the pools the
last one kept, for the jobs still pending (``Dispatcher.holds``), so live and simulated rounds
decide alike.

One center with an executor (wuhan-ai) and its pool of 400 Ascend 910 cards; alice and bob
both have almost no quota, so every run of theirs is borrowed (no claims). alice fills the
pool with four 100-card runs and queues more (``normal``); bob, standing lower, waits with a
200-card gang (``batch``: after alice's jobs in turn). The dispatcher's clock is the API's
fixed one plus a shift the test moves (no wall clock). Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.core.governance import Governance, TenantQuota
from suanwang.executors.local import LocalExecutor
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.queue import RESERVE_AFTER_S
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.live import LiveNetwork


@dataclass
class Clock:
    """The API's fixed test instant (``base``), shifted by what the test says."""

    base: datetime
    shift: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return self.base + self.shift


@pytest.fixture
def clock(app: FastAPI) -> Clock:
    return Clock(app.state.signals.clock())


def _dispatcher(
    app: FastAPI, sessions: sessionmaker[Session], root: Path, clock: Clock
) -> Dispatcher:
    live = LiveNetwork(
        net=app.state.network,
        signals=app.state.signals.current,
        executors={"wuhan-ai": LocalExecutor(root, "wuhan-ai", cpus=64, cards=16)},
        clock=clock,
    )
    gov = Governance(
        tenants={
            n: TenantQuota(name=n, cohort=f"c-{n}", quota_scu_per_h=1.0) for n in ("alice", "bob")
        }
    )
    # no deferral for price: only the queue decides when a job starts
    return Dispatcher(
        sessions, live, policy=SuanwangPolicy(max_defer_h=0), governance=lambda session: gov
    )


def _job(submit: Callable[..., dict[str, Any]], who: Any, name: str, cards: int, cls: str) -> str:
    body: dict[str, Any] = {
        "command": "sleep 600",
        "resources": {"cpus": 8, "cards": cards, "accelerator": "ascend-910", "mem_gb": 64},
        "stacks": ["cann"],
        "kind": "inference",
        "latency_ms": 100,
        "priority": cls,
    }
    return str(submit(who, name=name, **body)["id"])


def _state(client: TestClient, who: Any, job: str) -> str:
    got: str = client.get(f"/v1/jobs/{job}", headers=who.headers).json()["state"]
    return got


@dataclass
class Starved:
    """The world of every test: alice's four runs fill the pool; bob's gang has waited past
    RESERVE_AFTER_S at the head of his queue and, finding no room, keeps the pool; then alice
    queues three more."""

    dispatcher: Dispatcher
    alice_jobs: list[str]
    gang: str
    client: TestClient
    alice: Any
    bob: Any
    clock: Clock

    def state(self, job: str) -> str:
        who = self.bob if job == self.gang else self.alice
        return _state(self.client, who, job)

    def cancel(self, job: str) -> None:
        who = self.bob if job == self.gang else self.alice
        assert self.client.post(f"/v1/jobs/{job}/cancel", headers=who.headers).is_success

    def next_round(self) -> None:
        """A minute later, a round."""
        self.clock.shift += timedelta(seconds=60)
        self.dispatcher.place()


@pytest.fixture
def starved(
    app: FastAPI,
    sessions: sessionmaker[Session],
    client: TestClient,
    tmp_path: Path,
    clock: Clock,
    alice: Any,
    bob: Any,
    submit: Callable[..., dict[str, Any]],
) -> Starved:
    alice_jobs = [_job(submit, alice, f"a{i}", 100, "normal") for i in range(4)]
    gang = _job(submit, bob, "gang", 200, "batch")
    dispatcher = _dispatcher(app, sessions, tmp_path, clock)
    dispatcher.place()
    assert [_state(client, alice, j) for j in alice_jobs] == ["scheduled"] * 4
    assert dispatcher.holds == []  # the gang has not waited long enough to keep a pool
    clock.shift = timedelta(seconds=RESERVE_AFTER_S + 60)
    dispatcher.place()
    ((job_id, hold),) = dispatcher.holds
    assert job_id == gang and not hold.claim  # a borrower's kept pool
    alice_jobs += [_job(submit, alice, f"a{i}", 100, "normal") for i in range(4, 7)]
    return Starved(dispatcher, alice_jobs, gang, client, alice, bob, clock)


def test_a_borrowers_gang_keeps_its_pool_from_round_to_round(starved: Starved) -> None:
    """Cards freed one run at a time on the pool kept for bob's gang go to no job of alice's
    (she stands higher, and her jobs come first in turn: a higher class): they wait for the
    gang, which starts once two runs have ended, and then lets the pool go. Before, each
    round built a new queue and the pool was kept for that round only: alice's next job, in
    turn before bob's, took each card freed, and the gang waited until her queue ran dry."""
    w = starved
    dispatcher, alice_jobs, gang = w.dispatcher, w.alice_jobs, w.gang
    kept = dispatcher.holds
    w.cancel(alice_jobs[0])  # 100 cards free: not enough for the gang
    w.next_round()
    assert w.state(alice_jobs[4]) == "pending"  # the pool is still kept
    assert w.state(gang) == "pending"
    assert dispatcher.holds == kept
    w.cancel(alice_jobs[1])  # 200 cards free: the gang starts
    w.next_round()
    assert w.state(gang) == "scheduled"
    assert [w.state(j) for j in alice_jobs[4:]] == ["pending"] * 3
    assert dispatcher.holds == []  # started: the pool is let go
    w.cancel(alice_jobs[2])  # and alice's next job takes what is freed
    w.next_round()
    assert w.state(alice_jobs[4]) == "scheduled"


def test_a_pool_kept_for_a_job_cancelled_is_let_go(starved: Starved) -> None:
    """bob cancels his gang: the next round keeps nothing for it, and alice's next job takes
    the cards freed on the pool that was kept (her head job may keep it now)."""
    w = starved
    dispatcher, alice_jobs, gang = w.dispatcher, w.alice_jobs, w.gang
    w.cancel(gang)
    w.cancel(alice_jobs[0])
    w.next_round()
    assert gang not in {job_id for job_id, _ in dispatcher.holds}
    assert w.state(alice_jobs[4]) == "scheduled"


def test_the_pools_kept_are_dropped_on_a_new_term(starved: Starved) -> None:
    """A placer elected again (a new term: another may have placed meanwhile) starts from the
    pending jobs, without the pools it kept: alice's job, first in turn, takes the cards
    freed, and only jobs still pending keep pools."""
    w = starved
    dispatcher, alice_jobs, gang = w.dispatcher, w.alice_jobs, w.gang
    dispatcher.term = 7
    w.cancel(alice_jobs[0])
    w.next_round()
    assert w.state(alice_jobs[4]) == "scheduled"
    pending = {alice_jobs[5], alice_jobs[6], gang}
    assert {job_id for job_id, _ in dispatcher.holds} <= pending


def test_a_failed_round_keeps_the_pools_kept_before_it(starved: Starved) -> None:
    """A round whose writes are refused (a fence) is undone, and so is what it kept: the
    next round starts from the pools kept before it (those it dropped are kept again)."""
    w = starved
    dispatcher, alice_jobs, gang = w.dispatcher, w.alice_jobs, w.gang
    kept = dispatcher.holds
    w.cancel(gang)  # the failed round lets the gang's pool go

    def refuse(session: Session) -> None:
        raise RuntimeError("fenced")

    dispatcher.fence = refuse
    w.clock.shift += timedelta(seconds=60)
    with pytest.raises(RuntimeError, match="fenced"):
        dispatcher.place()
    assert dispatcher.holds == kept
    dispatcher.fence = None
    dispatcher.place()  # and so does the next, which keeps the pool for alice's head job
    assert [job_id for job_id, _ in dispatcher.holds] == [alice_jobs[4]]
