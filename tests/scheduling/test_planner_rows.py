"""The planner's per-class rows for a size are the numbers made for that size from scratch."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.core.network import Network
from suanwang.scenarios.loader import load_scenario
from suanwang.scheduling import planner
from suanwang.scheduling.planner import ClassRows, SuanwangPolicy
from suanwang.sim.workload import WorkloadSpec, synthetic_jobs

NET = Network(load_scenario("china"))
JOBS = synthetic_jobs(
    NET, WorkloadSpec(jobs=200, days=1.0, seed=3), datetime(2025, 7, 1, tzinfo=UTC)
)


@settings(max_examples=40, deadline=None)
@given(picks=st.lists(st.tuples(st.integers(0, len(JOBS) - 1), st.integers(1, 64)), max_size=8))
def test_rows_of_any_size_in_any_order_are_those_made_for_it(picks: list[tuple[int, int]]) -> None:
    policy = SuanwangPolicy()
    for j, units in picks:
        info = NET.job_class(JOBS[j])
        got, made = policy.rows(info, units), ClassRows.of(info, units)
        assert got.info is info
        for a, b in ((got.f, made.f), (got.i, made.i), (got.kwh_per_scu, made.kwh_per_scu),
                     (got.every, made.every)):  # fmt: skip
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes()  # the same bits
            assert not a.flags.writeable
        assert policy.rows(info, units) is got  # kept


def test_rows_of_one_class_share_what_does_not_depend_on_the_size() -> None:
    policy = SuanwangPolicy()
    info = NET.job_class(JOBS[0])
    a, b = policy.rows(info, 3), policy.rows(info, 5)
    assert a.i is b.i and a.every is b.every and a.kwh_per_scu is b.kwh_per_scu
    assert np.array_equal(b.f[0], 5 * info.speed)


def test_rows_of_classes_cut_for_each_start_are_not_kept_for_ever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(planner, "ROWS_KEPT", 50)
    policy = SuanwangPolicy()
    info = NET.job_class(JOBS[0])
    keep = np.ones(info.pools.size, dtype=bool)
    keep[0] = False
    for units in range(1, 300):  # as the platform's queue hands them: a new subset each
        cut = info.subset(keep)
        rows = policy.rows(cut, units)
        assert rows.f.tobytes() == ClassRows.of(cut, units).f.tobytes()
    assert len(policy._rows) <= 50
