"""Center agents end to end: `suanwang serve` with an agent center, real `suanwang agent`
processes running the center's jobs with a local executor (docs/centers.md, "Agents").

Jobs submitted through the API succeed and fail with their exit codes and logs; a token of
another center is refused; an agent killed mid-run and restarted reconciles its run instead of
running it again; an agent stopped past its lease has its job failed over by the control plane
and stops the run itself when it comes back: each job's marker holds its id exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from processes import free_port, wait_healthy

SUANWANG = [sys.executable, "-m", "suanwang.cli"]
AGENT_CENTER, LOCAL_CENTER = "zhongwei", "horinger"


class Platform:
    """`suanwang serve` with ``zhongwei`` served by an agent (and ``horinger`` by a local
    executor), its tenant, and the agents it started."""

    def __init__(self, db: str, root: Path, lease_s: float, grace_s: float) -> None:
        self.db, self.root = db, root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lost_after = lease_s + grace_s
        (root / "platform.yaml").write_text(textwrap.dedent(f"""\
            scenario: china
            centers:
              - center_id: {AGENT_CENTER}
                executor: {{type: agent, lease_s: {lease_s}, grace_s: {grace_s}}}
              - center_id: {LOCAL_CENTER}
                executor: {{type: local, cpus: 8, cards: 2}}
            """))  # fmt: skip
        (root / "agent.yaml").write_text(
            "executor: {type: local, cpus: 8, cards: 2}\nwork_dir: agent-work\n"
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.key = ""
        self.operator = ""

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SUANWANG, *args], capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        r = self.run("tenants", "create", "acme", "--db", self.db, "--json")
        assert r.returncode == 0, r.stderr
        self.key = json.loads(r.stdout)["api_key"]
        r = self.run("tenants", "create", "ops", "--role", "operator", "--db", self.db, "--json")
        assert r.returncode == 0, r.stderr
        self.operator = json.loads(r.stdout)["api_key"]
        for center in (AGENT_CENTER, LOCAL_CENTER):
            r = self.run("agent", "token", "create", "--center", center, "--db", self.db)
            assert r.returncode == 0, r.stderr
            (self.root / f"{center}.token").write_text(r.stdout.rsplit(" ", 1)[-1])
        log = self.root / "serve.log"
        cmd = [*SUANWANG, "serve", "--db", self.db, "--port", str(self.port),
               "--config", str(self.root / "platform.yaml"),
               "--executors-dir", str(self.root / "centers"),
               "--lost-after", str(self.lost_after), "--unsafe-shared-user"]  # fmt: skip
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        wait_healthy(self.url, proc, log.read_text)

    def agent(self, center: str = AGENT_CENTER, token: str = AGENT_CENTER) -> Agent:
        log = self.root / f"agent-{center}.log"
        cmd = [*SUANWANG, "agent", "--center", center, "--url", self.url,
               "--token-file", str(self.root / f"{token}.token"),
               "--config", str(self.root / "agent.yaml"), "--every", "0.3",
               "--unsafe-shared-user"]  # fmt: skip
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return Agent(proc, log)

    def connected_agent(self) -> Agent:
        """The agent of the agent center, once connected; the local center drained, so that
        jobs go to the agent."""
        agent = self.agent()
        agent.wait_for("connected to the control plane")
        self.api("POST", f"/v1/centers/{LOCAL_CENTER}/drain", key=self.operator)
        return agent

    def api(self, method: str, path: str, key: str = "", **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        r = httpx.request(method, self.url + path, headers=headers, timeout=10, **kw)
        assert r.status_code < 300, r.text
        return r.json() if "json" in r.headers.get("content-type", "") else r.text

    def submit(self, name: str, command: str, **extra: Any) -> str:
        body = {**extra, "name": name, "command": command, "resources": {"count": 1, "cpus": 1},
                "duration_s": 600, "kind": "interactive", "origin": "ningxia",
                "stacks": ["cuda"]}  # fmt: skip
        job_id: str = self.api("POST", "/v1/jobs", json=body)["id"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.api("GET", f"/v1/jobs/{job_id}")
        return job

    def wait(self, what: Callable[[], Any], timeout: float, why: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while not (value := what()):
            assert time.monotonic() < deadline, f"timed out: {why}\n{self.logs()}"
            time.sleep(0.2)
        return value

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self.root.glob("*.log"))
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


class Agent:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc, self.log = proc, log

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            assert self.proc.poll() is None or text in self.log.read_text(), self.log.read_text()
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.log.read_text()}"
            time.sleep(0.1)


def _platform(db: str, root: Path, lease_s: float, grace_s: float) -> Iterator[Platform]:
    p = Platform(db, root, lease_s, grace_s)
    try:
        p.start()
        yield p
    finally:
        p.stop()


@pytest.fixture
def platform(fresh_db_url: str, tmp_path: Path) -> Iterator[Platform]:
    yield from _platform(fresh_db_url, tmp_path, lease_s=10, grace_s=2)


def _ended(p: Platform, job_id: str) -> dict[str, Any] | None:
    job = p.job(job_id)
    return job if job["state"] in ("succeeded", "failed", "cancelled") else None


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
    done = {j: p.wait(lambda j=j: _ended(p, j), 60, f"job {j}") for j in (good, bad)}
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
    ended = p.wait(lambda: _ended(p, job), 60, "the job to end")
    assert ended["state"] == "succeeded", ended
    assert marker.read_text().splitlines() == [job]  # ran once
    assert "finished" in p.api("GET", f"/v1/jobs/{job}/logs")
    runs = list((tmp_path / "agent-work" / "runs" / AGENT_CENTER).glob(f"{job}*"))
    assert [r.name for r in runs] == [job]


@pytest.fixture
def short_lease(fresh_db_url: str, tmp_path: Path) -> Iterator[Platform]:
    yield from _platform(fresh_db_url, tmp_path, lease_s=3, grace_s=2)


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
    ended = [p.wait(lambda j=j: _ended(p, j), 90, f"job {j}") for j in jobs]
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
    ended = p.wait(lambda: _ended(p, job), 90, "the job to move and end")
    assert (ended["state"], ended["center_id"]) == ("succeeded", LOCAL_CENTER)
    assert "resumed at step 7" in p.api("GET", f"/v1/jobs/{job}/logs")
    events = p.api("GET", f"/v1/jobs/{job}/events")
    moves = [e for e in events if e["to_state"] == "migrating"]
    assert moves and moves[0]["detail"]["center"] == AGENT_CENTER, events
    assert any(e["detail"].get("event") == "checkpoint_requested" for e in events), events
    assert markers.read_text().splitlines() == [job]
    assert agent.proc.poll() is None
