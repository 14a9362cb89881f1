"""Holds: at submit, reserve a job's estimated charge from its tenant's prepaid balance
(:func:`admit`); once it is placed, set the hold to the estimate where it was placed
(:func:`lower_hold`, :func:`lower_holds`). A ``preemptible`` job is estimated at the idle
price (:mod:`suanwang.billing.rating`), so it holds no more than it can be charged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import String, cast, func, literal, select
from sqlalchemy.orm import Session, sessionmaker

from suanwang.billing import ledger
from suanwang.billing.ledger import Entry
from suanwang.billing.money import ZERO, cents, cents_up
from suanwang.billing.pricing import DEFAULT_IDLE_DISCOUNT, NoPrice, PriceBook, book_for
from suanwang.billing.rating import Segment, estimate_hold, rate_segment
from suanwang.core.hardware import speed_scu_per_hour
from suanwang.core.lifecycle import TERMINAL, JobState
from suanwang.core.network import Network
from suanwang.server.database.models import JobEvent, JobRow, LedgerTransaction, Tenant
from suanwang.server.models.job_specs import to_core_job

from .accounts import lock_consumer, post
from .config import admission_config, get_config, needs_hold
from .metering import is_preemptible, market_of, precision_of
from .rounds import one_by_one
from .trading import price_book


def hold_estimate(
    *,
    job: JobRow,
    net: Network,
    idle_discount: Decimal = DEFAULT_IDLE_DISCOUNT,
    offers: PriceBook | None = None,
) -> Decimal:
    """The job's hold at submit (:func:`suanwang.billing.rating.estimate_hold`): at the
    highest posted price, or, for a ``preemptible`` job, at the highest idle price: the posted
    prices less ``idle_discount``, or a dearer ``idle_discount`` offer of ``offers`` (an
    offer-aware book, :func:`.trading.price_book`; used for preemptible jobs only)."""
    core = to_core_job(job, net)
    precision, units = precision_of(job.spec)
    place = net.place(core.origin)
    max_link = Decimal(repr(float(net.transfer_cost_cny_per_gb[place].max())))
    preemptible = is_preemptible(job.spec)
    return estimate_hold(
        offers if offers is not None and preemptible else book_for(net.scenario),
        work_scu=core.work_scu,
        precision=precision,
        data_gb=core.data_gb,
        max_transfer_cny_per_gb=max_link,
        units=units,
        preemptible=preemptible,
        idle_discount=idle_discount,
    )


def admit(
    *, session: Session, tenant: Tenant, job: JobRow, net: Network, now: datetime
) -> Decimal | None:
    """At submit (``now``): reserve the job's estimated charge if billing requires it.

    Returns the hold (None: no hold needed). Raises :class:`InsufficientBalance`.
    """
    config = admission_config(session=session)
    if not needs_hold(tenant, config):
        return None
    offers = None
    if is_preemptible(job.spec):  # its idle_discount offers may price it
        offers = price_book(session=session, scenario=net.scenario, since=now)
    amount = hold_estimate(job=job, net=net, idle_discount=config.idle_discount, offers=offers)
    if amount <= 0:
        return ZERO
    entry = ledger.hold(tenant.id, job.id, amount)
    post(session=session, entry=entry, now=now, memo=f"hold for job {job.id}")
    return amount


def open_hold(*, session: Session, job_id: str) -> Decimal:
    """What the job's hold still reserves: the hold at submit less what its placements
    released (:func:`lower_hold`; a release taken back is negative); 0 without a hold."""
    sums = _hold_sums(session, job_id)
    return sums.get("hold", ZERO) - sums.get("release", ZERO)


def _hold_sums(session: Session, job_id: str) -> dict[str, Decimal]:
    """The job's hold (``"hold"``, absent without one) and the sum of its releases."""
    rows = session.execute(
        select(LedgerTransaction.kind, func.sum(LedgerTransaction.amount))
        .where(
            LedgerTransaction.job_id == job_id,
            LedgerTransaction.kind.in_(["hold", "release"]),
        )
        .group_by(LedgerTransaction.kind)
    ).all()
    return {kind: cents(Decimal(amount or 0)) for kind, amount in rows}


def placement_estimate(
    *,
    job: JobRow,
    net: Network,
    center_id: str,
    model: str,
    start: datetime,
    market: str | None = None,
    book: PriceBook | None = None,
    idle_discount: Decimal = DEFAULT_IDLE_DISCOUNT,
) -> Decimal:
    """The job's estimated charge where it was placed: its work on ``model`` at ``center_id``
    from ``start`` for as long as the work takes there, at each hour's price (the trade's,
    for a placement under an offer or the tenant's reservation, ``market``, with ``book``
    holding the offers; else posted; for a ``preemptible`` job at most the idle price, with
    ``idle_discount`` and ``book``'s ``idle_discount`` offers), plus its data at the link from
    its origin to that center and stored there for that long; rounded up to the fen."""
    core = to_core_job(job, net)
    precision, units = precision_of(job.spec)
    speed = speed_scu_per_hour(net.scenario.catalog.get(model), precision)
    if speed <= 0:
        raise NoPrice(f"model {model!r} cannot run {precision.value} work")
    hours = Decimal(repr(float(core.work_scu))) / (units * Decimal(repr(speed)))
    end = start + timedelta(seconds=float(hours * 3600))
    data_gb = Decimal(repr(float(core.data_gb)))
    link = ZERO
    if data_gb > 0:
        p, c = net.place(core.origin), net.center_index[center_id]
        link = Decimal(repr(float(net.transfer_cost_cny_per_gb[p, c])))
    line = rate_segment(
        book if book is not None else book_for(net.scenario),
        Segment(0, center_id, model, start, end, JobState.SUCCEEDED.value, 0, market=market),
        precision=precision,
        units=units,
        data_gb=data_gb,
        transfer_cny_per_gb=link,
        tenant=job.tenant_id,
        stored_gb=data_gb,
        preemptible=is_preemptible(job.spec),
        idle_discount=idle_discount,
    )
    return cents_up(line.amount_cny)


