"""The database side of billing: settings, accounts, posting, holds, metering, statements.

A thin layer over the pure rules (:mod:`.pricing`, :mod:`.rating`, :mod:`.ledger`). Functions
take ``session=`` and flush but do not commit, except :func:`settle_finished`, which settles
each finished job in its own transaction (``sessions``) so that no two jobs' account locks are
ever held together.

Concurrency: every balance change is ``UPDATE accounts SET balance = balance + d`` in account
id order within one transaction that writes one ledger entry; a debit of a prepaid or held
account is conditional (``balance + d >= 0``) so balances never go negative, and the database
checks it too (``ck_accounts_non_negative``). Entries carry a unique ``ref`` (``hold:<job>``,
``charge:<job>``, ``topup:<key>``): writing one twice writes it once.
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Engine, String, and_, cast, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.hardware import Precision, speed_scu_per_hour
from suanwang.core.jobs import JobKind
from suanwang.core.lifecycle import RUN_STOPPED, TERMINAL, JobState
from suanwang.core.network import Network
from suanwang.core.scenario import Scenario
from suanwang.server.database.models import (
    Account,
    BillingSetting,
    CenterOwner,
    JobEvent,
    JobRow,
    LedgerPosting,
    LedgerTransaction,
    QuotaGrant,
    QuotaUse,
    ReservationRow,
    Tenant,
    TenantRole,
    UsageRecord,
    utcnow,
)

from . import ledger, quotas
from .ledger import Entry
from .money import ZERO, cents, cents_up, qty
from .pricing import NoPrice, PriceBook
from .rating import Segment, UsageLine, estimate_hold, rate_segment

log = logging.getLogger("suanwang.billing")

# --------------------------------------------------------------------------- settings

BILLING_REQUIRED = "billing_required"
COMMISSION_RATE = "commission_rate"
ENERGY_PASS_THROUGH = "energy_pass_through"
TOKEN_VALUE = "token_value_cny_per_million"
#: The highest token value an operator may set (CNY per million tokens).
MAX_TOKEN_VALUE = Decimal(1000)


@dataclass(frozen=True, slots=True)
class BillingConfig:
    """``billing_required``: consumers and providers need a prepaid balance to submit (402
    otherwise); off (the default of a fresh database), jobs are charged postpaid."""

    billing_required: bool = False
    commission_rate: Decimal = ledger.DEFAULT_COMMISSION
    #: Charge the capacity part of the posted price + metered energy at the hour's tariff
    #: (:func:`.rating.rate_segment`) instead of the posted price.
    energy_pass_through: bool = False
    #: What a free trial token is worth at most, CNY per million tokens (:mod:`.quotas`).
    token_value_cny_per_million: Decimal = quotas.DEFAULT_TOKEN_VALUE

    def as_json(self) -> dict[str, Any]:
        return {
            "billing_required": self.billing_required,
            "commission_rate": str(self.commission_rate),
            "energy_pass_through": self.energy_pass_through,
            "token_value_cny_per_million": str(self.token_value_cny_per_million),
        }


#: Seconds a server process keeps the settings it read for admitting submissions
#: (:func:`admission_config`); a change made by another process takes effect within this time.
ADMISSION_CONFIG_TTL_S = 10.0
_ADMISSION: weakref.WeakKeyDictionary[Engine, tuple[float, BillingConfig]] = (
    weakref.WeakKeyDictionary()
)


def get_config(*, session: Session) -> BillingConfig:
    values = {s.key: s.value for s in session.scalars(select(BillingSetting))}
    return BillingConfig(
        billing_required=values.get(BILLING_REQUIRED, "false") == "true",
        commission_rate=Decimal(values.get(COMMISSION_RATE, str(ledger.DEFAULT_COMMISSION))),
        energy_pass_through=values.get(ENERGY_PASS_THROUGH, "false") == "true",
        token_value_cny_per_million=Decimal(
            values.get(TOKEN_VALUE, str(quotas.DEFAULT_TOKEN_VALUE))
        ),
    )


def check_token_value(value: Decimal) -> Decimal:
    """A token value (CNY per million tokens): within 0..1000 with at most 2 decimals."""
    if not value.is_finite() or not ZERO <= value <= MAX_TOKEN_VALUE or value != cents(value):
        raise ValueError(
            f"token value {value}: must be between 0 and {MAX_TOKEN_VALUE} CNY per million "
            "tokens, with at most 2 decimals"
        )
    return cents(value)


def set_config(
    *,
    session: Session,
    billing_required: bool | None = None,
    commission_rate: Decimal | None = None,
    energy_pass_through: bool | None = None,
    token_value_cny_per_million: Decimal | None = None,
) -> BillingConfig:
    """Change settings (``commission_rate`` must be within 5 %..10 %, the token value within
    0..1000 CNY per million tokens); returns the new ones."""
    updates: dict[str, str] = {}
    if billing_required is not None:
        updates[BILLING_REQUIRED] = "true" if billing_required else "false"
    if commission_rate is not None:
        updates[COMMISSION_RATE] = str(ledger.check_commission(commission_rate))
    if energy_pass_through is not None:
        updates[ENERGY_PASS_THROUGH] = "true" if energy_pass_through else "false"
    if token_value_cny_per_million is not None:
        updates[TOKEN_VALUE] = str(check_token_value(token_value_cny_per_million))
    for key, value in updates.items():
        row = session.get(BillingSetting, key)
        if row is None:
            session.add(BillingSetting(key=key, value=value, updated_at=utcnow()))
        else:
            row.value, row.updated_at = value, utcnow()
    session.flush()
    forget_admission_config()
    return get_config(session=session)


def forget_admission_config() -> None:
    """Drop this process's cached settings (after they were changed behind its back)."""
    _ADMISSION.clear()


def admission_config(*, session: Session) -> BillingConfig:
    """The settings as read at most :data:`ADMISSION_CONFIG_TTL_S` ago by this process, per
    database: the submit path reads them on every request, so they are cached (one query
    less per submission). Settlement always reads them afresh (:func:`get_config`)."""
    engine = session.get_bind()
    if not isinstance(engine, Engine):
        engine = engine.engine
    now = time.monotonic()
    hit = _ADMISSION.get(engine)
    if hit is not None and hit[0] > now:
        return hit[1]
    config = get_config(session=session)
    _ADMISSION[engine] = (now + ADMISSION_CONFIG_TTL_S, config)
    return config


# --------------------------------------------------------------------------- price books

_BOOKS: dict[int, tuple[Scenario, PriceBook]] = {}


def book_for(scenario: Scenario) -> PriceBook:
    """The (cached) price book of a loaded scenario."""
    hit = _BOOKS.get(id(scenario))
    if hit is None or hit[0] is not scenario:
        hit = (scenario, PriceBook(scenario))
        _BOOKS[id(scenario)] = hit
    return hit[1]


# --------------------------------------------------------------------------- posting


class InsufficientBalance(Exception):
    """A debit that would take a prepaid or held account below zero."""

    def __init__(self, account_id: str, required: Decimal, available: Decimal) -> None:
        super().__init__(
            f"account {account_id}: {required} CNY required, {available} CNY available"
        )
        self.account_id = account_id
        self.required = required
        self.available = available


