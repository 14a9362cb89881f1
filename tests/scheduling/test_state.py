"""The capacity state a host builds from its active jobs is the one it would get by booking
each job in turn: the same calendar, free units and backlog, to the last bit."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scheduling.state import Active, CapacityState, capacity_state

HOUR = 3600.0
times = st.one_of(
    st.floats(-5 * HOUR, 60 * HOUR, allow_nan=False),
    st.sampled_from([0.0, HOUR, 2.5 * HOUR, 1e12]),  # hour edges, far past the calendar
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), now_s=st.floats(0.0, 30 * HOUR))
def test_the_state_is_every_job_booked_in_turn(
    china_net: Network, china_signals: Signals, data: st.DataObject, now_s: float
) -> None:
    net = china_net
    runs = data.draw(
        st.lists(
            st.builds(
                Active,
                pool=st.integers(0, net.n_pools - 1),
                units=st.integers(1, 64),
                t0_s=times,
                t1_s=times,
                holds_now=st.booleans(),
                queued=st.booleans(),
            ),
            max_size=40,
        )
    )
    built = capacity_state(net, china_signals, now_s, runs)
    one_by_one = CapacityState.empty(net, china_signals)
    held = np.zeros(net.n_pools, dtype=np.int64)
    for a in runs:
        one_by_one.book(a.pool, a.units, a.t0_s, a.t1_s)
        held[a.pool] += a.units if a.holds_now else 0
        if a.queued:
            one_by_one.backlog_unit_s[a.pool] += a.units * max(a.t1_s - a.t0_s, 0.0)
    assert built.now_s == now_s
    assert np.array_equal(built.committed, one_by_one.committed)
    assert np.array_equal(built.backlog_unit_s, one_by_one.backlog_unit_s)
    assert np.array_equal(built.free, np.maximum(net.pool_capacity - held, 0))
