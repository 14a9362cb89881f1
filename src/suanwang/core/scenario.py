"""Scenario: the network of centers, places, tariffs and links. Plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from suanwang.core.hardware import Catalog


@dataclass(frozen=True, slots=True)
class TariffPeriod:
    name: str
    start_h: int
    end_h: int
    ratio: float


@dataclass(frozen=True, slots=True)
class Tariff:
    """Provincial time-of-use grid tariff: ``flat_cny_per_kwh`` x ratio of the local hour."""

    flat_cny_per_kwh: float
    periods: tuple[TariffPeriod, ...] = ()

    def hourly_ratios(self) -> tuple[float, ...]:
        """Ratio for each local hour 0..23 (hours no period covers are flat, 1.0)."""
        ratios = [1.0] * 24
        for p in self.periods:
            for h in range(p.start_h, p.end_h):
                ratios[h] = p.ratio
        return tuple(ratios)

    def price_at_hour(self, local_hour: int) -> float:
        return self.flat_cny_per_kwh * self.hourly_ratios()[local_hour % 24]


@dataclass(frozen=True, slots=True)
class Province:
    id: str
    name: str
    name_zh: str
    capital: str
    lat: float
    lon: float
    grid_region: str
    emission_factor_t_per_mwh: float
    demand_weight: float
    tariff: Tariff


@dataclass(frozen=True, slots=True)
class City:
    id: str
    name_zh: str
    province: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Hub:
    id: str
    name: str
    name_zh: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Cluster:
    id: str
    hub: str
    name: str
    name_zh: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class PowerSupply:
    """How a center is powered.

    ``green_ppa_share`` of its energy comes under green direct-connect / PPA contracts at
    ``green_price_cny_per_kwh``; on-site renewables (``solar_mw``, ``wind_mw``) and storage
    (``storage_mwh``) cover part of the rest; the grid supplies what is left at the provincial
    time-of-use tariff.
    """

    green_ppa_share: float = 0.0
    green_price_cny_per_kwh: float = 0.0
    solar_mw: float = 0.0
    wind_mw: float = 0.0
    storage_mwh: float = 0.0


@dataclass(frozen=True, slots=True)
class Center:
    id: str
    name: str
    name_zh: str
    type: str
    province: str
    city: str
    lat: float
    lon: float
    hub: str | None
    cluster: str | None
    pue: float
    inventory: tuple[tuple[str, int], ...]
    cpu_cores: int
    egress_gbps: float
    power: PowerSupply

    @property
    def cards(self) -> int:
        return sum(n for _, n in self.inventory)


@dataclass(frozen=True, slots=True)
class Link:
    bandwidth_gbps: float
    transfer_cost_cny_per_gb: float


@dataclass(frozen=True, slots=True)
class NetworkParams:
    """One-way latency = ``base_latency_ms`` + km x ``fibre_route_factor`` / ``fibre_km_per_ms``.

    ``km`` is the great-circle distance.

    Bandwidth and transfer price depend on whether both ends lie in the same grid region.
    """

    fibre_km_per_ms: float = 200.0
    fibre_route_factor: float = 1.6
    base_latency_ms: float = 0.3
    same_region: Link = Link(400.0, 0.02)
    cross_region: Link = Link(100.0, 0.08)


@dataclass(frozen=True, slots=True)
class SignalModelParams:
    """Parameters of the physical signal model (see :mod:`suanwang.scenarios.signals`)."""

    onsite_lcoe_cny_per_kwh: float = 0.20
    mean_clearness: float = 0.75
    cloud_persistence: float = 0.9
    wind_weibull_k: float = 2.0
    wind_weibull_scale_ms: float = 7.5
    wind_persistence: float = 0.95
    design_utilization: float = 0.6
    storage_round_trip: float = 0.88


#: the deferral limit's default (hours): what the ``suanwang`` planner always deferred at most
DEFAULT_MAX_DEFER_H = 12
#: the default price of refusing work (CNY per kWh the job would have used): several times the
#: dearest grid tariff, so a refusal never pays for itself
DEFAULT_EXPIRY_CNY_PER_KWH = 10.0


@dataclass(frozen=True, slots=True)
class DeferralRule:
    """How long the platform lets a job wait, the same for every policy (docs/model.md,
    "The deferral rule").

    A job must start within ``max_defer_h`` hours of its data's arrival at the pool it was
    placed on (its submission plus the data's transfer time there); whether a policy planned
    the wait (a deferral for price) or the pool's queue imposed it (no room). A job not started
    by then expires: the platform refuses it, it never runs and its owner is paid a penalty of
    ``expiry_cny_per_kwh`` x the energy it would have used on its most efficient feasible pool,
    counted in the run's cost. Checkpointed moves of a started job are not limited.
    """

    max_defer_h: int = DEFAULT_MAX_DEFER_H
    expiry_cny_per_kwh: float = DEFAULT_EXPIRY_CNY_PER_KWH

    def __post_init__(self) -> None:
        if self.max_defer_h < 0:
            raise ValueError(f"deferral max_defer_h must be >= 0, not {self.max_defer_h}")
        if not self.expiry_cny_per_kwh >= 0:
            raise ValueError(
                f"deferral expiry_cny_per_kwh must be >= 0, not {self.expiry_cny_per_kwh}"
            )

    @property
    def max_defer_s(self) -> float:
        """The limit in seconds, with the one second of slack every host allows (a planned
        start at the limit is computed in floating point)."""
        return self.max_defer_h * 3600.0 + EXPIRY_SLACK_S


#: a job expires this long after its limit: float rounding of a start planned at the limit
EXPIRY_SLACK_S = 1.0


@dataclass(frozen=True, slots=True)
class MeasuredSeries:
    """A measured signal series for one center (replaces the modelled one where it covers)."""

    times: tuple[datetime, ...]
    price_cny_per_kwh: tuple[float, ...]
    carbon_g_per_kwh: tuple[float, ...]
    green_fraction: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    timezone: str
    catalog: Catalog
    hubs: tuple[Hub, ...]
    clusters: tuple[Cluster, ...]
    provinces: tuple[Province, ...]
    cities: tuple[City, ...]
    network: NetworkParams
    centers: tuple[Center, ...]
    signal_model: SignalModelParams = SignalModelParams()
    deferral: DeferralRule = DeferralRule()
    measured: dict[str, MeasuredSeries] = field(default_factory=dict)

    def province(self, pid: str) -> Province:
        for p in self.provinces:
            if p.id == pid:
                return p
        raise KeyError(pid)

    def center(self, cid: str) -> Center:
        for c in self.centers:
            if c.id == cid:
                return c
        raise KeyError(cid)

    @property
    def total_cards(self) -> int:
        return sum(c.cards for c in self.centers)


def fit_inventory(
    inventory: tuple[tuple[str, int], ...], cards: int
) -> tuple[tuple[str, int], ...]:
    """``inventory`` (cards per model) cut to ``cards`` in all, each model in proportion to
    its count (largest remainders first), keeping one card of every model while there are
    cards enough; models left with none are dropped. Unchanged if it fits already."""
    total = sum(n for _, n in inventory)
    if total <= cards:
        return inventory
    held = [i for i, (_, n) in enumerate(inventory) if n > 0]
    keep = min(len(held), cards)  # models that keep at least one card: the largest
    firsts = sorted(held, key=lambda i: (-inventory[i][1], i))[:keep]
    got = [1 if i in firsts else 0 for i in range(len(inventory))]
    rest = cards - keep
    wants = [max(0, n - g) for (_, n), g in zip(inventory, got, strict=True)]
    spare = sum(wants)
    shares = [rest * w / spare if spare else 0.0 for w in wants]
    for i, share in enumerate(shares):
        got[i] += int(share)
    left = cards - sum(got)
    for i in sorted(range(len(inventory)), key=lambda i: (-(shares[i] - int(shares[i])), i))[:left]:
        got[i] += 1
    return tuple((m, g) for (m, _), g in zip(inventory, got, strict=True) if g > 0)
