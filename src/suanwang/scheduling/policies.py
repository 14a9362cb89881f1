"""Online placement policies. Each maps (job, its feasible pools, capacity state) to a decision.

Baselines (start as soon as the data has arrived):

* ``nearest``: the lowest-latency pool with free capacity (today's practice);
* ``first-fit``: the first pool in scenario order with free capacity;
* ``cheapest``: free pool with the lowest current facility price (price x PUE);
* ``greenest``: free pool with the highest current green fraction.

When no feasible pool has room now, every baseline queues the job at the feasible pool with the
shortest expected wait. Baselines ignore offers (the market's prices); units others reserved
are closed to them as to every policy (the placement seam takes them out of the state).
The product policy lives in :mod:`suanwang.scheduling.planner`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from suanwang.core.jobs import Job
from suanwang.core.network import JobClassInfo
from suanwang.scheduling.state import NO_MARKET, CapacityState, Decision, Market


class Policy(Protocol):
    """Maps (job, its feasible pools, capacity state, market) to a decision. Hosts call it
    through :func:`suanwang.scheduling.placement.place`, never directly."""

    name: str

    def decide(self, job: Job, info: JobClassInfo, state: CapacityState,
               market: Market = NO_MARKET, *, explain: bool = False) -> Decision:  # fmt: skip
        """``explain``: the host will show the decision, so also work out what only an
        explanation needs (a deferral's gain); the choice is the same either way."""
        ...


def _least_wait(job: Job, info: JobClassInfo, state: CapacityState, reason: str) -> Decision:
    wait = state.expected_wait_s(info.pools, job.demand_units)
    pos = int(np.argmin(wait))
    why = reason + "; queued where the wait is least"
    return Decision(pos, state.now_s, why, queued=True)


class Nearest:
    name = "nearest"

    def decide(self, job: Job, info: JobClassInfo, state: CapacityState,
               market: Market = NO_MARKET, *, explain: bool = False) -> Decision:  # fmt: skip
        # the first pool (nearest first) with room, read element by element: usually one
        # of the first few, so this costs less than a comparison of every pool in numpy
        free, units = state.free, job.demand_units
        for pos, p in enumerate(info.pool_list):
            if free[p] >= units:
                return Decision(pos, state.now_s, "nearest center with free capacity")
        return _least_wait(job, info, state, "no free capacity")


class FirstFit:
    name = "first-fit"

    def decide(self, job: Job, info: JobClassInfo, state: CapacityState,
               market: Market = NO_MARKET, *, explain: bool = False) -> Decision:  # fmt: skip
        fits = np.flatnonzero(state.free[info.pools] >= job.demand_units)
        if fits.size:
            pos = int(fits[np.argmin(info.pools[fits])])
            return Decision(pos, state.now_s, "first pool with free capacity")
        return _least_wait(job, info, state, "no free capacity")


class _ByCurrentSignal:
    name = ""

    def score(self, info: JobClassInfo, state: CapacityState, hour: int) -> np.ndarray:
        raise NotImplementedError

    def decide(self, job: Job, info: JobClassInfo, state: CapacityState,
               market: Market = NO_MARKET, *, explain: bool = False) -> Decision:  # fmt: skip
        fits = np.flatnonzero(state.free[info.pools] >= job.demand_units)
        if not fits.size:
            return _least_wait(job, info, state, "no free capacity")
        hour = state.signals.hour_index(state.now_s)
        s = self.score(info, state, hour)[fits]
        return Decision(int(fits[int(np.argmin(s))]), state.now_s, f"{self.name} free center now")


class Cheapest(_ByCurrentSignal):
    name = "cheapest"

    def score(self, info: JobClassInfo, state: CapacityState, hour: int) -> np.ndarray:
        price = state.signals.price_cny_per_kwh[info.centers, hour]
        pue = state.net.center_pue[info.centers]
        out: np.ndarray = price * pue
        return out


class Greenest(_ByCurrentSignal):
    name = "greenest"

    def score(self, info: JobClassInfo, state: CapacityState, hour: int) -> np.ndarray:
        out: np.ndarray = -state.signals.green_fraction[info.centers, hour]
        return out
