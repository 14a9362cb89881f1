"""``/v1/billing``: balances, top-ups (operators), invoices (JSON/CSV), settlements, prices.

Amounts are decimal strings in CNY (``"12.50"``), never floats. Who may do what:

* ``GET /balance``: your own; operators any tenant's with ``?tenant=NAME_OR_ID``.
* ``POST /topups``: operators only (money arrives outside the platform); ``Idempotency-Key``
  makes a retry credit once.
* ``GET /invoices/{YYYY-MM}``: your own (``?format=csv`` for CSV); operators ``?tenant=``.
  Jobs charged, reservations paid at booking and their refunds, each its own line.
* ``GET /settlements/{YYYY-MM}``: operators see every provider, charges (jobs, reservations,
  refunds) and commission; a provider sees its own statement; consumers get 403.
* ``GET /prices/{center_id}``: the center's posted price per SCU by chip, precision, hour.
* ``GET /quotas``: your trial quotas (what is left, every grant); operators ``?tenant=``.
* ``POST /quotas``: operators grant a tenant free card-hours (and storage GB-months, tokens),
  optionally until a day; ``Idempotency-Key`` makes a retry grant once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Query, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from suanwang.billing.money import AMOUNT_PATTERN, parse_amount
from suanwang.billing.pricing import NoPrice, book_for
from suanwang.billing.quotas import MAX_TOKENS, end_of_day
from suanwang.server.api.deps import (
    AUTH_RESPONSES,
    AuditDep,
    CurrentTenant,
    NetworkDep,
    NowDep,
    SessionDep,
    operator_only,
    provider_or_operator,
)
from suanwang.server.database.models import Tenant, TenantRole
from suanwang.server.models.billing.accounts import balance, tenant_by_name_or_id, topup
from suanwang.server.models.billing.config import get_config
from suanwang.server.models.billing.payouts import due_to, payout
from suanwang.server.models.billing.quotas import grant_json, grant_quota, quota_summary
from suanwang.server.models.billing.statements import (
    invoice,
    invoice_csv,
    period_bounds,
    settlement,
)
from suanwang.server.schemas import ErrorResponse, JsonInt

router = APIRouter(prefix="/v1/billing", tags=["billing"], responses=AUTH_RESPONSES)

Period = Annotated[
    str,
    Path(
        pattern=r"^(19|20|21)[0-9]{2}-(0[1-9]|1[0-2])$",
        description="a month, YYYY-MM (UTC)",
        max_length=7,
    ),
]
TenantQuery = Annotated[
    str | None,
    Query(max_length=100, description="operators: the tenant (name or id) to look at"),
]
FORBIDDEN: dict[int | str, dict[str, object]] = {
    403: {"model": ErrorResponse, "description": "not allowed for your role"},
    404: {"model": ErrorResponse, "description": "no such tenant"},
}
TopUpper = Annotated[Tenant, operator_only("only operators may top up balances")]
Payer = Annotated[Tenant, operator_only("only operators may pay providers out")]
Granter = Annotated[Tenant, operator_only("only operators may grant quotas")]
SettlementReader = Annotated[
    Tenant, provider_or_operator("settlements are for operators and providers")
]


def _named(session: Session, ref: str, *, field: str | None = None) -> Tenant:
    """The tenant named (or with the id) ``ref``; 404 otherwise, prefixed with the ``field``
    of the body that named it."""
    found = tenant_by_name_or_id(session=session, ref=ref)
    if found is None:
        where = f"{field}: " if field else ""
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{where}no tenant {ref!r}")
    return found


def _subject(session: SessionDep, me: Tenant, tenant: str | None) -> Tenant:
    if tenant is None:
        return me
    if me.tenant_role is not TenantRole.OPERATOR:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only operators may name another tenant")
    return _named(session, tenant)


def _invalid(loc: tuple[str, ...], msg: str, value: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg, "input": value}])


def _period(period: str) -> str:
    try:
        period_bounds(period)
    except ValueError as exc:
        raise _invalid(("path", "period"), str(exc), period) from None
    return period


@router.get("/balance", responses=FORBIDDEN)
def get_balance(
    session: SessionDep, me: CurrentTenant, now: NowDep, tenant: TenantQuery = None
) -> dict[str, Any]:
    """Prepaid balance, money held for running jobs, what is owed (postpaid), the settings
    (with ``token_value_cny_per_million``: what a free trial token is worth at most)."""
    who = _subject(session, me, tenant)
    config = get_config(session=session)
    trial = quota_summary(session=session, tenant_id=who.id, now=now)
    del trial["grants"], trial["tenant_id"]
    return (
        balance(session=session, tenant_id=who.id).as_json() | config.as_json() | {"trial": trial}
    )


def _amount(value: str) -> str:
    parse_amount(value, what="amount_cny")  # ValueError -> 422 naming the problem
    return value


#: A positive CNY amount as a decimal string: the pattern is documented for clients; it is
#: checked by parse_amount, whose message says what is wrong.
AmountText = Annotated[
    str,
    Field(min_length=1, max_length=15, json_schema_extra={"pattern": AMOUNT_PATTERN}),
    AfterValidator(_amount),
]
Memo = Annotated[str, Field(max_length=200, pattern=r"^[^\x00]*$")]


class TopUp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=100, description="tenant name or id")
    amount_cny: AmountText = Field(
        description="a positive amount in CNY, at most 2 decimals: '100', '12.50'"
    )
    memo: Memo = ""


#: ``Idempotency-Key`` of the operator's writes (top-ups, payouts, quota grants): a retry with
#: the same key writes nothing new.
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=150, pattern=r"^[!-~]+$"),
]


def _write_responses(conflict: str) -> dict[int | str, dict[str, object]]:
    """The responses of an operator's idempotent write, a 409 saying ``conflict``."""
    return {
        **FORBIDDEN,
        400: {"model": ErrorResponse, "description": "the body could not be read"},
        409: {"model": ErrorResponse, "description": conflict},
    }


