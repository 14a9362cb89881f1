"""What a policy sees of the network when it decides: capacity now and planned load."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from suanwang.core.network import Network
from suanwang.core.signals import Signals


@dataclass(slots=True)
class Decision:
    """Where and when: index into the job's feasible pools and the planned start.

    The host starts the job at ``start_s`` or once its data has arrived, whichever is later.
    """

    pos: int
    start_s: float
    reason: str = ""


@dataclass(slots=True)
class CapacityState:
    """Live capacity. The host (simulator or control plane) owns and updates it.

    ``free`` units per pool now; ``backlog_unit_s`` queued demand per pool (units x seconds);
    ``committed`` planned busy units per pool and hour (written by planning policies).
    """

    net: Network
    signals: Signals
    now_s: float
    free: NDArray[np.int64]
    backlog_unit_s: NDArray[np.float64]
    committed: NDArray[np.float64]

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

    def expected_wait_s(self, pools: NDArray[np.int64], units: int) -> NDArray[np.float64]:
        """Rough wait before ``units`` become free at each pool: queued work over capacity."""
        cap = self.net.pool_capacity[pools].astype(np.float64)
        wait = self.backlog_unit_s[pools] / cap
        busy = self.free[pools] < units
        out: NDArray[np.float64] = np.where(busy, wait + 600.0, wait)
        return out


@dataclass(frozen=True, slots=True)
class Running:
    """A running job as a migrating policy sees it: index, pool, start and SCU still to do."""

    job: int
    pool: int
    start_s: float
    remaining_scu: float
