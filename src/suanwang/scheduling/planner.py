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

from dataclasses import dataclass

import numpy as np

from suanwang.core.jobs import Job
from suanwang.core.network import JobClassInfo
from suanwang.scheduling.state import CapacityState, Decision

HOUR = 3600.0


@dataclass
class SuanwangPolicy:
    name: str = "suanwang"
    max_defer_h: int = 12
    carbon_price_cny_per_kg: float = 0.1
    wait_price_cny_per_kwh: float = 0.04
    deadline_margin: float = 0.25
    candidates_checked: int = 8

    def decide(self, job: Job, info: JobClassInfo, state: CapacityState) -> Decision:
        now = state.now_s
        units = job.demand_units
        sig = state.signals
        runtime = job.work_scu / (units * info.speed) * HOUR
        power = units * info.facility_kw_per_unit
        transfer_s = job.data_gb * info.transfer_s_per_gb
        transfer_cny = job.data_gb * info.transfer_cost_cny_per_gb

        k_max = self.max_defer_h if job.kind.deferrable else 0
        deadline_at = None
        if job.deadline_s is not None:
            deadline_at = job.submit_s + job.deadline_s
        offsets = np.arange(k_max + 1, dtype=np.float64) * HOUR
        starts = (now + transfer_s)[:, None] + offsets[None, :]
        ends = starts + runtime[:, None]
        centers = np.broadcast_to(info.centers[:, None], starts.shape)
        energy = sig.cumulative("forecast_price", centers, ends) - sig.cumulative(
            "forecast_price", centers, starts
        )
        carbon = sig.cumulative("forecast_carbon", centers, ends) - sig.cumulative(
            "forecast_carbon", centers, starts
        )
        cost = (
            power[:, None]
            * (
                energy
                + self.carbon_price_cny_per_kg * carbon / 1000.0
                + self.wait_price_cny_per_kwh * (starts - now) / HOUR
            )
            + transfer_cny[:, None]
        )

        free_now = state.free[info.pools] >= units
        if deadline_at is not None:
            late = ends > deadline_at
            if k_max:
                slack = deadline_at - job.submit_s
                late[:, 1:] |= ends[:, 1:] > deadline_at - self.deadline_margin * slack
            cost = np.where(late, np.inf, cost)
        # the first column may queue where there is no room now: charge the expected wait
        wait = state.expected_wait_s(info.pools, units)
        cost[:, 0] += np.where(free_now, 0.0, self.wait_price_cny_per_kwh * power * wait / HOUR)

        flat = cost.ravel()
        order = np.argsort(flat, kind="stable")[: self.candidates_checked]
        cap = state.net.pool_capacity
        committed = state.committed
        for idx in order:
            c = float(flat[idx])
            if not np.isfinite(c):
                break
            pos, k = divmod(int(idx), k_max + 1)
            pool = int(info.pools[pos])
            h0 = int(starts[pos, k] // HOUR)
            h1 = max(int(np.ceil(ends[pos, k] / HOUR)), h0 + 1)
            window = committed[pool, h0:h1]
            if window.size and window.max() + units > cap[pool]:
                continue
            if k == 0 and not free_now[pos]:
                continue
            committed[pool, h0:h1] += units
            why = "cheapest planned slot" if k else "cheapest center with room now"
            return Decision(pos, float(starts[pos, k]), why)

        # nothing fits the plan: queue where the wait is least, counting it in the plan
        pos = int(np.argmin(wait))
        pool = int(info.pools[pos])
        h0 = int((now + transfer_s[pos] + wait[pos]) // HOUR)
        h1 = max(int(np.ceil((now + transfer_s[pos] + wait[pos] + runtime[pos]) / HOUR)), h0 + 1)
        committed[pool, h0:h1] += units
        return Decision(pos, now, "no planned room; queued where the wait is least")
