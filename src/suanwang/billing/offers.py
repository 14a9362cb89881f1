"""Trading: providers' offers and consumers' reservations, and the prices they make (pure).

An :class:`Offer` sells ``units`` of one chip model at one center for a time window at a price
in CNY per standard compute unit (SCU), of one type:

* ``on_demand`` — anyone's jobs placed there in the window pay the offer's price;
* ``reserved`` — capacity consumers book in advance (a :class:`Reservation`, paid at booking);
* ``idle_discount`` — capacity that would otherwise idle, sold below the posted price; it
  is also the price of ``preemptible`` work on the pool (:meth:`OfferBook.best_idle`,
  :meth:`suanwang.billing.pricing.PriceBook.idle_price`).

**Price.** For a center, chip model, precision and instant, the price per SCU is that of the
cheapest active ``on_demand`` or ``idle_discount`` offer for the center and model (an offer
*replaces* the computed posted price of :mod:`suanwang.billing.pricing` there in its window);
without one the posted price stands. ``reserved`` offers do not price pay-as-you-go work: their
capacity is sold by reservation only.

**Precision (the choice).** An offer is priced per SCU, the same unit as posted prices: one
SCU is an A100-hour *at the job's precision*, so a card delivers more SCU per hour at the
precision it is fast at and the provider earns accordingly; no conversion between precisions
is needed. An offer may name one ``precision`` (it then prices only work at that precision);
without one it applies to every precision the chip can run (``NoPrice`` cases stay as posted).

**Windows** are UTC instants on whole hours (``start < end``): China's offset is a whole number
of hours, so the rating's split at local hours is also a split at offer boundaries and every
piece of a run has exactly one price.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from suanwang.core.hardware import Precision, speed_scu_per_hour
from suanwang.core.scenario import Scenario

from .money import PLAIN_DECIMAL, PRICE_STEP, cents, plain_decimal

#: An offer's price is at most this many CNY per SCU (about 100 times a posted price).
MAX_PRICE = Decimal("1000")
#: Offers last at most a year.
MAX_WINDOW = timedelta(days=366)


class OfferType(StrEnum):
    ON_DEMAND = "on_demand"
    RESERVED = "reserved"
    IDLE_DISCOUNT = "idle_discount"


class OfferError(ValueError):
    """A bad offer or reservation field: ``field`` names it, the message says what is wrong.

    ``kind`` says which sort of rule it breaks (the API's 422 error type): ``value_error`` a
    rule of the field alone (the OpenAPI schema states those), ``invalid_window`` the window
    as a whole (start before end, at most :data:`MAX_WINDOW`), ``offer_mismatch`` a booking
    that does not fit its offer, ``scenario`` a center or model the scenario does not have
    (enough of), ``instant_out_of_range`` a time already past. JSON Schema can state none but
    the first: they relate fields to each other, to stored offers, the scenario or the clock.
    """

    def __init__(self, field: str, message: str, *, kind: str = "value_error") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.kind = kind


WINDOW = "invalid_window"
MISMATCH = "offer_mismatch"
SCENARIO = "scenario"

#: A price per SCU as the API publishes it: a plain decimal string, positive, at most 1000 CNY
#: and 4 decimals (no sign, exponent, separator, space or leading zero).
PRICE_PATTERN = (
    r"^([1-9][0-9]{0,2}(\.[0-9]{1,4})?|1000(\.0{1,4})?"
    r"|0\.([1-9][0-9]{0,3}|0[1-9][0-9]{0,2}|00[1-9][0-9]?|000[1-9]))$"
)


def parse_price(value: object, *, what: str = "price_cny_per_scu") -> Decimal:
    """A positive price per SCU with at most 4 decimals (1/100 fen), as a ``Decimal``: the
    plain decimals :data:`PRICE_PATTERN` matches (text, an int, or a float from YAML)."""
    try:
        d = plain_decimal(value, what=what, pattern=PRICE_PATTERN, example="3.20")
    except ValueError as exc:
        text = repr(value) if isinstance(value, float) else str(value)
        if isinstance(value, bool) or not PLAIN_DECIMAL.fullmatch(text):
            raise OfferError(what, str(exc).removeprefix(f"{what}: ")) from None
        d = Decimal(text)  # a plain decimal out of range: say which way
        if d <= 0:
            raise OfferError(what, f"{value!r} must be a positive amount in CNY per SCU") from None
        if d > MAX_PRICE:
            raise OfferError(what, f"{value!r} is above {MAX_PRICE} CNY per SCU") from None
        if d != d.quantize(PRICE_STEP):
            raise OfferError(
                what, f"{value!r} has more than 4 decimals (prices are kept to 0.0001)"
            ) from None
        raise OfferError(what, f"{value!r} has a leading zero (e.g. 3.20)") from None
    return d.quantize(PRICE_STEP)


def parse_time(value: object, *, what: str) -> datetime:
    """An aware datetime (ISO 8601 text with an offset, or a datetime), returned in UTC."""
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, str):
        try:
            t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise OfferError(what, f"{value!r} is not an ISO 8601 time") from None
    else:
        raise OfferError(what, f"{value!r} is not a time (ISO 8601, e.g. 2026-11-23T00:00Z)")
    if t.tzinfo is None:
        raise OfferError(what, f"{value!r} has no UTC offset (e.g. 2026-11-23T00:00+08:00)")
    return t.astimezone(UTC)


def _check_window(start: datetime, end: datetime, *, whole_hours: bool = True) -> None:
    for name, t in (("start", start), ("end", end)):
        if t.tzinfo is None:
            raise OfferError(name, f"{t.isoformat()} has no time zone (UTC-aware times only)")
        if whole_hours and (t.minute or t.second or t.microsecond):
            raise OfferError(name, f"{t.isoformat()} is not on a whole hour")
    if end <= start:
        raise OfferError(
            "end", f"{end.isoformat()} is not after start {start.isoformat()}", kind=WINDOW
        )
    if end - start > MAX_WINDOW:
        raise OfferError("end", f"the window is longer than {MAX_WINDOW.days} days", kind=WINDOW)


@dataclass(frozen=True, slots=True)
class Offer:
    """``units`` of ``model`` at ``center_id`` in [start, end) at ``price_cny_per_scu``.

    ``provider`` is the owner's tenant id (``None``: the operator's own offer).
    """

    id: str
    provider: str | None
    center_id: str
    model: str
    units: int
    price_cny_per_scu: Decimal
    start: datetime
    end: datetime
    type: OfferType = OfferType.ON_DEMAND
    precision: Precision | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise OfferError("id", "must not be empty")
        if not self.center_id:
            raise OfferError("center", "must not be empty")
        if not self.model:
            raise OfferError("model", "must not be empty")
        if isinstance(self.units, bool) or not isinstance(self.units, int) or self.units < 1:
            raise OfferError("units", f"{self.units!r} must be a whole number >= 1")
        if not isinstance(self.price_cny_per_scu, Decimal):
            raise OfferError("price_cny_per_scu", "must be a Decimal (never a float)")
        parse_price(self.price_cny_per_scu)
        if not isinstance(self.type, OfferType):
            raise OfferError("type", f"{self.type!r} is not one of {[t.value for t in OfferType]}")
        _check_window(self.start, self.end)

    def active_at(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def applies(self, center_id: str, model: str, precision: Precision) -> bool:
        return (
            self.center_id == center_id
            and self.model == model
            and (self.precision is None or self.precision is precision)
        )

    def check_scenario(self, scenario: Scenario) -> None:
        """The center exists, has the model and at least ``units`` of it (else OfferError)."""
        check_capacity(scenario, self.center_id, self.model, self.units)
        if self.precision is not None:
            acc = scenario.catalog.get(self.model)
            if speed_scu_per_hour(acc, self.precision) <= 0:
                raise OfferError(
                    "precision", f"{self.model} cannot run {self.precision.value} work",
                    kind=SCENARIO,
                )  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "center": self.center_id,
            "model": self.model,
            "units": self.units,
            "price_cny_per_scu": str(self.price_cny_per_scu),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "type": self.type.value,
            "precision": self.precision.value if self.precision else None,
        }


def pool_units(scenario: Scenario, center_id: str, model: str) -> int:
    """Units of ``model`` at ``center_id`` (cards; CPU cores for the CPU model); raises."""
    try:
        center = scenario.center(center_id)
    except KeyError:
        raise OfferError(
            "center", f"{center_id!r} is not a center of {scenario.name!r}", kind=SCENARIO
        ) from None
    if model not in scenario.catalog:
        raise OfferError(
            "model", f"{model!r} is not in the catalog of {scenario.name!r}", kind=SCENARIO
        )
    if scenario.catalog.get(model).is_cpu:
        return center.cpu_cores
    return dict(center.inventory).get(model, 0)


def check_capacity(scenario: Scenario, center_id: str, model: str, units: int) -> None:
    have = pool_units(scenario, center_id, model)
    if have <= 0:
        raise OfferError("model", f"center {center_id!r} has no {model}", kind=SCENARIO)
    if units > have:
        raise OfferError(
            "units", f"{units} is more than the {have} {model} at {center_id!r}", kind=SCENARIO
        )


def offer_from_dict(data: Mapping[str, Any], *, default_id: str = "") -> Offer:
    """An offer from a mapping (a YAML or JSON document); errors name the field."""
    known = {"id", "provider", "center", "model", "units", "price_cny_per_scu", "start", "end",
             "type", "precision"}  # fmt: skip
    extra = sorted(set(data) - known)
    if extra:
        raise OfferError(extra[0], f"unknown field (expected one of {sorted(known)})")
    for name in ("center", "model", "units", "price_cny_per_scu", "start", "end"):
        if name not in data:
            raise OfferError(name, "missing")
    units = data["units"]
    if isinstance(units, bool) or not isinstance(units, int):
        raise OfferError("units", f"{units!r} must be a whole number >= 1")
    kind = data.get("type", OfferType.ON_DEMAND.value)
    try:
        otype = OfferType(kind)
    except ValueError:
        raise OfferError("type", f"{kind!r} is not one of {[t.value for t in OfferType]}") from None
    prec = data.get("precision")
    try:
        precision = None if prec is None else Precision(prec)
    except ValueError:
        raise OfferError(
            "precision", f"{prec!r} is not one of {[p.value for p in Precision]}"
        ) from None
    return Offer(
        id=str(data.get("id") or default_id),
        provider=None if data.get("provider") is None else str(data["provider"]),
        center_id=str(data["center"]),
        model=str(data["model"]),
        units=units,
        price_cny_per_scu=parse_price(data["price_cny_per_scu"]),
        start=parse_time(data["start"], what="start"),
        end=parse_time(data["end"], what="end"),
        type=otype,
        precision=precision,
    )


@dataclass(frozen=True, slots=True)
class Reservation:
    """``units`` of a ``reserved`` offer booked by ``tenant`` for [start, end)."""

    id: str
    offer_id: str
    tenant: str
    center_id: str
    model: str
    units: int
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if isinstance(self.units, bool) or not isinstance(self.units, int) or self.units < 1:
            raise OfferError("units", f"{self.units!r} must be a whole number >= 1")
        _check_window(self.start, self.end)

    def active_at(self, at: datetime) -> bool:
        return self.start <= at < self.end


def reservation_scu(
    scenario: Scenario, model: str, precision: Precision, units: int, start: datetime,
    end: datetime,
) -> Decimal:  # fmt: skip
    """SCU a reservation buys: units x speed(model, precision) x hours."""
    speed = speed_scu_per_hour(scenario.catalog.get(model), precision)
    if speed <= 0:
        raise OfferError("precision", f"{model} cannot run {precision.value} work", kind=SCENARIO)
    hours = Decimal((end - start) // timedelta(seconds=1)) / 3600
    return units * Decimal(repr(speed)) * hours


def reservation_cost(
    offer: Offer, *, scenario: Scenario, units: int, start: datetime, end: datetime,
    precision: Precision,
) -> Decimal:  # fmt: skip
    """What booking costs, CNY to the fen: the reserved SCU at the offer's price.

    Checks the booking against the offer: a ``reserved`` offer, a window inside the offer's
    (whole hours) and at most the offer's units (the caller checks what others booked).
    """
    if offer.type is not OfferType.RESERVED:
        raise OfferError(
            "offer_id", f"offer {offer.id} is {offer.type.value}, not reserved", kind=MISMATCH
        )
    _check_window(start, end)
    if start < offer.start or end > offer.end:
        raise OfferError(
            "start" if start < offer.start else "end",
            f"the window must lie within the offer's {offer.start.isoformat()} .. "
            f"{offer.end.isoformat()}",
            kind=MISMATCH,
        )
    if units > offer.units:
        raise OfferError("units", f"{units} is more than the offer's {offer.units}", kind=MISMATCH)
    if offer.precision is not None and precision is not offer.precision:
        raise OfferError(
            "precision", f"the offer is for {offer.precision.value} work only", kind=MISMATCH
        )
    scu = reservation_scu(scenario, offer.model, precision, units, start, end)
    return cents((scu * offer.price_cny_per_scu).quantize(PRICE_STEP, rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class OfferBook:
    """Offers (and reservations) in force; answers price and offered capacity questions."""

    offers: tuple[Offer, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    _by_pool: dict[tuple[str, str], tuple[Offer, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        ids = [o.id for o in self.offers]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise OfferError("id", f"offer {dup[0]!r} appears twice")
        by: dict[tuple[str, str], list[Offer]] = {}
        for o in sorted(self.offers, key=lambda o: (o.price_cny_per_scu, o.start, o.id)):
            by.setdefault((o.center_id, o.model), []).append(o)
        self._by_pool.update({k: tuple(v) for k, v in by.items()})

    @classmethod
    def of(cls, offers: Iterable[Offer], reservations: Iterable[Reservation] = ()) -> OfferBook:
        return cls(tuple(offers), tuple(reservations))

    def __bool__(self) -> bool:
        return bool(self.offers)

    def for_pool(self, center_id: str, model: str) -> tuple[Offer, ...]:
        """The pool's offers, cheapest first (ties: earlier start, then id)."""
        return self._by_pool.get((center_id, model), ())

    def best(self, center_id: str, model: str, precision: Precision, at: datetime) -> Offer | None:
        """The cheapest active pay-as-you-go (on_demand / idle_discount) offer, or None."""
        for o in self.for_pool(center_id, model):
            if (
                o.type is not OfferType.RESERVED
                and o.active_at(at)
                and o.applies(center_id, model, precision)
            ):
                return o
        return None

    def best_idle(
        self, center_id: str, model: str, precision: Precision, at: datetime
    ) -> Offer | None:
        """The cheapest active ``idle_discount`` offer (what preemptible work pays), or None."""
        for o in self.for_pool(center_id, model):
            if (
                o.type is OfferType.IDLE_DISCOUNT
                and o.active_at(at)
                and o.applies(center_id, model, precision)
            ):
                return o
        return None

    def offered_units(self, center_id: str, model: str, at: datetime) -> int:
        """Units offered at the pool at ``at`` by all active offers (every type)."""
        return sum(o.units for o in self.for_pool(center_id, model) if o.active_at(at))

    def reserved_units(
        self, center_id: str, model: str, at: datetime, *, tenant: str | None = None
    ) -> int:
        """Units reserved at the pool at ``at`` (by ``tenant`` only, if given)."""
        return sum(
            r.units
            for r in self.reservations
            if r.center_id == center_id
            and r.model == model
            and r.active_at(at)
            and (tenant is None or r.tenant == tenant)
        )

    def reservation_for(
        self, tenant: str, center_id: str, model: str, at: datetime
    ) -> Reservation | None:
        for r in self.reservations:
            if (r.tenant, r.center_id, r.model) == (tenant, center_id, model) and r.active_at(at):
                return r
        return None


def hour_starts(start: datetime, hours: int) -> Sequence[datetime]:
    """``hours`` consecutive UTC hour starts from ``start`` (floored to the hour)."""
    t0 = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [t0 + timedelta(hours=h) for h in range(hours)]
