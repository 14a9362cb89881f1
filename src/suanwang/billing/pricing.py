"""Posted prices: CNY per standard compute unit (SCU) for each center, chip, precision and hour.

A center posts, for every chip model it has and every local hour (time of use)::

    price = (energy_kwh_per_scu x tariff(hour) + capacity_cny_per_scu) x (1 + margin)
    energy_kwh_per_scu = unit_power_kW(model) x PUE(center) / speed(model, precision)

``unit_power_kW`` is the card with its host share (or one CPU core), ``speed`` the SCU one unit
delivers per hour at the job's precision (:func:`suanwang.core.hardware.speed_scu_per_hour`),
``tariff(hour)`` the provincial time-of-use grid tariff at the center's local hour (the scenario
time zone). ``capacity_cny_per_scu`` stands for the hardware, building and staff (an assumption:
3.50 CNY per SCU, about an A100's amortisation per hour) and ``margin`` is the provider's
mark-up (default 15 %). Prices are rounded to 0.0001 CNY. Everything here is pure.

**Storage.** The job's staged data (``data_gb``) is kept at the center while it runs; every
center posts one storage price per GB-month (``storage_cny_per_gb_month``, an assumption: 0.30
CNY, between object storage at about 0.12 and the parallel file systems compute jobs read, at
about 1 CNY, in Chinese clouds' list prices). A GB-month is a GB held for 730 hours.

A book may carry providers' offers (:class:`suanwang.billing.offers.OfferBook`): then
:meth:`PriceBook.price_at` (an instant, not an hour of the day) answers the cheapest active
offer's price where one is in force and the posted price elsewhere, and a tenant's own
reservation makes its work on the reserved pool free (paid at booking). Without offers every
answer is the posted price, exactly as before.

**The idle price** (what ``preemptible`` work pays, docs/governance.md "Billing"):
:meth:`PriceBook.idle_price` is the cheapest active ``idle_discount`` offer for the center and
chip (and the precision) at that instant; without one, the posted price times
``1 - idle_discount``, rounded half up to 0.0001 CNY. ``idle_discount`` is a platform setting
(``suanwang billing configure --idle-discount``), default :data:`DEFAULT_IDLE_DISCOUNT` = 0.50:
a posted A100 SCU is 4.25..5.23 CNY, of which the capacity part is 4.025 and the energy at cost
0.2..1.0, so half the posted price (2.1..2.6) still pays an idle card's electricity twice over
and a good part of its amortisation, while staying well below the posted price; clouds sell
preemptible (spot) capacity at 60..90 % off, but theirs is priced by an auction that can go
back up, ours is a fixed price, so we keep to the conservative end. A provider that wants
another price for its idle capacity posts an ``idle_discount`` offer; the setting is bounded by
:data:`MAX_IDLE_DISCOUNT` (0.90, the deepest spot discount clouds advertise). The rating never
lets a preemptible piece cost more than the same piece of other work
(:func:`suanwang.billing.rating.rate_segment`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from suanwang.core.hardware import Precision, speed_scu_per_hour
from suanwang.core.scenario import Scenario

from .money import PRICE_STEP, ZERO
from .offers import OfferBook, OfferType


@dataclass(frozen=True, slots=True)
class PriceParams:
    """What turns a center's physics into a posted price (see the module docstring)."""

    capacity_cny_per_scu: Decimal = Decimal("3.50")
    margin: Decimal = Decimal("0.15")
    #: CNY per GB-month of the job's staged data kept at the center while it runs
    storage_cny_per_gb_month: Decimal = Decimal("0.30")

    def __post_init__(self) -> None:
        if self.capacity_cny_per_scu < 0:
            raise ValueError(f"capacity_cny_per_scu must be >= 0, not {self.capacity_cny_per_scu}")
        if self.storage_cny_per_gb_month < 0:
            raise ValueError(
                f"storage_cny_per_gb_month must be >= 0, not {self.storage_cny_per_gb_month}"
            )
        if not Decimal(0) <= self.margin <= Decimal(1):
            raise ValueError(f"margin must be within 0..1, not {self.margin}")


DEFAULT_PRICES = PriceParams()

#: The platform's default idle discount: preemptible work pays the posted price x (1 - this)
#: where no ``idle_discount`` offer prices it (see the module docstring for why 0.50).
DEFAULT_IDLE_DISCOUNT = Decimal("0.50")
#: The deepest idle discount an operator may set.
MAX_IDLE_DISCOUNT = Decimal("0.90")


