"""`suanwang demo` end to end: the platform, its jobs, and the commands it tells you to run."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from typer.testing import CliRunner

from suanwang.cli import app
from suanwang.cli.demo import DEMO_JOBS


def test_demo_runs_the_platform_and_its_jobs(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run(
        [sys.executable, "-m", "suanwang.cli", "demo", "--dir", str(tmp_path), "--port",
         str(port), "--exit-after", "25"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"http://127.0.0.1:{port}" in r.stdout
    assert "API key (operator): sw_" in r.stdout
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith("stopped; jobs: "), r.stdout
    counts = {
        state: int(n)
        for n, state in (
            part.split() for part in lines[-1].removeprefix("stopped; jobs: ").split(", ")
        )
    }
    # every job ended as expected, except those the engine deferred to a cheaper/greener hour
    # (which ones depends on the hour the test runs): those are named with their start
    deferred = [x for x in lines if " — deferred " in x]
    assert set(counts) <= {"failed", "succeeded", "scheduled"}, r.stdout
    assert counts["failed"] == 1, r.stdout
    assert counts["succeeded"] + counts.get("scheduled", 0) == 8, r.stdout
    assert len(deferred) == counts.get("scheduled", 0), r.stdout
    kinds = {j["name"]: j["kind"] for j in DEMO_JOBS}
    for line in deferred:
        name = line.strip().split(":")[0]
        assert kinds[name] not in ("inference", "interactive"), line
        assert "h to a cheaper/greener window" in line
    # the inference job reported the tokens it served; they were metered with its run
    with closing(sqlite3.connect(tmp_path / "demo.db")) as db:
        served = db.execute(
            "SELECT u.tokens FROM usage_records u JOIN jobs j ON j.id = u.job_id "
            "WHERE j.name = 'chatbot-inference'"
        ).fetchall()
    assert served == [(3 * 4096,)]
    # the demo names its database, and the invoice command it suggests reads it from there
    db_url = f"sqlite:///{tmp_path.resolve() / 'demo.db'}"
    assert f"database: {db_url}" in lines, r.stdout
    export = next(x for x in lines if x.strip().startswith("export SUANWANG_URL="))
    env = dict(item.split("=", 1) for item in export.split()[1:])
    assert env["SUANWANG_DB"] == db_url and env["SUANWANG_URL"] == f"http://127.0.0.1:{port}"
    invoice = next(x for x in lines if x.strip().startswith("suanwang billing invoice "))
    args = [*invoice.split()[1:], "--json"]
    result = CliRunner().invoke(app, args, env={"SUANWANG_DB": env["SUANWANG_DB"]})
    assert result.exit_code == 0, result.output
    invoiced = json.loads(result.stdout)
    assert invoiced["tenant"].startswith("demo-")
    assert len(invoiced["lines"]) == counts["succeeded"] + counts["failed"]  # every ended job
