"""``suanwang jobs | cancel | logs`` against a real server (uvicorn in a thread on the test
database, SQLite and PostgreSQL): short job ids, and refusals as sentences or JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from suanwang.cli import app as cli
from suanwang.executors.local import LocalExecutor
from suanwang.scheduling.placement import amounts
from suanwang.server.database.models import JobRow
from suanwang.server.schemas import JobSpec
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.live import LiveNetwork

runner = CliRunner()
A1 = "abcd1234-0000-4000-8000-000000000001"
A2 = "abcd1299-0000-4000-8000-000000000002"


def run(live_url: str, who: Any, *args: str) -> Any:
    env = {"SUANWANG_URL": live_url, "SUANWANG_API_KEY": who.key}
    return runner.invoke(cli, list(args), env=env)


@pytest.fixture
def two_jobs(client: Any, alice: Any, sessions: sessionmaker[Session]) -> None:
    """alice's jobs A1 ("first", with some output) and A2 ("second") share the prefix abcd12."""
    with sessions.begin() as s:
        for job_id, name in [(A1, "first"), (A2, "second")]:
            body = {"name": name, "command": "true", "duration_s": 600, "origin": "beijing"}
            spec = JobSpec.model_validate(body).model_dump(mode="json")
            s.add(JobRow(id=job_id, tenant_id=alice.id, name=name, spec=spec))
        s.flush()
        s.execute(update(JobRow).where(JobRow.id == A1).values(logs="step 1\nstep 2\n"))


@pytest.mark.usefixtures("two_jobs")
def test_every_job_command_takes_a_short_id(live_url: str, alice: Any) -> None:
    shown = run(live_url, alice, "jobs", "abcd1234")
    assert shown.exit_code == 0, shown.output
    assert A1 in shown.stdout and "first" in shown.stdout and "second" not in shown.stdout
    assert json.loads(run(live_url, alice, "jobs", "ABCD123", "--json").stdout)["id"] == A1
    assert run(live_url, alice, "logs", "abcd123").stdout == "step 1\nstep 2\n"
    doc = json.loads(run(live_url, alice, "logs", "abcd123", "--json").stdout)
    assert doc == {"job_id": A1, "logs": "step 1\nstep 2\n"}  # named by its whole id
    cancelled = run(live_url, alice, "cancel", "abcd129")
    assert cancelled.exit_code == 0 and cancelled.stdout == f"{A2}: cancelled\n"


@pytest.mark.usefixtures("two_jobs")
def test_an_ambiguous_short_id_lists_the_candidates(live_url: str, alice: Any) -> None:
    for command in ("jobs", "cancel", "logs"):
        r = run(live_url, alice, command, "abcd12")
        assert r.exit_code == 2
        assert r.stdout == ""
        assert r.stderr.splitlines() == [
            "error: job id prefix 'abcd12' is ambiguous: 2 jobs match; give more characters",
            f"  {A1}  pending    first",
            f"  {A2}  pending    second",
        ]
    r = run(live_url, alice, "cancel", "abcd12", "--json")
    assert r.exit_code == 2 and r.stderr == ""
    error = json.loads(r.stdout)["error"]
    assert error["status"] == 409
    assert [c["id"] for c in error["detail"]["candidates"]] == [A1, A2]


@pytest.mark.usefixtures("two_jobs")
def test_an_unknown_or_too_short_id_says_so(live_url: str, alice: Any) -> None:
    for command in ("jobs", "cancel", "logs"):
        r = run(live_url, alice, command, "abce")
        assert (r.exit_code, r.stderr) == (2, "error: no job 'abce'\n")
        r = run(live_url, alice, command, "ab")
        assert r.stderr == "error: no job 'ab' (give at least 4 characters)\n"


@pytest.mark.usefixtures("two_jobs")
def test_a_refused_transition_is_a_sentence_or_json(live_url: str, alice: Any) -> None:
    assert run(live_url, alice, "cancel", A1).exit_code == 0
    again = run(live_url, alice, "cancel", A1)
    assert again.exit_code == 2 and again.stdout == ""
    assert again.stderr == (
        "error: job cannot go from cancelled to cancelled (allowed: none (terminal))\n"
    )
    as_json = run(live_url, alice, "cancel", A1, "--json")
    assert as_json.exit_code == 2 and as_json.stderr == ""
    assert json.loads(as_json.stdout) == {
        "error": {
            "status": 409,
            "message": "job cannot go from cancelled to cancelled (allowed: none (terminal))",
            "detail": {
                "msg": "job cannot go from cancelled to cancelled (allowed: none (terminal))",
                "state": "cancelled",
                "allowed": [],
            },
        }
    }


def test_a_refused_key_is_a_sentence_or_json(live_url: str, client: Any) -> None:
    env = {"SUANWANG_URL": live_url, "SUANWANG_API_KEY": "sw_not-a-key"}
    r = runner.invoke(cli, ["jobs"], env=env)
    assert (r.exit_code, r.stderr) == (
        2,
        f"error: the server at {live_url} refused the API key in SUANWANG_API_KEY\n",
    )
    r = runner.invoke(cli, ["centers", "--json"], env=env)
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["status"] == 401


def test_jobs_id_explains_the_placement_or_why_nothing_can_run(
    live_url: str, app: Any, alice: Any, sessions: sessionmaker[Session], tmp_path: Path,
    submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    net = app.state.network
    live = LiveNetwork(
        net=net, signals=app.state.signals.current, clock=app.state.signals.clock,
        executors={c: LocalExecutor(tmp_path, c, cpus=64, cards=16) for c in net.center_ids},
    )  # fmt: skip
    placed = submit(alice, name="train", command="true", data_gb=30)
    nowhere = submit(alice, name="nowhere", command="true", kind="inference", latency_ms=0.2,
                     resources={"count": 1, "cpus": 8})  # fmt: skip
    Dispatcher(sessions, live).place()
    shown = run(live_url, alice, "jobs", placed["id"][:8])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    decision = json.loads(run(live_url, alice, "jobs", placed["id"], "--json").stdout)["decision"]
    assert "placement: " + " ".join(decision["reason"].split()) in text
    for row in decision["runners_up"]:
        assert " ".join(row["lost"].split()) in text  # why each runner-up lost
    # the objective of the choice and of each runner-up, told apart
    rows = [decision["chosen"], *decision["runners_up"]]
    for value in amounts([r["objective_cny"] for r in rows]):
        assert f"objective {value} CNY" in text
    # and its state history, one event a line, as the console's job view shows it
    history = shown.stdout.split("history:\n", 1)[1].splitlines()
    assert [" ".join(x.split()[1:4]) for x in history] == ["- -> pending", "pending -> scheduled"]
    assert f"center: {decision['chosen']['center']}" in history[1]
    refused = run(live_url, alice, "jobs", nowhere["id"])
    assert refused.exit_code == 0
    assert "not placed: no center can run this job" in refused.stdout
    assert "excluded pools: " in refused.stdout and "latency" in refused.stdout
