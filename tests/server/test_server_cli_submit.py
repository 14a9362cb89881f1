"""``suanwang submit FILE`` against a real server: lists, retries, server errors placed in the file.

The API runs under uvicorn in a thread on the test database (SQLite and PostgreSQL); the CLI
talks to it over HTTP as it does in production.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from suanwang.cli import app as cli

runner = CliRunner()

JOBS = """\
- name: prepare
  command: "echo prepare"
  duration_s: 600
  origin: beijing
- name: train
  command: "python train.py"
  origin: {origin}
  duration_s: 7200
  resources: {{count: 8, cpus: 32}}
- name: evaluate
  command: "python eval.py"
  duration_s: 600
  origin: beijing
"""


def submit(live_url: str, who: Any, *args: str) -> Any:
    env = {"SUANWANG_URL": live_url, "SUANWANG_API_KEY": who.key if who else ""}
    return runner.invoke(cli, ["submit", *args], env=env)


def names(client: Any, who: Any) -> list[str]:
    items = client.get("/v1/jobs", headers=who.headers).json()["items"]
    return sorted(j["name"] for j in items)


def test_a_list_file_refused_midway_is_placed_in_the_file_and_retried_safely(
    live_url: str, client: Any, alice: Any, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(JOBS.format(origin="atlantis"), encoding="utf-8")
    first = submit(live_url, alice, str(path), "--idempotency-key", "run-7", "--json")
    assert first.exit_code == 2 and first.stderr == ""
    refused = json.loads(first.stdout)  # with --json, the error is one JSON document too
    assert refused["error"]["status"] == 422
    assert refused["error"]["message"] == (
        f"{path}: the server refused job 2 of 3 (1 job(s) before it submitted)"
    )
    (problem,) = refused["problems"]
    assert problem.startswith(f"{path}:7: [1].origin: ") and "atlantis" in problem
    assert refused["error"]["detail"][0]["loc"] == ["body", "origin"]
    done = refused["submitted"]
    assert [j["name"] for j in done] == ["prepare"]
    assert names(client, alice) == ["prepare"]  # evaluate was not sent

    path.write_text(JOBS.format(origin="beijing"), encoding="utf-8")
    again = submit(live_url, alice, str(path), "--idempotency-key", "run-7", "--json")
    assert again.exit_code == 0, again.output
    jobs = json.loads(again.stdout)
    assert [j["name"] for j in jobs] == ["prepare", "train", "evaluate"]
    assert jobs[0]["id"] == done[0]["id"]  # the same job, not a second one
    assert names(client, alice) == ["evaluate", "prepare", "train"]
    third = submit(live_url, alice, str(path), "--idempotency-key", "run-7", "--json")
    assert [j["id"] for j in json.loads(third.stdout)] == [j["id"] for j in jobs]
    assert len(names(client, alice)) == 3


def test_a_single_job_file(live_url: str, client: Any, alice: Any, tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("name: prepare\ncommand: 'echo hi'\nduration_s: 60\norigin: beijing\n")
    r = submit(live_url, alice, str(path))
    assert r.exit_code == 0, r.output
    (job,) = client.get("/v1/jobs", headers=alice.headers).json()["items"]
    assert r.stdout.strip() == f"submitted {job['id']} prepare (pending)"
    as_json = submit(live_url, alice, str(path), "--json")
    assert json.loads(as_json.stdout)["name"] == "prepare"  # one object, not a list

    path.write_text("name: p\ncommand: 'x'\nduration_s: 60\norigin: atlantis\n")
    bad = submit(live_url, alice, str(path))
    assert bad.exit_code == 2
    assert bad.stderr.splitlines()[0].startswith(f"{path}:4: origin: ")
    assert bad.stderr.splitlines()[-1] == f"error: {path}: the server refused the job"


def test_a_file_with_problems_sends_nothing(
    live_url: str, client: Any, alice: Any, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(JOBS.format(origin="beijing").replace("600", "-5", 1), encoding="utf-8")
    for who in (alice, None):  # checked before any request, even before the key is needed
        r = submit(live_url, who, str(path))
        assert r.exit_code == 2
        assert r.stderr.splitlines() == [
            f"{path}:3: [0].duration_s: Input should be greater than 0 (got -5)",
            f"error: {path} has 1 problem(s); nothing submitted",
        ]
    assert names(client, alice) == []
