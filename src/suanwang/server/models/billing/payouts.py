"""Payouts: what may be paid to a provider now, and paying it."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanwang.billing import ledger
from suanwang.billing.money import cents
from suanwang.server.database.models import (
    LedgerPosting,
    LedgerTransaction,
    ReservationRow,
    Tenant,
    TenantRole,
)

from .accounts import balance_of, ensure_accounts, post


def payout(
    *,
    session: Session,
    provider: Tenant,
    amount: Decimal | None = None,
    key: str | None = None,
    now: datetime,
    memo: str = "",
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
    ensure_accounts(session=session, account_ids=[account], now=now)
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
    entry = ledger.payout(provider.id, amount, ref)
    return post(session=session, entry=entry, now=now, memo=memo)


def due_to(*, session: Session, provider_id: str, now: datetime) -> Decimal:
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
            ReservationRow.starts_at > now,
        )
    )
    return balance_of(session=session, account_id=account) - cents(Decimal(refundable or 0))
