"""Trading on the live control plane (SQLite and PostgreSQL): the dispatcher hands offers to the
engine; reserved capacity is closed to other tenants and used first by its tenant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.billing.offers import Offer, OfferType
from suanwang.core.hardware import Precision
from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.executors.local import LocalExecutor
from suanwang.server.database.models import Tenant, TenantRole
from suanwang.server.models.billing import trading as trading_store
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.live import LiveNetwork, load_trading

CENTERS = ("zhongwei", "horinger")  # both have A100s
HOURS = 24


def _signals(net: Network, now: datetime, cheap: str | None = None) -> Signals:
    """Flat signals from ``now``'s hour on; electricity ten times cheaper at ``cheap``."""
    start = now.replace(minute=0, second=0, microsecond=0)
    price = np.full((net.n_centers, HOURS), 0.5)
    if cheap is not None:
        price[net.center_index[cheap]] = 0.05
    green = np.full_like(price, 0.2)
    return Signals(
        start=start,
        price_cny_per_kwh=price,
        carbon_g_per_kwh=np.full_like(price, 600.0),
        green_fraction=green,
        forecast_price_cny_per_kwh=price.copy(),
        forecast_green_fraction=green.copy(),
    )


def _live(net: Network, sig: Signals, root: Path, clock: Callable[[], datetime]) -> LiveNetwork:
    executors = {c: LocalExecutor(root, c, cpus=64, cards=16) for c in CENTERS}
    return LiveNetwork(net=net, signals=lambda: sig, executors=executors, clock=clock)


def _publish(
    sessions: sessionmaker[Session], who: Any, net: Network, sig: Signals, center: str,
    kind: OfferType, price: str, units: int, hours: int = 6,
) -> str:  # fmt: skip
    offer = Offer(id="new", provider=None, center_id=center, model="a100", units=units,
                  price_cny_per_scu=Decimal(price), start=sig.start,
                  end=sig.start + timedelta(hours=hours), type=kind)  # fmt: skip
    with sessions.begin() as s:
        row = trading_store.publish(session=s, tenant=s.get_one(Tenant, who.id), offer=offer,
                                    scenario=net.scenario, now=sig.start)  # fmt: skip
        return row.id


def _place(
    submit: Callable[..., dict[str, Any]], client: TestClient, who: Any, dispatcher: Dispatcher
) -> dict[str, Any]:
    job = submit(who, name="train", command="true", duration_s=3600, kind="training",
                 resources={"count": 8, "cpus": 32, "accelerator": "a100"})  # fmt: skip
    dispatcher.place()
    got: dict[str, Any] = client.get(f"/v1/jobs/{job['id']}", headers=who.headers).json()
    assert got["state"] == "scheduled", got
    return got


@dataclass
class Market:
    net: Network
    sig: Signals
    place: Callable[[Any], dict[str, Any]]
    first: str  # where a job goes without offers
    other: str
    placer: Callable[[Signals], Callable[[Any], dict[str, Any]]]  # the same on other signals


@pytest.fixture
def market(
    client: TestClient,
    app: FastAPI,
    sessions: sessionmaker[Session],
    alice: Any,
    submit: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> Market:
    net: Network = app.state.network
    clock = app.state.signals.clock  # the API's fixed test clock, never the wall clock

    def placer(sig: Signals) -> Callable[[Any], dict[str, Any]]:
        dispatcher = Dispatcher(sessions, _live(net, sig, tmp_path, clock))
        return lambda who: _place(submit, client, who, dispatcher)

    sig = _signals(net, clock())
    place = placer(sig)
    first = place(alice)["center_id"]
    return Market(net, sig, place, first, next(c for c in CENTERS if c != first), placer)


def test_the_dispatcher_places_on_a_cheaper_offer(
    market: Market, sessions: sessionmaker[Session], alice: Any, operator: Any
) -> None:
    net, sig, place, first, other = (market.net, market.sig, market.place, market.first,
                                     market.other)  # fmt: skip
    _publish(sessions, operator, net, sig, other, OfferType.IDLE_DISCOUNT, "1.00", 500)
    got = place(alice)
    assert got["center_id"] == other
    assert "below the posted price" in got["decision"]["reason"]
    market = got["decision"]["market"]
    assert market["source"] == "offer" and market["price_cny_per_scu"] == 1.0
    assert market["posted_cny_per_scu"] > 4
    # a dearer offer there does not pull the next job away from the first center
    with sessions.begin() as s:
        for o in trading_store.list_offers(session=s, now=sig.start):
            trading_store.withdraw(session=s, tenant=s.get_one(Tenant, operator.id),
                                   offer_id=o.id, now=sig.start - timedelta(hours=1))  # fmt: skip
    _publish(sessions, operator, net, sig, other, OfferType.ON_DEMAND, "20.00", 500)
    assert place(alice)["center_id"] == first


def test_reserved_capacity_is_closed_to_others_and_used_first_by_its_tenant(
    market: Market,
    sessions: sessionmaker[Session],
    alice: Any,
    bob: Any,
    operator: Any,
    make_tenant: Callable[..., Any],
) -> None:
    net, sig, place, first, other = (market.net, market.sig, market.place, market.first,
                                     market.other)  # fmt: skip
    pool = next(p for p in range(net.n_pools) if net.pool_model[p] == "a100"
                and net.center_ids[int(net.pool_center[p])] == other)  # fmt: skip
    cards = int(net.pool_capacity[pool])
    # where electricity is cheap, alice's jobs go there
    cheap = market.placer(_signals(net, sig.start, cheap=other))
    assert cheap(alice)["center_id"] == other
    # the other center's A100s: all of them reserved by bob for the next 20 hours (longer
    # than a job may be deferred)
    reserved = _publish(sessions, operator, net, sig, other, OfferType.RESERVED, "3.00", cards,
                        hours=20)  # fmt: skip
    with sessions.begin() as s:
        trading_store.reserve(session=s, tenant=s.get_one(Tenant, bob.id), offer_id=reserved,
                              units=cards, start=sig.start, end=sig.start + timedelta(hours=20),
                              precision=Precision.FP16, scenario=net.scenario,
                              now=sig.start)  # fmt: skip
    # ... and no more units of that pool: an offer may not sell what the pool does not have
    with sessions.begin() as s, pytest.raises(trading_store.Conflict, match="more than the"):
        trading_store.publish(session=s, tenant=s.get_one(Tenant, operator.id),
                              scenario=net.scenario, now=sig.start,
                              offer=Offer("x", None, other, "a100", 8, Decimal("1"), sig.start,
                                          sig.start + timedelta(hours=1)))  # fmt: skip
    with sessions() as s:
        trading = load_trading(s, net, sig)
    assert trading.prices is None  # a reserved offer alone prices no placement
    assert trading.reserved[bob.id][pool, 0] == cards
    blocked = trading.blocked_for(alice.id)
    assert blocked is not None and blocked[pool, 0] == cards and blocked[pool, 20] == 0
    assert trading.blocked_for(bob.id) is None
    # bob's job uses his reservation first (flat prices: without it, it would go to `first`)
    bobs = place(bob)
    assert bobs["center_id"] == other and bobs["decision"]["deferred_h"] == 0
    assert bobs["decision"]["market"]["source"] == "reservation"
    assert bobs["decision"]["market"]["price_cny_per_scu"] == 0
    # cheap electricity or not, no other tenant's job gets the units bob reserved
    assert cheap(alice)["center_id"] == first
    carol = make_tenant(TenantRole.CONSUMER, "carol")
    assert cheap(carol)["center_id"] == first
