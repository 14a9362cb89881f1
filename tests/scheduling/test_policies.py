"""Every policy, simulated: hard constraints hold whatever the policy decides."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.core.jobs import ANY_ACCELERATOR, Job, JobKind
from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scheduling.planner import SUSPEND_WINDOW_H, SuanwangPolicy
from suanwang.scheduling.policies import Cheapest, FirstFit, Greenest, Nearest
from suanwang.scheduling.state import CapacityState, Decision, Running
from suanwang.sim.engine import simulate
from suanwang.sim.metrics import measure

POLICIES = ["nearest", "first-fit", "cheapest", "greenest", "suanwang"]
FACTORIES = {
    "nearest": Nearest,
    "first-fit": FirstFit,
    "cheapest": Cheapest,
    "greenest": Greenest,
    "suanwang": SuanwangPolicy,
    # moves running checkpointable jobs at the slightest saving: exercises migration
    "suanwang-eager": lambda: SuanwangPolicy(
        min_saving_cny=0.0, min_saving_share=0.0, min_remaining_h=0.25
    ),
    # suspends checkpointable work through price peaks, as the simulator's policy does
    "suanwang-suspends": lambda: SuanwangPolicy(suspend_window_h=SUSPEND_WINDOW_H),
}


def _job(**kw: Any) -> Job:
    base: dict[str, Any] = {
        "job_id": "j",
        "submit_s": 0.0,
        "kind": JobKind.TRAINING,
        "origin": "shanghai",
        "cards": 1,
        "cpus": 8,
        "mem_gb": 8.0,
        "accelerator": ANY_ACCELERATOR,
        "stacks": frozenset({"cuda", "cann", "dtk", "neuware"}),
        "work_scu": 2.0,
    }
    base.update(kw)
    return Job(**base)


@pytest.mark.parametrize("name", POLICIES)
def test_synthetic_workload_invariants(
    name: str,
    china_net: Network,
    china_runs: dict[str, Any],
    check_outcome: Callable[..., None],
    check_accounting: Callable[..., None],
) -> None:
    run = china_runs[name]
    check_outcome(china_net, run.jobs, run.outcome)
    check_accounting(run.jobs, run.outcome, run.report)
    assert run.report.metrics["completed"] > 0.8 * len(run.jobs)
    assert run.outcome.decisions == int((run.outcome.pool >= 0).sum())


@pytest.mark.parametrize("name", POLICIES)
def test_deterministic(
    name: str,
    china_net: Network,
    china_signals: Signals,
    china_runs: dict[str, Any],
    check_same_outcome: Callable[..., None],
) -> None:
    run = china_runs[name]
    again = simulate(china_net, china_signals, run.jobs, FACTORIES[name]())
    check_same_outcome(run.outcome, again)
    rep = measure(name, china_net, china_signals, run.jobs, again, 1)
    for key, value in run.report.metrics.items():
        if key != "decisions_per_s":
            assert rep.metrics[key] == value, key


def test_policies_differ_and_suanwang_is_cheapest(china_runs: dict[str, Any]) -> None:
    costs = {n: r.report.metrics["cost_cny"] for n, r in china_runs.items()}
    assert len({round(c, 6) for c in costs.values()}) > 1
    assert costs["suanwang"] <= costs["nearest"]


@pytest.mark.parametrize("name", [*POLICIES, "suanwang-eager"])
@given(data=st.data())
def test_random_jobs_on_china(
    name: str,
    data: st.DataObject,
    china_net: Network,
    china_signals: Signals,
    random_jobs: Callable[..., Any],
    check_outcome: Callable[..., None],
    check_accounting: Callable[..., None],
    check_same_outcome: Callable[..., None],
) -> None:
    jobs = data.draw(random_jobs(china_net.place_ids, max_size=25))
    out = simulate(china_net, china_signals, jobs, FACTORIES[name]())
    rep = measure(name, china_net, china_signals, jobs, out, 1)
    check_outcome(china_net, jobs, out)
    check_accounting(jobs, out, rep)
    check_same_outcome(out, simulate(china_net, china_signals, jobs, FACTORIES[name]()))


@pytest.mark.parametrize("name", [*POLICIES, "suanwang-eager"])
@given(data=st.data())
def test_random_jobs_on_tiny_network_under_pressure(
    name: str,
    data: st.DataObject,
    tiny_net: Network,
    tiny_signals: Signals,
    random_jobs: Callable[..., Any],
    check_outcome: Callable[..., None],
    check_accounting: Callable[..., None],
) -> None:
    """Few cards, many jobs in a short window: queues form, capacity binds."""
    jobs = data.draw(
        random_jobs(tiny_net.place_ids, min_size=10, max_size=60, max_submit_h=4, max_run_h=12)
    )
    out = simulate(tiny_net, tiny_signals, jobs, FACTORIES[name]())
    rep = measure(name, tiny_net, tiny_signals, jobs, out, 1)
    check_outcome(tiny_net, jobs, out)
    check_accounting(jobs, out, rep)


# --------------------------------------------------------------------------- single decisions


def test_baseline_choices_on_an_empty_network(china_net: Network, china_signals: Signals) -> None:
    job = _job(submit_s=3 * 3600.0)
    info = china_net.job_class(job)
    state = CapacityState.empty(china_net, china_signals)
    state.now_s = job.submit_s
    hour = china_signals.hour_index(state.now_s)

    d = Nearest().decide(job, info, state)
    assert d.pos == 0 and d.start_s == state.now_s
    assert info.latency_ms[0] == info.latency_ms.min()

    d = FirstFit().decide(job, info, state)
    assert info.pools[d.pos] == info.pools.min()

    d = Cheapest().decide(job, info, state)
    score = china_signals.price_cny_per_kwh[info.centers, hour] * china_net.center_pue[info.centers]
    assert score[d.pos] == score.min()

    d = Greenest().decide(job, info, state)
    green = china_signals.green_fraction[info.centers, hour]
    assert green[d.pos] == green.max()


def test_baselines_skip_full_pools(china_net: Network, china_signals: Signals) -> None:
    job = _job(cards=8)
    info = china_net.job_class(job)
    state = CapacityState.empty(china_net, china_signals)
    state.free[info.pools[0]] = 7  # nearest pool cannot take 8 cards now
    d = Nearest().decide(job, info, state)
    assert d.pos != 0
    assert state.free[info.pools[d.pos]] >= 8
    # nothing free anywhere: queue (start now) where the expected wait is least
    state.free[:] = 0
    state.backlog_unit_s[:] = 1e9
    state.backlog_unit_s[info.pools[3]] = 0.0
    for policy in (Nearest(), FirstFit(), Cheapest(), Greenest()):
        d = policy.decide(job, info, state)
        assert d.pos == 3, policy.name
        assert d.start_s == state.now_s


def test_suanwang_decisions(china_net: Network, china_signals: Signals) -> None:
    pol = SuanwangPolicy()
    state = CapacityState.empty(china_net, china_signals)
    state.now_s = 1000.0
    # latency-bound work starts now (after its data arrives)
    inf = _job(kind=JobKind.INFERENCE, submit_s=1000.0, data_gb=1.0)
    info = china_net.job_class(inf)
    d = pol.decide(inf, info, state)
    assert d.start_s == pytest.approx(1000.0 + info.transfer_s_per_gb[d.pos])
    assert info.latency_ms[d.pos] <= 5.0
    # deferrable work may wait, but not past its deadline
    batch = _job(kind=JobKind.TRAINING, submit_s=1000.0, work_scu=8.0, deadline_s=6 * 3600.0)
    info = china_net.job_class(batch)
    before = state.committed.sum()
    d = pol.decide(batch, info, state)
    assert d.start_s >= 1000.0
    runtime = batch.work_scu / info.speed[d.pos] * 3600.0
    assert d.start_s + runtime <= 1000.0 + 6 * 3600.0
    # the plan records the reservation
    assert state.committed.sum() > before
    assert state.committed[info.pools[d.pos]].sum() >= 1


def test_no_deferral_for_price_while_the_network_is_scarce(
    china_net: Network, china_signals: Signals
) -> None:
    """A job waited in the platform's queue for room lately (``waited_s``, within
    ``scarce_memory_s``): waiting is what the network is short of, so a deferrable job that
    the planner would defer for price starts now, on its cheapest pool with room now. A wait
    longer ago than that, or a host that does not say (None), leaves the deferral as it was."""
    pol = SuanwangPolicy()
    job = _job(kind=JobKind.TRAINING, work_scu=16.0, cards=8, stacks=frozenset({"dtk"}))
    every = china_net.job_class(job)
    info = every.subset(np.arange(every.pools.size) < 3)  # as the queue offers: a few pools

    def decide(now_s: float, waited_s: float | None) -> Decision:
        state = CapacityState.empty(china_net, china_signals)
        state.now_s = now_s
        if waited_s is not None:
            state.waited_s = np.full(china_net.n_pools, -np.inf)
            state.waited_s[3] = waited_s
        return pol.decide(dataclasses.replace(job, submit_s=now_s), info, state)

    deferred = [
        now for now in np.arange(0.0, 24 * 3600.0, 3600.0) if decide(now, None).start_s > now + 1
    ]
    assert deferred, "the planner defers this job for price at some hour"
    now = float(deferred[0])
    plain = decide(now, None)
    assert decide(now, now - pol.scarce_memory_s - 60.0) == plain  # scarce too long ago
    scarce = decide(now, now - 60.0)
    transfer = job.data_gb * float(info.transfer_s_per_gb[scarce.pos])
    assert scarce.start_s == pytest.approx(now + transfer)
    assert "scarce" in scarce.reason
    # the cheapest start now: what a planner that may not defer (max_defer_h=0) takes
    state = CapacityState.empty(china_net, china_signals)
    state.now_s = now
    assert SuanwangPolicy(max_defer_h=0).decide(job, info, state).pos == scarce.pos


def test_suanwang_plans_past_full_pools_before_it_queues(
    china_net: Network, china_signals: Signals
) -> None:
    """The cheapest candidates of a deferrable job are often one pool's adjacent hours: with
    the pools of its 24 cheapest (pool, start) candidates full over the whole window, the
    planner still books a planned slot on another pool with room rather than queue."""
    pol = SuanwangPolicy()
    job = _job(kind=JobKind.TRAINING, work_scu=16.0, cards=8)
    info = china_net.job_class(job)
    assert info.pools.size > pol.shortlist  # the shortlist path, then every pool
    state = CapacityState.empty(china_net, china_signals)
    grid = pol.grid(job, info, state, np.arange(info.pools.size))
    cheapest = np.argsort(grid.cost.ravel(), kind="stable")[:24] // grid.cost.shape[1]
    full = info.pools[np.unique(cheapest)]
    assert full.size < info.pools.size
    state.free[full] = 0
    state.committed[full, :] = china_net.pool_capacity[full, None]
    d = pol.decide(job, info, state)
    assert not d.queued
    assert info.pools[d.pos] not in full


def _shanghai_peak(net: Network, pol: SuanwangPolicy, state: CapacityState) -> tuple[int, int]:
    """An H800 pool at shanghai-lingang (a time-of-use tariff) and an hour of its price peak
    with a cheaper hour within the next 24."""
    pool = next(
        p
        for p in range(net.n_pools)
        if net.pool_model[p] == "h800" and net.center_ids[net.pool_center[p]] == "shanghai-lingang"
    )
    table = pol.table(state)
    val = table.val.reshape(-1, table.stride)[int(net.pool_center[pool]), :48]
    peak = int(val[:24].argmax())
    assert val[peak + 1 : peak + 25].min() < 0.6 * val[peak]  # a valley ahead
    return pool, peak


def test_suanwang_suspends_checkpointable_work_through_price_peaks(
    china_net: Network, china_signals: Signals
) -> None:
    """A checkpointable run at a center's price peak is suspended (a move to its own pool
    after a pause, at no transfer cost) until one of the cheapest hours of its remaining run,
    and its remaining run is planned on the calendar from then; a run that must end by its
    deadline's margin without a pause is not suspended, nor any by a policy for hosts that
    cannot suspend (the default). Today's policy runs on through the peak (no such move)."""
    pol = SuanwangPolicy(suspend_window_h=SUSPEND_WINDOW_H)
    state = CapacityState.empty(china_net, china_signals)
    pool, peak = _shanghai_peak(china_net, pol, state)
    job = _job(kind=JobKind.TRAINING, work_scu=400.0, cards=8, checkpointable=True)
    info = china_net.job_class(job)
    assert pool in info.pools
    state.now_s = peak * 3600.0
    running = [Running(0, pool, state.now_s - 3600.0, job.work_scu)]
    state.free[pool] -= job.demand_units
    moves = pol.migrations([job], running, state)
    assert len(moves) == 1
    j, q, pause_s, move_cny = moves[0]
    assert (j, q, move_cny) == (0, pool, 0.0)
    assert pause_s >= 3600.0 and pause_s % 3600.0 == 0.0
    table = pol.table(state)
    row = table.val.reshape(-1, table.stride)[int(china_net.pool_center[pool])]
    resume_h = peak + int(pause_s // 3600.0)
    assert row[resume_h] < row[peak]
    assert state.committed[pool, resume_h] == job.demand_units  # planned from its resume
    # its deadline leaves no room for a pause beyond the margin: it runs on
    runtime_h = job.work_scu / (job.demand_units * float(china_net.pool_speed[pool, 0]))
    tight = dataclasses.replace(job, deadline_s=state.now_s + (runtime_h + 1.0) * 3600.0)
    fresh = CapacityState.empty(china_net, china_signals)
    fresh.now_s = state.now_s
    assert all(q != pool for _, q, _, _ in pol.migrations([tight], running, fresh))
    # no suspension by the default policy (the live control plane's: it cannot suspend)
    off = SuanwangPolicy()
    assert all(q != pool for _, q, _, _ in off.migrations([job], running, fresh))


def test_suspended_runs_keep_every_invariant(
    china_net: Network,
    china_signals: Signals,
    china_jobs: list[Job],
    check_outcome: Callable[..., None],
    check_accounting: Callable[..., None],
) -> None:
    """Through the simulator, suspensions are moves to the run's own pool after a pause:
    the run restarts there no earlier than the pause ends, nothing is paid for them, and
    no more deadlines are missed than without them; the outcome and its accounting hold."""
    jobs = [dataclasses.replace(j, checkpointable=j.kind.deferrable) for j in china_jobs]
    pol = SuanwangPolicy(suspend_window_h=SUSPEND_WINDOW_H)
    out = simulate(china_net, china_signals, jobs, pol)
    own = out.seg_pool == out.pool[out.seg_job]
    assert own.sum() > 0  # some runs were suspended
    for k in np.flatnonzero(own).tolist():
        j = int(out.seg_job[k])
        assert jobs[j].checkpointable
        assert not np.isfinite(out.start_s[j]) or out.start_s[j] >= out.seg_end_s[k] + 3600.0 - 1e-6
    check_outcome(china_net, jobs, out)
    rep = measure("suspends", china_net, china_signals, jobs, out, 1)
    check_accounting(jobs, out, rep)
    plain = measure("plain", china_net, china_signals, jobs,
                    simulate(china_net, china_signals, jobs, SuanwangPolicy()), 1)  # fmt: skip
    assert rep.metrics["deadline_misses"] <= plain.metrics["deadline_misses"]
    assert rep.metrics["latency_violations"] == 0


@given(
    origin=st.sampled_from(["shanghai", "beijing", "guizhou"]),
    cards=st.integers(1, 8),
    free=st.lists(st.integers(0, 10), min_size=1, max_size=400),
)
def test_nearest_is_the_first_pool_with_room(
    china_net: Network, china_signals: Signals, origin: str, cards: int, free: list[int]
) -> None:
    """``nearest`` reads the pools one by one: the same choice as the first of every pool's
    comparison in numpy (its rule as it was), or the queue when none has room."""
    job = _job(origin=origin, cards=cards)
    info = china_net.job_class(job)
    state = CapacityState.empty(china_net, china_signals)
    state.free[:] = (free * china_net.n_pools)[: china_net.n_pools]
    fits = state.free[info.pools] >= cards
    d = Nearest().decide(job, info, state)
    if fits.any():
        assert d.pos == int(fits.argmax()) and not d.queued
    else:
        assert d.queued
