"""Reservations on invoices and settlement statements (SQLite and PostgreSQL): paid bookings
and refunds are invoice lines of their own, counted in charges, payouts and commission, so that
invoices + trials == charges == payouts + commission to the fen; ``ledger verify`` checks
payments against bookings and refunds against payments."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from pinned import NOW, PERIOD
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient
from test_server_billing import _expected_charge, _require, _run, _settle, _topup, _verify
from typer.testing import CliRunner

from suanwang.billing import ledger
from suanwang.cli import app as cli
from suanwang.server.database.models import (
    LedgerPosting,
    LedgerTransaction,
    ReservationRow,
    Tenant,
    TenantRole,
)
from suanwang.server.models.billing.accounts import post
from suanwang.server.models.billing.payouts import due_to
from suanwang.server.models.centers import grant_centers

runner = CliRunner()
CENTER = "zhangjiakou"  # has A100s; owned by the provider below
OTHER = "zhongwei"  # has A100s; nobody owns it (the platform's)
H8 = NOW.replace(hour=8, minute=0)  # after the API's clock (06:30)
RATE = Decimal("0.08")


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _offer(client: TestClient, who: Any, center: str, units: int = 8) -> str:
    body = {"center": center, "model": "a100", "units": units, "price_cny_per_scu": "2.50",
            "start": _iso(H8), "end": _iso(H8 + timedelta(hours=10)),
            "type": "reserved"}  # fmt: skip
    r = client.post("/v1/offers", json=body, headers=who.headers)
    assert r.status_code == 201, r.text
    offer_id: str = r.json()["id"]
    return offer_id


def _book(client: TestClient, who: Any, offer: str, units: int, h0: int, h1: int) -> Any:
    body = {"offer_id": offer, "units": units, "start": _iso(H8 + timedelta(hours=h0)),
            "end": _iso(H8 + timedelta(hours=h1))}  # fmt: skip
    r = client.post("/v1/reservations", json=body, headers=who.headers)
    assert r.status_code == 201, r.text
    return r.json()


def _cancel(client: TestClient, who: Any, res: dict[str, Any]) -> None:
    r = client.delete(f"/v1/reservations/{res['id']}", headers=who.headers)
    assert r.status_code == 200 and r.json()["refunded"], r.text


def _payout(amount: Decimal) -> Decimal:
    return ledger.split_commission(amount, RATE)[1]


def _reconcile(client: TestClient, op: Any, sessions: sessionmaker[Session], period: str) -> Any:
    """The settlement of ``period``, after checking invoices (every tenant's) + trials ==
    charges == payouts + commission, to the fen."""
    st = client.get(f"/v1/billing/settlements/{period}", headers=op.headers).json()
    with sessions() as s:
        tenants = list(s.scalars(select(Tenant.id)))
    invoiced = sum(
        Decimal(client.get(f"/v1/billing/invoices/{period}?tenant={t}",
                           headers=op.headers).json()["total_cny"])
        for t in tenants
    )  # fmt: skip
    payouts = sum(Decimal(p["payout_cny"]) for p in st["providers"])
    charges = Decimal(st["charges_cny"])
    assert (
        invoiced + Decimal(st["trials_cny"]) == charges == payouts + Decimal(st["commission_cny"])
    )
    assert charges == sum(Decimal(st[k]) for k in ("jobs_cny", "reservations_cny", "refunds_cny"))
    return st


def _tx(sessions: sessionmaker[Session], ref: str) -> LedgerTransaction:
    with sessions() as s:
        tx = s.scalars(select(LedgerTransaction).where(LedgerTransaction.ref == ref)).one()
        s.expunge(tx)
        return tx


def test_invoice_lines_settlement_and_cli_with_jobs_reservations_and_refunds(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], db_url: str,
    alice: Any, bob: Any, operator: Any, make_tenant: Callable[..., Any],
    submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    _require(sessions)
    prov = make_tenant(TenantRole.PROVIDER, "north-dc")
    with sessions.begin() as s:
        grant_centers(session=s, tenant=s.get_one(Tenant, prov.id), centers=[CENTER], now=NOW)
    for who in ("alice", "bob"):
        assert _topup(client, operator, who, "5000").status_code == 201
    r = client.post("/v1/billing/quotas", json={"tenant": "alice", "card_hours": "2"},
                    headers=operator.headers)  # fmt: skip
    assert r.status_code == 201, r.text
    # jobs: alice's and bob's, both on the provider's center, charged at posted prices
    job_a, job_b = submit(alice), submit(bob)
    _run(sessions, job_a["id"], minutes=90)
    _run(sessions, job_b["id"], minutes=30)
    assert _settle(app, sessions) == 2
    charge_a = _expected_charge(app, sessions, job_a["id"])
    charge_b = _expected_charge(app, sessions, job_b["id"])
    # reservations: alice keeps one and cancels one on the provider's offer; bob books the
    # platform's own center (no owner)
    mine = _offer(client, prov, CENTER)
    ours = _offer(client, operator, OTHER)
    kept = _book(client, alice, mine, 4, 1, 4)
    dropped = _book(client, alice, mine, 2, 5, 7)
    _cancel(client, alice, dropped)
    other = _book(client, bob, ours, 3, 0, 2)
    a_kept, a_dropped, b_res = (Decimal(x["amount_cny"]) for x in (kept, dropped, other))
    assert min(a_kept, a_dropped, b_res) > 0

    inv = client.get(f"/v1/billing/invoices/{PERIOD}", headers=alice.headers).json()
    assert [ln["kind"] for ln in inv["lines"]] == ["charge", "reservation", "reservation", "refund"]
    job_line, kept_line, dropped_line, refund_line = inv["lines"]
    free = Decimal(job_line["free_cny"])
    assert free > 0 and job_line["job_id"] == job_a["id"] and job_line["reservation_id"] is None
    assert job_line["transaction_id"] == _tx(sessions, f"charge:{job_a['id']}").id
    assert Decimal(job_line["amount_cny"]) == charge_a - free
    assert kept_line | {"settled_at": None} == {
        "kind": "reservation", "job_id": None, "name": None, "priority": None, "settled_at": None,
        "transaction_id": kept["transaction_id"], "reservation_id": kept["id"],
        "amount_cny": kept["amount_cny"], "usage_cny": kept["amount_cny"], "scu": kept["scu"],
        "free_cny": "0.00", "free_card_hours": "0.000000", "free_storage_gb_months": "0.000000",
        "free_tokens": 0, "storage_cny": "0.00", "tokens": 0, "centers": [CENTER],
        "usage_record_ids": [], "offer_id": mine, "model": "a100",
        "precision": "fp16", "units": 4, "start": kept["start"], "end": kept["end"],
        "price_cny_per_scu": "2.5000",
    }  # fmt: skip
    assert dropped_line["reservation_id"] == refund_line["reservation_id"] == dropped["id"]
    assert Decimal(dropped_line["amount_cny"]) == a_dropped == -Decimal(refund_line["amount_cny"])
    assert Decimal(refund_line["scu"]) == -Decimal(dropped["scu"])
    refund_tx = _tx(sessions, f"refund:reservation:{dropped['id']}")
    assert refund_line["transaction_id"] == refund_tx.id and refund_tx.kind == "refund"
    # the refund gives back the commission too (its commission column negates the payment's)
    assert refund_tx.commission == -_tx(sessions, f"reservation:{dropped['id']}").commission != 0
    total = charge_a - free + a_kept
    assert (
        Decimal(inv["total_cny"]) == total == sum(Decimal(ln["amount_cny"]) for ln in inv["lines"])
    )
    assert Decimal(inv["usage_cny"]) == charge_a + a_kept and Decimal(inv["free_cny"]) == free
    assert (inv["reservations_cny"], inv["refunds_cny"]) == (str(a_kept + a_dropped),
                                                             str(-a_dropped))  # fmt: skip
    # CSV: the job's columns first, as before; then kind, transaction and booking
    text = client.get(f"/v1/billing/invoices/{PERIOD}?format=csv", headers=alice.headers).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["kind"] for r in rows] == ["charge", "reservation", "reservation", "refund", ""]
    assert rows[0]["job_id"] == job_a["id"] and rows[1]["reservation_id"] == kept["id"]
    assert rows[1]["centers"] == CENTER and rows[1]["units"] == "4" and rows[1]["job_id"] == ""
    assert rows[3]["amount_cny"] == refund_line["amount_cny"]
    assert rows[-1]["job_id"] == "total" and Decimal(rows[-1]["amount_cny"]) == total
    # bob: a job and a booking at the platform's center
    bob_inv = client.get(f"/v1/billing/invoices/{PERIOD}", headers=bob.headers).json()
    assert [ln["kind"] for ln in bob_inv["lines"]] == ["charge", "reservation"]
    assert Decimal(bob_inv["total_cny"]) == charge_b + b_res

    st = _reconcile(client, operator, sessions, PERIOD)
    assert Decimal(st["jobs_cny"]) == charge_a + charge_b
    assert Decimal(st["reservations_cny"]) == a_kept + a_dropped + b_res
    assert Decimal(st["refunds_cny"]) == -a_dropped
    assert Decimal(st["charges_cny"]) == charge_a + charge_b + a_kept + b_res
    assert (st["jobs"], st["reservations"], st["refunds"]) == (2, 3, 1)
    assert Decimal(st["trials_cny"]) == free
    by_name = {p["provider"]: p for p in st["providers"]}
    assert set(by_name) == {"north-dc", "platform"}
    north = by_name["north-dc"]
    assert Decimal(north["payout_cny"]) == (_payout(charge_a) + _payout(charge_b) + _payout(a_kept))
    assert Decimal(north["reservations_cny"]) == _payout(a_kept) + _payout(a_dropped)
    assert Decimal(north["refunds_cny"]) == -_payout(a_dropped)
    platform = by_name["platform"]
    assert (
        Decimal(platform["payout_cny"]) == Decimal(platform["reservations_cny"]) == _payout(b_res)
    )
    assert platform["refunds_cny"] == "0.00"
    # the provider sees its own statement, with its reservations
    theirs = client.get(f"/v1/billing/settlements/{PERIOD}", headers=prov.headers).json()
    assert theirs["providers"] == [north] and "charges_cny" not in theirs
    assert _verify(sessions) == []

    # the CLI prints the same documents
    r = runner.invoke(cli, ["billing", "invoice", "alice", "--period", PERIOD, "--db", db_url,
                            "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == inv
    r = runner.invoke(cli, ["billing", "invoice", "alice", "--period", PERIOD, "--db", db_url])
    assert r.exit_code == 0, r.output
    assert f"{kept['id']}  {kept['amount_cny']:>12} CNY  reservation 4 x a100 at {CENTER}" in (
        r.stdout
    )
    assert f"{dropped['id']}  {refund_line['amount_cny']:>12} CNY  refund 2 x a100" in r.stdout
    r = runner.invoke(cli, ["billing", "invoice", "alice", "--period", PERIOD, "--db", db_url,
                            "--csv"])  # fmt: skip
    assert r.exit_code == 0 and r.stdout == text
    r = runner.invoke(cli, ["billing", "settle", "--period", PERIOD, "--db", db_url, "--json"])
    assert r.exit_code == 0, r.output
    # the same document, but for what is due now: the API's clock (a fixed morning in 2025,
    # before the bookings start) is not the command's (today, after they ended)
    cli_st = json.loads(r.stdout)
    for doc in (cli_st, st):
        for p in doc["providers"]:
            p.pop("due_cny")
    assert cli_st == st
    r = runner.invoke(cli, ["billing", "settle", "--period", PERIOD, "--db", db_url])
    assert f"(2 jobs, 3 reservations {st['reservations_cny']} CNY, 1 refunds" in r.stdout
    ok = runner.invoke(cli, ["ledger", "verify", "--db", db_url])
    assert ok.exit_code == 0 and "ledger ok" in ok.stdout


def test_a_booking_paid_last_month_and_cancelled_this_month_and_any_mix_reconcile(
    client: TestClient, sessions: sessionmaker[Session], alice: Any, bob: Any, operator: Any,
    make_tenant: Callable[..., Any],
) -> None:  # fmt: skip
    prov = make_tenant(TenantRole.PROVIDER, "north-dc")
    with sessions.begin() as s:
        grant_centers(session=s, tenant=s.get_one(Tenant, prov.id), centers=[CENTER], now=NOW)
    mine = _offer(client, prov, CENTER, units=64)
    ours = _offer(client, operator, OTHER, units=64)
    early = _book(client, alice, mine, 5, 0, 3)
    # it was paid last month (back-dated); cancelled now, its refund is this month's
    this_month = datetime.strptime(PERIOD, "%Y-%m").replace(tzinfo=UTC)
    last = (this_month - timedelta(days=1)).strftime("%Y-%m")
    with sessions.begin() as s:
        s.execute(
            update(LedgerTransaction)
            .where(LedgerTransaction.id == early["transaction_id"])
            .values(created_at=this_month - timedelta(hours=1))
        )
    _cancel(client, alice, early)
    before = _reconcile(client, operator, sessions, last)
    assert before["reservations_cny"] == early["amount_cny"] and before["refunds_cny"] == "0.00"
    inv = client.get(f"/v1/billing/invoices/{PERIOD}", headers=alice.headers).json()
    assert [(ln["kind"], ln["amount_cny"]) for ln in inv["lines"]] == [
        ("refund", f"-{early['amount_cny']}")
    ]
    assert inv["total_cny"] == f"-{early['amount_cny']}"
    # a random mix of bookings at odd hours and unit counts (commission rounding), some
    # cancelled, by two consumers at two payees
    rng = random.Random(7)
    booked = []
    for _ in range(12):
        who = rng.choice([alice, bob])
        h0 = rng.randrange(0, 9)
        res = _book(client, who, rng.choice([mine, ours]), rng.randint(1, 5), h0,
                    rng.randint(h0 + 1, 10))  # fmt: skip
        booked.append((who, res))
        if rng.random() < 0.4:
            _cancel(client, who, res)
    st = _reconcile(client, operator, sessions, PERIOD)
    kept = sum(Decimal(r["amount_cny"]) for _, r in booked if not _cancelled(sessions, r))
    assert Decimal(st["charges_cny"]) == kept - Decimal(early["amount_cny"])
    assert _verify(sessions) == []


def _cancelled(sessions: sessionmaker[Session], res: dict[str, Any]) -> bool:
    with sessions() as s:
        return s.get_one(ReservationRow, res["id"]).cancelled_at is not None


def test_ledger_verify_checks_payments_against_bookings_and_refunds_against_payments(
    client: TestClient, sessions: sessionmaker[Session], alice: Any, operator: Any,
    make_tenant: Callable[..., Any],
) -> None:  # fmt: skip
    prov = make_tenant(TenantRole.PROVIDER, "north-dc")
    with sessions.begin() as s:
        grant_centers(session=s, tenant=s.get_one(Tenant, prov.id), centers=[CENTER], now=NOW)
    mine = _offer(client, prov, CENTER)
    kept = _book(client, alice, mine, 2, 0, 2)
    dropped = _book(client, alice, mine, 2, 3, 5)
    _cancel(client, alice, dropped)
    assert _verify(sessions) == []
    refund = _tx(sessions, f"refund:reservation:{dropped['id']}")
    with sessions.begin() as s:  # the booking's price changed behind the ledger's back
        s.get_one(ReservationRow, kept["id"]).amount_cny += Decimal("0.01")
    assert any(
        p.startswith(f"reservation reservation:{kept['id']}: {kept['amount_cny']} paid for a "
                     "booking of") for p in _verify(sessions)
    )  # fmt: skip
    with sessions.begin() as s:
        s.get_one(ReservationRow, kept["id"]).amount_cny -= Decimal("0.01")
        # a refund moved a fen from the provider to the commission (it still balances)
        for p in s.scalars(select(LedgerPosting).where(LedgerPosting.transaction_id == refund.id)):
            if p.account_id == ledger.PLATFORM_COMMISSION:
                p.amount -= Decimal("0.01")
            elif p.account_id == ledger.payable(prov.id):
                p.amount += Decimal("0.01")
    problems = _verify(sessions)
    assert any(f"refund {refund.ref}: " in p and "does not negate" in p for p in problems)
    with sessions.begin() as s:  # a refund for a booking that is not cancelled
        for p in s.scalars(select(LedgerPosting).where(LedgerPosting.transaction_id == refund.id)):
            if p.account_id == ledger.PLATFORM_COMMISSION:
                p.amount += Decimal("0.01")
            elif p.account_id == ledger.payable(prov.id):
                p.amount -= Decimal("0.01")
        s.get_one(ReservationRow, dropped["id"]).cancelled_at = None
    assert [p for p in _verify(sessions) if "refund" in p] == [
        f"refund {refund.ref}: reservation {dropped['id']} is not cancelled"
    ]
    with sessions.begin() as s:  # a cancelled paid booking without its refund
        s.get_one(ReservationRow, kept["id"]).cancelled_at = NOW
    assert f"reservation {kept['id']}: cancelled but its payment is not refunded" in _verify(
        sessions
    )


def test_providers_are_paid_out_what_is_due_never_more_and_statements_show_it(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], db_url: str,
    alice: Any, operator: Any, make_tenant: Callable[..., Any],
    submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    prov = make_tenant(TenantRole.PROVIDER, "north-dc")
    with sessions.begin() as s:
        grant_centers(session=s, tenant=s.get_one(Tenant, prov.id), centers=[CENTER], now=NOW)
    job = submit(alice)
    _run(sessions, job["id"], minutes=90)
    assert _settle(app, sessions) == 1
    due = _payout(_expected_charge(app, sessions, job["id"]))
    assert due > 1

    def pay(body: dict[str, Any], key: str | None = None, who: Any = operator) -> Any:
        headers = who.headers | ({"Idempotency-Key": key} if key else {})
        return client.post("/v1/billing/payouts", json=body, headers=headers)

    assert pay({"provider": "north-dc", "amount_cny": "1.00"}, who=alice).status_code == 403
    assert pay({"provider": "north-dc", "amount_cny": "1.001"}).status_code == 422
    assert pay({"provider": "ghost"}).status_code == 404
    r = pay({"provider": "alice"})
    assert r.status_code == 409 and "not a provider" in r.json()["detail"]
    too_much = pay({"provider": "north-dc", "amount_cny": str(due + Decimal("0.01"))})
    assert too_much.status_code == 409
    assert f"more than the {due} CNY due" in too_much.json()["detail"]
    first = pay({"provider": "north-dc", "amount_cny": "1.00", "memo": "bank ref 1"}, key="p1")
    assert first.status_code == 201, first.text
    assert first.json()["due_cny"] == str(due - 1) and first.json()["replayed"] is False
    again = pay({"provider": "north-dc", "amount_cny": "1.00"}, key="p1")
    assert (
        again.json()["replayed"] is True
        and again.json()["transaction_id"] == first.json()["transaction_id"]
    )
    assert pay({"provider": "north-dc", "amount_cny": "2.00"}, key="p1").status_code == 409
    # the rest from the CLI (everything due), then nothing is due
    r = runner.invoke(cli, ["billing", "payout", "north-dc", "--db", db_url, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) | {"transaction_id": 0} == {
        "provider": "north-dc", "transaction_id": 0, "amount_cny": str(due - 1),
        "replayed": False, "due_cny": "0.00"}  # fmt: skip
    r = runner.invoke(cli, ["billing", "payout", "north-dc", "--db", db_url])
    assert r.exit_code == 2 and "nothing is due to provider 'north-dc'" in r.stderr
    r = runner.invoke(cli, ["billing", "payout", "north-dc", "x", "--db", db_url])
    assert r.exit_code == 2 and "AMOUNT: 'x' is not a plain decimal number" in r.stderr
    # the statement: what it earned, what it was paid and what is still due; it reconciles
    st = _reconcile(client, operator, sessions, PERIOD)
    [north] = [p for p in st["providers"] if p["provider"] == "north-dc"]
    assert (north["payout_cny"], north["due_cny"]) == (str(due), "0.00")
    # paid out: 1.00 through the API (at its clock) and the rest by the CLI, at the real time,
    # so in the statement of the month the CLI ran in
    with sessions() as s:
        paid = s.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "payout"))
        months = {tx.created_at.strftime("%Y-%m") for tx in paid}
    assert PERIOD in months
    statements = [
        client.get(f"/v1/billing/settlements/{m}", headers=operator.headers).json()
        for m in sorted(months)
    ]
    paid_out = [p["paid_out_cny"] for st_m in statements for p in st_m["providers"]
                if p["provider"] == "north-dc"]  # fmt: skip
    assert sum(map(Decimal, paid_out)) == due
    theirs = client.get(f"/v1/billing/settlements/{PERIOD}", headers=prov.headers).json()
    assert theirs["providers"] == [north]
    with sessions() as s:
        cash = s.scalar(
            select(LedgerPosting.amount)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
            .where(
                LedgerTransaction.ref == "payout:p1", LedgerPosting.account_id == "platform:cash"
            )
        )
    assert cash == Decimal("1.00")  # money leaves the platform
    assert _verify(sessions) == []
    with sessions.begin() as s:  # a payout that pays the wrong account, behind the ledger's back
        tx = s.scalars(select(LedgerTransaction).where(LedgerTransaction.ref == "payout:p1")).one()
        s.execute(update(LedgerPosting).where(LedgerPosting.transaction_id == tx.id,
                                              LedgerPosting.account_id != "platform:cash")
                  .values(account_id=ledger.postpaid(alice.id)))  # fmt: skip
    assert any(p.startswith("payout payout:p1: 1.00 to") for p in _verify(sessions))


def test_a_providers_share_of_a_booking_that_may_still_be_refunded_is_not_paid_out(
    client: TestClient, sessions: sessionmaker[Session], alice: Any, operator: Any,
    make_tenant: Callable[..., Any],
) -> None:  # fmt: skip
    prov = make_tenant(TenantRole.PROVIDER, "north-dc")
    with sessions.begin() as s:
        grant_centers(session=s, tenant=s.get_one(Tenant, prov.id), centers=[CENTER], now=NOW)
    offer = _offer(client, prov, CENTER)
    booked = _book(client, alice, offer, 4, 1, 4)  # starts after the API's clock: refundable
    share = _payout(Decimal(booked["amount_cny"]))
    r = client.post("/v1/billing/payouts", json={"provider": "north-dc"}, headers=operator.headers)
    assert r.status_code == 409 and "nothing is due" in r.json()["detail"]
    st = client.get(f"/v1/billing/settlements/{PERIOD}", headers=operator.headers).json()
    [north] = [p for p in st["providers"] if p["provider"] == "north-dc"]
    assert (north["owed_cny"], north["due_cny"]) == (str(share), "0.00")
    _cancel(client, alice, booked)  # refunded in full: the provider gives its share back
    with sessions() as s:
        assert due_to(session=s, provider_id=prov.id, now=NOW) == 0
    assert _verify(sessions) == []
    with sessions.begin() as s:  # a payout of money it did not earn, past the due check
        post(session=s, entry=ledger.payout(prov.id, Decimal("5.00"), "payout:x"), now=NOW)
    assert _verify(sessions) == [
        f"account provider:{prov.id}:payable: the provider owes the platform 5.00 (paid out "
        "more than it earned)"
    ]
