"""Preemptible work on the control plane (SQLite and PostgreSQL): held, lowered at placement,
metered and charged at the idle price; the setting; a provider's idle_discount offer; budgets
estimated at the idle price; invoices and ``ledger verify``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pinned import NOW, PERIOD, ticking
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient
from typer.testing import CliRunner

from suanwang.billing.money import cents_up
from suanwang.billing.offers import Offer, OfferType
from suanwang.billing.pricing import PriceBook, book_for
from suanwang.billing.rating import Segment, rate_segment
from suanwang.cli import app as cli
from suanwang.core.hardware import Precision
from suanwang.core.lifecycle import JobState
from suanwang.server.database.models import (
    JobRow,
    LedgerTransaction,
    Tenant,
    TenantRole,
    UsageRecord,
)
from suanwang.server.models.billing import trading
from suanwang.server.models.billing.config import set_config
from suanwang.server.models.billing.holds import lower_holds
from suanwang.server.models.billing.settle import settle_finished
from suanwang.server.models.centers import grant_centers
from suanwang.server.models.jobs import transition

runner = CliRunner()
CENTER = "zhangjiakou"  # has A100s
PREEMPTIBLE = {"priority": "preemptible"}


def _prepaid(client: TestClient, sessions: sessionmaker[Session], op: Any, amount: str) -> None:
    with sessions.begin() as s:
        set_config(session=s, billing_required=True, now=NOW)
    r = client.post("/v1/billing/topups", json={"tenant": "alice", "amount_cny": amount},
                    headers=op.headers)  # fmt: skip
    assert r.status_code == 201, r.text


def _held(client: TestClient, who: Any) -> Decimal:
    return Decimal(client.get("/v1/billing/balance", headers=who.headers).json()["held_cny"])


def _placed(sessions: sessionmaker[Session], job_id: str, start: datetime) -> None:
    """Placed on CENTER's A100s at ``start``."""
    with sessions.begin() as s:
        transition(session=s, job=s.get_one(JobRow, job_id), to=JobState.SCHEDULED, now=start,
                   detail={"center": CENTER, "pool": "a100"},
                   updates={"center_id": CENTER, "pool_model": "a100"})  # fmt: skip


def _ran(
    sessions: sessionmaker[Session], job_id: str, start: datetime, end: datetime,
    placed: bool = False,
) -> None:  # fmt: skip
    """(Placed on CENTER's A100s and) running from ``start``, succeeded at ``end``."""
    if not placed:
        _placed(sessions, job_id, start)
    with sessions.begin() as s:
        job = s.get_one(JobRow, job_id)
        transition(session=s, job=job, to=JobState.RUNNING, now=start)
        transition(session=s, job=job, to=JobState.SUCCEEDED, now=end)


def _rated(book: PriceBook, start: datetime, end: datetime, **kw: Any) -> Decimal:  # 8 A100s, fp16
    seg = Segment(0, CENTER, "a100", start, end, "succeeded", 1)
    return rate_segment(book, seg, precision=Precision.FP16, units=8, **kw).compute_cny


def _verify_cli(db_url: str) -> None:
    ok = runner.invoke(cli, ["ledger", "verify", "--db", db_url, "--json"])
    assert ok.exit_code == 0, ok.output


