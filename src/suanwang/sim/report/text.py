"""Number and text formatting of the report: significant figures, percentages, durations,
HTML escaping."""

from __future__ import annotations

import html
import math


def sig(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant figures (no digits dropped left of the point), with
    thousands separators and never an exponent."""
    if not math.isfinite(x):
        return "—"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    dec = max(0, digits - 1 - mag)
    return f"{x:,.{dec}f}"


def pct(share: float) -> str:
    return "—" if not math.isfinite(share) else f"{sig(100.0 * share)} %"


def integer(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{round(x):,}"


def duration(s: float) -> str:
    if not math.isfinite(s):
        return "—"
    if abs(s) < 120:
        return f"{sig(s)} s"
    if abs(s) < 7200:
        return f"{sig(s / 60)} min"
    return f"{sig(s / 3600)} h"


def signed_pct(change: float) -> str:
    if not math.isfinite(change):
        return "—"
    text = sig(100.0 * abs(change))
    if text == "0":
        return "±0 %"
    return f"{'+' if change > 0 else '−'}{text} %"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
