"""``GET /metrics``: Prometheus text format, computed from the database on each scrape.

Operators only (a bearer key like every other route). Families:

* ``suanwang_jobs{state}`` — jobs by lifecycle state;
* ``suanwang_jobs_deferred`` — scheduled jobs waiting for a planned start still to come;
* ``suanwang_decisions_total`` — placement decisions made (transitions to ``scheduled``);
* ``suanwang_dispatch_latency_seconds`` — summary of submit → scheduled over the last hour;
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
* ``suanwang_fenced_runs_total`` — stale runs cancelled after their center came back.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import PlainTextResponse
from prometheus_client import CollectorRegistry, Gauge, Summary, generate_latest
from sqlalchemy import func, select

from suanwang.core.lifecycle import JobState
from suanwang.server.api.deps import AUTH_RESPONSES, CurrentTenant, NetworkDep, SessionDep
from suanwang.server.database.models import JobEvent, JobRow, TenantRole
from suanwang.server.models.jobs import active_usage
from suanwang.server.schemas import ErrorResponse

router = APIRouter(tags=["observability"])


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
    request: Request, session: SessionDep, tenant: CurrentTenant, net: NetworkDep
) -> PlainTextResponse:
    """Platform metrics in Prometheus text format (operators)."""
    if tenant.role != TenantRole.OPERATOR.value:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "metrics are for operators")
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
    Gauge("suanwang_decisions_total", "Placement decisions made", registry=reg).set(decisions or 0)
    latency = Summary(
        "suanwang_dispatch_latency_seconds", "Submit to scheduled, last hour", registry=reg
    )
    since = now - timedelta(hours=1)
    for submitted, scheduled in session.execute(
        select(JobRow.submitted_at, JobRow.scheduled_at).where(JobRow.scheduled_at >= since)
    ):
        if scheduled is not None:
            latency.observe(max((scheduled - submitted).total_seconds(), 0.0))

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
    _moves(session, reg)
    return PlainTextResponse(
        generate_latest(reg).decode(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


def _moves(session: SessionDep, reg: CollectorRegistry) -> None:
    """Failover and migration counters (docs/centers.md)."""
    by_state = dict(
        session.execute(
            select(JobEvent.to_state, func.count())
            .where(JobEvent.to_state.in_(["lost", "migrating"]))
            .where(JobEvent.from_state != JobEvent.to_state)
            .group_by(JobEvent.to_state)
        ).all()
    )
    Gauge("suanwang_failovers_total", "Runs given up on (lost)", registry=reg).set(
        by_state.get("lost", 0)
    )
    Gauge("suanwang_migrations_total", "Runs checkpointed and moved", registry=reg).set(
        by_state.get("migrating", 0)
    )
    requests = Gauge(
        "suanwang_migration_requests_total", "Checkpoint requests", ["why"], registry=reg
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
    for why, n in counts.items():
        requests.labels(why).set(n)
    Gauge(
        "suanwang_migration_planned_cost_cny", "Planned checkpoint transfer cost", registry=reg
    ).set(planned_cost)
    Gauge("suanwang_fenced_runs_total", "Stale runs cancelled", registry=reg).set(fenced)
