"""The stored decision: the dispatcher builds it directly (thousands a round), and what it
builds is exactly what the API's model (:class:`DecisionPublic`) validates and dumps, for
placements now and deferred, with offers, by the planner and by a baseline, with a market."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanwang.core.jobs import ANY_ACCELERATOR, Job, JobKind
from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scheduling.placement import Breakdown, Placement, place
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import Nearest
from suanwang.scheduling.state import CapacityState, Market
from suanwang.server.decisions import CandidatePublic, DecisionPublic, decision_record

T0 = datetime(2025, 7, 1, tzinfo=UTC)


def _validated(row: Breakdown) -> CandidatePublic:
    return CandidatePublic(
        center=row.center, accelerator=row.accelerator,
        start_at=T0 + timedelta(seconds=row.start_s), runtime_s=row.runtime_s,
        objective_cny=row.objective_cny, cost_cny=row.cost_cny,
        energy_cost_cny=row.energy_cost_cny, carbon_cost_cny=row.carbon_cost_cny,
        transfer_cost_cny=row.transfer_cost_cny, waiting_cost_cny=row.waiting_cost_cny,
        offer_premium_cny=row.offer_premium_cny, energy_kwh=row.energy_kwh,
        carbon_kg=row.carbon_kg, green_share=row.green_share,
        price_cny_per_kwh=row.price_cny_per_kwh, transfer_s=row.transfer_s,
        latency_ms=row.latency_ms, free_units=row.free_units, lost=row.lost or None,
    )  # fmt: skip


def _through_the_model(p: Placement, market: dict[str, Any] | None) -> dict[str, Any]:
    """The decision as the API's model makes it: every field validated, then dumped."""
    finite = [None if x is None or not np.isfinite(x) else x for x in (p.gain_cny,
              p.objective_cny)]  # fmt: skip
    model = DecisionPublic.model_validate(
        {
            "policy": "suanwang",
            "reason": p.reason,
            "start_at": T0 + timedelta(seconds=p.start_s),
            "deferred_h": round(p.deferred_s / 3600.0, 3) if p.deferred else 0.0,
            "gain_cny": finite[0],
            "objective_cny": finite[1],
            "queued": p.queued,
            "chosen": _validated(p.chosen) if p.chosen else None,
            "runners_up": [_validated(r) for r in p.runners_up],
            "if_started_now": _validated(p.if_started_now) if p.if_started_now else None,
            "market": market,
        }
    )
    return model.model_dump(mode="json", exclude_none=True)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    busy=st.floats(0.0, 1.0),
    with_offers=st.booleans(),
    baseline=st.booleans(),
    traded=st.booleans(),
)
def test_the_stored_decision_is_what_the_model_dumps(
    china_net: Network,
    china_signals: Signals,
    random_jobs: Callable[..., st.SearchStrategy[list[Job]]],
    offers: Callable[..., Market],
    data: st.DataObject,
    busy: float,
    with_offers: bool,
    baseline: bool,
    traded: bool,
) -> None:
    net, sig = china_net, china_signals
    jobs = data.draw(random_jobs(net.place_ids[:12], max_size=4, max_run_h=10.0))
    state = CapacityState.empty(net, sig)
    state.free = net.pool_capacity - np.floor(net.pool_capacity * busy).astype(np.int64)
    pools = list(range(0, net.n_pools, 6))
    market = offers(net, sig, pools, "1.10", (3, 15)) if with_offers else Market()
    policy = Nearest() if baseline else SuanwangPolicy()
    trade = {"source": "offer", "price_cny_per_scu": 1.1, "posted_cny_per_scu": 2.0}
    for job in jobs:
        info = net.job_class(job)
        if info.pools.size == 0:
            continue
        state.now_s = job.submit_s
        placed = place(job, info, state, policy, market, explain=True)
        stored = decision_record(placed, "suanwang", T0, trade if traded else None)
        assert stored == _through_the_model(placed, trade if traded else None)


def test_a_deferred_decision_with_its_gain_is_what_the_model_dumps(
    china_net: Network, china_signals: Signals
) -> None:
    """A render job defers past four expensive hours: gain, the start now and
    runners-up are all stored as the model dumps them."""
    net, sig = china_net, china_signals
    job = Job(job_id="j", submit_s=0.0, kind=JobKind.RENDER, origin="shanghai", cards=1,
              cpus=8, mem_gb=8.0, accelerator=ANY_ACCELERATOR,
              stacks=frozenset({"cuda", "cann"}), work_scu=4.0)  # fmt: skip
    price = np.full_like(sig.price_cny_per_kwh, 0.1)
    price[:, :4] = 2.0  # expensive for four hours, then cheap
    cheap_later = dataclasses.replace(sig, forecast_price_cny_per_kwh=price, _cum={}, _val={})
    state = CapacityState.empty(net, cheap_later)
    placed = place(job, net.job_class(job), state, SuanwangPolicy(), Market(), explain=True)
    assert placed.deferred and placed.gain_cny is not None and placed.if_started_now is not None
    assert decision_record(placed, "suanwang", T0) == _through_the_model(placed, None)