def _insert_ignore(session: Session, values: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    ins: Any = postgresql.insert(Account) if dialect == "postgresql" else sqlite.insert(Account)
    session.execute(ins.values(values).on_conflict_do_nothing(index_elements=["id"]))


def ensure_accounts(*, session: Session, account_ids: list[str]) -> None:
    now = utcnow()
    rows = [
        {
            "id": a,
            "kind": ledger.account_kind(a),
            "tenant_id": ledger.account_tenant(a),
            "balance": ZERO,
            "created_at": now,
        }
        for a in sorted(set(account_ids))
    ]
    if rows:
        _insert_ignore(session, rows)


def balance_of(*, session: Session, account_id: str, lock: bool = False) -> Decimal:
    stmt = select(Account.balance).where(Account.id == account_id)
    if lock:
        stmt = stmt.with_for_update()
    value = session.scalar(stmt)
    return value if value is not None else ZERO


def post(*, session: Session, entry: Entry, memo: str = "") -> tuple[LedgerTransaction, bool]:
    """Write ``entry`` (balances updated in account order); ``(transaction, written)``.

    If a transaction with the entry's ``ref`` exists, nothing is written and it is returned.
    Raises :class:`InsufficientBalance` (nothing written) if a prepaid or held account would
    go below zero.
    """
    existing = session.scalar(select(LedgerTransaction).where(LedgerTransaction.ref == entry.ref))
    if existing is not None:
        return existing, False
    delta = entry.delta()
    ensure_accounts(session=session, account_ids=list(delta))
    try:
        with session.begin_nested():
            tx = LedgerTransaction(
                kind=entry.kind,
                ref=entry.ref,
                tenant_id=entry.tenant_id,
                job_id=entry.job_id,
                amount=entry.amount,
                commission=entry.commission,
                memo=memo,
                created_at=utcnow(),
            )
            session.add(tx)
            session.flush()
            for account_id in sorted(delta):
                d = delta[account_id]
                stmt = update(Account).where(Account.id == account_id)
                if d < 0 and ledger.account_kind(account_id) in ledger.NON_NEGATIVE_KINDS:
                    stmt = stmt.where(Account.balance >= -d)
                result = session.execute(
                    stmt.values(balance=Account.balance + d),
                    execution_options={"synchronize_session": False},
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    raise InsufficientBalance(
                        account_id, -d, balance_of(session=session, account_id=account_id)
                    )
            for p in entry.postings:
                session.add(
                    LedgerPosting(transaction_id=tx.id, account_id=p.account_id, amount=p.amount)
                )
            session.flush()
    except IntegrityError:
        # the same ref written concurrently (the unique constraint decided): return that one
        existing = session.scalar(
            select(LedgerTransaction).where(LedgerTransaction.ref == entry.ref)
        )
        if existing is None:
            raise
        return existing, False
    return tx, True


# --------------------------------------------------------------------------- top-ups, holds


def tenant_by_name_or_id(*, session: Session, ref: str) -> Tenant | None:
    if "\x00" in ref:  # no name has one (and PostgreSQL refuses it in a query)
        return None
    return session.scalar(select(Tenant).where((Tenant.name == ref) | (Tenant.id == ref)))


def topup(
    *, session: Session, tenant: Tenant, amount: Decimal, key: str | None = None, memo: str = ""
) -> tuple[LedgerTransaction, bool]:
    """Credit ``amount`` to the tenant's prepaid balance; ``key`` makes retries idempotent."""
    ref = f"topup:{key}" if key else f"topup:{uuid.uuid4()}"
    tx, written = post(session=session, entry=ledger.topup(tenant.id, amount, ref), memo=memo)
    if not written and (tx.kind != "topup" or tx.tenant_id != tenant.id or tx.amount != amount):
        raise ValueError(f"top-up key {key!r} was already used for a different top-up")
    return tx, written


def payout(
    *,
    session: Session,
    provider: Tenant,
    amount: Decimal | None = None,
    key: str | None = None,
    memo: str = "",
    now: datetime | None = None,
) -> tuple[LedgerTransaction, bool]:
    """Pay ``provider`` what it is owed for its centers' work (``amount``, or everything due
    when None); ``(transaction, written)``. ``key`` makes retries idempotent (a key reused for
    another payout: ValueError). Never more than is due (:func:`due_to`, read with the payable
    account locked); nothing due, or more than is due, is a ValueError naming both amounts.
    ``now`` decides which bookings have started (the API's clock)."""
    if provider.tenant_role is not TenantRole.PROVIDER:
        raise ValueError(f"tenant {provider.name!r} is a {provider.tenant_role}, not a provider")
    ref = f"payout:{key}" if key else f"payout:{uuid.uuid4()}"
    account = ledger.payable(provider.id)
    ensure_accounts(session=session, account_ids=[account])
    balance_of(session=session, account_id=account, lock=True)  # payouts of one provider queue
    existing = session.scalar(select(LedgerTransaction).where(LedgerTransaction.ref == ref))
    if existing is not None:  # a retry (read under the lock: also one that waited for it)
        if (
            existing.kind != "payout"
            or existing.tenant_id != provider.id
            or (amount is not None and existing.amount != amount)
        ):
            raise ValueError(f"payout key {key!r} was already used for a different payout")
        return existing, False
    due = due_to(session=session, provider_id=provider.id, now=now)
    if amount is None:
        amount = due
    if due <= 0:
        raise ValueError(f"nothing is due to provider {provider.name!r} ({due} CNY)")
    if amount > due:
        raise ValueError(
            f"a payout of {amount} CNY is more than the {due} CNY due to provider {provider.name!r}"
        )
    return post(session=session, entry=ledger.payout(provider.id, amount, ref), memo=memo)


def due_to(*, session: Session, provider_id: str, now: datetime | None = None) -> Decimal:
    """What may be paid out to a provider now: its payable balance less its share of bookings
    that have not started and are not cancelled (they can still be cancelled and refunded in
    full, and a refund takes that share back from the provider)."""
    account = ledger.payable(provider_id)
    refundable = session.scalar(
        select(func.sum(LedgerPosting.amount))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .join(ReservationRow, ReservationRow.transaction_id == LedgerTransaction.id)
        .where(
            LedgerPosting.account_id == account,
            LedgerTransaction.kind == "reservation",
            ReservationRow.cancelled_at.is_(None),
            ReservationRow.starts_at > (now or utcnow()),
        )
    )
    return balance_of(session=session, account_id=account) - cents(Decimal(refundable or 0))


def _precision(spec: dict[str, Any]) -> tuple[Precision, int]:
    res = spec.get("resources") or {}
    count = int(res.get("count", 0))
    if count <= 0:
        return Precision.CPU, int(res.get("cpus", 1))
    kind = spec.get("kind") or ("training" if count > 0 else "analytics")
    return JobKind(kind).precision, count


def needs_hold(tenant: Tenant, config: BillingConfig) -> bool:
    """Prepayment applies to consumers and providers when billing is required (not operators)."""
    return config.billing_required and tenant.tenant_role is not TenantRole.OPERATOR


def hold_estimate(*, job: JobRow, net: Network) -> Decimal:
    from suanwang.server.models.jobs import to_core_job

    core = to_core_job(job, net)
    precision, units = _precision(job.spec)
    place = net.place(core.origin)
    max_link = Decimal(repr(float(net.transfer_cost_cny_per_gb[place].max())))
    return estimate_hold(
        book_for(net.scenario),
        work_scu=core.work_scu,
        precision=precision,
        data_gb=core.data_gb,
        max_transfer_cny_per_gb=max_link,
        units=units,
    )


def admit(*, session: Session, tenant: Tenant, job: JobRow, net: Network) -> Decimal | None:
    """At submit: reserve the job's estimated charge if billing requires it.

    Returns the hold (None: no hold needed). Raises :class:`InsufficientBalance`.
    """
    if not needs_hold(tenant, admission_config(session=session)):
        return None
    amount = hold_estimate(job=job, net=net)
    if amount <= 0:
        return ZERO
    entry = ledger.hold(tenant.id, job.id, amount)
    post(session=session, entry=entry, memo=f"hold for job {job.id}")
    return amount


# --------------------------------------------------------------------------- metering


def segments(*, job: JobRow, events: list[JobEvent]) -> list[Segment]:
    """The runs of a job from its events (see :mod:`.rating`).

    A run the platform never saw ``running`` (it went from ``scheduled`` straight to
    ``succeeded`` or ``failed`` between two polls) is metered from its hand-over: the later of
    its placement and its planned start. ``scheduled -> cancelled`` is no run. Events that keep
    the state (``running -> running`` for a checkpoint request, ``scheduled -> scheduled`` for
    a fence, ``cancelled -> cancelled`` when a cancelled run stopped) are not transitions.
    """
    out: list[Segment] = []
    center: str | None = None
    model: str | None = None
    placed_at: datetime | None = None
    start_at: datetime | None = None
    market: str | None = None
    open_at: tuple[datetime, int] | None = None
    for ev in events:
        to = JobState(ev.to_state)
        frm = JobState(ev.from_state) if ev.from_state else None
        detail = ev.detail or {}
        if frm is to:
            # not a transition but a note on the job in its state (a fence, a checkpoint
            # request, a run of a cancelled job that stopped): it neither starts nor ends a run
            # nor places the job; what a cancelled job's stopped run reported is that run's
            stopped = detail.get("event") == RUN_STOPPED and tokens_of(detail) > 0
            if stopped and out and out[-1].end_state == JobState.CANCELLED.value:
                out[-1] = replace(out[-1], tokens=out[-1].tokens + tokens_of(detail))
            continue
        if to is JobState.SCHEDULED:
            center = str(detail.get("center") or job.center_id or "")
            pool = detail.get("pool")
            model = str(pool) if pool else (job.pool_model if center == job.center_id else None)
            placed_at = ev.at
            s = detail.get("start_at")
            start_at = datetime.fromisoformat(s) if isinstance(s, str) else None
            market = market_of(detail)
        elif to is JobState.RUNNING:
            open_at = (ev.at, ev.id)
        elif frm is JobState.RUNNING and open_at is not None:
            out.append(
                _segment(len(out), center, model, job, open_at[0], ev.at, to, open_at[1], market,
                         tokens_of(detail))
            )  # fmt: skip
            open_at = None
        elif (
            frm is JobState.SCHEDULED
            and to in (JobState.SUCCEEDED, JobState.FAILED)
            and placed_at is not None
        ):
            begin = max(placed_at, start_at) if start_at is not None else placed_at
            out.append(
                _segment(len(out), center, model, job, min(begin, ev.at), ev.at, to, ev.id, market,
                         tokens_of(detail))
            )  # fmt: skip
    return out


def tokens_of(detail: dict[str, Any]) -> int:
    """Tokens the run reported serving, from the detail of the event that ended it
    (``{"usage": {"tokens": N}}``, written by the reconciler); 0 if none or malformed."""
    usage = detail.get("usage")
    n = usage.get("tokens") if isinstance(usage, dict) else None
    if isinstance(n, int) and not isinstance(n, bool) and 0 < n < quotas.MAX_TOKENS:
        return n
    return 0


def market_of(detail: dict[str, Any]) -> str | None:
    """How the dispatcher priced a placement, from its ``scheduled`` event: ``"offer"``,
    ``"reservation"`` or None (the posted price)."""
    m = detail.get("market")
    return str(m["source"]) if isinstance(m, dict) and m.get("source") else None


def _segment(
    seq: int,
    center: str | None,
    model: str | None,
    job: JobRow,
    start: datetime,
    end: datetime,
    to: JobState,
    event_id: int,
    market: str | None = None,
    tokens: int = 0,
) -> Segment:
    res = (job.spec or {}).get("resources") or {}
    return Segment(
        seq=seq,
        center_id=center or job.center_id or "",
        model=model or job.pool_model or str(res.get("accelerator", "")),
        started_at=start,
        ended_at=end,
        end_state=to.value,
        run_event_id=event_id,
        market=market,
        tokens=tokens,
    )


def meter(
    *, session: Session, job: JobRow, net: Network, energy_pass_through: bool = False
) -> list[UsageLine]:
    """Rate every run of ``job`` (pure apart from reading its events)."""
    events = list(
        session.scalars(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id))
    )
    segs = segments(job=job, events=events)
    precision, units = _precision(job.spec)
    from .trading_store import price_book  # offers replace posted prices in their windows

    since = min((seg.started_at for seg in segs), default=None)
    book = price_book(session=session, scenario=net.scenario, since=since)
    lines: list[UsageLine] = []
    data_gb = Decimal(repr(float(job.spec.get("data_gb") or 0.0)))
    origin = str(job.spec.get("origin", ""))
    for seg in segs:
        first = not lines
        link = ZERO
        if first and data_gb > 0 and seg.center_id in net.center_index:
            p, c = net.place(origin), net.center_index[seg.center_id]
            link = Decimal(repr(float(net.transfer_cost_cny_per_gb[p, c])))
        lines.append(
            rate_segment(
                book,
                seg,
                precision=precision,
                units=units,
                data_gb=data_gb if first else ZERO,
                transfer_cny_per_gb=link,
                energy_pass_through=energy_pass_through,
                tenant=job.tenant_id,
                stored_gb=data_gb,
            )
        )
    return lines


# --------------------------------------------------------------------------- hold at placement


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
) -> Decimal:
    """The job's estimated charge where it was placed: its work on ``model`` at ``center_id``
    from ``start`` for as long as the work takes there, at each hour's price (the trade's,
    for a placement under an offer or the tenant's reservation, ``market``, with ``book``
    holding the offers; else posted), plus its data at the link from its origin to that
    center and stored there for that long; rounded up to the fen."""
    from suanwang.server.models.jobs import to_core_job

    core = to_core_job(job, net)
    precision, units = _precision(job.spec)
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
        book if book is not None and market is not None else book_for(net.scenario),
        Segment(0, center_id, model, start, end, JobState.SUCCEEDED.value, 0, market=market),
        precision=precision,
        units=units,
        data_gb=data_gb,
        transfer_cny_per_gb=link,
        tenant=job.tenant_id,
        stored_gb=data_gb,
    )
    return cents_up(line.amount_cny)


