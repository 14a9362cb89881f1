"""The offline bound: an LP relaxation over the whole horizon with perfect knowledge (HiGHS).

Model. Jobs are grouped into classes ``k`` of identical feasible pools and precision (origin,
stack, accelerator and latency constraints all act through the feasible set). Time is cut into
buckets ``b`` of ``B`` hours. Variables:

* ``x[k,p,b] >= 0`` unit-hours pool ``p`` gives class ``k`` in bucket ``b``;
* ``C[k,b]`` SCU of class ``k`` done by the end of bucket ``b``.

    minimise   sum  x[k,p,b] x kW_p x PUE_c(p) x min_{h in b} price_c(p)(h)  +  T
    subject to sum_k x[k,p,b] <= cap_p x B                        (capacity)
               C[k,b] = C[k,b-1] + sum_p speed_p x x[k,p,b]       (work done)
               C[k,b] <= work of class k arrived by the start of b (no work before it arrives)
               C[k,last] = total work of class k - e[k]           (every job completes
                                                                   or expires)

``e[k] >= 0`` SCU of class ``k`` that expire (the scenario's deferral rule: a job not started in
time is refused and costs ``expiry_cny_per_kwh`` x its kWh on its most efficient pool), at that
price per SCU: exactly what the simulator charges an expired job, so a run whose jobs expire maps
to a feasible point too (without it, the capacity its refused work never took would still be
charged). ``T = sum_j data_j x min_{p feasible for j} transfer_cost(origin_j, p)`` is a
constant (an expired job paid its transfer: it waited where it was placed).
All work may run until the horizon, latency-bound work included: a policy may have to queue
inference when its nearby pools are full, so forcing it to run on arrival would not bound such
runs (the LP could even become infeasible).

Why it is a lower bound on the cost of any policy that runs the same jobs: every schedule of
whole jobs (one pool, all cards, no preemption, transfer before start, deadlines, latency,
compatibility) maps to a feasible point of this LP — its unit-hours per (class, pool, bucket)
satisfy capacity, arrive no earlier than the floored arrival bucket and add up to the work —
and its energy costs at least the bucket-minimum price, its transfer at least the cheapest
feasible link. The relaxation only drops constraints (gangs, contiguity, a single pool per
job, deadlines, transfer time, waiting) or lowers prices, so it cannot raise
cost. Deadlines are dropped on purpose so the bound stays below policies that miss some.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from suanwang.core.jobs import Job
from suanwang.core.network import PRECISION_INDEX, Network
from suanwang.core.signals import Signals

MAX_VARIABLES = 600_000


class BoundError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Bound:
    cost_cny: float
    energy_cost_cny: float
    transfer_cost_cny: float
    energy_kwh: float
    carbon_t: float
    bucket_h: int
    variables: int
    classes: int
    jobs: int
    #: what the bound pays for jobs it lets expire (the scenario's deferral rule); part of
    #: ``cost_cny`` beside energy and transfer
    expiry_cost_cny: float = 0.0


def _buckets(series: NDArray[np.float64], hours: int, bucket_h: int) -> NDArray[np.float64]:
    """``series`` (rows x hours) cut into buckets of ``bucket_h`` hours: rows x buckets x
    bucket_h, the last bucket padded with its last hour."""
    nb = -(-hours // bucket_h)
    pad = nb * bucket_h - hours
    s = np.pad(series[:, :hours], ((0, 0), (0, pad)), mode="edge")
    return s.reshape(series.shape[0], nb, bucket_h)


def _quiet_highs() -> Any:
    """A HiGHS solver that prints nothing (stdout stays the caller's, e.g. ``simulate --json``).

    HiGHS writes its banner to stdout on the first call other than an option setter unless
    ``output_flag`` is already off, and ``highspy.Highs()`` makes such a call in its constructor
    (since 1.16 it starts its callbacks there). The core object it wraps does not: create that,
    switch the output off first, then use it (the bound needs none of the wrapper's extras).
    """
    from highspy._core import _Highs

    h = _Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("log_to_console", False)
    return h


def solve_lp(
    cost: NDArray[np.float64],
    col_lo: NDArray[np.float64],
    col_hi: NDArray[np.float64],
    row_lo: NDArray[np.float64],
    row_hi: NDArray[np.float64],
    matrix: tuple[NDArray[Any], NDArray[Any], NDArray[np.float64]],
    time_limit_s: float,
    what: str,
) -> Any:
    """Solve ``min cost x`` with ``row_lo <= A x <= row_hi`` and the column bounds (``A`` in
    column-wise ``(starts, index, value)``); the solved HiGHS object, or :class:`BoundError`."""
    import highspy

    starts, index, value = matrix
    lp = highspy.HighsLp()
    lp.num_col_ = cost.size
    lp.num_row_ = row_lo.size
    lp.col_cost_ = cost
    lp.col_lower_ = col_lo
    lp.col_upper_ = col_hi
    lp.row_lower_ = row_lo
    lp.row_upper_ = row_hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = starts.astype(np.int32)
    lp.a_matrix_.index_ = index.astype(np.int32)
    lp.a_matrix_.value_ = value
    h = _quiet_highs()
    h.setOptionValue("time_limit", float(time_limit_s))
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise BoundError(
            f"{what} not solved to optimality: {h.modelStatusToString(status)} "
            "(more work than the network can do within the horizon, or out of time?)"
        )
    return h


@dataclass(frozen=True)
class Priced:
    """Columns an LP takes only when they pay (:func:`solve_lp_by_columns`): their costs, the
    row each covers (a row ``lo == hi``, e.g. "every job of the class starts"; coefficient
    1), their entries in every row (``block(idx)``: a scipy CSC matrix of all rows x
    ``idx``, cover rows included) and their reduced costs ``c_j - a_j^T y`` for the rows'
    duals ``y`` (``reduced(y)``, all at once: built without their entries, so the LP never
    needs them all; a column may be given any value >= 0 when it is known not to be
    negative). Bounds ``[0, inf)``. ``start``: the columns the first LP holds (default: the
    cheapest few of each covered row)."""

    cost: NDArray[np.float64]
    cover: NDArray[np.integer[Any]]
    block: Callable[[NDArray[np.int64]], Any]
    reduced: Callable[[NDArray[np.float64]], NDArray[np.float64]]
    start: NDArray[np.int64] | None = None

    @staticmethod
    def of_matrix(a: Any, cost: NDArray[np.float64], cover: NDArray[np.int64]) -> Priced:
        """Priced columns given whole (``a``: CSC, rows x columns)."""
        at = a.T.tocsr()
        return Priced(cost, cover, lambda idx: a[:, idx], lambda y: cost - at @ y)


#: :func:`solve_lp_by_columns` adds at most this many columns per covered row a round (at
#: 200,000 jobs the first round's 187,435 negative columns, 3.4 a row, all at once: 5 rounds
#: instead of 6, 120 against 135 CPU s; docs/benchmarks.md) ...
ADD_PER_ROW = 4
#: ... and solves afresh (presolved, no basis) after adding more than this fraction of the LP's
#: columns: warm starts after 109,294 and 71,299 new columns took 34 and 100 CPU s, fresh
#: solves 28 and 57; after 2,129 a warm start took 8 (docs/benchmarks.md)
COLD_FRACTION = 0.05


def solve_lp_by_columns(
    cost: NDArray[np.float64],
    col_lo: NDArray[np.float64],
    col_hi: NDArray[np.float64],
    a: Any,
    row_lo: NDArray[np.float64],
    row_hi: NDArray[np.float64],
    priced: Priced,
    time_limit_s: float,
    what: str,
    first: int = 4,
    cold_fraction: float = COLD_FRACTION,
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """``min cost x + priced.cost z`` with ``row_lo <= a x + A_z z <= row_hi``, the bounds
    of ``x`` and ``z >= 0``: the same optimum as :func:`solve_lp` on all the columns, by
    column generation over the ``priced`` ones (``a``: CSC, the columns always in the LP).

    The restricted LP starts with the ``first`` cheapest priced columns of each covered row
    and an artificial column per covered row (cost ``M``: the row may be left uncovered at a
    high price, so the restricted LP is always feasible); after each solve every priced
    column is priced with the rows' duals and the most negative are added (at most
    ``ADD_PER_ROW`` times the covered rows a round), until none is: the restricted LP's
    optimum is then the whole LP's (its duals are feasible for every column). A solve after
    a few columns were added starts from the last basis; after many (more than
    ``cold_fraction`` of the LP's columns) HiGHS presolves and solves afresh, which is then
    faster (``COLD_FRACTION``); the dual simplex runs without cost perturbation, which made
    the re-solves from a basis faster. An artificial left above zero at the end means either
    ``M`` is below a covered row's dual (``M`` is raised and the search goes on) or the whole
    LP is infeasible (:class:`BoundError`). Returns the values of ``x``, of every priced
    column (0 for those never taken) and the optimum.
    """
    import time

    import highspy
    from scipy.sparse import csc_matrix, hstack

    t0 = time.perf_counter()
    n_fixed, n_priced = cost.size, priced.cost.size
    cover = priced.cover
    rows = np.flatnonzero(np.bincount(cover, minlength=row_lo.size))
    big = 100.0 * (max(float(np.abs(c).max(initial=0.0)) for c in (cost, priced.cost)) + 1.0)
    if priced.start is None:  # the first: the cheapest ``first`` priced columns of each row
        order = np.lexsort((priced.cost, cover))
        starts = np.searchsorted(cover[order], cover[order], side="left")
        rank = np.empty(n_priced, dtype=np.int64)
        rank[order] = np.arange(n_priced) - starts
        taken = np.nonzero(rank < first)[0]
    else:
        taken = np.unique(priced.start)
    art = csc_matrix(
        (np.ones(rows.size), (rows, np.arange(rows.size))), shape=(row_lo.size, rows.size)
    )
    both = hstack([csc_matrix(a), art, csc_matrix(priced.block(taken))], format="csc")
    lp = highspy.HighsLp()
    lp.num_col_ = both.shape[1]
    lp.num_row_ = row_lo.size
    lp.col_cost_ = np.concatenate([cost, np.full(rows.size, big), priced.cost[taken]])
    lp.col_lower_ = np.concatenate([col_lo, np.zeros(rows.size + taken.size)])
    lp.col_upper_ = np.concatenate([col_hi, np.full(rows.size + taken.size, np.inf)])
    lp.row_lower_ = row_lo
    lp.row_upper_ = row_hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = both.indptr.astype(np.int32)
    lp.a_matrix_.index_ = both.indices.astype(np.int32)
    lp.a_matrix_.value_ = both.data
    Status = highspy.HighsModelStatus
    h = _quiet_highs()
    h.setOptionValue("dual_simplex_cost_perturbation_multiplier", 0.0)
    h.passModel(lp)
    in_lp = np.zeros(n_priced, dtype=bool)
    in_lp[taken] = True
    added = [taken]  # the priced columns, in the LP's order after the artificials
    arts = np.arange(n_fixed, n_fixed + rows.size, dtype=np.int32)
    fresh = False  # the next solve afresh (after many new columns), else from the last basis
    warm = False  # the first solve has no basis to start from
    while True:
        left = time_limit_s - (time.perf_counter() - t0)
        if left <= 0:
            raise BoundError(f"{what} not solved within {time_limit_s:g} s")
        # HiGHS's limit is on its run clock, which adds up over the rounds' runs
        h.setOptionValue("time_limit", float(h.getRunTime() + left))
        if fresh:
            h.clearSolver()  # many new columns: a fresh, presolved solve beats the warm start
        h.run()
        status = h.getModelStatus()
        if warm and not fresh and status not in (Status.kOptimal, Status.kTimeLimit):
            # a re-solve from the basis can end without an answer (seen: "Unknown" at 200,000
            # jobs, the third re-solve, with 8 first columns a class): the same LP afresh, once
            h.clearSolver()
            h.run()
            status = h.getModelStatus()
        warm = True
        if status != Status.kOptimal:
            raise BoundError(f"{what} not solved to optimality: {h.modelStatusToString(status)}")
        sol = h.getSolution()
        y = np.asarray(sol.row_dual)
        reduced = priced.reduced(y)
        reduced[in_lp] = 0.0
        new = np.nonzero(reduced < -1e-9 * (1.0 + np.abs(priced.cost)))[0]
        if new.size == 0:
            if np.asarray(sol.col_value)[arts].max(initial=0.0) <= 1e-7:
                break
            if big > 1e12:
                raise BoundError(f"{what}: infeasible (some rows cannot be covered)")
            big *= 100.0  # a covered row's dual may be above M: raise it and go on
            h.changeColsCost(arts.size, arts, np.full(arts.size, big))
            fresh = False  # the same columns: from the basis
            continue
        limit = max(2000, ADD_PER_ROW * rows.size)
        if new.size > limit:
            new = new[np.argpartition(reduced[new], limit)[:limit]]
        block = csc_matrix(priced.block(new))
        h.addCols(new.size, priced.cost[new], np.zeros(new.size), np.full(new.size, np.inf),
                  block.nnz, block.indptr[:-1].astype(np.int32), block.indices.astype(np.int32),
                  block.data)  # fmt: skip
        in_lp[new] = True
        added.append(new)
        fresh = new.size > cold_fraction * h.getNumCol()
    x = np.asarray(h.getSolution().col_value)
    z = np.zeros(n_priced)
    z[np.concatenate(added)] = x[n_fixed + rows.size :]
    return x[:n_fixed], z, float(h.getInfo().objective_function_value)


def expiry_cny_per_scu(
    net: Network, pools: Sequence[NDArray[np.int64]], precision: Sequence[int]
) -> NDArray[np.float64]:
    """Per class (its feasible ``pools``, its ``precision`` index): what an expired SCU costs
    under the scenario's deferral rule, ``expiry_cny_per_kwh`` x the least kWh per SCU of its
    pools (:func:`suanwang.sim.metrics.expiry_penalty_cny` per job)."""
    rate = net.scenario.deferral.expiry_cny_per_kwh
    out = np.zeros(len(pools))
    for k, (p, prec) in enumerate(zip(pools, precision, strict=True)):
        out[k] = rate * float((net.pool_facility_kw[p] / net.pool_speed[p, prec]).min())
    return out


def offline_bound(
    net: Network,
    signals: Signals,
    jobs: Sequence[Job],
    bucket_h: int | None = None,
    time_limit_s: float = 600.0,
) -> Bound:
    hours = signals.hours
    # ---- classes
    keys: dict[tuple[bytes, int, int], int] = {}
    cls_pools: list[NDArray[np.int64]] = []
    cls_prec: list[int] = []
    cls_first: list[float] = []  # earliest arrival hour of the class
    cls_last: list[int] = []  # last hour a latency-bound class may run in (-1: horizon)
    job_cls: list[int] = []
    job_work: list[float] = []
    job_arrival: list[float] = []
    transfer = 0.0
    for job in jobs:
        info = net.job_class(job)
        if info.pools.size == 0:
            continue
        pools = np.sort(info.pools)
        last_hour = -1  # every class may run until the horizon (see the docstring)
        key = (pools.tobytes(), PRECISION_INDEX[job.precision], last_hour)
        k = keys.get(key)
        if k is None:
            k = keys[key] = len(cls_pools)
            cls_pools.append(pools)
            cls_prec.append(key[1])
            cls_last.append(last_hour)
        if len(cls_first) <= k:
            cls_first.append(job.submit_s / 3600.0)
        cls_first[k] = min(cls_first[k], job.submit_s / 3600.0)
        job_cls.append(k)
        job_work.append(job.work_scu)
        job_arrival.append(job.submit_s)
        transfer += job.data_gb * float(info.transfer_cost_cny_per_gb.min())
    n_cls = len(cls_pools)
    if n_cls == 0:
        return Bound(0.0, 0.0, 0.0, 0.0, 0.0, bucket_h or 1, 0, 0, 0)

    if bucket_h is None:
        sizes_p = np.array([p.size for p in cls_pools], dtype=np.float64)
        span_h = np.where(np.array(cls_last) < 0, hours, np.array(cls_last) + 1.0) - np.floor(
            np.array(cls_first)
        )

        def estimate(b: int) -> float:
            return float((sizes_p * (span_h / b + 2.0)).sum())

        bucket_h = next((b for b in (1, 2, 3, 4, 6, 8, 12) if estimate(b) <= MAX_VARIABLES), 24)
    nb = -(-hours // bucket_h)
    b_hours = np.full(nb, float(bucket_h))
    b_hours[-1] = hours - (nb - 1) * bucket_h

    jc = np.array(job_cls, dtype=np.int64)
    jw = np.array(job_work)
    jb = np.minimum((np.array(job_arrival) // 3600.0 // bucket_h).astype(np.int64), nb - 1)
    arrived = np.zeros((n_cls, nb))
    np.add.at(arrived, (jc, jb), jw)
    cum_arrived = np.cumsum(arrived, axis=1)
    total = cum_arrived[:, -1]
    first = np.argmax(arrived > 0, axis=1)
    last_h = np.array(cls_last, dtype=np.int64)
    last: NDArray[np.int64] = np.where(last_h < 0, nb - 1, np.minimum(last_h // bucket_h, nb - 1))

    price_b = _buckets(signals.price_cny_per_kwh, hours, bucket_h).min(axis=2)
    grid_carbon = (1 - signals.green_fraction) * signals.carbon_g_per_kwh
    carbon_b = _buckets(grid_carbon, hours, bucket_h).mean(axis=2)
    kw = net.pool_facility_kw
    cap = net.pool_capacity.astype(np.float64)

    # ---- columns: x blocks then C blocks; rows: capacity (pool, bucket) then work (class, bucket)
    n_cap_rows = net.n_pools * nb
    xs_k, xs_p, xs_b = [], [], []
    cs_k, cs_b = [], []
    for k in range(n_cls):
        bs = np.arange(first[k], last[k] + 1)
        pools = cls_pools[k]
        pp, bb = np.meshgrid(pools, bs, indexing="ij")
        xs_k.append(np.full(pp.size, k))
        xs_p.append(pp.ravel())
        xs_b.append(bb.ravel())
        cs_k.append(np.full(bs.size, k))
        cs_b.append(bs)
    xk = np.concatenate(xs_k)
    xp = np.concatenate(xs_p)
    xb = np.concatenate(xs_b)
    ck = np.concatenate(cs_k)
    cb = np.concatenate(cs_b)
    n_x, n_c = xk.size, ck.size
    work_row_offset = np.zeros(n_cls, dtype=np.int64)
    sizes = last - first + 1
    work_row_offset[1:] = np.cumsum(sizes)[:-1]

    def work_row(k: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.int64]:
        out: NDArray[np.int64] = n_cap_rows + work_row_offset[k] + (b - first[k])
        return out

    speed = net.pool_speed[xp, np.array(cls_prec)[xk]]
    x_cost = kw[xp] * price_b[net.pool_center[xp], xb]

    # x column: +1 in capacity row, -speed in work row
    x_rows = np.stack([xp * nb + xb, work_row(xk, xb)], axis=1)
    x_vals = np.stack([np.ones(n_x), -speed], axis=1)
    # C column (k,b): +1 in work row b, -1 in work row b+1 (if b+1 exists)
    has_next = cb < last[ck]
    c_rows_list = [work_row(ck, cb)]
    c_vals_list = [np.ones(n_c)]
    starts = np.zeros(n_x + n_c + 1, dtype=np.int64)
    counts = np.concatenate([np.full(n_x, 2), 1 + has_next.astype(np.int64)])
    starts[1:] = np.cumsum(counts)
    index = np.empty(starts[-1], dtype=np.int32)
    value = np.empty(starts[-1])
    index[: 2 * n_x] = x_rows.ravel()
    value[: 2 * n_x] = x_vals.ravel()
    c_idx = np.full((n_c, 2), -1, dtype=np.int64)
    c_val = np.zeros((n_c, 2))
    c_idx[:, 0] = c_rows_list[0]
    c_val[:, 0] = c_vals_list[0]
    c_idx[has_next, 1] = work_row(ck[has_next], cb[has_next] + 1)
    c_val[has_next, 1] = -1.0
    mask = c_idx >= 0
    index[2 * n_x :] = c_idx[mask]
    value[2 * n_x :] = c_val[mask]

    n_rows = n_cap_rows + int(sizes.sum())
    row_lo = np.concatenate([np.full(n_cap_rows, -np.inf), np.zeros(n_rows - n_cap_rows)])
    row_hi = np.concatenate(
        [np.repeat(cap, nb) * np.tile(b_hours, net.n_pools), np.zeros(n_rows - n_cap_rows)]
    )
    c_hi = cum_arrived[ck, cb]
    c_lo = np.where(cb == last[ck], total[ck], 0.0)
    # e[k]: expired SCU, -1 in class k's last work row (C[last] counts work done or expired)
    e_cost = expiry_cny_per_scu(net, cls_pools, cls_prec)
    index = np.concatenate([index, work_row(np.arange(n_cls), last).astype(np.int32)])
    value = np.concatenate([value, -np.ones(n_cls)])
    starts = np.concatenate([starts, starts[-1] + 1 + np.arange(n_cls)])
    col_cost = np.concatenate([x_cost, np.zeros(n_c), e_cost])
    col_lo = np.concatenate([np.zeros(n_x), c_lo, np.zeros(n_cls)])
    col_hi = np.concatenate([np.full(n_x, np.inf), c_hi, np.full(n_cls, np.inf)])

    h = solve_lp(
        col_cost, col_lo, col_hi, row_lo, row_hi, (starts, index, value), time_limit_s, "bound LP"
    )
    sol_all = np.asarray(h.getSolution().col_value)
    sol = sol_all[:n_x]
    expiry = float((sol_all[n_x + n_c :] * e_cost).sum())
    energy_cost = float(h.getInfo().objective_function_value) - expiry
    energy = float((sol * kw[xp]).sum())
    carbon = float((sol * kw[xp] * carbon_b[net.pool_center[xp], xb]).sum()) / 1e6
    return Bound(
        cost_cny=energy_cost + transfer + expiry,
        energy_cost_cny=energy_cost,
        transfer_cost_cny=transfer,
        energy_kwh=energy,
        carbon_t=carbon,
        bucket_h=bucket_h,
        variables=n_x + n_c + n_cls,
        classes=n_cls,
        jobs=len(job_cls),
        expiry_cost_cny=expiry,
    )
