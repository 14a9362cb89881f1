"""Geography and network latency."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

EARTH_RADIUS_KM = 6371.0


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def great_circle_matrix_km(
    lat_a: NDArray[np.float64],
    lon_a: NDArray[np.float64],
    lat_b: NDArray[np.float64],
    lon_b: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Pairwise haversine distances, shape (len(a), len(b))."""
    p1 = np.radians(lat_a)[:, None]
    p2 = np.radians(lat_b)[None, :]
    dl = np.radians(lon_b)[None, :] - np.radians(lon_a)[:, None]
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    out: NDArray[np.float64] = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(a)))
    return out
