"""Pure billing rules: posted prices, rating of runs, posting rules, amounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.billing import ledger
from suanwang.billing.money import cents_up, parse_amount, qty
from suanwang.billing.pricing import NoPrice, PriceBook, PriceParams
from suanwang.billing.rating import Segment, estimate_hold, rate_segment
from suanwang.core.hardware import Precision
from suanwang.scenarios.loader import load_scenario

SC = load_scenario("china")
BOOK = PriceBook(SC)


def _a100_center() -> str:
    return next(c.id for c in SC.centers if dict(c.inventory).get("a100", 0) > 0)


def test_posted_price_follows_the_formula_by_hand() -> None:
    cid = _a100_center()
    center = SC.center(cid)
    acc = SC.catalog.get("a100")
    tariff = SC.province(center.province).tariff
    for hour in (3, 12, 19):
        kwh = Decimal(repr(acc.unit_power_w())) / 1000 * Decimal(repr(center.pue))  # speed 1
        energy = kwh * Decimal(repr(tariff.price_at_hour(hour)))
        expect = ((energy + Decimal("3.50")) * Decimal("1.15")).quantize(Decimal("0.0001"))
        assert BOOK.price(cid, "a100", Precision.FP16, hour) == expect


def test_prices_are_time_of_use_aware() -> None:
    cid = _a100_center()
    table = BOOK.table(cid, "a100", Precision.FP16)
    tariff = SC.province(SC.center(cid).province).tariff.hourly_ratios()
    valley, peak = tariff.index(min(tariff)), tariff.index(max(tariff))
    assert min(tariff) < max(tariff)
    assert table[valley] < table[peak]
    # without capacity and margin the price is pure energy: proportional to the tariff
    bare = PriceBook(SC, PriceParams(capacity_cny_per_scu=Decimal(0), margin=Decimal(0)))
    t = bare.table(cid, "a100", Precision.FP16)
    assert float(t[peak] / t[valley]) == pytest.approx(max(tariff) / min(tariff), rel=1e-3)


def test_no_price_names_what_is_missing() -> None:
    with pytest.raises(NoPrice, match="center 'atlantis'"):
        BOOK.table("atlantis", "a100", Precision.FP16)
    cid = _a100_center()
    with pytest.raises(NoPrice, match="cannot run cpu work"):
        BOOK.table(cid, "a100", Precision.CPU)
    with pytest.raises(ValueError, match="margin"):
        PriceParams(margin=Decimal("2"))


def test_price_list_has_24_hours_per_model_and_precision() -> None:
    cid = _a100_center()
    rows = BOOK.price_list(cid)
    assert rows and all(len(r["cny_per_scu_by_hour"]) == 24 for r in rows)  # type: ignore[arg-type]
    assert {"a100"} <= {r["model"] for r in rows}


T0 = datetime(2025, 7, 1, 0, 0, tzinfo=UTC)  # 08:00 in Asia/Shanghai


def test_a_run_is_split_at_local_hours_and_charged_at_each_hours_price() -> None:
    cid = _a100_center()
    seg = Segment(
        0, cid, "a100", T0 + timedelta(minutes=30), T0 + timedelta(hours=2), "succeeded", 1
    )
    line = rate_segment(BOOK, seg, precision=Precision.FP16, units=8)
    assert line.scu == Decimal("12.000000")  # 8 cards x 1.5 h x speed 1
    p = [BOOK.price(cid, "a100", Precision.FP16, h) for h in (8, 9)]
    expect = (4 * p[0] + 8 * p[1]).quantize(Decimal("0.01"))  # 0.5 h then 1 h, 8 cards
    assert line.compute_cny == expect and line.amount_cny == expect
    center = SC.center(cid)
    assert line.it_kwh == (
        Decimal(repr(SC.catalog.get("a100").unit_power_w())) * 8 * Decimal("1.5") / 1000
    ).quantize(Decimal("0.000001"))
    assert line.facility_kwh >= line.it_kwh >= line.green_kwh >= 0
    assert center.pue >= 1


def test_a_lost_run_is_metered_but_not_billed_and_transfer_is_charged() -> None:
    cid = _a100_center()
    seg = Segment(0, cid, "a100", T0, T0 + timedelta(hours=1), "lost", 7)
    line = rate_segment(BOOK, seg, precision=Precision.FP16, units=1)
    assert line.scu == Decimal("1.000000") and line.compute_cny > 0 and line.amount_cny == 0
    seg = Segment(0, cid, "a100", T0, T0, "succeeded", 8)
    line = rate_segment(
        BOOK, seg, precision=Precision.FP16, units=1, data_gb=Decimal("100"),
        transfer_cny_per_gb=Decimal("0.08"),
    )  # fmt: skip
    assert line.compute_cny == 0 and line.transfer_cny == Decimal("8.00")


@settings(max_examples=60, deadline=None)
@given(
    start_min=st.integers(0, 60 * 24 * 3),
    minutes=st.integers(0, 60 * 30),
    cut=st.integers(0, 60 * 30),
    units=st.integers(1, 64),
)
def test_splitting_a_run_never_changes_its_scu(
    start_min: int, minutes: int, cut: int, units: int
) -> None:
    cid = _a100_center()
    a = T0 + timedelta(minutes=start_min)
    b = a + timedelta(minutes=minutes)
    m = a + timedelta(minutes=min(cut, minutes))
    whole = rate_segment(
        BOOK, Segment(0, cid, "a100", a, b, "succeeded", 1), precision=Precision.FP16, units=units
    )
    p1 = rate_segment(
        BOOK, Segment(0, cid, "a100", a, m, "succeeded", 1), precision=Precision.FP16, units=units
    )
    p2 = rate_segment(
        BOOK, Segment(1, cid, "a100", m, b, "succeeded", 2), precision=Precision.FP16, units=units
    )
    assert whole.scu == qty(Decimal(units * minutes) / 60)
    assert abs(p1.scu + p2.scu - whole.scu) <= Decimal("0.000002")  # each kept to 6 decimals
    # the split parts are rounded separately: at most a fen each away from the whole
    assert abs(p1.compute_cny + p2.compute_cny - whole.compute_cny) <= Decimal("0.01")


def test_the_hold_bounds_the_charge_of_a_run_as_long_as_its_estimate() -> None:
    hold = estimate_hold(
        BOOK, work_scu=16.0, precision=Precision.FP16, data_gb=0.0,
        max_transfer_cny_per_gb=Decimal("0.08"),
    )  # fmt: skip
    for c in SC.centers:
        if dict(c.inventory).get("a100"):
            for h in range(24):  # 8 cards x 2 h anywhere, any hour
                seg = Segment(
                    0,
                    c.id,
                    "a100",
                    T0 + timedelta(hours=h),
                    T0 + timedelta(hours=h + 2),
                    "succeeded",
                    1,
                )
                assert rate_segment(BOOK, seg, precision=Precision.FP16, units=8).amount_cny <= hold


def test_the_hold_bounds_storage_too_for_as_long_as_the_work_takes_on_the_slowest_chip() -> None:
    data = Decimal(500)
    hold = estimate_hold(
        BOOK, work_scu=16.0, precision=Precision.FP16, data_gb=float(data),
        max_transfer_cny_per_gb=Decimal("0.08"), units=8,
    )  # fmt: skip
    without = cents_up(16 * BOOK.max_price(Precision.FP16) + data * Decimal("0.08"))
    slowest = BOOK.min_speed(Precision.FP16)
    assert Decimal(0) < slowest <= 1  # no chip in the network is slower than this one
    hours = float(Decimal(16) / (8 * slowest))  # the work on 8 of the slowest chips
    seg = Segment(0, _a100_center(), "a100", T0, T0 + timedelta(hours=hours), "succeeded", 1)
    line = rate_segment(BOOK, seg, precision=Precision.FP16, units=8, stored_gb=data)
    # 500 GB kept for that long at 0.30 CNY a GB-month: the part of the hold beyond work + data
    assert Decimal(0) < line.storage_cny <= hold - without
    assert hold - without <= line.storage_cny + Decimal("0.02")


amounts = st.decimals(min_value=Decimal("0"), max_value=Decimal("100000"), places=2)
rates = st.decimals(min_value=Decimal("0.05"), max_value=Decimal("0.10"), places=3)


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(amounts, min_size=0, max_size=3),
    hold=amounts,
    available=amounts,
    rate=rates,
)
def test_every_charge_balances_and_pays_out_exactly_what_was_charged(
    parts: list[Decimal], hold: Decimal, available: Decimal, rate: Decimal
) -> None:
    by_provider = {f"provider:p{i}:payable": a for i, a in enumerate(parts)}
    e = ledger.charge(
        tenant_id="t", job_id="j", by_provider=by_provider, hold_amount=hold,
        available=available, rate=rate,
    )  # fmt: skip
    d = e.delta()
    assert sum(d.values()) == 0
    amount = sum(parts, Decimal("0.00"))
    assert e.amount == amount
    paid = sum((v for k, v in d.items() if k.startswith("provider:")), Decimal(0))
    assert paid + d.get(ledger.PLATFORM_COMMISSION, Decimal(0)) == amount == e.amount
    assert d.get(ledger.held("t"), Decimal(0)) == -hold
    # the prepaid balance never goes below zero: it gives at most what it has
    assert d.get(ledger.prepaid("t"), Decimal(0)) >= -available
    assert d.get(ledger.postpaid("t"), Decimal(0)) <= 0
    assert abs(e.commission - amount * rate) <= Decimal("0.005") * max(len(parts), 1)


def test_unbalanced_entries_cannot_be_built() -> None:
    with pytest.raises(ledger.Unbalanced, match=r"sum to 1\.00"):
        ledger.Entry("topup", "x", (ledger.Posting("platform:cash", Decimal("1.00")),), Decimal(1))
    with pytest.raises(ValueError, match=r"between 0\.05 and 0\.10"):
        ledger.check_commission(Decimal("0.12"))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("abc", "not a plain decimal number"),
        ("-5", "must be positive"),
        ("0", "must be positive"),
        ("1.234", "more than 2 decimals"),
        ("NaN", "not a plain decimal number"),
        ("10000000000000", "too large"),
        ("007", "leading zero"),
        # exactly the published pattern: no exponent (1E+26 overflowed the decimal context, a
        # 500), no separators, full-width digits, spaces or signs are silently read
        ("1E+26", "not a plain decimal number"),
        ("1e13", "not a plain decimal number"),
        ("1_000", "not a plain decimal number"),
        ("\uff15", "not a plain decimal number"),
        (" 5 ", "not a plain decimal number"),
        ("+5", "not a plain decimal number"),
    ],
)
def test_amounts_are_checked_with_a_clear_error(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_amount(text, what="AMOUNT")
    assert parse_amount("12.5") == Decimal("12.50")


def test_amounts_accepted_are_exactly_those_the_schema_publishes() -> None:
    """parse_amount takes a text if and only if it matches AMOUNT_PATTERN (what the OpenAPI
    document says), for texts near the edges."""
    import re

    from suanwang.billing.money import AMOUNT_PATTERN

    texts = ["1", "0.01", "0.1", "0.10", "0.00", "0.001", "999999999999.99", "1000000000000",
             "1.", ".5", "01", "1.000", "12.50", "5e2", "0x10", "1 000", "١٢"]  # fmt: skip
    for text in texts:
        published = re.fullmatch(AMOUNT_PATTERN, text) is not None
        try:
            parse_amount(text)
            accepted = True
        except ValueError:
            accepted = False
        assert accepted == published, text