def lower_hold(*, session: Session, job: JobRow, net: Network) -> LedgerTransaction | None:
    """Once the job is placed, set its hold to the estimate where it was placed (the latest
    ``scheduled`` event's center, ``pool`` chip, ``start_at`` and market), never above the
    hold at submit: ``release:<job>:<event>`` (held -d, prepaid +d), written once per
    placement. A first placement lowers the hold; a re-placement after a failover or a
    migration moves it again, down, or up (d < 0, taken from prepaid as far as it goes)
    when the new place is dearer.

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
    if market is not None:
        from .trading_store import price_book

        book = price_book(session=session, scenario=net.scenario, since=start)
    estimate = placement_estimate(
        job=job, net=net, center_id=center, model=model, start=start, market=market, book=book
    )
    target = min(estimate, sums["hold"])
    tid = job.tenant_id
    current = sums["hold"] - sums.get("release", ZERO)
    release = current - target
    if release < 0:  # dearer than the last placement: hold more, as far as prepaid goes
        release = max(release, -_lock_consumer(session, tid))
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
    tx, _ = post(session=session, entry=entry, memo=memo)
    return tx


def _lock_consumer(session: Session, tenant_id: str) -> Decimal:
    """Lock the tenant's consumer accounts (``FOR UPDATE``, in id order, as every writer
    does); returns the prepaid balance."""
    consumer = [ledger.held(tenant_id), ledger.postpaid(tenant_id), ledger.prepaid(tenant_id)]
    ensure_accounts(session=session, account_ids=consumer)
    locked = session.execute(
        select(Account.id, Account.balance)
        .where(Account.id.in_(consumer))
        .order_by(Account.id)
        .with_for_update()
    ).all()
    return {a: b for a, b in locked}.get(ledger.prepaid(tenant_id), ZERO)


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


def lower_holds(sessions: sessionmaker[Session], net: Network, *, limit: int = 500) -> int:
    """Lower the hold of every placed job not yet repriced, one transaction per job (its row
    ``FOR UPDATE SKIP LOCKED``, like :func:`settle_finished`); returns how many were written."""
    with sessions() as session:
        ids = placed_with_hold(session=session, limit=limit)
    # a hold that cannot be repriced stays as it was (the charge at the end releases it)
    return _one_by_one(
        sessions, ids, "reprice the hold of",
        lambda session, job: lower_hold(session=session, job=job, net=net) is not None,
    )  # fmt: skip


def _one_by_one(
    sessions: sessionmaker[Session],
    ids: list[str],
    what: str,
    work: Callable[[Session, JobRow], bool],
) -> int:
    """``work`` on each unbilled job in its own transaction, its row taken ``FOR UPDATE SKIP
    LOCKED`` (a job another worker has is skipped); returns for how many ``work`` was true.

    A job the served scenario cannot rate (e.g. stored under another scenario), or one the
    database refuses, must not hold up everyone else's: it is logged and left as it is (its
    transaction rolled back).
    """
    done = 0
    for job_id in ids:
        try:
            with sessions.begin() as session:
                job = session.scalar(
                    select(JobRow)
                    .where(JobRow.id == job_id, JobRow.billed_at.is_(None))
                    .with_for_update(skip_locked=True)
                )
                if job is not None and work(session, job):
                    done += 1
        except (NoPrice, KeyError, ValueError, ArithmeticError, SQLAlchemyError) as exc:
            log.error("cannot %s job %s: %s: %s", what, job_id, exc.__class__.__name__, exc)
    return done


# --------------------------------------------------------------------------- trial quotas


def _allowances(session: Session, tenant_id: str) -> list[quotas.Allowance]:
    """The tenant's unexpired grants with something left, locked, in consumption order."""
    now = utcnow()
    grants = session.scalars(
        select(QuotaGrant)
        .where(
            QuotaGrant.tenant_id == tenant_id,
            (QuotaGrant.expires_at.is_(None)) | (QuotaGrant.expires_at > now),
            (QuotaGrant.card_hours_used < QuotaGrant.card_hours)
            | (QuotaGrant.storage_gb_months_used < QuotaGrant.storage_gb_months)
            | (QuotaGrant.tokens_used < QuotaGrant.tokens),
        )
        .order_by(QuotaGrant.expires_at.is_(None), QuotaGrant.expires_at, QuotaGrant.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return [
        quotas.Allowance(
            g.id,
            g.card_hours - g.card_hours_used,
            g.storage_gb_months - g.storage_gb_months_used,
            g.tokens - g.tokens_used,
        )
        for g in grants
    ]


class QuotaRace(ValueError):
    """A grant had less left than it was read with (never expected: grants are locked)."""


def _consume(session: Session, covers: list[quotas.Cover]) -> None:
    columns: dict[str, tuple[Any, Any]] = {
        quotas.CARD_HOURS: (QuotaGrant.card_hours_used, QuotaGrant.card_hours),
        quotas.STORAGE_GB_MONTHS: (QuotaGrant.storage_gb_months_used, QuotaGrant.storage_gb_months),
        quotas.TOKENS: (QuotaGrant.tokens_used, QuotaGrant.tokens),
    }
    for c in sorted(covers, key=lambda c: (c.grant_id, c.resource, c.seq)):
        used, granted = columns[c.resource]
        q: Decimal | int = int(c.quantity) if c.resource == quotas.TOKENS else c.quantity
        result = session.execute(
            update(QuotaGrant)
            .where(QuotaGrant.id == c.grant_id, used + q <= granted)
            .values({used: used + q}),
            execution_options={"synchronize_session": False},
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise QuotaRace(f"grant {c.grant_id}: less than {c.quantity} {c.resource} left")


def grant_quota(
    *,
    session: Session,
    tenant: Tenant,
    card_hours: Decimal = ZERO,
    storage_gb_months: Decimal = ZERO,
    tokens: int = 0,
    expires_at: datetime | None = None,
    key: str | None = None,
    memo: str = "",
) -> tuple[QuotaGrant, bool]:
    """Grant ``tenant`` free quotas; ``(grant, written)``. ``key`` makes a retry grant once (a
    key reused for a different grant: ValueError)."""
    for name, value in (("card_hours", card_hours), ("storage_gb_months", storage_gb_months)):
        if not value.is_finite() or value < 0 or value != qty(value) or value >= Decimal("1e12"):
            raise ValueError(f"{name}: {value} must be >= 0 with at most 6 decimals")
    if tokens < 0 or tokens >= quotas.MAX_TOKENS:
        raise ValueError(f"tokens: {tokens} must be >= 0 and below {quotas.MAX_TOKENS:,}")
    ref = f"grant:{key}" if key else f"grant:{uuid.uuid4()}"
    values = (card_hours, storage_gb_months, tokens, expires_at)
    existing = session.scalar(select(QuotaGrant).where(QuotaGrant.ref == ref))
    if existing is None:
        grant = QuotaGrant(
            tenant_id=tenant.id, ref=ref, card_hours=qty(card_hours), card_hours_used=qty(ZERO),
            storage_gb_months=qty(storage_gb_months), storage_gb_months_used=qty(ZERO),
            tokens=tokens, tokens_used=0, expires_at=expires_at, memo=memo, granted_at=utcnow(),
        )  # fmt: skip
        try:
            with session.begin_nested():
                session.add(grant)
                session.flush()
            return grant, True
        except IntegrityError:
            existing = session.scalar(select(QuotaGrant).where(QuotaGrant.ref == ref))
            if existing is None:
                raise
    same = (existing.card_hours, existing.storage_gb_months, existing.tokens, existing.expires_at)
    if existing.tenant_id != tenant.id or same != values:
        raise ValueError(f"grant key {key!r} was already used for a different grant")
    return existing, False


def grant_json(g: QuotaGrant) -> dict[str, Any]:
    return {
        "id": g.id,
        "card_hours": str(g.card_hours),
        "card_hours_used": str(g.card_hours_used),
        "storage_gb_months": str(g.storage_gb_months),
        "storage_gb_months_used": str(g.storage_gb_months_used),
        "tokens": g.tokens,
        "tokens_used": g.tokens_used,
        "expires_at": g.expires_at.isoformat() if g.expires_at else None,
        "granted_at": g.granted_at.isoformat(),
        "memo": g.memo,
    }


def quota_summary(*, session: Session, tenant_id: str) -> dict[str, Any]:
    """What is left of the tenant's unexpired grants, what its trials covered so far, and
    every grant (expired ones too, ``expired``)."""
    now = utcnow()
    grants = list(
        session.scalars(
            select(QuotaGrant).where(QuotaGrant.tenant_id == tenant_id).order_by(QuotaGrant.id)
        )
    )
    live = [g for g in grants if g.expires_at is None or g.expires_at > now]
    covered = session.scalar(
        select(func.sum(QuotaUse.value_cny)).where(QuotaUse.tenant_id == tenant_id)
    )
    return {
        "tenant_id": tenant_id,
        "card_hours_left": str(sum((g.card_hours - g.card_hours_used for g in live), qty(ZERO))),
        "storage_gb_months_left": str(
            sum((g.storage_gb_months - g.storage_gb_months_used for g in live), qty(ZERO))
        ),
        "tokens_left": sum(g.tokens - g.tokens_used for g in live),
        "free_cny": str(cents(Decimal(covered or 0))),
        "grants": [
            grant_json(g) | {"expired": g.expires_at is not None and g.expires_at <= now}
            for g in grants
        ],
    }


def _owners(session: Session) -> dict[str, str]:
    return {c: t for c, t in session.execute(select(CenterOwner.center_id, CenterOwner.tenant_id))}


def settle_job(
    *, session: Session, job: JobRow, net: Network, config: BillingConfig
) -> LedgerTransaction | None:
    """Meter and charge a finished job (its row locked by the caller); idempotent."""
    if job.billed_at is not None or JobState(job.state) not in TERMINAL:
        return None
    lines = meter(session=session, job=job, net=net, energy_pass_through=config.energy_pass_through)
    owners = _owners(session)
    by_provider: dict[str, Decimal] = {}
    for line in lines:
        if line.billable:
            acct = ledger.payable(owners.get(line.center_id))
            by_provider[acct] = by_provider.get(acct, ZERO) + line.amount_cny
    hold_amount = open_hold(session=session, job_id=job.id)
    tid = job.tenant_id
    available = _lock_consumer(session, tid)
    # trial quotas: the tenant's consumer accounts are locked above, so its settlements are
    # serialised; the grants are locked too and consumed by conditional updates
    covers = quotas.allocate(
        lines, _allowances(session, tid), token_value=config.token_value_cny_per_million
    )
    _consume(session, covers)
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
    memo = f"job {job.id} ({job.state})" + (
        ", energy passed through" if config.energy_pass_through else ""
    )
    tx, _ = post(session=session, entry=entry, memo=memo)
    now = utcnow()
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


def unbilled(*, session: Session, limit: int = 500) -> list[str]:
    """Finished jobs not charged yet; a cancelled job once its run has stopped (or after
    :data:`STOP_WAIT`)."""
    stmt = (
        select(JobRow.id)
        .where(
            JobRow.billed_at.is_(None),
            JobRow.state.in_([s.value for s in TERMINAL]),
            or_(
                JobRow.state != JobState.CANCELLED.value,
                JobRow.executor_ref.is_(None),
                JobRow.ended_at < utcnow() - STOP_WAIT,
            ),
        )
        .order_by(JobRow.ended_at, JobRow.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def settle_finished(sessions: sessionmaker[Session], net: Network, *, limit: int = 500) -> int:
    """Charge every finished job not yet charged, one transaction per job; returns how many.

    Safe to run from several processes at once: each job is taken ``FOR UPDATE SKIP LOCKED``
    and charged once (``billed_at``, and the unique ``charge:<job>`` ref).
    """
    with sessions() as session:
        ids = unbilled(session=session, limit=limit)

    def charge(session: Session, job: JobRow) -> bool:
        config = get_config(session=session)
        return settle_job(session=session, job=job, net=net, config=config) is not None

    return _one_by_one(sessions, ids, "charge", charge)  # a job not charged keeps its hold


# --------------------------------------------------------------------------- reading


def charge_of(*, session: Session, job_id: str) -> Decimal | None:
    """What the job's consumer was charged in CNY once it is settled (after trial quotas),
    else None."""
    tx = session.scalar(
        select(LedgerTransaction).where(LedgerTransaction.ref == f"charge:{job_id}")
    )
    if tx is None:
        return None
    return tx.amount - _free_of(session, [tx.id]).get(tx.id, ZERO)


def _free_of(session: Session, tx_ids: list[int]) -> dict[int, Decimal]:
    """The part of each charge the platform's trials account paid."""
    if not tx_ids:
        return {}
    rows = session.execute(
        select(LedgerPosting.transaction_id, func.sum(LedgerPosting.amount))
        .where(LedgerPosting.transaction_id.in_(tx_ids), LedgerPosting.account_id == quotas.TRIALS)
        .group_by(LedgerPosting.transaction_id)
    ).all()
    return {t: -cents(Decimal(a)) for t, a in rows}


@dataclass(frozen=True, slots=True)
class Balance:
    tenant_id: str
    prepaid_cny: Decimal
    held_cny: Decimal
    postpaid_cny: Decimal  # negative: owed

    def as_json(self) -> dict[str, str]:
        return {
            "tenant_id": self.tenant_id,
            "prepaid_cny": str(self.prepaid_cny),
            "held_cny": str(self.held_cny),
            "owed_cny": str(-self.postpaid_cny if self.postpaid_cny < 0 else ZERO),
        }


def balance(*, session: Session, tenant_id: str) -> Balance:
    return Balance(
        tenant_id,
        balance_of(session=session, account_id=ledger.prepaid(tenant_id)),
        balance_of(session=session, account_id=ledger.held(tenant_id)),
        balance_of(session=session, account_id=ledger.postpaid(tenant_id)),
    )


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` -> [first instant, first instant of the next month) in UTC."""
    try:
        start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    except (ValueError, TypeError):
        raise ValueError(f"period {period!r}: expected YYYY-MM, e.g. 2026-11") from None
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


def _in_period(period: str) -> ColumnElement[bool]:
    start, end = period_bounds(period)
    return and_(LedgerTransaction.created_at >= start, LedgerTransaction.created_at < end)


def _booked(session: Session, txs: list[LedgerTransaction]) -> dict[str, ReservationRow]:
    """The reservations that reservation payments and refunds in ``txs`` are for, by id."""
    ids = {rid for t in txs if (rid := ledger.reservation_of(t.ref)) is not None}
    if not ids:
        return {}
    rows = session.scalars(select(ReservationRow).where(ReservationRow.id.in_(sorted(ids))))
    return {r.id: r for r in rows}


#: A reservation line's booking fields (None when the booking row is gone: its offer deleted).
BOOKING_FIELDS = ("offer_id", "model", "precision", "units", "start", "end", "price_cny_per_scu")


def _reservation_line(tx: LedgerTransaction, row: ReservationRow | None) -> dict[str, Any]:
    """An invoice line for a reservation paid at booking (``kind`` "reservation") or its
    refund (``kind`` "refund": amount and SCU negative)."""
    refund = tx.kind == "refund"
    amount = -tx.amount if refund else tx.amount
    from .trading_store import reservation_json  # it imports this module

    booked = {} if row is None else reservation_json(row)
    return {
        "kind": tx.kind,
        "transaction_id": tx.id,
        "job_id": None,
        "reservation_id": ledger.reservation_of(tx.ref),
        "name": None,
        "settled_at": tx.created_at.isoformat(),
        "amount_cny": str(amount),
        "scu": None if row is None else str(-row.scu if refund else row.scu),
        "centers": [] if row is None else [row.center_id],
        "usage_record_ids": [],
        "usage_cny": str(amount),
        "free_cny": str(ZERO),
        "free_card_hours": str(qty(ZERO)),
        "free_storage_gb_months": str(qty(ZERO)),
        "free_tokens": 0,
        "storage_cny": str(ZERO),
        "tokens": 0,
        **{k: booked.get(k) for k in BOOKING_FIELDS},
    }


def invoice(*, session: Session, tenant: Tenant, period: str) -> dict[str, Any]:
    """What the tenant paid for compute in ``period`` (UTC), in the order it was written: one
    line per charged job (by settlement time), per reservation paid at booking and per refund
    of a cancelled one (by cancellation time; negative).

    Every line names its ledger transaction; a job's line names its usage records, so every
    charge traces back to metered runs, and a reservation's line its booking.
    ``total_cny`` is the sum of the lines' ``amount_cny``.
    """
    stmt = (
        select(LedgerTransaction)
        .where(
            LedgerTransaction.kind.in_(ledger.BILLED_KINDS),
            LedgerTransaction.tenant_id == tenant.id,
            _in_period(period),
        )
        .order_by(LedgerTransaction.created_at, LedgerTransaction.id)
    )
    every = list(session.scalars(stmt))
    txs = [t for t in every if t.kind == "charge"]
    usage: dict[int, list[UsageRecord]] = {}
    if txs:
        for rec in session.scalars(
            select(UsageRecord)
            .where(UsageRecord.transaction_id.in_([t.id for t in txs]))
            .order_by(UsageRecord.job_id, UsageRecord.seq)
        ):
            usage.setdefault(rec.transaction_id or 0, []).append(rec)
    names = dict(
        session.execute(
            select(JobRow.id, JobRow.name).where(JobRow.id.in_([t.job_id for t in txs]))
        ).all()
    )
    free = _free_of(session, [t.id for t in txs])
    free_qty: dict[tuple[int, str], Decimal] = {}
    if txs:
        for tx_id, resource, quantity in session.execute(
            select(QuotaUse.transaction_id, QuotaUse.resource, func.sum(QuotaUse.quantity))
            .where(QuotaUse.transaction_id.in_([t.id for t in txs]))
            .group_by(QuotaUse.transaction_id, QuotaUse.resource)
        ):
            free_qty[tx_id, resource] = qty(Decimal(quantity))
    booked = _booked(session, every)
    lines = []
    for tx in every:
        if tx.kind != "charge":
            lines.append(_reservation_line(tx, booked.get(ledger.reservation_of(tx.ref) or "")))
            continue
        recs = usage.get(tx.id, [])
        lines.append(
            {
                "kind": tx.kind,
                "transaction_id": tx.id,
                "job_id": tx.job_id,
                "reservation_id": None,
                "name": names.get(tx.job_id or ""),
                "settled_at": tx.created_at.isoformat(),
                "amount_cny": str(tx.amount - free.get(tx.id, ZERO)),
                "scu": str(sum((r.scu for r in recs), Decimal("0.000000"))),
                "centers": sorted({r.center_id for r in recs}),
                "usage_record_ids": [r.id for r in recs],
                "usage_cny": str(tx.amount),
                "free_cny": str(free.get(tx.id, ZERO)),
                "free_card_hours": str(free_qty.get((tx.id, quotas.CARD_HOURS), qty(ZERO))),
                "free_storage_gb_months": str(
                    free_qty.get((tx.id, quotas.STORAGE_GB_MONTHS), qty(ZERO))
                ),
                "free_tokens": int(free_qty.get((tx.id, quotas.TOKENS), ZERO)),
                "storage_cny": str(sum((r.storage_cny for r in recs if r.billable), ZERO)),
                "tokens": sum(r.tokens for r in recs),
            }
        )
    topups = session.scalar(
        select(func.sum(LedgerTransaction.amount)).where(
            LedgerTransaction.kind == "topup",
            LedgerTransaction.tenant_id == tenant.id,
            _in_period(period),
        )
    )
    reserved = sum((t.amount for t in every if t.kind == "reservation"), ZERO)
    refunded = sum((t.amount for t in every if t.kind == "refund"), ZERO)
    total = sum((t.amount for t in txs), ZERO) + reserved - refunded
    total_free = sum(free.values(), ZERO)
    bal = balance(session=session, tenant_id=tenant.id)
    return {
        "tenant_id": tenant.id,
        "tenant": tenant.name,
        "period": period,
        "total_cny": str(total - total_free),
        "usage_cny": str(total),
        "free_cny": str(total_free),
        "reservations_cny": str(reserved),
        "refunds_cny": str(-refunded),
        "topups_cny": str(cents(Decimal(topups or 0))),
        "lines": lines,
        "balance": bal.as_json(),
    }


#: Columns of an invoice's CSV: a job's fields first (as before reservations were invoiced),
#: then the line's kind, its ledger transaction and a reservation's booking.
INVOICE_CSV_COLUMNS = (
    "job_id", "name", "settled_at", "amount_cny", "scu", "centers", "usage_record_ids",
    "usage_cny", "free_cny", "free_card_hours", "kind", "transaction_id", "reservation_id",
    *BOOKING_FIELDS, "storage_cny", "tokens", "free_storage_gb_months", "free_tokens",
)  # fmt: skip


def invoice_csv(doc: dict[str, Any]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(INVOICE_CSV_COLUMNS)
    for line in doc["lines"]:
        cells = dict(line)
        cells["centers"] = " ".join(line["centers"])
        cells["usage_record_ids"] = " ".join(str(i) for i in line["usage_record_ids"])
        w.writerow(["" if cells.get(c) is None else cells[c] for c in INVOICE_CSV_COLUMNS])
    total = dict.fromkeys(INVOICE_CSV_COLUMNS, "")
    total |= {"job_id": "total", "amount_cny": doc["total_cny"], "usage_cny": doc["usage_cny"],
              "free_cny": doc["free_cny"]}  # fmt: skip
    w.writerow(total.values())
    return buf.getvalue()


def _to_payee() -> ColumnElement[bool]:
    """Postings to accounts the platform owes for compute: providers' and its own centers'."""
    account = LedgerPosting.account_id
    return account.like("provider:%") | (account == ledger.PLATFORM_CENTERS)


def settlement(
    *, session: Session, period: str, provider: Tenant | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Charges, commission and what each provider earned in ``period``: finished jobs'
    charges, reservations paid at booking and refunds of cancelled ones (negative), each in
    the period it was written.

    ``providers`` lists every payable account that earned something (the platform's own,
    unowned centers as ``provider`` "platform"), with the part of its payout from
    reservations (``reservations_cny``) and refunds (``refunds_cny``); with ``provider``
    only that one is listed. ``charges_cny == sum(payout_cny) + commission_cny`` holds
    exactly, and so does ``charges_cny == sum of the invoices' total_cny + trials_cny``.
    """
    in_period = and_(LedgerTransaction.kind.in_(ledger.BILLED_KINDS), _in_period(period))
    sub = select(LedgerTransaction.id).where(in_period)
    by_kind: dict[str, tuple[Decimal, int]] = {
        kind: (cents(Decimal(amount or 0)), int(n))
        for kind, amount, n in session.execute(
            select(
                LedgerTransaction.kind,
                func.sum(LedgerTransaction.amount),
                func.count(LedgerTransaction.id),
            )
            .where(in_period)
            .group_by(LedgerTransaction.kind)
        )
    }
    rows = session.execute(
        select(LedgerPosting.account_id, LedgerTransaction.kind, func.sum(LedgerPosting.amount))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(in_period, _to_payee())
        .group_by(LedgerPosting.account_id, LedgerTransaction.kind)
        .order_by(LedgerPosting.account_id)
    ).all()
    earned: dict[str, dict[str, Decimal]] = {}
    for account_id, kind, amount in rows:
        earned.setdefault(account_id, {})[kind] = cents(Decimal(amount))
    names = dict(session.execute(select(Tenant.id, Tenant.name)).all())
    paid_out = {
        account_id: cents(Decimal(amount or 0))
        for account_id, amount in session.execute(
            select(LedgerPosting.account_id, func.sum(LedgerPosting.amount))
            .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
            .where(LedgerTransaction.kind == "payout", _in_period(period), _to_payee())
            .group_by(LedgerPosting.account_id)
        )
    }
    for account_id in paid_out:
        earned.setdefault(account_id, {})
    owed = dict(
        session.execute(
            select(Account.id, Account.balance).where(Account.id.in_(list(earned)))
        ).all()
    )
    providers = []
    for account_id, parts in sorted(earned.items()):
        tid = ledger.account_tenant(account_id)
        if provider is not None and tid != provider.id:
            continue
        providers.append(
            {
                "provider": names.get(tid, tid) if tid else "platform",
                "provider_id": tid,
                "account": account_id,
                "payout_cny": str(sum(parts.values(), ZERO)),
                "reservations_cny": str(parts.get("reservation", ZERO)),
                "refunds_cny": str(parts.get("refund", ZERO)),
                # paid out to it in the period (payouts, positive); what it is owed now, and
                # what of that may be paid out now (less its share of unstarted bookings)
                "paid_out_cny": str(-paid_out.get(account_id, ZERO)),
                "owed_cny": str(owed.get(account_id, ZERO)),
                "due_cny": str(due_to(session=session, provider_id=tid, now=now) if tid else ZERO),
            }
        )
    doc: dict[str, Any] = {"period": period, "providers": providers}
    if provider is None:
        side = dict(
            session.execute(
                select(LedgerPosting.account_id, func.sum(LedgerPosting.amount))
                .where(
                    LedgerPosting.transaction_id.in_(sub),
                    LedgerPosting.account_id.in_([quotas.TRIALS, ledger.PLATFORM_COMMISSION]),
                )
                .group_by(LedgerPosting.account_id)
            ).all()
        )
        jobs, n_jobs = by_kind.get("charge", (ZERO, 0))
        reserved, n_reserved = by_kind.get("reservation", (ZERO, 0))
        refunded, n_refunded = by_kind.get("refund", (ZERO, 0))
        doc |= {
            "charges_cny": str(jobs + reserved - refunded),
            # the part of the charges the platform paid for trial quotas (from its commission)
            "trials_cny": str(-cents(Decimal(side.get(quotas.TRIALS) or 0))),
            # what platform:commission earned (a refund gives its part back)
            "commission_cny": str(cents(Decimal(side.get(ledger.PLATFORM_COMMISSION) or 0))),
            "jobs_cny": str(jobs),
            "reservations_cny": str(reserved),
            "refunds_cny": str(-refunded),
            "jobs": n_jobs,
            "reservations": n_reserved,
            "refunds": n_refunded,
            "commission_rate": str(get_config(session=session).commission_rate),
        }
    return doc


# --------------------------------------------------------------------------- verify


def verify(*, session: Session) -> list[str]:
    """Every broken invariant, one line each (empty: the ledger is sound). See docs/billing.md."""
    problems: list[str] = []
    for tx_id, ref, total in session.execute(
        select(LedgerTransaction.id, LedgerTransaction.ref, func.sum(LedgerPosting.amount))
        .join(LedgerPosting, LedgerPosting.transaction_id == LedgerTransaction.id)
        .group_by(LedgerTransaction.id, LedgerTransaction.ref)
        .having(func.sum(LedgerPosting.amount) != 0)
    ):
        problems.append(f"transaction {tx_id} ({ref}): postings sum to {total}, not 0")
    sums = dict(
        session.execute(
            select(LedgerPosting.account_id, func.sum(LedgerPosting.amount)).group_by(
                LedgerPosting.account_id
            )
        ).all()
    )
    for acct in session.scalars(select(Account).order_by(Account.id)):
        posted = cents(Decimal(sums.get(acct.id) or 0))
        if acct.balance != posted:
            problems.append(
                f"account {acct.id}: balance {acct.balance} but its postings sum to {posted}"
            )
        if acct.kind in ledger.NON_NEGATIVE_KINDS and acct.balance < 0:
            problems.append(f"account {acct.id}: negative {acct.kind} balance {acct.balance}")
        if acct.id.startswith("provider:") and acct.balance < 0:
            problems.append(
                f"account {acct.id}: the provider owes the platform {-acct.balance} (paid out "
                "more than it earned)"
            )
    # charges: consumer charge == provider payouts + commission == the job's usage records
    payouts = dict(
        session.execute(
            select(LedgerPosting.transaction_id, func.sum(LedgerPosting.amount))
            .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
            .where(
                LedgerTransaction.kind == "charge",
                (LedgerPosting.account_id.like("provider:%"))
                | (LedgerPosting.account_id == ledger.PLATFORM_CENTERS)
                | (LedgerPosting.account_id == ledger.PLATFORM_COMMISSION),
            )
            .group_by(LedgerPosting.transaction_id)
        ).all()
    )
    usage = dict(
        session.execute(
            select(UsageRecord.transaction_id, func.sum(UsageRecord.amount_cny))
            .where(UsageRecord.billable.is_(True))
            .group_by(UsageRecord.transaction_id)
        ).all()
    )
    for tx in session.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "charge")):
        paid = cents(Decimal(payouts.get(tx.id) or 0))
        if paid != tx.amount:
            problems.append(
                f"charge {tx.ref}: consumer charged {tx.amount} but providers + commission "
                f"got {paid}"
            )
        used = cents(Decimal(usage.get(tx.id) or 0))
        if used != tx.amount:
            problems.append(
                f"charge {tx.ref}: {tx.amount} charged but its usage records sum to {used}"
            )
    for job_id, n in session.execute(
        select(LedgerTransaction.job_id, func.count())
        .where(LedgerTransaction.kind == "charge")
        .group_by(LedgerTransaction.job_id)
        .having(func.count() > 1)
    ):
        problems.append(f"job {job_id}: charged {n} times")
    for rec_id, job_id, tx_job in session.execute(
        select(UsageRecord.id, UsageRecord.job_id, LedgerTransaction.job_id)
        .outerjoin(LedgerTransaction, LedgerTransaction.id == UsageRecord.transaction_id)
        .where(
            (UsageRecord.transaction_id.is_(None))
            | (LedgerTransaction.job_id.is_(None))
            | (LedgerTransaction.job_id != UsageRecord.job_id)
        )
    ):
        problems.append(
            f"usage record {rec_id} of job {job_id}: not charged with its job ({tx_job})"
        )
    for rec_id, job_id, amount, parts in session.execute(
        select(
            UsageRecord.id,
            UsageRecord.job_id,
            UsageRecord.amount_cny,
            UsageRecord.compute_cny + UsageRecord.transfer_cny + UsageRecord.storage_cny,
        ).where(
            UsageRecord.billable.is_(True),
            UsageRecord.amount_cny
            != UsageRecord.compute_cny + UsageRecord.transfer_cny + UsageRecord.storage_cny,
        )
    ):
        problems.append(
            f"usage record {rec_id} of job {job_id}: amount {amount} is not compute + transfer "
            f"+ storage ({parts})"
        )
    for rec_id, job_id, served, used in session.execute(
        select(UsageRecord.id, UsageRecord.job_id, UsageRecord.tokens, func.sum(QuotaUse.quantity))
        .join(QuotaUse, QuotaUse.usage_record_id == UsageRecord.id)
        .where(QuotaUse.resource == quotas.TOKENS)
        .group_by(UsageRecord.id, UsageRecord.job_id, UsageRecord.tokens)
    ):
        if Decimal(used) <= served:
            continue  # (compared here: on SQLite the two columns are scaled differently)
        problems.append(
            f"usage record {rec_id} of job {job_id}: {qty(Decimal(used))} free tokens used "
            f"for {served} tokens served"
        )
    payout_sides: dict[int, dict[str, Decimal]] = {}
    for tx_id, account, amount in session.execute(
        select(LedgerPosting.transaction_id, LedgerPosting.account_id, LedgerPosting.amount)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(LedgerTransaction.kind == "payout")
    ):
        side = payout_sides.setdefault(tx_id, {})
        side[account] = side.get(account, ZERO) + amount
    for tx in session.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "payout")):
        posts = {ledger.payable(tx.tenant_id): -tx.amount, ledger.PLATFORM_CASH: tx.amount}
        if tx.tenant_id is None or tx.amount <= 0 or payout_sides.get(tx.id) != posts:
            problems.append(
                f"payout {tx.ref}: {tx.amount} to {tx.tenant_id} but it posts "
                f"{payout_sides.get(tx.id)} (not its provider's payable to cash)"
            )
    problems += _verify_trials(session)
    problems += _verify_reservations(session)
    # holds: a tenant's held balance is the sum of its open holds (no charge yet), each less
    # what was released when its job was placed
    charge = LedgerTransaction.__table__.alias("c")
    open_holds: dict[str | None, Decimal] = {}
    for tid, kind, amount in session.execute(
        select(LedgerTransaction.tenant_id, LedgerTransaction.kind, LedgerTransaction.amount)
        .outerjoin(
            charge, and_(charge.c.job_id == LedgerTransaction.job_id, charge.c.kind == "charge")
        )
        .where(LedgerTransaction.kind.in_(["hold", "release"]), charge.c.id.is_(None))
    ):
        sign = 1 if kind == "hold" else -1
        open_holds[tid] = open_holds.get(tid, ZERO) + sign * amount
    hold = LedgerTransaction.__table__.alias("h")
    for job_id, released, held_amount in session.execute(
        select(LedgerTransaction.job_id, func.sum(LedgerTransaction.amount), hold.c.amount)
        .outerjoin(hold, and_(hold.c.job_id == LedgerTransaction.job_id, hold.c.kind == "hold"))
        .where(LedgerTransaction.kind == "release")
        .group_by(LedgerTransaction.job_id, hold.c.amount)
    ):
        released = cents(Decimal(released))
        if held_amount is None or not ZERO <= released <= held_amount:
            problems.append(
                f"job {job_id}: its releases give back {released} of a hold of {held_amount}"
            )
    for acct in session.scalars(select(Account).where(Account.kind == "held")):
        expect = cents(Decimal(open_holds.get(acct.tenant_id) or 0))
        if acct.balance != expect:
            problems.append(
                f"account {acct.id}: holds {acct.balance} but open holds sum to {expect}"
            )
    return problems


def _verify_trials(session: Session) -> list[str]:
    """Trial quotas: every charge's consumer side pays the charge less what the trials account
    paid, which is what its quota uses covered; every grant's use is the sum of its uses and
    within the grant; every use belongs to a usage record of its charge's job."""
    problems: list[str] = []
    consumer = (
        LedgerPosting.account_id.like("consumer:%:prepaid")
        | LedgerPosting.account_id.like("consumer:%:held")
        | LedgerPosting.account_id.like("consumer:%:postpaid")
    )
    sides: dict[int, tuple[Decimal, Decimal]] = {}
    for tx_id, account, amount in session.execute(
        select(LedgerPosting.transaction_id, LedgerPosting.account_id, LedgerPosting.amount)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(
            LedgerTransaction.kind == "charge",
            consumer | (LedgerPosting.account_id == quotas.TRIALS),
        )
    ):
        paid, trials = sides.get(tx_id, (ZERO, ZERO))
        if account == quotas.TRIALS:
            trials += amount
        else:
            paid += amount
        sides[tx_id] = (paid, trials)
    covered = dict(
        session.execute(
            select(QuotaUse.transaction_id, func.sum(QuotaUse.value_cny)).group_by(
                QuotaUse.transaction_id
            )
        ).all()
    )
    for tx in session.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "charge")):
        paid, trials = sides.get(tx.id, (ZERO, ZERO))
        if paid + trials != -tx.amount:
            problems.append(
                f"charge {tx.ref}: consumer paid {-paid} and trials {-trials}, not {tx.amount}"
            )
        free = cents(Decimal(covered.get(tx.id) or 0))
        if -trials != free:
            problems.append(
                f"charge {tx.ref}: trials paid {-trials} but its quota uses cover {free}"
            )
    uses: dict[tuple[int, str], Decimal] = {
        (g, r): Decimal(q)
        for g, r, q in session.execute(
            select(QuotaUse.grant_id, QuotaUse.resource, func.sum(QuotaUse.quantity)).group_by(
                QuotaUse.grant_id, QuotaUse.resource
            )
        )
    }
    for g in session.scalars(select(QuotaGrant).order_by(QuotaGrant.id)):
        for resource, used, granted in (
            (quotas.CARD_HOURS, g.card_hours_used, g.card_hours),
            (quotas.STORAGE_GB_MONTHS, g.storage_gb_months_used, g.storage_gb_months),
            (quotas.TOKENS, Decimal(g.tokens_used), Decimal(g.tokens)),
        ):
            recorded = qty(uses.get((g.id, resource), ZERO))
            if used != recorded:
                problems.append(
                    f"quota grant {g.id}: {resource} used {used} but its uses sum to {recorded}"
                )
            if not 0 <= used <= granted:
                problems.append(f"quota grant {g.id}: {resource} used {used} of {granted}")
    rec = UsageRecord.__table__.alias("u")
    for use_id, job_id, rec_job, tx_job, tx_kind in session.execute(
        select(QuotaUse.id, QuotaUse.job_id, rec.c.job_id, LedgerTransaction.job_id,
               LedgerTransaction.kind)
        .outerjoin(rec, rec.c.id == QuotaUse.usage_record_id)
        .outerjoin(LedgerTransaction, LedgerTransaction.id == QuotaUse.transaction_id)
        .where(
            (rec.c.job_id.is_(None)) | (rec.c.job_id != QuotaUse.job_id)
            | (LedgerTransaction.job_id.is_(None)) | (LedgerTransaction.job_id != QuotaUse.job_id)
            | (LedgerTransaction.kind != "charge")
        )
    ):  # fmt: skip
        problems.append(
            f"quota use {use_id} of job {job_id}: its usage record is of job {rec_job} and its "
            f"transaction ({tx_kind}) of job {tx_job}"
        )
    return problems


def _verify_reservations(session: Session) -> list[str]:
    """Trading: every reservation payment is its booking's (same tenant, the booking's
    amount, which the consumer pays and providers + commission receive); every refund
    negates its payment posting by posting and is of a cancelled booking; every paid
    booking has its payment, and every cancelled paid booking its refund."""
    problems: list[str] = []
    txs = list(
        session.scalars(
            select(LedgerTransaction)
            .where(LedgerTransaction.kind.in_(["reservation", "refund"]))
            .order_by(LedgerTransaction.id)
        )
    )
    postings: dict[int, dict[str, Decimal]] = {}
    for tx_id, account, amount in session.execute(
        select(LedgerPosting.transaction_id, LedgerPosting.account_id, LedgerPosting.amount)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(LedgerTransaction.kind.in_(["reservation", "refund"]))
    ):
        side = postings.setdefault(tx_id, {})
        side[account] = side.get(account, ZERO) + amount
    booked = {r.id: r for r in session.scalars(select(ReservationRow))}
    payments = {t.ref: t for t in txs if t.kind == "reservation"}
    refunded: set[str] = set()
    for tx in txs:
        rid = ledger.reservation_of(tx.ref)
        row = booked.get(rid or "")
        if row is None:
            problems.append(f"{tx.kind} {tx.ref}: no reservation {rid}")
            continue
        mine = {a: v for a, v in postings.get(tx.id, {}).items() if v}
        if tx.kind == "refund":
            refunded.add(row.id)
            paid = payments.get(ledger.reservation_ref(row.id))
            owed = {a: -v for a, v in postings.get(paid.id, {}).items() if v} if paid else None
            if paid is None or mine != owed or tx.amount != paid.amount:
                problems.append(
                    f"refund {tx.ref}: {tx.amount} does not negate its payment "
                    f"({None if paid is None else paid.amount}) posting by posting"
                )
            if row.cancelled_at is None:
                problems.append(f"refund {tx.ref}: reservation {row.id} is not cancelled")
            continue
        if row.transaction_id != tx.id or row.tenant_id != tx.tenant_id:
            problems.append(
                f"reservation {tx.ref}: transaction {tx.id} of tenant {tx.tenant_id} but the "
                f"reservation names transaction {row.transaction_id} of tenant {row.tenant_id}"
            )
        consumer = sum((v for a, v in mine.items() if a.startswith("consumer:")), ZERO)
        earned = sum(
            (v for a, v in mine.items()
             if a.startswith("provider:") or a in (ledger.PLATFORM_CENTERS,
                                                    ledger.PLATFORM_COMMISSION)),
            ZERO,
        )  # fmt: skip
        if not tx.amount == row.amount_cny == -consumer == earned:
            problems.append(
                f"reservation {tx.ref}: {tx.amount} paid for a booking of {row.amount_cny}; "
                f"the consumer paid {-consumer}, providers + commission got {earned}"
            )
    for row in booked.values():
        ref = ledger.reservation_ref(row.id)
        if row.amount_cny and ref not in payments:
            problems.append(f"reservation {row.id}: {row.amount_cny} but no payment {ref}")
        if row.cancelled_at is not None and ref in payments and row.id not in refunded:
            problems.append(f"reservation {row.id}: cancelled but its payment is not refunded")
    return problems


def no_funds(exc: InsufficientBalance) -> dict[str, str]:
    """The JSON body of a 402 at submit."""
    return {
        "error": "insufficient_balance",
        "message": (
            f"this job needs a hold of {exc.required} CNY (its estimated charge) but the "
            f"prepaid balance is {exc.available} CNY; top up and submit again"
        ),
        "required_cny": str(exc.required),
        "available_cny": str(exc.available),
    }
