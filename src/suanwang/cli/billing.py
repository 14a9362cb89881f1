"""``suanwang billing`` and ``suanwang ledger``: billing administration on the database.

Like ``suanwang tenants``, these work directly on the database (``--db URL`` or
``$SUANWANG_DB``, migrated first), which must exist already: only ``billing configure`` with a
setting to change sets up a new one.
Exit codes: 0 done (``ledger verify``: the ledger is sound); 1 the database refused or
``ledger verify`` found broken invariants (listed); 2 bad arguments (amount, period, tenant,
commission rate, database URL or scenario, a database that does not exist).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated, Any

import typer

from suanwang.cli.admin import _session, audit
from suanwang.cli.app import App
from suanwang.cli.options import DbOption, JsonOption, ScenarioOption
from suanwang.cli.output import fail as _fail
from suanwang.server.settings import DEFAULT_DB_URL, DEFAULT_SCENARIO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from suanwang.server.database.models import Tenant

billing_app = App(help="Top-ups, invoices, settlement, settings.", no_args_is_help=True)
ledger_app = App(help="Check the double-entry ledger.", no_args_is_help=True)
quota_app = App(help="Trial quotas: grant and show.", no_args_is_help=True)
billing_app.add_typer(quota_app, name="quota")

PeriodOption = Annotated[
    str, typer.Option("--period", metavar="YYYY-MM", help="a month, YYYY-MM (UTC)")
]
TenantArgument = Annotated[str, typer.Argument(help="tenant name or id")]


def _key_option(verb: str) -> Any:
    """``--key`` of a write: a retry with the same key ``verb`` once."""
    return typer.Option("--key", help=f"idempotency key: the same key {verb} once")


def _memo_option(what: str) -> Any:
    return typer.Option(help=f"a note stored with the {what}")


def register(app: App) -> None:
    app.add_typer(billing_app, name="billing")
    app.add_typer(ledger_app, name="ledger")


@billing_app.callback()
def billing() -> None:
    """Top up balances, print invoices and provider settlements, change billing settings."""


@ledger_app.callback()
def ledger_cmd() -> None:
    """Check the ledger's invariants."""


def _period(period: str) -> str:
    from suanwang.server.models.billing.statements import period_bounds

    try:
        period_bounds(period)
    except ValueError as exc:
        raise _fail(f"--period: {exc}", 2) from None
    return period


def _sync(session_db: str, scenario: str) -> int:
    """Charge finished jobs that no worker has charged yet (so statements are complete)."""
    from suanwang.core.network import Network
    from suanwang.scenarios.loader import ScenarioError, load_scenario
    from suanwang.server.database.session import make_engine, session_factory
    from suanwang.server.models.billing.settle import settle_finished

    try:
        net = Network(load_scenario(scenario))
    except (ScenarioError, OSError) as exc:
        raise _fail(f"--scenario {scenario!r}: {exc}", 2) from None
    engine = make_engine(session_db)
    try:
        return settle_finished(session_factory(engine), net, now=datetime.now(UTC), limit=1_000_000)
    finally:
        engine.dispose()


def _named(session: Session, ref: str, argument: str) -> Tenant:
    """The tenant named (or with the id) ``ref``, given as ``argument``; exit 2 otherwise."""
    from suanwang.server.models.billing.accounts import tenant_by_name_or_id

    who = tenant_by_name_or_id(session=session, ref=ref)
    if who is None:
        raise _fail(f"{argument}: no tenant {ref!r}", 2)
    return who


def _amount(amount: str) -> Decimal:
    from suanwang.billing.money import parse_amount

    try:
        return parse_amount(amount, what="AMOUNT")
    except ValueError as exc:
        raise _fail(str(exc), 2) from None


@contextmanager
def _committed(session: Session, argument: str | None = None) -> Iterator[None]:
    """Run a write and commit it; its refusal (``ValueError``: the key was used for another
    write, or the ledger will not take it) exits 2 with its message, after ``argument``."""
    try:
        yield
    except ValueError as exc:
        raise _fail(f"{argument}: {exc}" if argument else str(exc), 2) from None
    session.commit()


def _print(doc: dict[str, Any], as_json: bool, text: str) -> None:
    typer.echo(
        json.dumps(doc, ensure_ascii=False, indent=None if as_json else 2) if as_json else text
    )


