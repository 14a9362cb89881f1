"""Small hand-made work for the simulator's tests: one-A100 training jobs from the coast, and
the two-pool network the governed engine's tests run on (importable by the tests of this
folder, like ``tests/server/pinned.py``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from suanwang.core.jobs import Job, JobKind
from suanwang.core.scenario import Scenario


def a100_job(i: int = 0, **kw: Any) -> Job:
    """A one-A100 CUDA training job ``j<i>`` from the coast of 1 SCU, submitted at 0; ``kw``
    sets any other field."""
    base: dict[str, Any] = {
        "job_id": f"j{i}",
        "submit_s": 0.0,
        "kind": JobKind.TRAINING,
        "origin": "coastal",
        "cards": 1,
        "cpus": 8,
        "mem_gb": 8.0,
        "accelerator": "a100",
        "stacks": frozenset({"cuda"}),
        "work_scu": 1.0,
    }
    base.update(kw)
    return Job(**base)


def two_pools(tiny: Scenario) -> Scenario:
    """Two centers of the tiny scenario with two A100s each and no CPU pool."""
    keep = {c.id: c for c in tiny.centers}
    centers = tuple(
        dataclasses.replace(keep[cid], inventory=(("a100", 2),), cpu_cores=0)
        for cid in ("coast-ai", "desert-green")
    )
    return dataclasses.replace(tiny, centers=centers)
