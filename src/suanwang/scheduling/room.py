"""The planner's search for a candidate run that fits the reservation calendar, compiled.

The planner tries a job's candidates (pool, start) cheapest first against the calendar and
takes the first that fits: up to ``candidates_checked`` (256) checks per job, a million jobs
a run, which in Python cost 40 % of a million-job week (docs/benchmarks.md). Both functions
are compiled by numba (``cache=True``: compiled once per machine, then loaded) and only
compare and index the grid's numbers, so a decision is the same as with numpy.

:func:`fit_one` is :meth:`~suanwang.scheduling.state.CapacityState.fits` on the same numbers:
the hours of :func:`~suanwang.core.cost.hour_window` by the same float operations, cut at the
calendar's end; an empty window fits; the largest planned load in it plus the job's units
against the pool's capacity. :func:`first_fit` is the search: ``argmin`` of the grid, the
candidate marked tried, its run checked, again.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from suanwang.core.cost import HOUR_S

HOUR = HOUR_S


@njit(cache=True)
def fit_one(
    committed: np.ndarray, cap: np.ndarray, pool: int, units: int, t0: float, t1: float
) -> bool:
    """``state.fits(pool, units, t0, t1)`` on ``committed``, ``cap`` (capacity per pool)."""
    h0 = int(t0 // HOUR)
    if h0 < 0:
        h0 = 0
    h1 = math.ceil(t1 / HOUR)
    if h1 <= h0:
        h1 = h0 + 1
    window = committed[pool, h0:h1]
    if window.size == 0:
        return True
    top = window[0]
    for x in window[1:]:
        if x > top or x != x:  # as numpy's max: a NaN wins
            top = x
    return bool(top + units <= cap[pool])


@njit(cache=True)
def first_fit(
    flat: np.ndarray,
    width: int,
    start_h: np.ndarray,
    runtime_h: np.ndarray,
    pools: np.ndarray,
    units: int,
    committed: np.ndarray,
    cap: np.ndarray,
    tries: int,
) -> tuple[int, float]:
    """The cheapest of the first ``tries`` candidates of ``flat`` (a grid's costs, raveled,
    ``width`` starts a row; pool ``pools[i]`` in row ``i``; ties: the lower index) whose run
    fits the calendar: ``(index, cost)``, or ``(-1, inf)``. Marks the candidates it tried
    (inf in ``flat``)."""
    for _ in range(tries):
        idx = int(np.argmin(flat))
        value = float(flat[idx])
        if value == math.inf:
            break
        flat[idx] = math.inf  # not again
        i, k = divmod(idx, width)
        t0 = (start_h[i] + k) * HOUR  # as Grid.start_s
        if fit_one(committed, cap, pools[i], units, t0, t0 + runtime_h[i] * HOUR):
            return idx, value
    return -1, math.inf
