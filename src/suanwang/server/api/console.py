"""The operations console (docs/console.md): its page at ``/`` and the two JSON routes only it
needs, ``/v1/me`` and ``/v1/network/map`` (its Keys page uses the keys API,
:mod:`suanwang.server.api.keys`).

The page's JavaScript, CSS and map are static files of :mod:`suanwang.web` (served at
``/static``); everything else the console shows comes from the public API. The key is kept in
the browser's sessionStorage and sent as ``Authorization: Bearer`` on every request.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from suanwang import __version__, web
from suanwang.core.scenario import Hub, Province, Scenario
from suanwang.scenarios.tenants import cap_names
from suanwang.server.api.deps import AUTH_RESPONSES, CurrentTenant
from suanwang.server.database.models import ApiKey
from suanwang.server.schemas import from_fields

router = APIRouter(tags=["console"], responses=AUTH_RESPONSES)


class Me(BaseModel):
    """The tenant whose key made the request."""

    tenant_id: str
    name: str
    role: str
    key_prefix: str = Field(description="the prefix of the key that made the request")
    read_only: bool = Field(description="true: that key may only read (GET)")


class MapPoint(BaseModel):
    id: str
    name: str
    name_zh: str
    lat: float
    lon: float


class MapCenter(MapPoint):
    province: str
    city: str
    hub: str | None


class NetworkMap(BaseModel):
    """Where things are: centers, hubs and provinces (capitals) at their coordinates, and the
    accelerator families (vendors) the scenario's catalog has (a quota's caps name them)."""

    scenario: str
    centers: list[MapCenter]
    hubs: list[MapPoint]
    provinces: list[MapPoint] = Field(description="each province at its capital")
    families: list[str] = Field(
        description="the catalog's accelerator families (vendors), by name: what a quota's "
        "family caps may name"
    )


def _point(x: Hub | Province) -> MapPoint:
    return from_fields(MapPoint, x)


@router.get("/v1/me")
def me(request: Request, tenant: CurrentTenant) -> Me:
    """Who this API key belongs to (the console shows operator views to operators), and the
    key itself: its prefix and whether it is read-only (the console's Keys page)."""
    key: ApiKey = request.state.api_key  # set by the authentication dependency
    return Me(
        tenant_id=tenant.id, name=tenant.name, role=tenant.tenant_role.value,
        key_prefix=key.prefix, read_only=key.read_only,
    )  # fmt: skip


@router.get("/v1/network/map")
def network_map(request: Request, _tenant: CurrentTenant) -> NetworkMap:
    """Coordinates of the scenario's centers, hubs and provinces (for the console's map), and
    the accelerator families (for the quota form's caps)."""
    sc: Scenario = request.app.state.scenario
    families, _ = cap_names(sc)
    return NetworkMap(
        scenario=sc.name,
        centers=[from_fields(MapCenter, c) for c in sc.centers],
        hubs=[_point(h) for h in sc.hubs],
        provinces=[_point(p) for p in sc.provinces],
        families=sorted(families),
    )


@router.get("/", include_in_schema=False)
def index() -> HTMLResponse:
    """The console: one page over the JSON API."""
    return HTMLResponse(web.index_html(__version__), headers={"Cache-Control": "no-cache"})
