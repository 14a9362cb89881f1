"""Tenants (consumers, providers, operators) and the centers providers own."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from suanwang.server.database.models.base import Base, new_id, utcnow


class TenantRole(StrEnum):
    CONSUMER = "consumer"  # submits and watches its own jobs
    PROVIDER = "provider"  # owns centers (center_owners): sees the jobs placed on them
    OPERATOR = "operator"  # runs the platform: sees everything


class Tenant(Base):
    """A consumer, provider or operator, authenticated by its API keys (:class:`ApiKey`).

    ``api_key_hash`` is the digest of the tenant's first key (the only key before migration
    0010, which copied it to ``api_keys``); authentication reads ``api_keys`` only. The column
    stays because SQLite cannot drop a UNIQUE column without rebuilding ``tenants``, which
    would cascade-delete every row that refers to it."""

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


class ApiKey(Base):
    """One API key of a tenant, stored as its SHA-256 hex digest (the key itself is shown once).

    ``prefix`` is the key's first characters (``sw_`` + 8): what lists show and commands name
    a key by, never enough to use it. Keys from before migration 0010 have ``old_`` + the
    first 12 hex digits of their digest instead (their text was never stored). A key
    authenticates while not revoked and not expired (``expires_at`` null: never); a
    ``read_only`` key may only read (GET, HEAD, OPTIONS)."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_tenant", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    read_only: Mapped[bool] = mapped_column(Boolean())
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
