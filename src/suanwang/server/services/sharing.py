"""The platform's queue, live: the dispatcher's rounds under quotas, classes and fair share.

When any tenant has a quota (docs/governance.md), the dispatcher does not place pending jobs
oldest first: each round it builds the tenants' shares from what every active job holds now
(:meth:`LiveNetwork.state` lists them), decays their usage since the last round (kept by
:class:`Usage` between rounds), puts the pending jobs in the platform's queue
(:class:`~suanwang.scheduling.queue.PlatformQueue`, the rounds the simulator runs too) and lets
it take them: a job is placed only on pools where it can start now, in the order of class,
fair-share standing and age, and a job that cannot start stays ``pending`` with the reason
stored (``decision.waiting``: capacity, quota used up, waiting for its share). No center
queue decides who runs.

Not yet live: preemption through the executors (the queue is given no runs to stop), and
usage decayed across restarts (a restarted worker starts from what runs now).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from suanwang.core.governance import Governance, TenantQuota
from suanwang.core.network import JobClassInfo, Network
from suanwang.scheduling.fairshare import Run, Shares, Tier, Where
from suanwang.scheduling.placement import Placement
from suanwang.scheduling.queue import Queued
from suanwang.server.services.live import Held

#: why a pending job waits when a round never reached it (others went first)
SHARE = "waiting for its share"


def no_governance(session: Session) -> Governance | None:
    """No quotas: the dispatcher places pending jobs oldest first."""
    return None


def by_id(gov: Governance, ids: Mapping[str, str]) -> Governance:
    """``gov`` with tenants named by their id (``ids``: name -> id), as the engine's jobs are;
    tenants the platform does not know are dropped."""
    tenants: dict[str, TenantQuota] = {}
    for name, q in gov.tenants.items():
        if name in ids:
            tenants[ids[name]] = replace(q, name=ids[name])
    return replace(gov, tenants=tenants)


@dataclass
class Usage:
    """Each tenant's decayed usage (SCU) between rounds, in this process."""

    decayed: dict[str, float] = field(default_factory=dict)
    at_s: float | None = None

    def shares(
        self,
        gov: Governance,
        now_s: float,
        held: Sequence[Held],
        families: Sequence[str],
        hubs: Sequence[str | None],
    ) -> Shares:
        """The shares of this round: what each active job holds now (each in the best tier
        it fits, in the order listed), the usage decayed to ``now_s``."""
        shares = Shares(gov, now_s=self.at_s if self.at_s is not None else now_s)
        for tenant, u in shares.use.items():
            u.decayed_scu = self.decayed.get(tenant, 0.0)
        for h in held:
            if h.tenant not in shares.use:
                continue
            where = Where(np.array([h.rate]), [families[h.pool]], [hubs[h.pool]])
            tier = int(shares.tiers(h.tenant, h.priority, where)[0])
            shares.admit(h.tenant, Tier(tier if tier >= 0 else Tier.NETWORK), h.rate,
                         families[h.pool], hubs[h.pool])  # fmt: skip
        shares.advance(now_s)
        self.decayed = {t: u.decayed_scu for t, u in shares.use.items()}
        self.at_s = now_s
        return shares


#: places the pending job ``key`` on some of its pools and stores it (the dispatcher's step)
Placer = Callable[[int, JobClassInfo], Placement]


@dataclass
class LiveHost:
    """The dispatcher as the queue's host for one round (:class:`~suanwang.scheduling.queue.
    Host`): free units of the round's capacity state; ``place`` stores a placement."""

    net: Network
    free_units: NDArray[np.int64]
    place: Placer
    shares: Shares
    families: Sequence[str]
    hubs: Sequence[str | None]
    placed: set[int] = field(default_factory=set)

    @property
    def free(self) -> NDArray[np.int64]:
        return self.free_units

    def admit(self, q: Queued, info: JobClassInfo, tier_of: NDArray[np.int64]) -> bool:
        placement = self.place(q.key, info)
        self.placed.add(q.key)
        if placement.start_s <= self.shares.now_s:  # holds its units from now on
            pos = placement.pos
            tier = Tier(int(tier_of[pos]))
            p = placement.pool
            rate = q.job.demand_units * float(info.speed[pos])
            self.shares.admit(q.job.tenant, tier, rate, self.families[p], self.hubs[p])
        return True  # a deferred job is placed (scheduled for later) all the same

    def runs_on(self, pools: set[int], now: float) -> Sequence[Run]:
        """None: preemption through the executors is not live yet, so the queue never asks
        to :meth:`preempt`."""
        return ()

    def preempt(self, key: int, by: int) -> None:
        raise NotImplementedError("live preemption: runs_on offers no runs to stop")
