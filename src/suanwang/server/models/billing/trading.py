"""The database side of trading: offers, reservations, and the offer-aware price book.

A thin layer over :mod:`suanwang.billing.offers` (the rules) and :mod:`suanwang.billing.ledger`
(the posting rules), written through :func:`.accounts.post`. Functions take ``session=`` and
flush but do not commit.

* Providers publish offers for centers they own, operators for any center
  (:func:`publish`); withdrawing ends an offer at the next whole hour (:func:`effective_end`),
  reservations already booked stay.
* Consumers book units of a ``reserved`` offer for a window inside it, paid at booking
  (``reservation:<id>``; a 402 when billing is required and the prepaid balance cannot pay);
  the offer row is locked while its remaining units are counted, so two bookings never
  oversell it. Cancelling before the window starts refunds the payment exactly
  (``refund:reservation:<id>``); after it has started, the capacity is used or forfeited.
* :func:`offer_book` / :func:`price_book` give the engine and the rating the offers in force.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.billing import ledger
from suanwang.billing.ledger import Entry, Posting
from suanwang.billing.money import qty
from suanwang.billing.offers import (
    Offer,
    OfferBook,
    OfferError,
    OfferType,
    Reservation,
    pool_units,
    reservation_cost,
    reservation_scu,
)
from suanwang.billing.pricing import PriceBook, book_for
from suanwang.core.hardware import Precision
from suanwang.core.scenario import Scenario
from suanwang.server.database.models import (
    CenterOwner,
    LedgerPosting,
    LedgerTransaction,
    OfferRow,
    ReservationRow,
    Tenant,
    TenantRole,
)

from .accounts import post
from .config import get_config, needs_hold


class Forbidden(PermissionError):
    """The tenant may not do this (a 403)."""


class NotFound(LookupError):
    """No such offer or reservation visible to the tenant (a 404)."""


class Conflict(ValueError):
    """The request clashes with the state: sold out, already started, cancelled (a 409)."""


def _ceil_hour(t: datetime) -> datetime:
    floor = t.replace(minute=0, second=0, microsecond=0)
    return floor if floor == t else floor + timedelta(hours=1)


def effective_end(row: OfferRow) -> datetime:
    """When the offer stops: its end, or the next whole hour after it was withdrawn."""
    if row.withdrawn_at is None:
        return row.ends_at
    return max(row.starts_at, min(row.ends_at, _ceil_hour(row.withdrawn_at)))


def to_offer(row: OfferRow) -> Offer | None:
    """The pure offer of a row (None: withdrawn before it began)."""
    end = effective_end(row)
    if end <= row.starts_at:
        return None
    return Offer(
        id=row.id,
        provider=row.tenant_id,
        center_id=row.center_id,
        model=row.model,
        units=row.units,
        price_cny_per_scu=row.price_cny_per_scu,
        start=row.starts_at,
        end=end,
        type=OfferType(row.type),
        precision=Precision(row.precision) if row.precision else None,
    )


def to_reservation(row: ReservationRow) -> Reservation:
    return Reservation(
        id=row.id,
        offer_id=row.offer_id,
        tenant=row.tenant_id,
        center_id=row.center_id,
        model=row.model,
        units=row.units,
        start=row.starts_at,
        end=row.ends_at,
    )


def offer_json(row: OfferRow, *, now: datetime) -> dict[str, object]:
    end = effective_end(row)
    return {
        "id": row.id,
        "provider_id": row.tenant_id,
        "center": row.center_id,
        "model": row.model,
        "precision": row.precision,
        "type": row.type,
        "units": row.units,
        "price_cny_per_scu": str(row.price_cny_per_scu),
        "start": row.starts_at.isoformat(),
        "end": end.isoformat(),
        "withdrawn": row.withdrawn_at is not None,
        "active": row.starts_at <= now < end,
    }


def reservation_json(row: ReservationRow) -> dict[str, object]:
    return {
        "id": row.id,
        "offer_id": row.offer_id,
        "tenant_id": row.tenant_id,
        "center": row.center_id,
        "model": row.model,
        "precision": row.precision,
        "units": row.units,
        "start": row.starts_at.isoformat(),
        "end": row.ends_at.isoformat(),
        "price_cny_per_scu": str(row.price_cny_per_scu),
        "scu": str(row.scu),
        "amount_cny": str(row.amount_cny),
        "transaction_id": row.transaction_id,
        "cancelled": row.cancelled_at is not None,
    }


# --------------------------------------------------------------------------- offers


def publish(
    *, session: Session, tenant: Tenant, offer: Offer, scenario: Scenario, now: datetime
) -> OfferRow:
    """Store ``offer`` (its id is replaced by a new one) for ``tenant``.

    Raises :class:`Forbidden` (consumers; providers for centers they do not own),
    :class:`OfferError` (center or model not in the scenario, more units than the pool has,
    a window that has already ended) and :class:`Conflict` (with the offers already
    published for the pool it would offer more units at once than the pool has).
    """
    role = tenant.tenant_role
    if role is TenantRole.CONSUMER:
        raise Forbidden("publishing offers is for providers (their centers) and operators")
    offer.check_scenario(scenario)
    if role is TenantRole.PROVIDER:
        owner = session.get(CenterOwner, offer.center_id)
        if owner is None or owner.tenant_id != tenant.id:
            raise Forbidden(f"center: {offer.center_id!r} is not one of your centers")
    if offer.end <= now:
        raise OfferError(
            "end", f"{offer.end.isoformat()} has already passed", kind="instant_out_of_range"
        )
    others = [
        r
        for r in session.scalars(
            select(OfferRow).where(
                OfferRow.center_id == offer.center_id,
                OfferRow.model == offer.model,
                OfferRow.starts_at < offer.end,
                OfferRow.ends_at > offer.start,
            )
        )
        if effective_end(r) > max(r.starts_at, offer.start)
    ]
    windows = [(r.starts_at, effective_end(r), r.units) for r in others]
    have = pool_units(scenario, offer.center_id, offer.model)
    peak = _peak(windows, offer.start, offer.end)
    if peak + offer.units > have:
        raise Conflict(
            f"units: {offer.units} more would offer {peak + offer.units} {offer.model} at "
            f"{offer.center_id} at once, more than the {have} it has"
        )
    row = OfferRow(
        id=str(uuid.uuid4()),
        tenant_id=tenant.id,
        center_id=offer.center_id,
        model=offer.model,
        precision=offer.precision.value if offer.precision else None,
        type=offer.type.value,
        units=offer.units,
        price_cny_per_scu=offer.price_cny_per_scu,
        starts_at=offer.start,
        ends_at=offer.end,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def _visible_offer(session: Session, offer_id: str, *, lock: bool = False) -> OfferRow:
    if "\x00" in offer_id:
        raise NotFound(f"no offer {offer_id!r}")
    stmt = select(OfferRow).where(OfferRow.id == offer_id)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        raise NotFound(f"no offer {offer_id!r}")
    return row


def find_offer(*, session: Session, offer_id: str) -> OfferRow:
    """The offer (raises :class:`NotFound`)."""
    return _visible_offer(session, offer_id)


def withdraw(
    *, session: Session, tenant: Tenant, offer_id: str, now: datetime
) -> tuple[OfferRow, bool]:
    """Withdraw an offer (its publisher, the center's owner or an operator); idempotent:
    ``(offer, written)``, ``written`` False if it was withdrawn already."""
    row = _visible_offer(session, offer_id, lock=True)
    if tenant.tenant_role is not TenantRole.OPERATOR and row.tenant_id != tenant.id:
        owner = session.get(CenterOwner, row.center_id)
        if owner is None or owner.tenant_id != tenant.id:
            raise Forbidden("only the offer's provider or an operator may withdraw it")
    if row.withdrawn_at is not None:
        return row, False
    row.withdrawn_at = now
    session.flush()
    return row, True


def list_offers(
    *,
    session: Session,
    now: datetime,
    center: str | None = None,
    model: str | None = None,
    type: OfferType | None = None,
    include_past: bool = False,
    limit: int = 500,
) -> list[OfferRow]:
    """Offers not ended nor withdrawn before they began (``include_past``: every one),
    soonest first."""
    stmt = select(OfferRow)
    if center is not None:
        stmt = stmt.where(OfferRow.center_id == center)
    if model is not None:
        stmt = stmt.where(OfferRow.model == model)
    if type is not None:
        stmt = stmt.where(OfferRow.type == type.value)
    if not include_past:
        stmt = stmt.where(OfferRow.ends_at > now)
    rows = session.scalars(stmt.order_by(OfferRow.starts_at, OfferRow.id).limit(limit)).all()
    return [r for r in rows if include_past or effective_end(r) > max(now, r.starts_at)]


# --------------------------------------------------------------------------- books


def offer_book(
    *, session: Session, since: datetime | None = None, until: datetime | None = None
) -> OfferBook:
    """Offers and live reservations whose windows reach past ``since`` (and start before
    ``until``); without bounds, all of them (the rating of past runs needs past offers)."""
    offers = select(OfferRow)
    res = select(ReservationRow).where(ReservationRow.cancelled_at.is_(None))
    if since is not None:
        offers = offers.where(OfferRow.ends_at > since)
        res = res.where(ReservationRow.ends_at > since)
    if until is not None:
        offers = offers.where(OfferRow.starts_at < until)
        res = res.where(ReservationRow.starts_at < until)
    pure = [o for o in map(to_offer, session.scalars(offers.order_by(OfferRow.id))) if o]
    if since is not None:
        pure = [o for o in pure if o.end > since]
    booked = [to_reservation(r) for r in session.scalars(res.order_by(ReservationRow.id))]
    return OfferBook.of(pure, booked)


def price_book(*, session: Session, scenario: Scenario, since: datetime | None = None) -> PriceBook:
    """An offer-aware :class:`PriceBook` for rating runs: ``price_at(center, model,
    precision, instant, tenant=...)`` answers the tenant's reservation (0: paid at booking),
    else the cheapest active offer, else the posted price. Without offers in the database it
    answers exactly what ``book_for(scenario)`` does."""
    book = offer_book(session=session, since=since)
    if not book and not book.reservations:
        return book_for(scenario)
    return PriceBook(scenario, book_for(scenario).params, offers=book)


# --------------------------------------------------------------------------- reservations


def _peak(windows: Sequence[tuple[datetime, datetime, int]], start: datetime, end: datetime) -> int:
    """The most units the ``(start, end, units)`` windows hold at once within [start, end)."""
    edges: dict[datetime, int] = {}
    for a0, b0, units in windows:
        a, b = max(a0, start), min(b0, end)
        if a < b:
            edges[a] = edges.get(a, 0) + units
            edges[b] = edges.get(b, 0) - units
    peak = level = 0
    for t in sorted(edges):
        level += edges[t]
        peak = max(peak, level)
    return peak


@dataclass(frozen=True, slots=True)
class Booking:
    reservation: ReservationRow
    written: bool


def reserve(
    *,
    session: Session,
    tenant: Tenant,
    offer_id: str,
    units: int,
    start: datetime,
    end: datetime,
    precision: Precision,
    scenario: Scenario,
    now: datetime,
) -> ReservationRow:
    """Book ``units`` of a reserved offer for [start, end) and pay for it.

    Raises :class:`NotFound`, :class:`OfferError` (a field that does not fit the offer),
    :class:`Conflict` (sold out for the window, the window has begun, the offer withdrawn),
    :class:`Forbidden` (providers may not book their own offers) and
    :class:`suanwang.billing.ledger.InsufficientBalance` (nothing written: a 402).
    """
    row = _visible_offer(session, offer_id, lock=True)
    offer = to_offer(row)
    if offer is None or (row.withdrawn_at is not None and effective_end(row) <= start):
        raise Conflict(f"offer {offer_id} has been withdrawn")
    if row.tenant_id == tenant.id:
        raise Forbidden("a provider cannot reserve its own offer")
    if start < now:
        raise OfferError(
            "start", f"{start.isoformat()} is in the past", kind="instant_out_of_range"
        )
    amount = reservation_cost(
        offer, scenario=scenario, units=units, start=start, end=end, precision=precision
    )
    others = session.scalars(
        select(ReservationRow).where(
            ReservationRow.offer_id == row.id,
            ReservationRow.cancelled_at.is_(None),
            ReservationRow.starts_at < end,
            ReservationRow.ends_at > start,
        )
    ).all()
    left = offer.units - _peak([(r.starts_at, r.ends_at, r.units) for r in others], start, end)
    if units > left:
        raise Conflict(f"units: only {left} of the offer's {offer.units} are left in the window")
    rid = str(uuid.uuid4())
    config = get_config(session=session)
    owner = session.get(CenterOwner, row.center_id)
    entry = ledger.reservation(
        tenant_id=tenant.id,
        reservation_id=rid,
        amount=amount,
        provider_account=ledger.payable(owner.tenant_id if owner else None),
        rate=config.commission_rate,
        prepaid_only=needs_hold(tenant, config),
    )
    tx_id: int | None = None
    if entry.postings:
        tx, _ = post(session=session, entry=entry, now=now, memo=f"reservation {rid}")
        tx_id = tx.id
    res = ReservationRow(
        id=rid,
        offer_id=row.id,
        tenant_id=tenant.id,
        center_id=row.center_id,
        model=row.model,
        precision=precision.value,
        units=units,
        starts_at=start,
        ends_at=end,
        price_cny_per_scu=row.price_cny_per_scu,
        scu=qty(reservation_scu(scenario, row.model, precision, units, start, end)),
        amount_cny=amount,
        transaction_id=tx_id,
        created_at=now,
    )
    session.add(res)
    session.flush()
    return res


def _visible_reservation(session: Session, tenant: Tenant, rid: str) -> ReservationRow:
    row = None if "\x00" in rid else session.get(ReservationRow, rid, with_for_update=True)
    mine = row is not None and row.tenant_id == tenant.id
    if row is None or not (mine or tenant.tenant_role is TenantRole.OPERATOR):
        raise NotFound(f"no reservation {rid!r}")
    return row


def cancel(*, session: Session, tenant: Tenant, reservation_id: str, now: datetime) -> Booking:
    """Cancel a reservation before its window starts and refund it (idempotent: a cancelled
    reservation is returned with ``written`` False). Raises :class:`NotFound`,
    :class:`Conflict` (the window has begun)."""
    row = _visible_reservation(session, tenant, reservation_id)
    if row.cancelled_at is not None:
        return Booking(row, False)
    if now >= row.starts_at:
        raise Conflict(
            f"reservation {row.id} started at {row.starts_at.isoformat()}: it can no longer be "
            "cancelled"
        )
    if row.transaction_id is not None:
        postings = session.scalars(
            select(LedgerPosting)
            .where(LedgerPosting.transaction_id == row.transaction_id)
            .order_by(LedgerPosting.id)
        ).all()
        # the payment as written: its postings and commission, so the refund negates both
        paid = Entry(
            "reservation",
            ledger.reservation_ref(row.id),
            tuple(Posting(p.account_id, p.amount) for p in postings),
            row.amount_cny,
            tenant_id=row.tenant_id,
            commission=session.get_one(LedgerTransaction, row.transaction_id).commission,
        )
        post(session=session, entry=ledger.reversal(paid), now=now, memo=f"cancelled {row.id}")
    row.cancelled_at = now
    session.flush()
    return Booking(row, True)


def list_reservations(
    *, session: Session, tenant: Tenant, everyone: bool = False, limit: int = 500
) -> list[ReservationRow]:
    """The tenant's reservations, newest first; with ``everyone``, operators see all and
    providers the bookings of their offers."""
    stmt = select(ReservationRow)
    role = tenant.tenant_role
    if everyone and role is TenantRole.PROVIDER:
        mine = select(OfferRow.id).where(OfferRow.tenant_id == tenant.id)
        stmt = stmt.where(ReservationRow.offer_id.in_(mine))
    elif not (everyone and role is TenantRole.OPERATOR):
        stmt = stmt.where(ReservationRow.tenant_id == tenant.id)
    stmt = stmt.order_by(ReservationRow.created_at.desc(), ReservationRow.id).limit(limit)
    return list(session.scalars(stmt))
