"""What the report reads from a run: metrics, the main run, time labels and the window shown,
hub groups and cards per center."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta, timezone

import numpy as np
from numpy.typing import NDArray

from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.sim.metrics import PolicyReport
from suanwang.sim.report.style import HUB_PALETTE, MAIN_POLICY, NON_HUB_COLOR

Array = NDArray[np.float64]

CHINA_TZ = timezone(timedelta(hours=8), "UTC+8")
SIGNAL_DAYS = 7
TAIL_HOURS = 48


def metric(report: PolicyReport, key: str) -> float:
    value = report.metrics.get(key)
    return float("nan") if value is None else float(value)


def main_report(reports: Sequence[PolicyReport]) -> PolicyReport | None:
    for r in reports:
        if r.name == MAIN_POLICY:
            return r
    return reports[0] if reports else None


def time_labels(signals: Signals, hours: int) -> list[str]:
    start = signals.start.astimezone(CHINA_TZ)
    step = timedelta(seconds=signals.step_s)
    return [(start + i * step).strftime("%Y-%m-%d %H:%M") for i in range(hours)]


def window_hours(signals: Signals, reports: Sequence[PolicyReport], arrival_days: float) -> int:
    """First ceil(arrival hours) + 48 hours, cut where network energy stops in every run."""
    per_hour = signals.step_s / 3600.0
    cap = math.ceil(arrival_days * 24 / per_hour) + math.ceil(TAIL_HOURS / per_hour)
    last = 0
    for r in reports:
        nz = np.flatnonzero(r.hourly_energy_kwh.sum(axis=0) > 0)
        if nz.size:
            last = max(last, int(nz[-1]) + 1)
    return max(1, min(signals.hours, cap, last if last else cap))


def hub_groups(net: Network) -> tuple[list[str], list[str], NDArray[np.int64]]:
    """Labels, colors and each center's group index (hubs in scenario order, then non-hub)."""
    hubs = {h.id: h for h in net.scenario.hubs}
    labels = []
    for hid in net.hub_ids:
        h = hubs.get(hid)
        labels.append(f"{h.name_zh} {h.name}" if h is not None else hid)
    labels.append("non-hub")
    colors = [HUB_PALETTE[i % len(HUB_PALETTE)] for i in range(len(net.hub_ids))]
    colors.append(NON_HUB_COLOR)
    group = np.where(net.center_hub >= 0, net.center_hub, len(net.hub_ids)).astype(np.int64)
    return labels, colors, group


def center_cards(net: Network) -> Array:
    acc = ~net.pool_is_cpu
    cards: Array = np.bincount(
        net.pool_center[acc],
        weights=net.pool_capacity[acc].astype(np.float64),
        minlength=net.n_centers,
    ).astype(np.float64)
    return cards