def check_idle_discount(value: Decimal) -> Decimal:
    """An idle discount: a fraction within 0..0.90 with at most 2 decimals (raises
    ``ValueError`` naming it)."""
    if (
        not isinstance(value, Decimal)
        or not value.is_finite()
        or not Decimal(0) <= value <= MAX_IDLE_DISCOUNT
        or value != value.quantize(Decimal("0.01"))
    ):
        raise ValueError(
            f"idle discount {value}: must be a fraction between 0 and {MAX_IDLE_DISCOUNT} "
            "(0.50: half the posted price), with at most 2 decimals"
        )
    return value.quantize(Decimal("0.01"))


class NoPrice(ValueError):
    """A center/model/precision with no posted price (unknown, or the chip cannot run it)."""


def _d(x: float) -> Decimal:
    return Decimal(repr(float(x)))


class PriceBook:
    """The posted prices of every center of one scenario (tables computed once, then cached)."""

    def __init__(
        self,
        scenario: Scenario,
        params: PriceParams = DEFAULT_PRICES,
        offers: OfferBook | None = None,
    ) -> None:
        self.scenario = scenario
        self.params = params
        self.offers = offers if offers is not None else OfferBook()
        self._tz = ZoneInfo(scenario.timezone)
        self._tables: dict[tuple[str, str, Precision], tuple[Decimal, ...]] = {}
        self._max: dict[Precision, Decimal] = {}
        self._min_speed: dict[Precision, Decimal] = {}

    def price(self, center_id: str, model: str, precision: Precision, local_hour: int) -> Decimal:
        """CNY per SCU at ``center_id`` on ``model`` for ``precision`` work in ``local_hour``."""
        return self.table(center_id, model, precision)[local_hour % 24]

    def posted_at(self, center_id: str, model: str, precision: Precision, at: datetime) -> Decimal:
        """The posted price at the instant ``at`` (its local hour in the scenario's zone)."""
        return self.price(center_id, model, precision, at.astimezone(self._tz).hour)

    def price_at(
        self,
        center_id: str,
        model: str,
        precision: Precision,
        at: datetime,
        *,
        tenant: str | None = None,
    ) -> Decimal:
        """CNY per SCU at the instant ``at`` (aware): ``tenant``'s reservation of the pool
        (already paid: 0), else the cheapest active offer, else the posted price."""
        market = self.market_price_at(center_id, model, precision, at, tenant=tenant)
        return market if market is not None else self.posted_at(center_id, model, precision, at)

    def market_price_at(
        self,
        center_id: str,
        model: str,
        precision: Precision,
        at: datetime,
        *,
        tenant: str | None = None,
    ) -> Decimal | None:
        """The price a trade sets at the instant ``at``: 0 on ``tenant``'s reservation of the
        pool (paid at booking), else the cheapest active pay-as-you-go offer; None where
        neither is in force (the posted price stands)."""
        if not self.offers:
            return None
        if tenant is not None and self.offers.reservation_for(tenant, center_id, model, at):
            return ZERO
        best = self.offers.best(center_id, model, precision, at)
        return None if best is None else best.price_cny_per_scu

    def idle_price(
        self,
        center_id: str,
        model: str,
        precision: Precision,
        at: datetime,
        *,
        discount: Decimal = DEFAULT_IDLE_DISCOUNT,
    ) -> Decimal:
        """CNY per SCU of preemptible work at the instant ``at``: the cheapest active
        ``idle_discount`` offer for the pool, else the posted price x (1 - ``discount``),
        rounded half up to 0.0001 CNY (raises :class:`NoPrice` as the posted price does)."""
        offer = self.offers.best_idle(center_id, model, precision, at) if self.offers else None
        if offer is not None:
            return offer.price_cny_per_scu
        return discounted(self.posted_at(center_id, model, precision, at), discount)

    def table(self, center_id: str, model: str, precision: Precision) -> tuple[Decimal, ...]:
        """The 24 hourly prices; raises :class:`NoPrice`."""
        key = (center_id, model, precision)
        if key not in self._tables:
            self._tables[key] = _price_table(
                self.scenario, center_id, model, precision, self.params
            )
        return self._tables[key]

    def models(self, center_id: str) -> list[str]:
        center = self.scenario.center(center_id)
        out = [m for m, n in center.inventory if n > 0]
        if center.cpu_cores > 0:
            out += [a.model for a in self.scenario.catalog.accelerators if a.is_cpu][:1]
        return out

    def price_list(self, center_id: str) -> list[dict[str, object]]:
        """A center's posted list: per model and precision, the 24 hourly prices (strings)."""
        rows: list[dict[str, object]] = []
        for model in self.models(center_id):
            for precision in Precision:
                try:
                    table = self.table(center_id, model, precision)
                except NoPrice:
                    continue
                rows.append(
                    {
                        "model": model,
                        "precision": precision.value,
                        "cny_per_scu_by_hour": [str(p) for p in table],
                        "min_cny_per_scu": str(min(table)),
                        "max_cny_per_scu": str(max(table)),
                    }
                )
        return rows

    def min_speed(self, precision: Precision) -> Decimal:
        """The lowest SCU per unit-hour of any chip a center has for ``precision`` work (so
        the longest a job's work can take on one unit: its hold's storage time); 0 if none."""
        if precision not in self._min_speed:
            speeds = [
                speed_scu_per_hour(self.scenario.catalog.get(model), precision)
                for center in self.scenario.centers
                for model in self.models(center.id)
            ]
            self._min_speed[precision] = min((_d(s) for s in speeds if s > 0), default=Decimal(0))
        return self._min_speed[precision]

    def max_price(self, precision: Precision) -> Decimal:
        """The highest price per SCU any center posts (or offers) for ``precision`` (holds)."""
        best = self.max_posted(precision)
        for offer in self.offers.offers:
            if offer.precision in (None, precision):
                best = max(best, offer.price_cny_per_scu)
        return best

    def max_posted(self, precision: Precision) -> Decimal:
        """The highest price per SCU any center posts for ``precision``, at any hour."""
        if precision not in self._max:
            best = Decimal(0)
            for center in self.scenario.centers:
                for model in self.models(center.id):
                    try:
                        best = max(best, max(self.table(center.id, model, precision)))
                    except NoPrice:
                        continue
            self._max[precision] = best
        return self._max[precision]

    def max_idle_price(
        self, precision: Precision, *, discount: Decimal = DEFAULT_IDLE_DISCOUNT
    ) -> Decimal:
        """The highest :meth:`idle_price` anywhere at any time for ``precision`` (the holds of
        preemptible work): the highest posted price discounted, or a dearer ``idle_discount``
        offer of the book."""
        best = discounted(self.max_posted(precision), discount)
        for offer in self.offers.offers:
            if offer.type is OfferType.IDLE_DISCOUNT and offer.precision in (None, precision):
                best = max(best, offer.price_cny_per_scu)
        return best


