"""File schema of a tenants file (``tenants.yaml``): pydantic models at the boundary.

Field names and units match :mod:`suanwang.core.governance`, but for the rules' durations,
which a person writes in hours (``*_h``) and minutes (``protect_min``). Numbers are read
strictly: a boolean, a text that is no number, NaN, infinity or an absurdly large value is a
problem, never a silent conversion. Money is ``Decimal`` CNY kept to the fen: a number is
rounded to it, a text must be exact (:data:`MONEY_SCHEMA`, also what the API publishes).
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from suanwang.core.governance import (
    AGING_S,
    HALF_LIFE_S,
    MAX_PREEMPTIONS_PER_ROUND,
    PROMOTE_AFTER_S,
    PROTECT_AFTER_PREEMPTION_S,
)
from suanwang.core.jobs import Priority

#: Rates (SCU/h), weights and durations above this are typos, not plans.
MAX_NUMBER = 1e9
#: Money at or above this (CNY) is refused, as everywhere in billing.
MAX_CNY = Decimal("1e12")
#: The largest amount, to the fen.
MAX_CNY_NUMBER = Decimal("999999999999.99")
_CENT = Decimal("0.01")
#: An amount of CNY as a text: a plain decimal below 10^12 with at most 2 decimals.
MONEY_PATTERN = r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$"
#: What :data:`Money` takes, as JSON Schema: a number in range (rounded to the fen: a binary
#: float has no exact decimals for ``multipleOf`` to check) or an exact decimal text.
MONEY_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": float(MAX_CNY_NUMBER)},
        {"type": "string", "pattern": MONEY_PATTERN},
    ],
    "description": "CNY: a number (rounded half up to the fen) or a decimal text with at most "
    "2 decimals, e.g. 50000 or '12.50'; below 10^12",
}


def _finite(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a boolean, not a number")
    if isinstance(value, int | float):
        try:
            x = float(value)
        except OverflowError:
            raise ValueError(f"{value} is absurdly large (at most {MAX_NUMBER:g})") from None
    elif isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    else:
        raise ValueError(f"{value!r} is not a number")
    if not math.isfinite(x):
        raise ValueError(f"{value!r} is not a finite number")
    if abs(x) > MAX_NUMBER:
        raise ValueError(f"{value!r} is absurdly large (at most {MAX_NUMBER:g})")
    return x


def _non_negative(value: object) -> float:
    x = _finite(value)
    if x < 0:
        raise ValueError(f"must be >= 0, not {value!r}")
    return x


def _positive(value: object) -> float:
    x = _finite(value)
    if x <= 0:
        raise ValueError(f"must be > 0, not {value!r}")
    return x


def _count(value: object) -> int:
    x = _non_negative(value)
    if not x.is_integer():
        raise ValueError(f"must be a whole number, not {value!r}")
    return int(x)


def _money(value: object) -> Decimal:
    """CNY as :data:`MONEY_SCHEMA` publishes it: a number from 0 to :data:`MAX_CNY_NUMBER`
    (rounded half up to the fen), or a plain decimal text matching :data:`MONEY_PATTERN`."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"{value!r} is not an amount of CNY (a number, e.g. 50000 or '12.50')")
    if isinstance(value, str):
        if re.fullmatch(MONEY_PATTERN.strip("^$"), value) is None:
            raise ValueError(_why_not_money(value))
        return Decimal(value).quantize(_CENT)
    # a float (from YAML) by its shortest repr: 0.1 is 0.1, not 0.1000000000000000055
    d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not d.is_finite():
        raise ValueError(f"{value!r} is not a finite amount")
    if d < 0:
        raise ValueError(f"must be >= 0, not {value!r}")
    if d > MAX_CNY_NUMBER:
        raise ValueError(f"{value!r} is too large (at most 999,999,999,999.99 CNY)")
    return d.quantize(_CENT, rounding=ROUND_HALF_UP) + 0  # + 0: never -0.00


def _why_not_money(text: str) -> str:
    """Why ``text`` does not match :data:`MONEY_PATTERN`, as precisely as it can say."""
    if re.fullmatch(r"-?[0-9]{1,20}(\.[0-9]{1,20})?", text) is None:
        if text.strip().lower().lstrip("+-") in {"inf", "infinity", "nan"}:
            return f"{text!r} is not a finite amount"
        return (
            f"{text!r} is not a plain amount of CNY (digits and at most one point: no sign, "
            f"exponent, separator or blank; e.g. '12.50')"
        )
    d = Decimal(text)  # plain and short: exact, nothing can overflow
    if d < 0:
        return f"must be >= 0, not {text!r}"
    if d != d.quantize(_CENT):
        return f"{text!r} has more than 2 decimals (CNY is kept to the fen)"
    if d >= MAX_CNY:
        return f"{text!r} is too large (at most 999,999,999,999.99 CNY)"
    return f"{text!r} has a leading zero (e.g. '12.50')"


def _trimmed(value: str) -> str:
    if value != value.strip():
        raise ValueError(f"{value!r} has blanks at either end")
    return value


#: SCU/h, >= 0.
Rate = Annotated[float, BeforeValidator(_non_negative)]
Positive = Annotated[float, BeforeValidator(_positive)]
Count = Annotated[int, BeforeValidator(_count)]
Money = Annotated[Decimal, BeforeValidator(_money), WithJsonSchema(MONEY_SCHEMA)]
#: Tenant and cohort names: 1..100 characters (as the control plane's tenants), no control
#: characters, no blank at either end.
Name = Annotated[
    str,
    Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$"),
    AfterValidator(_trimmed),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RulesSpec(_Model):
    """The shared rules; defaults are :class:`suanwang.core.governance.Rules`'."""

    half_life_h: Positive = HALF_LIFE_S / 3600
    aging_h: Positive = AGING_S / 3600
    promote_after_h: Positive = PROMOTE_AFTER_S / 3600
    preemption: bool = Field(default=True, strict=True)
    max_preemptions_per_round: Count = MAX_PREEMPTIONS_PER_ROUND
    protect_min: Rate = PROTECT_AFTER_PREEMPTION_S / 60


class CapsSpec(_Model):
    """SCU/h caps by accelerator family (catalog vendor) and by hub id."""

    families: dict[str, Rate] = {}
    hubs: dict[str, Rate] = {}


class TenantSpec(_Model):
    name: Name
    quota_scu_per_h: Rate
    borrow_limit_scu_per_h: Rate = 0.0
    lend_limit_scu_per_h: Rate | None = None
    weight: Positive = 1.0
    classes: list[Priority] | None = None
    caps: CapsSpec = CapsSpec()
    budget_cny_per_month: Money | None = None
    max_spend_cny_per_h: Money | None = None


class CohortSpec(_Model):
    name: Name
    tenants: list[TenantSpec] = Field(min_length=1)


class TenantsFileSpec(_Model):
    rules: RulesSpec = RulesSpec()
    cohorts: list[CohortSpec] = Field(min_length=1)


#: The keys each mapping of the file may have, by its path without list indexes.
KNOWN_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    (): tuple(TenantsFileSpec.model_fields),
    ("rules",): tuple(RulesSpec.model_fields),
    ("cohorts",): tuple(CohortSpec.model_fields),
    ("cohorts", "tenants"): tuple(TenantSpec.model_fields),
    ("cohorts", "tenants", "caps"): tuple(CapsSpec.model_fields),
}
