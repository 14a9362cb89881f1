"""The forecast-error model: none is exact, seeded, growing with lead time, in valid ranges."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.core.scenario import Scenario
from suanwang.core.signals import Signals
from suanwang.scenarios.forecasts import (
    LEVELS,
    ForecastErrorLevel,
    day_ahead_leads,
    forecast_error_level,
    sigma_at,
    with_forecast_errors,
)
from suanwang.scenarios.signals import build_signals

START = datetime(2025, 7, 1, tzinfo=UTC)  # 08:00 in Shanghai
TZ = "Asia/Shanghai"


def _flat(hours: int, centers: int = 2, price: float = 0.5, green: float = 0.5) -> Signals:
    """Constant signals: the forecast's error is all there is to see."""
    shape = (centers, hours)
    return Signals(
        start=START,
        price_cny_per_kwh=np.full(shape, price),
        carbon_g_per_kwh=np.full(shape, 600.0),
        green_fraction=np.full(shape, green),
        forecast_price_cny_per_kwh=np.full(shape, price),
        forecast_green_fraction=np.full(shape, green),
    )


def test_level_none_leaves_the_forecast_bit_for_bit(china_signals: Signals) -> None:
    out = with_forecast_errors(china_signals, LEVELS["none"], timezone=TZ, seed=5)
    assert out is china_signals
    for name in ("price", "green", "carbon"):
        c = np.arange(china_signals.n_centers)
        assert np.array_equal(
            out.cumulative(f"forecast_{name}", c, 7200.0),
            china_signals.cumulative(f"forecast_{name}", c, 7200.0),
        )


def test_errors_are_seeded_and_leave_the_realised_series(china_signals: Signals) -> None:
    level = LEVELS["realistic"]
    a = with_forecast_errors(china_signals, level, timezone=TZ, seed=3)
    b = with_forecast_errors(china_signals, level, timezone=TZ, seed=3)
    c = with_forecast_errors(china_signals, level, timezone=TZ, seed=4)
    assert np.array_equal(a.forecast_price_cny_per_kwh, b.forecast_price_cny_per_kwh)
    assert np.array_equal(a.forecast_green_fraction, b.forecast_green_fraction)
    assert not np.array_equal(a.forecast_price_cny_per_kwh, c.forecast_price_cny_per_kwh)
    assert not np.array_equal(
        a.forecast_price_cny_per_kwh, china_signals.forecast_price_cny_per_kwh
    )
    for name in ("price_cny_per_kwh", "green_fraction", "carbon_g_per_kwh"):
        assert getattr(a, name) is getattr(china_signals, name)
    # the original's caches are its own: still the error-free forecast
    centers = np.arange(china_signals.n_centers)
    base = china_signals.forecast_price_cny_per_kwh[:, :2].sum(axis=1)
    assert np.allclose(china_signals.cumulative("forecast_price", centers, 7200.0), base)
    assert np.allclose(
        a.cumulative("forecast_price", centers, 7200.0), a.forecast_price_cny_per_kwh[:, :2].sum(1)
    )


def test_sigma_grows_as_the_square_root_of_lead_up_to_the_cap() -> None:
    leads = np.arange(0.0, 200.0)
    s = sigma_at(leads, 0.15, 0.21)
    assert s[0] == 0 and s[24] == pytest.approx(0.15)
    assert s[6] == pytest.approx(0.075)  # sqrt(6 / 24) = 1/2
    assert np.all(np.diff(s) >= 0) and s.max() == pytest.approx(0.21)
    assert np.all(s[np.sqrt(leads / 24) * 0.15 >= 0.21] == pytest.approx(0.21))


def test_day_ahead_leads_run_from_24_to_47_hours() -> None:
    leads = day_ahead_leads(START, 72, TZ)
    assert leads[0] == 32  # 08:00 local, issued at the midnight starting the day before
    assert leads[16] == 24  # local midnight
    assert leads.min() == 24 and leads.max() == 47


