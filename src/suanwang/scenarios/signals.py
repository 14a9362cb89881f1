"""Physical signal model: prices, green fraction and carbon for every center, hour by hour.

For each center and hour (local time from the scenario's timezone):

* grid price = provincial flat tariff x time-of-use ratio of the local hour;
* solar output = ``solar_mw`` x pvlib PVWatts DC model on Ineichen clear-sky GHI at the site x a
  daily clearness index (seeded AR(1) around ``mean_clearness``);
* wind output = ``wind_mw`` x normalised windpowerlib power curve (Enercon E-126/4200 from the
  oedb library bundled with windpowerlib) on seeded, autocorrelated Weibull wind speeds;
* facility load = design utilisation x IT power of the inventory x PUE;
* supply order: green PPA / direct-connect share, then on-site renewables, then storage (charged
  from on-site surplus, round-trip efficiency), then grid;
* ``green_fraction`` = green supply / load; ``price`` = supply-weighted price of the kWh;
* ``carbon`` = the provincial grid emission factor (2022, MEE) for the grid share.

Forecasts use the same model with expected weather (mean clearness, expected wind capacity
factor under the Weibull distribution), so a policy plans on the forecast and is billed on the
realised series. Everything is a function of (scenario, start, hours, seed).
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from suanwang.core.scenario import Center, MeasuredSeries, Scenario, SignalModelParams
from suanwang.core.signals import Signals

Array = NDArray[np.float64]

REFERENCE_TURBINE = "E-126/4200"
REFERENCE_HUB_HEIGHT_M = 135


@lru_cache(maxsize=1)
def _turbine_curve() -> tuple[Array, Array]:
    from windpowerlib import WindTurbine

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        turbine = WindTurbine(turbine_type=REFERENCE_TURBINE, hub_height=REFERENCE_HUB_HEIGHT_M)
    curve = turbine.power_curve
    ws = np.asarray(curve["wind_speed"], dtype=np.float64)
    pw = np.asarray(curve["value"], dtype=np.float64) / float(turbine.nominal_power)
    return ws, pw


def wind_capacity_factor(speed_ms: Array) -> Array:
    """Normalised output of the reference turbine (windpowerlib power curve, no extrapolation)."""
    from windpowerlib import power_output

    ws, pw = _turbine_curve()
    out = power_output.power_curve(pd.Series(speed_ms), ws, pw, density_correction=False)
    return np.clip(np.asarray(out, dtype=np.float64), 0.0, 1.0)


def expected_wind_capacity_factor(k: float, scale: float) -> float:
    """E[capacity factor] under Weibull(k, scale) wind speed (numerical quadrature)."""
    v = np.linspace(0.0, 40.0, 801)
    pdf = (k / scale) * (v / scale) ** (k - 1) * np.exp(-((v / scale) ** k))
    cf = wind_capacity_factor(v)
    return float(np.trapezoid(pdf * cf, v))


def solar_ghi(lat: float, lon: float, times_utc: pd.DatetimeIndex) -> Array:
    """Clear-sky GHI (W/m2): pvlib's Ineichen model with its Linke turbidity climatology."""
    import pvlib

    loc = pvlib.location.Location(lat, lon, tz="UTC")
    with warnings.catch_warnings():
        # pvlib still calls DatetimeIndex.dayofyear, deprecated in pandas 3; harmless here
        warnings.filterwarnings("ignore", message=".*dayofyear is deprecated.*")
        cs = loc.get_clearsky(times_utc, model="ineichen")
    return np.asarray(cs["ghi"], dtype=np.float64)


def solar_capacity_factor(ghi: Array) -> Array:
    """PVWatts DC output per kW of modules for a given plane irradiance (cell temp. NOCT-like)."""
    import pvlib

    temp_cell = 25.0 + 0.03 * ghi
    dc = pvlib.pvsystem.pvwatts_dc(ghi, temp_cell, pdc0=1.0, gamma_pdc=-0.004)
    return np.clip(np.asarray(dc, dtype=np.float64), 0.0, None)


def _ar1_normal(rng: np.random.Generator, n: int, rho: float) -> Array:
    z = np.empty(n)
    z[0] = rng.standard_normal()
    eps = rng.standard_normal(n) * np.sqrt(1.0 - rho * rho)
    for i in range(1, n):
        z[i] = rho * z[i - 1] + eps[i]
    return z


def _design_load_mw(scenario: Scenario, center: Center, params: SignalModelParams) -> float:
    it_kw = sum(scenario.catalog.get(m).unit_power_w() / 1000.0 * n for m, n in center.inventory)
    cpu = [a for a in scenario.catalog.accelerators if a.is_cpu]
    if cpu and center.cpu_cores:
        it_kw += cpu[0].unit_power_w() / 1000.0 * center.cpu_cores
    return max(it_kw * params.design_utilization * center.pue / 1000.0, 1e-6)


