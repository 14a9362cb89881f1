"""How fairly a governed run shared the network: per tenant, per class, and two indices.

Definitions (docs/governance.md, "Measuring fairness"):

* a tenant's **usage** in an hour is the SCU its runs delivered in it (units x the chip's
  speed x the time), lost work included; its **entitlement** is its nominal quota (SCU/h);
* a tenant is **backlogged** in an hour when it had work waiting (any class but
  ``preemptible``) at the end of every scheduling round of that hour;
* **Jain's index** of an hour is (sum x)^2 / (n x sum x^2) over the n backlogged tenants'
  x = usage / entitlement, averaged over the hours with a backlogged tenant (1.0: every
  backlogged tenant got the same fraction of its entitlement);
* **min entitled fraction** is the smallest usage / entitlement (capped at 1) of a backlogged
  tenant in any hour: 0.9 means no tenant that wanted more got less than 90% of its quota;
* an **ask** (:func:`quota_asks`, round level) is a job of a tenant becoming pending (any class
  but ``preemptible``; submitted, preempted or back from a deferral for price) while the
  tenant holds less than :data:`~suanwang.scheduling.fairshare.OWED_SHARE` (90%) of its
  quota (it is owed it: its claims preempt for fair share at once); it is **met** at the
  first moment the tenant holds ``min(90% of its quota, its demand)``, where it holds the SCU/h of
  its jobs placed and not ended (units x the chip's speed) and its demand is that plus its
  pending jobs (not those deferred for price) at their best speed. ``asks_met_within_round``
  is the share of asks met within one round (``round_len_s``) of asking.

:func:`sharing_series` computes the hourly pieces once (:class:`SharingSeries`: usage,
entitlement, backlog, preemptions, each job's wait); :func:`governance_metrics` sums them into
the JSON and the report (:mod:`suanwang.sim.report.sharing`) plots them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from suanwang.core.jobs import Job, Priority
from suanwang.core.lifecycle import STATE_CODE, JobState, run_events
from suanwang.core.network import PRECISION_INDEX, Network
from suanwang.scheduling.fairshare import OWED_SHARE
from suanwang.sim.governed import GovernedOutcome
from suanwang.sim.metrics import busy_by_hour

Array = NDArray[np.float64]


def tenant_hourly_usage(net: Network, jobs: Sequence[Job], g: GovernedOutcome, hours: int) -> Array:
    """(tenants, hours) SCU delivered per hour, from the runs in the event log."""
    ev_job, ev_at, ev_from, ev_to, ev_pool = g.outcome.events.columns()
    begin, finish, _, _ = run_events(ev_job, ev_from, ev_to)
    run_job = ev_job[begin]
    pool = ev_pool[begin]
    t0 = ev_at[begin]
    t1 = np.where(finish >= 0, ev_at[np.maximum(finish, 0)], g.outcome.horizon_s)
    index = {t: i for i, t in enumerate(g.tenants)}
    tenant = np.array([index[jobs[j].tenant] for j in run_job.tolist()], dtype=np.int64)
    prec = np.array([PRECISION_INDEX[jobs[j].precision] for j in run_job.tolist()], np.int64)
    units = np.array([jobs[j].demand_units for j in run_job.tolist()], dtype=np.float64)
    rate = units * net.pool_speed[pool, prec] if run_job.size else np.zeros(0)
    return busy_by_hour(tenant, t0, np.maximum(t1, t0), rate, len(g.tenants), hours)


def backlogged_hours(g: GovernedOutcome, hours: int) -> NDArray[np.bool_]:
    """(tenants, hours): backlogged at the end of every round of the hour."""
    out = np.zeros((len(g.tenants), hours), dtype=bool)
    if g.round_s.size == 0:
        return out
    hour = (g.round_s // 3600.0).astype(np.int64)
    for h in range(hours):
        rows = g.backlogged[hour == h]
        if rows.shape[0]:
            out[:, h] = rows.all(axis=0)
    return out


@dataclass(frozen=True)
class QuotaAsks:
    """The asks of a governed run (see the module doc), in time order."""

    tenant: NDArray[np.int64]  # index into the run's tenants
    at_s: Array  # when the tenant asked
    met_s: Array  # how long until it held what it was owed; nan: never, within the run

    def summary(self, round_s: float, end_s: float) -> dict[str, float | int]:
        """``asks``, ``asks_met_within_round`` (share; 1.0 with no asks), ``asks_never_met``
        and the time to be met: p50, p95 and max over the asks (an ask never met counts as
        the time from it to ``end_s``, the end of the run: at least that)."""
        never = np.isnan(self.met_s)
        took = np.where(never, end_s - self.at_s, self.met_s)
        n = int(took.size)
        if not n:
            return {"asks": 0, "asks_met_within_round": 1.0, "asks_never_met": 0,
                    "ask_met_p50_s": 0.0, "ask_met_p95_s": 0.0, "ask_met_max_s": 0.0}  # fmt: skip
        return {
            "asks": n,
            "asks_met_within_round": float(((took <= round_s + 1e-6) & ~never).sum() / n),
            "asks_never_met": int(never.sum()),
            "ask_met_p50_s": float(np.percentile(took, 50, method="higher")),
            "ask_met_p95_s": float(np.percentile(took, 95, method="higher")),
            "ask_met_max_s": float(took.max()),
        }


def quota_asks(
    net: Network, jobs: Sequence[Job], g: GovernedOutcome, until_s: float = np.inf
) -> QuotaAsks:
    """Every ask made before ``until_s`` and how long it took to be met (module doc).

    From the event log: a job holds from its placement (``pending -> scheduled``, on the
    pool it names) until its run ends (its next transition out of ``scheduled`` or
    ``running`` that is not to ``running``), and is pending from a transition to ``pending``
    until it is placed or fails, except while deferred for price (``g.deferrals``: the job
    chose to wait; back in the queue it asks again). Changes at one instant are applied
    together before asks and their ends are looked at."""
    index = {t: i for i, t in enumerate(g.tenants)}
    quota = np.array([g.governance.tenants[t].quota_scu_per_h for t in g.tenants])
    ev_job, ev_at, ev_from, ev_to, ev_pool = g.outcome.events.columns()
    pending, scheduled = STATE_CODE[JobState.PENDING], STATE_CODE[JobState.SCHEDULED]
    running = STATE_CODE[JobState.RUNNING]
    want, unwant, hold, release = 0, 1, 2, 3
    changes: list[tuple[float, int, int, int, int]] = []  # (at, seq, job, change, pool)
    for e in range(ev_job.size):
        j, frm, to = int(ev_job[e]), int(ev_from[e]), int(ev_to[e])
        at, pool = float(ev_at[e]), int(ev_pool[e])
        if to == pending and frm != pending:
            changes.append((at, e, j, want, pool))
        elif frm == pending and to != pending:
            changes.append((at, e, j, unwant, pool))
            if to == scheduled:
                changes.append((at, e, j, hold, pool))
        elif frm in (scheduled, running) and to not in (running, frm):
            changes.append((at, e, j, release, pool))
    for j, at, back in g.deferrals:  # back in the queue before it is placed at that instant
        changes += [(at, ev_job.size, j, unwant, -1), (back, -1, j, want, -1)]
    changes.sort()
    holds = np.zeros(len(g.tenants))
    wants = np.zeros(len(g.tenants))
    rate_of: dict[tuple[int, int], float] = {}  # (job, change kind) -> the SCU/h it counts
    open_: dict[int, float] = {}  # tenant -> when its open ask was made
    out: list[tuple[float, int, float]] = []  # (asked at, tenant, took)
    i, n = 0, len(changes)
    while i < n:
        t = changes[i][0]
        asked: set[int] = set()
        touched: set[int] = set()
        while i < n and changes[i][0] == t:
            _, _, j, change, pool = changes[i]
            i += 1
            job = jobs[j]
            if job.priority_class is Priority.PREEMPTIBLE:
                continue
            k = index[job.tenant]
            touched.add(k)
            if change == want:
                rate = job.demand_units * float(net.job_class(job).speed.max(initial=0.0))
                rate_of[(j, want)] = rate
                wants[k] += rate
                asked.add(k)
            elif change == unwant:
                wants[k] -= rate_of.pop((j, want), 0.0)
            elif change == hold:
                rate = job.demand_units * float(
                    net.pool_speed[pool, PRECISION_INDEX[job.precision]]
                )
                rate_of[(j, hold)] = rate
                holds[k] += rate
            else:
                holds[k] -= rate_of.pop((j, hold), 0.0)
        for k in sorted(touched):
            owed = OWED_SHARE * quota[k]  # an ask is met at this share (or all it wants)
            if k in asked and k not in open_ and t < until_s and holds[k] < owed - 1e-9:
                open_[k] = t
            if k in open_ and holds[k] >= min(owed, holds[k] + wants[k]) - 1e-9:
                at = open_.pop(k)
                out.append((at, k, t - at))
    out += [(at, k, np.nan) for k, at in open_.items()]  # never met within the run
    out.sort(key=lambda r: r[0])
    return QuotaAsks(
        tenant=np.array([k for _, k, _ in out], dtype=np.int64),
        at_s=np.array([at for at, _, _ in out], dtype=np.float64),
        met_s=np.array([took for _, _, took in out], dtype=np.float64),
    )


def jain(x: Array) -> float:
    """Jain's index of ``x`` (1.0 for one value or all equal)."""
    s2 = float((x * x).sum())
    return float(x.sum() ** 2 / (x.size * s2)) if x.size and s2 > 0 else 1.0


