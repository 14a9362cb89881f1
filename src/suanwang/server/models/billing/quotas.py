"""Trial quotas as stored: grants (``quota_grants``), what is left of them, and consuming them
when a job is charged (the rules: :mod:`suanwang.billing.quotas`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanwang.billing import quotas
from suanwang.billing.money import ZERO, cents, qty
from suanwang.server.database.models import QuotaGrant, QuotaUse, Tenant


def allowances(session: Session, tenant_id: str, *, now: datetime) -> list[quotas.Allowance]:
    """The tenant's grants unexpired at ``now`` with something left, locked, in consumption
    order."""
    grants = session.scalars(
        select(QuotaGrant)
        .where(
            QuotaGrant.tenant_id == tenant_id,
            (QuotaGrant.expires_at.is_(None)) | (QuotaGrant.expires_at > now),
            (QuotaGrant.card_hours_used < QuotaGrant.card_hours)
            | (QuotaGrant.storage_gb_months_used < QuotaGrant.storage_gb_months)
            | (QuotaGrant.tokens_used < QuotaGrant.tokens),
        )
        .order_by(QuotaGrant.expires_at.is_(None), QuotaGrant.expires_at, QuotaGrant.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return [
        quotas.Allowance(
            g.id,
            g.card_hours - g.card_hours_used,
            g.storage_gb_months - g.storage_gb_months_used,
            g.tokens - g.tokens_used,
        )
        for g in grants
    ]


class QuotaRace(ValueError):
    """A grant had less left than it was read with (never expected: grants are locked)."""


def consume(session: Session, covers: list[quotas.Cover]) -> None:
    columns: dict[str, tuple[Any, Any]] = {
        quotas.CARD_HOURS: (QuotaGrant.card_hours_used, QuotaGrant.card_hours),
        quotas.STORAGE_GB_MONTHS: (QuotaGrant.storage_gb_months_used, QuotaGrant.storage_gb_months),
        quotas.TOKENS: (QuotaGrant.tokens_used, QuotaGrant.tokens),
    }
    for c in sorted(covers, key=lambda c: (c.grant_id, c.resource, c.seq)):
        used, granted = columns[c.resource]
        q: Decimal | int = int(c.quantity) if c.resource == quotas.TOKENS else c.quantity
        result = session.execute(
            update(QuotaGrant)
            .where(QuotaGrant.id == c.grant_id, used + q <= granted)
            .values({used: used + q}),
            execution_options={"synchronize_session": False},
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise QuotaRace(f"grant {c.grant_id}: less than {c.quantity} {c.resource} left")


def grant_quota(
    *,
    session: Session,
    tenant: Tenant,
    now: datetime,
    card_hours: Decimal = ZERO,
    storage_gb_months: Decimal = ZERO,
    tokens: int = 0,
    expires_at: datetime | None = None,
    key: str | None = None,
    memo: str = "",
) -> tuple[QuotaGrant, bool]:
    """Grant ``tenant`` free quotas; ``(grant, written)``. ``key`` makes a retry grant once (a
    key reused for a different grant: ValueError)."""
    for name, value in (("card_hours", card_hours), ("storage_gb_months", storage_gb_months)):
        if not value.is_finite() or value < 0 or value != qty(value) or value >= Decimal("1e12"):
            raise ValueError(f"{name}: {value} must be >= 0 with at most 6 decimals")
    if tokens < 0 or tokens >= quotas.MAX_TOKENS:
        raise ValueError(f"tokens: {tokens} must be >= 0 and below {quotas.MAX_TOKENS:,}")
    ref = f"grant:{key}" if key else f"grant:{uuid.uuid4()}"
    values = (card_hours, storage_gb_months, tokens, expires_at)
    existing = session.scalar(select(QuotaGrant).where(QuotaGrant.ref == ref))
    if existing is None:
        grant = QuotaGrant(
            tenant_id=tenant.id, ref=ref, card_hours=qty(card_hours), card_hours_used=qty(ZERO),
            storage_gb_months=qty(storage_gb_months), storage_gb_months_used=qty(ZERO),
            tokens=tokens, tokens_used=0, expires_at=expires_at, memo=memo, granted_at=now,
        )  # fmt: skip
        try:
            with session.begin_nested():
                session.add(grant)
                session.flush()
            return grant, True
        except IntegrityError:
            existing = session.scalar(select(QuotaGrant).where(QuotaGrant.ref == ref))
            if existing is None:
                raise
    same = (existing.card_hours, existing.storage_gb_months, existing.tokens, existing.expires_at)
    if existing.tenant_id != tenant.id or same != values:
        raise ValueError(f"grant key {key!r} was already used for a different grant")
    return existing, False


def grant_json(g: QuotaGrant) -> dict[str, Any]:
    return {
        "id": g.id,
        "card_hours": str(g.card_hours),
        "card_hours_used": str(g.card_hours_used),
        "storage_gb_months": str(g.storage_gb_months),
        "storage_gb_months_used": str(g.storage_gb_months_used),
        "tokens": g.tokens,
        "tokens_used": g.tokens_used,
        "expires_at": g.expires_at.isoformat() if g.expires_at else None,
        "granted_at": g.granted_at.isoformat(),
        "memo": g.memo,
    }


def quota_summary(*, session: Session, tenant_id: str, now: datetime) -> dict[str, Any]:
    """What is left of the tenant's grants unexpired at ``now``, what its trials covered so
    far, and every grant (expired ones too, ``expired``)."""
    grants = list(
        session.scalars(
            select(QuotaGrant).where(QuotaGrant.tenant_id == tenant_id).order_by(QuotaGrant.id)
        )
    )
    live = [g for g in grants if g.expires_at is None or g.expires_at > now]
    covered = session.scalar(
        select(func.sum(QuotaUse.value_cny)).where(QuotaUse.tenant_id == tenant_id)
    )
    return {
        "tenant_id": tenant_id,
        "card_hours_left": str(sum((g.card_hours - g.card_hours_used for g in live), qty(ZERO))),
        "storage_gb_months_left": str(
            sum((g.storage_gb_months - g.storage_gb_months_used for g in live), qty(ZERO))
        ),
        "tokens_left": sum(g.tokens - g.tokens_used for g in live),
        "free_cny": str(cents(Decimal(covered or 0))),
        "grants": [
            grant_json(g) | {"expired": g.expires_at is not None and g.expires_at <= now}
            for g in grants
        ],
    }
