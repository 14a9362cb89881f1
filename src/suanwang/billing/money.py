"""Money is :class:`~decimal.Decimal` CNY, rounded to the cent (half up); never a float."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

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


#: A positive CNY amount as the API publishes it: a plain decimal string (ASCII digits, at most
#: 12 before the point and 2 after, no sign, exponent, separator, space or leading zero).
AMOUNT_PATTERN = r"^([1-9][0-9]{0,11}(\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9]))$"
#: Any plain decimal (what a message can explain more precisely than "not a number"): ASCII
#: digits and at most one point, bounded so that nothing can overflow the decimal context.
PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?")


def plain_decimal(value: object, *, what: str, pattern: str, example: str) -> Decimal:
    """``value`` as a ``Decimal`` if it is a plain decimal matching ``pattern`` (anchored JSON
    Schema regex, the one the API publishes), else ``ValueError`` naming ``what``.

    ``value`` is text, an int or a float (read from YAML: by its shortest repr, so ``3.2`` is
    3.2 and ``1e24`` is refused like the text ``"1e24"``) or a ``Decimal``; booleans are
    refused. Nothing is silently coerced: no spaces, underscores, full-width digits, signs or
    exponents. A plain decimal that is out of range gets a message saying why."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"{what}: {value!r} is not a decimal number (e.g. {example})")
    text = repr(value) if isinstance(value, float) else str(value)
    if re.fullmatch(pattern, text):
        return Decimal(text)
    if PLAIN_DECIMAL.fullmatch(text) is None:
        raise ValueError(
            f"{what}: {value!r} is not a plain decimal number (ASCII digits and at most one "
            f"point, no sign, exponent, separator or space; e.g. {example})"
        )
    raise ValueError(f"{what}: {value!r} is out of range")  # the caller's checks say why


def parse_amount(text: object, *, what: str = "amount") -> Decimal:
    """A positive CNY amount with at most 2 decimals, e.g. ``"100"`` or ``"12.50"``: exactly
    the strings :data:`AMOUNT_PATTERN` matches.

    Raises ``ValueError`` naming ``what`` and the input.
    """
    try:
        amount = plain_decimal(text, what=what, pattern=AMOUNT_PATTERN, example="100 or 12.50")
    except ValueError:
        if not isinstance(text, str) or PLAIN_DECIMAL.fullmatch(text) is None:
            raise
        value = Decimal(text)  # plain and short: exact, nothing can overflow
        if value <= 0:
            raise ValueError(f"{what}: {text!r} must be positive") from None
        if value != value.quantize(CENT):
            raise ValueError(
                f"{what}: {text!r} has more than 2 decimals (CNY is kept to the fen)"
            ) from None
        if value >= Decimal("1e12"):
            raise ValueError(
                f"{what}: {text!r} is too large (at most 999,999,999,999.99 CNY)"
            ) from None
        raise ValueError(f"{what}: {text!r} has a leading zero (e.g. 100 or 12.50)") from None
    return amount.quantize(CENT)