def _waits(values: Array) -> dict[str, float]:
    if not values.size:
        return {"wait_p50_s": 0.0, "wait_p95_s": 0.0}
    return {
        "wait_p50_s": float(np.percentile(values, 50)),
        "wait_p95_s": float(np.percentile(values, 95)),
    }


#: hours the series run past the hours of arrivals (the report's time charts show as much)
TAIL_H = 48
#: the classes in the order they are taken
CLASSES = tuple(p.value for p in Priority)


@dataclass(frozen=True)
class SharingSeries:
    """A governed run hour by hour from its start, for the report; :func:`governance_metrics`
    measures the first ``arrival_hours`` of it.

    The hours are the arrivals' and up to :data:`TAIL_H` more (within the horizon)."""

    tenants: tuple[str, ...]
    entitlement_scu_per_h: Array  # (tenants,) nominal quota, 0: none
    usage_scu: Array  # (tenants, hours) SCU delivered in each hour (its mean SCU/h)
    backlogged: NDArray[np.bool_]  # (tenants, hours) work waiting at the end of every round
    preemptions: NDArray[np.int64]  # (hours,) runs stopped to make room, by the hour it happened
    lost_work_scu: Array  # (hours,) the work they lost
    wait_s: Array  # (jobs,) first start - submit; nan: never started
    job_tenant: NDArray[np.int64]  # (jobs,) index into ``tenants``
    job_class: NDArray[np.int64]  # (jobs,) index into :data:`CLASSES`
    arrival_hours: int
    fair: bool  # False: the fifo comparison (measured against the same quotas)

    @property
    def hours(self) -> int:
        return int(self.usage_scu.shape[1])

    def entitled_fraction(self) -> Array:
        """(tenants, hours) usage / entitlement; nan for a tenant without one."""
        entitled = np.where(self.entitlement_scu_per_h > 0, self.entitlement_scu_per_h, np.nan)
        out: Array = self.usage_scu / entitled[:, None]
        return out


