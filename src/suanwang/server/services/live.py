"""The live network the services work on: scenario, signals, executors and capacity now."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from sqlalchemy.orm import Session

from suanwang.core.network import JobClassInfo, Network
from suanwang.core.signals import Signals
from suanwang.executors.base import Executor
from suanwang.scheduling.state import CapacityState
from suanwang.server.models.jobs import active_usage


@dataclass
class LiveNetwork:
    """What the dispatcher and reconciler share.

    ``executors`` maps center ids to the executor that runs that center's jobs; in live mode
    only those centers receive jobs. ``signals`` returns the signals from the current hour on.
    """

    net: Network
    signals: Callable[[], Signals]
    executors: Mapping[str, Executor]
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.executors) - set(self.net.center_ids))
        if unknown:
            raise ValueError(f"executors for unknown centers: {', '.join(unknown)}")
        served = np.array([c in self.executors for c in self.net.center_ids], dtype=bool)
        self._pool_served = served[self.net.pool_center]

    def restrict(self, info: JobClassInfo) -> JobClassInfo:
        """The job's feasible pools at centers that have an executor."""
        keep = self._pool_served[info.pools]
        if keep.all():
            return info
        return JobClassInfo(
            pools=info.pools[keep],
            centers=info.centers[keep],
            latency_ms=info.latency_ms[keep],
            speed=info.speed[keep],
            facility_kw_per_unit=info.facility_kw_per_unit[keep],
            transfer_cost_cny_per_gb=info.transfer_cost_cny_per_gb[keep],
            transfer_s_per_gb=info.transfer_s_per_gb[keep],
        )

    def capacity(self, session: Session, signals: Signals) -> CapacityState:
        """Free units per pool now: capacity less what scheduled and running jobs hold."""
        state = CapacityState.empty(self.net, signals)
        state.now_s = (self.clock() - signals.start).total_seconds()
        index = {
            (int(c), m): p
            for p, (c, m) in enumerate(zip(self.net.pool_center, self.net.pool_model, strict=True))
        }
        cpu_pools = {int(self.net.pool_center[p]): p for p in np.flatnonzero(self.net.pool_is_cpu)}
        for center_id, use in active_usage(session=session).items():
            ci = self.net.center_index.get(center_id)
            if ci is None:
                continue
            for model, cards in use.cards.items():
                p = index.get((ci, model))
                if p is not None:
                    state.free[p] -= cards
            if use.cpu_cores and ci in cpu_pools:
                state.free[cpu_pools[ci]] -= use.cpu_cores
        np.maximum(state.free, 0, out=state.free)
        return state