@billing_app.command("topup")
def topup(
    tenant: TenantArgument,
    amount: Annotated[str, typer.Argument(help="CNY, positive, at most 2 decimals: 100 or 12.50")],
    key: Annotated[str | None, _key_option("credits")] = None,
    memo: Annotated[str, _memo_option("transaction")] = "",
    db: DbOption = DEFAULT_DB_URL,
    as_json: JsonOption = False,
) -> None:
    """Credit AMOUNT CNY to TENANT's prepaid balance."""
    from suanwang.server.models.billing import accounts

    value = _amount(amount)
    with _session(db) as session:
        who = _named(session, tenant, "TENANT")
        with _committed(session):
            tx, written = accounts.topup(
                session=session, tenant=who, amount=value, key=key, memo=memo, now=datetime.now(UTC)
            )
            if written:
                audit(session, "billing.topup", f"tenant:{who.id}", tenant=who.name,
                      amount_cny=str(tx.amount), transaction_id=tx.id)  # fmt: skip
        bal = accounts.balance(session=session, tenant_id=who.id).as_json()
    doc = {"tenant": who.name, "transaction_id": tx.id, "amount_cny": str(tx.amount),
           "replayed": not written, "balance": bal}  # fmt: skip
    _print(doc, as_json, f"{who.name}: +{tx.amount} CNY, prepaid balance {bal['prepaid_cny']} CNY")


@billing_app.command("payout")
def payout(
    provider: Annotated[str, typer.Argument(help="provider tenant name or id")],
    amount: Annotated[
        str | None,
        typer.Argument(help="CNY, positive, at most 2 decimals (default: everything due)"),
    ] = None,
    key: Annotated[str | None, _key_option("pays")] = None,
    memo: Annotated[str, _memo_option("transaction")] = "",
    scenario: ScenarioOption = DEFAULT_SCENARIO,
    db: DbOption = DEFAULT_DB_URL,
    as_json: JsonOption = False,
) -> None:
    """Pay PROVIDER what it is owed for its centers' work (AMOUNT, or all that is due)."""
    from suanwang.server.models.billing import payouts

    value = None if amount is None else _amount(amount)
    with _session(db) as session:
        who = _named(session, provider, "PROVIDER")
    _sync(db, scenario)  # finished jobs are charged first, so what is due is complete
    with _session(db) as session:
        with _committed(session, "PROVIDER"):
            tx, written = payouts.payout(
                session=session,
                provider=who,
                amount=value,
                key=key,
                memo=memo,
                now=datetime.now(UTC),
            )
            if written:
                audit(session, "billing.payout", f"tenant:{who.id}", provider=who.name,
                      amount_cny=str(tx.amount), transaction_id=tx.id)  # fmt: skip
        due = payouts.due_to(session=session, provider_id=who.id, now=datetime.now(UTC))
    doc = {"provider": who.name, "transaction_id": tx.id, "amount_cny": str(tx.amount),
           "replayed": not written, "due_cny": str(due)}  # fmt: skip
    _print(doc, as_json, f"{who.name}: paid {tx.amount} CNY, {due} CNY still due")


@billing_app.command("invoice")
def invoice(
    tenant: TenantArgument,
    period: PeriodOption,
    scenario: ScenarioOption = DEFAULT_SCENARIO,
    db: DbOption = DEFAULT_DB_URL,
    as_json: JsonOption = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="print CSV")] = False,
) -> None:
    """TENANT's charges in PERIOD: one line per job, reservation paid and refund (JSON:
    total_cny, lines with kind, transaction_id, job_id or reservation_id, amount_cny)."""
    from suanwang.server.models.billing import statements

    _period(period)
    with _session(db) as session:
        who = _named(session, tenant, "TENANT")
    _sync(db, scenario)
    with _session(db) as session:
        doc = statements.invoice(session=session, tenant=who, period=period)
    if as_csv:
        sys.stdout.write(statements.invoice_csv(doc))
        return
    lines = [
        f"{ln['job_id'] or ln['reservation_id']}  {ln['amount_cny']:>12} CNY  "
        + ((ln["name"] or "") if ln["kind"] == "charge" else f"{ln['kind']} {ln['units']} x "
           f"{ln['model']} at {' '.join(ln['centers'])} {ln['start']} to {ln['end']}")
        for ln in doc["lines"]
    ]  # fmt: skip
    text = "\n".join([f"invoice {who.name} {period}", *lines, f"total {doc['total_cny']} CNY"])
    _print(doc, as_json, text)


