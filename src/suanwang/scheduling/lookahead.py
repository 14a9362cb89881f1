"""Grids of the ``suanwang`` planner worked out ahead, for many jobs at once.

A decision's grid (:meth:`SuanwangPolicy.grid`: the objective of every candidate pool and
start) depends on the job, its submit time and the forecasts, and on the state only through
which pools have room now (and offers, which the simulator's runs without a market do not
have). A host that knows its next jobs (the simulator) asks for their first grids in one go:
the same elementwise arithmetic on all their rows together, so a few dozen numpy calls serve
hundreds of decisions instead of each. Each decision then applies room now and searches as
before: the numbers and the choices are the same (``bench_engine.py simulate`` prints a digest
of every decision to check it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from suanwang.core.cost import HOUR_S
from suanwang.core.jobs import Job
from suanwang.core.network import JobClassInfo
from suanwang.core.signals import Signals
from suanwang.scheduling.state import CapacityState

HOUR = HOUR_S

if TYPE_CHECKING:
    from suanwang.scheduling.objective import ObjectiveTable
    from suanwang.scheduling.planner import ClassRows, SuanwangPolicy


@dataclass(slots=True)
class Ready:
    """One job's first grid, worked out ahead: rows ``sel`` of its feasible pools (``pools``),
    each start ``start_h`` (h, now + transfer) with ``runtime_h``, and ``cost`` (pools x
    starts) as :meth:`SuanwangPolicy.grid` has it before the need for room now."""

    job: Job
    signals: Signals
    sel: np.ndarray
    pools: np.ndarray
    start_h: np.ndarray
    runtime_h: np.ndarray
    cost: np.ndarray

    def made_for(self, job: Job, state: CapacityState) -> bool:
        """Whether this is ``job``'s grid for a decision on ``state`` (at its submit time)."""
        return self.job is job and state.now_s == job.submit_s and self.signals is state.signals


def ready_grids(
    policy: SuanwangPolicy,
    jobs: Sequence[Job],
    infos: Sequence[JobClassInfo],
    state: CapacityState,
) -> dict[int, Ready]:
    """The first grid of each of ``jobs`` (``infos``: their feasible pools) that has a
    feasible pool, by ``id`` of the job, as its decision at its submit time would work it
    out: on its shortlist if it has one, else on every feasible pool. Jobs that may wait and
    jobs that may not are worked out apart (their grids have 1 + ``max_defer_h`` starts, 1)."""
    out: dict[int, Ready] = {}
    for deferrable in (True, False):
        rows = [
            (job, info)
            for job, info in zip(jobs, infos, strict=True)
            if info.pools.size and job.kind.deferrable is deferrable
        ]
        if rows:
            _batch(policy, rows, state, policy.width(rows[0][0]), out)
    return out


def _batch(
    policy: SuanwangPolicy,
    jobs: list[tuple[Job, JobClassInfo]],
    state: CapacityState,
    width: int,
    out: dict[int, Ready],
) -> None:
    """Grids of ``jobs`` (all with ``width`` starts) into ``out``."""
    table = policy.table(state)
    m = len(jobs)
    rows = [policy.rows(info, job.demand_units) for job, info in jobs]
    sels: list[np.ndarray] = [r.every for r in rows]
    if width > 1:  # a job with more pools than the shortlist plans on its shortlist
        k = policy.shortlist
        short = [a for a, (_, info) in enumerate(jobs) if info.pools.size > k]
        for a, sel in shortlists(policy, [jobs[a] for a in short], [rows[a] for a in short],
                                 state).items():  # fmt: skip
            sels[short[a]] = sel
    counts = np.fromiter((sel.size for sel in sels), dtype=np.int64, count=m)
    # each job's rows of its class's numbers, gathered in one call from all of them stacked
    sizes = np.array([r.every.size for r in rows], dtype=np.int64)
    first = np.cumsum(sizes) - sizes
    at = np.concatenate(sels) + np.repeat(first, counts)
    f = np.concatenate([r.f for r in rows], axis=1).take(at, axis=1)
    pools, centers = np.concatenate([r.i for r in rows], axis=1).take(at, axis=1)
    work, data, now, dl1, dl2, ckpt = np.array(
        [(job.work_scu, job.data_gb, job.submit_s, *policy.deadlines(job), job.checkpointable)
         for job, _ in jobs],
        dtype=np.float64,
    ).reshape(m, 6).T  # fmt: skip
    work_r, data_r, now_r, dl1_r, dl2_r = (
        np.repeat(v, counts) for v in (work, data, now, dl1, dl2)
    )
    suspendable = np.repeat(ckpt != 0.0, counts)
    xs, runtime_h, cost = costs(
        policy, table, f, centers, work_r, data_r, now_r, dl1_r, dl2_r, width, suspendable
    )
    start = 0
    for (job, _), sel in zip(jobs, sels, strict=True):
        end = start + sel.size
        out[id(job)] = Ready(
            job, state.signals, sel, pools[start:end], xs[start:end], runtime_h[start:end],
            cost[start:end],
        )  # fmt: skip
        start = end


