"""Routes of the console: the page, its static files, ``/v1/me``, ``/v1/network/map`` and the
what-if runs (``/v1/whatif``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from suanwang import __version__
from suanwang.console import whatif
from suanwang.core.scenario import Hub, Province, Scenario
from suanwang.server.api.deps import AUTH_RESPONSES, CurrentTenant

STATIC = Path(str(resources.files("suanwang.console").joinpath("static")))

api = APIRouter(prefix="/v1", tags=["console"], responses=AUTH_RESPONSES)


class Me(BaseModel):
    """The tenant whose key made the request."""

    tenant_id: str
    name: str
    role: str


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
    """Where things are: centers, hubs and provinces (capitals) at their coordinates."""

    scenario: str
    centers: list[MapCenter]
    hubs: list[MapPoint]
    provinces: list[MapPoint] = Field(description="each province at its capital")


def _point(x: Hub | Province) -> MapPoint:
    return MapPoint(id=x.id, name=x.name, name_zh=x.name_zh, lat=x.lat, lon=x.lon)


@api.get("/me")
def me(tenant: CurrentTenant) -> Me:
    """Who this API key belongs to (the console shows operator views to operators)."""
    return Me(tenant_id=tenant.id, name=tenant.name, role=tenant.tenant_role.value)


@api.get("/network/map")
def network_map(request: Request, _tenant: CurrentTenant) -> NetworkMap:
    """Coordinates of the scenario's centers, hubs and provinces (for the console's map)."""
    sc: Scenario = request.app.state.scenario
    return NetworkMap(
        scenario=sc.name,
        centers=[
            MapCenter(
                id=c.id,
                name=c.name,
                name_zh=c.name_zh,
                lat=c.lat,
                lon=c.lon,
                province=c.province,
                city=c.city,
                hub=c.hub,
            )
            for c in sc.centers
        ],
        hubs=[_point(h) for h in sc.hubs],
        provinces=[_point(p) for p in sc.provinces],
    )


def _index() -> str:
    html = (STATIC / "index.html").read_text("utf-8")
    return html.replace("{{version}}", __version__)


def mount(app: FastAPI) -> None:
    """Add the console to ``app``: ``/`` (the page), ``/static/*`` and its JSON routes."""
    page = _index()

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    app.include_router(api)
    app.include_router(whatif.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
