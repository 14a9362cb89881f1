"""Pure rules of trial quotas (what free card-hours cover, the charge that funds them) and of
energy pass-through (capacity part of the posted price + metered energy at the hour's tariff)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.billing import ledger, quotas
from suanwang.billing.money import cents
from suanwang.billing.pricing import PriceBook
from suanwang.billing.rating import Segment, UsageLine, capacity_price, rate_segment
from suanwang.core.hardware import Precision
from suanwang.scenarios.loader import load_scenario

SC = load_scenario("china")
BOOK = PriceBook(SC)
CID = next(c.id for c in SC.centers if dict(c.inventory).get("a100", 0) > 0)
T0 = datetime(2025, 7, 1, 0, 0, tzinfo=UTC)  # 08:00 in Asia/Shanghai


def _hour_at(local_hour: int) -> datetime:
    """The UTC instant of ``local_hour`` (Asia/Shanghai, UTC+8) on T0's local day."""
    return T0 + timedelta(hours=(local_hour - 8) % 24)


def _line(hours: float, *, units: int = 8, end: str = "succeeded", seq: int = 0) -> UsageLine:
    seg = Segment(seq, CID, "a100", T0, T0 + timedelta(hours=hours), end, 100 + seq)
    return rate_segment(BOOK, seg, precision=Precision.FP16, units=units)


# --------------------------------------------------------------------------- energy


def test_energy_pass_through_charges_capacity_plus_metered_energy_at_the_hours_tariff() -> None:
    tariff = SC.province(SC.center(CID).province).tariff.hourly_ratios()
    valley, peak = tariff.index(min(tariff)), tariff.index(max(tariff))
    lines = {}
    for name, hour in (("valley", valley), ("peak", peak)):
        seg = Segment(0, CID, "a100", _hour_at(hour), _hour_at(hour) + timedelta(hours=1),
                      "succeeded", 1)  # fmt: skip
        posted = rate_segment(BOOK, seg, precision=Precision.FP16, units=8)
        passed = rate_segment(BOOK, seg, precision=Precision.FP16, units=8,
                              energy_pass_through=True)  # fmt: skip
        # by hand: 8 SCU (a100, fp16: speed 1) x the capacity part + facility kWh x tariff
        kwh = passed.facility_kwh
        energy = kwh * Decimal(repr(SC.province(SC.center(CID).province).tariff
                                    .price_at_hour(hour)))  # fmt: skip
        assert capacity_price(BOOK) == Decimal("4.0250")  # 3.50 x 1.15
        assert passed.energy_cny == cents(energy)
        assert passed.compute_cny == cents(8 * Decimal("4.0250") + energy)
        assert passed.scu == posted.scu and passed.facility_kwh == posted.facility_kwh
        # the posted price marks energy up by the margin; passed through it is at cost
        assert passed.compute_cny < posted.compute_cny
        assert abs(posted.compute_cny - passed.compute_cny - energy * Decimal("0.15")) <= (
            Decimal("0.02")
        )
        assert posted.energy_cny == 0
        lines[name] = passed
    assert lines["valley"].energy_cny < lines["peak"].energy_cny
    assert lines["valley"].compute_cny < lines["peak"].compute_cny
    # the capacity part does not depend on the hour
    cap = {n: ln.compute_cny - ln.energy_cny for n, ln in lines.items()}
    assert abs(cap["valley"] - cap["peak"]) <= Decimal("0.01")


@settings(max_examples=40, deadline=None)
@given(start_min=st.integers(0, 60 * 48), minutes=st.integers(0, 60 * 20), units=st.integers(1, 16))
def test_energy_pass_through_never_costs_more_than_the_posted_price(
    start_min: int, minutes: int, units: int
) -> None:
    start = T0 + timedelta(minutes=start_min)
    seg = Segment(0, CID, "a100", start, start + timedelta(minutes=minutes), "succeeded", 1)
    posted = rate_segment(BOOK, seg, precision=Precision.FP16, units=units)
    passed = rate_segment(BOOK, seg, precision=Precision.FP16, units=units,
                          energy_pass_through=True)  # fmt: skip
    assert passed.compute_cny <= posted.compute_cny  # so the hold at posted prices bounds it
    assert passed.energy_cny <= passed.compute_cny