def shortlists(
    policy: SuanwangPolicy,
    jobs: list[tuple[Job, JobClassInfo]],
    rows: list[ClassRows],
    state: CapacityState,
) -> dict[int, np.ndarray]:
    """:meth:`SuanwangPolicy._shortlist` of each of ``jobs`` (at its submit time, without
    offers), by position: jobs with as many feasible pools as each other together, the same
    arithmetic on a row each and ``argpartition`` along the rows (the same selection on each
    row as on it alone). A job that may keep to cheap hours (suspensions on) alone."""
    out: dict[int, np.ndarray] = {}
    k = policy.shortlist
    mean24, stride_m = policy._day_mean(state)
    alone = policy.suspend_window_h > 0
    together = []
    for a, (job, info) in enumerate(jobs):
        if alone and job.checkpointable:
            out[a] = policy._shortlist(job, info, state, job.submit_s, None)
        else:
            together.append(a)
    if not together:
        return out
    together.sort(key=lambda a: jobs[a][1].pools.size)  # stable: by size, then position
    picked = [jobs[a] for a in together]
    sizes = [info.pools.size for _, info in picked]
    per_row = np.array(sizes)
    # every job's pools in one row, the estimate's arithmetic on it at once
    centers = np.concatenate([info.centers for _, info in picked])
    kwh = np.concatenate([rows[a].kwh_per_scu for a in together])
    tc = np.concatenate([info.transfer_cost_cny_per_gb for _, info in picked])
    h, work, data = np.array(
        [(min(int(job.submit_s // HOUR_S), stride_m - 1), job.work_scu, job.data_gb)
         for job, _ in picked],
        dtype=np.float64,
    ).T  # fmt: skip
    price = mean24.take(centers * stride_m + np.repeat(h.astype(np.int64), per_row))
    est = np.repeat(work, per_row) * kwh * price
    est += np.repeat(data, per_row) * tc
    # then each run of jobs with as many pools as each other: a row each
    start, first = 0, 0
    while first < len(together):
        n = sizes[first]
        last = first
        while last < len(together) and sizes[last] == n:
            last += 1
        g = last - first
        short = est[start : start + g * n].reshape(g, n).argpartition(k, axis=1)[:, :k]
        short.sort(axis=1)
        for a, sel in zip(together[first:last], short, strict=True):
            out[a] = sel
        start += g * n
        first = last
    return out


def costs(
    policy: SuanwangPolicy,
    table: ObjectiveTable,
    f: np.ndarray,
    centers: np.ndarray,
    work_scu: np.ndarray | float,
    data_gb: np.ndarray | float,
    now_s: np.ndarray | float,
    deadline_h: np.ndarray | float,
    late_h: np.ndarray | float,
    width: int,
    suspendable: np.ndarray | bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid's arithmetic on candidate rows (one job's, or many jobs' with their numbers
    per row): ``f`` rows as :class:`~suanwang.scheduling.planner.ClassRows` has them; a start
    is inadmissible if its run ends past ``deadline_h``, or a deferred one past ``late_h``
    (the deadline less its margin; inf: no deadline). Returns each row's start (h), runtime
    (h) and objective per start (rows x ``width``). Every element goes through the same
    operations whether its job's numbers come as a scalar or per row: the same result.
    ``suspendable`` (per row, or for all): the job can be suspended through price peaks
    (checkpointable), so its energy is the cheaper of running straight through and running
    its cheapest hours (:func:`suspended_windows`)."""
    offsets_h = policy._offsets_h[:width]
    window_h = policy.suspend_window_h
    one_job = not isinstance(work_scu, np.ndarray) and not isinstance(data_gb, np.ndarray)
    if (
        one_job
        and not isinstance(now_s, np.ndarray)
        and not isinstance(deadline_h, np.ndarray)
        and not isinstance(late_h, np.ndarray)
        and not (window_h > 0 and np.any(suspendable))
    ):  # one job's rows, no suspending: compiled (the planner's every decision)
        return _one_job_costs(
            f,
            centers,
            float(work_scu),
            float(data_gb),
            float(now_s),
            float(deadline_h),
            float(late_h),
            offsets_h,
            table.cum,
            table.val,
            table.stride,
            table.hours,
            table.objective.wait_price_cny_per_kwh,
        )
    runtime_h = work_scu / f[0]
    power = f[1]
    xs = (now_s + data_gb * f[2]) * (1.0 / HOUR_S)
    energy = table.windows(centers, xs, runtime_h, width)
    if window_h > 0 and np.any(suspendable):
        rows = np.arange(xs.size) if suspendable is True else np.flatnonzero(suspendable)
        late = late_h[rows] if isinstance(late_h, np.ndarray) else late_h
        slack = np.clip(np.floor(late - xs[rows] - runtime_h[rows]), 0.0, window_h)
        cheap = suspended_windows(table, centers[rows], xs[rows], runtime_h[rows], slack, width)
        energy[rows] = np.minimum(energy[rows], cheap)
    waited_h = (xs - now_s / HOUR_S)[:, None] + offsets_h
    energy += table.objective.wait_price_cny_per_kwh * waited_h
    cost = power[:, None] * energy + (data_gb * f[3])[:, None]
    ends_h = (xs + runtime_h)[:, None] + offsets_h
    late = ends_h > (deadline_h[:, None] if isinstance(deadline_h, np.ndarray) else deadline_h)
    if width > 1:
        late_col = late_h[:, None] if isinstance(late_h, np.ndarray) else late_h
        late[:, 1:] |= ends_h[:, 1:] > late_col
    cost[late] = np.inf
    return xs, runtime_h, cost


@njit(cache=True)
def _one_job_costs(
    f: np.ndarray,
    centers: np.ndarray,
    work_scu: float,
    data_gb: float,
    now_s: float,
    deadline_h: float,
    late_h: float,
    offsets_h: np.ndarray,
    cum: np.ndarray,
    val: np.ndarray,
    stride: int,
    hours: int,
    wait_price: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`costs` of one job's rows without suspending, by the float operations numpy
    evaluates there, in its order (``ObjectiveTable.windows`` for the energy): the same
    numbers (tests/scheduling/test_lookahead.py). Compiled: the planner's every decision
    works out a grid of a few pools and starts, where numpy's calls cost more than their
    arithmetic."""
    n = centers.size
    width = offsets_h.size
    xs = np.empty(n)
    runtime_h = np.empty(n)
    cost = np.empty((n, width))
    per_h = 1.0 / HOUR
    now_h = now_s / HOUR
    for i in range(n):
        run = work_scu / f[0, i]
        x = (now_s + data_gb * f[2, i]) * per_h
        xs[i] = x
        runtime_h[i] = run
        end = x + run
        he = min(int(end), hours)
        hs = min(int(x), hours)
        row = centers[i] * stride
        fe, fs = end - he, x - hs
        waited = x - now_h
        power, moved = f[1, i], data_gb * f[3, i]
        for k in range(width):
            ie, js = row + he + k, row + hs + k
            energy = (cum[ie] + fe * val[ie]) - (cum[js] + fs * val[js])
            energy = energy + wait_price * (waited + offsets_h[k])
            c = power * energy + moved
            ends = end + offsets_h[k]
            if ends > deadline_h or (k > 0 and ends > late_h):
                c = np.inf
            cost[i, k] = c
    return xs, runtime_h, cost


def suspended_windows(
    table: ObjectiveTable,
    centers: np.ndarray,
    start_h: np.ndarray,
    runtime_h: np.ndarray,
    slack_h: np.ndarray,
    width: int,
    chunk: int = 128,
) -> np.ndarray:
    """The objective per kW of running ``runtime_h`` hours in the cheapest hours among the
    ``ceil(runtime_h) + slack_h`` whole hours from the start's hour ``floor(start_h) + k``,
    for each ``k < width`` (rows x ``width``): what suspending a checkpointable run through
    its center's price peaks costs (:meth:`SuanwangPolicy.migrations` suspends so). A
    fractional last hour counts at the next cheapest hour's price."""
    n = start_h.size
    out = np.empty((n, width))
    stride, row_end = table.stride, table.stride - 1
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        need = np.ceil(runtime_h[a:b] - 1e-9).astype(np.int64)
        span = need + slack_h[a:b].astype(np.int64)
        longest = int(span.max())
        first = np.minimum(start_h[a:b].astype(np.int64), table.hours)
        base = centers[a:b] * stride
        at = first[:, None, None] + np.arange(width)[None, :, None] + np.arange(longest)
        idx = base[:, None, None] + np.minimum(at, row_end)
        vals = table.val.take(idx)
        vals[np.broadcast_to(np.arange(longest) >= span[:, None, None], vals.shape)] = np.inf
        vals.sort(axis=2)
        whole = np.floor(runtime_h[a:b] + 1e-9).astype(np.int64)
        cum = np.concatenate([np.zeros((*vals.shape[:2], 1)), np.cumsum(vals, axis=2)], axis=2)
        r = np.arange(b - a)[:, None]
        k = np.arange(width)[None, :]
        frac = (runtime_h[a:b] - whole)[:, None]
        nxt = vals[r, k, np.minimum(whole, longest - 1)[:, None]]  # inf only when frac is 0
        out[a:b] = cum[r, k, whole[:, None]] + frac * np.where(frac > 0, nxt, 0.0)
    return out
