"""`simulate --out` writes every job's record; the columns add up to the policy's metrics, and
the metrics come from the lifecycle events the simulator writes, as live ones are written."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from suanwang.core.lifecycle import NO_STATE, STATE_CODE, TRANSITIONS, JobState, run_events
from suanwang.core.network import Network
from suanwang.core.scenario import Scenario
from suanwang.sim.engine import Outcome
from suanwang.sim.records import COLUMNS
from suanwang.sim.run import make_workload, run

START = datetime(2025, 7, 1, tzinfo=UTC)
STATES = list(JobState)


def test_every_job_has_a_record_and_the_records_add_up_to_the_metrics(
    china: Scenario, tmp_path: Path
) -> None:
    net = Network(china)
    workload = make_workload(
        net, trace="synthetic", fmt="auto", jobs=400, days=0.5, seed=3, start=START, load=0.5
    )
    result = run(china, workload, start=START, policies=["nearest", "suanwang"], seed=3,
                 drain_days=3, with_bound=False, records_dir=tmp_path)  # fmt: skip
    for report in result.reports:
        with (tmp_path / f"jobs-{report.name}.csv").open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert tuple(rows[0].keys()) == COLUMNS
        assert [r["job_id"] for r in rows] == [j.job_id for j in workload.jobs]
        m = report.metrics

        for col in ("energy_cost_cny", "transfer_cost_cny", "cost_cny", "energy_kwh"):
            assert _total(rows, col) == pytest.approx(m[col], rel=1e-6, abs=1e-3), col
        assert _total(rows, "carbon_kg") / 1000 == pytest.approx(m["carbon_t"], rel=1e-6, abs=1e-6)
        states = [r["state"] for r in rows]
        assert states.count("succeeded") == m["completed"]
        assert states.count("failed") == m["rejected"]
        assert all(r["center"] for r in rows if r["state"] != "failed")


def _total(rows: list[dict[str, str]], col: str) -> float:
    return sum(float(r[col]) for r in rows if r[col])


def test_the_simulator_writes_lifecycle_events_live_rules_accept(
    china_runs: dict[str, Any],
    outcome_runs: Callable[[Outcome], list[tuple[int, int, float, float]]],
) -> None:
    for name, run_ in china_runs.items():
        out: Outcome = run_.outcome
        job, at, frm, to, pool = out.events.columns()
        assert len(job) >= 2 * out.pool.size  # every job: pending, then placed or failed
        last: dict[int, tuple[int, float]] = {}
        for j, t, f, s in zip(job.tolist(), at.tolist(), frm.tolist(), to.tolist(), strict=True):
            prev_state, prev_at = last.get(j, (NO_STATE, -np.inf))
            assert f == prev_state, (name, j)
            if f != NO_STATE:
                assert STATES[s] in TRANSITIONS[STATES[f]], (name, STATES[f], STATES[s])
            assert t >= prev_at
            last[j] = (s, t)
        begin, end, handover, placed = run_events(job, frm, to)
        assert (to[placed] == STATE_CODE[JobState.SCHEDULED]).all()
        assert (pool[placed] == pool[begin]).all()  # each run on the pool it was placed on
        assert not handover.any()  # the simulator sees every run start
        runs = sorted(
            (int(job[b]), int(pool[b]), float(at[b]), float(at[e]) if e >= 0 else np.inf)
            for b, e in zip(begin.tolist(), end.tolist(), strict=True)
        )
        assert runs == sorted(outcome_runs(out))
