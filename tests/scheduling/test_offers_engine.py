"""Offers in the placement engine: cheaper offers attract jobs where constraints allow; an offer
at an infeasible center (latency, software stack) changes nothing; without offers, nothing."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from suanwang.billing.market import scu_prices
from suanwang.billing.offers import Offer, OfferBook, OfferType
from suanwang.billing.pricing import PriceBook
from suanwang.core.cost import ScuPrices
from suanwang.core.hardware import Precision
from suanwang.core.jobs import ANY_ACCELERATOR, Job, JobKind
from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scheduling.placement import place
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.state import CapacityState, Market
from suanwang.sim.engine import simulate


def _job(**kw: Any) -> Job:
    base: dict[str, Any] = {
        "job_id": "j",
        "submit_s": 3600.0,
        "kind": JobKind.TRAINING,
        "origin": "beijing",
        "cards": 8,
        "cpus": 32,
        "mem_gb": 64.0,
        "accelerator": ANY_ACCELERATOR,
        "stacks": frozenset({"cuda"}),
        "work_scu": 64.0,
    }
    base.update(kw)
    return Job(**base)


def _prices(net: Network, signals: Signals, *offers: Offer) -> ScuPrices:
    book = PriceBook(net.scenario, offers=OfferBook.of(offers))
    prices = scu_prices(net, book, signals.start, signals.hours)
    assert prices is not None
    return prices


def _offer(net: Network, signals: Signals, pool: int, price: str, **kw: Any) -> Offer:
    base: dict[str, Any] = {
        "id": f"o{pool}",
        "provider": None,
        "center_id": net.center_ids[int(net.pool_center[pool])],
        "model": net.pool_model[pool],
        "units": int(net.pool_capacity[pool]),
        "price_cny_per_scu": Decimal(price),
        "start": signals.start,
        "end": signals.start + timedelta(hours=signals.hours),
        "type": OfferType.IDLE_DISCOUNT,
    }
    base.update(kw)
    return Offer(**base)


def _decide(net: Network, signals: Signals, job: Job, prices: ScuPrices | None) -> int:
    state = CapacityState.empty(net, signals)
    state.now_s = job.submit_s
    info = net.job_class(job)
    return place(job, info, state, SuanwangPolicy(), Market(prices=prices)).pool


def test_a_cheaper_offer_at_a_feasible_center_attracts_the_job(
    china_net: Network, china_signals: Signals
) -> None:
    net, sig = china_net, china_signals
    for kind in (JobKind.TRAINING, JobKind.INFERENCE):  # deferrable and placed-now
        job = _job(kind=kind, latency_ms=None)
        info = net.job_class(job)
        chosen = _decide(net, sig, job, None)
        # the last feasible pool that is not the choice: far down the list (nearest first)
        other = int(next(p for p in info.pools[::-1] if p != chosen))
        posted = _prices(net, sig, _offer(net, sig, other, "9.00")).posted
        cheap = f"{np.nanmin(posted[:, other]) * 0.5:.4f}"
        assert _decide(net, sig, job, _prices(net, sig, _offer(net, sig, other, cheap))) == other
        # a dearer offer there does not attract it; neither does one that starts later than
        # the job could wait for it
        assert _decide(net, sig, job, _prices(net, sig, _offer(net, sig, other, "9.00"))) == chosen
        late = _offer(net, sig, other, cheap, start=sig.start + timedelta(hours=40))
        assert _decide(net, sig, job, _prices(net, sig, late)) == chosen


def test_an_offer_only_counts_while_its_units_have_room(
    china_net: Network, china_signals: Signals
) -> None:
    net, sig = china_net, china_signals
    job = _job()
    info = net.job_class(job)
    chosen = _decide(net, sig, job, None)
    other = int(next(p for p in info.pools[::-1] if p != chosen))
    cheap = _offer(net, sig, other, "0.50", units=4)  # fewer units than the job needs
    assert _decide(net, sig, job, _prices(net, sig, cheap)) == chosen
    enough = _offer(net, sig, other, "0.50", units=8)
    assert _decide(net, sig, job, _prices(net, sig, enough)) == other


def test_offers_at_infeasible_centers_change_nothing(
    china_net: Network, china_signals: Signals
) -> None:
    net, sig = china_net, china_signals
    # latency: interactive work from Guangdong within 10 ms cannot go to a far western center
    near = _job(kind=JobKind.INTERACTIVE, origin="guangdong", latency_ms=10.0, cards=1,
                work_scu=2.0)  # fmt: skip
    info = net.job_class(near)
    far = [p for p in range(net.n_pools) if p not in set(info.pools.tolist())]
    assert far
    # stack: a CUDA-only job cannot use Ascend (cann) pools
    cuda = _job()
    cann = [p for p in range(net.n_pools) if net.pool_stack[p] == "cann"]
    assert cann and not set(cann) & set(net.job_class(cuda).pools.tolist())
    for job, pools in ((near, far), (cuda, cann)):
        offers = [_offer(net, sig, p, "0.01", id=f"o{p}") for p in pools]
        assert _decide(net, sig, job, _prices(net, sig, *offers)) == _decide(net, sig, job, None)


def test_without_offers_or_with_neutral_prices_the_simulation_is_unchanged(
    china_net: Network, china_signals: Signals, china_jobs: list[Job]
) -> None:
    net, sig = china_net, china_signals
    jobs = china_jobs[:1500]
    base = simulate(net, sig, jobs, SuanwangPolicy())
    real = _prices(net, sig, _offer(net, sig, 0, "3.00"))
    neutral = dataclasses.replace(real, offer=np.full_like(real.offer, np.nan))
    same = simulate(net, sig, jobs, SuanwangPolicy(), market=Market(prices=neutral))
    assert np.array_equal(base.pool, same.pool)
    assert np.array_equal(base.release_s, same.release_s, equal_nan=True)


def test_scu_prices_follow_the_offer_book(china_net: Network, china_signals: Signals) -> None:
    net, sig = china_net, china_signals
    pool = int(np.flatnonzero(np.array(net.pool_model) == "a100")[0])
    o = _offer(net, sig, pool, "1.5000", start=sig.start + timedelta(hours=2),
               end=sig.start + timedelta(hours=5), units=100)  # fmt: skip
    reserved = _offer(net, sig, pool + 1, "0.1000", id="r", type=OfferType.RESERVED)
    pr = _prices(net, sig, o, reserved)
    book = PriceBook(net.scenario)
    center = net.center_ids[int(net.pool_center[pool])]
    for h in (0, 2, 4, 5):
        at = sig.start + timedelta(hours=h)
        expect = float(book.posted_at(center, "a100", Precision.FP16, at))
        assert pr.posted[0, pool, h] == pytest.approx(expect)
        offered = 2 <= h < 5
        offer = pr.offer[0, pool, h]
        assert offer == pytest.approx(1.5) if offered else np.isnan(offer)
        mean = np.nanmean(pr.posted[0, pool, : sig.hours])  # against the window's mean price
        assert pr.premium[0, pool, h] == pytest.approx(1.5 - mean if offered else 0.0)
        assert pr.offered_units[pool, h] == (100 if offered else 0)
    assert not pr.premium[:, pool + 1].any()  # reserved offers do not price placements
    assert scu_prices(net, PriceBook(net.scenario), sig.start, sig.hours) is None