# --------------------------------------------------------------------------- quotas


def test_card_hours_cover_compute_first_in_grant_order_never_more_than_is_left() -> None:
    a, b = _line(1.0, seq=0), _line(0.5, seq=1)  # 8 and 4 card-hours
    assert quotas.card_hours(a) == Decimal("8.000000")
    grants = [quotas.Allowance(1, Decimal("5"), Decimal(0)),
              quotas.Allowance(2, Decimal("6"), Decimal(0))]  # fmt: skip
    covers = quotas.allocate([a, b], grants)
    got = [(c.seq, c.grant_id, c.quantity) for c in covers]
    assert got == [(0, 1, Decimal(5)), (0, 2, Decimal(3)), (1, 2, Decimal(3))]
    # line a fully covered: free to the fen; line b 3 of 4 card-hours
    assert sum(c.value_cny for c in covers if c.seq == 0) == a.compute_cny
    assert sum(c.value_cny for c in covers if c.seq == 1) == cents(b.compute_cny * 3 / 4)
    # nothing left: nothing covered
    assert quotas.allocate([a], [quotas.Allowance(1, Decimal(0), Decimal(0))]) == []


def test_a_run_that_costs_nothing_uses_no_free_card_hours() -> None:
    paid_before = dataclasses.replace(_line(1.0), compute_cny=Decimal("0.00"))
    grants = [quotas.Allowance(1, Decimal(100), Decimal(0))]
    assert quotas.allocate([paid_before], grants) == []


def test_cpu_core_hours_and_lost_runs_do_not_consume_card_hours() -> None:
    cpu_model = next(a.model for a in SC.catalog.accelerators if a.is_cpu)
    cpu_center = next(c.id for c in SC.centers if c.cpu_cores > 0)
    seg = Segment(0, cpu_center, cpu_model, T0, T0 + timedelta(hours=2), "succeeded", 5)
    cpu = rate_segment(BOOK, seg, precision=Precision.CPU, units=16)
    lost = _line(1.0, end="lost")
    grants = [quotas.Allowance(1, Decimal(100), Decimal(100))]
    assert quotas.card_hours(cpu) == 0 and quotas.card_hours(lost) == 0
    assert quotas.allocate([cpu, lost], grants) == []


def test_storage_is_the_staged_data_held_for_the_run_at_the_posted_storage_price() -> None:
    seg = Segment(0, CID, "a100", T0, T0 + timedelta(hours=73), "succeeded", 5)  # 0.1 month
    line = rate_segment(BOOK, seg, precision=Precision.FP16, units=1, stored_gb=Decimal(50))
    assert quotas.storage_gb_months(line) == line.storage_gb_months == Decimal("5.000000")
    assert BOOK.params.storage_cny_per_gb_month == Decimal("0.30")
    assert line.storage_cny == Decimal("1.50")  # 5 GB-months x 0.30
    assert line.amount_cny == line.compute_cny + line.storage_cny  # no transfer on this run
    covers = quotas.allocate([line], [quotas.Allowance(1, Decimal(0), Decimal(2))])
    # 2 of 5 GB-months free: 2/5 of the storage charge
    assert [(c.resource, c.quantity, c.value_cny) for c in covers] == [
        (quotas.STORAGE_GB_MONTHS, Decimal(2), Decimal("0.60"))
    ]
    lost = dataclasses.replace(line, billable=False)
    assert lost.amount_cny == 0 and quotas.allocate([lost], [quotas.Allowance(1, 0, 9)]) == []


