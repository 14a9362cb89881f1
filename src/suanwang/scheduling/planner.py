"""The ``suanwang`` policy: decides where **and when** each job runs.

For a job with feasible pools ``p`` (compatibility and latency already enforced) and candidate
start offsets ``k = 0, 1, ... K`` hours after its data can arrive, the policy minimises

    cost(p, k) = P_p x integral of forecast price_c(p) over [s_pk, s_pk + r_p)      (energy)
               + carbon_price x P_p x integral of forecast grid carbon              (carbon)
               + data_gb x transfer_cost(origin -> c(p))                            (transfer)
               + wait_price x P_p x (s_pk - now) / 3600                              (waiting)

where ``r_p`` is the runtime on that chip, ``P_p`` the facility power (units x unit kW x PUE)
and ``s_pk = now + transfer_time_p + k h``. ``K = 0`` for latency-bound kinds (inference,
interactive); otherwise ``K = max_defer_h``, cut so that the planned end keeps a margin before
the deadline. Capacity is planned on a reservation calendar (``committed`` units per pool and
hour): the cheapest candidate whose whole run fits under the pool's capacity is taken, so the
network's load is spread to where and when energy is cheap and green instead of piling onto the
first eastern center with room. Jobs that fit nowhere queue where the expected wait is least.

Work is vectorised over (pool, start) pairs: one decision costs tens of microseconds, never a
solver call. The forecast series are what a policy may know in advance (tariffs are published;
renewables are forecast from expected weather); the simulator bills the realised series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from suanwang.core.jobs import Job
from suanwang.core.network import JobClassInfo
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
    replan_s: float = 3600.0
    checkpoint_gb_per_unit: float = 16.0
    min_remaining_h: float = 2.0
    min_saving_cny: float = 20.0
    min_saving_share: float = 0.15
    max_moves_per_replan: int = 50
    replan_candidates: int = 300
    _cache_key: object = field(default=None, init=False, repr=False)
    _cache: tuple[np.ndarray, np.ndarray, int, int] = field(init=False, repr=False)
    _rows: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    _offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._offsets = np.arange(self.max_defer_h + 1, dtype=np.float64) * HOUR

    def _objective(self, state: CapacityState) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Flattened cumulative integral of the forecast objective price per kWh.

        objective(c, h) = forecast price + carbon price x forecast grid carbon; column ``H`` of
        the value array repeats the last hour so that times past the horizon extrapolate.
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
            cum = np.zeros((c, h + 1))
            np.cumsum(per_kwh, axis=1, out=cum[:, 1:])
            val = np.concatenate([per_kwh, per_kwh[:, -1:]], axis=1)
            self._cache = (cum.ravel(), val.ravel(), h + 1, h)
            self._cache_key = sig
            self._rows.clear()
        return self._cache

    def decide(self, job: Job, info: JobClassInfo, state: CapacityState) -> Decision:
        now = state.now_s
        units = job.demand_units
        runtime = job.work_scu / (units * info.speed) * HOUR
        power = units * info.facility_kw_per_unit
        transfer_s = job.data_gb * info.transfer_s_per_gb
        transfer_cny = job.data_gb * info.transfer_cost_cny_per_gb

        k_max = self.max_defer_h if job.kind.deferrable else 0
        deadline_at = None
        if job.deadline_s is not None:
            deadline_at = job.submit_s + job.deadline_s
        cum, val, stride, hours = self._objective(state)
        row = self._rows.get(id(info))
        if row is None:
            row = self._rows[id(info)] = (info.centers * stride)[:, None]
        starts = (now + transfer_s)[:, None] + self._offsets[: k_max + 1]
        ends = starts + runtime[:, None]

        # integral of the objective price over [starts, ends), per (pool, start)
        xs = starts * (1.0 / HOUR)
        xe = ends * (1.0 / HOUR)
        hs = xs.astype(np.int64)
        he = xe.astype(np.int64)
        np.minimum(hs, hours, out=hs)
        np.minimum(he, hours, out=he)
        hs += row
        he += row
        energy = cum.take(he) + (xe - (he - row)) * val.take(he)
        energy -= cum.take(hs) + (xs - (hs - row)) * val.take(hs)
        energy += self.wait_price_cny_per_kwh * (xs - now / HOUR)
        cost = power[:, None] * energy + transfer_cny[:, None]

        free_now = state.free[info.pools] >= units
        if deadline_at is not None:
            late = ends > deadline_at
            if k_max:
                slack = deadline_at - job.submit_s
                late[:, 1:] |= ends[:, 1:] > deadline_at - self.deadline_margin * slack
            cost[late] = np.inf
        # the first column needs room now
        cost[:, 0][~free_now] = np.inf

        flat = cost.ravel()
        m = self.candidates_checked
        if flat.size > m:
            top = np.argpartition(flat, m)[:m]
            order = top[np.argsort(flat[top], kind="stable")]
        else:
            order = np.argsort(flat, kind="stable")
        cap = state.net.pool_capacity
        committed = state.committed
        width = k_max + 1
        for idx in order.tolist():
            if flat[idx] == np.inf:
                break
            pos, k = divmod(idx, width)
            pool = int(info.pools[pos])
            h0 = int(starts[pos, k] // HOUR)
            h1 = max(int(-(-ends[pos, k] // HOUR)), h0 + 1)
            window = committed[pool, h0:h1]
            if window.size and window.max() + units > cap[pool]:
                continue
            committed[pool, h0:h1] += units
            why = "cheapest planned slot" if k else "cheapest center with room now"
            return Decision(pos, float(starts[pos, k]), why)

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
        from suanwang.core.network import PRECISION_INDEX

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
