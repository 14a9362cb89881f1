"""Center agents end to end: `suanwang serve` with an agent center, real `suanwang agent`
processes running the center's jobs with a local executor (docs/centers.md, "Agents").

Jobs submitted through the API succeed and fail with their exit codes and logs; a token of
another center is refused; an agent killed mid-run and restarted reconciles its run instead of
running it again; an agent stopped past its lease has its job failed over by the control plane
and stops the run itself when it comes back: each job's marker holds its id exactly once; an
agent given two API replicas whose replica in use is killed goes on through the other, its run
never fenced.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path

import pytest
from agent_platform import AGENT_CENTER, LOCAL_CENTER, Platform, running


@pytest.fixture
def platform(fresh_db_url: str, tmp_path: Path) -> Iterator[Platform]:
    yield from running(fresh_db_url, tmp_path, lease_s=10, grace_s=2)


def test_jobs_run_through_an_agent_with_their_exit_codes_and_logs(platform: Platform) -> None:
    p = platform
    # a token of another center is refused, clearly, and the agent ends
    wrong = p.agent(center=LOCAL_CENTER, token=AGENT_CENTER)
    assert wrong.proc.wait(60) == 2
    text = wrong.log.read_text()
    assert "this is the agent token of center zhongwei: it cannot act for center horinger" in text
    assert "Traceback" not in text
    agent = p.connected_agent()
    usage = 'echo \'{"tokens": 7}\' >> "$SUANWANG_USAGE_FILE"'
    good = p.submit("hello", f"echo hello-$SUANWANG_JOB_ID; {usage}")
    bad = p.submit("oops", "echo about to fail >&2; exit 3")
    done = {j: p.wait(lambda j=j: p.ended(j), 60, f"job {j}") for j in (good, bad)}
    assert done[good]["state"] == "succeeded" and done[good]["exit_code"] == 0
    assert done[bad]["state"] == "failed" and done[bad]["exit_code"] == 3
    assert {done[good]["center_id"], done[bad]["center_id"]} == {AGENT_CENTER}
    assert f"hello-{good}" in p.api("GET", f"/v1/jobs/{good}/logs")
    assert "about to fail" in p.api("GET", f"/v1/jobs/{bad}/logs")
    ends = [e for e in p.api("GET", f"/v1/jobs/{good}/events") if e["to_state"] == "succeeded"]
    assert ends[0]["detail"]["usage"] == {"tokens": 7}  # what the run reported it served
    assert agent.proc.poll() is None


def test_an_agent_killed_mid_run_and_restarted_reconciles_its_run(
    platform: Platform, tmp_path: Path
) -> None:
    p = platform
    marker = tmp_path / "marker"
    agent = p.connected_agent()
    job = p.submit("slow", f"echo $SUANWANG_JOB_ID >> {marker}; sleep 4; echo finished")
    p.wait(lambda: marker.exists() and marker.read_text(), 60, "the run to start")
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait()
    again = p.agent()
    again.wait_for("connected to the control plane")
    ended = p.wait(lambda: p.ended(job), 60, "the job to end")
    assert ended["state"] == "succeeded", ended
    assert marker.read_text().splitlines() == [job]  # ran once
    assert "finished" in p.api("GET", f"/v1/jobs/{job}/logs")
    runs = list((tmp_path / "agent-work" / "runs" / AGENT_CENTER).glob(f"{job}*"))
    assert [r.name for r in runs] == [job]


@pytest.fixture
def short_lease(fresh_db_url: str, tmp_path: Path) -> Iterator[Platform]:
    yield from running(fresh_db_url, tmp_path, lease_s=3, grace_s=2)


def test_an_agent_stopped_past_its_lease_is_failed_over_and_fences_itself(
    short_lease: Platform, tmp_path: Path
) -> None:
    p = short_lease
    markers = tmp_path / "markers"
    agent = p.connected_agent()
    started = tmp_path / "started"
    jobs = [
        p.submit(
            f"long-{i}",
            f"echo $SUANWANG_JOB_ID >> {started}; sleep 20; echo $SUANWANG_JOB_ID >> {markers}",
        )
        for i in range(2)
    ]
    p.wait(lambda: started.exists() and len(started.read_text().splitlines()) == 2, 60, "runs")
    assert {p.job(j)["center_id"] for j in jobs} == {AGENT_CENTER}
    p.api("POST", f"/v1/centers/{LOCAL_CENTER}/undrain", key=p.operator)
    agent.proc.send_signal(signal.SIGSTOP)  # past its lease: the control plane moves on

    def moved() -> bool:
        return all(p.job(j)["center_id"] == LOCAL_CENTER for j in jobs)

    p.wait(moved, 60, "the jobs to fail over")
    for job in jobs:  # the runs stopped themselves when their lease ran out, agent or not
        stopped = tmp_path / "agent-work" / "runs" / AGENT_CENTER / job / "fenced"
        p.wait(stopped.exists, 10, f"{job}'s run at {AGENT_CENTER} to stop itself")
    agent.proc.send_signal(signal.SIGCONT)
    agent.wait_for("fenced 2 runs")
    agent.wait_for("connected to the control plane", timeout=30)
    ended = [p.wait(lambda j=j: p.ended(j), 90, f"job {j}") for j in jobs]
    assert [e["state"] for e in ended] == ["succeeded", "succeeded"]
    assert sorted(markers.read_text().splitlines()) == sorted(jobs)  # each exactly once
    for job in jobs:
        events = p.api("GET", f"/v1/jobs/{job}/events")
        (lost,) = [e for e in events if e["to_state"] == "lost"]
        assert "unreachable" in lost["detail"]["reason"], lost
        # its run at the agent's center had stopped itself before the job was given up
        fenced = tmp_path / "agent-work" / "runs" / AGENT_CENTER / job / "fenced"
        stopped_at = datetime.fromisoformat(fenced.read_text().strip())
        assert stopped_at < datetime.fromisoformat(lost["at"]), (stopped_at, lost["at"])


def test_a_checkpoint_moves_through_the_control_plane_from_an_agent_center(
    platform: Platform, tmp_path: Path
) -> None:
    p = platform
    markers = tmp_path / "markers"
    agent = p.connected_agent()
    command = (
        'if [ -n "$SUANWANG_RESUME_FROM" ]; then '
        'echo "resumed at step $(cat "$SUANWANG_RESUME_FROM/step")"; '
        f"echo $SUANWANG_JOB_ID >> {markers}; exit 0; fi; "
        """trap 'echo 7 > "$SUANWANG_CHECKPOINT_DIR/step"; exit 85' USR1; """
        "echo ready; while :; do sleep 0.1; done"
    )
    job = p.submit("movable", command, checkpointable=True)
    p.wait(lambda: "ready" in p.api("GET", f"/v1/jobs/{job}/logs"), 60, "the run's log")
    assert p.job(job)["center_id"] == AGENT_CENTER
    p.api("POST", f"/v1/centers/{LOCAL_CENTER}/undrain", key=p.operator)
    p.api("POST", f"/v1/centers/{AGENT_CENTER}/drain", key=p.operator)  # its jobs move
    ended = p.wait(lambda: p.ended(job), 90, "the job to move and end")
    assert (ended["state"], ended["center_id"]) == ("succeeded", LOCAL_CENTER)
    assert "resumed at step 7" in p.api("GET", f"/v1/jobs/{job}/logs")
    events = p.api("GET", f"/v1/jobs/{job}/events")
    moves = [e for e in events if e["to_state"] == "migrating"]
    assert moves and moves[0]["detail"]["center"] == AGENT_CENTER, events
    assert any(e["detail"].get("event") == "checkpoint_requested" for e in events), events
    assert markers.read_text().splitlines() == [job]
    assert agent.proc.poll() is None


@pytest.fixture
def on_postgresql(
    pg_schema: Callable[..., AbstractContextManager[str]], tmp_path: Path
) -> Iterator[Platform]:
    with pg_schema() as db:  # API replicas share one database: PostgreSQL
        yield from running(db, tmp_path, lease_s=3, grace_s=2)


def test_an_agent_whose_replica_is_killed_goes_on_through_another_and_fences_nothing(
    on_postgresql: Platform, tmp_path: Path
) -> None:
    p = on_postgresql
    other, replica = p.replica()  # serve --no-services: the API only
    agent = p.connected_agent(urls=(other, p.url))
    agent.wait_for(f"connected to the control plane at {other}")
    marker = tmp_path / "marker"
    job = p.submit("slow", f"echo $SUANWANG_JOB_ID >> {marker}; sleep 5; echo finished")
    p.wait(lambda: marker.exists() and marker.read_text(), 60, "the run to start")
    replica.kill()  # far longer than the lease (3 s) before it would be back
    replica.wait()
    agent.wait_for(f"moved to the control plane at {p.url}")
    ended = p.wait(lambda: p.ended(job), 60, "the job to end")
    assert ended["state"] == "succeeded", ended
    assert marker.read_text().splitlines() == [job]  # ran once, where it started
    assert "fenced" not in agent.log.read_text() and agent.proc.poll() is None