def _served(tokens: int, hours: float = 1.0, compute: str | None = None) -> UsageLine:
    line = dataclasses.replace(_line(hours), tokens=tokens)
    return line if compute is None else dataclasses.replace(line, compute_cny=Decimal(compute))


def test_free_tokens_cover_the_compute_of_the_runs_that_served_them_at_the_token_value() -> None:
    # 1,000,000 tokens served on a run costing 10.00: at 2.00 CNY a million, 1M free tokens
    # are worth 2.00 of it; the rest is paid
    line = _served(1_000_000, compute="10.00")
    grants = [quotas.Allowance(1, Decimal(0), Decimal(0), tokens=5_000_000)]
    covers = quotas.allocate([line], grants, token_value=Decimal("2.00"))
    assert [(c.resource, c.quantity, c.value_cny) for c in covers] == [
        (quotas.TOKENS, Decimal(1_000_000), Decimal("2.00"))
    ]
    # a cheap run: the tokens it served are used, but never cover more than its compute
    cheap = _served(1_000_000, compute="0.50")
    [c] = quotas.allocate([cheap], grants, token_value=Decimal("2.00"))
    assert (c.quantity, c.value_cny) == (Decimal(1_000_000), Decimal("0.50"))
    # reporting few tokens does not make a few free tokens pay for hours of work
    few = _served(3, compute="10.00")
    [c] = quotas.allocate([few], grants, token_value=Decimal("2.00"))
    assert (c.quantity, c.value_cny) == (Decimal(3), Decimal("0.00"))


def test_free_tokens_spread_over_many_runs_are_never_worth_more_than_their_value() -> None:
    # 400 runs of 2,500 tokens: each is worth 0.005 CNY at 2.00 a million; rounded down to the
    # fen, not up (half up would make 1M free tokens cover 4.00)
    lines = [dataclasses.replace(_served(2_500, compute="1.00"), seq=i) for i in range(400)]
    grants = [quotas.Allowance(1, Decimal(0), Decimal(0), tokens=1_000_000)]
    covers = quotas.allocate(lines, grants, token_value=Decimal("2.00"))
    assert sum(c.quantity for c in covers) == 1_000_000
    assert sum((c.value_cny for c in covers), Decimal(0)) <= Decimal("2.00")


def test_card_hours_come_first_then_tokens_cover_what_they_left() -> None:
    line = _served(2_000_000, hours=1.0, compute="16.00")  # 8 card-hours
    grants = [quotas.Allowance(1, Decimal(4), Decimal(0), tokens=10**9)]
    covers = quotas.allocate([line], grants, token_value=Decimal("5.00"))
    assert [(c.resource, c.quantity, c.value_cny) for c in covers] == [
        (quotas.CARD_HOURS, Decimal(4), Decimal("8.00")),
        (quotas.TOKENS, Decimal(2_000_000), Decimal("8.00")),  # min(8.00 left, 2M x 5/M)
    ]
    # card-hours covering all of it leave nothing for tokens
    grants = [quotas.Allowance(1, Decimal(8), Decimal(0), tokens=10**9)]
    covers = quotas.allocate([line], grants, token_value=Decimal("5.00"))
    assert [c.resource for c in covers] == [quotas.CARD_HOURS]
    # a token value of 0, an unbilled run or a run with no tokens uses no free tokens
    tokens_only = [quotas.Allowance(1, Decimal(0), Decimal(0), tokens=10**9)]
    assert quotas.allocate([line], tokens_only, token_value=Decimal(0)) == []
    assert quotas.allocate([dataclasses.replace(line, billable=False)], tokens_only) == []
    assert quotas.allocate([_served(0)], tokens_only) == []


