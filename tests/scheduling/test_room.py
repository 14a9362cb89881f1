"""The planner's compiled calendar check is the state's calendar check (the same answer for
every window, short or long, before the calendar's start or past its end), and its compiled
search finds what the search in Python found."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scheduling.planner import Grid, SuanwangPolicy
from suanwang.scheduling.room import first_fit, fit_one
from suanwang.scheduling.state import CapacityState

HOUR = 3600.0
SHORT_H = 16  # windows shorter and longer than this


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    t0_s=st.one_of(
        st.floats(-3 * HOUR, 80 * HOUR, allow_nan=False),
        st.sampled_from([0.0, HOUR, 2.5 * HOUR, 1e12]),
    ),
    length_h=st.one_of(
        st.floats(0.0, 3 * SHORT_H, allow_nan=False),
        st.sampled_from([0.0, 1.0, float(SHORT_H), SHORT_H + 1e-9]),
    ),
)
def test_fit_one_answers_as_the_state_does(
    china_net: Network, china_signals: Signals, data: st.DataObject, t0_s: float, length_h: float
) -> None:
    state = CapacityState.empty(china_net, china_signals)
    pools, hours = state.committed.shape
    for _ in range(data.draw(st.integers(0, 30))):  # runs already planned
        pool = data.draw(st.integers(0, pools - 1))
        h0 = data.draw(st.integers(0, hours - 1))
        state.book(pool, data.draw(st.integers(1, 64)), h0 * HOUR, (h0 + 5.5) * HOUR)
    pool = data.draw(st.integers(0, pools - 1))
    cap = int(china_net.pool_capacity[pool])
    # one run on the pool near the window, and units just under, at and over what is left
    booked = data.draw(st.integers(1, cap - 1))
    t1_s = t0_s + length_h * HOUR
    near_s = data.draw(
        st.one_of(
            st.floats(t0_s - 20 * HOUR, t0_s + 20 * HOUR, allow_nan=False),
            # just past the window's last hour, or ending just before its first
            st.sampled_from([math.ceil(t1_s / HOUR) * HOUR, (math.floor(t0_s / HOUR) - 1) * HOUR]),
        )
    )
    state.book(pool, booked, near_s, near_s + data.draw(st.floats(0.0, 30 * HOUR)))
    units = data.draw(
        st.sampled_from([cap - booked - 1, cap - booked, cap - booked + 1, 1, cap + 1]).filter(
            lambda u: u >= 1
        )
    )
    capacity = china_net.pool_capacity
    assert fit_one(state.committed, capacity, pool, units, t0_s, t1_s) == state.fits(
        pool, units, t0_s, t1_s
    )


def search_as_before(
    flat: np.ndarray, width: int, start_h: np.ndarray, runtime_h: np.ndarray,
    pools: np.ndarray, units: int, state: CapacityState, tries: int,
) -> tuple[int, float]:  # fmt: skip
    """The planner's search as it was in Python: argmin, mark, check with ``state.fits``."""
    for _ in range(tries):
        idx = int(flat.argmin())
        value = float(flat[idx])
        if value == math.inf:
            break
        flat[idx] = math.inf
        i, k = divmod(idx, width)
        t0 = (float(start_h[i]) + k) * HOUR
        if state.fits(int(pools[i]), units, t0, t0 + float(runtime_h[i]) * HOUR):
            return idx, value
    return -1, math.inf


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_first_fit_finds_what_the_python_search_found(
    china_net: Network, china_signals: Signals, data: st.DataObject, seed: int
) -> None:
    """The same candidate, the same cost and the same candidates marked tried, on grids with
    ties, inadmissible starts (inf), a calendar that fills and every limit on the tries."""
    rng = np.random.default_rng(seed)
    state = CapacityState.empty(china_net, china_signals)
    n_pools, hours = state.committed.shape
    for _ in range(data.draw(st.integers(0, 200))):  # a calendar that fills
        pool = int(rng.integers(n_pools))
        h0 = int(rng.integers(hours))
        hundreds = int(china_net.pool_capacity[pool]) // 100  # loads that can add up to it
        units = 100 * int(rng.integers(1, hundreds + 1))
        state.book(pool, units, h0 * HOUR, (h0 + rng.uniform(0, 30)) * HOUR)
    rows, width = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 13))
    pools = rng.choice(n_pools, size=rows, replace=False).astype(np.int64)
    # few distinct costs (ties), some inadmissible
    cost = rng.integers(0, 6, size=(rows, width)).astype(np.float64) * 0.5
    cost[rng.random((rows, width)) < data.draw(st.sampled_from([0.0, 0.3, 1.0]))] = math.inf
    start_h = rng.uniform(0, hours - 20, rows)
    runtime_h = rng.uniform(0, 25, rows)
    units = data.draw(st.sampled_from([1, 100, 400, 500, 1000]))  # at what is left, over
    tries = data.draw(st.sampled_from([1, 5, 256]))
    mine, theirs = cost.ravel().copy(), cost.ravel().copy()
    args = (width, start_h, runtime_h, pools, units)
    found = first_fit(mine, *args, state.committed, china_net.pool_capacity, tries)
    assert found == search_as_before(theirs, *args, state, tries)
    assert np.array_equal(mine, theirs)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_plan_decides_as_the_planner_in_python(
    china_net: Network, china_signals: Signals, data: st.DataObject, seed: int
) -> None:
    """The compiled decision on a grid (room now, search, a deferral against the starts now
    that fit, scarcity, booking) is the planner's in Python: the same decision (pool, start,
    reason, value, gain), the same calendar after, the same candidates marked tried."""
    rng = np.random.default_rng(seed)
    state = CapacityState.empty(china_net, china_signals)
    n_pools, hours = state.committed.shape
    for _ in range(data.draw(st.integers(0, 200))):  # a calendar that fills
        pool = int(rng.integers(n_pools))
        h0 = int(rng.integers(hours))
        hundreds = int(china_net.pool_capacity[pool]) // 100
        state.book(pool, 100 * int(rng.integers(1, hundreds + 1)), h0 * HOUR,
                   (h0 + rng.uniform(0, 30)) * HOUR)  # fmt: skip
    state.now_s = float(rng.uniform(0, (hours - 40) * HOUR))
    # room now: some pools short of the job's units
    state.free = (china_net.pool_capacity * rng.choice([0.0, 0.5, 1.0], n_pools)).astype(np.int64)
    if data.draw(st.booleans()):  # work waited for room lately: scarce, or long ago
        state.waited_s = np.full(n_pools, state.now_s - rng.choice([0.0, 1e6]))
    rows, width = data.draw(st.integers(1, 16)), data.draw(st.sampled_from([1, 2, 13]))
    pools = rng.choice(n_pools, size=rows, replace=False).astype(np.int64)
    # few distinct costs (ties, and starts now near a deferral's), some inadmissible
    cost = rng.integers(0, 8, size=(rows, width)).astype(np.float64) * 0.25 + 10.0
    cost[:, 0] += rng.choice([0.0, 1e-7, 0.2, 3.0], rows)
    cost[rng.random((rows, width)) < data.draw(st.sampled_from([0.0, 0.3, 1.0]))] = math.inf
    start_h = state.now_s / HOUR + rng.uniform(0, 3, rows)
    runtime_h = rng.uniform(0, 25, rows)
    units = data.draw(st.sampled_from([1, 100, 400, 500, 1000]))
    policy = SuanwangPolicy(
        candidates_checked=data.draw(st.sampled_from([1, 5, 256])),
        min_deferral_gain_cny=data.draw(st.sampled_from([1e-6, 0.3])),
        min_deferral_gain_share=data.draw(st.sampled_from([0.0, 0.05])),
    )
    explain = data.draw(st.booleans())
    sel = np.arange(rows)
    mine, theirs = cost.copy(), cost.copy()
    other = CapacityState(
        state.net, state.signals, state.now_s, state.free.copy(), state.backlog_unit_s.copy(),
        state.committed.copy(), state.waited_s,
    )  # fmt: skip
    got = policy._on_grid(Grid(sel, start_h, runtime_h, mine, None), pools, units, state, explain)
    want = policy._plan_py(Grid(sel, start_h, runtime_h, theirs, None), pools, units, other,
                           explain)  # fmt: skip
    assert got == want
    assert np.array_equal(state.committed, other.committed)
    assert np.array_equal(mine, theirs)
