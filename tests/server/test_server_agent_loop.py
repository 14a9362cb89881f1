"""The agent's loop in-process, step by step: the real sync route (the app), a real local
executor, and the agent's clock pinned: a restarted agent reconciles instead of running
anything again; an agent out of contact past its lease fences its runs and reports them lost;
its syncs are numbered, across restarts, and a lost state file locks it out of nothing; an agent
given several API replicas (the app served on ports of its own) moves to the next in the same
step when the one in use is down or fails in any way, a replica that hangs included, whose late
copy of the sync is then refused."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pinned import NOW
from processes import free_port
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from suanwang.agent.loop import Agent
from suanwang.agent.protocol import APPLIED_HEADER, PROTOCOL_HEADER, PROTOCOL_VERSION
from suanwang.agent.replicas import Refused, Replicas, client_for
from suanwang.agent.state import AgentState
from suanwang.core.lifecycle import JobState
from suanwang.executors.base import LEASE, Submission
from suanwang.executors.local import LocalExecutor, SharedUser
from suanwang.server.agents.executor import AgentExecutor
from suanwang.server.agents.tokens import issue_token
from suanwang.server.database.models import CenterAgent

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
def token(control: AgentExecutor, sessions: sessionmaker[Session]) -> str:
    with sessions.begin() as session:
        return issue_token(session, CENTER, NOW)


@pytest.fixture
def agent_client(app: FastAPI, token: str) -> Iterator[TestClient]:
    headers = {"Authorization": f"Bearer {token}", PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
    yield TestClient(app, headers=headers)


def make_agent(tmp_path: Path, clients: list[httpx.Client], clock: Clock, cpus: int = 4) -> Agent:
    local = LocalExecutor(tmp_path / "runs", CENTER, cpus=cpus, cards=0, sandbox=SharedUser(),
                          kill_grace_s=1.0)  # fmt: skip
    return Agent(CENTER, local, clients, tmp_path / "state.json", clock=clock)


def job(job_id: str, command: str) -> Submission:
    return Submission(job_id=job_id, name=job_id, command=command, script=None,
                      checkpoint_dir=None)  # fmt: skip


def steps_until(agent: Agent, done: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        agent.step()
        time.sleep(0.1)


def _applied(sessions: sessionmaker[Session]) -> int | None:
    """The highest sync number the control plane applied for the agent."""
    with sessions() as session:
        return session.get_one(CenterAgent, CENTER).applied_seq


def test_a_restarted_agent_reports_its_runs_instead_of_starting_them_again(
    tmp_path: Path, control: AgentExecutor, agent_client: TestClient
) -> None:
    clock = Clock()
    marker = tmp_path / "marker"
    first = make_agent(tmp_path, [agent_client], clock)
    first.step()  # connects: the center answers
    ref = control.submit(job("j1", f"echo $SUANWANG_JOB_ID >> {marker}; sleep 1.5"))
    assert control.flush()
    first.step()  # told to start it
    assert [r.ref for r in first.state.runs.values()] == [ref]
    assert first.state.runs[ref].local_ref == f"{CENTER}/j1"
    # a new agent on the same state file (the old one was killed): it reports, never restarts
    second = make_agent(tmp_path, [agent_client], clock)
    steps_until(second, lambda: control.poll([ref])[ref].state is JobState.SUCCEEDED)
    assert marker.read_text().splitlines() == ["j1"]
    assert control.recorded_exit(ref) == 0
    assert ref not in second.state.runs  # its end is recorded: forgotten


def test_out_of_contact_past_its_lease_the_agent_fences_and_reports_lost(
    tmp_path: Path, control: AgentExecutor, agent_client: TestClient
) -> None:
    clock = Clock()
    agent = make_agent(tmp_path, [agent_client], clock)
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
    agent.replicas = Replicas(CENTER, [unreachable])
    clock.t += 29  # within the lease: the run goes on
    agent.step()
    local = agent.state.runs[ref].local_ref
    assert local is not None and agent.executor.poll([local])[local].state is JobState.RUNNING
    clock.t += 2  # past it: the agent stops the run itself
    agent.step()
    assert agent.executor.poll([local])[local].state is JobState.CANCELLED
    assert agent.state.runs[ref].reported is not None
    assert [r.get("cause") for r in agent._request(False)[0]["runs"]] == [LEASE]
    agent.replicas = Replicas(CENTER, [agent_client])  # back in contact: reported lost
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
    agent = make_agent(tmp_path, [agent_client], clock, cpus=2)
    agent.step()
    quick = control.submit(job("quick", f"sleep 0.5; echo quick >> {marker}"))
    long = control.submit(job("long", "sleep 30"))
    queued = control.submit(job("queued", f"echo queued >> {marker}"))  # no slot: waits
    assert control.flush()
    running = (quick, long)
    steps_until(agent, lambda: all(s.state is JobState.RUNNING
                                   for s in control.poll(list(running)).values()))  # fmt: skip
    unreachable = httpx.Client(base_url="http://127.0.0.1:9", timeout=2)  # nothing listens
    agent.replicas = Replicas(CENTER, [unreachable])
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
    agent.replicas = Replicas(CENTER, [agent_client])
    agent.step()
    got = control.poll([quick, long, queued])
    assert [got[r].state for r in (quick, long, queued)] == [
        JobState.SUCCEEDED,
        JobState.LOST,
        JobState.LOST,
    ]
    assert control.recorded_exit(quick) == 0
    unreachable.close()


def test_the_agents_sync_numbers_survive_a_restart_and_a_lost_state_file_locks_nothing_out(
    tmp_path: Path,
    control: AgentExecutor,
    agent_client: TestClient,
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    first = make_agent(tmp_path, [agent_client], clock)
    first.step()  # numbered by its clock, in microseconds
    first.step()  # the clock stands still: one more than the last
    assert first.state.last_seq == 10**12 + 1 == _applied(sessions)
    assert AgentState.load(first.state_file).last_seq == 10**12 + 1  # saved
    clock.t -= 60  # the clock set back, and the agent restarted on its state file
    second = make_agent(tmp_path, [agent_client], clock)
    second.step()
    assert second.connected and _applied(sessions) == 10**12 + 2  # above its last, not refused
    assert "numbers its syncs below" not in caplog.text
    second.state_file.unlink()  # lost, with the clock still behind the numbers sent
    third = make_agent(tmp_path, [agent_client], clock)
    third.step()  # refused as stale once, then above the control plane's number
    assert third.connected and _applied(sessions) == 10**12 + 3
    assert "numbers its syncs below the control plane's record" in caplog.text
    assert "lost contact" not in caplog.text and "cannot sync" not in caplog.text
    third.state_file.unlink()
    clock.t += 3600  # lost again, the clock right: numbered by it at once
    fourth = make_agent(tmp_path, [agent_client], clock)
    fourth.step()
    assert fourth.connected and _applied(sessions) == (1_000_000 - 60 + 3600) * 10**6


def test_a_state_file_older_than_sync_numbers_loads_and_a_bad_number_is_named(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.json"
    saved = {"runs": [], "lease_s": 30, "last_contact": None}
    path.write_text(json.dumps(saved))
    assert AgentState.load(path).last_seq == 0
    for bad in ("12", -1, True, 1.5):
        path.write_text(json.dumps({**saved, "last_seq": bad}))
        with pytest.raises(ValueError, match=rf"^agent state {path}: .* is not a sync number"):
            AgentState.load(path)


# --------------------------------------------------------------------------- API replicas


class Replica:
    """The app served over HTTP on a port of its own, like an API replica on one database;
    stopped (or not started yet), nothing listens on its port."""

    def __init__(self, app: FastAPI) -> None:
        self.app, self.port = app, free_port()
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="off")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(15)
            assert not self.thread.is_alive(), "did not stop"
        self.server = self.thread = None


@dataclass
class Pair:
    """Two replicas, neither started, and the agent's client of each."""

    first: Replica
    second: Replica
    clients: list[httpx.Client]


