"""ORM tables: tenants, center owners, jobs, job events, run fences, drains (control-plane.md).

Timestamps are UTC-aware in Python everywhere; SQLite (which has no time zone type) stores them
as naive UTC and :class:`UTCDateTime` attaches UTC again on the way out. Ids are UUID strings
(``String(36)``) so both databases compare and index them the same way.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator, TypeEngine

from suanwang.core.lifecycle import JobState


class TenantRole(StrEnum):
    CONSUMER = "consumer"  # submits and watches its own jobs
    PROVIDER = "provider"  # owns centers (center_owners): sees the jobs placed on them
    OPERATOR = "operator"  # runs the platform: sees everything


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that must be aware on the way in and is UTC-aware on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the database stores UTC-aware times")
        value = value.astimezone(UTC)
        # SQLite keeps the text form; drop the offset so that stored values compare as text
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: Constraint names are fixed so that migrations can refer to them on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Tenant(Base):
    """A consumer, provider or operator, authenticated by an API key stored as SHA-256 hex."""

    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint(
            "role IN ('consumer', 'provider', 'operator')",
            name="role",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def tenant_role(self) -> TenantRole:
        return TenantRole(self.role)


class CenterOwner(Base):
    """A center of the scenario owned by a provider tenant; a center has at most one owner.

    Center ids are those of the scenario the platform serves; the database does not know the
    scenario, so ``suanwang tenants`` checks ids against it before granting.
    """

    __tablename__ = "center_owners"
    __table_args__ = (Index("ix_center_owners_tenant", "tenant_id", "center_id"),)

    center_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)


_JOB_STATES = ", ".join(f"'{s.value}'" for s in JobState)


class JobRow(Base):
    """A submitted job: its spec as sent, its lifecycle state and where it was placed.

    ``pool_model`` is the accelerator (or CPU) model of the pool it holds at ``center_id``;
    ``decision`` the placement explanation; ``executor_ref`` the executor's handle.
    ``start_at`` is the planned start (null: at once); a scheduled job is handed to its
    executor only once it has come, so deferred jobs wait in ``scheduled``.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        CheckConstraint(f"state IN ({_JOB_STATES})", name="state"),
        Index("ix_jobs_tenant_submitted", "tenant_id", "submitted_at", "id"),
        Index("ix_jobs_submitted", "submitted_at", "id"),
        Index("ix_jobs_state", "state"),
        Index("ix_jobs_center_state", "center_id", "state"),
        Index("ix_jobs_state_start", "state", "start_at"),
        Index("ix_jobs_billed", "billed_at", "state"),  # billing: finished, not yet charged
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16), default=JobState.PENDING.value)
    center_id: Mapped[str | None] = mapped_column(String(100))
    pool_model: Mapped[str | None] = mapped_column(String(100))
    decision: Mapped[dict[str, Any] | None]
    executor_ref: Mapped[str | None] = mapped_column(String(500))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    logs: Mapped[str] = mapped_column(Text, default="", server_default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    resume_from: Mapped[str | None] = mapped_column(String(1000))
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)
    scheduled_at: Mapped[datetime | None]
    start_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # billing (issue 5, migration 0004): when the job's usage was metered and charged
    billed_at: Mapped[datetime | None]

    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", order_by="JobEvent.id", cascade="all, delete-orphan"
    )

    @property
    def job_state(self) -> JobState:
        return JobState(self.state)


