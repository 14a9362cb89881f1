"""Trial quotas, the hold lowered at placement and energy pass-through on the control plane
(SQLite and PostgreSQL): API, CLI, invoices, settlement and ``ledger verify``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from pinned import NOW, PERIOD
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient
from typer.testing import CliRunner

from suanwang.billing import ledger, quotas
from suanwang.billing.money import cents, cents_up
from suanwang.billing.pricing import book_for
from suanwang.billing.rating import Segment, rate_segment
from suanwang.cli import app as cli
from suanwang.core.hardware import Precision
from suanwang.core.lifecycle import JobState
from suanwang.server.database.models import (
    JobEvent,
    JobRow,
    LedgerTransaction,
    QuotaGrant,
    QuotaUse,
    Tenant,
    TenantRole,
    UsageRecord,
)
from suanwang.server.models.billing.accounts import post
from suanwang.server.models.billing.config import set_config
from suanwang.server.models.billing.holds import lower_holds, open_hold, placement_estimate
from suanwang.server.models.billing.settle import settle_finished, settle_job, unbilled
from suanwang.server.models.billing.verify import verify
from suanwang.server.models.centers import grant_centers
from suanwang.server.models.jobs import transition

runner = CliRunner()
CENTER = "zhangjiakou"  # has A100s


def _require(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        set_config(session=s, billing_required=True, now=NOW)


def _topup(client: TestClient, op: Any, tenant: str, amount: str) -> None:
    r = client.post(
        "/v1/billing/topups", json={"tenant": tenant, "amount_cny": amount}, headers=op.headers
    )
    assert r.status_code == 201, r.text


def _grant(client: TestClient, op: Any, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/billing/quotas", json=body, headers=op.headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _place(sessions: sessionmaker[Session], job_id: str, start: datetime | None = None) -> None:
    """Place the job on CENTER's A100s at NOW (to start at ``start``)."""
    with sessions.begin() as s:
        detail: dict[str, Any] = {"center": CENTER, "pool": "a100"}
        if start is not None:
            detail["start_at"] = start.isoformat()
        transition(
            session=s, job=s.get_one(JobRow, job_id), to=JobState.SCHEDULED, detail=detail,
            updates={"center_id": CENTER, "pool_model": "a100"}, now=NOW,
        )  # fmt: skip


def _run(
    sessions: sessionmaker[Session], job_id: str, start: datetime, end: datetime, tokens: int = 0
) -> None:
    """Run a job (placed at ``start`` if it was not) from ``start`` to ``end`` and end it, the
    run reporting ``tokens`` served."""
    with sessions.begin() as s:
        job = s.get_one(JobRow, job_id)
        if job.state == JobState.PENDING.value:
            transition(
                session=s, job=job, to=JobState.SCHEDULED, now=start,
                detail={"center": CENTER, "pool": "a100"},
                updates={"center_id": CENTER, "pool_model": "a100"},
            )  # fmt: skip
        transition(session=s, job=job, to=JobState.RUNNING, now=start)
        usage = {"usage": {"tokens": tokens}} if tokens else None
        transition(session=s, job=job, to=JobState.SUCCEEDED, detail=usage, now=end)


def _rated(app: FastAPI, start: datetime, end: datetime, units: int = 8, **kw: Any) -> Any:
    book = book_for(app.state.network.scenario)
    seg = Segment(0, CENTER, "a100", start, end, "succeeded", 1)
    return rate_segment(book, seg, precision=Precision.FP16, units=units, **kw)


