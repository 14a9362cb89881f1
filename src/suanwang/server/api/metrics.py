"""``GET /metrics``: Prometheus text format, computed from the database on each scrape.

Operators only (a bearer key like every other route). Families:

* ``suanwang_jobs{state}`` — jobs by lifecycle state;
* ``suanwang_jobs_deferred`` — scheduled jobs waiting for a planned start still to come;
* ``suanwang_decisions_total`` — placement decisions made (transitions to ``scheduled``);
* ``suanwang_dispatch_latency_seconds`` — summary of submit → scheduled over the last hour
  (of the API's clock);
* ``suanwang_center_utilization{center,resource}`` — cards / CPU cores held by active jobs
  (a deferred job holds nothing before its planned start);
* ``suanwang_center_price_cny_per_kwh``, ``suanwang_center_green_fraction``,
  ``suanwang_center_carbon_g_per_kwh`` ``{center}`` — the signals of this hour;
* ``suanwang_green_share`` — green fraction weighted by the cards in use (0 when idle);
* ``suanwang_failovers_total`` — runs given up on (transitions to ``lost``);
* ``suanwang_migrations_total`` — runs that checkpointed and left (transitions to
  ``migrating``); ``suanwang_migration_requests_total{why}`` — checkpoint requests by cause
  (``drain``, ``engine``) and ``suanwang_migration_planned_cost_cny`` — the checkpoint
  transfer cost the engine planned for its moves;
* ``suanwang_fenced_runs_total`` — stale runs cancelled: after their center came back, or
  stopped by a preemption;
* per tenant with a quota (docs/governance.md), by tenant name:
  ``suanwang_tenant_quota_scu_per_h`` and ``suanwang_tenant_usage_scu_per_h`` (the rate of
  its running and handed-over jobs), ``suanwang_tenant_pending{tenant,reason}`` (its jobs
  waiting in the platform's queue, by why: capacity, quota used up, waiting for its share,
  or ``new`` before a round has looked at them) and ``suanwang_tenant_preemptions_total``
  (its runs preempted);
* the replicated control plane (docs/operations.md): ``suanwang_cluster_members{kind}`` and
  ``suanwang_cluster_members_stale{kind}`` (API replicas, workers by heartbeat), and per
  singleton duty ``suanwang_leader_alive{duty}`` (1: its holder is alive) and
  ``suanwang_leader_term{duty}``. The alert rules on these families are in
  ``deploy/prometheus/suanwang.rules.yml``.

The ``*_total`` families are counters: counts of the events the database keeps, so they only
grow (``rate()`` applies). They carry no ``_created`` sample, nor does the summary: each
scrape rebuilds them from the database, so a creation time would be the scrape's, not theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from sqlalchemy import func, select

from suanwang.core.lifecycle import JobState
from suanwang.server.api.cluster import cluster_view
from suanwang.server.api.deps import AUTH_RESPONSES, NetworkDep, SessionDep, operator_only
from suanwang.server.database.models import JobEvent, JobRow, Tenant, TenantQuotaRow
from suanwang.server.models.governance import rates_now
from suanwang.server.models.jobs import active_usage
from suanwang.server.schemas import ErrorResponse

router = APIRouter(tags=["observability"])
OperatorDep = Annotated[Tenant, operator_only("metrics are for operators")]


@dataclass(frozen=True, eq=False)  # hashed by identity: the registry keys on it
class _Families:
    """Metric families computed for one scrape, registered as they are (no ``_created``)."""

    families: Sequence[Metric]

    def describe(self) -> Sequence[Metric]:
        return self.families

    def collect(self) -> Sequence[Metric]:
        return self.families


@router.get(
    "/metrics",
    response_model=None,
    responses={
        **AUTH_RESPONSES,
        403: {"description": "the key is not an operator's", "model": ErrorResponse},
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
    },
)
def metrics(
    request: Request, session: SessionDep, _tenant: OperatorDep, net: NetworkDep
) -> PlainTextResponse:
    """Platform metrics in Prometheus text format (operators)."""
    reg = CollectorRegistry()
    jobs = Gauge("suanwang_jobs", "Jobs by lifecycle state", ["state"], registry=reg)
    counts = dict(session.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all())
    for state in JobState:
        jobs.labels(state.value).set(counts.get(state.value, 0))
    now = request.app.state.signals.clock()
    deferred = session.scalar(
        select(func.count())
        .select_from(JobRow)
        .where(
            JobRow.state == JobState.SCHEDULED.value,
            JobRow.executor_ref.is_(None),
            JobRow.start_at > now,
        )
    )
    Gauge(
        "suanwang_jobs_deferred", "Scheduled jobs waiting for their planned start", registry=reg
    ).set(deferred or 0)
    decisions = session.scalar(
        select(func.count()).select_from(JobEvent).where(JobEvent.to_state == "scheduled")
    )
    waits = [
        max((scheduled - submitted).total_seconds(), 0.0)
        for submitted, scheduled in session.execute(
            select(JobRow.submitted_at, JobRow.scheduled_at).where(
                JobRow.scheduled_at >= now - timedelta(hours=1)
            )
        )
        if scheduled is not None
    ]
    reg.register(
        _Families(
            [
                CounterMetricFamily(
                    "suanwang_decisions", "Placement decisions made", value=decisions or 0
                ),
                SummaryMetricFamily(
                    "suanwang_dispatch_latency_seconds",
                    "Submit to scheduled, last hour",
                    count_value=len(waits),
                    sum_value=sum(waits),
                ),
                *_moves(session),
                *_tenants(session, net),
                *_cluster(session, now),
            ]
        )
    )

    util = Gauge(
        "suanwang_center_utilization", "Share held by active jobs", ["center", "resource"],
        registry=reg,
    )  # fmt: skip
    price = Gauge("suanwang_center_price_cny_per_kwh", "Price now", ["center"], registry=reg)
    green = Gauge("suanwang_center_green_fraction", "Green share now", ["center"], registry=reg)
    carbon = Gauge("suanwang_center_carbon_g_per_kwh", "Grid carbon now", ["center"], registry=reg)
    signals = request.app.state.signals.current()
    usage = active_usage(session=session, at=now)
    used_total = 0.0
    green_used = 0.0
    for ci, c in enumerate(net.scenario.centers):
        use = usage.get(c.id)
        cards_used = sum(use.cards.values()) if use else 0
        util.labels(c.id, "cards").set(cards_used / c.cards if c.cards else 0.0)
        cores = use.cpu_cores if use else 0
        util.labels(c.id, "cpu").set(cores / c.cpu_cores if c.cpu_cores else 0.0)
        g = float(signals.green_fraction[ci, 0])
        price.labels(c.id).set(float(signals.price_cny_per_kwh[ci, 0]))
        green.labels(c.id).set(g)
        carbon.labels(c.id).set(float(signals.carbon_g_per_kwh[ci, 0]))
        used_total += cards_used
        green_used += cards_used * g
    Gauge("suanwang_green_share", "Green share of the cards in use", registry=reg).set(
        green_used / used_total if used_total else 0.0
    )
    return PlainTextResponse(
        generate_latest(reg).decode(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


def _moves(session: SessionDep) -> list[Metric]:
    """Failover and migration counters, and the planned cost of the moves (docs/centers.md)."""
    by_state = dict(
        session.execute(
            select(JobEvent.to_state, func.count())
            .where(JobEvent.to_state.in_(["lost", "migrating"]))
            .where(JobEvent.from_state != JobEvent.to_state)
            .group_by(JobEvent.to_state)
        ).all()
    )
    fenced = 0
    planned_cost = 0.0
    counts: dict[str, int] = {"drain": 0, "engine": 0}
    for (detail,) in session.execute(
        select(JobEvent.detail).where(JobEvent.from_state == JobEvent.to_state)
    ):
        kind = (detail or {}).get("event")
        if kind == "checkpoint_requested":
            why = str(detail.get("why", "other"))
            counts[why] = counts.get(why, 0) + 1
            planned_cost += float(detail.get("move_cost_cny", 0.0))
        elif kind == "fenced":
            fenced += 1
    requests = CounterMetricFamily(
        "suanwang_migration_requests", "Checkpoint requests", labels=["why"]
    )
    for why, n in counts.items():
        requests.add_metric([why], n)
    return [
        CounterMetricFamily(
            "suanwang_failovers", "Runs given up on (lost)", value=by_state.get("lost", 0)
        ),
        CounterMetricFamily(
            "suanwang_migrations", "Runs checkpointed and moved", value=by_state.get("migrating", 0)
        ),
        requests,
        GaugeMetricFamily(
            "suanwang_migration_planned_cost_cny",
            "Planned checkpoint transfer cost",
            value=planned_cost,
        ),
        CounterMetricFamily("suanwang_fenced_runs", "Stale runs cancelled", value=fenced),
    ]


def _cluster(session: SessionDep, now: datetime) -> list[Metric]:
    """The replicated control plane: members by kind with a fresh heartbeat and with a stale
    one, and per singleton duty whether its holder is alive and its term (docs/operations.md;
    none on SQLite, where one process leads everything)."""
    view = cluster_view(session, now)
    fresh = GaugeMetricFamily(
        "suanwang_cluster_members", "Members with a fresh heartbeat", labels=["kind"]
    )
    stale = GaugeMetricFamily(
        "suanwang_cluster_members_stale", "Members whose heartbeat is stale", labels=["kind"]
    )
    kinds = sorted({m.kind for m in view.members})
    for kind in kinds:
        fresh.add_metric([kind], sum(1 for m in view.members if m.kind == kind and not m.stale))
        stale.add_metric([kind], sum(1 for m in view.members if m.kind == kind and m.stale))
    alive = GaugeMetricFamily(
        "suanwang_leader_alive", "1: the duty's holder is alive", labels=["duty"]
    )
    term = GaugeMetricFamily("suanwang_leader_term", "The duty's current term", labels=["duty"])
    for leader in view.leaders:
        alive.add_metric([leader.duty], 1.0 if leader.alive else 0.0)
        term.add_metric([leader.duty], float(leader.term))
    return [fresh, stale, alive, term]


def _tenants(session: SessionDep, net: NetworkDep) -> list[Metric]:
    """Quota, usage now, pending jobs by reason and preemptions of every tenant with a quota."""
    named = dict(
        session.execute(
            select(Tenant.id, Tenant.name).join(
                TenantQuotaRow, TenantQuotaRow.tenant_id == Tenant.id
            )
        ).all()
    )
    quota = GaugeMetricFamily(
        "suanwang_tenant_quota_scu_per_h", "Nominal quota (SCU/h)", labels=["tenant"]
    )
    usage = GaugeMetricFamily(
        "suanwang_tenant_usage_scu_per_h", "Rate of running jobs (SCU/h)", labels=["tenant"]
    )
    pending = GaugeMetricFamily(
        "suanwang_tenant_pending",
        "Jobs waiting in the platform's queue",
        labels=["tenant", "reason"],
    )
    preempted = CounterMetricFamily(
        "suanwang_tenant_preemptions", "Runs preempted", labels=["tenant"]
    )
    if not named:
        return [quota, usage, pending, preempted]
    rows = session.execute(
        select(TenantQuotaRow.tenant_id, TenantQuotaRow.quota_scu_per_h).where(
            TenantQuotaRow.tenant_id.in_(list(named))
        )
    )
    rates = rates_now(session=session, net=net, tenant_ids=list(named))
    for tenant_id, q in rows:
        quota.add_metric([named[tenant_id]], float(q))
        use = rates.get(tenant_id)
        usage.add_metric([named[tenant_id]], use.rate_scu_per_h if use else 0.0)
    waiting: dict[tuple[str, str], int] = {}
    for tenant_id, decision in session.execute(
        select(JobRow.tenant_id, JobRow.decision).where(
            JobRow.tenant_id.in_(list(named)),
            JobRow.state.in_([JobState.PENDING.value, JobState.MIGRATING.value]),
            JobRow.executor_ref.is_(None),
        )
    ):
        reason = str((decision or {}).get("waiting") or "new")
        key = (named[tenant_id], reason)
        waiting[key] = waiting.get(key, 0) + 1
    for (name, reason), n in sorted(waiting.items()):
        pending.add_metric([name, reason], n)
    hits: dict[str, int] = {}
    for tenant_id, detail in session.execute(
        select(JobRow.tenant_id, JobEvent.detail)
        .join(JobRow, JobRow.id == JobEvent.job_id)
        .where(JobRow.tenant_id.in_(list(named)), JobEvent.to_state == JobState.MIGRATING.value)
    ):
        if (detail or {}).get("event") == "preempted":  # stopped at once
            hits[tenant_id] = hits.get(tenant_id, 0) + 1
    for tenant_id, detail in session.execute(
        select(JobRow.tenant_id, JobEvent.detail)
        .join(JobRow, JobRow.id == JobEvent.job_id)
        .where(JobRow.tenant_id.in_(list(named)), JobEvent.from_state == JobEvent.to_state)
    ):
        if (detail or {}).get("why") == "preempted":  # asked to checkpoint
            hits[tenant_id] = hits.get(tenant_id, 0) + 1
    for tenant_id, name in sorted(named.items(), key=lambda kv: kv[1]):
        preempted.add_metric([name], hits.get(tenant_id, 0))
    return [quota, usage, pending, preempted]
