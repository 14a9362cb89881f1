"""Trading on the control plane (SQLite and PostgreSQL): offers, reservations paid through the
ledger (402, refunds, no overselling) and the offer-aware price book."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pinned import NOW
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.billing import ledger
from suanwang.billing.pricing import book_for
from suanwang.core.hardware import Precision, speed_scu_per_hour
from suanwang.scenarios.loader import load_scenario
from suanwang.server.database.models import (
    LedgerTransaction,
    ReservationRow,
    Tenant,
    TenantRole,
)
from suanwang.server.models.billing import trading
from suanwang.server.models.billing.accounts import balance_of, topup
from suanwang.server.models.billing.config import set_config
from suanwang.server.models.billing.verify import verify
from suanwang.server.models.centers import grant_centers
from suanwang.server.models.tenants import create_tenant

Who = Any  # tests/server/conftest.py's Who: id, role, key, headers
CENTER = "zhangjiakou"  # has A100s
OTHER = "zhongwei"
H8 = NOW.replace(hour=8, minute=0)  # after the API's clock (06:30)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _provider(
    make_tenant: Callable[..., Who], sessions: sessionmaker[Session], *centers: str
) -> Who:
    who = make_tenant(TenantRole.PROVIDER)
    with sessions.begin() as s:
        grant_centers(session=s, tenant=s.get_one(Tenant, who.id), centers=list(centers), now=NOW)
    return who


def _offer(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "center": CENTER,
        "model": "a100",
        "units": 8,
        "price_cny_per_scu": "2.50",
        "start": _iso(H8),
        "end": _iso(H8 + timedelta(hours=10)),
        "type": "reserved",
    }
    body.update(kw)
    return body


def _field(r: Any) -> str:
    assert r.status_code == 422, r.text
    loc = r.json()["detail"][0]["loc"]
    return str(loc[-1])


def test_providers_publish_for_their_centers_and_everyone_lists(
    client: TestClient,
    make_tenant: Callable[..., Who],
    sessions: sessionmaker[Session],
    alice: Who,
    operator: Who,
) -> None:
    prov = _provider(make_tenant, sessions, CENTER)
    r = client.post("/v1/offers", json=_offer(), headers=prov.headers)
    assert r.status_code == 201, r.text
    offer = r.json()
    assert offer["price_cny_per_scu"] == "2.5000" and offer["provider_id"] == prov.id
    assert not offer["active"]  # starts at 08:00, the clock says 06:30
    # not its center; consumers may not publish; operators may publish anywhere
    assert client.post("/v1/offers", json=_offer(center=OTHER, model="a100"),
                       headers=prov.headers).status_code == 403  # fmt: skip
    assert client.post("/v1/offers", json=_offer(), headers=alice.headers).status_code == 403
    r = client.post("/v1/offers", json=_offer(type="idle_discount", price_cny_per_scu="1.1"),
                    headers=operator.headers)  # fmt: skip
    assert r.status_code == 201, r.text
    # never more units offered at once than the pool has (2,500 A100s; 16 offered already)
    r = client.post("/v1/offers", json=_offer(units=2490), headers=operator.headers)
    assert r.status_code == 409 and "more than the 2500" in r.json()["detail"]
    # every bad field is a 422 naming it
    assert _field(client.post("/v1/offers", json=_offer(price_cny_per_scu="1.23456"),
                              headers=prov.headers)) == "price_cny_per_scu"  # fmt: skip
    assert _field(client.post("/v1/offers", json=_offer(start="2025-07-01T08:30Z"),
                              headers=prov.headers)) == "start"  # fmt: skip
    assert _field(client.post("/v1/offers", json=_offer(end=_iso(H8 - timedelta(hours=1))),
                              headers=prov.headers)) == "end"  # fmt: skip
    assert _field(client.post("/v1/offers", json=_offer(model="tpu9"),
                              headers=prov.headers)) == "model"  # fmt: skip
    assert _field(client.post("/v1/offers", json=_offer(units=10**6),
                              headers=prov.headers)) == "units"  # fmt: skip
    assert _field(client.post("/v1/offers", json=_offer(center="atlantis"),
                              headers=operator.headers)) == "center"  # fmt: skip
    assert _field(client.post("/v1/offers", json=_offer(start="2025-07-01T08:00"),
                              headers=prov.headers)) == "start"  # fmt: skip
    past = _offer(start="2025-06-01T00:00Z", end="2025-06-02T00:00Z")
    assert _field(client.post("/v1/offers", json=past, headers=prov.headers)) == "end"
    listed = client.get("/v1/offers", headers=alice.headers).json()["offers"]
    assert sorted(o["type"] for o in listed) == ["idle_discount", "reserved"]
    only = client.get("/v1/offers?type=idle_discount", headers=alice.headers).json()["offers"]
    assert [o["price_cny_per_scu"] for o in only] == ["1.1000"]
    # withdrawing: not by a consumer or another provider; the owner ends it at the next hour
    rival = _provider(make_tenant, sessions, OTHER)
    assert client.delete(f"/v1/offers/{offer['id']}", headers=rival.headers).status_code == 403
    assert client.delete("/v1/offers/nope", headers=prov.headers).status_code == 404
    r = client.delete(f"/v1/offers/{offer['id']}", headers=prov.headers)
    assert r.status_code == 200 and r.json()["withdrawn"]
    # withdrawn at 06:30, before its start: it never runs and is no longer listed
    assert r.json()["end"] == r.json()["start"]
    listed = client.get("/v1/offers", headers=alice.headers).json()["offers"]
    assert offer["id"] not in [o["id"] for o in listed]


def _balance(sessions: sessionmaker[Session], account: str) -> Decimal:
    with sessions() as s:
        return balance_of(session=s, account_id=account)


def test_reservations_are_paid_at_booking_never_oversold_and_refunded(
    client: TestClient,
    make_tenant: Callable[..., Who],
    sessions: sessionmaker[Session],
    alice: Who,
    bob: Who,
    operator: Who,
) -> None:
    prov = _provider(make_tenant, sessions, CENTER)
    offer = client.post("/v1/offers", json=_offer(), headers=prov.headers).json()
    book = {"offer_id": offer["id"], "units": 4, "start": _iso(H8 + timedelta(hours=1)),
            "end": _iso(H8 + timedelta(hours=4))}  # fmt: skip
    r = client.post("/v1/reservations", json=book, headers=alice.headers)
    assert r.status_code == 201, r.text
    res = r.json()
    speed = Decimal(repr(speed_scu_per_hour(load_scenario("china").catalog.get("a100"),
                                            Precision.FP16)))  # fmt: skip
    expect = (4 * 3 * speed * Decimal("2.50")).quantize(Decimal("0.01"))
    assert Decimal(res["amount_cny"]) == expect
    # billing not required: owed (postpaid); the provider gets it less the 8 % commission
    assert _balance(sessions, ledger.postpaid(alice.id)) == -expect
    comm = (expect * Decimal("0.08")).quantize(Decimal("0.01"))
    assert _balance(sessions, ledger.payable(prov.id)) == expect - comm
    assert _balance(sessions, ledger.PLATFORM_COMMISSION) == comm
    # bob takes the other 4 of the overlapping hours; a fifth unit is sold out (409)
    r = client.post("/v1/reservations", json=book | {"units": 4}, headers=bob.headers)
    assert r.status_code == 201, r.text
    r = client.post("/v1/reservations", json=book | {"units": 1}, headers=bob.headers)
    assert r.status_code == 409 and "only 0" in r.json()["detail"]
    # after alice's window the units are free again
    later = book | {"start": _iso(H8 + timedelta(hours=4)), "end": _iso(H8 + timedelta(hours=6))}
    assert client.post("/v1/reservations", json=later | {"units": 8},
                       headers=bob.headers).status_code == 201  # fmt: skip
    # bad bookings name the field
    assert _field(client.post("/v1/reservations", json=book | {"end": _iso(H8 + timedelta(
        hours=11))}, headers=alice.headers)) == "end"  # fmt: skip
    assert _field(client.post("/v1/reservations", json=book | {"units": 9},
                              headers=alice.headers)) == "units"  # fmt: skip
    assert _field(client.post("/v1/reservations", json=book | {"start": "soon"},
                              headers=alice.headers)) == "start"  # fmt: skip
    assert _field(client.post("/v1/reservations", json=book | {"precision": "cpu"},
                              headers=alice.headers)) == "precision"  # fmt: skip
    od = client.post("/v1/offers", json=_offer(type="on_demand"), headers=prov.headers).json()
    assert _field(client.post("/v1/reservations", json=book | {"offer_id": od["id"]},
                              headers=alice.headers)) == "offer_id"  # fmt: skip
    assert client.post("/v1/reservations", json=book | {"offer_id": "nope"},
                       headers=alice.headers).status_code == 404  # fmt: skip
    assert client.post("/v1/reservations", json=book,
                       headers=prov.headers).status_code == 403  # fmt: skip
    # lists: own only; operators all
    mine = client.get("/v1/reservations", headers=alice.headers).json()["reservations"]
    assert [m["id"] for m in mine] == [res["id"]]
    everyone = client.get("/v1/reservations?all=true", headers=operator.headers).json()
    assert len(everyone["reservations"]) == 3
    # the provider sees the bookings of its offers; a consumer's all=true is its own
    theirs = client.get("/v1/reservations?all=true", headers=prov.headers).json()
    assert len(theirs["reservations"]) == 3
    own = client.get("/v1/reservations?all=true", headers=alice.headers).json()
    assert [m["id"] for m in own["reservations"]] == [res["id"]]
    # cancel before the start: refunded exactly; twice changes nothing; bob cannot see it
    assert client.delete(f"/v1/reservations/{res['id']}", headers=bob.headers).status_code == 404
    r = client.delete(f"/v1/reservations/{res['id']}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["refunded"] and r.json()["cancelled"]
    r = client.delete(f"/v1/reservations/{res['id']}", headers=alice.headers)
    assert r.status_code == 200 and not r.json()["refunded"]
    assert _balance(sessions, ledger.postpaid(alice.id)) == 0
    # the cancelled units can be booked again
    assert client.post("/v1/reservations", json=book | {"units": 4},
                       headers=alice.headers).status_code == 201  # fmt: skip
    with sessions() as s:
        assert verify(session=s) == []


def test_a_reservation_needs_prepayment_when_billing_is_required(
    client: TestClient,
    make_tenant: Callable[..., Who],
    sessions: sessionmaker[Session],
    alice: Who,
    operator: Who,
) -> None:
    prov = _provider(make_tenant, sessions, CENTER)
    offer = client.post("/v1/offers", json=_offer(), headers=prov.headers).json()
    with sessions.begin() as s:
        set_config(session=s, billing_required=True, now=NOW)
    book = {"offer_id": offer["id"], "units": 2, "start": _iso(H8),
            "end": _iso(H8 + timedelta(hours=2))}  # fmt: skip
    r = client.post("/v1/reservations", json=book, headers=alice.headers)
    assert r.status_code == 402, r.text
    assert r.json()["detail"]["error"] == "insufficient_balance"
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(ReservationRow)) == 0
        assert s.scalar(select(func.count()).select_from(LedgerTransaction)) == 0
    r = client.post("/v1/billing/topups", json={"tenant": "alice", "amount_cny": "100"},
                    headers=operator.headers)  # fmt: skip
    assert r.status_code == 201
    r = client.post("/v1/reservations", json=book, headers=alice.headers)
    assert r.status_code == 201, r.text
    paid = Decimal(r.json()["amount_cny"])
    assert _balance(sessions, ledger.prepaid(alice.id)) == Decimal("100.00") - paid
    assert client.delete(f"/v1/reservations/{r.json()['id']}",
                         headers=alice.headers).status_code == 200  # fmt: skip
    assert _balance(sessions, ledger.prepaid(alice.id)) == Decimal("100.00")
    with sessions() as s:
        assert verify(session=s) == []


def test_a_started_reservation_cannot_be_cancelled(
    client: TestClient,
    make_tenant: Callable[..., Who],
    sessions: sessionmaker[Session],
    alice: Who,
) -> None:
    prov = _provider(make_tenant, sessions, CENTER)
    offer = client.post("/v1/offers", json=_offer(), headers=prov.headers).json()
    book = {"offer_id": offer["id"], "units": 1, "start": _iso(H8),
            "end": _iso(H8 + timedelta(hours=1))}  # fmt: skip
    res = client.post("/v1/reservations", json=book, headers=alice.headers).json()
    with sessions.begin() as s:
        tenant = s.get_one(Tenant, alice.id)
        try:
            trading.cancel(
                session=s, tenant=tenant, reservation_id=res["id"], now=H8 + timedelta(minutes=5)
            )
        except trading.Conflict as exc:
            assert "can no longer be cancelled" in str(exc)
        else:  # pragma: no cover - the assertion below explains
            raise AssertionError("a started reservation was cancelled")
    # booking a window that has begun is refused too
    assert datetime(2025, 7, 1, 6, tzinfo=UTC) < NOW
    r = client.post("/v1/reservations", json=book | {"start": "2025-07-01T06:00Z"},
                    headers=alice.headers)  # fmt: skip
    assert _field(r) == "start"


def test_the_price_book_from_the_database_uses_offers_and_reservations(
    client: TestClient,
    make_tenant: Callable[..., Who],
    sessions: sessionmaker[Session],
    app: Any,
    alice: Who,
    bob: Who,
) -> None:
    scenario = app.state.network.scenario
    with sessions() as s:
        plain = trading.price_book(session=s, scenario=scenario)
        assert plain is book_for(scenario)  # no offers: exactly the posted book
    prov = _provider(make_tenant, sessions, CENTER)
    client.post("/v1/offers", json=_offer(type="on_demand", price_cny_per_scu="1.7"),
                headers=prov.headers)  # fmt: skip
    reserved = client.post("/v1/offers", json=_offer(), headers=prov.headers).json()
    client.post("/v1/reservations", json={"offer_id": reserved["id"], "units": 2,
                "start": _iso(H8), "end": _iso(H8 + timedelta(hours=2))},
                headers=alice.headers)  # fmt: skip
    at = H8 + timedelta(minutes=30)
    with sessions() as s:
        book = trading.price_book(session=s, scenario=scenario)
    posted = book_for(scenario)
    assert book.price_at(CENTER, "a100", Precision.FP16, at) == Decimal("1.7")
    assert book.price_at(CENTER, "a100", Precision.FP16, at, tenant=bob.id) == Decimal("1.7")
    assert book.price_at(CENTER, "a100", Precision.FP16, at, tenant=alice.id) == 0
    assert book.price_at(OTHER, "a100", Precision.FP16, at) == posted.posted_at(
        OTHER, "a100", Precision.FP16, at
    )
    before = H8 - timedelta(hours=1)
    assert book.price_at(CENTER, "a100", Precision.FP16, before) == posted.posted_at(
        CENTER, "a100", Precision.FP16, before
    )


def test_concurrent_bookings_never_oversell_an_offer(
    client: TestClient,
    app: Any,
    make_tenant: Callable[..., Who],
    sessions: sessionmaker[Session],
    operator: Who,
) -> None:
    prov = _provider(make_tenant, sessions, CENTER)
    offer = client.post("/v1/offers", json=_offer(units=16), headers=prov.headers).json()
    scenario = app.state.network.scenario
    with sessions.begin() as s:
        set_config(session=s, billing_required=True, now=NOW)
        buyers = []
        for i in range(10):
            t, _ = create_tenant(session=s, name=f"buyer-{i}", role=TenantRole.CONSUMER, now=NOW)
            topup(session=s, tenant=t, amount=Decimal("1000"), key=f"k{i}", now=NOW)
            buyers.append(t.id)

    def book(tenant_id: str) -> str:
        for _ in range(50):  # SQLite: a writer may find the database busy; try again
            try:
                with sessions.begin() as s:
                    trading.reserve(
                        session=s, tenant=s.get_one(Tenant, tenant_id), offer_id=offer["id"],
                        units=3, start=H8, end=H8 + timedelta(hours=2),
                        precision=Precision.FP16, scenario=scenario, now=NOW,
                    )  # fmt: skip
                return "booked"
            except trading.Conflict:
                return "sold out"
            except OperationalError:
                time.sleep(0.02)
        return "busy"

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(book, buyers))
    assert sorted(outcomes) == ["booked"] * 5 + ["sold out"] * 5
    with sessions() as s:
        units = s.scalar(select(func.sum(ReservationRow.units)))
        assert units == 15
        assert verify(session=s) == []
        paid = [balance_of(session=s, account_id=ledger.prepaid(t)) for t in buyers]
    each = (3 * 2 * Decimal("2.50")).quantize(Decimal("0.01"))
    assert sorted(paid) == [Decimal("1000.00") - each] * 5 + [Decimal("1000.00")] * 5
