"""The platform's services on the Slurm testbed, run round by round, and what the Slurm tests
share: reading jobs and events, polling until done, a job script that checkpoints.

Imported as ``slurm_platform`` (pytest puts this directory on ``sys.path``, as for ``pinned``).
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.cli.testbed import write_platform_config
from suanwang.core.governance import Governance
from suanwang.core.network import Network
from suanwang.executors.slurm import SlurmExecutor
from suanwang.scenarios.loader import load_scenario
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import Policy
from suanwang.server.database.models import JobRow
from suanwang.server.platform_config import load_platform_config
from suanwang.server.runner import configured_executors, live_scenario
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.failover import Failover, Migrations
from suanwang.server.services.live import LiveNetwork
from suanwang.server.services.reconciler import Reconciler
from suanwang.server.services.sharing import no_governance
from suanwang.testbed import slurm

FINAL = ("succeeded", "failed", "cancelled")


class Platform:
    """The services on a testbed, run round by round.

    ``clock``: the services' clock (default: the app's, which stands still); ``governance``
    and ``policy`` go to the dispatcher (default: no quotas, the default policy); ``contain``:
    the centers' containment (default: the platform file's, on where bwrap is installed);
    ``shared_dirs``: what contained jobs may write besides their own directories (default:
    ``root``, where the tests' jobs leave markers across runs and centers); ``timeout_s``: of
    each call to a center's slurmrestd (default: the platform file's)."""

    def __init__(
        self,
        app: FastAPI,
        sessions: sessionmaker[Session],
        tb: slurm.Testbed,
        root: Path,
        lost_after_s: float = 120.0,
        lease_s: float = 60.0,
        *,
        clock: Callable[[], datetime] | None = None,
        governance: Callable[[Session], Governance | None] = no_governance,
        policy: Policy | None = None,
        contain: bool | None = None,
        shared_dirs: list[Path] | None = None,
        timeout_s: float | None = None,
    ) -> None:
        cfg = load_platform_config(write_platform_config(tb, "china"))
        if timeout_s is not None:  # how long a call to a hung slurmrestd may block a round
            cfg = cfg.model_copy(update={"centers": [
                c.model_copy(update={"executor": c.executor.model_copy(
                    update={"timeout_s": timeout_s})}) for c in cfg.centers]})  # fmt: skip
        scenario = load_scenario("china")
        self.executors = configured_executors(cfg, scenario, root / "local")
        for ex in self.executors.values():
            assert isinstance(ex, SlurmExecutor)
            ex.lease_s = lease_s
            if contain is not None:
                ex.contain = contain
            ex.shared_dirs = [root] if shared_dirs is None else shared_dirs
        self.live = LiveNetwork(
            net=Network(live_scenario(scenario, self.executors)),
            signals=app.state.signals.current,
            executors=self.executors,
            clock=clock or app.state.signals.clock,
            checkpoint_root=root / "checkpoints",
        )
        self.sessions = sessions
        self.dispatcher = Dispatcher(
            sessions, self.live, policy=policy or SuanwangPolicy(), governance=governance
        )
        self.reconciler = Reconciler(sessions, self.live)
        self.failover = Failover(sessions, self.live, lost_after_s=lost_after_s)
        self.migrations = Migrations(sessions, self.live, replan_s=1e9)

    def round(self) -> None:
        self.dispatcher.run_once()
        self.reconciler.run_once()
        self.failover.run_once()
        self.migrations.run_once()

    def close(self) -> None:
        for ex in self.executors.values():
            assert isinstance(ex, SlurmExecutor)
            ex.close()


def get(client: TestClient, who: Any, job_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/jobs/{job_id}", headers=who.headers)
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


def run_until(
    p: Platform,
    done: Callable[[], bool],
    timeout: float = 60.0,
    what: str = "",
    every: Callable[[], None] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        p.round()
        if every is not None:
            every()
        if done():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what}")
        time.sleep(0.2)


def ref_of(sessions: sessionmaker[Session], job_id: str) -> str | None:
    with sessions() as s:
        return s.get_one(JobRow, job_id).executor_ref


def events(client: TestClient, who: Any, job_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/jobs/{job_id}/events", headers=who.headers)
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()
    return out


SMALL = {"resources": {"cpus": 2, "count": 1, "accelerator": "any", "mem_gb": 1},
         "stacks": ["cuda"], "kind": "training", "duration_s": 600}  # fmt: skip


CHECKPOINTING = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import os, signal, sys, time
    ckpt = os.environ["SUANWANG_CHECKPOINT_DIR"]
    resume = os.environ.get("SUANWANG_RESUME_FROM")
    step = int(open(os.path.join(resume, "step")).read()) if resume else 0
    print("start at", step, "on", os.environ["SUANWANG_CENTER"], flush=True)
    def note(what):
        if RUNS:
            with open(RUNS, "a") as f:
                f.write(f"{what} {os.environ.get('SLURM_JOB_ID')} {step}\\n")
    note("start")
    def save(*_):
        open(os.path.join(ckpt, "step.tmp"), "w").write(str(step))
        os.replace(os.path.join(ckpt, "step.tmp"), os.path.join(ckpt, "step"))
    def stop(*_):
        save(); note("checkpointed"); sys.exit(85)
    signal.signal(signal.SIGUSR1, stop)
    while step < STEPS:
        step += 1
        time.sleep(0.1)
        if step % 5 == 0:
            save()
    with open(MARKERS, "a") as f:
        f.write(os.environ["SUANWANG_JOB_ID"] + "\\n")
    note("finished")
    print("finished", flush=True)
    """
)


def checkpointing(markers: Path, steps: int, runs: Path | None = None) -> str:
    """A job of ``steps`` steps of 0.1 s that checkpoints every 5 steps and on SIGUSR1 (then
    exits 85), resumes from ``$SUANWANG_RESUME_FROM`` and appends its id to ``markers`` as its
    last act; with ``runs``, each run appends ``start``, then ``checkpointed`` or ``finished``,
    with its Slurm job id and step, to that file."""
    return (
        CHECKPOINTING.replace("STEPS", str(steps))
        .replace("MARKERS", repr(str(markers)))
        .replace("RUNS", repr(str(runs) if runs else None))
    )
