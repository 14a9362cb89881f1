"""Per-center time series: electricity price, green-power fraction, grid carbon intensity.

All series are hourly, indexed from ``start`` (UTC). ``price_cny_per_kwh`` is the blended price
a center pays for one kWh of facility energy at that hour (green contracts, on-site renewables
and grid time-of-use tariff); ``green_fraction`` is the share of that kWh that is green;
``carbon_g_per_kwh`` is the intensity of the grid share. Forecast series are what a policy may
know in advance; realised series are what the simulator bills.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _cumulative(values: Array) -> Array:
    out = np.zeros((values.shape[0], values.shape[1] + 1), dtype=np.float64)
    np.cumsum(values, axis=1, out=out[:, 1:])
    return out


@dataclass(frozen=True)
class Signals:
    start: datetime
    price_cny_per_kwh: Array  # (centers, hours)
    carbon_g_per_kwh: Array
    green_fraction: Array
    forecast_price_cny_per_kwh: Array
    forecast_green_fraction: Array
    step_s: int = 3600
    _cum: dict[str, Array] = field(default_factory=dict, repr=False, compare=False)
    _val: dict[str, Array] = field(default_factory=dict, repr=False, compare=False)
    _stacked: dict[tuple[str, ...], tuple[Array, Array]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        shape = self.price_cny_per_kwh.shape
        for name in (
            "carbon_g_per_kwh",
            "green_fraction",
            "forecast_price_cny_per_kwh",
            "forecast_green_fraction",
        ):
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"signal {name} has shape {getattr(self, name).shape}, not {shape}"
                )
        if self.start.tzinfo is None:
            raise ValueError("signals start must be timezone-aware")
        grid_carbon = (1.0 - self.green_fraction) * self.carbon_g_per_kwh
        fc_carbon = (1.0 - self.forecast_green_fraction) * self.carbon_g_per_kwh
        series = {
            "price": self.price_cny_per_kwh,
            "green": self.green_fraction,
            "carbon": grid_carbon,
            "forecast_price": self.forecast_price_cny_per_kwh,
            "forecast_carbon": fc_carbon,
            "forecast_green": self.forecast_green_fraction,
        }
        for name, values in series.items():
            self._val[name] = values
            self._cum[name] = _cumulative(values)

    @property
    def n_centers(self) -> int:
        return int(self.price_cny_per_kwh.shape[0])

    @property
    def hours(self) -> int:
        return int(self.price_cny_per_kwh.shape[1])

    @property
    def horizon_s(self) -> float:
        return float(self.hours * self.step_s)

    def hour_index(self, t_s: float) -> int:
        return min(max(int(t_s // self.step_s), 0), self.hours - 1)

    def cumulative(self, which: str, centers: IntArray, t_s: Array | float) -> Array:
        """Integral of a series from 0 to ``t_s`` (in hour-units of the series), per center.

        ``which`` is ``price``, ``green``, ``carbon`` (grid share x intensity), or the forecast
        versions ``forecast_price`` / ``forecast_green`` / ``forecast_carbon``. Past the horizon
        the last hour's value continues.
        """
        cum = self._cum[which]
        x = np.asarray(t_s, dtype=np.float64) / self.step_s
        h = np.minimum(np.maximum(np.floor(x).astype(np.int64), 0), self.hours)  # (np.clip: slower)
        # past the horizon the last hour's value continues: cum[H] + (x - H) * v[H-1]
        base = cum[centers, h]
        vals = self._val[which][centers, np.minimum(h, self.hours - 1)]
        out: Array = base + (x - h) * vals
        return out

    def stacked(self, which: tuple[str, ...]) -> tuple[Array, Array]:
        """The cumulative rows (series, centers, hours + 1) and the hourly values (series,
        centers, hours) of each series of ``which``, stacked in that order (kept)."""
        stacked = self._stacked.get(which)
        if stacked is None:
            stacked = (
                np.stack([self._cum[w] for w in which]),
                np.stack([self._val[w] for w in which]),
            )
            self._stacked[which] = stacked
        return stacked

    def mean_over(self, which: str, centers: IntArray, t0_s: Array | float, t1_s: Array) -> Array:
        """Hour-weighted mean of a series over [t0, t1) per center (t1 > t0)."""
        span_h = (np.asarray(t1_s) - np.asarray(t0_s)) / self.step_s
        diff = self.cumulative(which, centers, t1_s) - self.cumulative(which, centers, t0_s)
        out: Array = diff / np.maximum(span_h, 1e-12)
        return out
