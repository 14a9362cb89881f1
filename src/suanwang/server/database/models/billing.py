"""Billing (docs/billing.md, migration 0004): settings, ledger, usage records and trial
quotas (migration 0006). Money logic is in :mod:`suanwang.billing`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from suanwang.server.database.models.base import Base, utcnow
from suanwang.server.database.models.types import Money, Quantity


class BillingSetting(Base):
    """Platform billing settings (``billing_required``, ``commission_rate``) by key."""

    __tablename__ = "billing_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Account(Base):
    """A ledger account; ``balance`` is the sum of its postings (``ledger verify`` checks)."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("kind NOT IN ('prepaid', 'held') OR balance >= 0", name="non_negative"),
        Index("ix_accounts_tenant", "tenant_id"),
    )

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[str | None] = mapped_column(String(36))
    balance: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0.00"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerTransaction(Base):
    """One balanced transaction (top-up, hold, charge); ``ref`` makes writing it idempotent."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        Index("ix_ledger_transactions_tenant", "tenant_id", "created_at"),
        Index("ix_ledger_transactions_kind", "kind", "created_at"),
        Index("ix_ledger_transactions_job", "job_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(200), unique=True)
    tenant_id: Mapped[str | None] = mapped_column(String(36))
    job_id: Mapped[str | None] = mapped_column(String(36))
    amount: Mapped[Decimal] = mapped_column(Money())
    commission: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0.00"))
    memo: Mapped[str] = mapped_column(String(500), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerPosting(Base):
    """One side of a transaction: ``amount`` > 0 credits the account, < 0 debits it."""

    __tablename__ = "ledger_postings"
    __table_args__ = (
        Index("ix_ledger_postings_account", "account_id"),
        Index("ix_ledger_postings_transaction", "transaction_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[Decimal] = mapped_column(Money())


class UsageRecord(Base):
    """One metered run of a job (immutable; one per run event, so ingesting twice counts once)."""

    __tablename__ = "usage_records"
    __table_args__ = (
        UniqueConstraint("job_id", "seq"),
        UniqueConstraint("run_event_id"),
        Index("ix_usage_records_transaction", "transaction_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(String(36))
    tenant_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(Integer)
    run_event_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    center_id: Mapped[str] = mapped_column(String(100))
    pool_model: Mapped[str] = mapped_column(String(100))
    precision: Mapped[str] = mapped_column(String(8))
    units: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    end_state: Mapped[str] = mapped_column(String(16))
    seconds: Mapped[Decimal] = mapped_column(Quantity())
    scu: Mapped[Decimal] = mapped_column(Quantity())
    it_kwh: Mapped[Decimal] = mapped_column(Quantity())
    facility_kwh: Mapped[Decimal] = mapped_column(Quantity())
    green_kwh: Mapped[Decimal] = mapped_column(Quantity())
    carbon_kg: Mapped[Decimal] = mapped_column(Quantity())
    data_gb: Mapped[Decimal] = mapped_column(Quantity())
    compute_cny: Mapped[Decimal] = mapped_column(Money())
    transfer_cny: Mapped[Decimal] = mapped_column(Money())
    amount_cny: Mapped[Decimal] = mapped_column(Money())
    billable: Mapped[bool] = mapped_column(Boolean)
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    # migration 0008: the staged data held for the run and its charge; tokens it reported
    storage_gb_months: Mapped[Decimal] = mapped_column(
        Quantity(), default=Decimal("0"), server_default="0"
    )
    storage_cny: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"), server_default="0")
    tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# ------------------------------------------------------------------ trial quotas (issue 5, 0006)


class QuotaGrant(Base):
    """Free trial quota granted to a tenant by an operator: card-hours, storage GB-months and
    tokens, each with how much is used (``0 <= used <= granted``, checked by the database)."""

    __tablename__ = "quota_grants"
    __table_args__ = (
        CheckConstraint(
            "card_hours_used >= 0 AND card_hours_used <= card_hours", name="card_hours_within"
        ),
        CheckConstraint(
            "storage_gb_months_used >= 0 AND storage_gb_months_used <= storage_gb_months",
            name="storage_gb_months_within",
        ),
        CheckConstraint("tokens_used >= 0 AND tokens_used <= tokens", name="tokens_within"),
        Index("ix_quota_grants_tenant", "tenant_id", "expires_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ref: Mapped[str] = mapped_column(String(200), unique=True)
    card_hours: Mapped[Decimal] = mapped_column(Quantity())
    card_hours_used: Mapped[Decimal] = mapped_column(Quantity(), default=Decimal("0"))
    storage_gb_months: Mapped[Decimal] = mapped_column(Quantity())
    storage_gb_months_used: Mapped[Decimal] = mapped_column(Quantity(), default=Decimal("0"))
    tokens: Mapped[int] = mapped_column(BigInteger)
    tokens_used: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime | None]
    memo: Mapped[str] = mapped_column(String(500), default="", server_default="")
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)


class QuotaUse(Base):
    """What one grant covered of one usage record (``value_cny``: the charge the platform
    funded from its trials account instead of the consumer)."""

    __tablename__ = "quota_uses"
    __table_args__ = (
        UniqueConstraint("usage_record_id", "grant_id", "resource"),
        CheckConstraint("quantity > 0 AND value_cny >= 0", name="positive"),
        Index("ix_quota_uses_job", "job_id"),
        Index("ix_quota_uses_grant", "grant_id"),
        Index("ix_quota_uses_transaction", "transaction_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    grant_id: Mapped[int] = mapped_column(ForeignKey("quota_grants.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(36))
    job_id: Mapped[str] = mapped_column(String(36))
    usage_record_id: Mapped[int] = mapped_column(ForeignKey("usage_records.id"))
    resource: Mapped[str] = mapped_column(String(24))  # card_hours | storage_gb_months | tokens
    quantity: Mapped[Decimal] = mapped_column(Quantity())
    value_cny: Mapped[Decimal] = mapped_column(Money())
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
