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

Preemption goes through the executors (the dispatcher's step): a checkpointable run is asked
to checkpoint (it leaves as ``migrating`` and is placed again, resuming), another is stopped
and placed again from the start (``running -> migrating`` at once, its run fenced). The job
that preempted may be handed over before a checkpointing run has left: its center holds it in
its queue meanwhile. The placer saves the usage every ``usage_save_s`` (in its round's
transaction, behind its fence) and a restarted or newly elected one goes on from it (decayed
from when it was saved); protection after a preemption is not saved (a new placer protects
nothing it did not preempt itself).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from suanwang.core.governance import Governance, TenantQuota
from suanwang.core.network import JobClassInfo
from suanwang.scheduling.fairshare import Run, Shares, Tier, Where
from suanwang.scheduling.placement import Placement
from suanwang.scheduling.queue import Queued
from suanwang.scheduling.state import NOW_TOLERANCE_S
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
    """Each tenant's decayed usage (SCU) between rounds, as of ``at_s``, and the runs it
    preempted lately (job id -> when, and the attempt of the run that was stopped: the job's
    next run is another attempt). Times are seconds from ``origin``, the signals' start of the
    last round (:meth:`in_frame` moves them when the hour turns). ``saved_at``: when the usage
    was last saved for a placer that comes after this one (None: not yet)."""

    decayed: dict[str, float] = field(default_factory=dict)
    at_s: float | None = None
    preempted: dict[str, tuple[float, int]] = field(default_factory=dict)
    origin: datetime | None = None
    saved_at: datetime | None = None

    def in_frame(self, start: datetime) -> None:
        """Count times from ``start`` (a round's signals' start) from now on, moving those
        counted from an earlier one."""
        if self.origin is not None and self.origin != start:
            shift = (self.origin - start).total_seconds()
            if self.at_s is not None:
                self.at_s += shift
            self.preempted = {j: (at + shift, a) for j, (at, a) in self.preempted.items()}
        self.origin = start

    def restore(self, decayed: Mapping[str, float], at: datetime) -> None:
        """Go on from usage saved at ``at`` (a restarted or newly elected placer): the next
        round decays it from then."""
        if self.origin is None:
            raise ValueError("restore() needs the frame: call in_frame() first")
        self.decayed = dict(decayed)
        self.at_s = (at - self.origin).total_seconds()

    def shares(
        self,
        gov: Governance,
        now_s: float,
        held: Sequence[Held],
        families: Sequence[str],
        hubs: Sequence[str | None],
    ) -> tuple[Shares, list[Tier]]:
        """The shares of this round: what each active job holds now (each in the best tier
        it fits, in the order listed: the tiers, aligned with ``held``), the usage decayed to
        ``now_s``."""
        shares = Shares(gov, now_s=self.at_s if self.at_s is not None else now_s)
        for tenant, u in shares.use.items():
            u.decayed_scu = self.decayed.get(tenant, 0.0)
        tiers: list[Tier] = []
        for h in held:
            tier = Tier.NETWORK
            if h.tenant in shares.use:
                where = Where(np.array([h.rate]), [families[h.pool]], [hubs[h.pool]])
                best = int(shares.tiers(h.tenant, h.priority, where)[0])
                tier = Tier(best) if best >= 0 else Tier.NETWORK
                shares.admit(h.tenant, tier, h.rate, families[h.pool], hubs[h.pool])
            tiers.append(tier)
        shares.advance(now_s)
        self.preempted = {  # kept while protected, or while the old run still leaves
            j: (at, attempt)
            for j, (at, attempt) in self.preempted.items()
            if now_s - at < gov.rules.protect_s or _leaving(held, j, attempt)
        }
        self.decayed = {t: u.decayed_scu for t, u in shares.use.items()}
        self.at_s = now_s
        return shares, tiers


#: places the pending job ``key`` on some of its pools and stores it (the dispatcher's step)
Placer = Callable[[int, JobClassInfo], Placement]
#: stops a held run to make room for the pending job ``key`` (the dispatcher's step)
Stopper = Callable[[Held, int], None]


@dataclass
class LiveHost:
    """The dispatcher as the queue's host for one round (:class:`~suanwang.scheduling.queue.
    Host`): free units of the round's capacity state; ``place`` stores a placement, ``stop``
    preempts a run (``held``, ``tiers``: the active jobs and the tier each holds)."""

    free_units: NDArray[np.int64]
    place: Placer
    stop: Stopper
    shares: Shares
    held: Sequence[Held]
    tiers: Sequence[Tier]
    usage: Usage
    families: Sequence[str]
    hubs: Sequence[str | None]
    protect_s: float
    placed: set[int] = field(default_factory=set)

    @property
    def free(self) -> NDArray[np.int64]:
        return self.free_units

    def admit(self, q: Queued, info: JobClassInfo, tier_of: NDArray[np.int64]) -> bool:
        placement = self.place(q.key, info)
        self.placed.add(q.key)
        if placement.start_s <= self.shares.now_s + NOW_TOLERANCE_S:  # holds units from now
            pos = placement.pos
            tier = Tier(int(tier_of[pos]))
            p = placement.pool
            rate = q.job.demand_units * float(info.speed[pos])
            self.shares.admit(q.job.tenant, tier, rate, self.families[p], self.hubs[p])
        return True  # a deferred job is placed (scheduled for later) all the same

    def runs_on(self, pools: set[int], now: float) -> Sequence[Run]:
        """The running jobs on ``pools``, but runs already asked to leave; the next run of a
        job preempted less than ``protect_s`` ago is protected."""
        out = []
        for i, h in enumerate(self.held):
            if h.pool not in pools or h.started_s is None:
                continue
            at, attempt = self.usage.preempted.get(h.job_id, (None, None))
            if attempt == h.attempt:
                continue  # the run that was asked to leave: it is leaving (a job's next run
                # is the next attempt; its ``started_s`` is when that run began)
            hours = max(now - h.started_s, 0.0) / 3600.0
            lost = 0.0 if h.checkpointable else min(h.rate * hours, h.work_scu)
            out.append(
                Run(key=i, tenant=h.tenant, priority=h.priority, tier=self.tiers[i],
                    pool=h.pool, units=h.units, checkpointable=h.checkpointable,
                    lost_scu=lost, protected=at is not None and now - at < self.protect_s,
                    rate=h.rate)
            )  # fmt: skip
        return out

    def preempt(self, key: int, by: int) -> None:
        h = self.held[key]
        self.stop(h, by)
        self.usage.preempted[h.job_id] = (self.shares.now_s, h.attempt)
        self.free_units[h.pool] += h.units  # the claimant may be handed over: the center
        # holds it in its queue until the checkpointing run has left
        fam, hub = self.families[h.pool], self.hubs[h.pool]
        self.shares.release(h.tenant, self.tiers[key], h.rate, fam, hub)


def _leaving(held: Sequence[Held], job_id: str, attempt: int) -> bool:
    """Whether the run (``attempt``) of ``job_id`` that was preempted still holds its units."""
    return any(h.job_id == job_id and h.attempt == attempt for h in held)
