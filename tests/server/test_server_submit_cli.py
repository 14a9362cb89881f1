"""``suanwang submit FILE`` against a real server: lists, retries, server errors placed in the file.

The API runs under uvicorn in a thread on the test database (SQLite and PostgreSQL); the CLI
talks to it over HTTP as it does in production.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

from suanwang.cli_platform import register

cli = typer.Typer()
register(cli)
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


@pytest.fixture(scope="module")
def url(app: FastAPI) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)


def submit(url: str, who: Any, *args: str) -> Any:
    env = {"SUANWANG_URL": url, "SUANWANG_API_KEY": who.key if who else ""}
    return runner.invoke(cli, ["submit", *args], env=env)


def names(client: Any, who: Any) -> list[str]:
    items = client.get("/v1/jobs", headers=who.headers).json()["items"]
    return sorted(j["name"] for j in items)


def test_a_list_file_refused_midway_is_placed_in_the_file_and_retried_safely(
    url: str, client: Any, alice: Any, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(JOBS.format(origin="atlantis"), encoding="utf-8")
    first = submit(url, alice, str(path), "--idempotency-key", "run-7", "--json")
    assert first.exit_code == 2
    lines = first.stderr.splitlines()
    assert lines[0].startswith(f"{path}:7: [1].origin: ") and "atlantis" in lines[0]
    assert lines[-1] == (
        f"error: {path}: the server refused job 2 of 3 (1 job(s) before it submitted)"
    )
    done = json.loads(first.stdout)
    assert [j["name"] for j in done] == ["prepare"]
    assert names(client, alice) == ["prepare"]  # evaluate was not sent

    path.write_text(JOBS.format(origin="beijing"), encoding="utf-8")
    again = submit(url, alice, str(path), "--idempotency-key", "run-7", "--json")
    assert again.exit_code == 0, again.output
    jobs = json.loads(again.stdout)
    assert [j["name"] for j in jobs] == ["prepare", "train", "evaluate"]
    assert jobs[0]["id"] == done[0]["id"]  # the same job, not a second one
    assert names(client, alice) == ["evaluate", "prepare", "train"]
    third = submit(url, alice, str(path), "--idempotency-key", "run-7", "--json")
    assert [j["id"] for j in json.loads(third.stdout)] == [j["id"] for j in jobs]
    assert len(names(client, alice)) == 3


def test_a_single_job_file(url: str, client: Any, alice: Any, tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("name: prepare\ncommand: 'echo hi'\nduration_s: 60\norigin: beijing\n")
    r = submit(url, alice, str(path))
    assert r.exit_code == 0, r.output
    (job,) = client.get("/v1/jobs", headers=alice.headers).json()["items"]
    assert r.stdout.strip() == f"submitted {job['id']} prepare (pending)"
    as_json = submit(url, alice, str(path), "--json")
    assert json.loads(as_json.stdout)["name"] == "prepare"  # one object, not a list

    path.write_text("name: p\ncommand: 'x'\nduration_s: 60\norigin: atlantis\n")
    bad = submit(url, alice, str(path))
    assert bad.exit_code == 2
    assert bad.stderr.splitlines()[0].startswith(f"{path}:4: origin: ")
    assert bad.stderr.splitlines()[-1] == f"error: {path}: the server refused the job"


def test_a_file_with_problems_sends_nothing(
    url: str, client: Any, alice: Any, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(JOBS.format(origin="beijing").replace("600", "-5", 1), encoding="utf-8")
    for who in (alice, None):  # checked before any request, even before the key is needed
        r = submit(url, who, str(path))
        assert r.exit_code == 2
        assert r.stderr.splitlines() == [
            f"{path}:3: [0].duration_s: Input should be greater than 0 (got -5)",
            f"error: {path} has 1 problem(s); nothing submitted",
        ]
    assert names(client, alice) == []