def discounted(price: Decimal, discount: Decimal) -> Decimal:
    """``price`` x (1 - ``discount``), rounded half up to 0.0001 CNY (monotone in ``price``)."""
    return (price * (1 - discount)).quantize(PRICE_STEP, rounding=ROUND_HALF_UP)


def _price_table(
    scenario: Scenario, center_id: str, model: str, precision: Precision, params: PriceParams
) -> tuple[Decimal, ...]:
    try:
        center = scenario.center(center_id)
    except KeyError:
        raise NoPrice(f"center {center_id!r}: not in scenario {scenario.name!r}") from None
    if model not in scenario.catalog:
        raise NoPrice(f"model {model!r}: not in the catalog of scenario {scenario.name!r}")
    acc = scenario.catalog.get(model)
    speed = speed_scu_per_hour(acc, precision)
    if speed <= 0:
        raise NoPrice(f"model {model!r} cannot run {precision.value} work")
    kwh_per_scu = _d(acc.unit_power_w()) / 1000 * _d(center.pue) / _d(speed)
    tariff = scenario.province(center.province).tariff
    out = []
    for h in range(24):
        energy = kwh_per_scu * _d(tariff.price_at_hour(h))
        price = (energy + params.capacity_cny_per_scu) * (1 + params.margin)
        out.append(price.quantize(PRICE_STEP, rounding=ROUND_HALF_UP))
    return tuple(out)


#: Price books by scenario (a scenario is loaded once per process; its book is built once).
_BOOKS: dict[int, tuple[Scenario, PriceBook]] = {}


def book_for(scenario: Scenario) -> PriceBook:
    """The (cached) price book of a loaded scenario."""
    hit = _BOOKS.get(id(scenario))
    if hit is None or hit[0] is not scenario:
        hit = (scenario, PriceBook(scenario))
        _BOOKS[id(scenario)] = hit
    return hit[1]
