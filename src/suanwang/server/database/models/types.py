"""Column types: UTC-aware timestamps, and exact decimals (money, quantities, unit prices).

Timestamps are UTC-aware in Python everywhere; SQLite (which has no time zone type) stores them
as naive UTC and :class:`UTCDateTime` attaches UTC again on the way out. Decimals are
``NUMERIC`` (on SQLite integers of their smallest unit, so SQL sums stay exact).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Numeric
from sqlalchemy.types import TypeDecorator, TypeEngine


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that must be aware on the way in and is UTC-aware on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the database stores UTC-aware times")
        value = value.astimezone(UTC)
        # SQLite keeps the text form; drop the offset so that stored values compare as text
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """The conversion of a value to what the driver takes, remembering the last value
        converted: a statement run for thousands of rows (a dispatcher round's) binds the
        same instant in most of them."""
        process = super().bind_processor(dialect)
        if process is None:
            return None
        last: tuple[Any, Any] = (None, None)

        def remembered(value: Any) -> Any:
            nonlocal last
            seen = last  # (one read: another thread may set it meanwhile)
            if value is not None and seen[0] is value:
                return seen[1]
            out = process(value)
            last = (value, out)  # one assignment; the value kept alive keeps its id its own
            return out

        return remembered

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class _Scaled(TypeDecorator[Decimal]):
    """A ``Decimal`` stored as ``NUMERIC(p, s)``; on SQLite (which has no exact decimal type)
    as an integer count of ``10**-s`` units, so that SQL sums stay exact there too."""

    impl = Numeric
    cache_ok = True
    precision = 18
    scale = 2

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError(f"float {value!r} for a money/quantity column: use Decimal")
        d = Decimal(value).quantize(Decimal(1).scaleb(-self.scale))
        if dialect.name == "sqlite":
            return int(d.scaleb(self.scale))
        return d

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-self.scale)
        return Decimal(value).quantize(Decimal(1).scaleb(-self.scale))


class Money(_Scaled):
    """CNY to the fen: ``NUMERIC(18, 2)``."""

    cache_ok = True
    precision = 18
    scale = 2


class Quantity(_Scaled):
    """SCU, kWh, kg, GB, seconds to 6 decimals: ``NUMERIC(20, 6)``."""

    cache_ok = True
    precision = 20
    scale = 6


class UnitPrice(_Scaled):
    """CNY per SCU to 1/100 fen: ``NUMERIC(18, 4)`` (on SQLite an integer of 0.0001 CNY)."""

    cache_ok = True
    precision = 18
    scale = 4
