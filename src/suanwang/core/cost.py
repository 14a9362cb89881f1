"""The cost model every policy, the simulator and the bound share.

For job ``j`` on pool ``p`` (center ``c``) starting at ``s`` (after its data has arrived):

* runtime ``r = work_scu / (units x speed_p)`` hours;
* facility power ``P = units x unit_kW_p x PUE_c``;
* energy ``E = P x r`` kWh, costing ``P x integral of price_c over [s, s + r)``;
* green energy ``P x integral of green_c``; carbon ``P x integral of (1 - green_c) x carbon_c``;
* transfer ``data_gb x cost_per_gb(origin -> c)`` CNY, taking ``data_gb x 8 / bandwidth`` seconds
  before the job can start;
* latency and compatibility are hard constraints (see :meth:`Network.job_class`).

The *cost* reported for a policy is energy cost + transfer cost, in CNY.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from suanwang.core.signals import Signals

Array = NDArray[np.float64]
IntArray = NDArray[np.int64]


HOUR_S = 3600.0


def runtime_s(work_scu: float | Array, units: int | Array, speed: float | Array) -> Array:
    """Seconds a job of ``work_scu`` runs on ``units`` units of the given speed (SCU/unit-h)."""
    out: Array = np.asarray(work_scu) / (np.asarray(units) * np.asarray(speed)) * HOUR_S
    return out


def run_seconds(work_scu: float, units: int, speed: float) -> float:
    """:func:`runtime_s` for one run (a float; an hour where the chip cannot run the work)."""
    return work_scu / (units * speed) * HOUR_S if speed > 0 and units > 0 else HOUR_S


def hour_span(t0: datetime, start: datetime, end: datetime, hours: int) -> tuple[int, int]:
    """The hour columns ``[h0, h1)`` (hour 0 at ``t0``, at most ``hours``) that an interval of
    wall time overlaps, e.g. an offer's or a reservation's window; ``h1 <= h0``: none."""
    h0 = max(0, math.floor((start - t0) / timedelta(hours=1)))
    return h0, min(hours, math.ceil((end - t0) / timedelta(hours=1)))


def hour_window(t0_s: float, t1_s: float) -> tuple[int, int]:
    """The calendar hours ``[h0, h1)`` a run over ``[t0, t1)`` seconds touches (at least one;
    hour 0 is the signals' start, earlier times count from it)."""
    h0 = max(int(t0_s // HOUR_S), 0)
    return h0, max(math.ceil(t1_s / HOUR_S), h0 + 1)


def drawn(
    signals: Signals,
    which: str,
    centers: IntArray,
    facility_kw: Array,
    t0_s: Array | float,
    t1_s: Array,
) -> Array:
    """``facility_kw`` x the integral of series ``which`` over [t0, t1), per center."""
    out: Array = facility_kw * (
        signals.cumulative(which, centers, t1_s) - signals.cumulative(which, centers, t0_s)
    )
    return out


def energy_cost_cny(
    signals: Signals,
    centers: IntArray,
    facility_kw: Array,
    t0_s: Array | float,
    t1_s: Array,
    *,
    forecast: bool = False,
) -> Array:
    """Electricity cost of drawing ``facility_kw`` at each center over [t0, t1)."""
    which = "forecast_price" if forecast else "price"
    return drawn(signals, which, centers, facility_kw, t0_s, t1_s)


def carbon_kg(
    signals: Signals,
    centers: IntArray,
    facility_kw: Array,
    t0_s: Array | float,
    t1_s: Array,
    *,
    forecast: bool = False,
) -> Array:
    """Grid carbon (kg) of drawing ``facility_kw`` over [t0, t1)."""
    which = "forecast_carbon" if forecast else "carbon"
    return drawn(signals, which, centers, facility_kw, t0_s, t1_s) / 1000.0


def green_kwh(
    signals: Signals, centers: IntArray, facility_kw: Array, t0_s: Array | float, t1_s: Array
) -> Array:
    """Green energy (kWh) of drawing ``facility_kw`` over [t0, t1)."""
    return drawn(signals, "green", centers, facility_kw, t0_s, t1_s)


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """The cost of running one job at one center from one start time (realised signals)."""

    center: str
    pool: int
    start_s: float
    runtime_s: float
    energy_kwh: float
    energy_cost_cny: float
    green_kwh: float
    carbon_kg: float
    transfer_cost_cny: float
    transfer_s: float
    latency_ms: float

    @property
    def cost_cny(self) -> float:
        return self.energy_cost_cny + self.transfer_cost_cny

    @property
    def green_share(self) -> float:
        return self.green_kwh / self.energy_kwh if self.energy_kwh > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ScuPrices:
    """Offer prices against posted prices, per pool and hour of the signals (trading).

    Hour ``h`` is ``signals.start + h`` hours; there are ``hours + 1`` columns, the last one
    (past the horizon) without offers. Precisions are indexed as ``network.PRECISIONS``.

    * ``posted[q, p, h]``: the posted price, CNY per SCU of precision ``q`` on pool ``p``
      (``nan`` where the chip cannot run that precision);
    * ``offer[q, p, h]``: the price of the cheapest offer in force (``nan`` where none is, or
      the offer excludes that precision); 0 on a tenant's own reservation (paid at booking);
    * ``offered_units[p, h]``: units sold at offer prices (0 without an offer).

    A policy adds ``work_scu x premium`` to the cost of starting a job on ``p`` in hour ``h``
    while the pool's planned load leaves room within the offered units. ``premium`` is the
    offer's price against the pool's *mean* posted price over the window (``reference``), not
    the posted price of that hour: a posted price follows the time-of-use tariff, and the
    energy term already prices the hours, so the hour's posted price would count that shape a
    second time (with the opposite sign: an offer would make expensive hours look cheap).
    Posted prices need no term of their own (the rest of a posted price is the same per SCU
    everywhere, up to PUE and margin).
    """

    posted: Array
    offer: Array
    offered_units: Array
    reference: Array = field(init=False, repr=False)
    premium: Array = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.posted.shape != self.offer.shape or self.posted.ndim != 3:
            raise ValueError(f"posted {self.posted.shape} and offer {self.offer.shape}")
        if self.offered_units.shape != self.posted.shape[1:]:
            raise ValueError(f"offered_units {self.offered_units.shape}: not (pools, hours + 1)")
        posted = self.posted[:, :, : max(self.hours, 1)]
        runs = np.isfinite(posted).any(axis=2)
        reference = np.zeros(posted.shape[:2])
        np.divide(
            np.nansum(posted, axis=2),
            np.isfinite(posted).sum(axis=2),
            out=reference,
            where=runs,
        )
        ok = np.isfinite(self.offer) & np.isfinite(self.posted)
        premium = np.where(ok, self.offer - reference[:, :, None], 0.0)
        object.__setattr__(self, "reference", reference)
        object.__setattr__(self, "premium", premium)

    @property
    def hours(self) -> int:
        """Hours covered (the last column, past them, has no offers)."""
        return int(self.posted.shape[2]) - 1

    @property
    def any_offer(self) -> bool:
        return bool((self.offered_units > 0).any())

    def offer_in_force(self, precision: int, pool: int, hour: int) -> bool:
        """Whether an offer (or the tenant's reservation) prices ``pool`` at ``hour``."""
        h = min(max(hour, 0), self.hours)
        return bool(np.isfinite(self.offer[precision, pool, h]))
