"""A tenant's quota settings as operators give them (``PUT /v1/quotas/{tenant}``, ``suanwang
quota set``) and as the API shows them: the fields of a tenant in the tenants file
(docs/governance.md) and its cohort, read strictly.

Rates are JSON numbers (a boolean or a text is refused, never converted), finite, >= 0, at most
:data:`~suanwang.scenarios.tenants_schema.MAX_NUMBER`, **rounded** (half to even) to 6 decimals
(they are kept as ``NUMERIC(20, 6)``); weights are at least 0.000001, so none rounds to 0. The
OpenAPI schema states every rule: JSON Schema's ``multipleOf: 0.000001`` would be no use for
the decimals (a binary float such as 0.1 is no exact multiple of anything decimal, and
generators and validators disagree on it), so the API takes any number in range and says it
rounds. Money is CNY to the fen, as in the tenants file
(:data:`~suanwang.scenarios.tenants_schema.Money`).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from suanwang.core.governance import TenantQuota
from suanwang.core.jobs import Priority
from suanwang.scenarios.tenants_schema import MAX_NUMBER, Money

#: Rates and weights are kept to 6 decimals (``NUMERIC(20, 6)``).
SCALE = Decimal("0.000001")
#: The smallest weight: the smallest positive number with 6 decimals.
MIN_WEIGHT = 0.000001
_ROUNDED = "rounded to 6 decimals"


def _rate(value: object) -> float | None:
    """A JSON number (not a boolean, not a text), finite, >= 0, at most :data:`MAX_NUMBER`,
    rounded to 6 decimals."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number (SCU/h, e.g. 120 or 12.5)")
    try:
        x = float(value)
    except OverflowError:
        raise ValueError(f"absurdly large (at most {MAX_NUMBER:g})") from None
    if not math.isfinite(x):
        raise ValueError(f"{value!r} is not a finite number")
    if x < 0:
        raise ValueError(f"must be >= 0, not {value!r}")
    if x > MAX_NUMBER:
        raise ValueError(f"{value!r} is absurdly large (at most {MAX_NUMBER:g})")
    d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return float(d.quantize(SCALE, rounding=ROUND_HALF_EVEN))


def _weight(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value < MIN_WEIGHT:
        floor = "> 0" if value <= 0 else "at least 0.000001 (it is kept to 6 decimals)"
        raise ValueError(f"must be {floor}, not {value!r}")
    x = _rate(value)
    if x is None or x < MIN_WEIGHT:  # pragma: no cover - the check above
        raise ValueError(f"must be > 0 (at least 0.000001), not {value!r}")
    return x


def _name(value: str) -> str:
    if value != value.strip():
        raise ValueError(f"{value!r} has blanks at either end")
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("must be valid Unicode (lone surrogate found)")
    return value


#: SCU/h (a JSON number >= 0); weights (> 0). The bounds are for the OpenAPI document: the
#: validators above check them first, with their own messages.
_Bounded = Annotated[float, Field(ge=0, le=MAX_NUMBER)]
Rate = Annotated[_Bounded, BeforeValidator(_rate)]
OptionalRate = Annotated[_Bounded | None, BeforeValidator(_rate)]
Weight = Annotated[float, Field(ge=MIN_WEIGHT, le=MAX_NUMBER), BeforeValidator(_weight)]
#: A cohort: 1..100 characters, no control characters, no blank at either end.
CohortName = Annotated[
    str,
    Field(min_length=1, max_length=100, pattern=r"^[^\u0000-\u001f\u007f-\u009f]+$"),
    AfterValidator(_name),
]
CapName = Annotated[str, Field(min_length=1, max_length=100)]


class CapsSettings(BaseModel):
    """SCU/h caps by accelerator family (the catalog's vendors) and by hub id."""

    model_config = ConfigDict(extra="forbid")

    families: dict[CapName, Rate] = Field(default_factory=dict, max_length=64)
    hubs: dict[CapName, Rate] = Field(default_factory=dict, max_length=64)


class QuotaSettings(BaseModel):
    """A tenant's quota as an operator sets it: the fields of a tenant in the tenants file
    (docs/governance.md) and its cohort. Every setting is given or takes its default."""

    model_config = ConfigDict(extra="forbid")

    cohort: CohortName = Field(description="the cohort (a university, a company) it is in")
    quota_scu_per_h: Rate = Field(description=f"nominal quota, SCU/h ({_ROUNDED})")
    borrow_limit_scu_per_h: Rate = Field(
        0.0,
        description=f"how much of its cohort mates' unused quota it may use, SCU/h ({_ROUNDED})",
    )
    lend_limit_scu_per_h: OptionalRate = Field(
        None, description=f"how much of its unused quota it lends, SCU/h ({_ROUNDED}; null: all)"
    )
    weight: Weight = Field(1.0, description=f"its entitlement is quota x weight ({_ROUNDED})")
    classes: list[Priority] | None = Field(
        None, min_length=1, max_length=16, description="classes it may submit (null: all)"
    )
    caps: CapsSettings = Field(default_factory=CapsSettings)
    budget_cny_per_month: Money | None = Field(None, description="CNY, to the fen (null: none)")
    max_spend_cny_per_h: Money | None = Field(None, description="CNY, to the fen (null: none)")

    def quota(self, tenant: str) -> TenantQuota:
        return TenantQuota(
            name=tenant,
            cohort=self.cohort,
            quota_scu_per_h=self.quota_scu_per_h,
            borrow_limit_scu_per_h=self.borrow_limit_scu_per_h,
            lend_limit_scu_per_h=self.lend_limit_scu_per_h,
            weight=self.weight,
            classes=frozenset(Priority) if self.classes is None else frozenset(self.classes),
            family_caps_scu_per_h=dict(self.caps.families),
            hub_caps_scu_per_h=dict(self.caps.hubs),
            budget_cny_per_month=self.budget_cny_per_month,
            max_spend_cny_per_h=self.max_spend_cny_per_h,
        )


def settings_json(q: TenantQuota) -> dict[str, Any]:
    """A quota's settings as the API shows (and takes) them: rates as numbers, money as
    decimal strings, classes in priority order, caps by name."""
    return {
        "cohort": q.cohort,
        "quota_scu_per_h": q.quota_scu_per_h,
        "borrow_limit_scu_per_h": q.borrow_limit_scu_per_h,
        "lend_limit_scu_per_h": q.lend_limit_scu_per_h,
        "weight": q.weight,
        "classes": [p.value for p in Priority if p in q.classes],
        "caps": {
            "families": dict(sorted(q.family_caps_scu_per_h.items())),
            "hubs": dict(sorted(q.hub_caps_scu_per_h.items())),
        },
        "budget_cny_per_month": _cny(q.budget_cny_per_month),
        "max_spend_cny_per_h": _cny(q.max_spend_cny_per_h),
    }


def _cny(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(Decimal("0.01")))
