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
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.hardware import Precision
from suanwang.core.jobs import JobKind
from suanwang.core.lifecycle import TERMINAL, JobState
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
    Tenant,
    TenantRole,
    UsageRecord,
    utcnow,
)

from . import ledger
from .ledger import Entry
from .money import ZERO, cents
from .pricing import NoPrice, PriceBook
from .rating import Segment, UsageLine, estimate_hold, rate_segment

log = logging.getLogger("suanwang.billing")

# --------------------------------------------------------------------------- settings

BILLING_REQUIRED = "billing_required"
COMMISSION_RATE = "commission_rate"


@dataclass(frozen=True, slots=True)
class BillingConfig:
    """``billing_required``: consumers and providers need a prepaid balance to submit (402
    otherwise); off (the default of a fresh database), jobs are charged postpaid."""

    billing_required: bool = False
    commission_rate: Decimal = ledger.DEFAULT_COMMISSION


def get_config(*, session: Session) -> BillingConfig:
    values = {s.key: s.value for s in session.scalars(select(BillingSetting))}
    return BillingConfig(
        billing_required=values.get(BILLING_REQUIRED, "false") == "true",
        commission_rate=Decimal(values.get(COMMISSION_RATE, str(ledger.DEFAULT_COMMISSION))),
    )


def set_config(
    *,
    session: Session,
    billing_required: bool | None = None,
    commission_rate: Decimal | None = None,
) -> BillingConfig:
    """Change settings (``commission_rate`` must be within 5 %..10 %); returns the new ones."""
    updates: dict[str, str] = {}
    if billing_required is not None:
        updates[BILLING_REQUIRED] = "true" if billing_required else "false"
    if commission_rate is not None:
        updates[COMMISSION_RATE] = str(ledger.check_commission(commission_rate))
    for key, value in updates.items():
        row = session.get(BillingSetting, key)
        if row is None:
            session.add(BillingSetting(key=key, value=value, updated_at=utcnow()))
        else:
            row.value, row.updated_at = value, utcnow()
    session.flush()
    return get_config(session=session)


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
    precision, _units = _precision(job.spec)
    place = net.place(core.origin)
    max_link = Decimal(repr(float(net.transfer_cost_cny_per_gb[place].max())))
    return estimate_hold(
        book_for(net.scenario),
        work_scu=core.work_scu,
        precision=precision,
        data_gb=core.data_gb,
        max_transfer_cny_per_gb=max_link,
    )


