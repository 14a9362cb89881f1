"""Agent centers on the control plane's side: the executor over the database, the sync, the
route's authentication, the platform file (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from migrating import step
from pinned import NOW
from pydantic import ValidationError
from sqlalchemy import column, func, inspect, select, table
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.agent.protocol import (
    APPLIED_HEADER,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    SyncAnswer,
    SyncRequest,
)
from suanwang.core.lifecycle import JobState
from suanwang.executors.base import CENTER as AT_CENTER
from suanwang.executors.base import LEASE, PREEMPTED, ExecutorError, Submission
from suanwang.scenarios.loader import ScenarioError, load_scenario
from suanwang.server.agents.executor import AgentExecutor
from suanwang.server.agents.sync import NotAnAgentCenter, StaleSync, sync
from suanwang.server.agents.tokens import issue_token
from suanwang.server.database.models import AgentRun, CenterAgent
from suanwang.server.database.session import alembic_config, make_engine, session_factory
from suanwang.server.platform_config import AgentExecutorConfig, load_platform_config
from suanwang.server.runner import configured_executors, live_scenario

CENTER = "qingyang"


class Clock:
    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def sub(job: str = "job-1", attempt: int = 0, **kw: Any) -> Submission:
    return Submission(
        job_id=job, name=job, command="echo hi", script=None, attempt=attempt,
        checkpoint_dir=f"/ckpt/{job}", **kw,
    )  # fmt: skip


@pytest.fixture
def agent(client: TestClient, sessions: sessionmaker[Session]) -> AgentExecutor:
    ex = AgentExecutor(sessions, CENTER, lease_s=5, grace_s=2, clock=Clock())
    ex.declare()
    return ex


def report(ref: str, state: str, **kw: Any) -> dict[str, Any]:
    return {"ref": ref, "state": state, **kw}


def synced(
    sessions: sessionmaker[Session], runs: list[dict[str, Any]], at: datetime = NOW, **kw: Any
) -> SyncAnswer:
    body = {"version": "test", "capacity": {"slots_cpus": 8, "slots_cards": 2, "used_cpus": 1,
            "used_cards": 0}, "runs": runs, **kw}  # fmt: skip
    with sessions.begin() as session:
        return sync(session, CENTER, SyncRequest.model_validate(body), at)


def hand_over(agent: AgentExecutor, s: Submission, resume_from: str | None = None) -> str:
    ref = agent.resume(s, resume_from) if resume_from else agent.submit(s)
    assert agent.flush()
    return ref


def test_a_run_is_handed_over_once_started_by_the_agent_and_reported(
    agent: AgentExecutor, sessions: sessionmaker[Session]
) -> None:
    synced(sessions, [])  # the agent is there
    ref = hand_over(agent, sub())
    assert hand_over(agent, sub()) == ref  # idempotent per job and attempt
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AgentRun)) == 1
    assert agent.poll([ref])[ref].state is JobState.SCHEDULED
    first = synced(sessions, [])
    assert [s.ref for s in first.start] == [ref]
    assert first.start[0].submission["job_id"] == "job-1" and first.lease_s == 5
    # the answer was lost: the agent does not report it, so it is sent again
    assert [s.ref for s in synced(sessions, []).start] == [ref]
    answer = synced(sessions, [report(ref, "running", started_at=NOW.isoformat())])
    assert answer.start == [] and answer.forget == []
    assert agent.poll([ref])[ref].state is JobState.RUNNING
    assert agent.recorded_exit(ref) is None
    ended = report(ref, "succeeded", exit_code=0, log_tail="hello\n", usage={"tokens": 42})
    assert synced(sessions, [ended]).forget == [ref]
    status = agent.poll([ref])[ref]
    assert (status.state, status.exit_code) == (JobState.SUCCEEDED, 0)
    assert agent.recorded_exit(ref) == 0
    assert agent.logs(ref) == "hello\n" and agent.logs(ref, 3) == "lo\n"
    assert agent.reported_usage(ref).tokens == 42
    # a late report of a forgotten run changes nothing
    assert synced(sessions, [report(ref, "failed", exit_code=1)]).forget == [ref]
    assert agent.poll([ref])[ref].state is JobState.SUCCEEDED
    assert agent.capacity().slots_cpus == 8


def test_a_run_handed_over_before_the_agent_fell_silent_is_handed_over_again_as_itself(
    agent: AgentExecutor, sessions: sessionmaker[Session]
) -> None:
    # a worker handed the run over, then died before its own transaction recorded it; the
    # next worker hands it over again while the agent is silent (it may have run it already)
    synced(sessions, [], every_s=1.0)
    ref = hand_over(agent, sub())
    clock = agent.clock
    assert isinstance(clock, Clock)
    clock.at = NOW + timedelta(seconds=60)
    assert hand_over(agent, sub()) == ref  # the same run: not refused, not placed elsewhere
    with pytest.raises(ExecutorError, match="silent for 60 s"):  # a new run is refused
        agent.submit(sub(attempt=1))
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AgentRun)) == 1


def test_resumed_runs_and_attempts_are_runs_of_their_own(
    agent: AgentExecutor, sessions: sessionmaker[Session]
) -> None:
    synced(sessions, [])
    refs = {hand_over(agent, sub()), hand_over(agent, sub(attempt=1)),
            hand_over(agent, sub(attempt=1), "/ckpt/a")}  # fmt: skip
    assert len(refs) == 3
    starts = {s.ref: s.resume_from for s in synced(sessions, []).start}
    assert set(starts) == refs and sorted(filter(None, starts.values())) == ["/ckpt/a"]


def test_unknown_refs_are_lost_and_a_silent_agent_is_unreachable(
    agent: AgentExecutor, sessions: sessionmaker[Session]
) -> None:
    with pytest.raises(ExecutorError, match="never synced: the center is unreachable"):
        agent.poll(["agent:qingyang/x"])
    with pytest.raises(ExecutorError, match="never synced"):
        agent.submit(sub())
    synced(sessions, [], every_s=2.0)
    assert agent.poll(["agent:qingyang/x"])["agent:qingyang/x"].state is JobState.LOST
    clock = agent.clock
    assert isinstance(clock, Clock)
    clock.at = NOW + timedelta(seconds=10)  # three periods of 2 s, but 10 s at least
    agent.capacity()
    clock.at = NOW + timedelta(seconds=11)
    with pytest.raises(ExecutorError, match="silent for 11 s: the center is unreachable"):
        agent.poll(["agent:qingyang/x"])
    with pytest.raises(ExecutorError, match="silent"):
        agent.capacity()  # failover's probe: a silent agent's center does not answer
    # the slots to plan with are what it last reported, silent since or not
    assert (agent.slots().slots_cpus, agent.slots().slots_cards) == (8, 2)
    assert agent.stop_grace_s == 7


def test_cancel_before_start_never_starts_and_cancel_of_a_running_run_is_passed_on(
    agent: AgentExecutor, sessions: sessionmaker[Session]
) -> None:
    synced(sessions, [])
    early, running = hand_over(agent, sub("early")), hand_over(agent, sub("running"))
    assert {s.ref for s in synced(sessions, []).start} == {early, running}
    agent.cancel(early)
    agent.cancel(early)  # idempotent
    assert agent.flush()
    answer = synced(sessions, [report(running, "running")])
    assert answer.start == [] and answer.cancel == []
    assert agent.poll([early])[early].state is JobState.CANCELLED
    agent.cancel(running)
    assert agent.flush()
    assert synced(sessions, [report(running, "running")]).cancel == [running]
    done = synced(sessions, [report(running, "cancelled", exit_code=143)])
    assert done.forget == [running] and done.cancel == []


def test_checkpoint_is_asked_of_running_runs_only(
    agent: AgentExecutor, sessions: sessionmaker[Session]
) -> None:
    synced(sessions, [])
    ref = hand_over(agent, sub())
    with pytest.raises(ExecutorError, match="not started yet"):
        agent.checkpoint(ref)
    synced(sessions, [report(ref, "running")])
    assert agent.checkpoint(ref) == "/ckpt/job-1"
    assert agent.flush()
    assert synced(sessions, [report(ref, "running")]).checkpoint == [ref]
    synced(sessions, [report(ref, "migrating", exit_code=85)])
    assert agent.checkpoint(ref) == "/ckpt/job-1"  # already checkpointed: idempotent
    assert agent.poll([ref])[ref].state is JobState.MIGRATING


def test_a_run_the_agent_no_longer_holds_is_lost_and_strangers_are_stopped(
    agent: AgentExecutor, sessions: sessionmaker[Session]
) -> None:
    synced(sessions, [])
    ref = hand_over(agent, sub())
    synced(sessions, [report(ref, "running")])
    answer = synced(sessions, [report("agent:qingyang/stranger", "running")])
    assert answer.cancel == ["agent:qingyang/stranger"]
    assert answer.forget == ["agent:qingyang/stranger"]
    status = agent.poll([ref])[ref]
    assert status.state is JobState.LOST and "no longer holds" in status.reason
    assert status.cause == AT_CENTER  # counted against the job
    assert agent.recorded_exit(ref) is None  # lost: it has no end of its own


@pytest.mark.parametrize("cause", [LEASE, PREEMPTED, AT_CENTER, None])
def test_the_cause_of_a_lost_run_goes_from_the_agent_to_the_control_plane(
    agent: AgentExecutor, sessions: sessionmaker[Session], cause: str | None
) -> None:
    """What the agent says of why a run was lost reaches the control plane's status as it
    said it; an agent that says nothing (older than causes) gives a status without a cause."""
    synced(sessions, [])
    ref = hand_over(agent, sub())
    said = {} if cause is None else {"cause": cause}
    assert synced(sessions, [report(ref, "lost", reason="released", **said)]).forget == [ref]
    status = agent.poll([ref])[ref]
    assert (status.state, status.reason, status.cause) == (JobState.LOST, "released", cause)
    assert agent.poll(["agent:qingyang/nobody"])["agent:qingyang/nobody"].cause == AT_CENTER


def test_a_report_with_an_unknown_cause_is_refused(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(ValidationError, match="cause"):
        synced(sessions, [report("agent:qingyang/j", "lost", cause="lease ran out")])


def test_a_center_nobody_declared_an_agent_center_is_refused(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    with pytest.raises(NotAnAgentCenter), sessions.begin() as session:
        sync(session, "zhongwei", SyncRequest(version="x"), NOW)


# --------------------------------------------------------------------------- the route


def _token(sessions: sessionmaker[Session], center: str) -> str:
    with sessions.begin() as session:
        return issue_token(session, center, NOW)


def test_the_sync_route_acts_only_for_its_own_centers_agent(
    client: TestClient, agent: AgentExecutor, sessions: sessionmaker[Session]
) -> None:
    token, other = _token(sessions, CENTER), _token(sessions, "zhongwei")
    url = f"/v1/agents/{CENTER}/sync"
    good = {"Authorization": f"Bearer {token}", PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
    body = {"version": "1.0", "runs": []}
    numbers = itertools.count(1)

    def post(headers: dict[str, str], payload: Any = body, path: str = url) -> Any:
        if isinstance(payload, dict):  # each sync numbered above the last
            payload = {"seq": next(numbers), **payload}
        return client.post(path, json=payload, headers=headers)

    r = post({})
    assert r.status_code == 401 and "missing agent token" in r.json()["detail"]
    r = post({**good, "Authorization": "Bearer swa_wrong"})
    assert r.status_code == 401 and "invalid agent token" in r.json()["detail"]
    r = post({**good, "Authorization": f"Bearer {other}"})
    assert r.status_code == 403
    assert r.json()["detail"] == (
        "this is the agent token of center zhongwei: it cannot act for center qingyang"
    )
    r = post({**good, PROTOCOL_HEADER: "0"})
    assert r.status_code == 409 and "speaks protocol 0" in r.json()["detail"]
    assert "this control plane speaks protocols 1 and 2" in r.json()["detail"]
    r = post({k: v for k, v in good.items() if k != PROTOCOL_HEADER})
    assert r.status_code == 409 and "incompatible agent" in r.json()["detail"]
    r = post({**good, "Authorization": f"Bearer {other}"}, path="/v1/agents/zhongwei/sync")
    assert r.status_code == 409 and "not served through an agent" in r.json()["detail"]
    for bad in ({"runs": []}, {"version": "1", "runs": [{"ref": "x", "state": "dancing"}]},
                {"version": "1", "surprise": 1}, [1, 2]):  # fmt: skip
        r = post(good, bad)
        assert r.status_code == 422, r.text
    r = post(good)
    assert r.status_code == 200 and r.json()["lease_s"] == 5
    with pytest.raises(ExecutorError, match="sent no capacity"):
        agent.capacity()
    # a rotated token replaces the old one
    newer = _token(sessions, CENTER)
    assert post(good).status_code == 401
    assert post({**good, "Authorization": f"Bearer {newer}"}).status_code == 200


def test_a_sync_may_carry_more_than_the_apis_usual_body_limit(
    client: TestClient, agent: AgentExecutor, sessions: sessionmaker[Session]
) -> None:
    token = _token(sessions, CENTER)
    headers = {"Authorization": f"Bearer {token}", PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
    synced(sessions, [])
    ref = hand_over(agent, sub())
    big = "x" * (200 * 1024) + "\nend\n"
    body = {"version": "1", "seq": 1, "runs": [report(ref, "succeeded", exit_code=0, log_tail=big)]}
    r = client.post(f"/v1/agents/{CENTER}/sync", json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert agent.logs(ref).endswith("end\n")


# --------------------------------------------------------------------------- sync numbers


def _recorded(sessions: sessionmaker[Session]) -> tuple[int | None, str | None]:
    with sessions() as session:
        row = session.get_one(CenterAgent, CENTER)
        return row.applied_seq, row.agent_version


@pytest.mark.parametrize("late", [6, 7], ids=["lower", "equal"])
def test_a_sync_numbered_not_above_the_last_applied_is_refused_and_changes_nothing(
    agent: AgentExecutor, sessions: sessionmaker[Session], late: int
) -> None:
    """A replica that held a sync records it late, after a newer one through another replica:
    its body leaves out the run the agent started meanwhile, which it would record lost (the
    job placed again, run twice). Numbered, it is refused: nothing recorded."""
    synced(sessions, [], seq=5)
    ref = hand_over(agent, sub())
    assert [s.ref for s in synced(sessions, [], seq=6).start] == [ref]  # held at a replica
    synced(sessions, [report(ref, "running")], seq=7)  # the agent started it: through another
    with pytest.raises(StaleSync, match=f"stale sync: number {late} is not above 7") as err:
        synced(sessions, [], at=NOW + timedelta(seconds=9), version="late", seq=late)
    assert err.value.applied == 7
    assert agent.poll([ref])[ref].state is JobState.RUNNING  # not lost
    assert _recorded(sessions) == (7, "test")  # nothing of the late sync recorded
    assert synced(sessions, [report(ref, "running")], seq=8).start == []  # the next is applied
    assert _recorded(sessions) == (8, "test")


def test_a_sync_without_a_number_is_applied_as_before(
    agent: AgentExecutor, sessions: sessionmaker[Session]
) -> None:
    """An agent of protocol 1 numbers nothing: each sync is applied as it comes, before and
    after numbered ones (an agent downgraded), and leaves the last number as it was."""
    synced(sessions, [])
    assert _recorded(sessions) == (None, "test")
    ref = hand_over(agent, sub())
    synced(sessions, [report(ref, "running")], seq=3)
    synced(sessions, [], version="old")
    assert _recorded(sessions) == (3, "old")
    assert agent.poll([ref])[ref].state is JobState.LOST  # applied: what protocol 1 did


def test_the_stale_refusal_names_the_last_number_and_numbers_are_checked(
    client: TestClient, agent: AgentExecutor, sessions: sessionmaker[Session]
) -> None:
    headers = {"Authorization": f"Bearer {_token(sessions, CENTER)}"}
    v2 = {**headers, PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
    url = f"/v1/agents/{CENTER}/sync"
    assert client.post(url, json={"version": "2", "seq": 41}, headers=v2).status_code == 200
    ref = hand_over(agent, sub())
    r = client.post(url, json={"version": "2", "seq": 42, "runs": [report(ref, "running")]},
                    headers=v2)  # fmt: skip
    assert r.status_code == 200, r.text
    r = client.post(url, json={"version": "2", "seq": 40}, headers=v2)
    assert r.status_code == 409 and r.headers[APPLIED_HEADER] == "42"
    assert r.json()["detail"].startswith("stale sync: number 40 is not above 42, the last ")
    assert agent.poll([ref])[ref].state is JobState.RUNNING
    r = client.post(url, json={"version": "2"}, headers=v2)  # protocol 2 numbers every sync
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "seq"]
    assert "carries its number" in r.json()["detail"][0]["msg"]
    for bad in (0, -1, 2**63, "x", 1.5):
        r = client.post(url, json={"version": "2", "seq": bad}, headers=v2)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "seq"], bad
    v1 = {**headers, PROTOCOL_HEADER: "1"}  # an agent older than sync numbers
    r = client.post(url, json={"version": "1", "runs": [report(ref, "running")]}, headers=v1)
    assert r.status_code == 200 and r.json()["lease_s"] == 5
    assert _recorded(sessions) == (42, "1")


def test_0017_is_expand_only_for_replicas_of_0016(fresh_db_url: str) -> None:
    """``center_agents.applied_seq``: 0016's processes keep recording syncs as their models
    did (SQL naming every column but the new one: made, locked, updated, read) next to 0017's,
    which read null as no numbered sync yet, and keep 0017's number; going back to 0016 keeps
    every record. One head."""
    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1
    old = table(  # CenterAgent as 0016 maps it
        "center_agents",
        *(column(c.name, c.type) for c in CenterAgent.__table__.columns if c.key != "applied_seq"),
    )
    engine = make_engine(fresh_db_url)
    try:
        step(engine, "upgrade", "0016")
        with engine.begin() as conn:
            conn.execute(old.insert().values(center_id="before", created_at=NOW, lease_s=5.0))
        step(engine, "upgrade", "head")
        with engine.begin() as conn:  # a 0016 replica records a center and a sync
            conn.execute(old.insert().values(center_id="during", created_at=NOW, lease_s=5.0))
            conn.execute(old.update().values(agent_version="0016", last_seen=NOW))
        with session_factory(engine).begin() as s:
            rows = s.scalars(select(CenterAgent).order_by(CenterAgent.center_id)).all()
            assert [(r.center_id, r.applied_seq) for r in rows] == [
                ("before", None), ("during", None)
            ]  # fmt: skip
            rows[0].applied_seq = 2**62
        with engine.begin() as conn:  # a 0016 replica: its sync locks and reads the row
            locked = old.select().where(old.c.center_id == "before").with_for_update()
            assert conn.execute(locked).one().agent_version == "0016"
            conn.execute(old.update().values(every_s=2.0))
        with session_factory(engine)() as s:
            assert s.get_one(CenterAgent, "before").applied_seq == 2**62
        step(engine, "downgrade", "0016")
        with engine.connect() as conn:
            names = {c["name"] for c in inspect(conn).get_columns("center_agents")}
            assert "applied_seq" not in names
            assert conn.execute(select(func.count()).select_from(old)).scalar() == 2
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- the platform file


def test_the_platform_file_takes_agent_centers_with_their_lease(
    tmp_path: Path, sessions: sessionmaker[Session], client: TestClient
) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text(textwrap.dedent("""\
        scenario: china
        centers:
          - center_id: qingyang
            executor: {type: agent, lease_s: -3}
        """))  # fmt: skip
    with pytest.raises(ScenarioError) as err:
        load_platform_config(path)
    assert "platform.yaml:4: centers[0].executor.agent.lease_s" in str(err.value)
    path.write_text(path.read_text().replace("lease_s: -3", "lease_s: 20, grace_s: 5"))
    cfg = load_platform_config(path)
    assert cfg.centers[0].executor == AgentExecutorConfig(type="agent", lease_s=20, grace_s=5)
    scenario = load_scenario("china")
    with pytest.raises(ValueError, match="an agent center needs the platform's database"):
        configured_executors(cfg, scenario, tmp_path)
    (ex,) = configured_executors(cfg, scenario, tmp_path, sessions=sessions).values()
    # failover waits at least this long (lease + grace) before it gives the runs up
    assert isinstance(ex, AgentExecutor) and ex.stop_grace_s == 25


def test_an_agent_centers_declared_slots_size_it_until_its_agent_reports(
    tmp_path: Path, sessions: sessionmaker[Session], client: TestClient
) -> None:
    """Started before its agent ever synced, the engine plans an agent center with the slots
    of the platform file (not the scenario's figures, which may be more than it has); once the
    agent has reported, with what it reported. One of the two alone is refused, naming it."""
    path = tmp_path / "platform.yaml"
    path.write_text(textwrap.dedent("""\
        scenario: china
        centers:
          - center_id: qingyang
            executor: {type: agent, cpus: 16}
        """))  # fmt: skip
    with pytest.raises(ScenarioError) as err:
        load_platform_config(path)
    assert "platform.yaml:4: centers[0].executor.agent: " in str(err.value)
    assert "cpus and cards: give both" in str(err.value)
    path.write_text(path.read_text().replace("cpus: 16", "cpus: 16, cards: 3"))
    cfg = load_platform_config(path)
    scenario = load_scenario("china")
    executors = configured_executors(cfg, scenario, tmp_path, sessions=sessions)
    before = live_scenario(scenario, executors).center(CENTER)
    assert (
        (before.cpu_cores, before.cards)
        == (16, 3)
        != (
            scenario.center(CENTER).cpu_cores,
            scenario.center(CENTER).cards,
        )
    )
    synced(sessions, [])  # its agent reports 8 CPU slots and 2 card slots
    after = live_scenario(scenario, executors).center(CENTER)
    assert (after.cpu_cores, after.cards) == (8, 2)
