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
  tenant in any hour: 0.9 means no tenant that wanted more got less than 90% of its quota.

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
    return {
        "tenants": tenants,
        "fairness": {
            "jain_index": float(np.mean(jains)) if jains else 1.0,
            "min_entitled_fraction": float(min(mins)) if mins else 1.0,
            "backlogged_hours": len(jains),
        },
        "classes": classes,
        "preemptions": len(g.preemptions),
        "lost_work_scu": lost_total,
        "lost_work_share": lost_total / work if work else 0.0,
        "waiting": dict(g.waiting),
    }
