"""Billing settings as stored (``billing_settings``): prepayment, commission, energy pass-through,
the worth of a free token, the idle discount of preemptible work; and the per-process cache the
submit path reads them from."""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from suanwang.billing import ledger, quotas
from suanwang.billing.money import ZERO, cents
from suanwang.billing.pricing import DEFAULT_IDLE_DISCOUNT, check_idle_discount
from suanwang.server.database.models import BillingSetting, Tenant, TenantRole

BILLING_REQUIRED = "billing_required"
COMMISSION_RATE = "commission_rate"
ENERGY_PASS_THROUGH = "energy_pass_through"
TOKEN_VALUE = "token_value_cny_per_million"
IDLE_DISCOUNT = "idle_discount"
#: The highest token value an operator may set (CNY per million tokens).
MAX_TOKEN_VALUE = Decimal(1000)


@dataclass(frozen=True, slots=True)
class BillingConfig:
    """``billing_required``: consumers and providers need a prepaid balance to submit (402
    otherwise); off (the default of a fresh database), jobs are charged postpaid."""

    billing_required: bool = False
    commission_rate: Decimal = ledger.DEFAULT_COMMISSION
    #: Charge the capacity part of the posted price + metered energy at the hour's tariff
    #: (:func:`suanwang.billing.rating.rate_segment`) instead of the posted price.
    energy_pass_through: bool = False
    #: What a free trial token is worth at most, CNY per million tokens
    #: (:mod:`suanwang.billing.quotas`).
    token_value_cny_per_million: Decimal = quotas.DEFAULT_TOKEN_VALUE
    #: What ``preemptible`` work saves on the posted price where no ``idle_discount`` offer
    #: prices the pool (:meth:`suanwang.billing.pricing.PriceBook.idle_price`).
    idle_discount: Decimal = DEFAULT_IDLE_DISCOUNT

    def as_json(self) -> dict[str, Any]:
        return {
            "billing_required": self.billing_required,
            "commission_rate": str(self.commission_rate),
            "energy_pass_through": self.energy_pass_through,
            "token_value_cny_per_million": str(self.token_value_cny_per_million),
            "idle_discount": str(self.idle_discount),
        }


#: Seconds a server process keeps the settings it read for admitting submissions
#: (:func:`admission_config`); a change made by another process takes effect within this time.
ADMISSION_CONFIG_TTL_S = 10.0
_ADMISSION: weakref.WeakKeyDictionary[Engine, tuple[float, BillingConfig]] = (
    weakref.WeakKeyDictionary()
)


def get_config(*, session: Session) -> BillingConfig:
    values = {s.key: s.value for s in session.scalars(select(BillingSetting))}
    return BillingConfig(
        billing_required=values.get(BILLING_REQUIRED, "false") == "true",
        commission_rate=Decimal(values.get(COMMISSION_RATE, str(ledger.DEFAULT_COMMISSION))),
        energy_pass_through=values.get(ENERGY_PASS_THROUGH, "false") == "true",
        token_value_cny_per_million=Decimal(
            values.get(TOKEN_VALUE, str(quotas.DEFAULT_TOKEN_VALUE))
        ),
        idle_discount=Decimal(values.get(IDLE_DISCOUNT, str(DEFAULT_IDLE_DISCOUNT))),
    )


def check_token_value(value: Decimal) -> Decimal:
    """A token value (CNY per million tokens): within 0..1000 with at most 2 decimals."""
    if not value.is_finite() or not ZERO <= value <= MAX_TOKEN_VALUE or value != cents(value):
        raise ValueError(
            f"token value {value}: must be between 0 and {MAX_TOKEN_VALUE} CNY per million "
            "tokens, with at most 2 decimals"
        )
    return cents(value)


def set_config(
    *,
    session: Session,
    now: datetime,
    billing_required: bool | None = None,
    commission_rate: Decimal | None = None,
    energy_pass_through: bool | None = None,
    token_value_cny_per_million: Decimal | None = None,
    idle_discount: Decimal | None = None,
) -> BillingConfig:
    """Change settings (``commission_rate`` must be within 5 %..10 %, the token value within
    0..1000 CNY per million tokens, the idle discount within 0..0.90), stamped ``now``; returns
    the new ones."""
    updates: dict[str, str] = {}
    if billing_required is not None:
        updates[BILLING_REQUIRED] = "true" if billing_required else "false"
    if commission_rate is not None:
        updates[COMMISSION_RATE] = str(ledger.check_commission(commission_rate))
    if energy_pass_through is not None:
        updates[ENERGY_PASS_THROUGH] = "true" if energy_pass_through else "false"
    if token_value_cny_per_million is not None:
        updates[TOKEN_VALUE] = str(check_token_value(token_value_cny_per_million))
    if idle_discount is not None:
        updates[IDLE_DISCOUNT] = str(check_idle_discount(idle_discount))
    for key, value in updates.items():
        row = session.get(BillingSetting, key)
        if row is None:
            session.add(BillingSetting(key=key, value=value, updated_at=now))
        else:
            row.value, row.updated_at = value, now
    session.flush()
    forget_admission_config()
    return get_config(session=session)


def forget_admission_config() -> None:
    """Drop this process's cached settings (after they were changed behind its back)."""
    _ADMISSION.clear()


def admission_config(*, session: Session) -> BillingConfig:
    """The settings as read at most :data:`ADMISSION_CONFIG_TTL_S` ago by this process, per
    database: the submit path reads them on every request, so they are cached (one query
    less per submission). Settlement always reads them afresh (:func:`get_config`)."""
    engine = session.get_bind()
    if not isinstance(engine, Engine):
        engine = engine.engine
    now = time.monotonic()
    hit = _ADMISSION.get(engine)
    if hit is not None and hit[0] > now:
        return hit[1]
    config = get_config(session=session)
    _ADMISSION[engine] = (now + ADMISSION_CONFIG_TTL_S, config)
    return config


def needs_hold(tenant: Tenant, config: BillingConfig) -> bool:
    """Prepayment applies to consumers and providers when billing is required (not operators)."""
    return config.billing_required and tenant.tenant_role is not TenantRole.OPERATOR
