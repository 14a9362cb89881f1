"""The physical signal model: tariffs, solar, wind, supply dispatch, determinism."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.core.scenario import PowerSupply, Scenario
from suanwang.core.signals import Signals
from suanwang.scenarios.signals import (
    build_signals,
    expected_wind_capacity_factor,
    solar_capacity_factor,
    solar_ghi,
    wind_capacity_factor,
)

START = datetime(2025, 7, 1, tzinfo=UTC)
SHANGHAI_OFFSET_H = 8


def _grid_only(sc: Scenario, center_ids: list[str]) -> Scenario:
    """The scenario reduced to some centers, bought 100% from the grid (price == tariff)."""
    centers = tuple(dataclasses.replace(sc.center(cid), power=PowerSupply()) for cid in center_ids)
    return dataclasses.replace(sc, centers=centers, measured={})


# --------------------------------------------------------------------------- solar and wind


@pytest.mark.parametrize(
    ("lat", "lon"), [(37.5, 105.2), (31.23, 121.47), (40.8, 114.9), (23.13, 113.26)]
)
def test_no_solar_at_night(lat: float, lon: float) -> None:
    # local (UTC+8) 22:00 .. 03:00 on a summer night
    night = pd.date_range("2025-07-01T14:00Z", periods=6, freq="h", tz="UTC")
    ghi = solar_ghi(lat, lon, night)
    assert np.all(ghi == 0)
    assert np.all(solar_capacity_factor(ghi) == 0)
    noon = pd.date_range("2025-07-01T04:00Z", periods=1, freq="h", tz="UTC")
    assert solar_capacity_factor(solar_ghi(lat, lon, noon))[0] > 0.5


@given(st.lists(st.floats(0.0, 1200.0), min_size=1, max_size=20))
def test_solar_capacity_factor_bounds(ghi: list[float]) -> None:
    cf = solar_capacity_factor(np.array(ghi))
    assert np.all(cf >= 0)
    assert np.all(cf <= 1.3)  # at most the irradiance ratio to 1000 W/m2
    assert np.all((np.array(ghi) == 0) <= (cf == 0))


def test_wind_capacity_factor() -> None:
    v = np.array([0.0, 1.0, 5.0, 9.0, 14.0, 20.0])
    cf = wind_capacity_factor(v)
    assert cf.shape == v.shape
    assert np.all((cf >= 0) & (cf <= 1))
    assert cf[0] == 0.0
    assert np.all(np.diff(cf[:5]) >= 0)  # rising to rated power
    assert cf[4] > 0.9
    e = expected_wind_capacity_factor(2.0, 7.5)
    assert 0.05 < e < 0.8


# --------------------------------------------------------------------------- tariffs


def test_tariff_hours(china: Scenario) -> None:
    gd = china.province("guangdong").tariff
    ratios = gd.hourly_ratios()
    assert len(ratios) == 24
    assert ratios[3] == 0.38  # valley
    assert ratios[11] == 1.7  # peak
    assert ratios[9] == 1.0  # flat
    assert gd.price_at_hour(11) == pytest.approx(0.72 * 1.7)
    assert gd.price_at_hour(24 + 3) == pytest.approx(0.72 * 0.38)
    bj = china.province("beijing").tariff.hourly_ratios()
    assert bj[12] > 1.5  # peak 10-15
    assert bj[23] < 0.5 and bj[3] < 0.5  # valley 23-7
    assert bj[8] == 1.0


def test_tariff_hours_in_local_time(china: Scenario) -> None:
    """Signals follow the provincial tariff at the *local* (UTC+8) hour."""
    sc = _grid_only(china, ["nscc-guangzhou", "beijing-haidian"])
    sig = build_signals(sc, START, 24, seed=0)
    gd_flat = china.province("guangdong").tariff.flat_cny_per_kwh
    bj_flat = china.province("beijing").tariff.flat_cny_per_kwh

    def utc_hour(local: int) -> int:
        return (local - SHANGHAI_OFFSET_H) % 24

    assert sig.price_cny_per_kwh[0, utc_hour(3)] == pytest.approx(gd_flat * 0.38)
    assert sig.price_cny_per_kwh[0, utc_hour(11)] == pytest.approx(gd_flat * 1.7)
    assert sig.price_cny_per_kwh[1, utc_hour(12)] == pytest.approx(bj_flat * 1.588)
    assert sig.price_cny_per_kwh[1, utc_hour(3)] == pytest.approx(bj_flat * 0.412)
    # all hours: price == flat x ratio of the local hour, green == 0, carbon == grid factor
    for ci, prov in enumerate(["guangdong", "beijing"]):
        tariff = china.province(prov).tariff
        expected = [tariff.price_at_hour((h + SHANGHAI_OFFSET_H) % 24) for h in range(24)]
        np.testing.assert_allclose(sig.price_cny_per_kwh[ci], expected)
        np.testing.assert_array_equal(sig.green_fraction[ci], 0.0)
        ef = china.province(prov).emission_factor_t_per_mwh
        np.testing.assert_allclose(sig.carbon_g_per_kwh[ci], ef * 1000.0)
    np.testing.assert_allclose(sig.forecast_price_cny_per_kwh, sig.price_cny_per_kwh)


def test_start_with_offset_equals_utc_start(china: Scenario) -> None:
    sc = _grid_only(china, ["nscc-guangzhou"])
    local = START.astimezone(ZoneInfo("Asia/Shanghai"))
    a = build_signals(sc, START, 6, seed=0)
    b = build_signals(sc, local, 6, seed=0)
    np.testing.assert_array_equal(a.price_cny_per_kwh, b.price_cny_per_kwh)
    assert b.start == START
    naive = build_signals(sc, datetime(2025, 7, 1), 6, seed=0)  # naive means UTC
    np.testing.assert_array_equal(a.price_cny_per_kwh, naive.price_cny_per_kwh)


def test_full_green_contract(china: Scenario) -> None:
    c = dataclasses.replace(
        china.center("zhongwei"),
        power=PowerSupply(green_ppa_share=1.0, green_price_cny_per_kwh=0.25),
    )
    sig = build_signals(dataclasses.replace(china, centers=(c,)), START, 12, seed=0)
    np.testing.assert_allclose(sig.green_fraction, 1.0)
    np.testing.assert_allclose(sig.price_cny_per_kwh, 0.25)


def test_partial_green_contract_blends_price(china: Scenario) -> None:
    c = dataclasses.replace(
        china.center("nscc-guangzhou"),
        power=PowerSupply(green_ppa_share=0.25, green_price_cny_per_kwh=0.2),
    )
    sig = build_signals(dataclasses.replace(china, centers=(c,)), START, 24, seed=0)
    tariff = china.province("guangdong").tariff
    tou = np.array([tariff.price_at_hour((h + 8) % 24) for h in range(24)])
    np.testing.assert_allclose(sig.price_cny_per_kwh[0], 0.25 * 0.2 + 0.75 * tou)
    np.testing.assert_allclose(sig.green_fraction[0], 0.25)


# --------------------------------------------------------------------------- the whole network


def test_china_signals_ranges(china: Scenario, china_signals: Signals) -> None:
    sig = china_signals
    shape = (len(china.centers), 48)
    for arr in (
        sig.price_cny_per_kwh,
        sig.carbon_g_per_kwh,
        sig.green_fraction,
        sig.forecast_price_cny_per_kwh,
        sig.forecast_green_fraction,
    ):
        assert arr.shape == shape
        assert np.all(np.isfinite(arr))
    assert np.all(sig.price_cny_per_kwh > 0)
    assert np.all(sig.forecast_price_cny_per_kwh > 0)
    for g in (sig.green_fraction, sig.forecast_green_fraction):
        assert np.all((g >= 0) & (g <= 1))
    assert np.all(sig.carbon_g_per_kwh > 0)
    assert sig.start == START
    # green PPA share is a floor on the green fraction
    for ci, c in enumerate(china.centers):
        assert np.all(sig.green_fraction[ci] >= c.power.green_ppa_share - 1e-9), c.id
    # west cheaper than east on average (东数西算)
    ids = [c.id for c in china.centers]
    west = sig.price_cny_per_kwh[ids.index("zhongwei")].mean()
    east = sig.price_cny_per_kwh[ids.index("shanghai-lingang")].mean()
    assert west < east


def test_solar_raises_daytime_green_share(tiny: Scenario) -> None:
    solar = dataclasses.replace(
        tiny.center("desert-green"),
        power=PowerSupply(solar_mw=50.0),
    )
    sc = dataclasses.replace(tiny, centers=(solar,), measured={})
    sig = build_signals(sc, START, 24, seed=2)
    # local 00:00-04:00 (UTC 16-20): no sun, no storage, no PPA -> all grid
    np.testing.assert_allclose(sig.green_fraction[0, 16:20], 0.0)
    # local noon (UTC 4): the sun covers part of the load
    assert sig.green_fraction[0, 4] > 0.2
    assert sig.forecast_green_fraction[0, 4] > 0.2


def test_deterministic_with_seed(tiny: Scenario) -> None:
    a = build_signals(tiny, START, 30, seed=7)
    b = build_signals(tiny, START, 30, seed=7)
    c = build_signals(tiny, START, 30, seed=8)
    for name in (
        "price_cny_per_kwh",
        "carbon_g_per_kwh",
        "green_fraction",
        "forecast_price_cny_per_kwh",
        "forecast_green_fraction",
    ):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(a, name).shape == getattr(c, name).shape
    # weather differs with the seed (a center with on-site solar and wind) ...
    assert not np.array_equal(a.green_fraction, c.green_fraction)
    assert not np.array_equal(a.price_cny_per_kwh, c.price_cny_per_kwh)
    # ... but the forecast uses expected weather, not the draw
    np.testing.assert_array_equal(a.forecast_price_cny_per_kwh, c.forecast_price_cny_per_kwh)
    np.testing.assert_array_equal(a.forecast_green_fraction, c.forecast_green_fraction)


def test_prefix_of_a_longer_run_is_the_same_tariff(tiny: Scenario) -> None:
    sc = _grid_only(tiny, ["coast-ai", "coast-hpc"])
    short = build_signals(sc, START, 5, seed=1)
    long = build_signals(sc, START, 29, seed=1)
    np.testing.assert_array_equal(short.price_cny_per_kwh, long.price_cny_per_kwh[:, :5])
    later = build_signals(sc, START + timedelta(hours=24), 5, seed=1)
    np.testing.assert_array_equal(later.price_cny_per_kwh, long.price_cny_per_kwh[:, 24:29])
