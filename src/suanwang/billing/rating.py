"""Rating: a job's runs (segments of ``running``) -> usage records with their charges.

A *segment* is one run of a job on one center and chip model, from the event that saw it
``running`` to the event that ended the run (succeeded, failed, cancelled, migrating, lost).
Each segment is split at local hour boundaries (the scenario's time zone) and every piece is
charged at that hour's posted price::

    scu    = units x speed(model, precision) x seconds / 3600
    charge = sum over pieces of scu_piece x price(center, model, precision, local hour)

rounded half up to the cent once per segment. Data transfer (``data_gb`` x the link's price
from the job's origin to its first center) is charged once, on the first segment. A run that
ended ``lost`` (its center failed) is metered but not billed: the provider did not deliver;
nor is a run ``preempted`` without a checkpoint (docs/governance.md): its work is lost and runs
again from the start, and the tenant pays only for the run that finishes it.
Energy: IT kWh = units x unit power x hours; facility kWh = IT x PUE; green kWh = facility x
the center's green-contract share; carbon = the rest x the province's grid emission factor.

**Energy pass-through** (a platform setting): instead of the posted price, which embeds the
energy of an SCU at the hour's tariff and marks it up, each piece is charged the *capacity part*
of the posted price plus its metered facility energy at the hour's tariff, at cost::

    charge = sum over pieces of scu_piece x capacity_price + facility_kwh_piece x tariff(hour)
    capacity_price = capacity_cny_per_scu x (1 + margin)     (rounded to 0.0001 CNY)

so a run in a valley hour pays less for its energy than one at the peak, and the energy is not
marked up: per SCU this is never more than the posted price (which holds rely on). A run placed
under a trade (an offer, or the tenant's reservation) pays the trade's price for the hours the
trade is in force, as without pass-through: a provider's offer is an all-in price per SCU.

**Preemptible work** (the ``preemptible`` class, docs/governance.md) runs on capacity nobody
else takes and pays the *idle price* for its compute: each piece is charged the cheaper of what
the same piece of other work would pay (the trade's price, the posted price, or capacity +
energy under pass-through) and its SCU at the idle price of that instant
(:meth:`~suanwang.billing.pricing.PriceBook.idle_price`: the cheapest ``idle_discount`` offer
for the pool, else the posted price x (1 - the platform's idle discount))::

    charge = sum over pieces of min(piece as other work, scu_piece x idle_price(instant))

So a preemptible piece never costs more than the same piece of another class (a cheaper
``on_demand`` offer it was placed under, or the tenant's reservation at 0, stays), and its
hold, at the highest idle price (:func:`estimate_hold`), bounds it as the posted one bounds
other work. Transfer and storage are not discounted.

**Storage**: the job's staged data is held at the run's center while the run lasts::

    storage_gb_months = data_gb x seconds / 3600 / 730
    storage_cny       = storage_gb_months x the posted storage price (CNY per GB-month)

**Tokens**: what the run reported serving (``$SUANWANG_USAGE_FILE``, recorded on the event that
ended the run) is metered on its record; tokens are not charged (the run's SCU are), but free
trial tokens cover the compute of the runs that served them (:mod:`.quotas`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from suanwang.core.hardware import Precision, speed_scu_per_hour

from .money import PRICE_STEP, ZERO, cents, cents_up, qty
from .pricing import DEFAULT_IDLE_DISCOUNT, PriceBook

#: A run stopped by a preemption before it could checkpoint: its work is lost and done again.
PREEMPTED = "preempted"
#: Run ends that are not billed (metered with amount 0).
UNBILLED_ENDS = frozenset({"lost", PREEMPTED})
#: Hours in a billing month, for GB-months (365 x 24 / 12).
HOURS_PER_MONTH = Decimal(730)


@dataclass(frozen=True, slots=True)
class Segment:
    """One run of a job: where, on what, from when to when, and how it ended."""

    seq: int
    center_id: str
    model: str
    started_at: datetime
    ended_at: datetime
    end_state: str
    run_event_id: int
    #: how the dispatcher priced the placement this run came from (trading): ``"offer"`` (a
    #: provider's offer below the posted price), ``"reservation"`` (the tenant's reserved
    #: units, paid at booking) or None (the posted price)
    market: str | None = None
    #: tokens the run reported serving (0: none reported)
    tokens: int = 0

    def __post_init__(self) -> None:
        if self.started_at.tzinfo is None or self.ended_at.tzinfo is None:
            raise ValueError(f"segment {self.seq}: times must be timezone-aware")
        if self.tokens < 0:
            raise ValueError(f"segment {self.seq}: tokens must be >= 0, not {self.tokens}")


@dataclass(frozen=True, slots=True)
class UsageLine:
    """The rated usage of one segment (what a ``usage_records`` row stores)."""

    seq: int
    run_event_id: int
    center_id: str
    model: str
    precision: Precision
    units: int
    started_at: datetime
    ended_at: datetime
    end_state: str
    seconds: Decimal
    scu: Decimal
    it_kwh: Decimal
    facility_kwh: Decimal
    green_kwh: Decimal
    carbon_kg: Decimal
    data_gb: Decimal
    compute_cny: Decimal
    transfer_cny: Decimal
    billable: bool
    #: The energy part of ``compute_cny`` under energy pass-through (0 under posted prices).
    energy_cny: Decimal = ZERO
    #: The job's staged data held at the center for the run, and its charge.
    storage_gb_months: Decimal = ZERO
    storage_cny: Decimal = ZERO
    #: Tokens the run reported serving (metered, not charged).
    tokens: int = 0

    @property
    def amount_cny(self) -> Decimal:
        if not self.billable:
            return ZERO
        return self.compute_cny + self.transfer_cny + self.storage_cny


def rate_segment(
    book: PriceBook,
    seg: Segment,
    *,
    precision: Precision,
    units: int,
    data_gb: Decimal = ZERO,
    transfer_cny_per_gb: Decimal = ZERO,
    energy_pass_through: bool = False,
    tenant: str | None = None,
    stored_gb: Decimal = ZERO,
    preemptible: bool = False,
    idle_discount: Decimal = DEFAULT_IDLE_DISCOUNT,
) -> UsageLine:
    """Rate one segment (``data_gb`` > 0 only for the segment that carries the transfer;
    ``stored_gb``: the job's staged data, held at the center for every run).

    A run is charged as it was placed (``seg.market``): under an offer, at the cheapest offer
    in force at each hour (the posted price outside the offer's window); under ``tenant``'s
    reservation, at 0 while the reservation lasts (it was paid at booking); otherwise at the
    posted price. A run the dispatcher did not place under an offer never gets its price, so
    an offer's price reaches no more units than the engine sold at it.

    ``energy_pass_through``: charge the capacity part of the posted price plus the metered
    facility energy at the tariff of each hour (see the module docstring), except for the
    hours a trade prices (``seg.market``).

    ``preemptible``: the run is of the ``preemptible`` class; each piece costs at most its SCU
    at the idle price (``idle_discount``: the platform's, where no ``idle_discount`` offer
    prices the pool; see the module docstring).
    """
    if units <= 0:
        raise ValueError(f"segment {seg.seq}: units must be positive, not {units}")
    sc = book.scenario
    acc = sc.catalog.get(seg.model)
    center = sc.center(seg.center_id)
    speed = Decimal(repr(speed_scu_per_hour(acc, precision)))
    if energy_pass_through:  # NoPrice if the chip has no posted price (as book.price would)
        book.table(seg.center_id, seg.model, precision)
    tariff = sc.province(center.province).tariff
    facility_kw = Decimal(repr(acc.unit_power_w())) / 1000 * Decimal(repr(center.pue))
    tz = ZoneInfo(sc.timezone)
    end = max(seg.ended_at, seg.started_at)
    t = seg.started_at
    scu_total = Decimal(0)
    money = Decimal(0)
    energy_money = Decimal(0)
    while t < end:
        local = t.astimezone(tz)
        next_hour = (
            local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        ).astimezone(t.tzinfo)
        piece_end = min(next_hour, end)
        secs = Decimal(repr((piece_end - t).total_seconds()))
        scu = units * speed * secs / 3600
        scu_total += scu
        traded = None
        if seg.market is not None:
            who = tenant if seg.market == "reservation" else None
            traded = book.market_price_at(seg.center_id, seg.model, precision, t, tenant=who)
        energy = ZERO
        if traded is not None:
            piece = scu * traded
        elif energy_pass_through:
            kwh = units * facility_kw * secs / 3600
            energy = kwh * Decimal(repr(float(tariff.price_at_hour(local.hour))))
            piece = scu * capacity_price(book) + energy
        else:
            piece = scu * book.price(seg.center_id, seg.model, precision, local.hour)
        if preemptible:
            idle = scu * book.idle_price(
                seg.center_id, seg.model, precision, t, discount=idle_discount
            )
            if idle < piece:
                piece, energy = idle, ZERO
        money += piece
        energy_money += energy
        t = piece_end
    seconds = Decimal(repr((end - seg.started_at).total_seconds()))
    hours = seconds / 3600
    it_kwh = units * Decimal(repr(acc.unit_power_w())) / 1000 * hours
    facility = it_kwh * Decimal(repr(center.pue))
    green = facility * Decimal(repr(center.power.green_ppa_share))
    factor = Decimal(repr(sc.province(center.province).emission_factor_t_per_mwh))
    billable = seg.end_state not in UNBILLED_ENDS
    gb_months = qty(stored_gb * hours / HOURS_PER_MONTH) if stored_gb > 0 else qty(ZERO)
    return UsageLine(
        seq=seg.seq,
        run_event_id=seg.run_event_id,
        center_id=seg.center_id,
        model=seg.model,
        precision=precision,
        units=units,
        started_at=seg.started_at,
        ended_at=end,
        end_state=seg.end_state,
        seconds=qty(seconds),
        scu=qty(scu_total),
        it_kwh=qty(it_kwh),
        facility_kwh=qty(facility),
        green_kwh=qty(green),
        carbon_kg=qty((facility - green) * factor),
        data_gb=qty(data_gb),
        compute_cny=cents(money),
        transfer_cny=cents(data_gb * transfer_cny_per_gb),
        billable=billable,
        energy_cny=cents(energy_money),
        storage_gb_months=gb_months,
        storage_cny=cents(gb_months * book.params.storage_cny_per_gb_month),
        tokens=seg.tokens,
    )


def capacity_price(book: PriceBook) -> Decimal:
    """The capacity part of every posted price, CNY per SCU: capacity x (1 + margin)."""
    p = book.params
    return (p.capacity_cny_per_scu * (1 + p.margin)).quantize(PRICE_STEP, rounding=ROUND_HALF_UP)


def estimate_hold(
    book: PriceBook,
    *,
    work_scu: float,
    precision: Precision,
    data_gb: float,
    max_transfer_cny_per_gb: Decimal,
    units: int = 1,
    preemptible: bool = False,
    idle_discount: Decimal = DEFAULT_IDLE_DISCOUNT,
) -> Decimal:
    """The hold placed at submit: the job's work at the highest posted price in the network
    (any center, any hour), plus its data at the dearest link from its origin and stored for
    as long as its work takes on ``units`` of the slowest chip, rounded up.

    A job's SCU do not depend on where it runs (a faster chip runs it shorter), so this bounds
    the charge of a run that takes as long as its estimate. A ``preemptible`` job's work is
    held at the highest idle price instead (:meth:`PriceBook.max_idle_price`: the highest
    posted price less ``idle_discount``, or a dearer ``idle_discount`` offer of ``book``),
    which bounds its pieces just as well (each costs at most its SCU at the idle price).
    """
    work = Decimal(repr(float(work_scu)))
    data = Decimal(repr(float(data_gb)))
    storage = ZERO
    slowest = book.min_speed(precision)
    if data > 0 and slowest > 0:
        hours = work / (max(units, 1) * slowest)
        storage = data * hours / HOURS_PER_MONTH * book.params.storage_cny_per_gb_month
    if preemptible:
        price = book.max_idle_price(precision, discount=idle_discount)
    else:
        price = book.max_price(precision)
    return cents_up(work * price + data * max_transfer_cny_per_gb + cents_up(storage))