def _verify(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as s:
        return verify(session=s)


def test_free_card_hours_are_consumed_first_and_invoices_show_free_and_charged_parts(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    operator: Any, make_tenant: Callable[..., Any], submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    _require(sessions)
    provider = make_tenant(TenantRole.PROVIDER, "north-dc")
    with sessions.begin() as s:
        grant_centers(session=s, tenant=s.get_one(Tenant, provider.id), centers=[CENTER], now=NOW)
    _topup(client, operator, "alice", "5000")
    # 4 card-hours without expiry, then 6 expiring (used first although granted later), and
    # an expired grant that is never used
    _grant(client, operator, tenant="alice", card_hours="4", storage_gb_months="1", tokens=1000)
    _grant(client, operator, tenant="alice", card_hours="6", expires="2999-12-31")
    _grant(client, operator, tenant="alice", card_hours="100", expires="2020-01-01")
    assert client.post("/v1/billing/quotas", json={"tenant": "alice", "card_hours": "1"},
                       headers=alice.headers).status_code == 403  # fmt: skip
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    assert bal["trial"] == {"card_hours_left": "10.000000", "storage_gb_months_left": "1.000000",
                            "tokens_left": 1000, "free_cny": "0.00"}  # fmt: skip

    first, second = submit(alice), submit(alice)  # 8 cards each
    t0 = NOW - timedelta(hours=3)
    _run(sessions, first["id"], t0, t0 + timedelta(hours=1))  # 8 card-hours: all free
    assert settle_finished(sessions, app.state.network, now=NOW) == 1
    grants = client.get("/v1/billing/quotas", headers=alice.headers).json()["grants"]
    assert [g["card_hours_used"] for g in grants[:2]] == ["2.000000", "6.000000"]
    _run(sessions, second["id"], t0, t0 + timedelta(minutes=30))  # 4: 2 free, 2 charged
    assert settle_finished(sessions, app.state.network, now=NOW) == 1

    full = _rated(app, t0, t0 + timedelta(hours=1)).compute_cny
    half = _rated(app, t0, t0 + timedelta(minutes=30)).compute_cny
    free_second = cents(half * 2 / 4)
    got = [client.get(f"/v1/jobs/{j['id']}", headers=alice.headers).json()["charge_cny"]
           for j in (first, second)]  # fmt: skip
    assert got == ["0.00", str(half - free_second)]
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    assert bal["held_cny"] == "0.00"
    assert Decimal(bal["prepaid_cny"]) == Decimal(5000) - (half - free_second)
    assert bal["trial"]["card_hours_left"] == "0.000000"
    assert Decimal(bal["trial"]["free_cny"]) == full + free_second

    q = client.get("/v1/billing/quotas", headers=alice.headers).json()
    used = [(g["card_hours_used"], g["expired"]) for g in q["grants"]]
    assert used == [("4.000000", False), ("6.000000", False), ("0.000000", True)]
    # storage: no data staged, none used
    assert q["grants"][0]["storage_gb_months_used"] == "0.000000"

    inv = client.get(f"/v1/billing/invoices/{PERIOD}", headers=alice.headers).json()
    a, b = inv["lines"]
    assert (a["usage_cny"], a["free_cny"], a["amount_cny"]) == (str(full), str(full), "0.00")
    assert (b["usage_cny"], b["free_cny"], b["free_card_hours"]) == (
        str(half), str(free_second), "2.000000")  # fmt: skip
    assert Decimal(b["amount_cny"]) == half - free_second
    assert Decimal(inv["total_cny"]) == half - free_second
    assert (
        Decimal(inv["usage_cny"])
        == full + half
        == Decimal(inv["total_cny"]) + Decimal(inv["free_cny"])
    )
    csv_text = client.get(f"/v1/billing/invoices/{PERIOD}?format=csv", headers=alice.headers).text
    # the free columns follow the job's (reservation columns come after them)
    assert ",usage_record_ids,usage_cny,free_cny,free_card_hours," in csv_text.splitlines()[0]

    # the provider is paid for every hour, free or not; the platform funds the free ones
    st = client.get(f"/v1/billing/settlements/{PERIOD}", headers=operator.headers).json()
    [p] = st["providers"]
    assert Decimal(st["charges_cny"]) == full + half
    assert Decimal(st["charges_cny"]) == Decimal(p["payout_cny"]) + Decimal(st["commission_cny"])
    assert Decimal(st["trials_cny"]) == full + free_second
    assert _verify(sessions) == []

    with sessions.begin() as s:  # a free hour handed out twice behind the ledger's back
        s.execute(
            update(QuotaGrant)
            .where(QuotaGrant.card_hours_used > 0)
            .values(card_hours_used=QuotaGrant.card_hours_used - 1)
        )
    problems = _verify(sessions)
    assert any("card_hours used 5.000000 but its uses sum to 6.000000" in p for p in problems)
    assert any("card_hours used 3.000000 but its uses sum to 4.000000" in p for p in problems)


def test_two_jobs_settling_at_once_never_use_the_same_free_hour_twice(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    operator: Any, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    _grant(client, operator, tenant="alice", card_hours="20")
    jobs = [submit(alice) for _ in range(8)]
    t0 = NOW - timedelta(hours=2)
    for j in jobs:  # 8 card-hours each: 64 wanted, 20 free
        _run(sessions, j["id"], t0, t0 + timedelta(hours=1))
    barrier = threading.Barrier(4)

    def settle() -> None:
        barrier.wait()
        settle_finished(sessions, app.state.network, now=NOW)

    threads = [threading.Thread(target=settle) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with sessions() as s:
        assert s.scalar(select(func.sum(QuotaUse.quantity))) == Decimal("20.000000")
        assert s.scalar(select(QuotaGrant.card_hours_used)) == Decimal("20.000000")
        n = s.scalar(select(func.count()).select_from(LedgerTransaction)
                     .where(LedgerTransaction.kind == "charge"))  # fmt: skip
    assert n == 8
    full = _rated(app, t0, t0 + timedelta(hours=1)).compute_cny
    owed = client.get("/v1/billing/balance", headers=alice.headers).json()["owed_cny"]
    free = cents(full * 4 / 8) + 2 * full  # two jobs free, one half free
    assert Decimal(owed) == 8 * full - free
    assert _verify(sessions) == []


def test_cli_grants_and_shows_quotas(
    client: TestClient, sessions: sessionmaker[Session], db_url: str, alice: Any
) -> None:
    args = ["billing", "quota", "grant", "alice", "--card-hours", "12.5",
            "--storage-gb-months", "3", "--tokens", "5000", "--expires", "2999-01-31",
            "--key", "promo-1", "--db", db_url, "--json"]  # fmt: skip
    for replayed in (False, True):
        r = runner.invoke(cli, args)
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert doc["replayed"] is replayed and doc["grant"]["card_hours"] == "12.500000"
        assert doc["grant"]["card_hours_used"] == "0.000000"
        assert doc["grant"]["expires_at"].startswith("2999-01-31T23:59:59")
    r = runner.invoke(cli, [*args[:5], "13", *args[6:]])  # the key, another grant
    assert r.exit_code == 2 and "already used" in r.stderr
    r = runner.invoke(cli, args[:-1])  # the replay again, as text
    assert r.stdout.strip() == ("alice: +12.500000 card-hours (12.500000 left), +3.000000 "
                                "GB-months (3.000000 left), +5000 tokens (5000 left)")  # fmt: skip
    r = runner.invoke(cli, ["billing", "quota", "show", "alice", "--db", db_url, "--json"])
    doc = json.loads(r.stdout)
    assert (doc["card_hours_left"], doc["tokens_left"], len(doc["grants"])) == (
        "12.500000", 5000, 1)  # fmt: skip
    text = runner.invoke(cli, ["billing", "quota", "show", "alice", "--db", db_url]).stdout
    assert "12.500000 card-hours" in text and "0.000000/12.500000" in text
    for bad, msg in (
        (["--card-hours", "-1"], "--card-hours '-1': must be >= 0"),
        (["--card-hours", "1.0000001"], "at most 6 decimals"),
        (["--card-hours", "x"], "not a number"),
        (["--card-hours", "1", "--expires", "31/12/2026"], "expected YYYY-MM-DD"),
    ):
        r = runner.invoke(cli, ["billing", "quota", "grant", "alice", *bad, "--db", db_url])
        assert r.exit_code == 2 and msg in r.stderr, r.output
    r = runner.invoke(cli, ["billing", "quota", "show", "ghost", "--db", db_url])
    assert r.exit_code == 2 and "no tenant 'ghost'" in r.stderr


def test_the_hold_is_lowered_to_the_estimate_where_the_job_was_placed(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    operator: Any, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    _require(sessions)
    _topup(client, operator, "alice", "5000")
    job = submit(alice)  # 8 cards x 2 h = 16 SCU, held at the dearest price anywhere
    hold = Decimal(client.get("/v1/billing/balance", headers=alice.headers).json()["held_cny"])
    net = app.state.network
    assert lower_holds(sessions, net, now=NOW) == 0  # not placed yet: nothing to lower
    start = NOW + timedelta(hours=1)
    _place(sessions, job["id"], start)
    assert lower_holds(sessions, net, now=NOW) == 1
    assert lower_holds(sessions, net, now=NOW) == 0  # once per job
    estimate = cents_up(_rated(app, start, start + timedelta(hours=2)).compute_cny)
    assert Decimal(0) < estimate < hold
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    assert Decimal(bal["held_cny"]) == estimate
    assert Decimal(bal["prepaid_cny"]) == Decimal(5000) - estimate
    with sessions() as s:
        rel = s.scalars(
            select(LedgerTransaction).where(
                LedgerTransaction.kind == "release", LedgerTransaction.job_id == job["id"]
            )
        ).one()
    assert rel.amount == hold - estimate and "estimate" in rel.memo
    assert _verify(sessions) == []
    # it runs 2.5 h: longer than estimated; the excess comes from prepaid
    _run(sessions, job["id"], start - timedelta(hours=3), start - timedelta(minutes=30))
    assert settle_finished(sessions, net, now=NOW) == 1
    charge = _rated(app, start - timedelta(hours=3), start - timedelta(minutes=30)).compute_cny
    assert charge > estimate
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    assert bal["held_cny"] == "0.00" and Decimal(bal["prepaid_cny"]) == Decimal(5000) - charge
    assert lower_holds(sessions, net, now=NOW) == 0  # charged: left alone
    assert _verify(sessions) == []

    with sessions.begin() as s:  # a release of more than the hold, behind the ledger's back
        s.execute(update(LedgerTransaction).where(LedgerTransaction.id == rel.id)
                  .values(amount=hold + 1))  # fmt: skip
    assert any(f"job {job['id']}: its releases give back" in p for p in _verify(sessions))


def test_lowering_holds_races_settlement_without_a_broken_ledger(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    operator: Any, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    _require(sessions)
    _topup(client, operator, "alice", "50000")
    jobs = [submit(alice) for _ in range(24)]
    net = app.state.network
    stop = threading.Event()

    def lower() -> None:
        while not stop.is_set():
            lower_holds(sessions, net, now=NOW)

    lowerer = threading.Thread(target=lower)
    lowerer.start()
    try:
        for i, j in enumerate(jobs):
            _place(sessions, j["id"])
            if i % 3:  # two in three end at once (racing the lowering); the rest stay placed
                t0 = NOW - timedelta(minutes=20 + i)
                _run(sessions, j["id"], t0, NOW)
                settle_finished(sessions, net, now=NOW)
    finally:
        stop.set()
        lowerer.join()
    # settlement skips a job the lowerer has locked (SKIP LOCKED): the next round settles it
    settle_finished(sessions, net, now=NOW)
    lower_holds(sessions, net, now=NOW)
    with sessions() as s:
        open_ = [j["id"] for i, j in enumerate(jobs) if not i % 3]
        held = sum(open_hold(session=s, job_id=j) for j in open_)
        released = s.scalar(select(func.count()).select_from(LedgerTransaction)
                            .where(LedgerTransaction.kind == "release"))  # fmt: skip
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    assert Decimal(bal["held_cny"]) == held > 0
    assert released is not None and released >= len(open_)
    assert _verify(sessions) == []


def test_energy_pass_through_charges_energy_at_cost_and_valley_hours_cost_less(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], db_url: str,
    alice: Any, operator: Any, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    r = runner.invoke(cli, ["billing", "configure", "--energy-pass-through", "--db", db_url,
                            "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["energy_pass_through"] is True
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    assert bal["energy_pass_through"] is True
    sc = app.state.network.scenario
    ratios = sc.province(sc.center(CENTER).province).tariff.hourly_ratios()
    valley, peak = ratios.index(min(ratios)), ratios.index(max(ratios))
    day = (NOW - timedelta(days=2)).replace(hour=0, minute=0, second=0)  # 08:00 in Shanghai

    def at(local_hour: int) -> datetime:
        return day + timedelta(hours=(local_hour - 8) % 24)

    low, high = submit(alice), submit(alice)
    _run(sessions, low["id"], at(valley), at(valley) + timedelta(hours=1))
    _run(sessions, high["id"], at(peak), at(peak) + timedelta(hours=1))
    assert settle_finished(sessions, app.state.network, now=NOW) == 2
    charges = {}
    for name, j, h in (("valley", low, valley), ("peak", high, peak)):
        passed = _rated(app, at(h), at(h) + timedelta(hours=1), energy_pass_through=True)
        posted = _rated(app, at(h), at(h) + timedelta(hours=1))
        got = Decimal(client.get(f"/v1/jobs/{j['id']}", headers=alice.headers).json()["charge_cny"])
        assert got == passed.compute_cny < posted.compute_cny
        assert passed.energy_cny > 0
        charges[name] = passed
    assert charges["valley"].energy_cny < charges["peak"].energy_cny
    assert charges["valley"].compute_cny < charges["peak"].compute_cny
    with sessions() as s:
        memos = list(s.scalars(select(LedgerTransaction.memo)
                               .where(LedgerTransaction.kind == "charge")))  # fmt: skip
    assert all("energy passed through" in m for m in memos)
    st = client.get(f"/v1/billing/settlements/{PERIOD}", headers=operator.headers).json()
    total = charges["valley"].compute_cny + charges["peak"].compute_cny
    payouts = sum(Decimal(p["payout_cny"]) for p in st["providers"])
    assert Decimal(st["charges_cny"]) == total == payouts + Decimal(st["commission_cny"])
    assert _verify(sessions) == []
    r = runner.invoke(cli, ["billing", "configure", "--no-energy-pass-through", "--db", db_url,
                            "--json"])  # fmt: skip
    assert json.loads(r.stdout)["energy_pass_through"] is False


def test_quotas_constants_are_what_the_docs_say() -> None:
    assert quotas.TRIALS == "platform:trials:commission" and quotas.HOURS_PER_MONTH == 730


def test_storage_is_charged_at_the_posted_price_and_free_gb_months_cover_it(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    operator: Any, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    _grant(client, operator, tenant="alice", card_hours="0", storage_gb_months="1.5")
    job = submit(alice, data_gb=100)
    t0 = NOW - timedelta(hours=80)
    _run(sessions, job["id"], t0, t0 + timedelta(hours=73))  # 100 GB x 0.1 month = 10
    assert settle_finished(sessions, app.state.network, now=NOW) == 1
    q = client.get("/v1/billing/quotas", headers=alice.headers).json()
    assert q["storage_gb_months_left"] == "0.000000" and q["free_cny"] == "0.45"
    [line] = client.get(f"/v1/billing/invoices/{PERIOD}", headers=alice.headers).json()["lines"]
    # 10 GB-months x 0.30 CNY = 3.00; 1.5 of them free: 0.45
    assert line["storage_cny"] == "3.00" and line["free_storage_gb_months"] == "1.500000"
    assert line["free_cny"] == "0.45"
    assert Decimal(line["amount_cny"]) == Decimal(line["usage_cny"]) - Decimal("0.45")
    with sessions() as s:
        [rec] = s.scalars(select(UsageRecord).where(UsageRecord.job_id == job["id"]))
    assert rec.storage_gb_months == Decimal("10.000000") and rec.storage_cny == Decimal("3.00")
    assert rec.amount_cny == rec.compute_cny + rec.transfer_cny + rec.storage_cny
    assert _verify(sessions) == []


def _placed_at(sessions: sessionmaker[Session], job_id: str, center: str, start: datetime) -> None:
    """Place the job at ``center`` (after losing its run there first, if it was placed)."""
    with sessions.begin() as s:
        job = s.get_one(JobRow, job_id)
        if job.state != JobState.PENDING.value:
            transition(session=s, job=job, to=JobState.LOST, detail={"center": job.center_id},
                       now=NOW)  # fmt: skip
            transition(session=s, job=job, to=JobState.PENDING, now=NOW,
                       updates={"center_id": None, "pool_model": None})  # fmt: skip
        transition(
            session=s, job=job, to=JobState.SCHEDULED, now=NOW,
            detail={"center": center, "pool": "a100", "start_at": start.isoformat()},
            updates={"center_id": center, "pool_model": "a100"},
        )  # fmt: skip


def _held(client: TestClient, who: Any) -> Decimal:
    return Decimal(client.get("/v1/billing/balance", headers=who.headers).json()["held_cny"])


def test_the_hold_follows_the_job_when_it_is_placed_again_after_a_failover(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    operator: Any, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    _require(sessions)
    _topup(client, operator, "alice", "5000")
    job = submit(alice)  # 8 cards x 2 h
    net = app.state.network
    book = book_for(net.scenario)
    start = NOW + timedelta(hours=1)

    def estimate(center: str) -> Decimal:
        seg = Segment(0, center, "a100", start, start + timedelta(hours=2), "succeeded", 1)
        return cents_up(rate_segment(book, seg, precision=Precision.FP16, units=8).amount_cny)

    hold = _held(client, alice)
    a100 = [c.id for c in net.scenario.centers if dict(c.inventory).get("a100")]
    cheap, dear = min(a100, key=estimate), max(a100, key=estimate)
    assert estimate(cheap) < estimate(dear) < hold
    _placed_at(sessions, job["id"], cheap, start)
    assert lower_holds(sessions, net, now=NOW) == 1
    assert _held(client, alice) == estimate(cheap)
    # lost there, placed again at the dear center: the hold goes up (from prepaid)
    _placed_at(sessions, job["id"], dear, start)
    assert lower_holds(sessions, net, now=NOW) == 1
    assert lower_holds(sessions, net, now=NOW) == 0  # once per placement
    assert _held(client, alice) == estimate(dear)
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    assert Decimal(bal["prepaid_cny"]) == Decimal(5000) - estimate(dear)
    assert _verify(sessions) == []
    # and down again when it moves back
    _placed_at(sessions, job["id"], cheap, start)
    assert lower_holds(sessions, net, now=NOW) == 1
    assert _held(client, alice) == estimate(cheap)
    with sessions() as s:
        releases = s.scalars(
            select(LedgerTransaction.amount)
            .where(LedgerTransaction.kind == "release", LedgerTransaction.job_id == job["id"])
            .order_by(LedgerTransaction.id)
        ).all()
    up = estimate(dear) - estimate(cheap)
    assert releases == [hold - estimate(cheap), -up, up]
    assert _verify(sessions) == []
    # it ends: the charge releases what is left of the hold
    _run(sessions, job["id"], start - timedelta(hours=3), start - timedelta(hours=1))
    assert settle_finished(sessions, net, now=NOW) == 1
    assert _held(client, alice) == 0 and _verify(sessions) == []


def test_a_dearer_re_placement_holds_no_more_than_prepaid_has(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    operator: Any, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    _require(sessions)
    net = app.state.network
    _topup(client, operator, "alice", "5000")
    job = submit(alice)
    start = NOW + timedelta(hours=1)
    with sessions() as s:
        row = s.get_one(JobRow, job["id"])
        a100 = [c.id for c in net.scenario.centers if dict(c.inventory).get("a100")]
        by_price = sorted(a100, key=lambda c: placement_estimate(
            job=row, net=net, center_id=c, model="a100", start=start))  # fmt: skip
    _placed_at(sessions, job["id"], by_price[0], start)
    assert lower_holds(sessions, net, now=NOW) == 1
    # alice's prepaid balance goes down to 1.00 (held for another job)
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    with sessions.begin() as s:
        spend = Decimal(bal["prepaid_cny"]) - Decimal("1.00")
        post(session=s, entry=ledger.hold(bal["tenant_id"], "other", spend), now=NOW)
    before = _held(client, alice)
    _placed_at(sessions, job["id"], by_price[-1], start)
    assert lower_holds(sessions, net, now=NOW) == 1
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    assert bal["prepaid_cny"] == "0.00" and _held(client, alice) == before + Decimal("1.00")
    assert _verify(sessions) == []


def test_free_tokens_cover_the_compute_of_runs_that_reported_serving_them(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    operator: Any, submit: Callable[..., dict[str, Any]], db_url: str,
) -> None:  # fmt: skip
    r = runner.invoke(cli, ["billing", "configure", "--token-value", "4.00", "--db",
                            db_url, "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["token_value_cny_per_million"] == "4.00"
    for bad in ("-1", "1000.01", "0.001", "x"):
        r = runner.invoke(cli, ["billing", "configure", "--token-value", bad, "--db",
                                db_url])  # fmt: skip
        assert r.exit_code == 2 and "--token-value" in r.stderr, (bad, r.output)
    _grant(client, operator, tenant="alice", card_hours="0", tokens=3_000_000)
    served, cheap = submit(alice), submit(alice, duration_s=60)
    t0 = NOW - timedelta(hours=5)
    _run(sessions, served["id"], t0, t0 + timedelta(hours=2), tokens=2_500_000)
    t1 = t0 + timedelta(hours=2)  # then the other (settled in the order they ended)
    _run(sessions, cheap["id"], t1, t1 + timedelta(minutes=1), tokens=1_000_000)
    assert settle_finished(sessions, app.state.network, now=NOW) == 2
    lines = {
        ln["job_id"]: ln
        for ln in client.get(f"/v1/billing/invoices/{PERIOD}", headers=alice.headers).json()[
            "lines"
        ]
    }
    big, small = lines[served["id"]], lines[cheap["id"]]
    # 2.5M tokens at 4.00 CNY a million are worth 10.00 of the first job's compute
    assert (big["tokens"], big["free_tokens"], big["free_cny"]) == (2_500_000, 2_500_000, "10.00")
    assert Decimal(big["amount_cny"]) == Decimal(big["usage_cny"]) - Decimal("10.00")
    # the second job served 1M but only 0.5M free tokens were left; its compute costs less
    # than they are worth, so they cover it whole
    assert small["tokens"] == 1_000_000 and small["free_tokens"] == 500_000
    assert small["free_cny"] == small["usage_cny"] and small["amount_cny"] == "0.00"
    q = client.get("/v1/billing/quotas", headers=alice.headers).json()
    assert q["tokens_left"] == 0 and q["grants"][0]["tokens_used"] == 3_000_000
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    assert bal["token_value_cny_per_million"] == "4.00"
    with sessions() as s:
        recs = {r.job_id: r for r in s.scalars(select(UsageRecord))}
    assert recs[served["id"]].tokens == 2_500_000 and recs[cheap["id"]].tokens == 1_000_000
    assert _verify(sessions) == []
    big_id, small_id = recs[served["id"]].id, recs[cheap["id"]].id
    with sessions.begin() as s:  # a record's tokens lowered, another's amount changed, behind
        s.execute(update(UsageRecord).where(UsageRecord.id == small_id).values(tokens=10))
        s.execute(update(UsageRecord).where(UsageRecord.id == big_id)
                  .values(storage_cny=Decimal("1.00")))  # fmt: skip
    problems = _verify(sessions)
    assert (
        f"usage record {small_id} of job {cheap['id']}: 500000.000000 free tokens used for "
        "10 tokens served" in problems
    )
    assert any(p.startswith(f"usage record {big_id} of job {served['id']}: amount") and
               "is not compute + transfer + storage" in p for p in problems)  # fmt: skip


def test_notes_in_a_state_neither_place_the_job_nor_cut_its_run_short(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    operator: Any, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    """A fence (``scheduled -> scheduled`` naming another center) does not reprice the hold
    or move the metered run; a checkpoint request (``running -> running``) mid-run does not
    restart the metered run."""
    _require(sessions)
    _topup(client, operator, "alice", "5000")
    job = submit(alice)
    net = app.state.network
    start = NOW - timedelta(hours=3)
    _place(sessions, job["id"], start)
    assert lower_holds(sessions, net, now=NOW) == 1
    held = Decimal(client.get("/v1/billing/balance", headers=alice.headers).json()["held_cny"])
    with sessions.begin() as s:
        fence = {"event": "fenced", "center": "zhongwei", "ref": "old-run"}
        s.add(JobEvent(job_id=job["id"], at=NOW, from_state="scheduled", to_state="scheduled",
                       detail=fence))  # fmt: skip
    assert lower_holds(sessions, net, now=NOW) == 0  # not a placement
    assert Decimal(client.get("/v1/billing/balance", headers=alice.headers).json()["held_cny"]) == (
        held
    )
    with sessions.begin() as s:
        row = s.get_one(JobRow, job["id"])
        transition(session=s, job=row, to=JobState.RUNNING, now=start)
        s.add(
            JobEvent(
                job_id=job["id"],
                at=start + timedelta(hours=1),
                from_state="running",
                to_state="running",
                detail={"event": "checkpoint_requested", "attempt": 0},
            )
        )
        s.flush()
        transition(session=s, job=row, to=JobState.SUCCEEDED, now=start + timedelta(hours=2))
    assert settle_finished(sessions, net, now=NOW) == 1
    with sessions() as s:
        [rec] = s.scalars(select(UsageRecord).where(UsageRecord.job_id == job["id"]))
    assert rec.center_id == CENTER and rec.seconds == Decimal("7200.000000")  # the whole run
    assert _verify(sessions) == []


def test_a_settlement_the_database_refuses_does_not_hold_up_the_others(
    app: FastAPI, sessions: sessionmaker[Session], alice: Any,
    submit: Callable[..., dict[str, Any]], monkeypatch: Any,
) -> None:  # fmt: skip
    from sqlalchemy.exc import DataError

    bad, good = submit(alice), submit(alice)
    for job in (bad, good):
        _run(sessions, job["id"], NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    real = settle_job

    def refuse(*, session: Session, job: JobRow, **kw: Any) -> Any:
        if job.id == bad["id"]:
            raise DataError("INSERT", {}, Exception("numeric field overflow"))
        return real(session=session, job=job, **kw)

    monkeypatch.setattr("suanwang.server.models.billing.settle.settle_job", refuse)
    assert settle_finished(sessions, app.state.network, now=NOW) == 1  # logged, the other charged
    with sessions() as s:
        assert unbilled(session=s, now=NOW) == [bad["id"]]
    assert _verify(sessions) == []