def lower_hold(
    *, session: Session, job: JobRow, net: Network, now: datetime
) -> LedgerTransaction | None:
    """Once the job is placed, set its hold to the estimate where it was placed (the latest
    ``scheduled`` event's center, ``pool`` chip, ``start_at`` and market), never above the
    hold at submit: ``release:<job>:<event>`` (held -d, prepaid +d), written once per
    placement. A first placement lowers the hold; a re-placement after a failover or a
    migration moves it again, down, or up (d < 0, taken from prepaid as far as it goes)
    when the new place is dearer. The release is written at ``now``.

    The caller locks the job row (as settlement does), so a release and the job's charge never
    interleave; a job already charged, unplaced, ended or repriced for its placement is left
    alone (None).
    """
    if job.billed_at is not None or JobState(job.state) in TERMINAL:
        return None
    sums = _hold_sums(session, job.id)
    if "hold" not in sums:
        return None
    placed = session.scalar(
        select(JobEvent)
        .where(JobEvent.job_id == job.id, *_PLACEMENT)
        .order_by(JobEvent.id.desc())
        .limit(1)
    )
    if placed is None:
        return None
    ref = release_ref(job.id, placed.id)
    if session.scalar(select(LedgerTransaction.id).where(LedgerTransaction.ref == ref)):
        return None
    detail = placed.detail or {}
    center = str(detail.get("center") or job.center_id or "")
    model = str(detail.get("pool") or job.pool_model or "")
    market = market_of(detail)
    s = detail.get("start_at")
    start = placed.at
    if isinstance(s, str):
        planned = datetime.fromisoformat(s)
        start = max(start, planned if planned.tzinfo else planned.replace(tzinfo=UTC))
    book = None
    discount = DEFAULT_IDLE_DISCOUNT
    preemptible = is_preemptible(job.spec)
    if market is not None or preemptible:
        book = price_book(session=session, scenario=net.scenario, since=start)
    if preemptible:
        discount = get_config(session=session).idle_discount
    estimate = placement_estimate(
        job=job, net=net, center_id=center, model=model, start=start, market=market, book=book,
        idle_discount=discount,
    )  # fmt: skip
    target = min(estimate, sums["hold"])
    tid = job.tenant_id
    current = sums["hold"] - sums.get("release", ZERO)
    release = current - target
    if release < 0:  # dearer than the last placement: hold more, as far as prepaid goes
        release = max(release, -lock_consumer(session, tid, now=now))
    entry = Entry(
        "release",
        ref,
        (ledger.Posting(ledger.held(tid), -release), ledger.Posting(ledger.prepaid(tid), release)),
        release,
        tenant_id=tid,
        job_id=job.id,
    )
    memo = (
        f"hold of job {job.id} set to {current - release} CNY at placement "
        f"({center}, {model}, estimate {estimate} CNY)"
    )
    tx, _ = post(session=session, entry=entry, now=now, memo=memo)
    return tx


#: A placement: an event into ``scheduled`` from another state (``scheduled -> scheduled`` is a
#: fence or another note, not a placement).
_PLACEMENT = (
    JobEvent.to_state == JobState.SCHEDULED.value,
    JobEvent.from_state != JobState.SCHEDULED.value,
)


def release_ref(job_id: str, scheduled_event_id: int) -> str:
    """The ref of the hold's repricing for one placement (the job's ``scheduled`` event)."""
    return f"release:{job_id}:{scheduled_event_id}"


def placed_with_hold(*, session: Session, limit: int = 500) -> list[str]:
    """Jobs placed (scheduled, running, migrating or lost) whose hold was not repriced for
    their latest placement yet."""
    job = JobRow.__table__
    release = LedgerTransaction.__table__.alias("r")
    latest = (
        select(func.max(JobEvent.id))
        .where(JobEvent.job_id == LedgerTransaction.job_id, *_PLACEMENT)
        .correlate(LedgerTransaction)
        .scalar_subquery()
    )
    ref = literal("release:") + LedgerTransaction.job_id + literal(":") + cast(latest, String)
    stmt = (
        select(LedgerTransaction.job_id)
        .join(job, job.c.id == LedgerTransaction.job_id)
        .outerjoin(release, release.c.ref == ref)
        .where(
            LedgerTransaction.kind == "hold",
            release.c.id.is_(None),
            job.c.billed_at.is_(None),
            job.c.state.in_(
                [
                    JobState.SCHEDULED.value,
                    JobState.RUNNING.value,
                    JobState.MIGRATING.value,
                    JobState.LOST.value,
                ]
            ),
        )
        .order_by(LedgerTransaction.id)
        .limit(limit)
    )
    return [j for j in session.scalars(stmt) if j is not None]


def lower_holds(
    sessions: sessionmaker[Session], net: Network, *, now: datetime, limit: int = 500
) -> int:
    """Lower the hold of every placed job not yet repriced, at ``now``, one transaction per
    job (its row ``FOR UPDATE SKIP LOCKED``, like :func:`.settle.settle_finished`); returns
    how many were written."""
    with sessions() as session:
        ids = placed_with_hold(session=session, limit=limit)
    # a hold that cannot be repriced stays as it was (the charge at the end releases it)
    return one_by_one(
        sessions, ids, "reprice the hold of",
        lambda session, job: lower_hold(session=session, job=job, net=net, now=now) is not None,
    )  # fmt: skip
