"""Statements: what a job cost its consumer, a tenant's invoice for a month (JSON, CSV) and
the platform's or a provider's settlement for a month."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from suanwang.billing import ledger, quotas
from suanwang.billing.money import ZERO, cents, qty
from suanwang.core import csvcells
from suanwang.server.database.models import (
    Account,
    JobRow,
    LedgerPosting,
    LedgerTransaction,
    QuotaUse,
    ReservationRow,
    Tenant,
    UsageRecord,
)

from .accounts import balance
from .config import get_config
from .metering import priority_of
from .payouts import due_to
from .trading import reservation_json


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
    booked = {} if row is None else reservation_json(row)
    return {
        "kind": tx.kind,
        "transaction_id": tx.id,
        "job_id": None,
        "reservation_id": ledger.reservation_of(tx.ref),
        "name": None,
        "priority": None,
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
    names: dict[str, str] = {}
    classes: dict[str, str] = {}
    for job_id, name, priority, kind in session.execute(
        select(
            JobRow.id,
            JobRow.name,
            JobRow.spec["priority"].as_string(),
            JobRow.spec["kind"].as_string(),
        ).where(JobRow.id.in_([t.job_id for t in txs]))
    ):
        names[job_id] = name
        classes[job_id] = priority_of(priority, kind).value
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
                "priority": classes.get(tx.job_id or ""),
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
    "priority",
)  # fmt: skip


def invoice_csv(doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csvcells.writer(buf, lineterminator="\n")
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
    *, session: Session, period: str, now: datetime, provider: Tenant | None = None
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
