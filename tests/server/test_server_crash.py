"""The platform as users run it: `suanwang serve` in a process, the CLI client, kill -9.

Every job answered with 201 ends exactly once, even when the server is killed while jobs are
pending and running and then restarted on the same database and executor directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import free_port, wait_healthy

SUANWANG = [sys.executable, "-m", "suanwang.cli"]


class Platform:
    def __init__(self, db: str, root: Path) -> None:
        self.db, self.root = db, root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "serve.log"
        self.extra: list[str] = []

    def start(self) -> None:
        cmd = [*SUANWANG, "serve", "--db", self.db, "--port", str(self.port),
               "--executors-dir", str(self.root / "centers"),
               "--center", "zhongwei", "--center", "horinger", *self.extra]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_healthy(self.url, self.proc, self.log.read_text)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cli(self, *args: str, key: str = "") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SUANWANG_URL": self.url, "SUANWANG_API_KEY": key}
        return subprocess.run([*SUANWANG, *args], capture_output=True, text=True, env=env)


@pytest.fixture
def platform(fresh_db_url: str, tmp_path: Path) -> Iterator[Platform]:
    p = Platform(fresh_db_url, tmp_path)
    yield p
    p.stop()


def _key(p: Platform) -> str:
    r = p.cli("tenants", "create", "acme", "--db", p.db, "--json")
    assert r.returncode == 0, r.stderr
    key: str = json.loads(r.stdout)["api_key"]
    return key


def _job_file(path: Path, name: str, command: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "name": name,
                "command": command,
                "resources": {"count": 1, "cpus": 2},
                "duration_s": 600,
                # may not wait: `serve` plans on real signals at the real hour, where a
                # deferrable kind is rightly deferred to a cheaper window at some hours
                "kind": "interactive",
                "origin": "ningxia",
                "stacks": ["cuda"],
            }
        )
    )
    return path


def _states(p: Platform, key: str) -> dict[str, str]:
    r = p.cli("jobs", "--json", key=key)
    assert r.returncode == 0, r.stderr
    return {j["id"]: j["state"] for j in json.loads(r.stdout)["items"]}


def test_cli_round_trip(platform: Platform, tmp_path: Path) -> None:
    platform.start()
    key = _key(platform)
    job = _job_file(tmp_path / "j.yaml", "hello", "echo hello-$SUANWANG_JOB_ID")
    r = platform.cli("submit", str(job), "--json", key=key)
    assert r.returncode == 0, r.stderr
    jid = json.loads(r.stdout)["id"]
    deadline = time.monotonic() + 30
    while _states(platform, key)[jid] != "succeeded":
        assert time.monotonic() < deadline, _states(platform, key)
        time.sleep(0.3)
    r = platform.cli("logs", jid, key=key)
    assert f"hello-{jid}" in r.stdout
    r = platform.cli("jobs", jid, key=key)
    assert "placement:" in r.stdout and "runner-up" in r.stdout
    # clear one-line errors
    bad = platform.cli("jobs", key="sw_wrong")
    assert bad.returncode == 2 and "refused the API key" in bad.stderr
    missing = platform.cli("submit", str(tmp_path / "nope.yaml"), key=key)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    (tmp_path / "bad.yaml").write_text(
        "name: x\ncommand: 'true'\nduration_s: 5\norigin: atlantis\n"
    )
    r = platform.cli("submit", str(tmp_path / "bad.yaml"), key=key)
    assert r.returncode == 2 and "atlantis" in r.stderr
    assert "Traceback" not in r.stderr


def test_kill_9_while_jobs_pending_and_running_then_restart(
    platform: Platform, tmp_path: Path
) -> None:
    platform.start()
    key = _key(platform)
    ids = []
    for i in range(8):
        cmd = f"sleep {1 + i % 3}; echo {i} >> marks"  # in the run's own directory
        r = platform.cli("submit", str(_job_file(tmp_path / f"j{i}.yaml", f"j{i}", cmd)),
                         "--json", key=key)  # fmt: skip
        assert r.returncode == 0, r.stderr
        ids.append(json.loads(r.stdout)["id"])
    # wait until some run (a short one may end between two looks: a loaded machine takes
    # seconds per CLI call), then kill the server without any chance to clean up
    deadline = time.monotonic() + 60
    while not {"running", "succeeded"} & set((states := _states(platform, key)).values()):
        assert time.monotonic() < deadline, states
        time.sleep(0.1)
    platform.kill9()
    platform.start()
    deadline = time.monotonic() + 60
    while True:
        states = _states(platform, key)
        if all(states[i] == "succeeded" for i in ids):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.3)
    for i in ids:  # every run of the job (a run id is the job id, or it and an attempt)
        runs = (tmp_path / "centers").glob(f"*/{i}*/work/marks")
        lines = [line for run in runs for line in run.read_text().splitlines()]
        assert len(lines) == 1, f"job {i} ran {len(lines)} times"


def test_api_and_worker_as_separate_processes(platform: Platform, tmp_path: Path) -> None:
    """`serve --no-services` and `suanwang worker`: the services run in a process of their own
    (started after serve, which migrates the database)."""
    platform.extra = ["--no-services"]
    platform.start()
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [*SUANWANG, "worker", "--db", platform.db, "--executors-dir",
         str(platform.root / "centers"), "--center", "zhongwei", "--center", "horinger"],
        stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        key = _key(platform)
        job = _job_file(tmp_path / "w.yaml", "split", "echo split-ok")
        jid = json.loads(platform.cli("submit", str(job), "--json", key=key).stdout)["id"]
        deadline = time.monotonic() + 60
        while _states(platform, key)[jid] != "succeeded":
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.3)
        assert "split-ok" in platform.cli("logs", jid, key=key).stdout
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)
        log.close()
    lines = [json.loads(x) for x in (tmp_path / "worker.log").read_text().splitlines() if x]
    assert any(rec["logger"] == "suanwang.dispatcher" for rec in lines)
    assert all({"time", "level", "logger", "message"} <= set(rec) for rec in lines)
