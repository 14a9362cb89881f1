"""Grids worked out ahead (the simulator's lookahead) decide exactly as grids worked out one
decision at a time: the same placements, starts and events, to the last bit."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanwang.core.jobs import Job
from suanwang.core.network import JobClassInfo, Network
from suanwang.core.signals import Signals
from suanwang.scheduling.lookahead import costs
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.state import NO_MARKET, CapacityState, Decision, Market
from suanwang.sim.engine import Outcome, simulate
from suanwang.sim.workload import WorkloadSpec, synthetic_jobs


@dataclass
class OneAtATime:
    """The planner without ``prepare``: every grid worked out in its own decision."""

    planner: SuanwangPolicy = field(default_factory=SuanwangPolicy)
    name: str = "suanwang"

    @property
    def replan_s(self) -> float:
        return self.planner.replan_s

    def decide(self, job: Job, info: JobClassInfo, state: CapacityState,
               market: Market = NO_MARKET, *, explain: bool = False) -> Decision:  # fmt: skip
        return self.planner.decide(job, info, state, market, explain=explain)

    def migrations(self, jobs: Sequence[Job], running: Sequence, state: CapacityState):  # type: ignore[no-untyped-def, type-arg]
        return self.planner.migrations(jobs, running, state)


def _same(a: Outcome, b: Outcome) -> None:
    for name in ("pool", "release_s", "first_start_s", "start_s", "end_s", "latency_ms",
                 "transfer_cost_cny", "migrations", "seg_job", "seg_pool", "seg_start_s",
                 "seg_end_s"):  # fmt: skip
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for x, y in zip(a.events.columns(), b.events.columns(), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("load", [None, 0.9])
def test_lookahead_decides_as_one_at_a_time(
    china_net: Network, china_signals: Signals, start: datetime, load: float | None
) -> None:
    # busy enough that shortlists fill and jobs fall back to every pool and to queues
    jobs = synthetic_jobs(china_net, WorkloadSpec(jobs=3000, days=0.25, seed=3, load=load), start)
    ahead = simulate(china_net, china_signals, jobs, SuanwangPolicy())
    alone = simulate(china_net, china_signals, jobs, OneAtATime())
    assert ahead.decisions == alone.decisions > 0
    assert len(ahead.seg_job) == len(alone.seg_job)
    _same(ahead, alone)


def test_a_grid_made_for_another_time_is_not_used(
    china_net: Network, china_signals: Signals, start: datetime
) -> None:
    jobs = synthetic_jobs(china_net, WorkloadSpec(jobs=50, days=0.1, seed=4), start)
    infos = [china_net.job_class(j) for j in jobs]
    job, info = next((j, i) for j, i in zip(jobs, infos, strict=True) if i.pools.size)
    decisions = []
    for prepared in (True, False):
        policy = SuanwangPolicy()
        state = CapacityState.empty(china_net, china_signals)
        state.now_s = job.submit_s + 60.0  # not its submit time: the ready grid is not for it
        if prepared:
            policy.prepare(jobs, infos, state)
            assert id(job) in policy._ready
        d = policy.decide(job, info, state)
        decisions.append((d.pos, d.start_s, d.objective_cny))
    assert decisions[0] == decisions[1]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    now_s=st.floats(0.0, 40 * 3600.0),
    deadline_h=st.one_of(st.just(math.inf), st.floats(-5.0, 80.0)),
    margin_h=st.floats(0.0, 6.0),
    max_defer_h=st.integers(0, 24),
    wait_price=st.floats(0.0, 0.2),
)
def test_one_jobs_compiled_costs_are_numpys_to_the_bit(
    china_net: Network,
    china_signals: Signals,
    random_jobs: Callable[..., st.SearchStrategy[list[Job]]],
    data: st.DataObject,
    now_s: float,
    deadline_h: float,
    margin_h: float,
    max_defer_h: int,
    wait_price: float,
) -> None:
    """The planner's grid of one job (compiled: scalars) against the same rows worked out by
    numpy (the job's numbers per row, as the lookahead passes many jobs')."""
    policy = SuanwangPolicy(max_defer_h=max_defer_h, wait_price_cny_per_kwh=wait_price)
    state = CapacityState.empty(china_net, china_signals)
    table = policy.table(state)
    width = max_defer_h + 1
    for job in data.draw(random_jobs(china_net.place_ids[:12], max_size=3, max_run_h=60.0)):
        info = china_net.job_class(job)
        if info.pools.size == 0:
            continue
        rows = policy.rows(info, job.demand_units)
        sel = np.array(sorted(data.draw(st.sets(st.integers(0, info.pools.size - 1),
                                                min_size=1))), dtype=np.int64)  # fmt: skip
        f, centers = rows.f.take(sel, axis=1), rows.i[1].take(sel)
        late_h = deadline_h - margin_h
        got = costs(policy, table, f, centers, job.work_scu, job.data_gb, now_s, deadline_h,
                    late_h, width)  # fmt: skip
        n = sel.size
        want = costs(policy, table, f, centers, np.full(n, job.work_scu),
                     np.full(n, job.data_gb), np.full(n, now_s), np.full(n, deadline_h),
                     np.full(n, late_h), width)  # fmt: skip
        for a, b in zip(got, want, strict=True):
            assert a.shape == b.shape and a.tobytes() == b.tobytes()
