"""Trading (docs/billing.md "Trading", migration 0007): offers and reservations; the rules
are in billing/offers.py."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from suanwang.server.database.models.base import Base, new_id, utcnow
from suanwang.server.database.models.types import Money, Quantity, UnitPrice


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
