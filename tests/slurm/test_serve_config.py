"""The README path on real Slurm: `suanwang serve --config DIR/platform.yaml` and the CLI.

A real server process on the testbed's platform file; tenants, submission, logs and drain
through the `suanwang` command as a user would run them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from suanwang.cli.testbed import write_platform_config
from suanwang.testbed import slurm

SUANWANG = str(Path(sys.executable).parent / "suanwang")


def cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> Any:
    r = subprocess.run(
        [SUANWANG, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )
    if check:
        assert r.returncode == 0, r.stderr + r.stdout
    return r


@pytest.fixture
def server(slurm_testbed: slurm.Testbed, tmp_path: Path) -> Iterator[dict[str, str]]:
    # the checkpoint root (under --executors-dir) must be reachable by the tenants' accounts:
    # a contained job's checkpoint directory is bound into its sandbox
    tmp_path.chmod(0o711)
    config = write_platform_config(slurm_testbed, "china")
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    keys = {
        role: json.loads(cli("tenants", "create", role, "--role", role, "--db", db,
                             "--json").stdout)["api_key"]
        for role in ("consumer", "operator")
    }  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [SUANWANG, "serve", "--db", db, "--port", str(port), "--config", str(config),
         "--lost-after", "30", "--executors-dir", str(tmp_path / "centers"),
         "--max-defer-h", "0"],  # real signals at the real hour: training might wait
        stdout=subprocess.DEVNULL, stderr=log, cwd=tmp_path,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)
    try:
        yield {"url": url, **keys}
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def test_serve_with_a_platform_file_runs_jobs_on_slurm(
    server: dict[str, str], slurm_testbed: slurm.Testbed, tmp_path: Path
) -> None:
    user = {"SUANWANG_URL": server["url"], "SUANWANG_API_KEY": server["consumer"]}
    ops = {"SUANWANG_URL": server["url"], "SUANWANG_API_KEY": server["operator"]}
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: hello-slurm\n"
        "command: echo hello from $SUANWANG_CENTER on $SUANWANG_CARDS cards\n"
        "resources: {count: 2, cpus: 4, accelerator: h800, mem_gb: 2}\n"
        "duration_s: 600\n"
        "kind: training\n"
        "origin: beijing\n"
    )
    job_id = json.loads(cli("submit", str(job), "--json", env=user).stdout)["id"]
    deadline = time.monotonic() + 60
    while (doc := json.loads(cli("jobs", job_id, "--json", env=user).stdout))["state"] not in (
        "succeeded", "failed", "cancelled"
    ):  # fmt: skip
        assert time.monotonic() < deadline, doc
        time.sleep(0.5)
    assert doc["state"] == "succeeded", doc
    centers = {c.center_id for c in slurm_testbed.clusters}
    assert doc["center_id"] in centers
    logs = cli("logs", job_id, env=user).stdout
    assert f"hello from {doc['center_id']} on 2 cards" in logs

    center = sorted(centers)[0]
    refused = cli("centers", "drain", center, env=user, check=False)
    assert refused.returncode == 2
    assert refused.stderr == "error: draining centers is for operators\n"
    drained = json.loads(cli("centers", "drain", center, "--reason", "test", "--json",
                             env=ops).stdout)  # fmt: skip
    assert drained == {**drained, "center_id": center, "drained": True, "reason": "test"}
    r = httpx.get(server["url"] + "/v1/centers/drained",
                  headers={"Authorization": f"Bearer {server['consumer']}"})  # fmt: skip
    assert [d["center_id"] for d in r.json()] == [center]
    cli("centers", "undrain", center, env=ops)
    unknown = cli("centers", "drain", "atlantis", env=ops, check=False)
    assert unknown.returncode == 2 and "unknown center 'atlantis'" in unknown.stderr