@billing_app.command("settle")
def settle(
    period: PeriodOption,
    scenario: ScenarioOption = DEFAULT_SCENARIO,
    db: DbOption = DEFAULT_DB_URL,
    as_json: JsonOption = False,
) -> None:
    """Provider statements for PERIOD: charges (jobs, reservations, refunds), commission,
    each provider's payout."""
    from suanwang.server.models.billing import statements

    _period(period)
    with _session(db):
        pass  # migrate first
    _sync(db, scenario)
    with _session(db) as session:
        doc = statements.settlement(session=session, period=period, now=datetime.now(UTC))
    lines = [f"{p['provider']:<24} {p['payout_cny']:>14} CNY" for p in doc["providers"]]
    text = "\n".join(
        [f"settlement {period}: charges {doc['charges_cny']} CNY, commission "
         f"{doc['commission_cny']} CNY ({doc['jobs']} jobs, {doc['reservations']} reservations "
         f"{doc['reservations_cny']} CNY, {doc['refunds']} refunds {doc['refunds_cny']} CNY)",
         *lines]
    )  # fmt: skip
    _print(doc, as_json, text)


@billing_app.command("configure")
def configure(
    require: Annotated[
        bool | None,
        typer.Option(
            "--require/--no-require",
            help="require a prepaid balance to submit (402 otherwise); off: postpaid",
        ),
    ] = None,
    commission: Annotated[
        str | None, typer.Option(help="commission rate, 0.05 to 0.10 (default 0.08)")
    ] = None,
    energy_pass_through: Annotated[
        bool | None,
        typer.Option(
            "--energy-pass-through/--no-energy-pass-through",
            help="charge the capacity part of the posted price + metered energy at the hour's "
            "tariff (at cost) instead of the posted price",
        ),
    ] = None,
    token_value: Annotated[
        str | None,
        typer.Option(
            "--token-value",
            help="what a free trial token is worth at most, CNY per million tokens "
            "(0 to 1000, default 2.00)",
        ),
    ] = None,
    idle_discount: Annotated[
        str | None,
        typer.Option(
            "--idle-discount",
            help="what preemptible work saves on the posted price where no idle_discount "
            "offer prices it, a fraction 0 to 0.90 (default 0.50)",
        ),
    ] = None,
    db: DbOption = DEFAULT_DB_URL,
    as_json: JsonOption = False,
) -> None:
    """Show or change the platform's billing settings."""
    from suanwang.server.models.billing import config

    rate: Decimal | None = None
    if commission is not None:
        try:
            rate = Decimal(commission)
            from suanwang.billing.ledger import check_commission

            check_commission(rate)
        except (InvalidOperation, ValueError) as exc:
            raise _fail(f"--commission {commission!r}: {exc}", 2) from None
    per_million: Decimal | None = None
    if token_value is not None:
        try:
            per_million = config.check_token_value(Decimal(token_value))
        except (InvalidOperation, ValueError) as exc:
            raise _fail(f"--token-value {token_value!r}: {exc}", 2) from None
    discount: Decimal | None = None
    if idle_discount is not None:
        from suanwang.billing.pricing import check_idle_discount

        try:
            discount = check_idle_discount(Decimal(idle_discount))
        except (InvalidOperation, ValueError) as exc:
            raise _fail(f"--idle-discount {idle_discount!r}: {exc}", 2) from None
    changes = (require, commission, energy_pass_through, token_value, idle_discount)
    with _session(db, create=any(c is not None for c in changes)) as session:
        before = config.get_config(session=session).as_json()
        cfg = config.set_config(
            session=session,
            now=datetime.now(UTC),
            billing_required=require,
            commission_rate=rate,
            energy_pass_through=energy_pass_through,
            token_value_cny_per_million=per_million,
            idle_discount=discount,
        )
        changed = {k: v for k, v in cfg.as_json().items() if before.get(k) != v}
        if changed:
            audit(session, "billing.configure", "billing", before={k: before.get(k)
                  for k in changed}, after=changed)  # fmt: skip
        session.commit()
    doc = cfg.as_json()
    _print(doc, as_json, " ".join(f"{k}={v}" for k, v in doc.items()))


