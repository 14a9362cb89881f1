"""File schema of a scenario (``scenario.yaml``): pydantic models at the boundary.

Field names and units match the core dataclasses in :mod:`suanwang.core.scenario`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from suanwang.core.scenario import DEFAULT_EXPIRY_CNY_PER_KWH, DEFAULT_MAX_DEFER_H

#: Degrees north (WGS 84).
Latitude = Annotated[float, Field(ge=-90, le=90)]
#: Degrees east (WGS 84).
Longitude = Annotated[float, Field(ge=-180, le=180)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AcceleratorSpec(_Model):
    model: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    name: str
    vendor: str
    stack: str = Field(pattern=r"^[a-z0-9_-]+$")
    fp64_tflops: float = Field(ge=0)
    fp32_tflops: float = Field(ge=0)
    fp16_tflops: float = Field(ge=0)
    int8_tops: float = Field(ge=0)
    memory_gb: float = Field(ge=0)
    bandwidth_tbps: float = Field(ge=0)
    power_w: float = Field(gt=0)
    host_w: float = Field(ge=0, default=0.0)
    cores: int = Field(ge=0, default=0)
    efficiency: float = Field(gt=0, le=1.5, default=1.0)
    source: str = ""


class HubSpec(_Model):
    id: str
    name: str
    name_zh: str = ""
    lat: Latitude
    lon: Longitude
    source: str = ""


class ClusterSpec(HubSpec):
    """A cluster of a hub: named and placed like a hub, and the ``hub`` it belongs to."""

    hub: str


class TariffPeriodSpec(_Model):
    name: str
    start_h: int = Field(ge=0, le=24)
    end_h: int = Field(ge=0, le=24)
    ratio: float = Field(gt=0)


class TariffSpec(_Model):
    flat_cny_per_kwh: float = Field(gt=0)
    periods: list[TariffPeriodSpec] = []
    source: str = ""


class ProvinceSpec(_Model):
    id: str = Field(pattern=r"^[a-z]+$")
    name: str
    name_zh: str = ""
    capital: str
    lat: Latitude
    lon: Longitude
    grid_region: str
    emission_factor_t_per_mwh: float = Field(ge=0, le=2)
    demand_weight: float = Field(ge=0)
    tariff: TariffSpec
    sources: dict[str, str] = {}


class CitySpec(_Model):
    id: str = Field(pattern=r"^[a-z]+$")
    name: str = ""
    name_zh: str = ""
    province: str
    lat: Latitude
    lon: Longitude
    source: str = ""


class LinkSpec(_Model):
    bandwidth_gbps: float = Field(gt=0)
    transfer_cost_cny_per_gb: float = Field(ge=0)


class RegionsSpec(_Model):
    same_region: LinkSpec
    cross_region: LinkSpec


class NetworkSpec(_Model):
    fibre_km_per_ms: float = Field(gt=0, default=200.0)
    fibre_route_factor: float = Field(ge=1, default=1.6)
    base_latency_ms: float = Field(ge=0, default=0.3)
    regions: RegionsSpec
    source: str = ""


class PowerSpec(_Model):
    green_ppa_share: float = Field(ge=0, le=1, default=0.0)
    green_price_cny_per_kwh: float = Field(ge=0, default=0.0)
    solar_mw: float = Field(ge=0, default=0.0)
    wind_mw: float = Field(ge=0, default=0.0)
    storage_mwh: float = Field(ge=0, default=0.0)


class CenterSpec(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str
    name_zh: str = ""
    type: str = Field(pattern=r"^(hub-cluster|supercomputing|intelligent)$")
    province: str
    city: str
    lat: Latitude
    lon: Longitude
    hub: str | None = None
    cluster: str | None = None
    pue: float = Field(ge=1.0, le=3.0)
    inventory: dict[str, int] = {}
    cpu_cores: int = Field(ge=0, default=0)
    egress_gbps: float = Field(gt=0)
    power: PowerSpec = PowerSpec()
    sources: dict[str, str] = {}
    executor: dict[str, object] | None = None


class SignalModelSpec(_Model):
    onsite_lcoe_cny_per_kwh: float = Field(ge=0, default=0.20)
    mean_clearness: float = Field(gt=0, le=1, default=0.75)
    cloud_persistence: float = Field(ge=0, lt=1, default=0.9)
    wind_weibull_k: float = Field(gt=0, default=2.0)
    wind_weibull_scale_ms: float = Field(gt=0, default=7.5)
    wind_persistence: float = Field(ge=0, lt=1, default=0.95)
    design_utilization: float = Field(gt=0, le=1, default=0.6)
    storage_round_trip: float = Field(gt=0, le=1, default=0.88)
    source: str = ""


class DeferralSpec(_Model):
    """The deferral rule every policy and the bound obey (core.scenario.DeferralRule)."""

    max_defer_h: int = Field(ge=0, le=336, default=DEFAULT_MAX_DEFER_H)
    expiry_cny_per_kwh: float = Field(ge=0, default=DEFAULT_EXPIRY_CNY_PER_KWH)
    source: str = ""


class ScenarioSpec(_Model):
    name: str
    description: str = ""
    timezone: str = "Asia/Shanghai"
    accelerators: list[AcceleratorSpec] = []
    hubs: list[HubSpec] = []
    clusters: list[ClusterSpec] = []
    provinces: list[ProvinceSpec]
    cities: list[CitySpec] = []
    network: NetworkSpec
    signal_model: SignalModelSpec = SignalModelSpec()
    deferral: DeferralSpec = DeferralSpec()
    centers: list[CenterSpec] = Field(min_length=1)
