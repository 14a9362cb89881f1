"""Billing on the control plane (SQLite and PostgreSQL): holds, 402, charges, invoices,
settlement, ``ledger verify`` and the billing CLI."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pinned import NOW, PERIOD, ticking
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient
from typer.testing import CliRunner

from suanwang.billing import ledger
from suanwang.billing.pricing import book_for
from suanwang.billing.rating import Segment, rate_segment
from suanwang.cli import app as cli
from suanwang.core.hardware import Precision
from suanwang.core.lifecycle import JobState
from suanwang.server.database.models import (
    Account,
    JobEvent,
    JobRow,
    LedgerPosting,
    LedgerTransaction,
    Tenant,
    TenantRole,
    UsageRecord,
)
from suanwang.server.models.billing.accounts import ensure_accounts, lock_consumer, topup
from suanwang.server.models.billing.config import get_config, set_config
from suanwang.server.models.billing.settle import settle_finished, settle_job
from suanwang.server.models.billing.verify import verify
from suanwang.server.models.centers import grant_centers
from suanwang.server.models.jobs import transition
from suanwang.server.models.tenants import create_tenant

runner = CliRunner()
CENTER = "zhangjiakou"  # has A100s


def _require(sessions: sessionmaker[Session], on: bool = True) -> None:
    with sessions.begin() as s:
        set_config(session=s, billing_required=on, now=NOW)


def _topup(client: TestClient, op: Any, tenant: str, amount: str, key: str | None = None) -> Any:
    headers = op.headers | ({"Idempotency-Key": key} if key else {})
    return client.post(
        "/v1/billing/topups", json={"tenant": tenant, "amount_cny": amount}, headers=headers
    )


def _run(
    sessions: sessionmaker[Session], job_id: str, minutes: int, end: JobState = JobState.SUCCEEDED
) -> None:
    """Place ``job_id`` on CENTER's A100s, run it for the ``minutes`` before NOW and end it."""
    start = NOW - timedelta(minutes=minutes)
    with sessions.begin() as s:
        job = s.get_one(JobRow, job_id)
        transition(
            session=s, job=job, to=JobState.SCHEDULED, now=start,
            detail={"center": CENTER, "pool": "a100"},
            updates={"center_id": CENTER, "pool_model": "a100"},
        )  # fmt: skip
        transition(session=s, job=job, to=JobState.RUNNING, now=start)
        transition(session=s, job=job, to=end, now=NOW)


def _expected_charge(
    app: FastAPI, sessions: sessionmaker[Session], job_id: str, units: int = 8
) -> Decimal:
    """The charge recomputed from the job's events with the pure rating rules."""
    with sessions() as s:
        evs = list(
            s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        )
    run = next(e for e in evs if e.to_state == "running")
    seg = Segment(0, CENTER, "a100", run.at, evs[-1].at, evs[-1].to_state, run.id)
    book = book_for(app.state.network.scenario)
    return rate_segment(book, seg, precision=Precision.FP16, units=units).amount_cny


def _settle(app: FastAPI, sessions: sessionmaker[Session]) -> int:
    return settle_finished(sessions, app.state.network, now=NOW)