@contextmanager
def _committed(session: Session) -> Iterator[None]:
    """Run an operator's idempotent write and commit it; the write's refusal (``ValueError``:
    the Idempotency-Key was used for another write, or the ledger will not take it) is a 409
    with its message."""
    try:
        yield
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    session.commit()


@router.post(
    "/topups",
    status_code=status.HTTP_201_CREATED,
    responses=_write_responses("Idempotency-Key used for another top-up"),
)
def post_topup(
    body: TopUp,
    session: SessionDep,
    me: TopUpper,
    now: NowDep,
    audit: AuditDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Credit a tenant's prepaid balance (operators)."""
    amount = parse_amount(body.amount_cny, what="amount_cny")  # checked by the model
    who = _named(session, body.tenant, field="tenant")
    with _committed(session):
        tx, written = topup(
            session=session, tenant=who, amount=amount, now=now, key=idempotency_key,
            memo=body.memo,
        )  # fmt: skip
        if written:
            audit.record(session, "billing.topup", f"tenant:{who.id}", tenant=who.name,
                         amount_cny=str(tx.amount), transaction_id=tx.id)  # fmt: skip
    return {
        "transaction_id": tx.id,
        "replayed": not written,
        "amount_cny": str(tx.amount),
        "balance": balance(session=session, tenant_id=who.id).as_json(),
    }


class Payout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1, max_length=100, description="provider name or id")
    amount_cny: AmountText | None = Field(
        default=None,
        description="a positive amount in CNY, at most 2 decimals; omitted: everything due",
    )
    memo: Memo = ""


