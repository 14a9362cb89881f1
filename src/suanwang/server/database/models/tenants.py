"""Tenants (consumers, providers, operators) and the centers providers own."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from suanwang.server.database.models.base import Base, new_id, utcnow


class TenantRole(StrEnum):
    CONSUMER = "consumer"  # submits and watches its own jobs
    PROVIDER = "provider"  # owns centers (center_owners): sees the jobs placed on them
    OPERATOR = "operator"  # runs the platform: sees everything


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
