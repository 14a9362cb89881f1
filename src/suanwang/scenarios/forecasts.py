"""Forecast errors: what a policy plans on when the day-ahead forecast can be wrong.

:func:`suanwang.scenarios.signals.build_signals` gives each center a realised series (what
the simulator bills) and a forecast series (what a policy plans on) that differ only through
expected weather for on-site renewables; for measured series the forecast *is* what happens.
:func:`with_forecast_errors` adds a seeded, documented error to the forecast series; the
realised series are never touched (docs/model.md, "Forecast errors").

Issues. A forecast is issued once a day at local midnight (the scenario's timezone) for the
next :data:`ISSUE_HORIZON_H` hours. The error of the forecast for an hour ``lead_h`` hours
after its issue has standard deviation

    sigma(lead_h) = min(sigma_24 * sqrt(lead_h / 24), sigma_cap)

(a random walk in the forecast's information, as day-ahead price and renewable forecast
errors grow with lead time, up to a cap where the forecast is no better than climatology).
Along the lead time of one issue the errors are AR(1) with correlation ``rho`` per hour
(a mispredicted evening is mispredicted as a whole); issues, centers and the two series are
independent. With ``z`` such a unit-variance AR(1) path:

    price'  = price * exp(sigma_p(lead) * z_p - sigma_p(lead)^2 / 2)   (mean-preserving, > 0)
    green'  = expit(logit(green) + sigma_g(lead) * z_g)                 (in [0, 1])

and the forecast grid carbon is ``(1 - green') x intensity``, as for the error-free forecast.
The green share's error is on the logit scale, so a share fixed by contract at 0 or 1 stays
exact; at a share of 0.5, a logit sigma of 0.4 is about 0.10 of share.

The approximation. A :class:`~suanwang.core.signals.Signals` holds one forecast per hour,
not one per issue. The hour ``h`` of local day ``D`` carries the forecast of the issue at the
local midnight starting day ``D - 1`` (the day-ahead issue), so leads run from 24 to 47 h.
A decision on day ``D`` about the same day would in reality see the fresher issue of day
``D`` (leads 0 to 23 h); a decision on day ``D - 1`` about day ``D`` sees exactly this one.
The approximation errs on the side of larger errors. The current hour's realised signal that
the ``cheapest`` and ``greenest`` policies read is a meter reading, not a forecast, and stays.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from suanwang.core.signals import Signals

Array = NDArray[np.float64]

#: Hours each daily issue covers.
ISSUE_HORIZON_H = 48
#: The lead time (hours) at which a level's ``sigma_24`` holds: the day-ahead forecast.
REFERENCE_LEAD_H = 24
#: Separates the forecast-error draws from the weather's (same run seed, another stream).
_STREAM = 17
#: Green shares are kept this far inside (0, 1) on the logit scale (exact 0 and 1 stay).
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class ForecastErrorLevel:
    """How wrong forecasts are: standard deviations at the day-ahead lead and their caps."""

    name: str
    price_sigma_24: float  # sd of log(forecast / realised price) at 24 h lead
    price_sigma_cap: float
    green_sigma_24: float  # sd of the green share's error on the logit scale at 24 h lead
    green_sigma_cap: float
    rho: float = 0.9  # hourly correlation of one issue's errors along the lead time

    def __post_init__(self) -> None:
        for f in ("price_sigma_24", "price_sigma_cap", "green_sigma_24", "green_sigma_cap"):
            v = getattr(self, f)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"forecast error level {self.name!r}: {f} must be >= 0, not {v}")
        if not 0 <= self.rho < 1:
            raise ValueError(f"forecast error level {self.name!r}: rho must be in [0, 1)")

    @property
    def is_none(self) -> bool:
        return self.price_sigma_24 == 0 and self.green_sigma_24 == 0


def sigma_at(lead_h: Array | float, sigma_24: float, sigma_cap: float) -> Array:
    """``min(sigma_24 * sqrt(lead_h / 24), sigma_cap)``: the error's sd at a lead time."""
    lead = np.maximum(np.asarray(lead_h, dtype=np.float64), 0.0)
    out: Array = np.minimum(sigma_24 * np.sqrt(lead / REFERENCE_LEAD_H), sigma_cap)
    return out


