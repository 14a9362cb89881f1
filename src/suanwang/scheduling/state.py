"""What a policy sees of the network when it decides: capacity now, planned load, the market.

One builder for both hosts: the simulator keeps a :class:`CapacityState` up to date as its
jobs start and end; the control plane builds one per round from its active jobs with
:func:`capacity_state`. Placement and migration, live and simulated, plan on the same state:
free units now, the reservation calendar (planned units per pool and hour) and each pool's
queued work.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from suanwang.core.cost import HOUR_S, ScuPrices, hour_window
from suanwang.core.network import Network
from suanwang.core.signals import Signals

#: the largest element (``ndarray.max`` without its Python wrapper: called for every candidate)
_max = np.maximum.reduce

#: seconds within which a planned start is "now"
NOW_TOLERANCE_S = 1e-3


@dataclass(slots=True)
class Decision:
    """Where and when: index into the job's feasible pools and the planned start.

    The host starts the job at ``start_s`` or once its data has arrived, whichever is later.
    ``objective_cny`` is the value the policy compared (nan for a policy that compares none);
    for a deferred start, ``gain_cny`` is what it saves against the best start now that has
    room (None: nothing had room now, or the decision was not to be explained). ``queued``:
    no room now or in the plan anywhere, so the job waits in the queue of the pool where the
    expected wait is least. ``candidates``: every feasible pool at its own best admissible
    start, as the policy costed them (a planning policy asked to explain; None otherwise).
    """

    pos: int
    start_s: float
    reason: str = ""
    objective_cny: float = math.nan
    gain_cny: float | None = None
    queued: bool = False
    candidates: Candidates | None = None


@dataclass(frozen=True, slots=True)
class Candidates:
    """Each of a job's feasible pools at its own best admissible start: the objective there
    (inf: none admissible) and that start, aligned with the job's feasible pools."""

    cost: NDArray[np.float64]
    start_s: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Market:
    """What trading adds to one decision; the host passes it in with every decision.

    ``prices``: offers in force and the deciding tenant's own reservations (price 0), as the
    engine's :class:`ScuPrices` (None: no offers term). ``closed``: units per pool and hour that
    other tenants reserved and do not use, closed to this job (None: none).
    """

    prices: ScuPrices | None = None
    closed: NDArray[np.float64] | None = None


NO_MARKET = Market()


