"""The ``china`` scenario on measured grid signals of other regions, and sweeps over it.

    python benchmarks/grid_scenario.py --grid ../shared/data/grid --out /tmp/grid-china \
        --trace ../shared/data/traces/alibaba_gpu_v2023_openb_pod_list_default.csv
    .venv/bin/suanwang sweep /tmp/grid-china/measured.yaml --serial
    .venv/bin/suanwang sweep /tmp/grid-china/modelled.yaml --serial

Writes ``OUT/measured/`` (``suanwang scenario export china`` with every center's hourly price
and carbon replaced by a measured 2023 series of another region, below) and two sweep files
with the same grid, one on that directory and one on the built-in ``china`` (modelled
signals): a synthetic workload and, with ``--trace``, the Alibaba GPU 2023 pods; policies
``nearest`` and ``suanwang``; the non-preemptive bound (``bound: tight``); seeds 1-5.

Which series, and how (docs/benchmarks.md says the same):

* Each center takes the hourly series of one zone of ``--grid`` (Electricity Maps carbon,
  ``Carbon Intensity gCO2eq/kWh (direct)``; wholesale price in USD/MWh) by its hub: wind-rich
  north (``neimenggu``, ``jingjinji``) DE-LU; solar northwest (``gansu``, ``ningxia``)
  US-CAL-CISO; the east and centers without a hub JP-TK; the south (``yuegangao``,
  ``chengyu``, ``guizhou``) SG.
* Aligned by the local clock: the center's hour at local time T of 2025 takes the zone's value
  at the same local time (its own time zone) on the same date of 2023, so a midday solar valley
  stays at midday.
* Shape measured, level the center's: the price is the center's mean modelled price over the
  horizon times the zone's price over its mean on the same hours (negative wholesale hours
  stay negative); carbon the same way. So West stays cheaper than East, as the modelled
  tariffs have it, while the hour-to-hour swings, weekends and weather are real ones.
* ``--price-floor X``: no hour below X CNY/kWh (``OUT/measured-floorX/``). DE-LU's July 2023
  has 57 hours below zero (to -484 USD/MWh); a consumer's tariff in China never pays for
  consumption, and on those hours the bound earns money by running the least efficient chips.
* The green share stays the modelled one (weather seed ``--seed``): it is the center's own
  PPA and plants, not the grid's.
"""

from __future__ import annotations

import argparse
import csv
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from suanwang.core import csvcells
from suanwang.scenarios.export import export_builtin
from suanwang.scenarios.loader import SIGNAL_HEADER, load_scenario
from suanwang.scenarios.signals import build_signals

#: Zone -> its time zone.
ZONES = {
    "DE-LU": "Europe/Berlin",
    "US-CAL-CISO": "America/Los_Angeles",
    "JP-TK": "Asia/Tokyo",
    "SG": "Asia/Singapore",
}
#: Hub -> zone (centers without a hub: JP-TK).
BY_HUB = {
    "neimenggu": "DE-LU",
    "jingjinji": "DE-LU",
    "gansu": "US-CAL-CISO",
    "ningxia": "US-CAL-CISO",
    "changsanjiao": "JP-TK",
    "yuegangao": "SG",
    "chengyu": "SG",
    "guizhou": "SG",
}
SERIES_YEAR = 2023


def read_series(path: Path, column: str) -> dict[datetime, float]:
    """UTC hour -> value of ``column`` (the first column holds the UTC time)."""
    out: dict[datetime, float] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh)
        header = next(rows)
        at = header.index(column)
        for row in rows:
            if not row or not row[at].strip():
                continue
            stamp = row[0].strip()[:19]
            t = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            out[t] = float(row[at])
    return out


def aligned(series: dict[datetime, float], zone_tz: str, local: list[datetime]) -> np.ndarray:
    """The zone's values at the same local wall-clock time in :data:`SERIES_YEAR` as each of
    ``local`` (aware datetimes of the scenario's zone); a missing hour (a DST gap, a hole in
    the file) takes the last value before it."""
    tz = ZoneInfo(zone_tz)
    out = np.empty(len(local))
    last = math.nan
    for i, t in enumerate(local):
        wall = t.replace(year=SERIES_YEAR, tzinfo=None)
        key = wall.replace(tzinfo=tz).astimezone(UTC)
        last = series.get(key, last)
        if math.isnan(last):
            raise SystemExit(f"{zone_tz}: no value at or before {key:%Y-%m-%d %H:%M} UTC")
        out[i] = last
    return out


