"""Geography and the latency tiers of the network (1 ms city, 5 ms region, 20 ms cross-hub)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.core.geo import great_circle_km, great_circle_matrix_km
from suanwang.core.network import Network
from suanwang.core.scenario import Scenario

lat = st.floats(min_value=-89.0, max_value=89.0, allow_nan=False)
lon = st.floats(min_value=-180.0, max_value=180.0, allow_nan=False)


def _lat(net: Network, origin: str, center: str) -> float:
    return float(net.latency_ms[net.place(origin), net.center_index[center]])


def test_known_distances() -> None:
    # Beijing - Shanghai about 1,070 km; Beijing - Guangzhou about 1,890 km
    assert great_circle_km(39.9, 116.41, 31.23, 121.47) == pytest.approx(1068, rel=0.02)
    assert great_circle_km(39.9, 116.41, 23.13, 113.26) == pytest.approx(1888, rel=0.02)
    # a quarter of a meridian
    assert great_circle_km(0.0, 0.0, 90.0, 0.0) == pytest.approx(math.pi / 2 * 6371.0)


@given(lat, lon, lat, lon)
def test_distance_symmetric_and_matrix_agrees(a: float, b: float, c: float, d: float) -> None:
    ab = great_circle_km(a, b, c, d)
    assert ab >= 0
    assert ab == pytest.approx(great_circle_km(c, d, a, b), abs=1e-6)
    assert great_circle_km(a, b, a, b) == pytest.approx(0.0, abs=1e-6)
    assert ab <= math.pi * 6371.0 + 1e-6
    m = great_circle_matrix_km(np.array([a, c]), np.array([b, d]), np.array([c]), np.array([d]))
    assert m.shape == (2, 1)
    assert m[0, 0] == pytest.approx(ab, abs=1e-6)
    assert m[1, 0] == pytest.approx(0.0, abs=1e-6)


def test_latency_formula(china: Scenario, china_net: Network) -> None:
    p = china.network
    c = china.center("zhongwei")
    prov = china.province("shanghai")
    km = great_circle_km(prov.lat, prov.lon, c.lat, c.lon)
    expected = p.base_latency_ms + km * p.fibre_route_factor / p.fibre_km_per_ms
    assert _lat(china_net, "shanghai", "zhongwei") == pytest.approx(expected)


def test_same_city_under_one_ms(china: Scenario, china_net: Network) -> None:
    checked = 0
    for c in china.centers:
        if c.city in china_net.place_index:
            assert _lat(china_net, c.city, c.id) < 1.0, (c.id, c.city)
            checked += 1
    assert checked >= 20
    assert _lat(china_net, "wuxi", "nscc-wuxi") < 1.0
    assert _lat(china_net, "shenzhen", "pengcheng") < 1.0
    assert _lat(china_net, "beijing", "beijing-haidian") < 1.0


@pytest.mark.parametrize(
    "center", ["nscc-wuxi", "nscc-kunshan", "wuhu", "changsanjiao-demo", "shanghai-lingang"]
)
def test_within_region_under_five_ms(china_net: Network, center: str) -> None:
    assert _lat(china_net, "shanghai", center) < 5.0


def test_cross_hub_within_twenty_ms(china: Scenario, china_net: Network) -> None:
    assert _lat(china_net, "beijing", "shaoguan") <= 20.0
    assert _lat(china_net, "beijing", "nscc-guangzhou") <= 20.0
    # every hub center reaches every other hub's centers within the cross-hub tier
    hub_centers = [c for c in china.centers if c.hub is not None]
    for a in hub_centers:
        for b in hub_centers:
            if a.city in china_net.place_index:
                assert _lat(china_net, a.city, b.id) <= 20.0, (a.id, b.id)


@pytest.mark.parametrize("origin", ["shanghai", "guangzhou", "guangdong"])
def test_zhongwei_to_the_east_eight_to_twelve_ms(china_net: Network, origin: str) -> None:
    assert 8.0 <= _lat(china_net, origin, "zhongwei") <= 12.0


def test_latency_tiers_are_ordered(china_net: Network) -> None:
    city = _lat(china_net, "wuxi", "nscc-wuxi")
    region = _lat(china_net, "shanghai", "wuhu")
    cross = _lat(china_net, "beijing", "shaoguan")
    assert city < region < cross
    assert np.all(china_net.latency_ms >= china_net.scenario.network.base_latency_ms - 1e-12)