def test_measured_error_std_grows_with_lead_time() -> None:
    """Over many issues, the spread of log(forecast / realised) at each lead is sigma(lead)."""
    days = 400
    sig = _flat(24 * days, centers=3)
    level = LEVELS["realistic"]
    out = with_forecast_errors(sig, level, timezone=TZ, seed=11)
    err = np.log(out.forecast_price_cny_per_kwh / sig.forecast_price_cny_per_kwh)
    leads = day_ahead_leads(sig.start, sig.hours, TZ)
    by_lead = {int(lead): err[:, leads == lead].ravel() for lead in (24, 30, 36, 47)}
    stds = [float(by_lead[k].std()) for k in (24, 30, 36, 47)]
    assert stds == sorted(stds)
    for k, s in zip((24, 30, 36, 47), stds, strict=True):
        want = float(sigma_at(float(k), level.price_sigma_24, level.price_sigma_cap))
        assert s == pytest.approx(want, rel=0.1)
    # mean-preserving: the forecast is right on average
    assert float(np.exp(err).mean()) == pytest.approx(1.0, abs=0.01)
    g = out.forecast_green_fraction - sig.forecast_green_fraction
    g_stds = [float(g[:, leads == k].std()) for k in (24, 47)]
    assert 0.05 < g_stds[0] < g_stds[1] < 0.2


def test_errors_of_one_issue_are_correlated_and_issues_are_not() -> None:
    sig = _flat(24 * 400, centers=1)
    out = with_forecast_errors(sig, LEVELS["realistic"], timezone=TZ, seed=2)
    err = np.log(out.forecast_price_cny_per_kwh[0] / sig.forecast_price_cny_per_kwh[0])
    leads = day_ahead_leads(sig.start, sig.hours, TZ)
    same = (leads[:-1] < 47) & (leads[1:] == leads[:-1] + 1)
    nxt = np.corrcoef(err[:-1][same], err[1:][same])[0, 1]
    across = np.corrcoef(err[:-1][~same], err[1:][~same])[0, 1]
    assert nxt > 0.8 and abs(across) < 0.15


@settings(max_examples=30, deadline=None)
@given(
    level=st.sampled_from(sorted(LEVELS)),
    seed=st.integers(0, 2**31 - 1),
    price=st.lists(st.floats(1e-4, 5.0), min_size=48, max_size=48),
    green=st.lists(st.floats(0.0, 1.0), min_size=48, max_size=48),
)
def test_forecasts_stay_in_valid_ranges(
    level: str, seed: int, price: list[float], green: list[float]
) -> None:
    p = np.array([price])
    g = np.array([green])
    sig = Signals(START, p, np.full_like(p, 500.0), g, p.copy(), g.copy())
    out = with_forecast_errors(sig, LEVELS[level], timezone=TZ, seed=seed)
    assert np.all(out.forecast_price_cny_per_kwh > 0)
    assert np.all(np.isfinite(out.forecast_price_cny_per_kwh))
    fg = out.forecast_green_fraction
    assert np.all((fg >= 0) & (fg <= 1))
    exact = (g == 0) | (g == 1)  # a share fixed by contract stays exact
    assert np.array_equal(fg[exact], g[exact])


def test_unknown_level_names_the_presets() -> None:
    with pytest.raises(ValueError, match=r"unknown forecast error level 'huge'.*realistic"):
        forecast_error_level("huge")
    with pytest.raises(ValueError, match="price_sigma_24 must be >= 0"):
        ForecastErrorLevel("bad", -0.1, 0.1, 0.1, 0.1)
    with pytest.raises(ValueError, match="rho"):
        ForecastErrorLevel("bad", 0.1, 0.1, 0.1, 0.1, rho=1.0)


def test_measured_hours_get_forecast_errors_too(tiny: Scenario) -> None:
    """A measured series was its own forecast; with errors, its forecast is off, its bill not."""
    sig = build_signals(tiny, START, 24, seed=0)
    ci = [c.id for c in tiny.centers].index("coast-ai")
    assert sig.forecast_price_cny_per_kwh[ci, 0] == sig.price_cny_per_kwh[ci, 0] == 1.25
    out = with_forecast_errors(sig, LEVELS["realistic"], timezone=tiny.timezone, seed=0)
    assert out.price_cny_per_kwh[ci, 0] == 1.25
    assert out.forecast_price_cny_per_kwh[ci, 0] != 1.25
    assert out.forecast_green_fraction[ci, 1] == 0.0  # measured 0: a share fixed at 0 stays
