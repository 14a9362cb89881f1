"""The agent's loop in-process, step by step: the real sync route (the app), a real local
executor, and the agent's clock pinned: a restarted agent reconciles instead of running
anything again; an agent out of contact past its lease fences its runs and reports them lost."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pinned import NOW
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.agent.loop import Agent
from suanwang.agent.protocol import PROTOCOL_HEADER, PROTOCOL_VERSION
from suanwang.core.lifecycle import JobState
from suanwang.executors.base import LEASE, Submission
from suanwang.executors.local import LocalExecutor, SharedUser
from suanwang.server.agents.executor import AgentExecutor
from suanwang.server.agents.tokens import issue_token

CENTER = "zhongwei"


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def control(client: TestClient, sessions: sessionmaker[Session]) -> AgentExecutor:
    ex = AgentExecutor(sessions, CENTER, lease_s=30, grace_s=5, clock=lambda: NOW)
    ex.declare()
    return ex


@pytest.fixture
def agent_client(
    app: FastAPI, control: AgentExecutor, sessions: sessionmaker[Session]
) -> Iterator[TestClient]:
    with sessions.begin() as session:
        token = issue_token(session, CENTER, NOW)
    headers = {"Authorization": f"Bearer {token}", PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
    yield TestClient(app, headers=headers)


def make_agent(tmp_path: Path, client: httpx.Client, clock: Clock, cpus: int = 4) -> Agent:
    local = LocalExecutor(tmp_path / "runs", CENTER, cpus=cpus, cards=0, sandbox=SharedUser(),
                          kill_grace_s=1.0)  # fmt: skip
    return Agent(CENTER, local, client, tmp_path / "state.json", clock=clock)


def job(job_id: str, command: str) -> Submission:
    return Submission(job_id=job_id, name=job_id, command=command, script=None,
                      checkpoint_dir=None)  # fmt: skip


def steps_until(agent: Agent, done: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        agent.step()
        time.sleep(0.1)


def test_a_restarted_agent_reports_its_runs_instead_of_starting_them_again(
    tmp_path: Path, control: AgentExecutor, agent_client: TestClient
) -> None:
    clock = Clock()
    marker = tmp_path / "marker"
    first = make_agent(tmp_path, agent_client, clock)
    first.step()  # connects: the center answers
    ref = control.submit(job("j1", f"echo $SUANWANG_JOB_ID >> {marker}; sleep 1.5"))
    assert control.flush()
    first.step()  # told to start it
    assert [r.ref for r in first.state.runs.values()] == [ref]
    assert first.state.runs[ref].local_ref == f"{CENTER}/j1"
    # a new agent on the same state file (the old one was killed): it reports, never restarts
    second = make_agent(tmp_path, agent_client, clock)
    steps_until(second, lambda: control.poll([ref])[ref].state is JobState.SUCCEEDED)
    assert marker.read_text().splitlines() == ["j1"]
    assert control.recorded_exit(ref) == 0
    assert ref not in second.state.runs  # its end is recorded: forgotten


def test_out_of_contact_past_its_lease_the_agent_fences_and_reports_lost(
    tmp_path: Path, control: AgentExecutor, agent_client: TestClient
) -> None:
    clock = Clock()
    agent = make_agent(tmp_path, agent_client, clock)
    agent.step()
    ref = control.submit(job("j2", "sleep 30"))
    assert control.flush()
    steps_until(agent, lambda: control.poll([ref])[ref].state is JobState.RUNNING)
    assert agent.executor.lease_s == 30  # its runs carry the control plane's lease
    # a run with no cause sends none: a control plane older than causes reads the report
    assert [sorted(r) for r in agent._request(False)[0]["runs"]] == [
        ["ended_at", "exit_code", "log_tail", "reason", "ref", "started_at", "state", "usage"]
    ]
    unreachable = httpx.Client(base_url="http://127.0.0.1:9", timeout=2)  # nothing listens
    agent.client = unreachable
    clock.t += 29  # within the lease: the run goes on
    agent.step()
    local = agent.state.runs[ref].local_ref
    assert local is not None and agent.executor.poll([local])[local].state is JobState.RUNNING
    clock.t += 2  # past it: the agent stops the run itself
    agent.step()
    assert agent.executor.poll([local])[local].state is JobState.CANCELLED
    assert agent.state.runs[ref].reported is not None
    assert [r.get("cause") for r in agent._request(False)[0]["runs"]] == [LEASE]
    agent.client = agent_client  # back in contact: the run is reported lost
    agent.step()
    status = control.poll([ref])[ref]
    assert status.state is JobState.LOST
    assert "no contact with the control plane for 31 s (lease 30 s)" in status.reason
    assert status.cause == LEASE  # said over the protocol, not read from the reason
    assert control.recorded_exit(ref) is None
    assert ref not in agent.state.runs
    unreachable.close()


def test_a_fence_starts_nothing_and_keeps_the_end_of_a_run_that_finished_by_itself(
    tmp_path: Path, control: AgentExecutor, agent_client: TestClient
) -> None:
    """Found by the chaos benchmark (jobs ran twice): fencing, the agent polled first, which
    let the executor start a queued run in the slot of one that had ended, then cancelled it
    (or it had finished already) and reported it lost, as it did a run that finished between
    that poll and its cancel: the control plane ran both again. Now runs are cancelled newest
    first and polled after: the queued run never starts, the finished one keeps its end."""
    clock = Clock()
    marker = tmp_path / "marker"
    agent = make_agent(tmp_path, agent_client, clock, cpus=2)
    agent.step()
    quick = control.submit(job("quick", f"sleep 0.5; echo quick >> {marker}"))
    long = control.submit(job("long", "sleep 30"))
    queued = control.submit(job("queued", f"echo queued >> {marker}"))  # no slot: waits
    assert control.flush()
    running = (quick, long)
    steps_until(agent, lambda: all(s.state is JobState.RUNNING
                                   for s in control.poll(list(running)).values()))  # fmt: skip
    unreachable = httpx.Client(base_url="http://127.0.0.1:9", timeout=2)  # nothing listens
    agent.client = unreachable
    clock.t += 31  # past the lease, no round since: nothing has looked at the runs
    exit_code = tmp_path / "runs" / CENTER / "quick" / "exit_code"
    deadline = time.monotonic() + 10
    while not exit_code.exists():  # quick finishes by itself meanwhile
        assert time.monotonic() < deadline, "quick did not end"
        time.sleep(0.05)
    agent.step()  # the fence
    assert marker.read_text().splitlines() == ["quick"]  # the queued run never started
    states = agent.executor.poll([f"{CENTER}/{j}" for j in ("quick", "long", "queued")])
    assert [s.state for s in states.values()] == [
        JobState.SUCCEEDED,
        JobState.CANCELLED,
        JobState.CANCELLED,
    ]
    assert agent.state.runs[quick].reported is None  # reported as it ended, not fenced
    assert agent.state.runs[long].reported is not None
    assert agent.state.runs[queued].reported is not None
    agent.client = agent_client
    agent.step()
    got = control.poll([quick, long, queued])
    assert [got[r].state for r in (quick, long, queued)] == [
        JobState.SUCCEEDED,
        JobState.LOST,
        JobState.LOST,
    ]
    assert control.recorded_exit(quick) == 0
    unreachable.close()
