"""The non-preemptive offline bound: whole jobs choose a pool and a start (HiGHS LP relaxation).

Model. A job that cannot checkpoint runs on one pool, holding all its units for its whole
runtime ``r = work / (units x speed_p)``, from one start ``s``: from its arrival to the latest
start the scenario's deferral rule admits (its data's arrival at ``p`` plus ``max_defer_h``:
:class:`~suanwang.core.scenario.DeferralRule`) and that still ends by the horizon; or it
expires, at the rule's penalty. Jobs are grouped into classes ``k`` of the same feasible
pools, precision, units, arrival window (the time bucket; wider when that makes more than
``MAX_CLASSES`` classes) and runtime bin (runtimes within a factor ``RUNTIME_RATIO``); each
class's starts are cut into intervals ``b`` (``bucket_h`` hours for the first ``fine_h`` hours
after the class arrives, ``coarse_h`` hours after that). Variables:

* ``n[k,p,b] >= 0`` jobs of class ``k`` that start on pool ``p`` in interval ``b``;
* ``e[k] >= 0`` jobs of class ``k`` that expire (not started within the limit);
* for checkpointable work, which a policy may move or suspend, the fluid model of
  :mod:`suanwang.scheduling.bound` (unit-hours per class, pool and bucket).

    minimise  sum n[k,p,b] x c[k,p,b]  +  fluid energy  +  constants
    subject to sum_{p,b} n[k,p,b] + e[k] = jobs of class k     (every job starts or expires)
               sum n[k,p,b] x units_k x busy[k,p,b,t] + fluid <= cap_p x (bucket t's hours)

Why it is a lower bound on the cost of every schedule that completes the same jobs by the
horizon (any policy, any queueing, deadlines met or not): take such a schedule and count, per
class, the jobs that start on ``p`` in interval ``b``; that is a feasible ``n`` (checkpointable
work as in the fluid bound), and each job's real cost is at least what the LP charges it:

* energy: a job's run ``[s, s + r)`` costs ``units x kW_p x (F_c(s + r) - F_c(s))`` with
  ``F_c`` the cumulative price. Split ``r = r_lo + (r - r_lo)`` with ``r_lo`` the class's
  shortest runtime on ``p``: the first part costs at least ``m[k,p,b] = min over s in b of
  F_c(s + r_lo) - F_c(s)``, computed exactly (the function is piecewise linear in ``s`` with
  breaks where ``s`` or ``s + r_lo`` is a whole hour, so its minimum over an hour is at ``h``,
  ``h + frac`` or ``h + 1``); the rest, ``(work - work_lo) x kWh/SCU_p``, costs at least the
  cheapest price of any feasible center after arrival, a per-job constant. ``r_lo`` is priced
  rounded down to a grid (``quantize_runtime``: windows shared between classes), its excess
  over the grid value at the center's cheapest price after the class's first arrival;
* transfer, at the *same* pool: ``data x cost_per_gb(origin, p) >= t[k,p]``, the class's least,
  and each job's excess over it is at least its least excess over the class's pools (a
  constant);
* capacity: whatever ``s`` in ``[lo, hi]`` the job took, it holds its units over
  ``[hi, lo + r_lo)``, so counting only that part of each bucket never exceeds the real load;
* starts: the simulator refuses a start later than the job's data arrival at its pool plus
  the rule's limit (the job expires instead), so every start lies in a column's interval:
  ``hi`` is at most the class's latest (arrival + transfer time to ``p``) + the limit;
* expiry: an expired job costs ``expiry_cny_per_kwh x work x`` its least kWh per SCU (and the
  transfer it paid); ``e[k]`` is charged that at the class's least work and least transfer,
  and the per-job constants above (excess work priced at no more than the rule's rate).

The relaxation drops integrality, deadlines, transfer time and the engine's queues, and lowers
prices and loads as above, so it cannot exceed the cost of any such schedule. Starts are
limited by the deferral rule, which binds queues too (a job that queued past its limit
expired, and the LP has that choice at the same price). Deadlines are not a limit: the
simulator lets a job miss its deadline (a miss is counted), so a bound that cut starts at
deadlines would not bound such runs. Checkpointable work stays fluid and unlimited in time:
a moved job may queue again after its first start, which the rule does not limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from suanwang.core.jobs import Job
from suanwang.core.network import PRECISION_INDEX, Network
from suanwang.core.signals import Signals
from suanwang.scheduling.bound import (
    Bound,
    BoundError,
    Priced,
    _buckets,
    expiry_cny_per_scu,
    solve_lp_by_columns,
)

RUNTIME_RATIO = 1.15
# a class's arrival window (hours): the time bucket, else the first of these that makes
# at most MAX_CLASSES classes (the LP's size; see docs/model.md)
CLASS_WINDOWS_H = (6.0, 12.0, 24.0, 48.0, 168.0)
MAX_CLASSES = 55_000
Q_RATIO = 1.005  # runtimes priced on a geometric grid of this ratio (rounded down) ...
Q_MIN_H = 1.0 / 60.0  # ... from one minute (shorter: 0, the whole runtime at the floor price)
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class TightBound(Bound):
    """A :class:`Bound` with the seconds it took to build and solve and the jobs it let
    expire (whole jobs, fractional)."""

    solve_s: float = 0.0
    expired_jobs: float = 0.0


def _cat(parts: Sequence[NDArray[np.generic]]) -> NDArray[np.generic]:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def quantize_runtime(r_h: F64) -> tuple[I64, F64]:
    """Each runtime (hours) rounded down to the grid ``Q_MIN_H x Q_RATIO^q``: its index ``q``
    and value (``-1`` and ``0`` below ``Q_MIN_H``), never above the runtime."""
    q = np.floor(np.log(np.maximum(r_h, Q_MIN_H) / Q_MIN_H) / np.log(Q_RATIO)).astype(np.int64)
    q -= Q_MIN_H * Q_RATIO**q > r_h  # a rounding above the runtime: one step down
    short = r_h < Q_MIN_H
    q[short] = -1
    r_q: F64 = np.where(short, 0.0, Q_MIN_H * Q_RATIO ** np.maximum(q, 0))
    return q, r_q


def _window_min(signals: Signals, center: I64, r_h: F64, hours: int) -> F64:
    """``M[i, h]``: min over ``s`` in ``[h, h + 1]`` of ``F(s + r) - F(s)`` (price integral
    over ``[s, s + r)``), for each pair ``i`` of (center, runtime in hours)."""
    h = np.arange(hours + 1, dtype=np.float64)
    frac = np.ceil(r_h) - r_h  # s = h + frac puts s + r on a whole hour
    c = center[:, None]

    def g(s: F64) -> F64:
        out: F64 = signals.cumulative("price", c, (s + r_h[:, None]) * 3600.0)
        out -= signals.cumulative("price", c, s * 3600.0)
        return out

    at_int = g(np.broadcast_to(h, (center.size, hours + 1)))
    at_frac = g(h[None, :hours] + frac[:, None])
    m: F64 = np.minimum(np.minimum(at_int[:, :hours], at_int[:, 1:]), at_frac)
    return m


def _busy(
    idx: I64,
    lo: F64,
    hi: F64,
    pool: I64,
    units: F64,
    cover: I64,
    bucket_h: int,
    nb: int,
    n_rows: int,
) -> Any:
    """Columns ``idx`` of the whole jobs' LP: 1 in their cover row, and in each capacity row
    (pool x bucket) the units they hold there times the hours of ``[lo, hi)`` in the bucket."""
    from scipy.sparse import csc_matrix

    k = np.arange(idx.size)
    r_parts, c_parts, v_parts = [cover[idx]], [k], [np.ones(idx.size)]
    s, e = lo[idx], hi[idx]
    has = e > s
    ci = np.nonzero(has)[0]
    b0 = (s[ci] // bucket_h).astype(np.int64)
    b1 = np.minimum(((e[ci] - 1e-12) // bucket_h).astype(np.int64), nb - 1)
    for d in range(int((b1 - b0).max()) + 1 if ci.size else 0):
        live = b0 + d <= b1
        b = b0[live] + d
        j = ci[live]
        ov = np.minimum(e[j], (b + 1) * bucket_h) - np.maximum(s[j], b * bucket_h)
        pos = ov > 0
        r_parts.append(pool[idx[j[pos]]] * nb + b[pos])
        c_parts.append(j[pos])
        v_parts.append(ov[pos] * units[idx[j[pos]]])
    m = csc_matrix(
        (np.concatenate(v_parts), (np.concatenate(r_parts), np.concatenate(c_parts))),
        shape=(n_rows, idx.size),
    )
    m.sum_duplicates()
    return m


def _busy_dual(
    y: F64, lo: F64, hi: F64, pool: I64, b_len: F64, bucket_h: int, nb: int, n_pools: int
) -> F64:
    """For every column, the sum over the capacity rows of its hours there times the rows'
    duals ``y`` (per unit held): the integral over ``[lo, hi)`` of its pool's dual per hour,
    from the running sums of the duals over the buckets."""
    per_h = y[: n_pools * nb].reshape(n_pools, nb)
    upto = np.zeros((n_pools, nb + 1))
    np.cumsum(per_h * b_len[None, :], axis=1, out=upto[:, 1:])

    def at(t: F64) -> F64:
        b = np.minimum((t // bucket_h).astype(np.int64), nb - 1)
        out: F64 = upto[pool, b] + (t - b * bucket_h) * per_h[pool, b]
        return out

    return np.where(hi > lo, at(hi) - at(lo), 0.0)


def tight_bound(
    net: Network,
    signals: Signals,
    jobs: Sequence[Job],
    bucket_h: int = 2,
    fine_h: int = 24,
    coarse_h: int = 24,
    time_limit_s: float = 600.0,
    class_h: float | None = None,
    runtime_ratio: float = RUNTIME_RATIO,
    plan: dict[str, F64] | None = None,
) -> TightBound:
    """The non-preemptive LP bound (see the module docstring).

    ``plan``: a dict to fill with the LP's choice (what a policy can be compared with; the
    bound's value is the same): for whole jobs, per taken column, ``jobs`` (fractional),
    ``pool``, ``precision``, ``start_h`` (its interval's earliest start), ``arrival_h`` (its
    class's first arrival), ``kwh`` and ``cny`` (what the LP charges: energy of the shortest
    runtime and transfer); for checkpointable work, per fluid variable, ``fluid_pool``,
    ``fluid_precision``, ``fluid_bucket_h`` (start hour), ``fluid_kwh`` and ``fluid_cny``;
    what expires: per whole class ``expired`` (jobs) and ``expired_cny``, per fluid class
    ``fluid_expired_scu`` and ``fluid_expired_cny``.
    """
    import time

    t_start = time.perf_counter()
    hours = signals.hours
    H = float(hours)
    nb = -(-hours // bucket_h)
    b_len = np.full(nb, float(bucket_h))
    b_len[-1] = hours - (nb - 1) * bucket_h
    kw = net.pool_facility_kw
    cap = net.pool_capacity.astype(np.float64)
    price = signals.price_cny_per_kwh
    # cheapest price per center from each hour on (the excess work's floor)
    suffix_min = np.minimum.accumulate(price[:, ::-1], axis=1)[:, ::-1]

    # ---- classify jobs: whole-job classes, and checkpointable (fluid) work
    j_key: list[tuple[bytes, int, int, int]] = []  # pools, precision, units, runtime bin
    j_pools: list[I64] = []
    j_work: list[float] = []
    j_submit: list[float] = []
    j_tc: list[F64] = []
    j_ready: list[F64] = []  # hour the job's data arrives at each of its pools
    fluid: list[Job] = []
    transfer_fluid = 0.0
    n_jobs = 0
    for job in jobs:
        info = net.job_class(job)
        if info.pools.size == 0:
            continue
        n_jobs += 1
        order = np.argsort(info.pools)
        tc = job.data_gb * info.transfer_cost_cny_per_gb[order]
        if job.checkpointable:
            fluid.append(job)
            transfer_fluid += float(tc.min())
            continue
        pools = info.pools[order]
        ref_h = job.work_scu / (job.demand_units * float(info.speed.max()))
        rbin = int(np.floor(np.log(max(ref_h, 1e-9)) / np.log(runtime_ratio)))
        j_key.append((pools.tobytes(), PRECISION_INDEX[job.precision], job.demand_units, rbin))
        j_pools.append(pools)
        j_work.append(job.work_scu)
        j_submit.append(job.submit_s / 3600.0)
        j_tc.append(tc)
        j_ready.append((job.submit_s + job.data_gb * info.transfer_s_per_gb[order]) / 3600.0)
    if class_h is None:  # the narrowest arrival window that keeps the LP small enough
        windows = [float(bucket_h)] + [w for w in CLASS_WINDOWS_H if w > bucket_h]
        class_h = windows[-1]
        for w in windows:
            if len({(*key, int(s // w)) for key, s in zip(j_key, j_submit, strict=True)}) <= (
                MAX_CLASSES
            ):
                class_h = w
                break
    keys: dict[tuple[bytes, int, int, int, int], int] = {}
    cls_pools: list[I64] = []
    cls_prec: list[int] = []
    cls_units: list[int] = []
    j_cls: list[int] = []
    for key, s, pools in zip(j_key, j_submit, j_pools, strict=True):
        k = keys.setdefault((*key, int(s // class_h)), len(cls_pools))
        if k == len(cls_pools):
            cls_pools.append(pools)
            cls_prec.append(key[1])
            cls_units.append(key[2])
        j_cls.append(k)
    n_cls = len(cls_pools)
    if n_jobs == 0:
        return TightBound(0.0, 0.0, 0.0, 0.0, 0.0, bucket_h, 0, 0, 0,
                          solve_s=time.perf_counter() - t_start)  # fmt: skip
    jc = np.array(j_cls, dtype=np.int64)
    jw = np.array(j_work)
    js = np.array(j_submit)
    count = np.bincount(jc, minlength=n_cls).astype(np.float64)
    w_lo = np.full(n_cls, np.inf)
    np.minimum.at(w_lo, jc, jw)
    w_hi = np.zeros(n_cls)
    np.maximum.at(w_hi, jc, jw)
    a_lo = np.full(n_cls, np.inf)
    np.minimum.at(a_lo, jc, js)
    tau = [np.full(p.size, np.inf) for p in cls_pools]
    for k, tc in zip(j_cls, j_tc, strict=True):
        np.minimum(tau[k], tc, out=tau[k])
    transfer_excess = sum(float((tc - tau[k]).min()) for k, tc in zip(j_cls, j_tc, strict=True))
    # the latest start the deferral rule admits: the class's latest data arrival per pool + limit
    ready = [np.full(p.size, -np.inf) for p in cls_pools]
    for k, r in zip(j_cls, j_ready, strict=True):
        np.maximum(ready[k], r, out=ready[k])
    rule = net.scenario.deferral
    e_rate = expiry_cny_per_scu(net, cls_pools, cls_prec)  # an expired SCU, per class

    # ---- pairs (class, pool): runtimes, energy per SCU, cheapest price after arrival
    pair_k = _cat([np.full(p.size, k) for k, p in enumerate(cls_pools)]).astype(np.int64)
    pair_p = _cat(cls_pools).astype(np.int64)
    prec_arr = np.array(cls_prec, dtype=np.int64)
    units_arr = np.array(cls_units, dtype=np.float64)
    speed = net.pool_speed[pair_p, prec_arr[pair_k]]
    pair_c = net.pool_center[pair_p]
    r_lo = w_lo[pair_k] / (units_arr[pair_k] * speed)
    kwh_per_scu = kw[pair_p] / speed
    first_h = np.minimum(np.floor(a_lo[pair_k]).astype(np.int64), hours - 1)
    floor_price = suffix_min[pair_c, first_h] * kwh_per_scu
    excess_floor = np.full(n_cls, np.inf)
    np.minimum.at(excess_floor, pair_k, floor_price)
    np.minimum(excess_floor, e_rate, out=excess_floor)  # an expired job pays no more
    energy_excess = float(((jw - w_lo[jc]) * excess_floor[jc]).sum()) if n_cls else 0.0

    # ---- columns: start slots per pair, at edges (hours) relative to the class's arrival
    # bucket's start; a column is (pair, slot), its start interval [lo, hi] from ``slot``
    fine = np.arange(0, fine_h, bucket_h, dtype=np.float64)
    coarse = np.arange(fine_h, H + coarse_h, coarse_h, dtype=np.float64)
    rel_edges = np.concatenate([fine, coarse])
    n_slots = rel_edges.size - 1
    base = np.floor(a_lo / bucket_h) * bucket_h
    last_start = np.minimum(H - r_lo, _cat(ready).astype(np.float64) + rule.max_defer_s / 3600.0)

    def slot(pair: Any, s: Any) -> tuple[F64, F64]:
        k = pair_k[pair]
        lo: F64 = np.maximum(base[k] + rel_edges[s], a_lo[k])
        hi: F64 = np.minimum(base[k] + rel_edges[s + 1], last_start[pair])
        return lo, hi

    # energy of the first r_lo hours: r_lo rounded down to the grid (shared by every pair of
    # the same center and grid runtime), its excess at the floor price after arrival; the
    # minimum over a slot's hours from a sparse table of the window minima
    q, r_q = quantize_runtime(r_lo)
    width = int(q.max(initial=0)) + 2
    row_key, pair_u = np.unique(pair_c * width + q + 1, return_inverse=True)
    u_c, u_q = row_key // width, row_key % width - 1
    levels = max(1, int(np.ceil(np.log2(max(coarse_h, fine_h, bucket_h) + 2))))
    table = np.zeros((levels, row_key.size, hours))
    live = np.nonzero(u_q >= 0)[0]
    for i0 in range(0, live.size, 2048):
        rows_ = live[i0 : i0 + 2048]
        table[0, rows_] = _window_min(signals, u_c[rows_], Q_MIN_H * Q_RATIO ** u_q[rows_], hours)
    for lv in range(1, levels):
        w = 1 << (lv - 1)
        table[lv] = table[lv - 1]
        np.minimum(table[lv - 1, :, :-w], table[lv - 1, :, w:], out=table[lv, :, :-w])
    flat = table.reshape(-1)
    add_q = (r_lo - r_q) * suffix_min[pair_c, first_h]
    scale = units_arr[pair_k] * kw[pair_p]
    tau_pair = _cat(tau).astype(np.float64)

    cp_parts: list[NDArray[np.int32]] = []
    cost_parts: list[F64] = []
    n_per_pair = np.zeros(pair_k.size, dtype=np.int64)
    cheapest = np.full(pair_k.size, np.inf)
    arg_cheapest = np.zeros(pair_k.size, dtype=np.int64)
    slots = np.arange(n_slots)
    for i0 in range(0, pair_k.size, 65536):
        pr = np.arange(i0, min(i0 + 65536, pair_k.size))
        lo, hi = slot(pr[:, None], slots[None, :])
        ok = lo <= hi
        h0 = np.floor(lo).astype(np.int64)
        h1 = np.minimum(np.floor(hi).astype(np.int64), hours - 1)
        h0 = np.minimum(h0, h1)
        lvl = np.floor(np.log2(np.maximum(h1 - h0 + 1, 1))).astype(np.int64)
        row = (lvl * row_key.size + pair_u[pr][:, None]) * hours
        m = np.minimum(flat[row + h0], flat[row + h1 - (1 << lvl) + 1])
        cost = np.where(ok, scale[pr, None] * (m + add_q[pr, None]) + tau_pair[pr, None], np.inf)
        n_per_pair[pr] = ok.sum(axis=1)
        cheapest[pr] = cost.min(axis=1)
        arg_cheapest[pr] = np.argmin(cost, axis=1)  # slot; made a column index below
        pi, si = np.nonzero(ok)
        cp_parts.append((pi + i0).astype(np.int32))
        cost_parts.append(cost[pi, si])
    del table, flat
    cp = np.concatenate(cp_parts) if cp_parts else np.zeros(0, np.int32)
    col_cost = np.concatenate(cost_parts) if cost_parts else np.zeros(0)
    del cp_parts, cost_parts
    if np.bincount(pair_k, weights=n_per_pair, minlength=n_cls).min(initial=1) == 0:
        raise BoundError("some job cannot finish on any feasible pool before the horizon")
    pair_off = np.zeros(pair_k.size + 1, dtype=np.int64)
    np.cumsum(n_per_pair, out=pair_off[1:])
    # a pair's slots that hold a start are its first n_per_pair (slot 0 holds the arrival,
    # and the later ones start later): column pair_off[p] + s is slot s of pair p
    # the first LP's columns: each class's four cheapest pairs, at their cheapest slot
    has = np.nonzero(n_per_pair > 0)[0]
    order = has[np.lexsort((cheapest[has], pair_k[has]))]
    rank = np.arange(order.size) - np.searchsorted(pair_k[order], pair_k[order], side="left")
    start = pair_off[order[rank < 4]] + arg_cheapest[order[rank < 4]]
    n_cols = cp.size

    def lo_hi(idx: I64) -> tuple[I64, F64, F64]:
        """Pair and start interval of columns ``idx``."""
        pair = cp[idx].astype(np.int64)
        lo, hi = slot(pair, idx - pair_off[pair])
        return pair, lo, hi

    def busy(idx: I64) -> Any:
        """Columns ``idx``: their capacity rows hold the busy part ``[hi, lo + r_lo)``."""
        pair, lo, hi = lo_hi(idx)
        b_hi = np.maximum(np.minimum(lo + r_lo[pair], H), hi)
        j = np.arange(idx.size)
        return _busy(j, hi, b_hi, pair_p[pair], units_arr[pair_k[pair]], r_cover + pair_k[pair],
                     bucket_h, nb, n_rows)  # fmt: skip

    def reduced(y: F64) -> F64:
        """Reduced costs; 0 for the columns shown not to be negative: with the capacity
        duals <= 0 (as they are, rows ``<= cap``), a column costs at least its cost minus its
        class's dual, so only pairs whose cheapest column is below that dual are priced."""
        out = np.zeros(n_cols)
        yk = y[r_cover + pair_k]
        sure = y[:n_cap].max(initial=0.0) <= 0.0
        pairs = np.nonzero(cheapest - yk < 0.0)[0] if sure else np.arange(pair_k.size)
        ends = np.cumsum(n_per_pair[pairs])
        step = 1 << 22  # about 4 million columns at once
        for part in np.split(pairs, np.searchsorted(ends, np.arange(step, ends[-1:].sum(), step))):
            lens = n_per_pair[part]
            idx = np.repeat(pair_off[part] - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
            if sure:
                idx = idx[col_cost[idx] - yk[cp[idx]] < 0.0]
            pair, lo, hi = lo_hi(idx)
            b_hi = np.maximum(np.minimum(lo + r_lo[pair], H), hi)
            dual = _busy_dual(y, hi, b_hi, pair_p[pair], b_len, bucket_h, nb, net.n_pools)
            out[idx] = col_cost[idx] - yk[pair] - units_arr[pair_k[pair]] * dual
        return out

    # ---- fluid classes (checkpointable work): x[f,p,t] unit-hours, C[f,t] work done by t
    fkeys: dict[tuple[bytes, int], int] = {}
    f_pools: list[I64] = []
    f_prec: list[int] = []
    f_of: list[int] = []
    for job in fluid:
        info = net.job_class(job)
        key2 = (np.sort(info.pools).tobytes(), PRECISION_INDEX[job.precision])
        f = fkeys.setdefault(key2, len(f_pools))
        if f == len(f_pools):
            f_pools.append(np.sort(info.pools))
            f_prec.append(key2[1])
        f_of.append(f)
    n_f = len(f_pools)
    price_b = _buckets(price, hours, bucket_h).min(axis=2)
    arrived = np.zeros((n_f, nb))
    if fluid:
        fb = np.minimum((np.array([j.submit_s for j in fluid]) // 3600.0 // bucket_h), nb - 1)
        np.add.at(arrived, (np.array(f_of), fb.astype(np.int64)), [j.work_scu for j in fluid])
    cum_arrived = np.cumsum(arrived, axis=1)
    f_first = np.argmax(arrived > 0, axis=1) if n_f else np.zeros(0, np.int64)
    fx_f, fx_p, fx_b = [], [], []
    for f in range(n_f):
        pp_, bb_ = np.meshgrid(f_pools[f], np.arange(f_first[f], nb), indexing="ij")
        fx_f.append(np.full(pp_.size, f))
        fx_p.append(pp_.ravel())
        fx_b.append(bb_.ravel())
    xf = np.concatenate(fx_f).astype(np.int64) if n_f else np.zeros(0, np.int64)
    xp = np.concatenate(fx_p).astype(np.int64) if n_f else np.zeros(0, np.int64)
    xb = np.concatenate(fx_b).astype(np.int64) if n_f else np.zeros(0, np.int64)
    cf = np.repeat(np.arange(n_f), nb - f_first) if n_f else np.zeros(0, np.int64)
    cb = np.concatenate([np.arange(f_first[f], nb) for f in range(n_f)]) if n_f else cf
    f_row0 = np.zeros(n_f, dtype=np.int64)
    if n_f:
        f_row0[1:] = np.cumsum(nb - f_first)[:-1]
    n_fx, n_fc = xf.size, cf.size

    # ---- the LP: columns x, C (always in it) and n (whole jobs, priced: column generation);
    # rows capacity, cover (per class), work
    from scipy.sparse import coo_matrix

    n_cap = net.n_pools * nb
    r_cover = n_cap
    r_work = n_cap + n_cls

    def work_row(f: I64, b: I64) -> I64:
        out: I64 = r_work + f_row0[f] + (b - f_first[f])
        return out

    c0 = n_fx
    e0 = n_fx + n_fc  # expire columns: whole classes (cover rows), then fluid classes
    expire_cny = e_rate * w_lo + np.array([t.min() for t in tau])  # one job of class k
    f_rate = expiry_cny_per_scu(net, f_pools, f_prec)
    f_speed = net.pool_speed[xp, np.array(f_prec, dtype=np.int64)[xf]] if n_f else np.zeros(0)
    nxt = cb < nb - 1
    f_all = np.arange(n_f)
    rows = np.concatenate([
        xp * nb + xb,  # fluid: capacity
        work_row(xf, xb),  # fluid: work done
        work_row(cf, cb),  # C[f,t]
        work_row(cf[nxt], cb[nxt] + 1),  # -C[f,t] in row t+1
        r_cover + np.arange(n_cls),  # e[k]: whole jobs of class k that expire
        work_row(f_all, np.full(n_f, nb - 1)),  # fluid SCU that expire: counted as done
    ])  # fmt: skip
    cols = np.concatenate([np.arange(n_fx), np.arange(n_fx), c0 + np.arange(n_fc),
                           c0 + np.nonzero(nxt)[0], e0 + np.arange(n_cls + n_f)])  # fmt: skip
    vals = np.concatenate([np.ones(n_fx), -f_speed, np.ones(n_fc), -np.ones(int(nxt.sum())),
                           np.ones(n_cls), -np.ones(n_f)])  # fmt: skip
    n_rows = r_work + n_fc
    n_base = e0 + n_cls + n_f
    a = coo_matrix((vals, (rows, cols)), shape=(n_rows, n_base)).tocsc()
    cap_hi = np.repeat(cap, nb) * np.tile(b_len, net.n_pools)
    row_lo = np.concatenate([np.full(n_cap, -np.inf), count, np.zeros(n_fc)])
    row_hi = np.concatenate([cap_hi, count, np.zeros(n_fc)])
    total_f = cum_arrived[:, -1] if n_f else np.zeros(0)
    c_lo = np.where(cb == nb - 1, total_f[cf], 0.0) if n_f else np.zeros(0)
    c_hi = cum_arrived[cf, cb] if n_f else np.zeros(0)
    cover = pair_k.astype(np.int32)[cp]
    cover += r_cover
    whole = Priced(col_cost, cover, busy, reduced, start)
    x_sol_all, n_sol, lp_value = solve_lp_by_columns(
        np.concatenate(
            [kw[xp] * price_b[net.pool_center[xp], xb], np.zeros(n_fc), expire_cny, f_rate]
        ),
        np.concatenate([np.zeros(n_fx), c_lo, np.zeros(n_cls + n_f)]),
        np.concatenate([np.full(n_fx, np.inf), c_hi, np.full(n_cls + n_f, np.inf)]),
        a,
        row_lo,
        row_hi,
        whole,
        time_limit_s,
        "tight bound LP",
    )
    n_all = n_cols + n_base
    x_sol = x_sol_all[:n_fx]
    e_sol = x_sol_all[e0 : e0 + n_cls]
    ef_sol = x_sol_all[e0 + n_cls : n_base]
    expired_transfer = float((e_sol * (expire_cny - e_rate * w_lo)).sum())
    expiry = float((e_sol * e_rate * w_lo).sum() + (ef_sol * f_rate).sum())
    taken = np.flatnonzero(n_sol)
    n_taken = n_sol[taken]
    pair, lo, _ = lo_hi(taken)
    transfer_lp = float((n_taken * tau_pair[pair]).sum())
    transfer = transfer_lp + expired_transfer + transfer_excess + transfer_fluid
    energy_cost = lp_value + energy_excess - transfer_lp - expired_transfer - expiry
    # energy (kWh) and carbon of the LP's plan: whole jobs at their mean work, fluid as planned
    w_mean = np.divide(np.bincount(jc, jw, minlength=n_cls), np.maximum(count, 1.0))
    e_whole = n_taken * w_mean[pair_k[pair]] * kwh_per_scu[pair]
    grid_carbon = (1 - signals.green_fraction) * signals.carbon_g_per_kwh
    carbon_b = _buckets(grid_carbon, hours, bucket_h).mean(axis=2)
    start_b = np.minimum((lo // bucket_h).astype(np.int64), nb - 1)
    carbon = float((e_whole * carbon_b[pair_c[pair], start_b]).sum())
    e_fluid = x_sol * kw[xp]
    carbon += float((e_fluid * carbon_b[net.pool_center[xp], xb]).sum())
    if plan is not None:
        f_prec_arr = np.array(f_prec, dtype=np.float64)
        plan.update(
            jobs=n_taken.astype(np.float64),
            pool=pair_p[pair].astype(np.float64),
            precision=prec_arr[pair_k[pair]].astype(np.float64),
            start_h=lo,
            arrival_h=a_lo[pair_k[pair]],
            kwh=e_whole,
            cny=n_taken * col_cost[taken],
            fluid_pool=xp.astype(np.float64),
            fluid_precision=f_prec_arr[xf] if n_f else np.zeros(0),
            fluid_bucket_h=(xb * bucket_h).astype(np.float64),
            fluid_kwh=e_fluid,
            fluid_cny=e_fluid * price_b[net.pool_center[xp], xb],
            expired=e_sol,
            expired_cny=e_sol * expire_cny,
            fluid_expired_scu=ef_sol,
            fluid_expired_cny=ef_sol * f_rate,
        )
    return TightBound(
        cost_cny=lp_value + energy_excess + transfer_excess + transfer_fluid,
        energy_cost_cny=energy_cost,
        transfer_cost_cny=transfer,
        energy_kwh=float(e_whole.sum() + e_fluid.sum()),
        carbon_t=carbon / 1e6,
        bucket_h=bucket_h,
        variables=n_all,
        classes=n_cls + n_f,
        jobs=n_jobs,
        expiry_cost_cny=expiry,
        solve_s=time.perf_counter() - t_start,
        expired_jobs=float(e_sol.sum()),
    )
