"""ISO 8601 instants as the API publishes them: JSON Schema patterns that match exactly the
texts the server accepts (pure).

A pattern in the OpenAPI document is only useful if a client (or a fuzzer) can trust it both
ways: every text it matches is accepted, every other text refused. So these patterns spell out
the calendar (the days of each month, 29 February in leap years only) and the offsets the
server can convert without leaving the range it allows, and the server checks the text against
the same pattern before parsing it (:func:`matches`). They use only what JSON Schema (ECMA
262), Python's ``re`` and Rust's ``regex`` read alike: ASCII classes, no lookaround, no ``\\d``.
"""

from __future__ import annotations

import re

_DAY31 = "(0[1-9]|[12][0-9]|3[01])"
_DAY30 = "(0[1-9]|[12][0-9]|30)"
_HOUR = "([01][0-9]|2[0-3])"
_MINUTE = "[0-5][0-9]"


def _dates(years: str, leap_years: str | None) -> str:
    """Valid calendar dates ``YYYY-MM-DD`` of ``years`` (a regex of 4-digit years), 29 February
    only in ``leap_years`` (a regex of the leap ones among them)."""
    alternatives = [
        f"{years}-(0[13578]|1[02])-{_DAY31}",
        f"{years}-(0[469]|11)-{_DAY30}",
        f"{years}-02-(0[1-9]|1[0-9]|2[0-8])",
    ]
    if leap_years is not None:
        alternatives.append(f"{leap_years}-02-29")
    return "(" + "|".join(alternatives) + ")"


#: Years 2000 to 2099; every fourth is a leap year (2000 is one).
_CENTURY = _dates("20[0-9]{2}", "20(0[048]|[2468][048]|[13579][26])")

#: An instant on a whole hour in the years 2000 to 2099, with its UTC offset in whole hours:
#: ``2026-11-23T08:00+08:00``, ``2026-11-23T00Z``, ``2026-11-23T08:00:00+08`` (minutes and
#: seconds, if given, are zero; the offset is ``Z`` or ``+HH``/``-HH`` with ``:00`` or not).
#: Its UTC instant is then on a whole hour too (what offers and reservations need).
WHOLE_HOUR = f"^{_CENTURY}T{_HOUR}(:00(:00)?)?(Z|[+-]{_HOUR}(:00)?)$"

_TIME = f"T{_HOUR}:{_MINUTE}(:{_MINUTE}(\\.[0-9]{{1,6}})?)?"
_ANY_OFFSET = f"[+-]{_HOUR}:{_MINUTE}"
_ZERO_OFFSET = "Z|[+-]00:00"

#: An instant in the years 2000 to 2100 *in UTC*: ``2025-07-01T00:00Z``,
#: ``2025-07-01T08:30:00+08:00``, or without an offset (read as UTC). Years 2001 to 2099 take
#: any offset; in 2000 it may not be east of UTC (a positive offset could put the instant in
#: 1999), in 2100 not west of it (it could fall in 2101).
WHATIF_START = (
    "^("
    + f"{_dates('20(0[1-9]|[1-9][0-9])', '20(0[48]|[2468][048]|[13579][26])')}{_TIME}"
    + f"({_ZERO_OFFSET}|{_ANY_OFFSET})?"
    + f"|{_dates('2000', '2000')}{_TIME}({_ZERO_OFFSET}|-{_HOUR}:{_MINUTE})?"
    + f"|{_dates('2100', None)}{_TIME}({_ZERO_OFFSET}|\\+{_HOUR}:{_MINUTE})?"
    + ")$"
)


def matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches the anchored ``pattern`` as JSON Schema means it (the whole
    text: no trailing newline slips past ``$``)."""
    return re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value) is not None
