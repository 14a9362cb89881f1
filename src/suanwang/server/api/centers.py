"""``/v1/centers`` and ``/v1/network``: capacity, use and energy signals of the scenario.

Capacity comes from the scenario, use from the database (units held now by running jobs and
by scheduled jobs whose planned start has come), signals from
:func:`suanwang.scenarios.signals.build_signals` over 48 hours from the current hour, built
once per hour and shared by all requests.

Who sees what: consumers and operators every center (consumers need the network view to
understand placements); a provider only the centers it owns. ``/v1/network`` shows totals per
hub and for the nation to everyone.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Request

from suanwang.core.scenario import Center, Scenario
from suanwang.server.api.deps import AUTH_RESPONSES, CurrentTenant, SessionDep
from suanwang.server.database.models import TenantRole
from suanwang.server.models.centers import owned_centers
from suanwang.server.models.jobs import Usage, active_usage
from suanwang.server.schemas import (
    CenterList,
    CenterPublic,
    CenterSignals,
    NetworkPublic,
    PoolCounts,
    Totals,
    Utilization,
    from_fields,
)
from suanwang.server.signals import SignalCache

router = APIRouter(prefix="/v1", tags=["network"], responses=AUTH_RESPONSES)


def _counts(centers: Iterable[Center]) -> PoolCounts:
    cards: dict[str, int] = {}
    cores = 0
    for c in centers:
        for model, n in c.inventory:
            cards[model] = cards.get(model, 0) + n
        cores += c.cpu_cores
    return PoolCounts(cards=dict(sorted(cards.items())), cpu_cores=cores)


def _used(centers: Iterable[Center], usage: dict[str, Usage]) -> PoolCounts:
    cards: dict[str, int] = {}
    cores = 0
    for c in centers:
        u = usage.get(c.id)
        if u is None:
            continue
        for model, n in u.cards.items():
            cards[model] = cards.get(model, 0) + n
        cores += u.cpu_cores
    return PoolCounts(cards=dict(sorted(cards.items())), cpu_cores=cores)


def _share(used: int, capacity: int) -> float:
    return used / capacity if capacity > 0 else 0.0


def _utilization(capacity: PoolCounts, used: PoolCounts) -> Utilization:
    return Utilization(
        cards=_share(sum(used.cards.values()), sum(capacity.cards.values())),
        by_model={m: _share(used.cards.get(m, 0), n) for m, n in capacity.cards.items()},
        cpu=_share(used.cpu_cores, capacity.cpu_cores),
    )


def _totals(
    group_id: str | None, name: str, centers: list[Center], usage: dict[str, Usage]
) -> Totals:
    cap, used = _counts(centers), _used(centers, usage)
    return Totals(
        id=group_id,
        name=name,
        centers=len(centers),
        capacity=cap,
        used=used,
        utilization=_utilization(cap, used),
    )


@router.get("/centers")
def list_centers(request: Request, session: SessionDep, tenant: CurrentTenant) -> CenterList:
    """Centers: capacity, units in use, utilization and this hour's energy signals.

    Consumers and operators see every center; a provider sees the centers it owns.
    """
    scenario: Scenario = request.app.state.scenario
    cache: SignalCache = request.app.state.signals
    signals = cache.current()
    usage = active_usage(session=session, at=cache.clock())
    shown: set[str] | None = None
    if tenant.tenant_role is TenantRole.PROVIDER:
        shown = set(owned_centers(session=session, tenant=tenant))
    out = []
    for i, c in enumerate(scenario.centers):
        if shown is not None and c.id not in shown:
            continue
        cap, used = _counts([c]), _used([c], usage)
        green = float(signals.green_fraction[i, 0])
        out.append(
            from_fields(
                CenterPublic,
                c,
                capacity=cap,
                used=used,
                utilization=_utilization(cap, used),
                signals=CenterSignals(
                    hour=signals.start,
                    price_cny_per_kwh=float(signals.price_cny_per_kwh[i, 0]),
                    green_fraction=green,
                    carbon_g_per_kwh=(1.0 - green) * float(signals.carbon_g_per_kwh[i, 0]),
                ),
            )
        )
    return CenterList(scenario=scenario.name, centers=out)


@router.get("/network")
def network_totals(request: Request, session: SessionDep, _tenant: CurrentTenant) -> NetworkPublic:
    """Capacity, use and utilization per hub (centers outside hubs grouped last) and in total."""
    scenario: Scenario = request.app.state.scenario
    cache: SignalCache = request.app.state.signals
    usage = active_usage(session=session, at=cache.clock())
    hubs = [
        _totals(h.id, h.name, [c for c in scenario.centers if c.hub == h.id], usage)
        for h in scenario.hubs
    ]
    hub_ids = {h.id for h in scenario.hubs}
    outside = [c for c in scenario.centers if c.hub not in hub_ids]
    if outside:
        hubs.append(_totals(None, "outside the hubs", outside, usage))
    national = _totals(None, scenario.name, list(scenario.centers), usage)
    return NetworkPublic(scenario=scenario.name, hubs=hubs, national=national)