def _supply(
    load_mw: float,
    center: Center,
    onsite_mw: Array,
    tou_price: Array,
    params: SignalModelParams,
) -> tuple[Array, Array]:
    """Dispatch PPA, on-site renewables, storage and grid; returns (price, green_fraction)."""
    pw = center.power
    ppa = pw.green_ppa_share * load_mw
    rest = load_mw - ppa
    n = len(onsite_mw)
    onsite_used = np.minimum(onsite_mw, rest)
    surplus = onsite_mw - onsite_used
    deficit = rest - onsite_used
    discharge = np.zeros(n)
    if pw.storage_mwh > 0:
        soc = 0.0
        eff = np.sqrt(params.storage_round_trip)
        power_limit = pw.storage_mwh / 4.0  # 4-hour storage (facts: storage supports ~4 h)
        for i in range(n):
            if surplus[i] > 0:
                soc = min(pw.storage_mwh, soc + min(surplus[i], power_limit) * eff)
            elif deficit[i] > 0 and soc > 0:
                out = min(deficit[i], power_limit, soc * eff)
                discharge[i] = out
                soc -= out / eff
    grid = rest - onsite_used - discharge
    green = (ppa + onsite_used + discharge) / load_mw
    price = (
        ppa * pw.green_price_cny_per_kwh
        + (onsite_used + discharge) * params.onsite_lcoe_cny_per_kwh
        + grid * tou_price
    ) / load_mw
    return price, np.clip(green, 0.0, 1.0)


def build_signals(scenario: Scenario, start: datetime, hours: int, seed: int = 0) -> Signals:
    """Model every center's signals for ``hours`` hours from ``start`` (seeded)."""
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start = start.astimezone(UTC)
    params = scenario.signal_model
    tz = ZoneInfo(scenario.timezone)
    times = pd.date_range(start, periods=hours, freq="h", tz="UTC")
    local_hours = np.array([t.astimezone(tz).hour for t in times.to_pydatetime()], dtype=int)
    days = (hours + 23) // 24 + 1
    exp_wind_cf = expected_wind_capacity_factor(params.wind_weibull_k, params.wind_weibull_scale_ms)

    n = len(scenario.centers)
    price = np.empty((n, hours))
    green = np.empty((n, hours))
    fc_price = np.empty((n, hours))
    fc_green = np.empty((n, hours))
    carbon = np.empty((n, hours))
    for ci, center in enumerate(scenario.centers):
        rng = np.random.default_rng([seed, ci])
        prov = scenario.province(center.province)
        ratios = np.array(prov.tariff.hourly_ratios())
        tou = prov.tariff.flat_cny_per_kwh * ratios[local_hours]
        carbon[ci] = prov.emission_factor_t_per_mwh * 1000.0
        load = _design_load_mw(scenario, center, params)

        solar_cs = np.zeros(hours)
        if center.power.solar_mw > 0:
            solar_cs = solar_capacity_factor(solar_ghi(center.lat, center.lon, times))
        z = _ar1_normal(rng, days, params.cloud_persistence)
        clear_daily = np.clip(params.mean_clearness + 0.2 * z, 0.05, 1.0)
        clear_hourly = np.clip(
            np.repeat(clear_daily, 24)[:hours] + 0.05 * rng.standard_normal(hours), 0.0, 1.0
        )
        zw = _ar1_normal(rng, hours, params.wind_persistence)
        from scipy.special import ndtr

        u = np.clip(ndtr(zw), 1e-9, 1 - 1e-9)
        speed = params.wind_weibull_scale_ms * (-np.log1p(-u)) ** (1.0 / params.wind_weibull_k)
        wind_cf = wind_capacity_factor(speed)

        onsite = center.power.solar_mw * solar_cs * clear_hourly + center.power.wind_mw * wind_cf
        fc_onsite = (
            center.power.solar_mw * solar_cs * params.mean_clearness
            + center.power.wind_mw * exp_wind_cf
        )
        price[ci], green[ci] = _supply(load, center, onsite, tou, params)
        fc_price[ci], fc_green[ci] = _supply(load, center, fc_onsite, tou, params)

        measured = scenario.measured.get(center.id)
        if measured is not None:
            _apply_measured(measured, start, hours, price[ci], carbon[ci], green[ci])
            _apply_measured(measured, start, hours, fc_price[ci], carbon[ci], fc_green[ci])

    return Signals(
        start=start,
        price_cny_per_kwh=price,
        carbon_g_per_kwh=carbon,
        green_fraction=green,
        forecast_price_cny_per_kwh=fc_price,
        forecast_green_fraction=fc_green,
    )


def _apply_measured(
    m: MeasuredSeries, start: datetime, hours: int, price: Array, carbon: Array, green: Array
) -> None:
    for t, p, c, g in zip(
        m.times, m.price_cny_per_kwh, m.carbon_g_per_kwh, m.green_fraction, strict=True
    ):
        h = int((t - start) // timedelta(hours=1))
        if 0 <= h < hours:
            price[h], carbon[h], green[h] = p, c, g
