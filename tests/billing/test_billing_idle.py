"""Preemptible work at the idle price (pure): the cheapest ``idle_discount`` offer of the pool,
else the posted price less the platform's idle discount; never more than the same piece of
other work; held at the highest idle price."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.billing.money import cents, cents_up
from suanwang.billing.offers import Offer, OfferBook, OfferType
from suanwang.billing.pricing import (
    DEFAULT_IDLE_DISCOUNT,
    PriceBook,
    check_idle_discount,
    discounted,
)
from suanwang.billing.rating import Segment, UsageLine, estimate_hold, rate_segment
from suanwang.core.hardware import Precision
from suanwang.scenarios.loader import load_scenario

SC = load_scenario("china")
BOOK = PriceBook(SC)
TZ = ZoneInfo(SC.timezone)
#: 00:00 UTC: 08:00 in the scenario's zone
T0 = datetime(2026, 11, 23, 0, tzinfo=UTC)
FP16 = Precision.FP16
#: prices are kept to 1/100 fen, rounded half up (not half even: 2.29505 is 2.2951)
STEP = Decimal("0.0001")
CENTER = next(c.id for c in SC.centers if dict(c.inventory).get("a100", 0) > 0)


def _offer(oid: str, price: str, kind: OfferType, hours: int = 2, **kw: object) -> Offer:
    return Offer(oid, None, CENTER, "a100", 8, Decimal(price), T0, T0 + timedelta(hours=hours),
                 kind, **kw)  # type: ignore[arg-type]  # fmt: skip


def _rate(
    book: PriceBook, hours: float = 3, *, market: str | None = None, start: datetime = T0,
    units: int = 8, **kw: object,
) -> UsageLine:  # fmt: skip
    seg = Segment(0, CENTER, "a100", start, start + timedelta(hours=hours), "succeeded", 1,
                  market=market)  # fmt: skip
    return rate_segment(book, seg, precision=FP16, units=units, **kw)  # type: ignore[arg-type]


def _posted(h: int) -> Decimal:
    """The posted price of the h-th hour from T0 (a100 at CENTER, fp16)."""
    return BOOK.price(CENTER, "a100", FP16, (T0 + timedelta(hours=h)).astimezone(TZ).hour)


def test_the_default_discount_is_half_and_each_hour_pays_its_posted_price_halved() -> None:
    assert Decimal("0.50") == DEFAULT_IDLE_DISCOUNT
    line = _rate(BOOK, preemptible=True)  # 8 A100s for 3 h: 8 SCU in each of 3 local hours
    by_hand = sum(8 * (_posted(h) * Decimal("0.5")).quantize(STEP, ROUND_HALF_UP) for h in range(3))
    assert line.compute_cny == cents(by_hand)
    assert line.compute_cny < _rate(BOOK).compute_cny
    assert line.scu == _rate(BOOK).scu == Decimal(24)  # the same work, metered the same
    # the same hour's idle price, as the book answers it
    assert BOOK.idle_price(CENTER, "a100", FP16, T0) == discounted(_posted(0), Decimal("0.5"))


@pytest.mark.parametrize("discount", ["0", "0.25", "0.50", "0.90"])
def test_a_changed_setting_changes_the_discount(discount: str) -> None:
    d = Decimal(discount)
    line = _rate(BOOK, preemptible=True, idle_discount=d)
    by_hand = sum(8 * (_posted(h) * (1 - d)).quantize(STEP, ROUND_HALF_UP) for h in range(3))
    assert line.compute_cny == cents(by_hand)
    if d == 0:  # no discount: exactly what other work pays
        assert line.compute_cny == _rate(BOOK).compute_cny


def test_the_idle_price_is_rounded_half_up_to_a_hundredth_of_a_fen() -> None:
    assert discounted(Decimal("4.2511"), Decimal("0.50")) == Decimal("2.1256")  # 2.12555
    assert discounted(Decimal("4.2509"), Decimal("0.50")) == Decimal("2.1255")  # 2.12545
    assert discounted(Decimal("4.9292"), Decimal("0.33")) == Decimal("3.3026")  # 3.302564
    # the charge is rounded once per run, half up to the fen, as other work's
    line = _rate(BOOK, hours=0.25, units=1, preemptible=True)  # 0.25 SCU
    assert line.compute_cny == cents(Decimal("0.25") * discounted(_posted(0), Decimal("0.5")))


@pytest.mark.parametrize("bad", ["-0.1", "0.91", "1", "0.333", "NaN", "Infinity"])
def test_an_idle_discount_out_of_bounds_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match=r"idle discount .*between 0 and 0\.90"):
        check_idle_discount(Decimal(bad))
    assert check_idle_discount(Decimal("0.5")) == Decimal("0.50")


def test_an_idle_discount_offer_prices_preemptible_work_on_its_pool_in_its_window() -> None:
    # 2 h at 1.20 from T0, then the posted price halved for the third hour
    book = PriceBook(SC, offers=OfferBook((_offer("idle", "1.20", OfferType.IDLE_DISCOUNT),)))
    line = _rate(book, preemptible=True)
    third = (_posted(2) * Decimal("0.5")).quantize(STEP, ROUND_HALF_UP)
    assert line.compute_cny == cents(16 * Decimal("1.20") + 8 * third)
    # other work not placed under the offer pays the posted price, as before
    assert _rate(book).compute_cny == _rate(BOOK).compute_cny


def test_an_idle_offer_dearer_than_the_default_discount_is_the_providers_price() -> None:
    book = PriceBook(SC, offers=OfferBook((_offer("idle", "3.00", OfferType.IDLE_DISCOUNT),)))
    assert Decimal("3.00") > discounted(_posted(0), DEFAULT_IDLE_DISCOUNT)
    line = _rate(book, hours=2, preemptible=True)
    assert line.compute_cny == cents(16 * Decimal("3.00"))


def test_an_idle_offer_never_makes_preemptible_work_dearer_than_other_work() -> None:
    book = PriceBook(SC, offers=OfferBook((_offer("idle", "9.00", OfferType.IDLE_DISCOUNT),)))
    assert Decimal("9.00") > _posted(0)
    assert _rate(book, hours=2, preemptible=True).compute_cny == _rate(BOOK, hours=2).compute_cny


def test_a_cheaper_on_demand_offer_it_was_placed_under_stays() -> None:
    book = PriceBook(SC, offers=OfferBook((_offer("od", "1.00", OfferType.ON_DEMAND),)))
    assert Decimal("1.00") < discounted(_posted(0), DEFAULT_IDLE_DISCOUNT)
    line = _rate(book, hours=2, market="offer", preemptible=True)
    assert line.compute_cny == cents(16 * Decimal("1.00"))
    # not placed under it: the idle price (the on_demand offer prices only what it sold)
    plain = _rate(book, hours=2, preemptible=True)
    assert plain.compute_cny == _rate(BOOK, hours=2, preemptible=True).compute_cny
    # both kinds on the pool: under the offer the cheaper one, else the idle offer
    two = (
        _offer("od", "2.50", OfferType.ON_DEMAND),
        _offer("idle", "1.50", OfferType.IDLE_DISCOUNT),
    )
    both = PriceBook(SC, offers=OfferBook(two))
    for market in ("offer", None):
        got = _rate(both, hours=2, market=market, preemptible=True).compute_cny
        assert got == cents(16 * Decimal("1.50"))


def test_a_reservation_stays_free_and_an_unbilled_end_stays_unbilled() -> None:
    from suanwang.billing.offers import Reservation

    res = Reservation("r", "o", "bob", CENTER, "a100", 8, T0, T0 + timedelta(hours=2))
    reserved = _offer("o", "2.00", OfferType.RESERVED)
    book = PriceBook(SC, offers=OfferBook((reserved,), (res,)))
    line = _rate(book, hours=2, market="reservation", preemptible=True, tenant="bob")
    assert line.compute_cny == 0
    seg = Segment(0, CENTER, "a100", T0, T0 + timedelta(hours=1), "preempted", 1)
    lost = rate_segment(BOOK, seg, precision=FP16, units=8, preemptible=True)
    assert lost.compute_cny > 0 and not lost.billable and lost.amount_cny == 0


def test_under_energy_pass_through_a_piece_pays_the_cheaper_of_the_two() -> None:
    passed = _rate(BOOK, energy_pass_through=True)
    idle = _rate(BOOK, preemptible=True)
    both = _rate(BOOK, energy_pass_through=True, preemptible=True)
    assert both.compute_cny <= min(passed.compute_cny, idle.compute_cny) + Decimal("0.01")
    assert both.compute_cny == idle.compute_cny  # half the posted price is below capacity alone
    assert both.energy_cny == 0  # the idle price won every piece: no energy passed through
    none = _rate(BOOK, energy_pass_through=True, preemptible=True, idle_discount=Decimal(0))
    assert none.compute_cny == passed.compute_cny and none.energy_cny == passed.energy_cny


def test_the_hold_of_preemptible_work_is_at_the_highest_idle_price() -> None:
    kw = {"work_scu": 16.0, "precision": FP16, "data_gb": 0.0,
          "max_transfer_cny_per_gb": Decimal("0.08")}  # fmt: skip
    normal = estimate_hold(BOOK, **kw)  # type: ignore[arg-type]
    idle = estimate_hold(BOOK, preemptible=True, **kw)  # type: ignore[arg-type]
    assert normal == cents_up(16 * BOOK.max_price(FP16))
    assert idle == cents_up(16 * discounted(BOOK.max_posted(FP16), Decimal("0.5"))) < normal
    # an idle_discount offer dearer than that raises the bound to its price
    price = discounted(BOOK.max_posted(FP16), Decimal("0.5")) + 1
    dear = PriceBook(SC, offers=OfferBook((_offer("idle", str(price), OfferType.IDLE_DISCOUNT),)))
    dear_hold = estimate_hold(dear, preemptible=True, **kw)  # type: ignore[arg-type]
    assert dear_hold == cents_up(16 * price)
    # each bounds the charge of 8 cards x 2 h anywhere, any hour, at its book
    for book, hold in ((BOOK, idle), (dear, dear_hold)):
        for c in SC.centers:
            if dict(c.inventory).get("a100"):
                for h in range(0, 24, 3):
                    seg = Segment(0, c.id, "a100", T0 + timedelta(hours=h),
                                  T0 + timedelta(hours=h + 2), "succeeded", 1)  # fmt: skip
                    line = rate_segment(book, seg, precision=FP16, units=8, preemptible=True)
                    assert line.amount_cny <= hold


prices = st.decimals(min_value=Decimal("0.5"), max_value=Decimal("12"), places=4)


@settings(max_examples=150, deadline=None)
@given(
    start_min=st.integers(0, 48 * 60),
    minutes=st.integers(1, 10 * 60),
    units=st.integers(1, 16),
    discount=st.integers(0, 90).map(lambda c: Decimal(c) / 100),
    idle=st.none() | prices,
    on_demand=st.none() | prices,
    market=st.sampled_from([None, "offer"]),
    pass_through=st.booleans(),
)
def test_a_preemptible_piece_never_costs_more_than_the_same_piece_of_other_work(
    start_min: int, minutes: int, units: int, discount: Decimal, idle: Decimal | None,
    on_demand: Decimal | None, market: str | None, pass_through: bool,
) -> None:  # fmt: skip
    offers = [_offer("idle", str(idle), OfferType.IDLE_DISCOUNT, hours=24)] if idle else []
    if on_demand:
        offers.append(_offer("od", str(on_demand), OfferType.ON_DEMAND, hours=24))
    book = PriceBook(SC, offers=OfferBook(tuple(offers)))
    start = T0 + timedelta(minutes=start_min)
    kw = {"hours": minutes / 60, "market": market, "start": start, "units": units,
          "energy_pass_through": pass_through}  # fmt: skip
    other = _rate(book, **kw)  # type: ignore[arg-type]
    pre = _rate(book, preemptible=True, idle_discount=discount, **kw)  # type: ignore[arg-type]
    assert pre.compute_cny <= other.compute_cny
    assert pre.scu == other.scu and pre.amount_cny - pre.compute_cny == (
        other.amount_cny - other.compute_cny
    )  # transfer and storage are not discounted
    hold = estimate_hold(
        book, work_scu=float(other.scu), precision=FP16, data_gb=0.0,
        max_transfer_cny_per_gb=Decimal(0), preemptible=True, idle_discount=discount,
    )  # fmt: skip
    assert pre.amount_cny <= hold + Decimal("0.01")  # the work rounded to 6 decimals in the hold