def _verify(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as s:
        return verify(session=s)


def test_without_enough_balance_a_submit_is_402_and_nothing_is_stored(
    client: TestClient, sessions: sessionmaker[Session], alice: Any, operator: Any,
    body: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    _require(sessions)
    r = client.post("/v1/jobs", json=body(), headers=alice.headers)
    assert r.status_code == 402, r.text
    detail = r.json()["detail"]
    assert detail["error"] == "insufficient_balance"
    assert Decimal(detail["required_cny"]) > 0 and detail["available_cny"] == "0.00"
    assert "top up" in detail["message"]
    assert client.get("/v1/jobs", headers=alice.headers).json()["items"] == []
    assert _topup(client, operator, "alice", "1.00").status_code == 201
    again = client.post("/v1/jobs", json=body(), headers=alice.headers)
    assert again.status_code == 402 and again.json()["detail"]["available_cny"] == "1.00"
    # operators are never asked to prepay
    assert client.post("/v1/jobs", json=body(), headers=operator.headers).status_code == 201
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(JobRow)) == 1
    assert _verify(sessions) == []


def test_hold_charge_release_invoice_and_settlement_reconcile_to_the_fen(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    operator: Any, make_tenant: Callable[..., Any], submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    _require(sessions)
    provider = make_tenant(TenantRole.PROVIDER, "north-dc")
    with sessions.begin() as s:
        grant_centers(session=s, tenant=s.get_one(Tenant, provider.id), centers=[CENTER], now=NOW)
    assert _topup(client, operator, "alice", "5000").status_code == 201
    job = submit(alice)  # 8 cards x 2 h = 16 SCU
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    hold = Decimal(bal["held_cny"])
    assert hold > 0 and Decimal(bal["prepaid_cny"]) == Decimal("5000.00") - hold
    assert bal["billing_required"] is True and bal["commission_rate"] == "0.08"

    _run(sessions, job["id"], minutes=90)
    assert _settle(app, sessions) == 1
    charge = _expected_charge(app, sessions, job["id"])
    assert Decimal("0") < charge <= hold
    got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert Decimal(got["charge_cny"]) == charge
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    assert (bal["held_cny"], Decimal(bal["prepaid_cny"])) == ("0.00", Decimal("5000") - charge)

    inv = client.get(f"/v1/billing/invoices/{PERIOD}", headers=alice.headers).json()
    assert Decimal(inv["total_cny"]) == charge and inv["topups_cny"] == "5000.00"
    [line] = inv["lines"]
    assert line["job_id"] == job["id"] and Decimal(line["amount_cny"]) == charge
    assert line["centers"] == [CENTER] and abs(Decimal(line["scu"]) - 12) < Decimal("0.01")
    with sessions() as s:  # invoice line -> usage records -> the run's event
        recs = list(
            s.scalars(select(UsageRecord).where(UsageRecord.id.in_(line["usage_record_ids"])))
        )
        assert [r.job_id for r in recs] == [job["id"]] and recs[0].amount_cny == charge
        assert s.get_one(JobEvent, recs[0].run_event_id).to_state == "running"
    text = client.get(f"/v1/billing/invoices/{PERIOD}?format=csv", headers=alice.headers)
    assert text.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(text.text)))
    assert rows[1][0] == job["id"] and rows[-1][:1] == ["total"] and Decimal(rows[-1][3]) == charge

    st = client.get(f"/v1/billing/settlements/{PERIOD}", headers=operator.headers).json()
    commission = (charge * Decimal("0.08")).quantize(Decimal("0.01"))
    assert Decimal(st["charges_cny"]) == charge and Decimal(st["commission_cny"]) == commission
    [p] = st["providers"]
    assert p["provider"] == "north-dc" and Decimal(p["payout_cny"]) == charge - commission
    mine = client.get(f"/v1/billing/settlements/{PERIOD}", headers=provider.headers).json()
    assert mine["providers"] == [p] and "commission_cny" not in mine
    assert client.get(f"/v1/billing/settlements/{PERIOD}", headers=alice.headers).status_code == 403
    assert _verify(sessions) == []