def _quantity(text: str, option: str) -> Decimal:
    from suanwang.billing.money import qty

    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _fail(f"{option} {text!r}: not a number", 2) from None
    if not value.is_finite() or value < 0 or value != qty(value) or value >= Decimal("1e12"):
        raise _fail(f"{option} {text!r}: must be >= 0 with at most 6 decimals", 2)
    return value


@quota_app.command("grant")
def quota_grant(
    tenant: TenantArgument,
    card_hours: Annotated[
        str, typer.Option("--card-hours", help="free card-hours (units x hours of card runs)")
    ],
    storage_gb_months: Annotated[
        str, typer.Option("--storage-gb-months", help="free storage GB-months")
    ] = "0",
    tokens: Annotated[int, typer.Option("--tokens", min=0, help="free tokens")] = 0,
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="YYYY-MM-DD: usable up to and including that day (UTC)"),
    ] = None,
    key: Annotated[str | None, _key_option("grants")] = None,
    memo: Annotated[str, _memo_option("grant")] = "",
    db: DbOption = DEFAULT_DB_URL,
    as_json: JsonOption = False,
) -> None:
    """Grant TENANT trial quotas, consumed before anything is charged."""
    from datetime import date

    from suanwang.billing.quotas import end_of_day
    from suanwang.server.models.billing import quotas

    hours = _quantity(card_hours, "--card-hours")
    storage = _quantity(storage_gb_months, "--storage-gb-months")
    try:
        day = date.fromisoformat(expires) if expires is not None else None
    except ValueError:
        raise _fail(f"--expires {expires!r}: expected YYYY-MM-DD, e.g. 2026-12-31", 2) from None
    with _session(db) as session:
        who = _named(session, tenant, "TENANT")
        with _committed(session):
            grant, written = quotas.grant_quota(
                session=session, tenant=who, card_hours=hours, storage_gb_months=storage,
                tokens=tokens, expires_at=end_of_day(day), key=key, memo=memo,
                now=datetime.now(UTC),
            )  # fmt: skip
            if written:
                audit(session, "billing.quota_grant", f"tenant:{who.id}", tenant=who.name,
                      grant=quotas.grant_json(grant))  # fmt: skip
        doc = {"tenant": who.name, "replayed": not written, "grant": quotas.grant_json(grant)}
        left = quotas.quota_summary(session=session, tenant_id=who.id, now=datetime.now(UTC))
    _print(doc, as_json,
           f"{who.name}: +{grant.card_hours} card-hours ({left['card_hours_left']} left), "
           f"+{grant.storage_gb_months} GB-months ({left['storage_gb_months_left']} left), "
           f"+{grant.tokens} tokens ({left['tokens_left']} left)")  # fmt: skip


@quota_app.command("show")
def quota_show(
    tenant: TenantArgument,
    db: DbOption = DEFAULT_DB_URL,
    as_json: JsonOption = False,
) -> None:
    """TENANT's trial quotas: what is left, what they covered, every grant."""
    from suanwang.server.models.billing import quotas

    with _session(db) as session:
        who = _named(session, tenant, "TENANT")
        doc = {"tenant": who.name} | quotas.quota_summary(
            session=session, tenant_id=who.id, now=datetime.now(UTC)
        )
    grants = [
        f"  #{g['id']}: {g['card_hours_used']}/{g['card_hours']} card-hours, "
        f"{g['storage_gb_months_used']}/{g['storage_gb_months']} GB-months, "
        f"{g['tokens_used']}/{g['tokens']} tokens, expires {g['expires_at'] or 'never'}"
        + (" (expired)" if g["expired"] else "")
        for g in doc["grants"]
    ]
    text = "\n".join(
        [f"{who.name}: {doc['card_hours_left']} card-hours, {doc['storage_gb_months_left']} "
         f"GB-months, {doc['tokens_left']} tokens left; trials covered {doc['free_cny']} CNY",
         *grants]
    )  # fmt: skip
    _print(doc, as_json, text)


@ledger_app.command("verify")
def verify(db: DbOption = DEFAULT_DB_URL, as_json: JsonOption = False) -> None:
    """Check every invariant; exit 1 listing what is broken."""
    from suanwang.server.models.billing import verify

    with _session(db) as session:
        problems = verify.verify(session=session)
    if as_json:
        typer.echo(json.dumps({"ok": not problems, "problems": problems}))
    elif problems:
        for p in problems:
            typer.echo(f"broken: {p}", err=True)
    else:
        typer.echo("ledger ok: every invariant holds")
    if problems:
        raise typer.Exit(1)
