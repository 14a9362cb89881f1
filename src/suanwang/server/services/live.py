"""The live network the services work on: scenario, signals, executors and capacity now."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.billing import pricing as billing_store  # its book_for
from suanwang.billing.market import posted_prices, scu_prices
from suanwang.billing.pricing import PriceBook
from suanwang.core.cost import ScuPrices
from suanwang.core.network import JobClassInfo, Network
from suanwang.core.signals import Signals
from suanwang.executors.base import Executor
from suanwang.scheduling.state import CapacityState
from suanwang.server.database.models import CenterDrain
from suanwang.server.models.billing import trading as trading_store
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
    #: runs an executor reported ``lost`` that may still be running: ref -> first report
    #: (monotonic clock); the reconciler gives them up after the executor's ``stop_grace_s``
    lost_seen: dict[str, float] = field(default_factory=dict)

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


@dataclass
class LiveTrading:
    """Providers' offers and consumers' reservations as the dispatcher sees them this round.

    ``prices``: pay-as-you-go offers for the engine (None: none in force). ``reserved[t]``:
    units tenant ``t`` has reserved per pool and hour (hour 0 = the signals' start);
    ``used[t]``: what ``t``'s active jobs are planned to hold there (filled by the dispatcher's
    capacity pass, then by each placement). Units reserved and not used by their tenant are
    closed to every other tenant (:meth:`blocked_for`); the reserving tenant's jobs see the
    pool at price 0 (already paid) while their reservation has room (:meth:`prices_for`), so
    they use it first.
    """

    net: Network
    prices: ScuPrices | None
    posted: np.ndarray | None
    reserved: dict[str, np.ndarray]
    used: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for tenant, r in self.reserved.items():
            self.used.setdefault(tenant, np.zeros_like(r))

    def __bool__(self) -> bool:
        return self.prices is not None or bool(self.reserved)

    def add_use(self, tenant: str, pool: int, h0: int, h1: int, units: int) -> None:
        """``tenant``'s job holds ``units`` on ``pool`` over calendar hours [h0, h1)."""
        used = self.used.get(tenant)
        if used is not None:
            used[pool, max(h0, 0) : max(min(h1, used.shape[1]), 0)] += units

    def blocked_for(self, tenant: str) -> np.ndarray | None:
        """Units per pool and hour that other tenants reserved and do not use (or None)."""
        out = None
        for t, r in self.reserved.items():
            if t == tenant:
                continue
            free = np.maximum(r - self.used[t], 0.0)
            out = free if out is None else out + free
        return out

    def prices_for(self, tenant: str, committed: np.ndarray) -> ScuPrices | None:
        """The engine's prices for ``tenant``'s job: its own reservations at price 0 (their
        offered units: what the reservation has left, expressed against the pool's planned
        load ``committed``), the providers' offers elsewhere."""
        r = self.reserved.get(tenant)
        if r is None or self.posted is None:
            return self.prices
        hours = r.shape[1]
        mine = r > 0
        premium = np.where(mine[None], -np.nan_to_num(self.posted), 0.0)
        load = (
            committed[:, :hours]
            if committed.shape[1] >= hours
            else np.pad(committed, ((0, 0), (0, hours - committed.shape[1])))
        )
        offered = np.where(mine, r - self.used[tenant] + load, 0.0)
        if self.prices is not None:
            premium = np.where(mine[None], premium, self.prices.premium)
            offered = np.where(mine, offered, self.prices.offered_units)
        return ScuPrices(posted=self.posted, premium=premium, offered_units=offered)


def load_trading(session: Session, net: Network, signals: Signals) -> LiveTrading:
    """Offers and reservations reaching into the signals' window, as engine arrays."""
    start = signals.start
    end = start + timedelta(hours=signals.hours)
    book = trading_store.offer_book(session=session, since=start, until=end)
    if not book.offers and not book.reservations:
        return LiveTrading(net, None, None, {})
    scenario = net.scenario
    prices_book = PriceBook(scenario, billing_store.book_for(scenario).params, offers=book)
    prices = scu_prices(net, prices_book, start, signals.hours)
    reserved: dict[str, np.ndarray] = {}
    pool_of = {(net.center_ids[int(c)], m): p for p, (c, m) in
               enumerate(zip(net.pool_center, net.pool_model, strict=True))}  # fmt: skip
    for r in book.reservations:
        p = pool_of.get((r.center_id, r.model))
        h0 = max(0, math.floor((r.start - start) / timedelta(hours=1)))
        h1 = min(signals.hours, math.ceil((r.end - start) / timedelta(hours=1)))
        if p is None or h1 <= h0:
            continue
        arr = reserved.setdefault(r.tenant, np.zeros((net.n_pools, signals.hours + 1)))
        arr[p, h0:h1] += r.units
    posted = None
    if reserved:
        posted = (
            prices.posted
            if prices is not None
            else posted_prices(net, prices_book, start, signals.hours)
        )
    return LiveTrading(net, prices, posted, reserved)