def test_a_preemptible_job_is_held_lowered_and_charged_at_the_idle_price(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], db_url: str,
    alice: Any, operator: Any, make_tenant: Callable[..., Any],
    submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    net = app.state.network
    provider = make_tenant(TenantRole.PROVIDER, "north-dc")
    with sessions.begin() as s:
        grant_centers(session=s, tenant=s.get_one(Tenant, provider.id), centers=[CENTER], now=NOW)
    _prepaid(client, sessions, operator, "5000")
    normal = submit(alice)  # 8 cards x 2 h = 16 SCU, batch (the default for training)
    normal_hold = _held(client, alice)
    cheap = submit(alice, **PREEMPTIBLE)
    cheap_hold = _held(client, alice) - normal_hold
    # both held at the highest price in the network: the posted one, and the idle one
    book = book_for(net.scenario)
    max_posted, idle = book.max_price(Precision.FP16), book.max_idle_price(Precision.FP16)
    assert idle == (max_posted / 2).quantize(Decimal("0.0001"))
    assert (normal_hold, cheap_hold) == (cents_up(16 * max_posted), cents_up(16 * idle))

    start, end = NOW - timedelta(minutes=100), NOW - timedelta(minutes=10)
    for job in (normal, cheap):
        _placed(sessions, job["id"], start)
    # placed: each hold is lowered to its work there (2 h from its start) at its price
    assert lower_holds(sessions, net, now=NOW) == 2
    there = {k: cents_up(_rated(book, start, start + timedelta(hours=2), **kw))
             for k, kw in (("posted", {}), ("idle", {"preemptible": True}))}  # fmt: skip
    assert there["idle"] < there["posted"] <= normal_hold
    assert _held(client, alice) == there["posted"] + there["idle"]
    for job in (normal, cheap):
        _ran(sessions, job["id"], start, end, placed=True)
    assert settle_finished(sessions, net, now=NOW) == 2
    posted, discounted = _rated(book, start, end), _rated(book, start, end, preemptible=True)
    assert Decimal(0) < discounted < posted
    assert abs(discounted * 2 - posted) <= Decimal("0.05")  # half, less rounding per hour
    charges = {}
    for job in (normal, cheap):
        got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
        charges[job["id"]] = Decimal(got["charge_cny"])
    assert charges == {normal["id"]: posted, cheap["id"]: discounted}
    assert discounted <= there["idle"] and posted <= there["posted"]  # charge <= hold
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    assert bal["held_cny"] == "0.00" and bal["idle_discount"] == "0.50"
    assert Decimal(bal["prepaid_cny"]) == Decimal(5000) - posted - discounted

    inv = client.get(f"/v1/billing/invoices/{PERIOD}", headers=alice.headers).json()
    lines = {line["job_id"]: line for line in inv["lines"]}
    assert lines[cheap["id"]]["priority"] == "preemptible"
    assert lines[normal["id"]]["priority"] == "batch"
    assert Decimal(lines[cheap["id"]]["amount_cny"]) == discounted
    assert Decimal(inv["total_cny"]) == posted + discounted
    csv = client.get(f"/v1/billing/invoices/{PERIOD}?format=csv", headers=alice.headers).text
    header, *rows = [r.split(",") for r in csv.splitlines()]
    assert {r[0]: r[header.index("priority")] for r in rows if r[0] != "total"} == {
        normal["id"]: "batch", cheap["id"]: "preemptible"
    }  # fmt: skip
    st = client.get(f"/v1/billing/settlements/{PERIOD}", headers=operator.headers).json()
    [p] = st["providers"]
    assert Decimal(st["charges_cny"]) == posted + discounted
    assert Decimal(p["payout_cny"]) + Decimal(st["commission_cny"]) == posted + discounted
    with sessions() as s:
        memos = dict(s.execute(select(LedgerTransaction.job_id, LedgerTransaction.memo)
                               .where(LedgerTransaction.kind == "charge")).all())  # fmt: skip
    assert "preemptible at the idle price" in memos[cheap["id"]]
    assert "preemptible" not in memos[normal["id"]]
    _verify_cli(db_url)


