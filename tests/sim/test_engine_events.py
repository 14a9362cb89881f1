"""The simulator's event log written flat (one ``extend`` per event) is the log of the same
events added one by one: the same columns, types and order."""

from __future__ import annotations

from array import array

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from suanwang.sim.engine import EventLog

events = st.lists(
    st.tuples(
        st.integers(0, 2**40),
        st.floats(-1e9, 1e12, allow_nan=False),
        st.integers(-1, 5),
        st.integers(0, 5),
        st.integers(-1, 10_000),
    ),
    max_size=50,
)


@given(events)
def test_a_flat_log_is_the_log_added_event_by_event(
    rows: list[tuple[int, float, int, int, int]],
) -> None:
    one_by_one = EventLog.empty()
    flat: array[float] = array("d")
    for row in rows:
        one_by_one.add(*row)
        flat.extend(row)
    log = EventLog.of_rows(flat)
    assert len(log) == len(rows)
    for got, want in zip(log.columns(), one_by_one.columns(), strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert [c.typecode for c in (log.job, log.at_s, log.frm, log.to, log.pool)] == [
        "l",
        "d",
        "b",
        "b",
        "l",
    ]
