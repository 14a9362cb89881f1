"""The Signals container: cumulative integrals that every cost computation relies on."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from suanwang.core.signals import Signals
from suanwang.scheduling.objective import _cumulative_at

START = datetime(2025, 7, 1, tzinfo=UTC)
H = 3600.0


def make_signals(
    price: np.ndarray,
    green: np.ndarray | None = None,
    carbon: np.ndarray | None = None,
    fc_price: np.ndarray | None = None,
    fc_green: np.ndarray | None = None,
) -> Signals:
    price = np.asarray(price, dtype=np.float64)
    z = np.zeros_like(price)
    return Signals(
        start=START,
        price_cny_per_kwh=price,
        carbon_g_per_kwh=z + 500.0 if carbon is None else carbon,
        green_fraction=z if green is None else green,
        forecast_price_cny_per_kwh=price.copy() if fc_price is None else fc_price,
        forecast_green_fraction=z if fc_green is None else fc_green,
    )


def reference_integral(values: np.ndarray, t0: float, t1: float) -> float:
    """Hand-summed integral (value x hours) of an hourly step series over [t0, t1).

    Past the horizon the last hour's value continues.
    """
    n = len(values)
    total = 0.0
    t = t0
    while t < t1:
        h = math.floor(t / H)
        nxt = t1 if h >= n - 1 else min((h + 1) * H, t1)
        total += float(values[min(max(h, 0), n - 1)]) * (nxt - t) / H
        t = nxt
    return total


def test_hand_computed_example() -> None:
    sig = make_signals(np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]]))
    c = np.array([0, 1])

    def integral(t0: float, t1: float) -> np.ndarray:
        return sig.cumulative("price", c, t1) - sig.cumulative("price", c, t0)

    # whole hours
    np.testing.assert_allclose(integral(0, 3 * H), [6.0, 60.0])
    # fractional: half of hour 0, all of hour 1, a quarter of hour 2
    np.testing.assert_allclose(integral(0.5 * H, 2.25 * H), [0.5 + 2 + 0.75, 5 + 20 + 7.5])
    # within one hour
    np.testing.assert_allclose(integral(1.25 * H, 1.75 * H), [1.0, 10.0])
    # beyond the horizon the last value continues
    np.testing.assert_allclose(integral(2 * H, 5 * H), [9.0, 90.0])
    np.testing.assert_allclose(integral(3 * H, 4.5 * H), [4.5, 45.0])
    np.testing.assert_allclose(integral(0, 4 * H), [9.0, 90.0])
    # empty interval
    np.testing.assert_allclose(integral(1.3 * H, 1.3 * H), [0.0, 0.0])
    assert sig.cumulative("price", c, 0.0).tolist() == [0.0, 0.0]


@given(
    arrays(np.float64, (2, 5), elements=st.floats(0.0, 10.0)),
    st.floats(0.0, 8 * H),
    st.floats(0.0, 4 * H),
)
def test_cumulative_matches_hand_sum(values: np.ndarray, t0: float, span: float) -> None:
    sig = make_signals(values)
    t1 = t0 + span
    centers = np.array([0, 1, 1, 0])
    got = sig.cumulative("price", centers, t1) - sig.cumulative("price", centers, t0)
    for k, c in enumerate(centers):
        expected = reference_integral(values[c], t0, t1)
        assert got[k] == pytest.approx(expected, rel=1e-9, abs=1e-9)


@given(
    arrays(np.float64, (1, 6), elements=st.floats(0.0, 1.0)),
    arrays(np.float64, (1, 6), elements=st.floats(0.0, 1000.0)),
    st.floats(0.0, 7 * H),
    st.floats(0.0, 3 * H),
)
def test_green_and_carbon_series(
    green: np.ndarray, carbon: np.ndarray, t0: float, span: float
) -> None:
    sig = make_signals(np.ones((1, 6)), green=green, carbon=carbon)
    c = np.array([0])
    t1 = t0 + span
    g = (sig.cumulative("green", c, t1) - sig.cumulative("green", c, t0))[0]
    assert g == pytest.approx(reference_integral(green[0], t0, t1), rel=1e-9, abs=1e-9)
    grid = (1.0 - green[0]) * carbon[0]
    cb = (sig.cumulative("carbon", c, t1) - sig.cumulative("carbon", c, t0))[0]
    assert cb == pytest.approx(reference_integral(grid, t0, t1), rel=1e-9, abs=1e-6)
    # a series of ones integrates to the interval length
    p = (sig.cumulative("price", c, t1) - sig.cumulative("price", c, t0))[0]
    assert p == pytest.approx(span / H, rel=1e-9, abs=1e-9)


def test_forecast_series_are_separate() -> None:
    price = np.array([[1.0, 1.0]])
    fc = np.array([[2.0, 4.0]])
    sig = make_signals(price, fc_price=fc, fc_green=np.array([[0.5, 0.5]]))
    c = np.array([0])
    assert sig.cumulative("price", c, 2 * H)[0] == pytest.approx(2.0)
    assert sig.cumulative("forecast_price", c, 2 * H)[0] == pytest.approx(6.0)
    assert sig.cumulative("forecast_carbon", c, 2 * H)[0] == pytest.approx(500.0)
    assert sig.cumulative("carbon", c, 2 * H)[0] == pytest.approx(1000.0)


def test_mean_over_and_hour_index() -> None:
    sig = make_signals(np.array([[1.0, 3.0, 5.0]]))
    c = np.array([0])
    assert sig.mean_over("price", c, 0.5 * H, np.array([1.5 * H]))[0] == pytest.approx(2.0)
    assert sig.hours == 3
    assert sig.n_centers == 1
    assert sig.horizon_s == 3 * H
    assert sig.hour_index(-5.0) == 0
    assert sig.hour_index(0.0) == 0
    assert sig.hour_index(H - 1e-6) == 0
    assert sig.hour_index(H) == 1
    assert sig.hour_index(100 * H) == 2


def test_shapes_and_timezone_checked() -> None:
    price = np.ones((2, 3))
    with pytest.raises(ValueError, match="shape"):
        make_signals(price, green=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="timezone"):
        Signals(
            start=datetime(2025, 7, 1),
            price_cny_per_kwh=price,
            carbon_g_per_kwh=price,
            green_fraction=price * 0,
            forecast_price_cny_per_kwh=price,
            forecast_green_fraction=price * 0,
        )


@given(
    arrays(np.float64, (3, 6), elements=st.floats(0.0, 5.0)),
    arrays(np.float64, (3, 6), elements=st.floats(0.0, 1.0)),
    st.lists(st.tuples(st.integers(0, 2), st.floats(-2 * H, 9 * H)), min_size=1, max_size=12),
)
def test_the_stacked_series_read_compiled_are_each_series_cumulative_to_the_bit(
    price: np.ndarray, green: np.ndarray, at: list[tuple[int, float]]
) -> None:
    """The series stacked (what the explanation's compiled terms read, three at once) and read
    by :func:`~suanwang.scheduling.objective._cumulative_at` give the bits of
    :meth:`Signals.cumulative`, before the signals, inside them and past their horizon."""
    s = make_signals(price, green=green, fc_price=price[::-1].copy(), fc_green=green * 0.5)
    which = ("forecast_price", "forecast_carbon", "forecast_green", "price")
    cum, val = s.stacked(which)
    assert cum.shape == (len(which), 3, 7) and val.shape == (len(which), 3, 6)
    assert s.stacked(which)[0] is cum  # (stacked once, kept)
    for w, name in enumerate(which):
        for c, t in at:
            got = _cumulative_at(cum, val, w, c, t, float(s.step_s), s.hours)
            want = s.cumulative(name, np.array([c], dtype=np.int64), np.array([t]))[0]
            assert np.float64(got).tobytes() == want.tobytes(), (name, c, t)