class JobEvent(Base):
    """One lifecycle transition of a job (``from_state`` is null for the submission)."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job", "job_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    job: Mapped[JobRow] = relationship(back_populates="events")


class RunFence(Base):
    """A run the platform gave up on (its center was unreachable, or it was moved away).

    Once the center answers again the run is cancelled there (``fenced_at`` set), so a copy
    that Slurm recovers from saved state never finishes next to the job's new run.
    """

    __tablename__ = "run_fences"
    __table_args__ = (
        UniqueConstraint("center_id", "executor_ref"),
        Index("ix_run_fences_open", "center_id", "fenced_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    center_id: Mapped[str] = mapped_column(String(100))
    executor_ref: Mapped[str] = mapped_column(String(500))
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    fenced_at: Mapped[datetime | None]


class CenterDrain(Base):
    """A drained center: no new placements; checkpointable jobs move away, others finish."""

    __tablename__ = "center_drains"

    center_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    drained_at: Mapped[datetime] = mapped_column(default=utcnow)
    by_tenant: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(500), default="", server_default="")


class PublishedApp(Base):
    """An app of the marketplace published by a provider or operator (``POST /v1/apps``).

    ``spec`` is the :class:`suanwang.apps.catalog.AppSpec` as JSON; built-in apps live in the
    package (``suanwang/apps/builtin.yaml``), not here.
    """

    __tablename__ = "apps"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    spec: Mapped[dict[str, Any]]
    published_at: Mapped[datetime] = mapped_column(default=utcnow)


# --------------------------------------------------------------------------- billing (issue 5)
# Appended for billing (docs/billing.md, migration 0004); money logic is in suanwang.billing.


class _Scaled(TypeDecorator[Decimal]):
    """A ``Decimal`` stored as ``NUMERIC(p, s)``; on SQLite (which has no exact decimal type)
    as an integer count of ``10**-s`` units, so that SQL sums stay exact there too."""

    impl = Numeric
    cache_ok = True
    precision = 18
    scale = 2

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError(f"float {value!r} for a money/quantity column: use Decimal")
        d = Decimal(value).quantize(Decimal(1).scaleb(-self.scale))
        if dialect.name == "sqlite":
            return int(d.scaleb(self.scale))
        return d

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-self.scale)
        return Decimal(value).quantize(Decimal(1).scaleb(-self.scale))


class Money(_Scaled):
    """CNY to the fen: ``NUMERIC(18, 2)``."""

    cache_ok = True
    precision = 18
    scale = 2


class Quantity(_Scaled):
    """SCU, kWh, kg, GB, seconds to 6 decimals: ``NUMERIC(20, 6)``."""

    cache_ok = True
    precision = 20
    scale = 6


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


# ------------------------------------------------------------------ end of trial quotas


# --------------------------------------------------------------------------- trading (issue 5)
# Appended for trading (docs/billing.md "Trading", migration 0007); rules in billing/offers.py.


class UnitPrice(_Scaled):
    """CNY per SCU to 1/100 fen: ``NUMERIC(18, 4)`` (on SQLite an integer of 0.0001 CNY)."""

    cache_ok = True
    precision = 18
    scale = 4


class OfferRow(Base):
    """A provider's (or the operator's) offer: units of a chip at a center for a window.

    Withdrawing sets ``withdrawn_at``: the offer ends at the next whole hour (reservations
    already booked stay); see :func:`suanwang.server.models.billing.trading.effective_end`.
    """

    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint("type IN ('on_demand', 'reserved', 'idle_discount')", name="type"),
        CheckConstraint("units > 0 AND price_cny_per_scu > 0", name="positive"),
        CheckConstraint("ends_at > starts_at", name="window"),
        Index("ix_offers_pool", "center_id", "model", "ends_at"),
        Index("ix_offers_ends", "ends_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    center_id: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(100))
    precision: Mapped[str | None] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(16))
    units: Mapped[int] = mapped_column(Integer)
    price_cny_per_scu: Mapped[Decimal] = mapped_column(UnitPrice())
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    withdrawn_at: Mapped[datetime | None]


class ReservationRow(Base):
    """Units of a ``reserved`` offer booked by a consumer for a window, paid at booking
    (``transaction_id``: the ``reservation:<id>`` ledger entry); cancelled before its start,
    it is refunded (``refund:reservation:<id>``)."""

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint("units > 0 AND amount_cny >= 0", name="positive"),
        CheckConstraint("ends_at > starts_at", name="window"),
        Index("ix_reservations_offer", "offer_id", "cancelled_at"),
        Index("ix_reservations_tenant", "tenant_id", "created_at"),
        Index("ix_reservations_pool", "center_id", "model", "ends_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    offer_id: Mapped[str] = mapped_column(ForeignKey("offers.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    center_id: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(100))
    precision: Mapped[str] = mapped_column(String(8))
    units: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    price_cny_per_scu: Mapped[Decimal] = mapped_column(UnitPrice())
    scu: Mapped[Decimal] = mapped_column(Quantity())
    amount_cny: Mapped[Decimal] = mapped_column(Money())
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None]


# ------------------------------------------------------------------ end of trading
