"""The live network the services work on: scenario, signals, executors and capacity now."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.core.network import JobClassInfo, Network
from suanwang.core.signals import Signals
from suanwang.executors.base import Executor
from suanwang.scheduling.state import CapacityState
from suanwang.server.database.models import CenterDrain
from suanwang.server.models.jobs import active_usage
from suanwang.server.services.health import CenterHealth


@dataclass
class LiveNetwork:
    """What the dispatcher and reconciler share.

    ``executors`` maps center ids to the executor that runs that center's jobs; in live mode
    only those centers receive jobs, and of those only the ones that answer (``health``) and
    are not drained (``drained``, read from the database by :meth:`capacity`).
    ``signals`` returns the signals from the current hour on.
    """

    net: Network
    signals: Callable[[], Signals]
    executors: Mapping[str, Executor]
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    health: CenterHealth = field(default_factory=CenterHealth)
    drained: frozenset[str] = frozenset()
    #: Where jobs keep checkpoints: ``<root>/<job id>``, the same directory for every run of a
    #: job, reachable from every center (see :mod:`suanwang.server.services.failover`).
    checkpoint_root: Path = field(default_factory=lambda: Path(".suanwang/checkpoints"))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.executors) - set(self.net.center_ids))
        if unknown:
            raise ValueError(f"executors for unknown centers: {', '.join(unknown)}")
        self._served = np.array([c in self.executors for c in self.net.center_ids], dtype=bool)

    def open_centers(self) -> np.ndarray:
        """Per center: has an executor, answers and is not drained."""
        ok = self._served.copy()
        for center in set(self.health.down()) | self.drained:
            i = self.net.center_index.get(center)
            if i is not None:
                ok[i] = False
        return ok

    def restrict(self, info: JobClassInfo) -> JobClassInfo:
        """The job's feasible pools at open centers (executor, reachable, not drained)."""
        keep = self.open_centers()[self.net.pool_center[info.pools]]
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

    def checkpoint_dir(self, job_id: str) -> Path:
        return self.checkpoint_root.resolve() / job_id

    def refresh_drained(self, session: Session) -> frozenset[str]:
        self.drained = frozenset(session.scalars(select(CenterDrain.center_id)))
        return self.drained

    def capacity(self, session: Session, signals: Signals) -> CapacityState:
        """Free units per pool now: capacity less what scheduled and running jobs hold.

        Also re-reads which centers are drained (operators drain through the API).
        """
        self.refresh_drained(session)
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