def test_cancel_and_failure_release_the_hold(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    operator: Any, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    _require(sessions)
    _topup(client, operator, "alice", "2000")
    pending, failing = submit(alice), submit(alice)
    assert client.post(f"/v1/jobs/{pending['id']}/cancel", headers=alice.headers).status_code == 200
    _run(sessions, failing["id"], minutes=10, end=JobState.FAILED)
    assert _settle(app, sessions) == 2
    charge = _expected_charge(app, sessions, failing["id"])
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    assert bal["held_cny"] == "0.00" and Decimal(bal["prepaid_cny"]) == Decimal(2000) - charge
    got = client.get(f"/v1/jobs/{pending['id']}", headers=alice.headers).json()
    assert got["charge_cny"] == "0.00"  # cancelled before it ran: nothing charged
    assert _verify(sessions) == []


def test_postpaid_when_billing_is_not_required(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    job = submit(alice)  # no top-up: a fresh database does not require prepayment
    _run(sessions, job["id"], minutes=30)
    _settle(app, sessions)
    charge = _expected_charge(app, sessions, job["id"])
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    assert bal["prepaid_cny"] == "0.00" and Decimal(bal["owed_cny"]) == charge > 0
    assert _verify(sessions) == []


def test_metering_and_charging_are_idempotent(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    job = submit(alice)
    _run(sessions, job["id"], minutes=20)
    assert _settle(app, sessions) == 1
    assert _settle(app, sessions) == 0
    with sessions.begin() as s:  # even when asked directly, a charged job is not charged again
        row = s.get_one(JobRow, job["id"])
        config = get_config(session=s)
        assert settle_job(session=s, job=row, net=app.state.network, config=config, now=NOW) is None
        row.billed_at = None  # pretend the mark was lost: the unique refs still hold
        s.flush()
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"), s.begin_nested():
            settle_job(session=s, job=row, net=app.state.network, config=config, now=NOW)
        s.rollback()
    with sessions() as s:
        n_tx = s.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.kind == "charge")
        )
        n_use = s.scalar(select(func.count()).select_from(UsageRecord))
    assert (n_tx, n_use) == (1, 1)
    assert _verify(sessions) == []


def test_topup_rules(client: TestClient, alice: Any, operator: Any) -> None:
    assert _topup(client, alice, "alice", "10").status_code == 403
    bad = _topup(client, operator, "alice", "10.001")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "amount_cny"]
    assert "more than 2 decimals" in bad.json()["detail"][0]["msg"]
    assert _topup(client, operator, "nobody", "10").status_code == 404
    for _ in range(2):
        r = _topup(client, operator, "alice", "10.50", key="pay-1")
        assert r.status_code == 201
    assert r.json()["replayed"] is True
    assert _topup(client, operator, "alice", "11", key="pay-1").status_code == 409
    bal = client.get("/v1/billing/balance?tenant=alice", headers=operator.headers).json()
    assert bal["prepaid_cny"] == "10.50"
    assert client.get("/v1/billing/balance?tenant=alice", headers=alice.headers).status_code == 403
    assert client.get("/v1/billing/invoices/2026-13", headers=alice.headers).status_code == 422
    prices = client.get(f"/v1/billing/prices/{CENTER}", headers=alice.headers).json()
    assert any(
        p["model"] == "a100" and len(p["cny_per_scu_by_hour"]) == 24 for p in prices["prices"]
    )
    assert client.get("/v1/billing/prices/atlantis", headers=alice.headers).status_code == 404


def test_billing_cli_and_ledger_verify(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], db_url: str,
    alice: Any, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    r = runner.invoke(cli, ["billing", "topup", "alice", "300", "--db", db_url, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["balance"]["prepaid_cny"] == "300.00"
    r = runner.invoke(
        cli, ["billing", "configure", "--require", "--commission", "0.05", "--db", db_url, "--json"]
    )
    assert json.loads(r.stdout) == {
        "billing_required": True, "commission_rate": "0.05", "energy_pass_through": False,
        "token_value_cny_per_million": "2.00", "idle_discount": "0.50",
    }  # fmt: skip
    assert (
        runner.invoke(
            cli, ["billing", "configure", "--commission", "0.2", "--db", db_url]
        ).exit_code
        == 2
    )
    job = submit(alice, resources={"cpus": 8, "count": 1, "accelerator": "any", "mem_gb": 64})
    _run(sessions, job["id"], minutes=60)  # charged by the CLI's own settling pass
    r = runner.invoke(cli, ["billing", "settle", "--period", PERIOD, "--db", db_url, "--json"])
    assert r.exit_code == 0, r.output
    with sessions() as s:  # the CLI charges at the real time: its statements are of that month
        charged = s.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "charge"))
        period = charged.one().created_at.strftime("%Y-%m")
    r = runner.invoke(
        cli, ["billing", "invoice", "alice", "--period", period, "--db", db_url, "--json"]
    )
    assert r.exit_code == 0, r.output
    inv = json.loads(r.stdout)
    charge = _expected_charge(app, sessions, job["id"], units=1)
    assert Decimal(inv["total_cny"]) == charge and inv["lines"][0]["job_id"] == job["id"]
    assert Decimal(inv["lines"][0]["amount_cny"]) == charge
    r = runner.invoke(
        cli, ["billing", "invoice", "alice", "--period", period, "--db", db_url, "--csv"]
    )
    assert job["id"] in r.stdout and r.stdout.startswith("job_id,")
    r = runner.invoke(cli, ["billing", "settle", "--period", period, "--db", db_url, "--json"])
    st = json.loads(r.stdout)
    payouts = sum(Decimal(p["payout_cny"]) for p in st["providers"])
    assert Decimal(st["charges_cny"]) == charge == payouts + Decimal(st["commission_cny"])
    assert st["providers"][0]["provider"] == "platform"  # nobody owns the center
    assert Decimal(st["commission_cny"]) == (charge * Decimal("0.05")).quantize(Decimal("0.01"))
    for bad in (["billing", "topup", "alice", "0"], ["billing", "topup", "ghost", "3"],
                ["billing", "settle", "--period", "2026/11"]):  # fmt: skip
        r = runner.invoke(cli, [*bad, "--db", db_url])
        assert r.exit_code == 2 and "error:" in r.stderr, r.output

    ok = runner.invoke(cli, ["ledger", "verify", "--db", db_url])
    assert ok.exit_code == 0 and "ledger ok" in ok.stdout
    with sessions.begin() as s:  # break two invariants behind the ledger's back
        s.execute(
            update(Account)
            .where(Account.id == ledger.prepaid(alice.id))
            .values(balance=Account.balance + Decimal("1"))
        )
        tx = s.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "charge")).one()
        tx.commission = tx.commission  # unchanged
        s.add(
            LedgerPosting(
                transaction_id=tx.id, account_id=ledger.PLATFORM_COMMISSION, amount=Decimal("0.01")
            )
        )
    bad = runner.invoke(cli, ["ledger", "verify", "--db", db_url])
    assert bad.exit_code == 1
    assert f"account {ledger.prepaid(alice.id)}: balance" in bad.stderr
    assert f"transaction {tx.id} (charge:{job['id']}): postings sum to 0.01" in bad.stderr
    assert "providers + commission" in bad.stderr