def write_measured(
    grid: Path, out: Path, start: datetime, hours: int, seed: int, floor: float | None
) -> None:
    scenario = load_scenario("china")
    export_builtin("china", out, start, hours, seed)
    signals = build_signals(scenario, start, hours, seed)
    tz = ZoneInfo(scenario.timezone)
    local = [(signals.start + timedelta(hours=h)).astimezone(tz) for h in range(hours)]
    column = "Carbon Intensity gCO₂eq/kWh (direct)"
    price: dict[str, np.ndarray] = {}
    carbon: dict[str, np.ndarray] = {}
    for z, tz_name in ZONES.items():
        prices = read_series(grid / f"price_{z}_{SERIES_YEAR}_hourly.csv", "Price (USD/MWh)")
        price[z] = aligned(prices, tz_name, local)
        carbons = read_series(grid / f"carbon_{z}_{SERIES_YEAR}_hourly.csv", column)
        carbon[z] = aligned(carbons, tz_name, local)
    for ci, center in enumerate(scenario.centers):
        zone = BY_HUB.get(center.hub or "", "JP-TK")
        p = signals.price_cny_per_kwh[ci].mean() * price[zone] / price[zone].mean()
        if floor is not None:
            p = np.maximum(p, floor)
        c = signals.carbon_g_per_kwh[ci].mean() * carbon[zone] / carbon[zone].mean()
        with (out / "signals" / f"{center.id}.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csvcells.writer(fh)
            w.writerow(SIGNAL_HEADER)
            for h in range(hours):
                t = signals.start + timedelta(hours=h)
                green = signals.green_fraction[ci, h]
                stamp = t.isoformat().replace("+00:00", "Z")
                w.writerow([stamp, f"{p[h]:.5f}", f"{max(c[h], 0.0):.2f}", f"{green:.5f}"])
        print(f"{center.id}: {zone}, price mean {p.mean():.3f} CNY/kWh "
              f"[{p.min():.3f}, {p.max():.3f}]")  # fmt: skip


SWEEP = """\
# written by benchmarks/grid_scenario.py
scenario: {scenario}
start: {start}
drain_days: {drain}
bound: tight
bound_time_limit_s: 1800
workloads:
  synthetic: {{jobs: {jobs}, days: {days}, load: {load}}}
{trace}policies: [nearest, suanwang]
seeds: [1, 2, 3, 4, 5]
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=Path, required=True, help="shared/data/grid")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--trace", type=Path, help="the Alibaba GPU 2023 pod list (a workload)")
    ap.add_argument("--trace-jobs", type=int, help="its first N pods")
    ap.add_argument("--start", default="2025-07-01")
    ap.add_argument("--days", type=float, default=7.0, help="synthetic: days of arrivals")
    ap.add_argument("--jobs", type=int, default=20000, help="synthetic: jobs")
    ap.add_argument("--load", type=float, default=0.6)
    ap.add_argument("--drain-days", type=float, default=14.0)
    ap.add_argument("--signal-days", type=float, default=180.0, help="measured days written")
    ap.add_argument("--seed", type=int, default=0, help="weather of the green share")
    ap.add_argument("--price-floor", type=float, help="no price below this (CNY/kWh)")
    a = ap.parse_args()
    tz = ZoneInfo(load_scenario("china").timezone)
    start = datetime.fromisoformat(a.start).replace(tzinfo=tz)
    measured = "measured" if a.price_floor is None else f"measured-floor{a.price_floor:g}"
    hours = int(a.signal_days * 24)
    write_measured(a.grid, a.out / measured, start, hours, a.seed, a.price_floor)
    trace = ""
    if a.trace is not None:
        first = f", jobs: {a.trace_jobs}" if a.trace_jobs else ""
        trace = f"  alibaba: {{trace: {a.trace.resolve()}, format: alibaba-gpu-2023{first}}}\n"
    for name, scenario in ((measured, measured), ("modelled", "china")):
        text = SWEEP.format(scenario=scenario, start=a.start, drain=a.drain_days, jobs=a.jobs,
                            days=a.days, load=a.load, trace=trace)  # fmt: skip
        (a.out / f"{name}.yaml").write_text(text, encoding="utf-8")
        print(f"wrote {a.out / f'{name}.yaml'}")


if __name__ == "__main__":
    main()
