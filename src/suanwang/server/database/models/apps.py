"""Apps of the marketplace that tenants published."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from suanwang.server.database.models.base import Base, utcnow


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
