"""Offers and reservations (pure): validation, the price an offer makes, reservation cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.billing import ledger
from suanwang.billing.money import cents
from suanwang.billing.offers import (
    Offer,
    OfferBook,
    OfferError,
    OfferType,
    Reservation,
    offer_from_dict,
    reservation_cost,
)
from suanwang.billing.pricing import PriceBook
from suanwang.billing.rating import Segment, capacity_price, rate_segment
from suanwang.core.hardware import Precision
from suanwang.scenarios.loader import load_scenario

SC = load_scenario("china")
T0 = datetime(2026, 11, 23, 0, tzinfo=UTC)


def _a100_center() -> str:
    return next(c.id for c in SC.centers if dict(c.inventory).get("a100", 0) > 0)


def _offer(oid: str = "o1", price: str = "1.00", **kw: object) -> Offer:
    base: dict[str, object] = {
        "id": oid,
        "provider": None,
        "center_id": _a100_center(),
        "model": "a100",
        "units": 8,
        "price_cny_per_scu": Decimal(price),
        "start": T0,
        "end": T0 + timedelta(hours=6),
    }
    base.update(kw)
    return Offer(**base)  # type: ignore[arg-type]


def test_without_offers_the_book_answers_the_posted_price() -> None:
    plain, aware = PriceBook(SC), PriceBook(SC, offers=OfferBook())
    cid = _a100_center()
    for h in range(0, 48, 5):
        at = T0 + timedelta(hours=h)
        assert aware.price_at(cid, "a100", Precision.FP16, at) == plain.posted_at(
            cid, "a100", Precision.FP16, at
        )
    # the scenario's zone (Asia/Shanghai, +8): 00:00 UTC is 08:00 local
    assert plain.posted_at(cid, "a100", Precision.FP16, T0) == plain.price(
        cid, "a100", Precision.FP16, 8
    )
    assert aware.max_price(Precision.FP16) == plain.max_price(Precision.FP16)


def test_an_offer_replaces_the_posted_price_in_its_window_and_the_cheapest_wins() -> None:
    cid = _a100_center()
    book = PriceBook(
        SC,
        offers=OfferBook.of(
            [
                _offer("dear", "2.50"),
                _offer("cheap", "1.20", start=T0 + timedelta(hours=2)),
                _offer("x", "9.00"),
                _offer("fp64-only", "0.50", precision=Precision.FP64),
                _offer("reserved", "0.20", type=OfferType.RESERVED),
            ]
        ),
    )
    posted = PriceBook(SC)
    assert book.price_at(cid, "a100", Precision.FP16, T0) == Decimal("2.5000")
    assert book.price_at(cid, "a100", Precision.FP16, T0 + timedelta(hours=3)) == Decimal("1.2")
    # fp64 work sees the fp64-only offer; reserved capacity never prices pay-as-you-go work
    assert book.price_at(cid, "a100", Precision.FP64, T0) == Decimal("0.5")
    after = T0 + timedelta(hours=6)
    assert book.price_at(cid, "a100", Precision.FP16, after) == posted.posted_at(
        cid, "a100", Precision.FP16, after
    )
    other = next(c.id for c in SC.centers if c.id != cid and dict(c.inventory).get("a100"))
    assert book.price_at(other, "a100", Precision.FP16, T0) == posted.posted_at(
        other, "a100", Precision.FP16, T0
    )
    assert book.max_price(Precision.FP16) == max(posted.max_price(Precision.FP16), Decimal(9))
    assert book.offers.offered_units(cid, "a100", T0) == 8 * 4
    assert book.offers.offered_units(cid, "a100", T0 + timedelta(hours=3)) == 8 * 5


def test_a_reservation_makes_its_tenants_work_free_and_others_pay() -> None:
    cid = _a100_center()
    res = Reservation("r1", "o1", "acme", cid, "a100", 4, T0, T0 + timedelta(hours=2))
    book = PriceBook(SC, offers=OfferBook.of([_offer("o1", "1.00")], [res]))
    assert book.price_at(cid, "a100", Precision.FP16, T0, tenant="acme") == 0
    assert book.price_at(cid, "a100", Precision.FP16, T0, tenant="other") == Decimal("1.00")
    late = T0 + timedelta(hours=2)
    assert book.price_at(cid, "a100", Precision.FP16, late, tenant="acme") == Decimal("1.00")
    assert book.offers.reserved_units(cid, "a100", T0) == 4
    assert book.offers.reserved_units(cid, "a100", T0, tenant="other") == 0


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"units": 0}, "units", "whole number >= 1"),
        ({"units": True}, "units", "whole number"),
        ({"price_cny_per_scu": "0"}, "price_cny_per_scu", "positive"),
        ({"price_cny_per_scu": "1.00001"}, "price_cny_per_scu", "more than 4 decimals"),
        ({"price_cny_per_scu": "abc"}, "price_cny_per_scu", "not a plain decimal number"),
        # was a decimal.InvalidOperation (a 500): the 4 decimals overflowed the context
        ({"price_cny_per_scu": "1e24"}, "price_cny_per_scu", "not a plain decimal number"),
        ({"price_cny_per_scu": 1e24}, "price_cny_per_scu", "not a plain decimal number"),
        ({"price_cny_per_scu": "1_000"}, "price_cny_per_scu", "not a plain decimal number"),
        ({"price_cny_per_scu": " 5 "}, "price_cny_per_scu", "not a plain decimal number"),
        ({"price_cny_per_scu": True}, "price_cny_per_scu", "not a decimal number"),
        ({"price_cny_per_scu": "5000"}, "price_cny_per_scu", "above"),
        ({"start": "2026-11-23T00:00"}, "start", "no UTC offset"),
        ({"start": "yesterday"}, "start", "not an ISO 8601 time"),
        ({"end": "2026-11-23T00:30Z"}, "end", "whole hour"),
        ({"end": "2026-11-22T00:00Z"}, "end", "not after start"),
        ({"end": "2028-11-22T00:00Z"}, "end", "longer than"),
        ({"type": "spot"}, "type", "not one of"),
        ({"precision": "int4"}, "precision", "not one of"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_bad_offers_name_the_field(change: dict[str, object], field: str, message: str) -> None:
    doc: dict[str, object] = {
        "center": _a100_center(),
        "model": "a100",
        "units": 8,
        "price_cny_per_scu": "1.20",
        "start": "2026-11-23T00:00Z",
        "end": "2026-11-24T00:00+00:00",
    }
    assert offer_from_dict(doc, default_id="ok").price_cny_per_scu == Decimal("1.2")
    doc.update(change)
    with pytest.raises(OfferError, match=message) as err:
        offer_from_dict(doc, default_id="x")
    assert err.value.field == field


def test_offers_are_checked_against_the_scenario() -> None:
    cid = _a100_center()
    have = dict(SC.center(cid).inventory)["a100"]
    _offer(units=have).check_scenario(SC)
    with pytest.raises(OfferError, match="more than") as err:
        _offer(units=have + 1).check_scenario(SC)
    assert err.value.field == "units"
    with pytest.raises(OfferError, match="not a center"):
        _offer(center_id="atlantis").check_scenario(SC)
    with pytest.raises(OfferError, match="not in the catalog"):
        _offer(model="tpu9").check_scenario(SC)
    with pytest.raises(OfferError, match="appears twice"):
        OfferBook.of([_offer("a"), _offer("a")])
    with pytest.raises(OfferError, match="float"):
        _offer(price_cny_per_scu=1.5)  # type: ignore[arg-type]


def test_reservation_cost_is_the_reserved_scu_at_the_offer_price() -> None:
    offer = _offer("r", "2.00", type=OfferType.RESERVED)
    # a100 at fp16 delivers 1 SCU per card-hour: 4 cards x 3 h x 2.00 = 24.00
    cost = reservation_cost(
        offer, scenario=SC, units=4, start=T0, end=T0 + timedelta(hours=3),
        precision=Precision.FP16,
    )  # fmt: skip
    assert cost == Decimal("24.00")
    with pytest.raises(OfferError, match="more than the offer's") as err:
        reservation_cost(
            offer, scenario=SC, units=9, start=T0, end=T0 + timedelta(hours=1),
            precision=Precision.FP16,
        )  # fmt: skip
    assert err.value.field == "units"
    with pytest.raises(OfferError, match="within the offer") as err:
        reservation_cost(
            offer, scenario=SC, units=1, start=T0, end=T0 + timedelta(hours=7),
            precision=Precision.FP16,
        )  # fmt: skip
    assert err.value.field == "end"
    with pytest.raises(OfferError, match="not reserved"):
        reservation_cost(
            _offer(), scenario=SC, units=1, start=T0, end=T0 + timedelta(hours=1),
            precision=Precision.FP16,
        )  # fmt: skip


@given(
    amount=st.decimals(min_value=0, max_value=100000, places=2),
    rate=st.decimals(min_value=Decimal("0.05"), max_value=Decimal("0.10"), places=3),
    prepaid_only=st.booleans(),
)
def test_reservation_payment_balances_splits_like_a_charge_and_refunds_exactly(
    amount: Decimal, rate: Decimal, prepaid_only: bool
) -> None:
    entry = ledger.reservation(
        tenant_id="t", reservation_id="r", amount=amount,
        provider_account=ledger.payable("p"), rate=rate, prepaid_only=prepaid_only,
    )  # fmt: skip
    delta = entry.delta()  # Entry itself refuses postings that do not sum to zero
    payer = ledger.prepaid("t") if prepaid_only else ledger.postpaid("t")
    assert delta.get(payer, Decimal(0)) == -amount
    comm, payout = ledger.split_commission(amount, rate)
    assert delta.get(ledger.payable("p"), Decimal(0)) == payout
    assert delta.get(ledger.PLATFORM_COMMISSION, Decimal(0)) == comm == entry.commission
    back = ledger.reversal(entry)
    assert back.ref == "refund:reservation:r"
    total = {a: v + back.delta().get(a, Decimal(0)) for a, v in delta.items()}
    assert all(v == 0 for v in total.values())


def test_energy_pass_through_leaves_a_trade_at_its_price_and_passes_through_the_rest() -> None:
    book = PriceBook(SC, offers=OfferBook((_offer(price="1.50"),)))
    cid = _a100_center()
    # 8 cards for 8 h from T0: the offer prices the first 6 h, pass-through the last 2
    seg = Segment(0, cid, "a100", T0, T0 + timedelta(hours=8), "succeeded", 1, market="offer")
    line = rate_segment(book, seg, precision=Precision.FP16, units=8, energy_pass_through=True)
    tail = rate_segment(
        book,
        Segment(0, cid, "a100", T0 + timedelta(hours=6), T0 + timedelta(hours=8), "succeeded", 1),
        precision=Precision.FP16,
        units=8,
        energy_pass_through=True,
    )
    assert tail.compute_cny == cents(16 * capacity_price(book) + tail.energy_cny)
    assert line.compute_cny == cents(48 * Decimal("1.50") + 16 * capacity_price(book)
                                     + tail.energy_cny)  # fmt: skip
    assert line.energy_cny == tail.energy_cny  # energy is passed through outside the offer only
    # without the market the run pays pass-through for all 8 h, as before
    plain = rate_segment(
        book, Segment(0, cid, "a100", T0, T0 + timedelta(hours=8), "succeeded", 1),
        precision=Precision.FP16, units=8, energy_pass_through=True,
    )  # fmt: skip
    assert plain.compute_cny > line.compute_cny


def test_prices_accepted_are_exactly_those_the_schema_publishes() -> None:
    """parse_price takes a text if and only if it matches PRICE_PATTERN (the OpenAPI
    document's), for texts near the edges."""
    import re

    from suanwang.billing.offers import PRICE_PATTERN, parse_price

    texts = ["1", "0", "0.0", "0.0001", "0.00001", "0.1000", "1000", "1000.0000", "1000.0001",
             "999.9999", "01", "1.", ".5", "3.2", "1e3", "0.0010", "00.1"]  # fmt: skip
    for text in texts:
        published = re.fullmatch(PRICE_PATTERN, text) is not None
        try:
            parse_price(text)
            accepted = True
        except OfferError:
            accepted = False
        assert accepted == published, text
