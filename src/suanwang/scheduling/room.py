"""Whether a candidate run fits the reservation calendar, without a call's overhead.

The planner tries a job's candidates (pool, start) cheapest first against the calendar and
takes the first that fits: up to ``candidates_checked`` (256) checks per job, a million jobs
a run. :func:`fit_one` is :meth:`~suanwang.scheduling.state.CapacityState.fits` on the same
numbers (the hours of :func:`~suanwang.core.cost.hour_window` by the same float operations,
cut at the calendar's end; an empty window fits; the largest planned load in it plus the
job's units against the pool's capacity) with the calls and the numpy reduce of a short
window taken out: a few hours are read as Python floats.
"""

from __future__ import annotations

import math

import numpy as np

from suanwang.core.cost import HOUR_S

_max = np.maximum.reduce
#: windows of at most this many hours are read as Python floats (a numpy reduce costs more)
SHORT_WINDOW = 16


def fit_one(
    committed: np.ndarray, cap: list[int], pool: int, units: int, t0: float, t1: float
) -> bool:
    """``state.fits(pool, units, t0, t1)`` on ``committed`` (``cap``: capacity per pool, as a
    list), without its calls: the planner checks up to hundreds of candidates per job."""
    h0 = int(t0 // HOUR_S)
    if h0 < 0:
        h0 = 0
    h1 = math.ceil(t1 / HOUR_S)
    if h1 <= h0:
        h1 = h0 + 1
    window = committed[pool, h0:h1]
    if h1 - h0 <= SHORT_WINDOW:  # a few hours: Python's max of the floats is cheaper
        hours = window.tolist()
        return not hours or max(hours) + units <= cap[pool]
    return not window.size or bool(_max(window) + units <= cap[pool])
