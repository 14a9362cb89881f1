"""Governance (docs/governance.md, "Administration", migration 0009): each tenant's compute
quota, classes and budget as operators set them, and the record of every change.

Rates (SCU/h) and weights are exact decimals to 6 places (``Quantity``), budgets CNY to the
fen (``Money``); the model is :class:`suanwang.core.governance.TenantQuota`, the data functions
:mod:`suanwang.server.models.governance`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from suanwang.server.database.models.base import Base, utcnow
from suanwang.server.database.models.types import Money, Quantity


class TenantQuotaRow(Base):
    """One tenant's quota: its cohort, nominal quota, borrowing and lending limits (null:
    lends all its unused quota), weight, the classes it may submit (Priority values), caps
    by accelerator family and by hub (``{name: SCU/h}``) and budgets (null: none).

    ``updated_by`` is the operator's tenant id (no foreign key: the record outlives it)."""

    __tablename__ = "tenant_quotas"
    __table_args__ = (
        CheckConstraint(
            "quota_scu_per_h >= 0 AND borrow_limit_scu_per_h >= 0 AND weight > 0"
            " AND (lend_limit_scu_per_h IS NULL OR lend_limit_scu_per_h >= 0)"
            " AND (budget_cny_per_month IS NULL OR budget_cny_per_month >= 0)"
            " AND (max_spend_cny_per_h IS NULL OR max_spend_cny_per_h >= 0)",
            name="non_negative",
        ),
        Index("ix_tenant_quotas_cohort", "cohort"),
    )

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    cohort: Mapped[str] = mapped_column(String(100))
    quota_scu_per_h: Mapped[Decimal] = mapped_column(Quantity())
    borrow_limit_scu_per_h: Mapped[Decimal] = mapped_column(Quantity())
    lend_limit_scu_per_h: Mapped[Decimal | None] = mapped_column(Quantity())
    weight: Mapped[Decimal] = mapped_column(Quantity())
    classes: Mapped[list[str]] = mapped_column(JSON())
    family_caps: Mapped[dict[str, Any]]
    hub_caps: Mapped[dict[str, Any]]
    budget_cny_per_month: Mapped[Decimal | None] = mapped_column(Money())
    max_spend_cny_per_h: Mapped[Decimal | None] = mapped_column(Money())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(36))


class QuotaChange(Base):
    """One change of a tenant's quota: who (an operator's tenant id) made it when, the
    settings before (null: it had none) and after (null: removed). Ids are plain (no foreign
    keys): the record outlives the tenants it names, and ``before``/``after`` carry the
    tenant's name."""

    __tablename__ = "quota_changes"
    __table_args__ = (
        Index("ix_quota_changes_tenant", "tenant_id", "at"),
        Index("ix_quota_changes_at", "at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime]
    by_tenant_id: Mapped[str] = mapped_column(String(36))
    tenant_id: Mapped[str] = mapped_column(String(36))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]


class TenantUsage(Base):
    """A tenant's fair-share usage (SCU, decayed with the rules' half-life) as the placer
    last saved it, at ``at`` (migration 0012): a restarted or newly elected placer goes on
    from it instead of from nothing. ``tenant_id``: no foreign key (a number the placer
    recomputes; a row of a removed tenant is never read)."""

    __tablename__ = "tenant_usage"

    tenant_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    decayed_scu: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime]