@settings(max_examples=150, deadline=None)
@given(
    served=st.lists(st.integers(0, 10**8), min_size=1, max_size=4),
    computes=st.lists(st.decimals(min_value=0, max_value=500, places=2), min_size=4, max_size=4),
    hours_left=st.lists(st.integers(0, 20), min_size=1, max_size=3),
    tokens_left=st.lists(st.integers(0, 10**8), min_size=1, max_size=3),
    value=st.decimals(min_value=0, max_value=50, places=2),
)
def test_free_parts_never_exceed_what_is_left_or_what_a_line_costs(
    served: list[int], computes: list[Decimal], hours_left: list[int], tokens_left: list[int],
    value: Decimal,
) -> None:  # fmt: skip
    lines = [
        dataclasses.replace(_served(n, hours=0.25 * (i + 1)), seq=i, compute_cny=computes[i])
        for i, n in enumerate(served)
    ]
    grants = [
        quotas.Allowance(i + 1, Decimal(h), Decimal(0), tokens=t)
        for i, (h, t) in enumerate(zip(hours_left, tokens_left, strict=False))
    ]
    covers = quotas.allocate(lines, grants, token_value=value)
    for line in lines:
        mine = [c for c in covers if c.seq == line.seq]
        assert sum((c.value_cny for c in mine), Decimal(0)) <= line.compute_cny
        used = sum((c.quantity for c in mine if c.resource == quotas.TOKENS), Decimal(0))
        assert used <= line.tokens
        worth = sum((c.value_cny for c in mine if c.resource == quotas.TOKENS), Decimal(0))
        assert worth <= cents(used * value / 1_000_000)
    for g in grants:
        for resource, have in ((quotas.CARD_HOURS, g.card_hours), (quotas.TOKENS, g.tokens)):
            mine = [c for c in covers if c.grant_id == g.grant_id and c.resource == resource]
            assert sum((c.quantity for c in mine), Decimal(0)) <= have
    assert all(c.quantity > 0 and c.value_cny >= 0 for c in covers)


amounts = st.decimals(min_value=0, max_value=5000, places=2)


@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(amounts, min_size=1, max_size=3),
    free_share=st.fractions(min_value=0, max_value=1),
    hold=amounts,
    available=amounts,
    rate=st.sampled_from([Decimal("0.05"), Decimal("0.08"), Decimal("0.10")]),
)
def test_a_charge_with_free_hours_reconciles_to_the_fen(
    parts: list[Decimal], free_share: object, hold: Decimal, available: Decimal, rate: Decimal
) -> None:
    by_provider = {f"provider:p{i}:payable": a for i, a in enumerate(parts)}
    amount = sum(parts, Decimal("0.00"))
    free = cents(amount * Decimal(str(float(free_share))))  # type: ignore[arg-type]
    free = min(free, amount)
    e = quotas.charge(tenant_id="t", job_id="j", by_provider=by_provider, free=free,
                      hold_amount=hold, available=available, rate=rate)  # fmt: skip
    d = e.delta()
    assert sum(d.values()) == 0 and e.amount == amount
    plain = ledger.charge(tenant_id="t", job_id="j", by_provider=by_provider, hold_amount=hold,
                          available=available, rate=rate)  # fmt: skip
    # providers and the commission are paid exactly as without the trial
    for acct in by_provider | {ledger.PLATFORM_COMMISSION: Decimal(0)}:
        assert d.get(acct, 0) == plain.delta().get(acct, 0)
    assert e.commission == plain.commission
    # the consumer pays the charge less the free part; the trials account the free part
    assert quotas.consumer_side(e) == -(amount - free)
    assert d.get(quotas.TRIALS, 0) == -free
    assert d.get(ledger.held("t"), 0) == -hold  # the hold is released whole
    assert d.get(ledger.prepaid("t"), 0) >= -available
    assert ledger.account_kind(quotas.TRIALS) == "commission"


def test_a_free_part_outside_the_charge_is_refused() -> None:
    with pytest.raises(ValueError, match="free part"):
        quotas.charge(tenant_id="t", job_id="j", by_provider={"provider:p:payable": Decimal(1)},
                      free=Decimal("1.01"), hold_amount=Decimal(0), available=Decimal(0),
                      rate=Decimal("0.08"))  # fmt: skip
