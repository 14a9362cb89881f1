"""Tenants' fair-share usage as the placer saves it (table ``tenant_usage``, migration 0012):
each tenant's usage in SCU, decayed with the rules' half-life, and when it was saved. A
restarted or newly elected placer goes on from it (docs/governance.md, "Live")."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from suanwang.server.database.models import TenantUsage


def load_usage(*, session: Session) -> tuple[dict[str, float], datetime] | None:
    """Each tenant's saved usage (by tenant id) and when it was saved (None: never saved)."""
    at = session.scalar(select(func.max(TenantUsage.at)))
    if at is None:
        return None
    rows = session.execute(select(TenantUsage.tenant_id, TenantUsage.decayed_scu))
    return {tenant: float(scu) for tenant, scu in rows}, at


def save_usage(*, session: Session, decayed: Mapping[str, float], now: datetime) -> None:
    """Replace the saved usage with ``decayed`` (by tenant id) as of ``now``."""
    session.execute(delete(TenantUsage))
    if decayed:
        session.execute(
            insert(TenantUsage),
            [{"tenant_id": t, "decayed_scu": float(scu), "at": now} for t, scu in decayed.items()],
        )
