"""Ledger accounts: create them, post an entry (balances updated in account order), read and
lock balances, credit top-ups."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanwang.billing import ledger
from suanwang.billing.ledger import Entry, InsufficientBalance
from suanwang.billing.money import ZERO
from suanwang.server.database.models import (
    Account,
    LedgerPosting,
    LedgerTransaction,
    Tenant,
)


def _insert_ignore(session: Session, values: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    ins: Any = postgresql.insert(Account) if dialect == "postgresql" else sqlite.insert(Account)
    session.execute(ins.values(values).on_conflict_do_nothing(index_elements=["id"]))


def ensure_accounts(*, session: Session, account_ids: list[str], now: datetime) -> None:
    """Create the accounts that do not exist yet (``now``: their creation time).

    Those that exist are looked up first and only the others inserted: almost every call
    (each posting, each submission's hold) finds them all, and the lookup costs half of an
    insert that does nothing (a statement built for each list of rows). One created by a
    transaction not committed yet is not seen: its insert does nothing, as before."""
    wanted = sorted(set(account_ids))
    if not wanted:
        return
    have = set(session.scalars(select(Account.id).where(Account.id.in_(wanted))))
    rows = [
        {
            "id": a,
            "kind": ledger.account_kind(a),
            "tenant_id": ledger.account_tenant(a),
            "balance": ZERO,
            "created_at": now,
        }
        for a in wanted
        if a not in have
    ]
    if rows:
        _insert_ignore(session, rows)


def balance_of(*, session: Session, account_id: str, lock: bool = False) -> Decimal:
    stmt = select(Account.balance).where(Account.id == account_id)
    if lock:
        stmt = stmt.with_for_update()
    value = session.scalar(stmt)
    return value if value is not None else ZERO


def post(
    *, session: Session, entry: Entry, now: datetime, memo: str = ""
) -> tuple[LedgerTransaction, bool]:
    """Write ``entry`` at ``now`` (balances updated in account order); ``(transaction,
    written)``.

    If a transaction with the entry's ``ref`` exists, nothing is written and it is returned.
    Raises :class:`InsufficientBalance` (nothing written) if a prepaid or held account would
    go below zero.
    """
    existing = session.scalar(select(LedgerTransaction).where(LedgerTransaction.ref == entry.ref))
    if existing is not None:
        return existing, False
    delta = entry.delta()
    ensure_accounts(session=session, account_ids=list(delta), now=now)
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
                created_at=now,
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


def tenant_by_name_or_id(*, session: Session, ref: str) -> Tenant | None:
    if "\x00" in ref:  # no name has one (and PostgreSQL refuses it in a query)
        return None
    return session.scalar(select(Tenant).where((Tenant.name == ref) | (Tenant.id == ref)))


def topup(
    *,
    session: Session,
    tenant: Tenant,
    amount: Decimal,
    now: datetime,
    key: str | None = None,
    memo: str = "",
) -> tuple[LedgerTransaction, bool]:
    """Credit ``amount`` to the tenant's prepaid balance; ``key`` makes retries idempotent."""
    ref = f"topup:{key}" if key else f"topup:{uuid.uuid4()}"
    entry = ledger.topup(tenant.id, amount, ref)
    tx, written = post(session=session, entry=entry, now=now, memo=memo)
    if not written and (tx.kind != "topup" or tx.tenant_id != tenant.id or tx.amount != amount):
        raise ValueError(f"top-up key {key!r} was already used for a different top-up")
    return tx, written


def lock_consumer(session: Session, tenant_id: str, *, now: datetime) -> Decimal:
    """Lock the tenant's consumer accounts (``FOR UPDATE``, in id order, as every writer
    does; created at ``now`` if missing); returns the prepaid balance."""
    consumer = [ledger.held(tenant_id), ledger.postpaid(tenant_id), ledger.prepaid(tenant_id)]
    stmt = (
        select(Account.id, Account.balance)
        .where(Account.id.in_(consumer))
        .order_by(Account.id)
        .with_for_update()
    )
    locked = {a: b for a, b in session.execute(stmt)}
    if len(locked) < len(consumer):  # the tenant's first charge or hold: make them, lock all
        ensure_accounts(session=session, account_ids=consumer, now=now)
        locked = {a: b for a, b in session.execute(stmt)}
    return locked.get(ledger.prepaid(tenant_id), ZERO)


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