def admit(*, session: Session, tenant: Tenant, job: JobRow, net: Network) -> Decimal | None:
    """At submit: reserve the job's estimated charge if billing requires it.

    Returns the hold (None: no hold needed). Raises :class:`InsufficientBalance`.
    """
    if not needs_hold(tenant, get_config(session=session)):
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
    its placement and its planned start. ``scheduled -> cancelled`` is no run.
    """
    out: list[Segment] = []
    center: str | None = None
    model: str | None = None
    placed_at: datetime | None = None
    start_at: datetime | None = None
    open_at: tuple[datetime, int] | None = None
    for ev in events:
        to = JobState(ev.to_state)
        frm = JobState(ev.from_state) if ev.from_state else None
        detail = ev.detail or {}
        if to is JobState.SCHEDULED:
            center = str(detail.get("center") or job.center_id or "")
            pool = detail.get("pool")
            model = str(pool) if pool else (job.pool_model if center == job.center_id else None)
            placed_at = ev.at
            s = detail.get("start_at")
            start_at = datetime.fromisoformat(s) if isinstance(s, str) else None
        elif to is JobState.RUNNING:
            open_at = (ev.at, ev.id)
        elif frm is JobState.RUNNING and open_at is not None:
            out.append(_segment(len(out), center, model, job, open_at[0], ev.at, to, open_at[1]))
            open_at = None
        elif (
            frm is JobState.SCHEDULED
            and to in (JobState.SUCCEEDED, JobState.FAILED)
            and placed_at is not None
        ):
            begin = max(placed_at, start_at) if start_at is not None else placed_at
            out.append(_segment(len(out), center, model, job, min(begin, ev.at), ev.at, to, ev.id))
    return out


def _segment(
    seq: int,
    center: str | None,
    model: str | None,
    job: JobRow,
    start: datetime,
    end: datetime,
    to: JobState,
    event_id: int,
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
    )


def meter(*, session: Session, job: JobRow, net: Network) -> list[UsageLine]:
    """Rate every run of ``job`` (pure apart from reading its events)."""
    events = list(
        session.scalars(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id))
    )
    segs = segments(job=job, events=events)
    precision, units = _precision(job.spec)
    book = book_for(net.scenario)
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
            )
        )
    return lines


def _owners(session: Session) -> dict[str, str]:
    return {c: t for c, t in session.execute(select(CenterOwner.center_id, CenterOwner.tenant_id))}


def settle_job(
    *, session: Session, job: JobRow, net: Network, config: BillingConfig
) -> LedgerTransaction | None:
    """Meter and charge a finished job (its row locked by the caller); idempotent."""
    if job.billed_at is not None or JobState(job.state) not in TERMINAL:
        return None
    lines = meter(session=session, job=job, net=net)
    owners = _owners(session)
    by_provider: dict[str, Decimal] = {}
    for line in lines:
        if line.billable:
            acct = ledger.payable(owners.get(line.center_id))
            by_provider[acct] = by_provider.get(acct, ZERO) + line.amount_cny
    hold_tx = session.scalar(
        select(LedgerTransaction).where(LedgerTransaction.ref == f"hold:{job.id}")
    )
    hold_amount = hold_tx.amount if hold_tx is not None else ZERO
    tid = job.tenant_id
    consumer = [ledger.held(tid), ledger.postpaid(tid), ledger.prepaid(tid)]
    ensure_accounts(session=session, account_ids=consumer)
    locked = session.execute(
        select(Account.id, Account.balance)
        .where(Account.id.in_(consumer))
        .order_by(Account.id)
        .with_for_update()
    ).all()
    available = {a: b for a, b in locked}.get(ledger.prepaid(tid), ZERO)
    entry = ledger.charge(
        tenant_id=tid,
        job_id=job.id,
        by_provider=by_provider,
        hold_amount=hold_amount,
        available=available,
        rate=config.commission_rate,
    )
    tx, _ = post(session=session, entry=entry, memo=f"job {job.id} ({job.state})")
    now = utcnow()
    for line in lines:
        session.add(
            UsageRecord(
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
                transaction_id=tx.id,
                created_at=now,
            )
        )
    job.billed_at = now
    session.flush()
    return tx


def unbilled(*, session: Session, limit: int = 500) -> list[str]:
    stmt = (
        select(JobRow.id)
        .where(JobRow.billed_at.is_(None), JobRow.state.in_([s.value for s in TERMINAL]))
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
    done = 0
    for job_id in ids:
        try:
            with sessions.begin() as session:
                job = session.scalar(
                    select(JobRow)
                    .where(JobRow.id == job_id, JobRow.billed_at.is_(None))
                    .with_for_update(skip_locked=True)
                )
                if job is None:
                    continue
                config = get_config(session=session)
                if settle_job(session=session, job=job, net=net, config=config) is not None:
                    done += 1
        except (NoPrice, KeyError, ValueError) as exc:
            # a job the served scenario cannot rate (e.g. stored under another scenario) must
            # not hold up everyone else's; it stays unbilled, with its hold, and is logged
            log.error("cannot charge job %s: %s: %s", job_id, exc.__class__.__name__, exc)
    return done


# --------------------------------------------------------------------------- reading


def charge_of(*, session: Session, job_id: str) -> Decimal | None:
    """The job's charge in CNY once it is settled, else None."""
    return session.scalar(
        select(LedgerTransaction.amount).where(LedgerTransaction.ref == f"charge:{job_id}")
    )


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


