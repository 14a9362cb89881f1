"""Settlement: meter and charge finished jobs, trial quotas first (:func:`settle_job`), each in
its own transaction (:func:`settle_finished`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from suanwang.billing import ledger, quotas
from suanwang.billing.money import ZERO
from suanwang.core.lifecycle import TERMINAL, JobState
from suanwang.core.network import Network
from suanwang.server.database.models import (
    CenterOwner,
    JobRow,
    LedgerTransaction,
    QuotaUse,
    UsageRecord,
)

from .accounts import lock_consumer, post
from .config import BillingConfig, get_config
from .holds import open_hold
from .metering import is_preemptible, meter
from .quotas import allowances, consume
from .rounds import one_by_one


def _owners(session: Session) -> dict[str, str]:
    return {c: t for c, t in session.execute(select(CenterOwner.center_id, CenterOwner.tenant_id))}


def settle_job(
    *, session: Session, job: JobRow, net: Network, config: BillingConfig, now: datetime
) -> LedgerTransaction | None:
    """Meter and charge a finished job (its row locked by the caller) at ``now``; idempotent."""
    if job.billed_at is not None or JobState(job.state) not in TERMINAL:
        return None
    lines = meter(
        session=session,
        job=job,
        net=net,
        energy_pass_through=config.energy_pass_through,
        idle_discount=config.idle_discount,
    )
    owners = _owners(session)
    by_provider: dict[str, Decimal] = {}
    for line in lines:
        if line.billable:
            acct = ledger.payable(owners.get(line.center_id))
            by_provider[acct] = by_provider.get(acct, ZERO) + line.amount_cny
    hold_amount = open_hold(session=session, job_id=job.id)
    tid = job.tenant_id
    available = lock_consumer(session, tid, now=now)
    # trial quotas: the tenant's consumer accounts are locked above, so its settlements are
    # serialised; the grants are locked too and consumed by conditional updates
    covers = quotas.allocate(
        lines, allowances(session, tid, now=now), token_value=config.token_value_cny_per_million
    )
    consume(session, covers)
    free = sum((c.value_cny for c in covers), ZERO)
    entry = quotas.charge(
        tenant_id=tid,
        job_id=job.id,
        by_provider=by_provider,
        free=free,
        hold_amount=hold_amount,
        available=available,
        rate=config.commission_rate,
    )
    memo = (
        f"job {job.id} ({job.state})"
        + (", energy passed through" if config.energy_pass_through else "")
        + (", preemptible at the idle price" if is_preemptible(job.spec) else "")
    )
    tx, _ = post(session=session, entry=entry, now=now, memo=memo)
    records: dict[int, UsageRecord] = {}
    for line in lines:
        records[line.seq] = UsageRecord(
            job_id=job.id,
            tenant_id=tid,
            seq=line.seq,
            run_event_id=line.run_event_id,
            center_id=line.center_id,
            pool_model=line.model,
            precision=line.precision.value,
            units=line.units,
            started_at=line.started_at,
            ended_at=line.ended_at,
            end_state=line.end_state,
            seconds=line.seconds,
            scu=line.scu,
            it_kwh=line.it_kwh,
            facility_kwh=line.facility_kwh,
            green_kwh=line.green_kwh,
            carbon_kg=line.carbon_kg,
            data_gb=line.data_gb,
            compute_cny=line.compute_cny,
            transfer_cny=line.transfer_cny,
            amount_cny=line.amount_cny,
            billable=line.billable,
            storage_gb_months=line.storage_gb_months,
            storage_cny=line.storage_cny,
            tokens=line.tokens,
            transaction_id=tx.id,
            created_at=now,
        )
    session.add_all(records.values())
    session.flush()
    session.add_all(
        QuotaUse(
            grant_id=c.grant_id,
            tenant_id=tid,
            job_id=job.id,
            usage_record_id=records[c.seq].id,
            resource=c.resource,
            quantity=c.quantity,
            value_cny=c.value_cny,
            transaction_id=tx.id,
            created_at=now,
        )
        for c in covers
    )
    job.billed_at = now
    session.flush()
    return tx


#: How long the charge of a cancelled job waits for its run to stop at the executor (the
#: reconciler's ``run_stopped`` event, with the tokens the run reported) before it is charged
#: without them (an executor that never answers must not keep a job unbilled forever).
STOP_WAIT = timedelta(minutes=15)


def unbilled(*, session: Session, now: datetime, limit: int = 500) -> list[str]:
    """Finished jobs not charged yet; a cancelled job once its run has stopped (or
    :data:`STOP_WAIT` after it ended, by ``now``)."""
    stmt = (
        select(JobRow.id)
        .where(
            JobRow.billed_at.is_(None),
            JobRow.state.in_([s.value for s in TERMINAL]),
            or_(
                JobRow.state != JobState.CANCELLED.value,
                JobRow.executor_ref.is_(None),
                JobRow.ended_at < now - STOP_WAIT,
            ),
        )
        .order_by(JobRow.ended_at, JobRow.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def settle_finished(
    sessions: sessionmaker[Session], net: Network, *, now: datetime, limit: int = 500
) -> int:
    """Charge every finished job not yet charged at ``now``, one transaction per job; returns
    how many.

    Safe to run from several processes at once: each job is taken ``FOR UPDATE SKIP LOCKED``
    and charged once (``billed_at``, and the unique ``charge:<job>`` ref).
    """
    with sessions() as session:
        ids = unbilled(session=session, now=now, limit=limit)

    def charge(session: Session, job: JobRow) -> bool:
        config = get_config(session=session)
        return settle_job(session=session, job=job, net=net, config=config, now=now) is not None

    return one_by_one(sessions, ids, "charge", charge)  # a job not charged keeps its hold