# "realistic": day-ahead electricity price forecasts reach a MAPE of roughly 5-15% on liquid
# markets and 10-20% on volatile ones (Weron 2014, Int. J. Forecasting 30(4); Lago et al.
# 2021, Applied Energy 293, the EPF benchmark: ~12-14% sMAPE on EPEX/Nord Pool day-ahead).
# A log-normal error of sd 0.15 has a MAPE of ~12% (E|e^X - 1| ~ 0.8 sigma). Day-ahead wind
# and solar forecasts miss by ~5-10% of capacity (NMAE; Hong et al. 2016, GEFCom2014, and
# Hodge et al. 2012, NREL/CP-5500-56130); as a share of a center's load, ~0.1 of share at a
# share of 0.5, a logit sd of 0.4. Caps at the end of the 48 h issue (sqrt(2) x sigma_24).
LEVELS: dict[str, ForecastErrorLevel] = {
    "none": ForecastErrorLevel("none", 0.0, 0.0, 0.0, 0.0),
    "low": ForecastErrorLevel("low", 0.07, 0.10, 0.2, 0.28),
    "realistic": ForecastErrorLevel("realistic", 0.15, 0.21, 0.4, 0.57),
    "high": ForecastErrorLevel("high", 0.30, 0.42, 0.8, 1.13),
}


def forecast_error_level(name: str) -> ForecastErrorLevel:
    """The preset called ``name``; ValueError naming the presets otherwise."""
    try:
        return LEVELS[name]
    except KeyError:
        raise ValueError(
            f"unknown forecast error level {name!r} (choose from {', '.join(LEVELS)})"
        ) from None


def day_ahead_leads(start: datetime, hours: int, timezone: str) -> Array:
    """Lead time (hours) of each hour's forecast: hours since the local midnight that began the
    day before the hour's local day (24 to 47 h; 23 to 49 h across a daylight-saving change)."""
    tz = ZoneInfo(timezone)
    leads = np.empty(hours)
    for h in range(hours):
        local = (start + timedelta(hours=h)).astimezone(tz)
        issue = datetime.combine(local.date() - timedelta(days=1), datetime.min.time(), tz)
        leads[h] = (local - issue).total_seconds() / 3600.0
    return leads


def _issue_index(start: datetime, hours: int, timezone: str) -> NDArray[np.int64]:
    tz = ZoneInfo(timezone)
    first = start.astimezone(tz).date()
    return np.array(
        [((start + timedelta(hours=h)).astimezone(tz).date() - first).days for h in range(hours)],
        dtype=np.int64,
    )


def _ar1_paths(rng: np.random.Generator, n: int, length: int, rho: float) -> Array:
    """``n`` independent stationary AR(1) paths of unit variance, each ``length`` long."""
    z = np.empty((n, length))
    z[:, 0] = rng.standard_normal(n)
    eps = rng.standard_normal((n, length)) * math.sqrt(1.0 - rho * rho)
    for k in range(1, length):
        z[:, k] = rho * z[:, k - 1] + eps[:, k]
    return z


def with_forecast_errors(
    signals: Signals, level: ForecastErrorLevel, *, timezone: str, seed: int
) -> Signals:
    """``signals`` with the forecast series perturbed as the module docstring says (seeded);
    the realised series are the same arrays. Level ``none``: ``signals`` itself, unchanged."""
    if level.is_none:
        return signals
    hours = signals.hours
    leads = day_ahead_leads(signals.start, hours, timezone)
    issue = _issue_index(signals.start, hours, timezone)
    # the lead's position along its issue's path (hour 0 of the path is the issue's midnight)
    pos = np.clip(np.rint(leads).astype(np.int64), 0, ISSUE_HORIZON_H + 1)
    sd_p = sigma_at(leads, level.price_sigma_24, level.price_sigma_cap)
    sd_g = sigma_at(leads, level.green_sigma_24, level.green_sigma_cap)
    n_issues = int(issue.max()) + 1 if hours else 0
    price = np.empty_like(signals.forecast_price_cny_per_kwh)
    green = np.empty_like(signals.forecast_green_fraction)
    for ci in range(signals.n_centers):
        rng = np.random.default_rng([seed, _STREAM, ci])
        z_p = _ar1_paths(rng, n_issues, ISSUE_HORIZON_H + 2, level.rho)[issue, pos]
        z_g = _ar1_paths(rng, n_issues, ISSUE_HORIZON_H + 2, level.rho)[issue, pos]
        price[ci] = signals.forecast_price_cny_per_kwh[ci] * np.exp(sd_p * z_p - sd_p**2 / 2)
        g = np.clip(signals.forecast_green_fraction[ci], _EPS, 1.0 - _EPS)
        shifted = 1.0 / (1.0 + np.exp(-(np.log(g / (1.0 - g)) + sd_g * z_g)))
        exact = (signals.forecast_green_fraction[ci] <= 0) | (
            signals.forecast_green_fraction[ci] >= 1
        )
        green[ci] = np.where(exact, signals.forecast_green_fraction[ci], shifted)
    return dataclasses.replace(
        signals,
        forecast_price_cny_per_kwh=price,
        forecast_green_fraction=np.clip(green, 0.0, 1.0),
        _cum={},
        _val={},
    )
