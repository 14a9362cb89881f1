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

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from suanwang.core.signals import Signals

Array = NDArray[np.float64]
IntArray = NDArray[np.int64]


def runtime_s(work_scu: float | Array, units: int | Array, speed: float | Array) -> Array:
    """Seconds a job of ``work_scu`` runs on ``units`` units of the given speed (SCU/unit-h)."""
    out: Array = np.asarray(work_scu) / (np.asarray(units) * np.asarray(speed)) * 3600.0
    return out


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
    * ``premium[q, p, h]``: what the cheapest active offer adds to it (negative: a discount;
      0 where no offer is in force or the offer excludes that precision);
    * ``offered_units[p, h]``: units sold at offer prices (0 without an offer).

    A policy adds ``work_scu x premium`` to the cost of starting a job on ``p`` in hour ``h``
    while the pool's planned load leaves room within the offered units; posted prices need no
    term of their own, since the energy term already follows them (the rest of a posted price
    is the same per SCU everywhere, up to PUE and margin).
    """

    posted: Array
    premium: Array
    offered_units: Array

    def __post_init__(self) -> None:
        if self.posted.shape != self.premium.shape or self.posted.ndim != 3:
            raise ValueError(f"posted {self.posted.shape} and premium {self.premium.shape}")
        if self.offered_units.shape != self.posted.shape[1:]:
            raise ValueError(f"offered_units {self.offered_units.shape}: not (pools, hours + 1)")

    @property
    def hours(self) -> int:
        """Hours covered (the last column, past them, has no offers)."""
        return int(self.posted.shape[2]) - 1

    @property
    def any_offer(self) -> bool:
        return bool((self.offered_units > 0).any())
