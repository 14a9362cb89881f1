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
"""

from __future__ import annotations

from collections.abc import Sequence
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


def governance_metrics(
    net: Network, jobs: Sequence[Job], g: GovernedOutcome, arrival_days: float
) -> dict[str, Any]:
    """``tenants``, ``fairness``, ``classes`` and preemption totals of a governed run, over
    the hours jobs arrived in."""
    hours = max(int(np.ceil(arrival_days * 24)), 1)
    gov = g.governance
    quota = np.array([gov.tenants[t].quota_scu_per_h for t in g.tenants], dtype=np.float64)
    usage_h = tenant_hourly_usage(net, jobs, g, hours)
    backlog = backlogged_hours(g, hours)
    entitled = np.where(quota > 0, quota, np.nan)[:, None]
    frac = usage_h / entitled
    jains, mins = [], []
    for h in range(hours):
        sel = backlog[:, h] & ~np.isnan(frac[:, h])
        if sel.any():
            jains.append(jain(frac[sel, h]))
            mins.append(float(np.minimum(frac[sel, h], 1.0).min()))
    ev_job, ev_at, _, ev_to, _ = g.outcome.events.columns()
    started = ev_to == STATE_CODE[JobState.RUNNING]
    first = np.full(len(jobs), np.nan)
    np.fmin.at(first, ev_job[started], ev_at[started])
    submit = np.array([j.submit_s for j in jobs])
    wait = first - submit
    tenant_of = np.array([j.tenant for j in jobs], dtype=object)
    cls_of = np.array([j.priority_class.value for j in jobs], dtype=object)
    lost = {t: 0.0 for t in g.tenants}
    hit = {t: 0 for t in g.tenants}
    for p in g.preemptions:
        t = jobs[p.job].tenant
        lost[t] += p.lost_scu
        hit[t] += 1
    total_usage = float(usage_h.sum())
    tenants: dict[str, dict[str, float | int]] = {}
    for i, t in enumerate(g.tenants):
        mine = (tenant_of == t) & ~np.isnan(wait)
        tenants[t] = {
            "usage_scu": float(usage_h[i].sum()),
            "entitlement_scu": float(quota[i] * hours),
            "share_of_usage": float(usage_h[i].sum() / total_usage) if total_usage else 0.0,
            **_waits(wait[mine]),
            "preempted": hit[t],
            "lost_work_scu": lost[t],
        }
    classes: dict[str, dict[str, float | int]] = {}
    for cls in Priority:
        mine = (cls_of == cls.value) & ~np.isnan(wait)
        classes[cls.value] = {"jobs": int((cls_of == cls.value).sum()), **_waits(wait[mine])}
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
