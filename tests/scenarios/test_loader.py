"""Loading scenarios: the built-in network and a user directory with measured signals."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from suanwang.core.network import Network
from suanwang.core.scenario import MeasuredSeries, Scenario
from suanwang.scenarios.loader import (
    ScenarioError,
    builtin_text,
    load_scenario,
    parse_scenario_text,
    read_signal_csv,
    validate_dir,
)
from suanwang.scenarios.signals import build_signals

START = datetime(2025, 7, 1, tzinfo=UTC)


def test_builtin_china(china: Scenario) -> None:
    assert china.name == "china"
    assert len(china.centers) >= 25
    assert china.total_cards >= 100_000
    assert len(china.hubs) == 8
    assert len(china.clusters) == 10
    assert len(china.provinces) == 31
    assert china.timezone == "Asia/Shanghai"
    assert china.measured == {}
    # references resolve
    hubs = {h.id for h in china.hubs}
    clusters = {c.id for c in china.clusters}
    provinces = {p.id for p in china.provinces}
    for c in china.centers:
        assert c.province in provinces
        assert c.hub is None or c.hub in hubs
        assert c.cluster is None or c.cluster in clusters
        assert 1.0 <= c.pue <= 3.0
        for model, n in c.inventory:
            assert model in china.catalog
            assert n >= 0
    assert {cl.hub for cl in china.clusters} <= hubs
    # every hub has at least one center
    assert hubs == {c.hub for c in china.centers if c.hub is not None}


def test_builtin_text_roundtrip(china: Scenario) -> None:
    spec, catalog, problems = parse_scenario_text(builtin_text("china"), "china.yaml")
    assert problems == []
    assert spec is not None and catalog is not None
    assert [c.id for c in spec.centers] == [c.id for c in china.centers]
    with pytest.raises(ScenarioError):
        builtin_text("atlantis")


def test_unknown_builtin_name_is_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario(str(tmp_path / "nowhere"))
    assert "not a directory" in str(exc.value)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(tmp_path)
    assert "missing scenario.yaml" in str(exc.value)


def test_tiny_fixture_is_valid(tiny_dir: Path, tiny: Scenario) -> None:
    assert validate_dir(tiny_dir) == []
    assert tiny.name == "tiny"
    assert [c.id for c in tiny.centers] == ["coast-ai", "coast-hpc", "desert-ai", "desert-green"]
    assert len(tiny.provinces) == 2
    assert tiny.center("coast-ai").inventory == (("a100", 16), ("ascend-910b", 8))
    assert tiny.network.fibre_route_factor == 1.25
    assert tiny.network.cross_region.transfer_cost_cny_per_gb == 0.08
    assert tiny.center("desert-ai").power.green_ppa_share == 0.5
    # built-in accelerators are available to user scenarios
    assert "dcu-k100" in tiny.catalog
    net = Network(tiny)
    assert set(net.place_ids) == {"coastal", "desert", "harbour"}


def test_tiny_measured_series(tiny: Scenario) -> None:
    m = tiny.measured["coast-ai"]
    assert set(tiny.measured) == {"coast-ai"}
    # +08:00 offsets are converted to UTC
    assert m.times == (
        datetime(2025, 7, 1, 0, tzinfo=UTC),
        datetime(2025, 7, 1, 1, tzinfo=UTC),
        datetime(2025, 7, 1, 2, tzinfo=UTC),
    )
    assert m.price_cny_per_kwh == (1.25, 1.5, 0.05)
    assert m.carbon_g_per_kwh == (510.0, 520.0, 300.0)
    assert m.green_fraction == (0.1, 0.0, 0.9)


def test_measured_csv_applied_to_signals(tiny: Scenario) -> None:
    hours = 6
    with_m = build_signals(tiny, START, hours, seed=3)
    without = build_signals(dataclasses.replace(tiny, measured={}), START, hours, seed=3)
    ci = 0  # coast-ai
    np.testing.assert_allclose(with_m.price_cny_per_kwh[ci, :3], [1.25, 1.5, 0.05])
    np.testing.assert_allclose(with_m.green_fraction[ci, :3], [0.1, 0.0, 0.9])
    np.testing.assert_allclose(with_m.carbon_g_per_kwh[ci, :3], [510.0, 520.0, 300.0])
    np.testing.assert_allclose(with_m.forecast_price_cny_per_kwh[ci, :3], [1.25, 1.5, 0.05])
    # hours the CSV does not cover and other centers are untouched
    np.testing.assert_array_equal(
        with_m.price_cny_per_kwh[ci, 3:], without.price_cny_per_kwh[ci, 3:]
    )
    np.testing.assert_array_equal(with_m.price_cny_per_kwh[1:], without.price_cny_per_kwh[1:])
    # a later start only picks up the rows inside the window
    later = build_signals(tiny, START + timedelta(hours=1), 3, seed=3)
    np.testing.assert_allclose(later.price_cny_per_kwh[ci, :2], [1.5, 0.05])


def test_measured_override_on_builtin(china: Scenario) -> None:
    cid = "zhongwei"
    ci = [c.id for c in china.centers].index(cid)
    times = (START + timedelta(hours=2), START + timedelta(hours=5))
    sc = dataclasses.replace(
        china,
        measured={cid: MeasuredSeries(times, (9.0, 0.01), (100.0, 200.0), (0.25, 1.0))},
    )
    small = dataclasses.replace(sc, centers=china.centers[ci : ci + 1])
    plain = dataclasses.replace(small, measured={})
    a = build_signals(small, START, 8, seed=1)
    b = build_signals(plain, START, 8, seed=1)
    assert a.price_cny_per_kwh[0, 2] == 9.0
    assert a.price_cny_per_kwh[0, 5] == 0.01
    assert a.green_fraction[0, 5] == 1.0
    assert a.carbon_g_per_kwh[0, 2] == 100.0
    keep = [0, 1, 3, 4, 6, 7]
    np.testing.assert_array_equal(a.price_cny_per_kwh[0, keep], b.price_cny_per_kwh[0, keep])
    assert not np.array_equal(a.price_cny_per_kwh, b.price_cny_per_kwh)


def test_read_signal_csv_directly(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text(
        "time,price_cny_per_kwh,carbon_g_per_kwh,green_fraction\n"
        "2025-07-01T00:00:00Z,0.5,600,0.2\n"
        "\n"
        "2025-07-01T01:00:00+00:00,0.6,610,0.3\n",
        encoding="utf-8",
    )
    series, problems = read_signal_csv(p, "x.csv")
    assert problems == []
    assert series is not None
    assert series.price_cny_per_kwh == (0.5, 0.6)
    empty = tmp_path / "empty.csv"
    empty.write_text("time,price_cny_per_kwh,carbon_g_per_kwh,green_fraction\n", encoding="utf-8")
    series, problems = read_signal_csv(empty, "empty.csv")
    assert series is None
    assert [p.message for p in problems] == ["no data rows"]
