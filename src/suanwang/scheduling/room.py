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


#: :func:`plan` outcomes: nothing fits; the cheapest fit (deferred or not); a start now that
#: fits taken because the network is scarce; a NaN among the costs of starting now (the caller
#: plans in Python, whose sort of NaNs this does not reproduce)
NONE, FOUND, SCARCE, NAN_NOW = -1, 0, 1, -2


@njit(cache=True)
def book(committed: np.ndarray, pool: int, units: int, t0: float, t1: float) -> None:
    """``state.book(pool, units, t0, t1)`` on ``committed``: the hours of ``hour_window``,
    cut at the calendar's end."""
    h0 = int(t0 // HOUR)
    if h0 < 0:
        h0 = 0
    h1 = math.ceil(t1 / HOUR)
    if h1 <= h0:
        h1 = h0 + 1
    end = min(h1, committed.shape[1])
    for h in range(h0, end):
        committed[pool, h] += units


@njit(cache=True)
def plan(
    cost: np.ndarray,
    start_h: np.ndarray,
    runtime_h: np.ndarray,
    pools: np.ndarray,
    units: int,
    committed: np.ndarray,
    cap: np.ndarray,
    free: np.ndarray,
    tries: int,
    eps: float,
    share: float,
    scarce: bool,
    explain: bool,
) -> tuple[int, int, int, float, float, float, float]:
    """The planner's ``_plan`` after its grid: room now (no room on ``pools[i]``: inf in
    column 0 of ``cost``, a C-contiguous rows x starts array), the search
    (:func:`first_fit`, marking what it tried), a deferral kept only if no start now that
    fits costs at most ``value + eps + share * value`` (the cheapest start now that fits,
    with ``scarce``), and the run booked on ``committed``.

    Returns ``(outcome, i, k, value, gain, t0, t1)``: outcome one of :data:`FOUND`,
    :data:`SCARCE`, :data:`NONE` (nothing fits: nothing booked) or :data:`NAN_NOW` (nothing
    done but room now); ``gain`` NaN unless a deferral stands against a start now that fits
    (always worked out with ``explain``, else only when it is under the limit)."""
    n, width = cost.shape
    inf = math.inf
    for r in range(n):
        if free[pools[r]] < units:
            cost[r, 0] = inf
    now_cost = cost[:, 0].copy()
    for r in range(n):
        if now_cost[r] != now_cost[r]:
            return NAN_NOW, -1, 0, inf, math.nan, 0.0, 0.0
    idx, value = first_fit(
        cost.ravel(), width, start_h, runtime_h, pools, units, committed, cap, tries
    )
    if idx < 0:
        return NONE, -1, 0, inf, math.nan, 0.0, 0.0
    i, k = divmod(idx, width)
    t0 = (start_h[i] + k) * HOUR
    t1 = t0 + runtime_h[i] * HOUR
    outcome = FOUND
    gain = math.nan
    if k:
        limit = inf if explain else value + eps + share * value
        order = np.argsort(now_cost, kind="mergesort")  # as sorted (cost, row) pairs
        if scarce:
            for j in order:
                now_j = now_cost[j]
                if now_j < inf:
                    s0 = (start_h[j] + 0) * HOUR
                    s1 = s0 + runtime_h[j] * HOUR
                    if fit_one(committed, cap, pools[j], units, s0, s1):
                        i, k, value, t0, t1 = j, 0, now_j, s0, s1
                        outcome = SCARCE
                        break
        if k:
            for j in order:
                now_j = now_cost[j]
                if not (value <= now_j <= limit):
                    continue
                if now_j == inf:
                    break
                s0 = (start_h[j] + 0) * HOUR
                s1 = s0 + runtime_h[j] * HOUR
                if not fit_one(committed, cap, pools[j], units, s0, s1):
                    continue
                if now_j <= value + eps + share * value:
                    i, k, value, t0, t1 = j, 0, now_j, s0, s1
                else:
                    gain = now_j - value
                break
    book(committed, pools[i], units, t0, t1)
    return outcome, i, k, value, gain, t0, t1
