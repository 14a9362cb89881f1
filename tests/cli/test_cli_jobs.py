"""The client commands without a server: the job file is checked first; errors are one
sentence, or one JSON document with --json."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanwang.cli import app

runner = CliRunner()


def test_submit_checks_the_job_file_before_anything_is_sent(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: finetune\ncommand: 'python ft.py'\nresources:\n  count: four\n"
        "duration_s: 7200\norigin: shanghai\nkindd: finetune\n",
        encoding="utf-8",
    )
    # no server and no key: the file's problems come first, each with its line
    result = runner.invoke(app, ["submit", str(job)], env={"SUANWANG_API_KEY": ""})
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{job}:4: resources.count: Input should be a valid integer (got 'four')",
        f"{job}:7: kindd: unknown field (did you mean 'kind'?)",
        f"error: {job} has 2 problem(s); nothing submitted",
    ]
    missing = runner.invoke(app, ["submit", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00name")
    r = runner.invoke(app, ["submit", str(binary)])
    assert r.exit_code == 2 and "not UTF-8 text" in r.stderr and "Traceback" not in r.output


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


@pytest.mark.parametrize("args", [["jobs"], ["cancel", "abcd"], ["logs", "abcd"], ["centers"],
                                  ["offers", "list"], ["reservations", "list"]])  # fmt: skip
def test_a_client_failure_is_one_sentence_or_one_json_document(args: list[str]) -> None:
    no_key = runner.invoke(app, args, env={"SUANWANG_API_KEY": ""})
    assert no_key.exit_code == 2 and no_key.stdout == ""
    assert no_key.stderr == (
        "error: set SUANWANG_API_KEY to your API key (see: suanwang tenants create)\n"
    )
    url = f"http://127.0.0.1:{_closed_port()}"
    env = {"SUANWANG_API_KEY": "sw_x", "SUANWANG_URL": url}
    down = runner.invoke(app, args, env=env)
    assert down.exit_code == 2
    assert down.stderr.startswith(f"error: cannot reach the server at {url} (")
    as_json = runner.invoke(app, [*args, "--json"], env=env)
    assert as_json.exit_code == 2 and as_json.stderr == ""
    error = json.loads(as_json.stdout)["error"]
    assert error["status"] is None and error["detail"] is None
    assert error["message"].startswith(f"cannot reach the server at {url} (")
