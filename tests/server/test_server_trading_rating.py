"""Runs are charged as they were placed: under an offer at the offer's price (within its
window), under the tenant's reservation at 0 (paid at booking), otherwise at the posted price
— also on a pool with an offer in force, so an offer's price reaches only the units the
dispatcher placed under it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pinned import NOW
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.billing.offers import Offer, OfferType
from suanwang.billing.pricing import book_for
from suanwang.core.hardware import Precision
from suanwang.core.lifecycle import JobState
from suanwang.server.database.models import JobRow, Tenant, UsageRecord
from suanwang.server.models.billing import trading
from suanwang.server.models.billing.settle import settle_finished
from suanwang.server.models.billing.verify import verify
from suanwang.server.models.jobs import transition

CENTER = "zhangjiakou"


def _run(
    sessions: sessionmaker[Session], job_id: str, start: datetime, minutes: int,
    market: str | None = None,
) -> None:  # fmt: skip
    detail: dict[str, Any] = {"center": CENTER, "pool": "a100"}
    if market is not None:  # as the dispatcher records a placement below the posted price
        detail["market"] = {"source": market, "price_cny_per_scu": 0.0}
    with sessions.begin() as s:
        job = s.get_one(JobRow, job_id)
        transition(session=s, job=job, to=JobState.SCHEDULED, detail=detail, now=start,
                   updates={"center_id": CENTER, "pool_model": "a100"})  # fmt: skip
        transition(session=s, job=job, to=JobState.RUNNING, now=start)
        transition(
            session=s, job=job, to=JobState.SUCCEEDED, now=start + timedelta(minutes=minutes)
        )


def test_runs_are_charged_at_offer_prices_and_reservations_are_prepaid(
    client: TestClient, app: Any, sessions: sessionmaker[Session], alice: Any, bob: Any,
    operator: Any, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    net = app.state.network
    hour = NOW.replace(minute=0) - timedelta(hours=3)  # the runs below end before NOW
    with sessions.begin() as s:
        op = s.get_one(Tenant, operator.id)
        for kind, price in ((OfferType.ON_DEMAND, "1.0000"), (OfferType.RESERVED, "2.0000")):
            trading.publish(session=s, tenant=op, scenario=net.scenario, now=hour,
                                  offer=Offer("new", None, CENTER, "a100", 64, Decimal(price),
                                              hour, hour + timedelta(hours=2), kind))  # fmt: skip
        reserved = next(o for o in trading.list_offers(session=s, now=hour)
                        if o.type == "reserved")  # fmt: skip
        trading.reserve(session=s, tenant=s.get_one(Tenant, bob.id), offer_id=reserved.id,
                              units=8, start=hour, end=hour + timedelta(hours=2),
                              precision=Precision.FP16, scenario=net.scenario,
                              now=hour)  # fmt: skip
    a = submit(alice, kind="training")["id"]  # 8 A100s
    b = submit(bob, kind="training")["id"]
    late = submit(alice, kind="training")["id"]
    plain = submit(alice, kind="training")["id"]
    beyond = submit(bob, kind="training")["id"]
    _run(sessions, a, hour + timedelta(minutes=30), 30, "offer")  # 4 SCU at the offer's 1.00
    _run(sessions, b, hour + timedelta(minutes=30), 30, "reservation")  # paid at booking
    _run(sessions, late, hour + timedelta(hours=2), 30, "offer")  # after the offer: posted
    _run(sessions, plain, hour + timedelta(minutes=30), 30)  # not placed under the offer
    _run(sessions, beyond, hour + timedelta(minutes=30), 30)  # bob, beyond his reservation
    assert settle_finished(sessions, net, now=NOW) == 5
    with sessions() as s:
        got = {r.job_id: r.compute_cny for r in s.scalars(select(UsageRecord))}
        assert verify(session=s) == []
    assert got[a] == Decimal("4.00")
    assert got[b] == Decimal("0.00")
    book = book_for(net.scenario)
    posted = book.posted_at(CENTER, "a100", Precision.FP16, hour + timedelta(hours=2))
    assert got[late] == (4 * posted).quantize(Decimal("0.01"))
    during = book.posted_at(CENTER, "a100", Precision.FP16, hour + timedelta(minutes=30))
    assert during > Decimal("1.0000")  # the offer is a discount
    assert got[plain] == got[beyond] == (4 * during).quantize(Decimal("0.01"))