@pytest.fixture
def pair(app: FastAPI, token: str) -> Iterator[Pair]:
    first, second = Replica(app), Replica(app)
    clients = [client_for(first.url, token), client_for(second.url, token)]
    yield Pair(first, second, clients)
    for replica, client in zip((first, second), clients, strict=True):
        replica.stop()
        client.close()


def moves(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "moved to" in r.getMessage()]


def test_an_agent_moves_to_the_next_replica_in_the_same_step_stays_there_and_moves_back(
    tmp_path: Path, control: AgentExecutor, pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="suanwang.agent")
    first, second, clients = pair.first, pair.second, pair.clients
    second.start()  # the first is down: nothing listens on its port
    agent = make_agent(tmp_path, clients, Clock())
    agent.step()
    assert agent.connected and agent.replicas.client is clients[1]  # in this very step
    assert f"connected to the control plane at {second.url}" in caplog.text
    [moved] = moves(caplog)
    assert moved.startswith(f"agent of center {CENTER} moved to the control plane at {second.url}")
    assert f"({first.url}: ConnectError: " in moved  # which one failed, and why
    ref = control.submit(job("j3", "sleep 1"))
    assert control.flush()
    steps_until(agent, lambda: control.poll([ref])[ref].state is JobState.RUNNING)
    first.start()
    agent.step()  # the first is back: the agent stays with the one that answers
    assert agent.replicas.client is clients[1] and len(moves(caplog)) == 1
    second.stop()
    agent.step()  # the second is down: back to the first, in contact all along
    assert agent.connected and agent.replicas.client is clients[0]
    assert moves(caplog)[1].startswith(f"agent of center {CENTER} moved to the control plane "
                                       f"at {first.url} ({second.url}: ")  # fmt: skip
    steps_until(agent, lambda: control.poll([ref])[ref].state is JobState.SUCCEEDED)
    assert "lost contact" not in caplog.text and "cannot sync" not in caplog.text
    assert len(moves(caplog)) == 2  # said once each time