def test_end_to_end_a_real_job_is_held_charged_and_released(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    operator: Any, submit: Callable[..., dict[str, Any]], tmp_path: Path,
) -> None:  # fmt: skip
    from suanwang.executors.local import LocalExecutor
    from suanwang.server.services.dispatcher import Dispatcher
    from suanwang.server.services.live import LiveNetwork
    from suanwang.server.services.reconciler import Reconciler

    _require(sessions)
    _topup(client, operator, "alice", "800")
    live = LiveNetwork(
        net=app.state.network, signals=app.state.signals.current,
        executors={CENTER: LocalExecutor(tmp_path / "c", CENTER, cpus=64, cards=16)},
        clock=ticking(NOW),
    )  # fmt: skip
    r = client.post("/v1/billing/quotas", headers=operator.headers,
                    json={"tenant": "alice", "card_hours": "0", "tokens": 1_000_000})  # fmt: skip
    assert r.status_code == 201, r.text
    # an inference job that reports the tokens it served, as a model server would
    serve = (
        """echo '{"tokens": 30000}' >> "$SUANWANG_USAGE_FILE"; sleep 1.2; """
        """echo '{"tokens": 10000}' >> "$SUANWANG_USAGE_FILE" """
    )
    job = submit(alice, kind="inference", command=serve, duration_s=600)
    dispatcher, reconciler = Dispatcher(sessions, live), Reconciler(sessions, live)
    import time

    deadline = time.monotonic() + 30
    while True:
        dispatcher.run_once()
        reconciler.run_once()
        got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
        if got["charge_cny"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got["state"] == "succeeded" and got["charge_cny"] is not None
    bal = client.get("/v1/billing/balance", headers=alice.headers).json()
    assert bal["held_cny"] == "0.00"
    assert Decimal(bal["prepaid_cny"]) == Decimal("800") - Decimal(got["charge_cny"])
    with sessions() as s:
        [rec] = s.scalars(select(UsageRecord).where(UsageRecord.job_id == job["id"]))
        # the reconciler lowered the hold once the dispatcher had placed the job
        release = s.scalar(
            select(LedgerTransaction).where(
                LedgerTransaction.kind == "release", LedgerTransaction.job_id == job["id"]
            )
        )
    assert rec.center_id == CENTER and rec.seconds >= Decimal("1") and rec.scu > 0
    assert release is not None and release.amount > 0
    # the run's tokens were metered with it and its free tokens used for its compute
    assert rec.tokens == 40_000
    [line] = client.get(f"/v1/billing/invoices/{PERIOD}", headers=alice.headers).json()["lines"]
    assert line["tokens"] == 40_000
    assert line["free_tokens"] == (40_000 if rec.compute_cny > 0 else 0)
    assert line["free_cny"] == str(min(rec.compute_cny, Decimal("0.08")))  # 40k x 2.00/M
    assert _verify(sessions) == []


def test_billing_routes_survive_generated_requests(
    client: TestClient, app: FastAPI, alice: Any, operator: Any
) -> None:
    """Schemathesis over /v1/billing only, as a consumer and as an operator (whose requests
    reach the database): no 5xx, documented codes and schemas, invalid input refused."""
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.config import SchemathesisConfig
    from schemathesis.python.asgi import shutdown_lifespans
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        positive_data_acceptance,
        response_schema_conformance,
        status_code_conformance,
    )

    always = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    codes = {"positive_data_acceptance": ["2xx", 401, 403, 404, 409],
             }  # fmt: skip
    config = {"checks": {k: {"expected-statuses": v} for k, v in codes.items()}}

    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", app, config=SchemathesisConfig.from_dict(config)
    )
    ran = 0
    try:
        for result in schema.get_all_operations():
            op = result.ok()
            if not op.path.startswith("/v1/billing"):
                continue
            for who in (alice, operator):
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    # negative requests: no 5xx and documented answers (schemathesis counts
                    # unknown query parameters as invalid; the API refuses them too, a 422)
                    extra = [positive_data_acceptance] if mode is GenerationMode.POSITIVE else []
                    _check(op, mode, who.headers, [*always, *extra])
                    ran += 1
    finally:
        shutdown_lifespans()
    assert ran == 8 * 2 * 2  # balance, topups, payouts, invoices, settlements, prices, quotas (2)


