"""Money is :class:`~decimal.Decimal` CNY, rounded to the cent (half up); never a float."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
#: Prices per SCU are posted to 1/100 of a fen.
PRICE_STEP = Decimal("0.0001")
#: Quantities (SCU, kWh, kg, hours) are stored to 6 decimals.
QTY_STEP = Decimal("0.000001")
#: Token counts (trial grants, what a run reports serving) stay below a trillion: the quantity
#: columns hold them exactly (NUMERIC(20, 6); on SQLite integers scaled by 10**6).
MAX_TOKENS = 10**12


def cents(x: Decimal) -> Decimal:
    """``x`` rounded half up to the cent."""
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def cents_down(x: Decimal) -> Decimal:
    """``x`` rounded down to the cent (never worth more than it is)."""
    return x.quantize(CENT, rounding=ROUND_FLOOR)


def cents_up(x: Decimal) -> Decimal:
    """``x`` rounded up to the cent (holds never fall short by rounding)."""
    return x.quantize(CENT, rounding=ROUND_CEILING)


def qty(x: Decimal | float) -> Decimal:
    """A quantity to 6 decimals; floats (from the catalog) go through their shortest repr."""
    d = x if isinstance(x, Decimal) else Decimal(repr(float(x)))
    return d.quantize(QTY_STEP, rounding=ROUND_HALF_UP)


def parse_amount(text: str, *, what: str = "amount") -> Decimal:
    """A positive CNY amount with at most 2 decimals, e.g. ``"100"`` or ``"12.50"``.

    Raises ``ValueError`` naming ``what`` and the input.
    """
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise ValueError(f"{what}: {text!r} is not a number (e.g. 100 or 12.50)") from None
    if not value.is_finite():
        raise ValueError(f"{what}: {text!r} is not a finite amount")
    if value <= 0:
        raise ValueError(f"{what}: {text!r} must be positive")
    if value != value.quantize(CENT):
        raise ValueError(f"{what}: {text!r} has more than 2 decimals (CNY is kept to the fen)")
    if value >= Decimal("1e12"):
        raise ValueError(f"{what}: {text!r} is too large (at most 999,999,999,999.99 CNY)")
    return value.quantize(CENT)