def test_the_idle_discount_setting_and_a_providers_idle_offer_price_preemptible_work(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], db_url: str,
    alice: Any, operator: Any, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    net = app.state.network
    r = runner.invoke(cli, ["billing", "configure", "--idle-discount", "0.3", "--db", db_url,
                            "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["idle_discount"] == "0.30"
    assert client.get("/v1/billing/balance", headers=alice.headers).json()["idle_discount"] == (
        "0.30"
    )
    for bad in ("0.95", "half", "0.125"):
        r = runner.invoke(cli, ["billing", "configure", "--idle-discount", bad, "--db", db_url])
        assert r.exit_code == 2 and "--idle-discount" in r.stderr, r.output
    hour = NOW.replace(minute=0) - timedelta(hours=4)  # an idle_discount offer for 2 h from here
    with sessions.begin() as s:
        trading.publish(session=s, tenant=s.get_one(Tenant, operator.id), scenario=net.scenario,
                        now=hour, offer=Offer("new", None, CENTER, "a100", 16, Decimal("1.7500"),
                                              hour, hour + timedelta(hours=2),
                                              OfferType.IDLE_DISCOUNT))  # fmt: skip
    cheap, plain = submit(alice, **PREEMPTIBLE), submit(alice)
    start, end = hour + timedelta(hours=1), hour + timedelta(hours=3)  # 1 h in the offer, 1 out
    for job in (cheap, plain):
        _ran(sessions, job["id"], start, end)
    assert settle_finished(sessions, net, now=NOW) == 2
    book = book_for(net.scenario)
    after = (book.posted_at(CENTER, "a100", Precision.FP16, end - timedelta(hours=1)) * Decimal(
        "0.7"
    )).quantize(Decimal("0.0001"))  # fmt: skip
    with sessions() as s:
        got = {r.job_id: r.compute_cny for r in s.scalars(select(UsageRecord))}
    assert got[cheap["id"]] == (8 * Decimal("1.75") + 8 * after).quantize(Decimal("0.01"))
    assert got[plain["id"]] == _rated(book, start, end)  # the offer does not price other work
    _verify_cli(db_url)


def test_a_budget_counts_a_preemptible_job_at_its_idle_estimate(
    client: TestClient, alice: Any, operator: Any, body: Callable[..., dict[str, Any]]
) -> None:
    def quota(budget: str) -> None:
        r = client.put("/v1/quotas/alice", headers=operator.headers,
                       json={"cohort": "uni", "quota_scu_per_h": 100,
                             "budget_cny_per_month": budget})  # fmt: skip
        assert r.status_code == 200, r.text

    def refused(**kw: Any) -> Decimal:
        r = client.post("/v1/jobs", json=body(**kw), headers=alice.headers)
        assert r.status_code == 402, r.text
        return Decimal(r.json()["detail"]["would_be_cny"])

    quota("1.00")
    posted, idle = refused(), refused(**PREEMPTIBLE)
    assert Decimal(0) < idle < posted and abs(idle * 2 - posted) <= Decimal("0.50")
    quota(str(idle))  # room for exactly the preemptible job
    r = client.post("/v1/jobs", json=body(**PREEMPTIBLE), headers=alice.headers)
    assert r.status_code == 201, r.text
    assert refused(priority="batch") == posted + idle  # the pending one counts at its estimate


def test_a_real_preemptible_run_is_placed_metered_and_charged_at_the_idle_price(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], db_url: str,
    alice: Any, operator: Any, submit: Callable[..., dict[str, Any]], tmp_path: Path,
) -> None:  # fmt: skip
    from suanwang.executors.local import LocalExecutor
    from suanwang.server.services.dispatcher import Dispatcher
    from suanwang.server.services.live import LiveNetwork
    from suanwang.server.services.reconciler import Reconciler

    _prepaid(client, sessions, operator, "800")
    live = LiveNetwork(
        net=app.state.network, signals=app.state.signals.current,
        executors={CENTER: LocalExecutor(tmp_path / "c", CENTER, cpus=64, cards=16)},
        clock=ticking(NOW),
    )  # fmt: skip
    job = submit(alice, command="sleep 2", duration_s=600, **PREEMPTIBLE)
    held = _held(client, alice)
    dispatcher, reconciler = Dispatcher(sessions, live), Reconciler(sessions, live)
    deadline = time.monotonic() + 30
    while True:
        dispatcher.run_once()
        reconciler.run_once()
        got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
        if got["charge_cny"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got["state"] == "succeeded" and got["charge_cny"] is not None, got
    with sessions() as s:
        [rec] = s.scalars(select(UsageRecord).where(UsageRecord.job_id == job["id"]))
        mine = (LedgerTransaction.kind == "release", LedgerTransaction.job_id == job["id"])
        release = s.scalar(select(LedgerTransaction).where(*mine))
    assert release is not None and Decimal(0) < release.amount < held
    seg = Segment(0, rec.center_id, rec.pool_model, rec.started_at, rec.ended_at, "succeeded", 1)
    book = book_for(app.state.network.scenario)
    rate = {"precision": Precision(rec.precision), "units": rec.units}
    idle = rate_segment(book, seg, preemptible=True, **rate)
    assert rec.compute_cny == idle.compute_cny <= rate_segment(book, seg, **rate).compute_cny
    assert Decimal(got["charge_cny"]) == rec.amount_cny <= held
    # the hold was lowered to the placement's estimate at the idle price: 10 min on 8 cards
    estimate = held - release.amount
    assert estimate < (8 * Decimal(600) / 3600 * book.max_posted(Precision.FP16) / 2) + 1
    _verify_cli(db_url)