def _check(op: Any, mode: Any, headers: dict[str, str], checks: list[Any]) -> None:
    from hypothesis import HealthCheck, given, settings

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=15, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def check(case: Any) -> None:
        case.validate_response(case.call(headers=headers), checks=checks)

    check()


def test_a_job_the_scenario_cannot_rate_does_not_hold_up_the_others(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    submit: Callable[..., dict[str, Any]], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    odd, fine = submit(alice), submit(alice)
    with sessions.begin() as s:  # placed on a center the served scenario does not have
        job = s.get_one(JobRow, odd["id"])
        where = {"center_id": "atlantis", "pool_model": "a100"}
        detail = {"center": "atlantis", "pool": "a100"}
        transition(session=s, job=job, to=JobState.SCHEDULED, detail=detail, updates=where,
                   now=NOW - timedelta(minutes=5))  # fmt: skip
        transition(session=s, job=job, to=JobState.RUNNING, now=NOW - timedelta(minutes=5))
        transition(session=s, job=job, to=JobState.SUCCEEDED, now=NOW)
    _run(sessions, fine["id"], minutes=5)
    assert _settle(app, sessions) == 1
    assert f"cannot charge job {odd['id']}" in caplog.text and "atlantis" in caplog.text
    got = client.get(f"/v1/jobs/{odd['id']}", headers=alice.headers).json()
    assert got["charge_cny"] is None
    assert client.get(f"/v1/jobs/{fine['id']}", headers=alice.headers).json()["charge_cny"]
    assert _verify(sessions) == []


def test_accounts_are_made_once_and_an_existing_ones_balance_is_kept(
    sessions: sessionmaker[Session],
) -> None:
    """``ensure_accounts`` inserts only the accounts missing (found ones are looked up, not
    written again) and ``lock_consumer`` makes a new tenant's other two accounts at its first
    charge or hold, and locks them, returning the prepaid balance."""
    with sessions.begin() as s:
        tenant, _ = create_tenant(session=s, name="accounts-once", role=TenantRole.CONSUMER,
                                  now=NOW)  # fmt: skip
        topup(session=s, tenant=tenant, amount=Decimal("12.34"), key="accounts-once", now=NOW)
        tid = tenant.id
    held, postpaid, prepaid = ledger.held(tid), ledger.postpaid(tid), ledger.prepaid(tid)
    later = NOW + timedelta(hours=1)
    with sessions.begin() as s:
        ensure_accounts(session=s, account_ids=[prepaid, prepaid], now=later)  # found
        assert lock_consumer(s, tid, now=later) == Decimal("12.34")
        ensure_accounts(session=s, account_ids=[], now=later)  # nothing asked: nothing done
    with sessions() as s:
        found = s.execute(
            select(Account.id, Account.created_at, Account.balance).where(Account.tenant_id == tid)
        ).all()
    made = {a: at.replace(tzinfo=None) for a, at, _ in found}
    assert made == {
        prepaid: NOW.replace(tzinfo=None),  # made by the top-up, not again
        held: later.replace(tzinfo=None),
        postpaid: later.replace(tzinfo=None),
    }
    assert {a: b for a, _, b in found} == {held: 0, postpaid: 0, prepaid: Decimal("12.34")}
