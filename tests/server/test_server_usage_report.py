"""Tokens a job reports in ``$SUANWANG_USAGE_FILE`` end up on the event that ends its run.

The contract billing reads: ``detail["usage"] == {"tokens": N}`` on the event whose
``to_state`` ends the run (succeeded, failed, cancelled, migrating, lost), with
``detail["usage_problems"]`` when the file had bad lines. Real processes on local executors, on
SQLite and PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.core.lifecycle import JobState
from suanwang.executors.base import ExecutorError, ExecutorStatus, RunUsage
from suanwang.executors.local import LocalExecutor
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.server.database.models import JobRow, UsageRecord
from suanwang.server.models.billing.settle import unbilled
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.live import LiveNetwork
from suanwang.server.services.reconciler import Reconciler

CENTERS = ("zhangjiakou", "zhongwei", "horinger")
ENDS = {"succeeded", "failed", "cancelled", "migrating", "lost"}


def tokens(n: int | str) -> str:
    """A shell command appending one usage line (``n`` as written into the JSON)."""
    return f"""echo '{{"tokens": {n}}}' >> "$SUANWANG_USAGE_FILE"; """


@pytest.fixture
def live(app: FastAPI, tmp_path: Path) -> LiveNetwork:
    return LiveNetwork(
        net=app.state.network,
        signals=app.state.signals.current,
        executors={c: LocalExecutor(tmp_path / "centers", c, cpus=64, cards=16) for c in CENTERS},
        clock=app.state.signals.clock,
        checkpoint_root=tmp_path / "checkpoints",
    )


@pytest.fixture
def rounds(sessions: sessionmaker[Session], live: LiveNetwork) -> Callable[[], None]:
    dispatcher = Dispatcher(sessions, live, policy=SuanwangPolicy(max_defer_h=0))
    reconciler = Reconciler(sessions, live)

    def run() -> None:
        dispatcher.run_once()
        reconciler.run_once()

    return run


def until(
    rounds: Callable[[], None],
    client: TestClient,
    who: Any,
    job_id: str,
    states: set[str],
    timeout: float = 20,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        rounds()
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=who.headers).json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']}"
        time.sleep(0.1)


def reporting(
    rounds: Callable[[], None], client: TestClient, sessions: sessionmaker[Session],
    live: LiveNetwork, who: Any, job_id: str, tokens: int,
) -> tuple[str, str, LocalExecutor]:  # fmt: skip
    """Wait until the job runs and its run has reported ``tokens``: (center, ref, executor)."""
    center = until(rounds, client, who, job_id, {"running"})["center_id"]
    ex = live.executors[center]
    assert isinstance(ex, LocalExecutor)
    with sessions() as s:
        ref = s.get_one(JobRow, job_id).executor_ref
    assert ref is not None
    deadline = time.monotonic() + 10
    while ex.reported_usage(ref).tokens != tokens:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return center, ref, ex


def events(client: TestClient, who: Any, job_id: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = client.get(f"/v1/jobs/{job_id}/events", headers=who.headers).json()
    return got


def test_the_event_that_ends_a_run_carries_the_tokens_it_reported(
    client: TestClient, rounds: Callable[[], None], alice: Any, submit: Callable[..., Any]
) -> None:
    served = submit(alice, name="llm", kind="inference", duration_s=60,
                    command=tokens(300) + tokens(300) + "echo served")  # fmt: skip
    silent = submit(alice, name="quiet", kind="inference", duration_s=60, command="true")
    assert until(rounds, client, alice, served["id"], {"succeeded"})["exit_code"] == 0
    until(rounds, client, alice, silent["id"], {"succeeded"})

    history = events(client, alice, served["id"])
    assert history[-1]["to_state"] == "succeeded"
    assert history[-1]["detail"]["usage"] == {"tokens": 600}
    assert "usage_problems" not in history[-1]["detail"]
    assert all("usage" not in e["detail"] for e in history[:-1])  # only on the run's end
    assert all("usage" not in e["detail"] for e in events(client, alice, silent["id"]))


def test_bad_usage_lines_are_recorded_as_problems_and_the_good_ones_count(
    client: TestClient,
    rounds: Callable[[], None],
    alice: Any,
    submit: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    command = tokens(100) + tokens(-5) + "echo 'tokens: 9' >> \"$SUANWANG_USAGE_FILE\"; exit 2"
    job = submit(alice, name="sloppy", kind="inference", duration_s=60, command=command)
    with caplog.at_level(logging.WARNING, logger="suanwang.failover"):
        assert until(rounds, client, alice, job["id"], {"failed"})["exit_code"] == 2
    end = events(client, alice, job["id"])[-1]
    assert end["to_state"] == "failed"
    assert end["detail"]["usage"] == {"tokens": 100}
    problems = end["detail"]["usage_problems"]
    assert problems[0] == (
        'usage line 2: "tokens" must be a whole number >= 0 and below 10**12, not -5'
    )
    assert problems[1].startswith("usage line 3: not JSON: ")
    assert len(problems) == 2
    assert any(job["id"] in r.getMessage() and "usage" in r.getMessage() for r in caplog.records)


def test_each_run_reports_its_own_tokens_across_a_migration(
    client: TestClient,
    sessions: sessionmaker[Session],
    live: LiveNetwork,
    rounds: Callable[[], None],
    alice: Any,
    submit: Callable[..., Any],
) -> None:
    command = (
        f'if [ -n "$SUANWANG_RESUME_FROM" ]; then {tokens(5)} exit 0; fi; '
        """trap 'echo 1 > "$SUANWANG_CHECKPOINT_DIR/step"; exit 85' USR1; """
        + tokens(7)
        + "echo ready; while :; do sleep 0.05; done"
    )
    job = submit(alice, name="batch", kind="inference", duration_s=60, command=command,
                 checkpointable=True)  # fmt: skip
    got = until(rounds, client, alice, job["id"], {"running"})
    ex = live.executors[got["center_id"]]
    with sessions() as s:
        ref = s.get_one(JobRow, job["id"]).executor_ref
    assert ref is not None
    deadline = time.monotonic() + 10
    while "ready" not in ex.logs(ref):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ex.checkpoint(ref) is not None
    until(rounds, client, alice, job["id"], {"succeeded"})
    ends = [e for e in events(client, alice, job["id"]) if e["to_state"] in ENDS]
    assert [(e["to_state"], e["detail"].get("usage")) for e in ends] == [
        ("migrating", {"tokens": 7}),  # the first run
        ("succeeded", {"tokens": 5}),  # the resumed run, in a run directory of its own
    ]


def test_a_run_given_up_on_records_what_it_reported_on_its_lost_event(
    client: TestClient,
    sessions: sessionmaker[Session],
    live: LiveNetwork,
    rounds: Callable[[], None],
    alice: Any,
    submit: Callable[..., Any],
) -> None:
    job = submit(alice, name="stuck", kind="inference", duration_s=60,
                 command=tokens(40) + "echo ready; sleep 30")  # fmt: skip
    center, ref, ex = reporting(rounds, client, sessions, live, alice, job["id"], 40)
    try:
        lost = ExecutorStatus(ref, JobState.LOST, reason="slurm NODE_FAIL")
        with sessions.begin() as s:
            assert Reconciler(sessions, live).apply(s, s.get_one(JobRow, job["id"]), lost, center)
    finally:
        ex.cancel(ref)
    history = events(client, alice, job["id"])
    assert [e["to_state"] for e in history[-2:]] == ["lost", "pending"]
    assert history[-2]["detail"]["usage"] == {"tokens": 40}
    assert "usage" not in history[-1]["detail"]


def test_an_executor_that_cannot_say_records_the_end_without_usage(
    client: TestClient,
    live: LiveNetwork,
    rounds: Callable[[], None],
    alice: Any,
    submit: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unreachable(self: LocalExecutor, ref: str) -> RunUsage:
        raise ExecutorError(self.name, "storage unreachable")

    monkeypatch.setattr(LocalExecutor, "reported_usage", unreachable)
    job = submit(alice, name="llm", kind="inference", duration_s=60, command=tokens(300))
    until(rounds, client, alice, job["id"], {"succeeded"})
    end = events(client, alice, job["id"])[-1]
    assert end["to_state"] == "succeeded" and "usage" not in end["detail"]


def test_a_cancelled_run_reports_its_tokens_once_it_has_stopped_and_is_then_charged(
    client: TestClient,
    sessions: sessionmaker[Session],
    live: LiveNetwork,
    rounds: Callable[[], None],
    alice: Any,
    submit: Callable[..., Any],
) -> None:
    job = submit(alice, name="serving", kind="inference", duration_s=600,
                 command=tokens(250) + "echo ready; sleep 30")  # fmt: skip
    _, ref, _ = reporting(rounds, client, sessions, live, alice, job["id"], 250)
    r = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert r.status_code in (200, 202), r.text
    with sessions() as s:  # cancelled, but its run has not been seen to stop: not charged yet
        assert job["id"] not in unbilled(session=s, now=live.clock())
    deadline = time.monotonic() + 20
    while True:
        rounds()
        with sessions() as s:
            if s.get_one(JobRow, job["id"]).executor_ref is None:
                break
        assert time.monotonic() < deadline, "the cancelled run was never seen to stop"
        time.sleep(0.1)
    stopped = events(client, alice, job["id"])[-1]
    assert (stopped["from_state"], stopped["to_state"]) == ("cancelled", "cancelled")
    assert stopped["detail"]["event"] == "run_stopped" and stopped["detail"]["ref"] == ref
    assert stopped["detail"]["usage"] == {"tokens": 250}
    # charged in the same round, with the tokens of the run it cancelled
    with sessions() as s:
        [rec] = s.scalars(select(UsageRecord).where(UsageRecord.job_id == job["id"]))
        assert s.get_one(JobRow, job["id"]).billed_at is not None
    assert rec.end_state == "cancelled" and rec.tokens == 250
