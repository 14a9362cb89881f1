"""The ``suanwang`` policy: decides where **and when** each job runs.

For a job with feasible pools ``p`` (compatibility and latency already enforced) and candidate
start offsets ``k = 0, 1, ... K`` hours after its data can arrive, the policy minimises

    cost(p, k) = P_p x integral of forecast price_c(p) over [s_pk, s_pk + r_p)      (energy)
               + carbon_price x P_p x integral of forecast grid carbon              (carbon)
               + data_gb x transfer_cost(origin -> c(p))                            (transfer)
               + wait_price x P_p x (s_pk - now) / 3600                              (waiting)
               + price_weight x work_scu x premium_p(hour of s_pk)                    (offers)

where ``r_p`` is the runtime on that chip, ``P_p`` the facility power (units x unit kW x PUE)
and ``s_pk = now + transfer_time_p + k h``. ``K = 0`` for latency-bound kinds (inference,
interactive); otherwise ``K = max_defer_h``, cut so that the planned end keeps a margin before
the deadline. Capacity is planned on a reservation calendar (``committed`` units per pool and
hour): the cheapest candidate whose whole run fits under the pool's capacity is taken, so the
network's load is spread to where and when energy is cheap and green instead of piling onto the
first eastern center with room. Jobs that fit nowhere queue where the expected wait is least.

The offers term is there only when the host hands the policy providers' offers
(``prices``, a :class:`~suanwang.core.cost.ScuPrices`): ``premium`` is what the cheapest active
offer on the pool adds to the posted price per SCU (negative: a discount), counted while the
pool's planned load at that hour leaves room within the offered units. Posted prices need no
term of their own (the energy term follows them), so without offers every decision is exactly
what it was before trading; cheaper offers win where latency, compatibility and capacity allow.

Work is vectorised over (pool, start) pairs: one decision costs tens of microseconds, never a
solver call. The forecast series are what a policy may know in advance (tariffs are published;
renewables are forecast from expected weather); the simulator bills the realised series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from suanwang.core.cost import ScuPrices
from suanwang.core.jobs import Job
from suanwang.core.network import PRECISION_INDEX, JobClassInfo
from suanwang.scheduling.state import CapacityState, Decision, Running

HOUR = 3600.0


@dataclass
class SuanwangPolicy:
    name: str = "suanwang"
    max_defer_h: int = 12
    carbon_price_cny_per_kg: float = 0.1
    wait_price_cny_per_kwh: float = 0.04
    deadline_margin: float = 0.25
    candidates_checked: int = 8
    shortlist: int = 16
    replan_s: float = 3600.0
    checkpoint_gb_per_unit: float = 16.0
    min_remaining_h: float = 2.0
    min_saving_cny: float = 20.0
    min_saving_share: float = 0.15
    max_moves_per_replan: int = 50
    replan_candidates: int = 300
    #: providers' offers against posted prices (trading); None: no offers term at all
    prices: ScuPrices | None = None
    price_weight: float = 1.0
    _cache_key: object = field(default=None, init=False, repr=False)
    _cache: tuple[np.ndarray, np.ndarray, int, int] = field(init=False, repr=False)
    _offsets_h: np.ndarray = field(init=False, repr=False)
    _windows: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False)
    _mean_key: object = field(default=None, init=False, repr=False)
    _mean: tuple[np.ndarray, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._offsets_h = np.arange(self.max_defer_h + 1, dtype=np.float64)
        self._offsets_k = np.arange(self.max_defer_h + 1, dtype=np.int64)

    def _objective(self, state: CapacityState) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Flattened cumulative integral of the forecast objective price per kWh, per center.

        objective(c, h) = forecast price + carbon price x forecast grid carbon. Each center's
        row has ``H + 1`` cumulative points, then ``max_defer_h + 1`` more that continue the
        last hour's price, so times past the horizon extrapolate and every window of start
        offsets stays inside the row. Returns (cum, val, stride, H).
        """
        sig = state.signals
        if self._cache_key is not sig:
            per_kwh = (
                sig.forecast_price_cny_per_kwh
                + self.carbon_price_cny_per_kg
                * (1.0 - sig.forecast_green_fraction)
                * sig.carbon_g_per_kwh
                / 1000.0
            )
            c, h = per_kwh.shape
            pad = self.max_defer_h + 1
            last = per_kwh[:, -1:]
            cum = np.zeros((c, h + 1 + pad))
            np.cumsum(per_kwh, axis=1, out=cum[:, 1 : h + 1])
            cum[:, h + 1 :] = cum[:, h : h + 1] + last * np.arange(1, pad + 1)
            val = np.concatenate([per_kwh, np.repeat(last, pad + 1, axis=1)], axis=1)
            self._cache = (cum.ravel(), val.ravel(), h + 1 + pad, h)
            width = self.max_defer_h + 1
            self._windows = (
                np.lib.stride_tricks.sliding_window_view(self._cache[0], width),
                np.lib.stride_tricks.sliding_window_view(self._cache[1], width),
            )
            self._cache_key = sig
        return self._cache

    def decide(self, job: Job, info: JobClassInfo, state: CapacityState) -> Decision:
        n = info.pools.size
        if job.kind.deferrable and n > self.shortlist:
            # rank pools by energy at the day-ahead mean price, then plan on the best few
            mean24, stride_m = self._day_mean(state)
            h = min(int(state.now_s // HOUR), stride_m - 1)
            kwh_per_scu = info.facility_kw_per_unit / info.speed
            est = job.work_scu * kwh_per_scu * mean24.take(info.centers * stride_m + h)
            est += job.data_gb * info.transfer_cost_cny_per_gb
            if self.prices is not None:  # the best offer over the deferral window
                hours = np.full(info.pools.size, int(state.now_s // HOUR), dtype=np.int64)
                term = self._offer_term(job, info.pools, hours, self.max_defer_h + 1, state)
                est += term.min(axis=1)
            short = np.argpartition(est, self.shortlist)[: self.shortlist]
            short.sort()
            found = self._plan(job, info, state, short)
            if found is not None:
                return found
        found = self._plan(job, info, state, np.arange(n))
        if found is not None:
            return found
        return self._queue(job, info, state)

    def _day_mean(self, state: CapacityState) -> tuple[np.ndarray, int]:
        """Mean objective price over the next 24 h from each hour, per center (flattened)."""
        cum, _, stride, hours = self._objective(state)
        if self._mean_key is not state.signals:
            c = cum.reshape(-1, stride)
            ahead = np.minimum(np.arange(hours) + 24, hours)
            mean = (c[:, ahead] - c[:, :hours]) / (ahead - np.arange(hours))
            self._mean = (mean.ravel(), hours)
            self._mean_key = state.signals
        return self._mean

    def _plan(
        self,
        job: Job,
        info: JobClassInfo,
        state: CapacityState,
        sel: np.ndarray,
    ) -> Decision | None:
        """Cheapest (pool, start) among pools ``sel`` whose run fits the calendar, or None.

        Starts are ``now + transfer + k h``: every start of one pool shares its fraction of an
        hour, so the objective integral over all ``k`` is read from one window of the
        cumulative row per pool.
        """
        now = state.now_s
        units = job.demand_units
        width = (self.max_defer_h if job.kind.deferrable else 0) + 1
        _, _, stride, hours = self._objective(state)
        win_cum, win_val = self._windows
        pools = info.pools[sel]
        runtime_h = job.work_scu / (units * info.speed[sel])
        power = units * info.facility_kw_per_unit[sel]
        row = info.centers[sel] * stride
        xs = (now + job.data_gb * info.transfer_s_per_gb[sel]) * (1.0 / HOUR)
        xe = xs + runtime_h
        hs = np.minimum(xs.astype(np.int64), hours)
        he = np.minimum(xe.astype(np.int64), hours)
        ks = row + hs
        ke = row + he
        fs = (xs - hs)[:, None]
        fe = (xe - he)[:, None]
        energy = win_cum[ke, :width] + fe * win_val[ke, :width]
        energy -= win_cum[ks, :width] + fs * win_val[ks, :width]
        energy += self.wait_price_cny_per_kwh * (
            (xs - now / HOUR)[:, None] + self._offsets_h[:width]
        )
        cost = power[:, None] * energy + (job.data_gb * info.transfer_cost_cny_per_gb[sel])[:, None]

        if job.deadline_s is not None:
            deadline_h = (job.submit_s + job.deadline_s) / HOUR
            ends_h = xe[:, None] + self._offsets_h[:width]
            late = ends_h > deadline_h
            if width > 1:
                margin_h = self.deadline_margin * job.deadline_s / HOUR
                late[:, 1:] |= ends_h[:, 1:] > deadline_h - margin_h
            cost[late] = np.inf
        offer = None
        if self.prices is not None:
            offer = self._offer_term(job, pools, hs, width, state)
            cost += offer
        # the first column needs room now
        cost[:, 0][state.free[pools] < units] = np.inf

        flat = cost.ravel()
        cap = state.net.pool_capacity
        committed = state.committed
        for _ in range(self.candidates_checked):
            idx = int(flat.argmin())
            if flat[idx] == np.inf:
                break
            flat[idx] = np.inf  # not again
            i, k = divmod(idx, width)
            pool = int(pools[i])
            start_h = float(xs[i]) + k
            h0 = int(start_h)
            h1 = max(int(-(-(start_h + float(runtime_h[i])) // 1)), h0 + 1)
            window = committed[pool, h0:h1]
            if window.size and window.max() + units > cap[pool]:
                continue
            committed[pool, h0:h1] += units
            why = "cheapest planned slot" if k else "cheapest center with room now"
            if offer is not None and offer[i, k] < 0:
                why += " (below the posted price: an offer or the tenant's reservation)"
            return Decision(int(sel[i]), start_h * HOUR, why)
        return None

    def _offer_term(
        self,
        job: Job,
        pools: np.ndarray,
        hours: np.ndarray,
        width: int,
        state: CapacityState,
    ) -> np.ndarray:
        """CNY the offers add to starting on ``pools[i]`` in hour ``hours[i] + k``: (n, width).

        The premium counts while the pool's planned load at that hour plus the job fits within
        the units offered (offered units are sold first); otherwise the posted price stands.
        """
        pr = self.prices
        assert pr is not None
        rows = pools[:, None]
        cols = np.minimum(hours[:, None] + self._offsets_k[:width], pr.hours)
        premium = pr.premium[PRECISION_INDEX[job.precision]][rows, cols]
        load = state.committed[rows, np.minimum(cols, state.committed.shape[1] - 1)]
        fits = load + job.demand_units <= pr.offered_units[rows, cols]
        out: np.ndarray = np.where(fits, premium, 0.0) * (job.work_scu * self.price_weight)
        return out

    def _queue(self, job: Job, info: JobClassInfo, state: CapacityState) -> Decision:
        now = state.now_s
        units = job.demand_units
        committed = state.committed
        runtime = job.work_scu / (units * info.speed) * HOUR
        transfer_s = job.data_gb * info.transfer_s_per_gb
        # nothing fits the plan: queue where the wait is least, counting it in the plan
        wait = state.expected_wait_s(info.pools, units)
        pos = int(np.argmin(wait))
        pool = int(info.pools[pos])
        h0 = int((now + transfer_s[pos] + wait[pos]) // HOUR)
        h1 = max(int(np.ceil((now + transfer_s[pos] + wait[pos] + runtime[pos]) / HOUR)), h0 + 1)
        committed[pool, h0:h1] += units
        return Decision(pos, now, "no planned room; queued where the wait is least")

    def migrations(
        self, jobs: Sequence[Job], running: Sequence[Running], state: CapacityState
    ) -> list[tuple[int, int, float, float]]:
        """Running checkpointable jobs worth moving now: ``(job, new pool, move s, move CNY)``.

        For each candidate, finishing where it is (forecast objective over its remaining
        runtime) is compared with checkpointing, shipping ``checkpoint_gb_per_unit`` x units
        to another feasible pool with room and finishing there (objective over the new runtime
        + transfer cost + waiting price of the move). A move must save ``min_saving_cny`` and
        ``min_saving_share`` of the cost of staying. The most expensive runs are looked at first;
        at most ``max_moves_per_replan`` moves per round.
        """
        net = state.net
        now = state.now_s
        cum, val, stride, hours = self._objective(state)

        def integral(centers: np.ndarray, t: np.ndarray) -> np.ndarray:
            x = t / HOUR
            h = np.minimum(x.astype(np.int64), hours)
            idx = centers * stride + h
            out: np.ndarray = cum.take(idx) + (x - h) * val.take(idx)
            return out

        cands = [r for r in running if r.remaining_scu > 0]
        if not cands:
            return []
        pools = np.array([r.pool for r in cands], dtype=np.int64)
        units_arr = np.array([jobs[r.job].demand_units for r in cands], dtype=np.float64)
        prec = [jobs[r.job].precision for r in cands]
        spd = net.pool_speed[pools, [PRECISION_INDEX[p] for p in prec]]
        rem_s = np.array([r.remaining_scu for r in cands]) / (units_arr * spd) * HOUR
        here_c = net.pool_center[pools]
        power = units_arr * net.pool_facility_kw[pools]
        stay = power * (integral(here_c, now + rem_s) - integral(here_c, np.full_like(rem_s, now)))
        order = np.argsort(-stay, kind="stable")[: self.replan_candidates]
        moves: list[tuple[int, int, float, float]] = []
        free = state.free.copy()
        for i in order.tolist():
            if len(moves) >= self.max_moves_per_replan:
                break
            if rem_s[i] < self.min_remaining_h * HOUR:
                continue
            r = cands[i]
            job = jobs[r.job]
            info = net.job_class(job)
            u = int(units_arr[i])
            ok = (free[info.pools] >= u) & (info.pools != r.pool)
            if not ok.any():
                continue
            qpos = np.flatnonzero(ok)
            q_pools = info.pools[qpos]
            q_centers = info.centers[qpos]
            ckpt_gb = self.checkpoint_gb_per_unit * u
            move_s = ckpt_gb * net.center_transfer_s_per_gb[here_c[i], q_centers]
            move_cny = ckpt_gb * net.center_transfer_cost_cny_per_gb[here_c[i], q_centers]
            run_s = r.remaining_scu / (u * info.speed[qpos]) * HOUR
            p_q = u * info.facility_kw_per_unit[qpos]
            t0 = now + move_s
            there = (
                p_q * (integral(q_centers, t0 + run_s) - integral(q_centers, t0))
                + move_cny
                + self.wait_price_cny_per_kwh * p_q * move_s / HOUR
            )
            best = int(np.argmin(there))
            saving = float(stay[i] - there[best])
            if saving < max(self.min_saving_cny, self.min_saving_share * float(stay[i])):
                continue
            q = int(q_pools[best])
            h0 = int(t0[best] // HOUR)
            h1 = max(int(-(-(t0[best] + run_s[best]) // HOUR)), h0 + 1)
            window = state.committed[q, h0:h1]
            if window.size and window.max() + u > net.pool_capacity[q]:
                continue
            state.committed[q, h0:h1] += u
            free[q] -= u
            moves.append((r.job, q, float(move_s[best]), float(move_cny[best])))
        return moves