def invoice(*, session: Session, tenant: Tenant, period: str) -> dict[str, Any]:
    """The tenant's charges in ``period`` (by settlement time, UTC), one line per job.

    Each line names its usage records, so every charge traces back to metered runs.
    """
    stmt = (
        select(LedgerTransaction)
        .where(
            LedgerTransaction.kind == "charge",
            LedgerTransaction.tenant_id == tenant.id,
            _in_period(period),
        )
        .order_by(LedgerTransaction.created_at, LedgerTransaction.id)
    )
    txs = list(session.scalars(stmt))
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
    lines = []
    for tx in txs:
        recs = usage.get(tx.id, [])
        lines.append(
            {
                "job_id": tx.job_id,
                "name": names.get(tx.job_id or ""),
                "settled_at": tx.created_at.isoformat(),
                "amount_cny": str(tx.amount),
                "scu": str(sum((r.scu for r in recs), Decimal("0.000000"))),
                "centers": sorted({r.center_id for r in recs}),
                "usage_record_ids": [r.id for r in recs],
            }
        )
    topups = session.scalar(
        select(func.sum(LedgerTransaction.amount)).where(
            LedgerTransaction.kind == "topup",
            LedgerTransaction.tenant_id == tenant.id,
            _in_period(period),
        )
    )
    total = sum((t.amount for t in txs), ZERO)
    bal = balance(session=session, tenant_id=tenant.id)
    return {
        "tenant_id": tenant.id,
        "tenant": tenant.name,
        "period": period,
        "total_cny": str(total),
        "topups_cny": str(cents(Decimal(topups or 0))),
        "lines": lines,
        "balance": bal.as_json(),
    }


def invoice_csv(doc: dict[str, Any]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["job_id", "name", "settled_at", "amount_cny", "scu", "centers", "usage_record_ids"])
    for line in doc["lines"]:
        w.writerow(
            [
                line["job_id"],
                line["name"] or "",
                line["settled_at"],
                line["amount_cny"],
                line["scu"],
                " ".join(line["centers"]),
                " ".join(str(i) for i in line["usage_record_ids"]),
            ]
        )
    w.writerow(["total", "", "", doc["total_cny"], "", "", ""])
    return buf.getvalue()


def settlement(*, session: Session, period: str, provider: Tenant | None = None) -> dict[str, Any]:
    """Charges, commission and what each provider earned in ``period``.

    ``providers`` lists every payable account that earned something (the platform's own,
    unowned centers as ``provider`` "platform"); with ``provider`` only that one is listed.
    ``charges_cny == sum(payout_cny) + commission_cny`` holds exactly.
    """
    in_period = and_(LedgerTransaction.kind == "charge", _in_period(period))
    sub = select(LedgerTransaction.id).where(in_period)
    totals = session.execute(
        select(
            func.sum(LedgerTransaction.amount),
            func.sum(LedgerTransaction.commission),
            func.count(LedgerTransaction.id),
        ).where(in_period)
    ).one()
    rows = session.execute(
        select(LedgerPosting.account_id, func.sum(LedgerPosting.amount))
        .where(
            LedgerPosting.transaction_id.in_(sub),
            (LedgerPosting.account_id.like("provider:%"))
            | (LedgerPosting.account_id == ledger.PLATFORM_CENTERS),
        )
        .group_by(LedgerPosting.account_id)
        .order_by(LedgerPosting.account_id)
    ).all()
    names = dict(session.execute(select(Tenant.id, Tenant.name)).all())
    providers = []
    for account_id, amount in rows:
        tid = ledger.account_tenant(account_id)
        if provider is not None and tid != provider.id:
            continue
        providers.append(
            {
                "provider": names.get(tid, tid) if tid else "platform",
                "provider_id": tid,
                "account": account_id,
                "payout_cny": str(cents(Decimal(amount))),
            }
        )
    doc: dict[str, Any] = {"period": period, "providers": providers}
    if provider is None:
        doc |= {
            "charges_cny": str(cents(Decimal(totals[0] or 0))),
            "commission_cny": str(cents(Decimal(totals[1] or 0))),
            "jobs": int(totals[2]),
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
    # holds: a tenant's held balance is the sum of its open holds (no charge yet)
    charge = LedgerTransaction.__table__.alias("c")
    open_holds = dict(
        session.execute(
            select(LedgerTransaction.tenant_id, func.sum(LedgerTransaction.amount))
            .outerjoin(
                charge, and_(charge.c.job_id == LedgerTransaction.job_id, charge.c.kind == "charge")
            )
            .where(LedgerTransaction.kind == "hold", charge.c.id.is_(None))
            .group_by(LedgerTransaction.tenant_id)
        ).all()
    )
    for acct in session.scalars(select(Account).where(Account.kind == "held")):
        expect = cents(Decimal(open_holds.get(acct.tenant_id) or 0))
        if acct.balance != expect:
            problems.append(
                f"account {acct.id}: holds {acct.balance} but open holds sum to {expect}"
            )
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
