"""The shared cost model: runtime, energy cost, carbon, green energy."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.core.cost import (
    CostBreakdown,
    carbon_kg,
    energy_cost_cny,
    green_kwh,
    runtime_s,
)
from suanwang.core.signals import Signals

H = 3600.0


@pytest.fixture(scope="module")
def sig() -> Signals:
    price = np.array([[0.4, 0.8, 1.2, 0.6], [0.3, 0.3, 0.9, 0.9]])
    green = np.array([[0.0, 0.5, 1.0, 0.25], [1.0, 0.0, 0.5, 0.5]])
    carbon = np.full_like(price, 600.0)
    return Signals(
        start=datetime(2025, 7, 1, tzinfo=UTC),
        price_cny_per_kwh=price,
        carbon_g_per_kwh=carbon,
        green_fraction=green,
        forecast_price_cny_per_kwh=price * 1.1,
        forecast_green_fraction=green,
    )


def test_runtime() -> None:
    # 8 SCU on 2 units of speed 2 SCU/unit-h: 2 hours
    assert float(runtime_s(8.0, 2, 2.0)) == pytest.approx(2 * H)
    np.testing.assert_allclose(
        runtime_s(np.array([1.0, 3.0]), np.array([1, 3]), np.array([0.5, 1.0])), [2 * H, H]
    )


def test_energy_cost_by_hand(sig: Signals) -> None:
    c = np.array([0, 1])
    kw = np.array([10.0, 100.0])
    # [0.5 h, 2.5 h): center 0: 0.5*0.4 + 0.8 + 0.5*1.2 = 1.6; center 1: 0.15 + 0.3 + 0.45 = 0.9
    got = energy_cost_cny(sig, c, kw, 0.5 * H, np.array([2.5 * H, 2.5 * H]))
    np.testing.assert_allclose(got, [16.0, 90.0])
    # beyond the horizon (4 h) the last hour's price continues: [3 h, 6 h) on center 0
    got = energy_cost_cny(sig, c[:1], kw[:1], 3 * H, np.array([6 * H]))
    np.testing.assert_allclose(got, [10.0 * 3 * 0.6])
    # forecast prices are used when asked
    got = energy_cost_cny(sig, c[:1], kw[:1], 0.0, np.array([H]), forecast=True)
    np.testing.assert_allclose(got, [10.0 * 0.44])


@given(
    st.floats(0.0, 5000.0),
    st.floats(0.0, 20.0),
    st.floats(0.0, 6 * H),
    st.floats(0.0, 6 * H),
    st.integers(0, 1),
)
def test_energy_cost_linear_in_power(
    sig: Signals, kw: float, factor: float, t0: float, span: float, center: int
) -> None:
    c = np.array([center])
    t1 = np.array([t0 + span])
    one = energy_cost_cny(sig, c, np.array([kw]), t0, t1)[0]
    scaled = energy_cost_cny(sig, c, np.array([kw * factor]), t0, t1)[0]
    assert scaled == pytest.approx(one * factor, rel=1e-9, abs=1e-9)
    assert one >= 0
    # additive over a split of the interval
    mid = t0 + span / 3
    a = energy_cost_cny(sig, c, np.array([kw]), t0, np.array([mid]))[0]
    b = energy_cost_cny(sig, c, np.array([kw]), mid, t1)[0]
    assert a + b == pytest.approx(one, rel=1e-9, abs=1e-9)
    # zero-length interval costs nothing
    assert energy_cost_cny(sig, c, np.array([kw]), t0, np.array([t0]))[0] == pytest.approx(
        0.0, abs=1e-9
    )


def test_zero_length_interval(sig: Signals) -> None:
    c = np.array([0, 1])
    kw = np.array([50.0, 50.0])
    t = np.array([1.7 * H, 5.2 * H])
    assert np.all(energy_cost_cny(sig, c, kw, t, t) == 0.0)
    assert np.all(carbon_kg(sig, c, kw, t, t) == 0.0)
    assert np.all(green_kwh(sig, c, kw, t, t) == 0.0)


def test_carbon_and_green_by_hand(sig: Signals) -> None:
    c = np.array([0])
    kw = np.array([1000.0])
    t1 = np.array([2 * H])
    # green over hours 0,1: 0 + 0.5 -> 500 kWh green of 2000
    assert green_kwh(sig, c, kw, 0.0, t1)[0] == pytest.approx(500.0)
    # carbon: grid share (1, 0.5) x 600 g -> 900 g/kW x 1000 kW = 900 kg
    assert carbon_kg(sig, c, kw, 0.0, t1)[0] == pytest.approx(900.0)


def test_breakdown() -> None:
    b = CostBreakdown(
        center="x",
        pool=0,
        start_s=0.0,
        runtime_s=H,
        energy_kwh=10.0,
        energy_cost_cny=5.0,
        green_kwh=4.0,
        carbon_kg=1.0,
        transfer_cost_cny=2.0,
        transfer_s=1.0,
        latency_ms=1.0,
    )
    assert b.cost_cny == 7.0
    assert b.green_share == pytest.approx(0.4)
    z = CostBreakdown("x", 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert z.green_share == 0.0
