"""The planner's calendar check without overhead is the state's calendar check: the same
answer for every window, short or long, before the calendar's start or past its end."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scheduling.room import SHORT_WINDOW, fit_one
from suanwang.scheduling.state import CapacityState

HOUR = 3600.0


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
        st.floats(0.0, 3 * SHORT_WINDOW, allow_nan=False),
        st.sampled_from([0.0, 1.0, float(SHORT_WINDOW), SHORT_WINDOW + 1e-9]),
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
    capacity = china_net.pool_capacity.tolist()
    assert fit_one(state.committed, capacity, pool, units, t0_s, t1_s) == state.fits(
        pool, units, t0_s, t1_s
    )