@router.post(
    "/payouts",
    status_code=status.HTTP_201_CREATED,
    responses=_write_responses(
        "not a provider, nothing due, more than is due, or the Idempotency-Key was used for "
        "another payout"
    ),
)
def post_payout(
    body: Payout,
    session: SessionDep,
    me: Payer,
    now: NowDep,
    audit: AuditDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Pay a provider what it is owed for its centers' work (operators): ``amount_cny``, or
    everything due. Jobs finished but not yet charged are not due yet, nor its share of
    bookings that have not started (they may still be cancelled and refunded)."""
    amount = None if body.amount_cny is None else parse_amount(body.amount_cny)
    who = _named(session, body.provider, field="provider")
    with _committed(session):
        tx, written = payout(
            session=session, provider=who, amount=amount, key=idempotency_key, memo=body.memo,
            now=now,
        )  # fmt: skip
        if written:
            audit.record(session, "billing.payout", f"tenant:{who.id}", provider=who.name,
                         amount_cny=str(tx.amount), transaction_id=tx.id)  # fmt: skip
    due = due_to(session=session, provider_id=who.id, now=now)
    return {
        "transaction_id": tx.id,
        "replayed": not written,
        "provider": who.name,
        "amount_cny": str(tx.amount),
        "due_cny": str(due),
    }


@router.get(
    "/invoices/{period}",
    response_model=None,
    responses={
        **FORBIDDEN,
        200: {
            "description": "the invoice: JSON, or CSV with ?format=csv",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
    },
)
def get_invoice(
    period: Period,
    session: SessionDep,
    me: CurrentTenant,
    tenant: TenantQuery = None,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> dict[str, Any] | PlainTextResponse:
    """Your charges in a month: one line per job (traceable to its usage records), per
    reservation paid at booking and per refund (negative), each naming its transaction."""
    who = _subject(session, me, tenant)
    doc = invoice(session=session, tenant=who, period=_period(period))
    if format == "csv":
        return PlainTextResponse(invoice_csv(doc), media_type="text/csv")
    return doc


@router.get("/settlements/{period}", responses=FORBIDDEN)
def get_settlement(
    period: Period, session: SessionDep, me: SettlementReader, now: NowDep
) -> dict[str, Any]:
    """Operators: charges, commission and every provider's payout; providers: their own."""
    provider = me if me.tenant_role is TenantRole.PROVIDER else None
    return settlement(session=session, period=_period(period), provider=provider, now=now)


@router.get("/prices/{center_id}", responses={404: {"model": ErrorResponse}})
def get_prices(
    center_id: Annotated[str, Path(max_length=100)], net: NetworkDep, me: CurrentTenant
) -> dict[str, Any]:
    """The center's posted prices per SCU (CNY) by chip model, precision and local hour."""
    del me
    if center_id not in net.center_index:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no center {center_id!r}")
    try:
        prices = book_for(net.scenario).price_list(center_id)
    except NoPrice as exc:  # pragma: no cover - every listed model has a price
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return {"center_id": center_id, "timezone": net.scenario.timezone, "prices": prices}


QTY = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"


class QuotaGrantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=100, description="tenant name or id")
    card_hours: str = Field(
        max_length=19,
        pattern=QTY,
        description="free card-hours (units x hours of accelerator runs), up to 6 decimals",
    )
    storage_gb_months: str = Field(
        default="0", max_length=19, pattern=QTY, description="free storage GB-months, >= 0"
    )
    tokens: JsonInt = Field(
        default=0,
        ge=0,
        le=MAX_TOKENS - 1,
        description="free tokens, >= 0, below a trillion",
    )
    expires: date | None = Field(
        default=None, description="usable up to and including this day (UTC); none: no expiry"
    )
    memo: Memo = ""


@router.get("/quotas", responses=FORBIDDEN)
def get_quotas(
    session: SessionDep, me: CurrentTenant, now: NowDep, tenant: TenantQuery = None
) -> dict[str, Any]:
    """Trial quotas: what is left of the unexpired grants, what they covered, every grant."""
    who = _subject(session, me, tenant)
    return quota_summary(session=session, tenant_id=who.id, now=now)


@router.post(
    "/quotas",
    status_code=status.HTTP_201_CREATED,
    responses=_write_responses("Idempotency-Key used for another grant"),
)
def post_quota(
    body: QuotaGrantBody,
    session: SessionDep,
    me: Granter,
    now: NowDep,
    audit: AuditDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Grant a tenant trial quotas (operators); they are consumed before anything is charged."""
    who = _named(session, body.tenant, field="tenant")
    with _committed(session):
        grant, written = grant_quota(
            session=session,
            tenant=who,
            now=now,
            card_hours=Decimal(body.card_hours),
            storage_gb_months=Decimal(body.storage_gb_months),
            tokens=body.tokens,
            expires_at=end_of_day(body.expires),
            key=idempotency_key,
            memo=body.memo,
        )
        if written:
            audit.record(session, "billing.quota_grant", f"tenant:{who.id}", tenant=who.name,
                         grant=grant_json(grant))  # fmt: skip
    return {"tenant": who.name, "replayed": not written, "grant": grant_json(grant)}