def test_every_replica_down_the_agent_is_out_of_contact_and_fences_after_its_lease(
    tmp_path: Path, control: AgentExecutor, pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    first, second, clients = pair.first, pair.second, pair.clients
    first.start()
    second.start()
    clock = Clock()
    agent = make_agent(tmp_path, clients, clock)
    agent.step()
    ref = control.submit(job("j4", "sleep 30"))
    assert control.flush()
    steps_until(agent, lambda: control.poll([ref])[ref].state is JobState.RUNNING)
    first.stop()
    second.stop()
    caplog.set_level(logging.WARNING, logger="suanwang.agent")
    clock.t += 29  # within the lease: the run goes on
    agent.step()
    agent.step()
    assert not agent.connected and agent.replicas.client is clients[0]
    [lost] = [r.getMessage() for r in caplog.records]  # said once, naming each replica
    assert "lost contact with the control plane" in lost
    assert f"{first.url}: ConnectError" in lost and f"{second.url}: ConnectError" in lost
    local = agent.state.runs[ref].local_ref
    assert local is not None and agent.executor.poll([local])[local].state is JobState.RUNNING
    clock.t += 2  # past the lease: fenced, as with one replica
    agent.step()
    assert agent.executor.poll([local])[local].state is JobState.CANCELLED
    second.start()
    agent.step()  # back in contact through the second: the run is reported lost
    assert agent.replicas.client is clients[1]
    assert control.poll([ref])[ref].state is JobState.LOST


@pytest.mark.parametrize("refusal", ["token", "protocol"])
def test_a_refusal_by_one_replica_moves_the_agent_to_one_that_answers_and_by_all_ends_it(
    tmp_path: Path,
    app: FastAPI,
    token: str,
    agent_client: TestClient,
    refusal: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A replica that refuses (left on another protocol during an upgrade: 409; or that does not
    know the token: 401) does not end an agent that another replica answers; it is logged as
    an error. When every replica refuses, or refuses and fails, the agent ends."""
    wrong = {"token": ("swa_not-a-token", str(PROTOCOL_VERSION)), "protocol": (token, "99")}
    refused, protocol = wrong[refusal]  # a replica of another protocol: 409
    headers = {"Authorization": f"Bearer {refused}", PROTOCOL_HEADER: protocol}
    refusing = TestClient(app, headers=headers)
    agent = make_agent(tmp_path, [refusing, agent_client], Clock())
    caplog.set_level(logging.WARNING, logger="suanwang.agent")
    agent.step()
    assert agent.connected and agent.replicas.client is agent_client
    [said] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"{refusing.base_url}: the control plane refused this agent (HTTP" in said.getMessage()
    agent.step()  # it stays with the one that answers: no more refusals
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    alone = make_agent(tmp_path / "alone", [refusing], Clock())
    with pytest.raises(Refused, match=r"HTTP (401|409)"):
        alone.step()
    down = answering(httpx.ConnectError("refused"))
    both = make_agent(tmp_path / "both", [down, TestClient(app, headers=headers)], Clock())
    with pytest.raises(Refused, match=r"HTTP (401|409)"):
        both.step()  # one down, the other refusing: nothing would answer it
    assert not both.connected


def answering(failure: int | Exception, sent: list[int] | None = None) -> httpx.Client:
    """A replica that answers every request with the status ``failure`` (200: with what is not
    an answer), or fails with it; the number of each sync it was sent in ``sent``."""

    def handle(request: httpx.Request) -> httpx.Response:
        if sent is not None:
            sent.append(json.loads(request.content)["seq"])
        if isinstance(failure, Exception):
            raise failure
        return httpx.Response(failure, json={"detail": "down for a moment"})

    return httpx.Client(base_url="http://replica-a", transport=httpx.MockTransport(handle))


@pytest.mark.parametrize(
    "failure",
    [
        500,  # the replica rolled the sync back
        503,
        200,  # an answer the agent cannot read: recorded there, an ordinary repeat
        httpx.ConnectTimeout("no connection"),  # never sent
        # the sync may have reached it and may still be recorded there, late: refused then
        504,
        httpx.ReadTimeout("no answer"),
        httpx.RemoteProtocolError("closed without an answer"),
    ],
    ids=["500", "503", "unreadable", "connect-timeout", "504", "read-timeout", "closed"],
)
def test_a_sync_goes_to_the_next_replica_after_any_failure_under_a_new_number(
    tmp_path: Path,
    agent_client: TestClient,
    sessions: sessionmaker[Session],
    failure: int | Exception,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[int] = []
    first = answering(failure, sent)
    agent = make_agent(tmp_path, [first, agent_client], Clock())
    with first:
        agent.step()
    assert agent.connected and agent.replicas.client is agent_client  # in this very step
    [moved] = moves(caplog)
    assert "(http://replica-a: " in moved
    # the copy the second applied is numbered above the first's: the first's is stale there
    assert sent == [1_000_000 * 1_000_000] and _applied(sessions) == sent[0] + 1


class Held:
    """The app, but while ``holding`` is set each request is read whole and held until
    ``release`` is set, then answered by the app (to a client long gone): a replica minutes
    behind. The statuses it answered the held requests, in ``answered``."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.holding, self.release = threading.Event(), threading.Event()
        self.answered: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.holding.is_set():
            await self.app(scope, receive, send)
            return
        request = [await receive()]
        while request[-1]["type"] == "http.request" and request[-1].get("more_body"):
            request.append(await receive())
        await anyio.to_thread.run_sync(self.release.wait)

        async def replay() -> Message:
            return request.pop(0) if request else await receive()

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.answered.append(message["status"])
            await send(message)

        await self.app(scope, replay, answer)


def test_a_replica_that_hangs_costs_a_step_and_its_late_copy_is_refused(
    tmp_path: Path,
    app: FastAPI,
    token: str,
    control: AgentExecutor,
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The replica in use takes the sync and does not answer: after the client's timeout the
    agent sends it to the other replica in the same step (it used to wait for the first, and
    fence past its lease); the run that answer starts is reported through the other. When the
    first at last records its copy, which does not have that run, it is refused as stale: the
    run is not recorded lost (placed again, run twice)."""
    held = Held(app)
    first, second = Replica(held), Replica(app)
    clients = [client_for(r.url, token, timeout_s=1.0) for r in (first, second)]
    try:
        first.start()
        second.start()
        agent = make_agent(tmp_path, clients, Clock())
        agent.step()
        old = control.submit(job("old", "sleep 30"))
        assert control.flush()
        steps_until(agent, lambda: control.poll([old])[old].state is JobState.RUNNING)
        assert agent.replicas.client is clients[0] and moves(caplog) == []
        held.holding.set()  # from now on the first holds what it is sent
        new = control.submit(job("new", "sleep 30"))
        assert control.flush()
        late = agent.state.last_seq + 1
        agent.step()  # held at the first, then through the second: told to start the new run
        assert agent.connected and agent.replicas.client is clients[1]
        [moved] = moves(caplog)
        assert f"({first.url}: ReadTimeout: " in moved
        assert new in agent.state.runs
        steps_until(agent, lambda: control.poll([new])[new].state is JobState.RUNNING)
        assert (_applied(sessions) or 0) > late
        held.release.set()  # the first records its copy at last: refused
        deadline = time.monotonic() + 20
        while not held.answered:
            assert time.monotonic() < deadline, "the held sync was not answered"
            time.sleep(0.05)
        assert held.answered == [409]
        got = control.poll([old, new])
        assert [got[r].state for r in (old, new)] == [JobState.RUNNING, JobState.RUNNING]
        assert "lost contact" not in caplog.text and "fenced" not in caplog.text
    finally:
        held.release.set()
        for replica, client in zip((first, second), clients, strict=True):
            replica.stop()
            client.close()


def test_a_stale_refusal_moves_the_agents_numbers_above_the_control_planes_and_ends_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica that refuses every sync as stale (another agent with this token, numbering
    ahead): the agent sends once more above the number it names, then gives up for the step,
    out of contact (not refused: it tries again at the next)."""
    sent: list[int] = []
    applied = 5 * 10**15

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content)["seq"])
        detail = {"detail": "stale sync: not above the last"}
        return httpx.Response(409, json=detail, headers={APPLIED_HEADER: str(applied)})

    refusing = httpx.Client(base_url="http://replica-a", transport=httpx.MockTransport(handle))
    agent = make_agent(tmp_path, [refusing], Clock())
    agent.step()
    assert sent == [10**12, applied + 1] and not agent.connected
    assert "numbers its syncs below the control plane's record" in caplog.text
    assert "cannot sync with the control plane at http://replica-a: HTTP 409: stale" in caplog.text


def test_a_stale_refusal_that_names_no_number_is_a_failure_of_that_replica(
    tmp_path: Path, agent_client: TestClient
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        detail = {"detail": "stale sync"}
        return httpx.Response(409, json=detail, headers={APPLIED_HEADER: "many"})

    garbled = httpx.Client(base_url="http://replica-a", transport=httpx.MockTransport(handle))
    agent = make_agent(tmp_path, [garbled, agent_client], Clock())
    agent.step()
    assert agent.connected and agent.replicas.client is agent_client


def test_told_to_start_many_runs_a_step_saves_its_state_a_few_times_not_twice_a_run(
    tmp_path: Path, control: AgentExecutor, agent_client: TestClient
) -> None:
    """The state file holds every run: written for each run started (twice, as before), a
    step told to start hundreds took longer than the lease (measured: 463 runs, 92 s, then
    the agent fenced them all). All the runs a sync brings are remembered in one write."""
    clock = Clock()
    agent = make_agent(tmp_path, [agent_client], clock, cpus=64)
    agent.step()
    refs = [control.submit(job(f"m{i}", "true")) for i in range(20)]
    assert control.flush()
    saves = 0
    save = agent.state.save

    def counted(path: Path) -> None:
        nonlocal saves
        saves += 1
        save(path)

    agent.state.save = counted  # type: ignore[method-assign]
    agent.step()  # told to start the 20
    assert all(agent.state.runs[r].local_ref is not None for r in refs)
    assert saves <= 3
    steps_until(agent, lambda: all(control.poll(refs)[r].state is JobState.SUCCEEDED for r in refs))


def test_a_step_hands_its_executor_what_its_time_allows_and_reports_the_rest_starting(
    tmp_path: Path, control: AgentExecutor, agent_client: TestClient
) -> None:
    """With no time for it (``hand_over_s`` 0) a hand-over takes one run: the others are
    remembered, reported ``scheduled`` ("starting"), and handed over at the next steps, each
    once; none is lost or run twice, and the control plane never asks for one again."""
    clock = Clock()
    marker = tmp_path / "marker"
    local = LocalExecutor(tmp_path / "runs", CENTER, cpus=8, cards=0, sandbox=SharedUser(),
                          kill_grace_s=1.0)  # fmt: skip
    agent = Agent(CENTER, local, [agent_client], tmp_path / "state.json", clock=clock,
                  hand_over_s=0.0)  # fmt: skip
    agent.step()
    refs = [control.submit(job(f"h{i}", f"sleep 2; echo $SUANWANG_JOB_ID >> {marker}"))
            for i in range(5)]  # fmt: skip
    assert control.flush()
    agent.step()  # told to start the 5: remembered, one handed over
    assert set(agent.state.runs) == set(refs)
    handed = [r for r in refs if agent.state.runs[r].local_ref is not None]
    assert handed == refs[:1]  # the oldest first
    reports = {r["ref"]: r for r in agent._request(False)[0]["runs"]}
    assert all(reports[r]["state"] == "scheduled" and reports[r]["reason"] == "starting"
               for r in refs[1:])  # fmt: skip
    agent.step()  # one before the sync, one after it
    assert sum(agent.state.runs[r].local_ref is not None for r in refs) == 3
    steps_until(agent, lambda: all(control.poll(refs)[r].state is JobState.SUCCEEDED for r in refs))
    assert sorted(marker.read_text().split()) == sorted(f"h{i}" for i in range(5))