def sharing_series(
    net: Network, jobs: Sequence[Job], g: GovernedOutcome, arrival_days: float
) -> SharingSeries:
    """The hourly usage, backlog and preemptions of a governed run and each job's wait."""
    arrival_hours = max(int(np.ceil(arrival_days * 24)), 1)
    horizon_h = int(np.ceil(g.outcome.horizon_s / 3600.0))
    hours = max(arrival_hours, min(arrival_hours + TAIL_H, horizon_h))
    gov = g.governance
    quota = np.array([gov.tenants[t].quota_scu_per_h for t in g.tenants], dtype=np.float64)
    ev_job, ev_at, _, ev_to, _ = g.outcome.events.columns()
    started = ev_to == STATE_CODE[JobState.RUNNING]
    first = np.full(len(jobs), np.nan)
    np.fmin.at(first, ev_job[started], ev_at[started])
    submit = np.array([j.submit_s for j in jobs], dtype=np.float64)
    index = {t: i for i, t in enumerate(g.tenants)}
    cls_index = {c: i for i, c in enumerate(CLASSES)}
    preempted_h = np.array([int(p.at_s // 3600.0) for p in g.preemptions], dtype=np.int64)
    lost = np.array([p.lost_scu for p in g.preemptions], dtype=np.float64)
    keep = (preempted_h >= 0) & (preempted_h < hours)
    return SharingSeries(
        tenants=g.tenants,
        entitlement_scu_per_h=quota,
        usage_scu=tenant_hourly_usage(net, jobs, g, hours),
        backlogged=backlogged_hours(g, hours),
        preemptions=np.bincount(preempted_h[keep], minlength=hours).astype(np.int64),
        lost_work_scu=np.bincount(preempted_h[keep], weights=lost[keep], minlength=hours).astype(
            np.float64
        ),
        wait_s=first - submit,
        job_tenant=np.array([index[j.tenant] for j in jobs], dtype=np.int64),
        job_class=np.array([cls_index[j.priority_class.value] for j in jobs], dtype=np.int64),
        arrival_hours=arrival_hours,
        fair=g.fair,
    )


def governance_metrics(
    net: Network,
    jobs: Sequence[Job],
    g: GovernedOutcome,
    arrival_days: float,
    series: SharingSeries | None = None,
) -> dict[str, Any]:
    """``tenants``, ``fairness``, ``classes`` and preemption totals of a governed run, over
    the hours jobs arrived in; ``series``: the run's :func:`sharing_series`, if built."""
    s = series if series is not None else sharing_series(net, jobs, g, arrival_days)
    hours = s.arrival_hours
    quota = s.entitlement_scu_per_h
    usage_h = s.usage_scu[:, :hours]
    backlog = s.backlogged[:, :hours]
    frac = s.entitled_fraction()[:, :hours]
    jains, mins = [], []
    for h in range(hours):
        sel = backlog[:, h] & ~np.isnan(frac[:, h])
        if sel.any():
            jains.append(jain(frac[sel, h]))
            mins.append(float(np.minimum(frac[sel, h], 1.0).min()))
    wait = s.wait_s
    lost = {t: 0.0 for t in g.tenants}
    hit = {t: 0 for t in g.tenants}
    for p in g.preemptions:
        t = jobs[p.job].tenant
        lost[t] += p.lost_scu
        hit[t] += 1
    total_usage = float(usage_h.sum())
    tenants: dict[str, dict[str, float | int]] = {}
    for i, t in enumerate(g.tenants):
        mine = (s.job_tenant == i) & ~np.isnan(wait)
        tenants[t] = {
            "usage_scu": float(usage_h[i].sum()),
            "entitlement_scu": float(quota[i] * hours),
            "share_of_usage": float(usage_h[i].sum() / total_usage) if total_usage else 0.0,
            **_waits(wait[mine]),
            "preempted": hit[t],
            "lost_work_scu": lost[t],
        }
    classes: dict[str, dict[str, float | int]] = {}
    for c, cls in enumerate(CLASSES):
        mine = (s.job_class == c) & ~np.isnan(wait)
        classes[cls] = {"jobs": int((s.job_class == c).sum()), **_waits(wait[mine])}
    work = float(sum(j.work_scu for j in jobs))
    lost_total = float(sum(p.lost_scu for p in g.preemptions))
    asks = quota_asks(net, jobs, g, until_s=hours * 3600.0).summary(
        g.round_len_s, g.outcome.horizon_s
    )
    return {
        "tenants": tenants,
        "fairness": {
            "jain_index": float(np.mean(jains)) if jains else 1.0,
            "min_entitled_fraction": float(min(mins)) if mins else 1.0,
            "backlogged_hours": len(jains),
            **asks,
        },
        "classes": classes,
        "preemptions": len(g.preemptions),
        "lost_work_scu": lost_total,
        "lost_work_share": lost_total / work if work else 0.0,
        "waiting": dict(g.waiting),
    }
