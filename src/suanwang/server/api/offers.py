"""``/v1/offers`` and ``/v1/reservations``: trading capacity (docs/billing.md, "Trading").

* ``POST /v1/offers`` — providers for centers they own, operators for any center: units of a
  chip at a center for a window (whole UTC hours) at a price per SCU, ``on_demand``,
  ``reserved`` or ``idle_discount``.
* ``GET /v1/offers`` — everyone: offers not yet ended (``?include_past=true``: all).
* ``DELETE /v1/offers/{id}`` — its provider (or the center's owner) or an operator: the offer
  ends at the next whole hour; reservations already booked stay.
* ``POST /v1/reservations`` — book units of a ``reserved`` offer for a window inside it, paid
  at once through the ledger (402 when billing is required and the prepaid balance cannot).
* ``GET /v1/reservations`` — your own (``?all=true``: operators everyone's, providers the
  bookings of their offers).
* ``DELETE /v1/reservations/{id}`` — cancel before the window starts: refunded exactly.

Every problem with a field is a 422 naming it (``loc``: ``["body", "<field>"]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from suanwang.billing.ledger import InsufficientBalance
from suanwang.billing.offers import (
    PRICE_PATTERN,
    OfferError,
    OfferType,
    offer_from_dict,
    parse_time,
)
from suanwang.core.hardware import Precision
from suanwang.core.instants import WHOLE_HOUR
from suanwang.server.api.deps import (
    AUTH_RESPONSES,
    AuditDep,
    CurrentTenant,
    NetworkDep,
    SessionDep,
    provider_or_operator,
)
from suanwang.server.database.models import Tenant
from suanwang.server.models.billing import trading
from suanwang.server.schemas import ErrorResponse, JsonInt

router = APIRouter(tags=["trading"], responses=AUTH_RESPONSES)

OfferKind = Literal["on_demand", "reserved", "idle_discount"]
PrecisionName = Literal["fp16", "fp32", "fp64", "cpu"]
Id = Annotated[str, Path(min_length=1, max_length=64)]
#: The pattern is the whole rule (checked by pydantic before anything else): a valid date in
#: 2000..2099, a whole hour, a whole-hour offset; ``start < end`` relates two fields, which
#: JSON Schema cannot say (a 422 of type ``invalid_window``).
TIME = Field(
    min_length=1,
    max_length=40,
    pattern=WHOLE_HOUR,
    description="an ISO 8601 instant on a whole hour with a whole-hour UTC offset, years 2000 "
    "to 2099, e.g. 2026-11-23T08:00+08:00 or 2026-11-23T00Z; end after start (422 "
    "invalid_window), a window of at most 366 days",
)
ERRORS: dict[int | str, dict[str, object]] = {
    403: {"model": ErrorResponse, "description": "not allowed for your role or center"},
    404: {"model": ErrorResponse, "description": "no such offer or reservation"},
    409: {"model": ErrorResponse, "description": "sold out, already started, or withdrawn"},
}
Publisher = Annotated[
    Tenant, provider_or_operator("publishing offers is for providers and operators")
]


def _now(request: Request) -> datetime:
    now: datetime = request.app.state.signals.clock()
    return now


def _invalid(exc: OfferError, body: BaseModel | None) -> RequestValidationError:
    value = getattr(body, exc.field, None)
    return RequestValidationError(
        [{"type": exc.kind, "loc": ("body", exc.field), "msg": exc.message, "input": value}]
    )


@contextmanager
def _refusals(body: BaseModel | None = None) -> Iterator[None]:
    """A trading write's refusals as HTTP answers with their messages: not found 404, not
    yours 403, conflict 409, a bad field of ``body`` 422 naming it."""
    try:
        yield
    except trading.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except trading.Forbidden as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except trading.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except OfferError as exc:
        raise _invalid(exc, body) from None


class OfferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    center: str = Field(min_length=1, max_length=100, description="a center of the scenario")
    model: str = Field(min_length=1, max_length=100, description="accelerator (or CPU) model")
    units: JsonInt = Field(ge=1, le=10_000_000, description="cards (CPU cores for the CPU model)")
    price_cny_per_scu: str = Field(
        min_length=1,
        max_length=20,
        description="CNY per standard compute unit, at most 4 decimals: '3.20'",
        # checked by parse_price (exactly this pattern), whose message says what is wrong
        json_schema_extra={"pattern": PRICE_PATTERN},
    )
    start: str = TIME
    end: str = TIME
    type: OfferKind = "on_demand"
    precision: PrecisionName | None = Field(
        None, description="price only this precision's work (default: every precision)"
    )


@router.post(
    "/v1/offers",
    status_code=status.HTTP_201_CREATED,
    responses={**ERRORS, 400: {"model": ErrorResponse, "description": "unreadable body"}},
)
def publish_offer(
    body: OfferRequest,
    request: Request,
    session: SessionDep,
    me: Publisher,
    net: NetworkDep,
    audit: AuditDep,
) -> dict[str, Any]:
    """Publish an offer (providers: centers they own; operators: any center)."""
    now = _now(request)
    with _refusals(body):
        offer = offer_from_dict(body.model_dump(), default_id="new")
        row = trading.publish(
            session=session, tenant=me, offer=offer, scenario=net.scenario, now=now
        )
    shown = trading.offer_json(row, now=now)
    audit.record(session, "offer.publish", f"offer:{row.id}", offer=shown)
    session.commit()
    return shown


@router.get("/v1/offers")
def list_offers(
    request: Request,
    session: SessionDep,
    me: CurrentTenant,
    center: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    model: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    type: Annotated[OfferKind | None, Query()] = None,
    include_past: bool = False,
) -> dict[str, Any]:
    """Offers not yet ended, soonest first (filters: center, model, type)."""
    del me
    now = _now(request)
    rows = trading.list_offers(
        session=session,
        now=now,
        center=center,
        model=model,
        type=OfferType(type) if type else None,
        include_past=include_past,
    )
    return {"offers": [trading.offer_json(r, now=now) for r in rows]}


@router.delete("/v1/offers/{offer_id}", responses=ERRORS)
def withdraw_offer(
    offer_id: Id, request: Request, session: SessionDep, me: CurrentTenant, audit: AuditDep
) -> dict[str, Any]:
    """Withdraw an offer: it ends at the next whole hour (bookings made stay valid)."""
    now = _now(request)
    with _refusals():
        row, written = trading.withdraw(session=session, tenant=me, offer_id=offer_id, now=now)
    shown = trading.offer_json(row, now=now)
    if written:
        audit.record(session, "offer.withdraw", f"offer:{row.id}", center=row.center_id,
                     end=shown["end"])  # fmt: skip
    session.commit()
    return shown


class ReservationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    offer_id: str = Field(min_length=1, max_length=64, description="a reserved offer's id")
    units: JsonInt = Field(ge=1, le=10_000_000, description="units of the offer's chip")
    start: str = TIME
    end: str = TIME
    precision: PrecisionName = Field(
        "fp16", description="the precision the SCU bought are counted at (the price is per SCU)"
    )


@router.post(
    "/v1/reservations",
    status_code=status.HTTP_201_CREATED,
    responses={
        **ERRORS,
        400: {"model": ErrorResponse, "description": "unreadable body"},
        402: {"description": "billing required and the prepaid balance cannot pay"},
    },
)
def create_reservation(
    body: ReservationRequest,
    request: Request,
    session: SessionDep,
    me: CurrentTenant,
    net: NetworkDep,
    audit: AuditDep,
) -> dict[str, Any]:
    """Reserve units of a ``reserved`` offer for a window inside it; paid now."""
    now = _now(request)
    with _refusals(body):
        trading.find_offer(session=session, offer_id=body.offer_id)  # 404 first
        start = parse_time(body.start, what="start")
        end = parse_time(body.end, what="end")
        try:
            row = trading.reserve(
                session=session,
                tenant=me,
                offer_id=body.offer_id,
                units=body.units,
                start=start,
                end=end,
                precision=Precision(body.precision),
                scenario=net.scenario,
                now=now,
            )
        except InsufficientBalance as exc:
            raise HTTPException(
                status.HTTP_402_PAYMENT_REQUIRED,
                {
                    "error": "insufficient_balance",
                    "message": (
                        f"this reservation costs {exc.required} CNY but the prepaid balance "
                        f"is {exc.available} CNY; top up and book again"
                    ),
                    "required_cny": str(exc.required),
                    "available_cny": str(exc.available),
                },
            ) from None
    shown = trading.reservation_json(row)
    audit.record(session, "reservation.create", f"reservation:{row.id}", reservation=shown)
    session.commit()
    return shown


@router.get("/v1/reservations")
def list_reservations(session: SessionDep, me: CurrentTenant, all: bool = False) -> dict[str, Any]:
    """Your reservations, newest first (``all=true``: operators everyone's, providers the
    bookings of their offers)."""
    rows = trading.list_reservations(session=session, tenant=me, everyone=all)
    return {"reservations": [trading.reservation_json(r) for r in rows]}


@router.delete("/v1/reservations/{reservation_id}", responses=ERRORS)
def cancel_reservation(
    reservation_id: Id, request: Request, session: SessionDep, me: CurrentTenant, audit: AuditDep
) -> dict[str, Any]:
    """Cancel a reservation before its window starts: the payment is refunded exactly."""
    with _refusals():
        booking = trading.cancel(
            session=session, tenant=me, reservation_id=reservation_id, now=_now(request)
        )
    if booking.written:
        row = booking.reservation
        audit.record(session, "reservation.cancel", f"reservation:{row.id}",
                     tenant_id=row.tenant_id, refunded_cny=str(row.amount_cny))  # fmt: skip
    session.commit()
    return trading.reservation_json(booking.reservation) | {"refunded": booking.written}
