"""A Slurm center through its agent on the testbed: `suanwang serve` with ``zhongwei`` as an
agent center, a real `suanwang agent` driving the testbed's zhongwei cluster through its own
slurmrestd (the platform never talks to it): jobs run as their tenant's account, contained,
and come back with their exit codes and logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_platform import AGENT_CENTER, Platform, running

from suanwang.cli.testbed import write_platform_config
from suanwang.server.platform_config import load_platform_config
from suanwang.testbed import slurm


@pytest.fixture
def platform(
    fresh_db_url: str, shared_tmp: Path, slurm_testbed: slurm.Testbed
) -> Iterator[Platform]:
    cfg = load_platform_config(write_platform_config(slurm_testbed, "china"))
    (entry,) = [c.executor for c in cfg.centers if c.center_id == AGENT_CENTER]
    agent_config = "executor: " + json.dumps(entry.model_dump(mode="json")) + "\n"
    yield from running(
        fresh_db_url, shared_tmp, lease_s=20, grace_s=5, agent_config=agent_config, tenant="alice"
    )


def test_jobs_run_on_slurm_through_the_centers_agent(
    platform: Platform, slurm_testbed: slurm.Testbed
) -> None:
    p = platform
    agent = p.connected_agent()
    ok = p.submit("ok", "echo hello from $SUANWANG_CENTER as $(id -un)")
    bad = p.submit("bad", "echo broken >&2; exit 3")
    done = {j: p.wait(lambda j=j: p.ended(j), 120, f"job {j}") for j in (ok, bad)}
    assert (done[ok]["state"], done[ok]["exit_code"]) == ("succeeded", 0)
    assert (done[bad]["state"], done[bad]["exit_code"]) == ("failed", 3)
    assert {d["center_id"] for d in done.values()} == {AGENT_CENTER}
    account = slurm_testbed.accounts["alice"]
    assert f"hello from {AGENT_CENTER} as {account}" in p.api("GET", f"/v1/jobs/{ok}/logs")
    assert "broken" in p.api("GET", f"/v1/jobs/{bad}/logs")
    assert agent.proc.poll() is None
