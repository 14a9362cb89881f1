"""`suanwang serve` with an agent center and real `suanwang agent` processes, for the agent tests
(docs/centers.md, "Agents").

Imported as ``agent_platform`` (pytest puts this directory on ``sys.path``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from processes import free_port, stop_all, wait_healthy

SUANWANG = [sys.executable, "-m", "suanwang.cli"]
AGENT_CENTER, LOCAL_CENTER = "zhongwei", "horinger"


class Platform:
    """`suanwang serve` with ``zhongwei`` served by an agent (and ``horinger`` by a local
    executor), its tenant, and the agents it started. ``agent_config``: the agent's executor
    entry (YAML; default: local processes)."""

    def __init__(
        self,
        db: str,
        root: Path,
        lease_s: float,
        grace_s: float,
        agent_config: str = "executor: {type: local, cpus: 8, cards: 2}\n",
        tenant: str = "acme",
    ) -> None:
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
        (root / "agent.yaml").write_text(agent_config + "work_dir: agent-work\n")
        self.tenant = tenant
        self.procs: list[subprocess.Popen[bytes]] = []
        self.key = ""
        self.operator = ""

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SUANWANG, *args], capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        r = self.run("tenants", "create", self.tenant, "--db", self.db, "--json")
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

    def replica(self) -> tuple[str, subprocess.Popen[bytes]]:
        """Another API replica (``serve --no-services``) on the database (PostgreSQL): its
        address and process."""
        port = free_port()
        url, log = f"http://127.0.0.1:{port}", self.root / f"replica-{port}.log"
        cmd = [*SUANWANG, "serve", "--db", self.db, "--no-services", "--port", str(port)]
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        wait_healthy(url, proc, log.read_text)
        return url, proc

    def agent(
        self, center: str = AGENT_CENTER, token: str = AGENT_CENTER, urls: tuple[str, ...] = ()
    ) -> Agent:
        """The agent of ``center``, given ``urls`` (default: this platform's address)."""
        log = self.root / f"agent-{center}.log"
        given = [a for url in urls or (self.url,) for a in ("--url", url)]
        cmd = [*SUANWANG, "agent", "--center", center, *given,
               "--token-file", str(self.root / f"{token}.token"),
               "--config", str(self.root / "agent.yaml"), "--every", "0.3",
               "--unsafe-shared-user"]  # fmt: skip
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return Agent(proc, log)

    def connected_agent(self, urls: tuple[str, ...] = ()) -> Agent:
        """The agent of the agent center, once connected; the local center drained, so that
        jobs go to the agent."""
        agent = self.agent(urls=urls)
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

    def ended(self, job_id: str) -> dict[str, Any] | None:
        """The job once it has ended (None before)."""
        job = self.job(job_id)
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

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
        stop_all(list(reversed(self.procs)))


class Agent:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc, self.log = proc, log

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            assert self.proc.poll() is None or text in self.log.read_text(), self.log.read_text()
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.log.read_text()}"
            time.sleep(0.1)


def running(db: str, root: Path, lease_s: float, grace_s: float, **kw: Any) -> Iterator[Platform]:
    """A started :class:`Platform` (for a fixture), stopped with its agents at the end."""
    p = Platform(db, root, lease_s, grace_s, **kw)
    try:
        p.start()
        yield p
    finally:
        p.stop()
