"""The placement seam: its explanation is the objective the planner compared, a deferral always
gains, every runner-up says why it lost, and a job nothing can run says which constraint
excluded the candidates."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanwang.billing.market import scu_prices
from suanwang.billing.offers import Offer, OfferBook, OfferType
from suanwang.billing.pricing import PriceBook
from suanwang.core.jobs import ANY_ACCELERATOR, Job, JobKind
from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scheduling.placement import amounts, cny, place, unplaceable
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import Nearest
from suanwang.scheduling.state import CapacityState, Market, Running

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _state(net: Network, sig: Signals, now_s: float, busy: list[float], seed: int) -> CapacityState:
    """A state with some pools partly busy now and some hours planned busy."""
    state = CapacityState.empty(net, sig)
    state.now_s = now_s
    rng = np.random.default_rng(seed)
    share = np.array(busy[: net.n_pools] + [0.0] * max(0, net.n_pools - len(busy)))
    held = np.floor(net.pool_capacity * share).astype(np.int64)
    state.free = net.pool_capacity - held
    hours = state.committed.shape[1]
    for p in np.flatnonzero(held).tolist():
        h0 = int(rng.integers(0, hours - 1))
        state.committed[p, h0 : h0 + int(rng.integers(1, 12))] += held[p]
    return state


@SETTINGS
@given(
    data=st.data(),
    seed=st.integers(0, 10_000),
    with_offers=st.booleans(),
    with_reservations=st.booleans(),
)
def test_the_explanation_is_the_objective_the_planner_compared(
    china_net: Network,
    china_signals: Signals,
    random_jobs: Callable[..., st.SearchStrategy[list[Job]]],
    offers: Callable[..., Market],
    data: st.DataObject,
    seed: int,
    with_offers: bool,
    with_reservations: bool,
) -> None:
    net, sig = china_net, china_signals
    jobs = data.draw(random_jobs(net.place_ids[:12], max_size=4, max_run_h=10.0))
    busy = data.draw(st.lists(st.sampled_from([0.0, 0.0, 0.5, 0.9, 1.0]), max_size=net.n_pools))
    policy = SuanwangPolicy()
    state = _state(net, sig, jobs[0].submit_s, busy, seed)
    market = offers(net, sig, list(range(0, net.n_pools, 7)), "1.50") if with_offers else Market()
    if with_reservations:  # units others reserved, closed to these jobs
        rng = np.random.default_rng(seed)
        shape = state.committed.shape
        closed = np.where(rng.random(shape) < 0.3, net.pool_capacity[:, None] * 0.5, 0.0)
        market = Market(prices=market.prices, closed=closed)
    for job in jobs:
        info = net.job_class(job)
        if info.pools.size == 0:
            continue
        state.now_s = job.submit_s
        placed = place(job, info, state, policy, market, explain=True)
        chosen = placed.chosen
        assert chosen is not None
        if placed.queued:
            continue
        # the breakdown adds up to the value the planner compared for its choice
        assert chosen.objective_cny == pytest.approx(placed.objective_cny, rel=1e-9, abs=1e-9)
        if placed.deferred:
            # a deferral is never stored without a positive gain (None: nothing had room now)
            assert placed.gain_cny is None or placed.gain_cny > policy.min_deferral_gain_cny
            assert placed.reason.startswith(f"deferred {placed.deferred_s / 3600:.1f} h")
            if placed.gain_cny is None:
                assert "no feasible pool has room now" in placed.reason
        else:
            assert placed.gain_cny is None
        for runner in placed.runners_up:
            assert runner.lost, runner
            assert (runner.center, runner.accelerator) != (chosen.center, chosen.accelerator)
            if runner.objective_cny < chosen.objective_cny:  # cheaper: it had no room
                assert "cheaper" in runner.lost or "room" in runner.lost
            elif runner.objective_cny > chosen.objective_cny:
                assert runner.lost.startswith(cny(runner.objective_cny - chosen.objective_cny))


@SETTINGS
@given(data=st.data(), seed=st.integers(0, 10_000), with_offers=st.booleans())
def test_explaining_never_changes_the_choice(
    china_net: Network,
    china_signals: Signals,
    random_jobs: Callable[..., st.SearchStrategy[list[Job]]],
    offers: Callable[..., Market],
    data: st.DataObject,
    seed: int,
    with_offers: bool,
) -> None:
    """The simulator places without explaining (no gain worked out, fewer calendar lookups),
    the control plane with: the same jobs on the same state get the same pool, start and
    objective, and the calendars end the same."""
    net, sig = china_net, china_signals
    jobs = data.draw(random_jobs(net.place_ids[:12], max_size=6, max_run_h=10.0))
    busy = data.draw(st.lists(st.sampled_from([0.0, 0.5, 0.9, 1.0]), max_size=net.n_pools))
    market = offers(net, sig, list(range(0, net.n_pools, 5)), "1.20") if with_offers else Market()
    states = [_state(net, sig, jobs[0].submit_s, busy, seed) for _ in range(2)]
    policy = SuanwangPolicy()
    for job in jobs:
        info = net.job_class(job)
        if info.pools.size == 0:
            continue
        quick, told = (
            place(job, info, state, policy, market, explain=explain)
            for state, explain in zip(states, (False, True), strict=True)
        )
        assert (quick.pool, quick.start_s, quick.queued) == (told.pool, told.start_s, told.queued)
        assert quick.objective_cny == told.objective_cny or np.isnan(quick.objective_cny)
        assert quick.gain_cny is None and quick.chosen is None
    assert np.array_equal(states[0].committed, states[1].committed)


def test_no_deferral_for_an_offer_whose_price_does_not_change(
    china_net: Network, china_signals: Signals
) -> None:
    """The defect: flat electricity, an offer in force all day, and posted prices that follow
    the time-of-use tariff made the planner defer for a gain only the posted price showed."""
    net, sig = china_net, china_signals
    flat = dataclasses.replace(
        sig,
        price_cny_per_kwh=np.full_like(sig.price_cny_per_kwh, 0.5),
        forecast_price_cny_per_kwh=np.full_like(sig.price_cny_per_kwh, 0.5),
        green_fraction=np.full_like(sig.price_cny_per_kwh, 0.2),
        forecast_green_fraction=np.full_like(sig.price_cny_per_kwh, 0.2),
        carbon_g_per_kwh=np.full_like(sig.price_cny_per_kwh, 600.0),
        _cum={},
        _val={},
    )
    job = Job(job_id="j", submit_s=0.0, kind=JobKind.TRAINING, origin="beijing", cards=8,
              cpus=32, mem_gb=64.0, accelerator="a100", stacks=frozenset({"cuda"}),
              work_scu=8.0)  # fmt: skip
    info = net.job_class(job)
    book = PriceBook(net.scenario, offers=OfferBook.of([
        Offer(id=f"o{p}", provider=None, center_id=net.center_ids[int(net.pool_center[p])],
              model="a100", units=500, price_cny_per_scu=Decimal("1.00"),
              start=sig.start, end=sig.start + timedelta(hours=sig.hours),
              type=OfferType.IDLE_DISCOUNT)
        for p in info.pools.tolist()
    ]))  # fmt: skip
    prices = scu_prices(net, book, flat.start, flat.hours)
    assert prices is not None
    posted = prices.posted[0, info.pools]
    assert (posted.max(axis=1) > posted.min(axis=1)).all()  # time-of-use posted prices
    for hour in range(24):  # whatever the hour the job arrives at
        state = CapacityState.empty(net, flat)
        state.now_s = hour * 3600.0 + 600.0
        placed = place(job, info, state, SuanwangPolicy(), Market(prices=prices), explain=True)
        assert not placed.deferred, placed.reason
        assert placed.chosen is not None and placed.chosen.offer_premium_cny < 0


def test_a_tie_between_now_and_later_goes_to_now(
    china_net: Network, china_signals: Signals
) -> None:
    """Without a waiting price and with flat prices every start costs the same: no deferral."""
    net, sig = china_net, china_signals
    flat = dataclasses.replace(
        sig,
        forecast_price_cny_per_kwh=np.full_like(sig.price_cny_per_kwh, 0.5),
        forecast_green_fraction=np.full_like(sig.price_cny_per_kwh, 0.2),
        carbon_g_per_kwh=np.full_like(sig.price_cny_per_kwh, 600.0),
        _cum={},
        _val={},
    )
    job = Job(job_id="j", submit_s=0.0, kind=JobKind.RENDER, origin="shanghai", cards=1,
              cpus=8, mem_gb=8.0, accelerator=ANY_ACCELERATOR,
              stacks=frozenset({"cuda", "cann"}), work_scu=4.0)  # fmt: skip
    state = CapacityState.empty(net, flat)
    policy = SuanwangPolicy(wait_price_cny_per_kwh=0.0)
    placed = place(job, net.job_class(job), state, policy, explain=True)
    assert not placed.deferred and placed.gain_cny is None


def test_a_baseline_placement_is_explained_by_the_same_terms(
    china_net: Network, china_signals: Signals
) -> None:
    net, sig = china_net, china_signals
    job = Job(job_id="j", submit_s=3600.0, kind=JobKind.TRAINING, origin="shanghai", cards=8,
              cpus=64, mem_gb=64.0, accelerator=ANY_ACCELERATOR, stacks=frozenset({"cuda"}),
              work_scu=64.0, data_gb=50.0)  # fmt: skip
    state = CapacityState.empty(net, sig)
    state.now_s = job.submit_s
    placed = place(job, net.job_class(job), state, Nearest(), explain=True)
    assert placed.chosen is not None and placed.runners_up
    assert placed.reason.startswith("nearest center with free capacity")
    assert "moving 50 GB costs" in placed.reason
    for runner in placed.runners_up:
        if runner.objective_cny < placed.chosen.objective_cny:
            assert "not the nearest rule's choice" in runner.lost


def _job(**kw: Any) -> Job:
    base: dict[str, Any] = {
        "job_id": "j", "submit_s": 0.0, "kind": JobKind.INFERENCE, "origin": "guangdong",
        "cards": 4, "cpus": 8, "mem_gb": 8.0, "accelerator": ANY_ACCELERATOR,
        "stacks": frozenset({"cuda"}), "work_scu": 1.0,
    }  # fmt: skip
    base.update(kw)
    return Job(**base)


def test_a_job_nothing_can_run_names_the_constraints_that_excluded_the_pools(
    china_net: Network,
) -> None:
    net = china_net
    # a latency no center meets, on the one stack and size it has
    job = _job(latency_ms=0.01)
    assert net.job_class(job).pools.size == 0
    text, excluded = unplaceable(net, job)
    assert sum(excluded.values()) == net.n_pools
    assert excluded["latency"] > 0
    assert f"{excluded['latency']} are beyond its 0.01 ms latency limit" in text
    # an accelerator that does not run the job's stack, and a size no pool has
    job = _job(accelerator="ascend-910b", cards=100_000, latency_ms=None)
    text, excluded = unplaceable(net, job, closed=0)
    assert excluded["accelerator"] == int(
        sum(m != "ascend-910b" for m in net.pool_model)
    ) and excluded["software stack"] > 0  # fmt: skip
    assert "run another accelerator than ascend-910b" in text
    assert "lack the software stack (cuda)" in text


@pytest.mark.parametrize(
    ("a", "b"), [(12.3456, 12.3457), (0.000123, 0.000124), (1234.5, 1234.6), (3.0, 3.001)]
)
def test_amounts_that_differ_never_print_the_same(a: float, b: float) -> None:
    shown = amounts([a, b])
    assert shown[0] != shown[1]
    same = amounts([a, a])
    assert same[0] == same[1]
    assert cny(b - a).strip("0.") != ""  # the difference itself shows


def test_moves_are_planned_on_the_calendar_placements_use(
    china_net: Network, china_signals: Signals
) -> None:
    """A pool whose coming hours are planned full takes no migration (live migrations used to
    be planned against free units only)."""
    net, sig = china_net, china_signals
    job = Job(job_id="j", submit_s=0.0, kind=JobKind.TRAINING, origin="shanghai", cards=8,
              cpus=64, mem_gb=64.0, accelerator=ANY_ACCELERATOR, stacks=frozenset({"cuda"}),
              work_scu=400.0, checkpointable=True)  # fmt: skip
    info = net.job_class(job)
    eager = SuanwangPolicy(min_saving_cny=0.0, min_saving_share=0.0, min_remaining_h=0.25)
    costs = eager.grid(job, info, CapacityState.empty(net, sig), np.arange(info.pools.size))
    dearest = int(info.pools[int(np.argmax(costs.cost[:, 0]))])
    running = [Running(0, dearest, 0.0, job.work_scu)]

    def moves(state: CapacityState) -> list[int]:
        state.now_s = 600.0
        state.free[dearest] -= job.demand_units
        return [q for _, q, _, _ in eager.migrations([job], running, state)]

    target = moves(CapacityState.empty(net, sig))
    assert target and target[0] != dearest
    full = CapacityState.empty(net, sig)
    full.committed[target[0]] = net.pool_capacity[target[0]]  # planned busy from now on
    assert target[0] not in moves(full)