@dataclass(slots=True)
class CapacityState:
    """Live capacity. The host (simulator or control plane) owns and updates it.

    ``free`` units per pool now; ``backlog_unit_s`` queued demand per pool (units x seconds);
    ``committed`` planned busy units per pool and hour (the reservation calendar: hour 0 is
    the signals' start, one column past the horizon); ``waited_s`` per pool: the last time work
    waited in the platform's queue for room on it (:class:`~suanwang.scheduling.queue.
    PlatformQueue` keeps it; -inf: never; None: not known), for the planner's price of waiting
    under scarcity (docs/governance.md).
    """

    net: Network
    signals: Signals
    now_s: float
    free: NDArray[np.int64]
    backlog_unit_s: NDArray[np.float64]
    committed: NDArray[np.float64]
    waited_s: NDArray[np.float64] | None = None

    @classmethod
    def empty(cls, net: Network, signals: Signals) -> CapacityState:
        return cls(
            net=net,
            signals=signals,
            now_s=0.0,
            free=net.pool_capacity.copy(),
            backlog_unit_s=np.zeros(net.n_pools),
            committed=np.zeros((net.n_pools, signals.hours + 1)),
        )

    def starts_now(self, start_s: float) -> bool:
        """Whether a run planned at ``start_s`` starts now (to within float rounding: times
        go through datetimes and back)."""
        return start_s <= self.now_s + NOW_TOLERANCE_S

    def fits(self, pool: int, units: int, t0_s: float, t1_s: float) -> bool:
        """Whether ``units`` more fit under the pool's capacity in every hour of [t0, t1)."""
        h0, h1 = hour_window(t0_s, t1_s)
        window = self.committed[pool, h0:h1]
        return not window.size or bool(_max(window) + units <= self.net.pool_capacity[pool])

    def book(self, pool: int, units: int, t0_s: float, t1_s: float) -> None:
        """Enter a run of ``units`` on ``pool`` over [t0, t1) on the reservation calendar."""
        h0, h1 = hour_window(t0_s, t1_s)
        self.committed[pool, h0:h1] += units

    def expected_wait_s(self, pools: NDArray[np.int64], units: int) -> NDArray[np.float64]:
        """Rough wait before ``units`` become free at each pool: queued work over capacity."""
        cap = self.net.pool_capacity[pools].astype(np.float64)
        wait = self.backlog_unit_s[pools] / cap
        busy = self.free[pools] < units
        out: NDArray[np.float64] = np.where(busy, wait + 600.0, wait)
        return out

    @contextmanager
    def closing(self, closed: NDArray[np.float64] | None) -> Iterator[None]:
        """The state with ``closed`` units per pool and hour taken out (planned busy, and
        not free now), for one decision; restored afterwards."""
        if closed is None:
            yield
            return
        hours = min(closed.shape[1], self.committed.shape[1])
        hour = min(max(int(self.now_s // 3600.0), 0), closed.shape[1] - 1)
        now_closed = np.minimum(closed[:, hour].astype(np.int64), np.maximum(self.free, 0))
        self.committed[:, :hours] += closed[:, :hours]
        self.free -= now_closed
        try:
            yield
        finally:
            self.committed[:, :hours] -= closed[:, :hours]
            self.free += now_closed


@dataclass(frozen=True, slots=True)
class Active:
    """A placed job as the calendar sees it.

    It is planned on ``pool`` over [``t0_s``, ``t1_s``) (seconds from the signals' start);
    ``holds_now``: its units are taken now (running, handed over, or its start has come);
    ``queued``: it waits in its pool's queue (counts as backlog).
    """

    pool: int
    units: int
    t0_s: float
    t1_s: float
    holds_now: bool
    queued: bool = False


def capacity_state(
    net: Network, signals: Signals, now_s: float, active: Iterable[Active]
) -> CapacityState:
    """The state a host decides on: every active job on the calendar, held units taken from
    what is free now, queued work as backlog.

    The same numbers as booking each job in turn (:meth:`CapacityState.book`: the hours of
    :func:`~suanwang.core.cost.hour_window`, cut to the calendar), made at once: each run
    adds its units where its hours begin and takes them off where they end, and a running
    sum along each pool's hours is the calendar (a control plane has tens of thousands)."""
    runs = list(active)
    return capacity_state_of(net, signals, now_s, [(a.pool, a.units, a.t0_s, a.t1_s,
                             a.holds_now, a.queued) for a in runs])  # fmt: skip


def capacity_state_of(
    net: Network,
    signals: Signals,
    now_s: float,
    runs: Sequence[tuple[int, int, float, float, bool, bool]],
) -> CapacityState:
    """:func:`capacity_state` of runs given as plain tuples (pool, units, t0_s, t1_s,
    holds_now, queued: the fields of :class:`Active`, in order), as a host with tens of
    thousands makes them (a tuple is made several times faster than a frozen dataclass)."""
    state = CapacityState.empty(net, signals)
    state.now_s = now_s
    width = state.committed.shape[1]
    cols = tuple(zip(*runs, strict=True)) if runs else ((),) * 6
    pool = np.array(cols[0], dtype=np.int64)
    units = np.array(cols[1], dtype=np.int64)
    t0 = np.array(cols[2], dtype=np.float64)
    t1 = np.array(cols[3], dtype=np.float64)
    holds = np.array(cols[4], dtype=bool)
    queued = np.array(cols[5], dtype=bool)
    h0 = np.maximum(np.floor_divide(t0, HOUR_S), 0.0)
    h1 = np.maximum(np.ceil(t1 / HOUR_S), h0 + 1.0)
    begin = np.minimum(h0, width).astype(np.int64)
    end = np.minimum(h1, width).astype(np.int64)
    steps = np.zeros((net.n_pools, width + 1))
    np.add.at(steps, (pool, begin), units)
    np.add.at(steps, (pool, end), -units)
    np.cumsum(steps[:, :width], axis=1, out=state.committed)
    held = np.zeros(net.n_pools, dtype=np.int64)
    np.add.at(held, pool[holds], units[holds])
    np.add.at(state.backlog_unit_s, pool[queued], units[queued] * np.maximum(t1 - t0, 0.0)[queued])
    state.free = np.maximum(net.pool_capacity - held, 0)
    return state


class Running(NamedTuple):
    """A running job as a migrating policy sees it: index, pool, start and SCU still to do.

    A named tuple (immutable, as a frozen dataclass, but made 4x faster): the simulator makes
    one per running checkpointable job at every re-planning."""

    job: int
    pool: int
    start_s: float
    remaining_scu: float
