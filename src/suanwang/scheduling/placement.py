"""The placement seam: the one function both hosts call to place a job.

:func:`place` takes a job, its feasible pools, the capacity state and the market (offers and
reservations, passed in) and asks the policy where and when the job runs. It returns a
:class:`Placement`: the pool, the start, the runtime and, when asked to explain, the breakdown
of the objective (:mod:`suanwang.scheduling.objective`) for the chosen candidate and for the
best runners-up, each with why it lost. The simulator calls it for every job without the
explanation (speed); the control plane stores the explanation with the decision, so the
numbers a user reads are the numbers the planner compared.

Baseline policies do not minimise the objective; their placements carry the same breakdown so
that they can be compared with the product's, and their runners-up lose by the policy's rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from suanwang.core.cost import HOUR_S
from suanwang.core.jobs import Job
from suanwang.core.network import JobClassInfo, Network
from suanwang.scheduling.objective import Terms, terms
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import Policy
from suanwang.scheduling.state import NO_MARKET, Candidates, CapacityState, Market

RUNNERS_UP = 3
#: planned starts later than the earliest by less than this are "at once" (clock jitter)
DEFER_EPSILON_S = 1.0
TERM_NAMES = {
    "energy_cost_cny": "energy",
    "carbon_cost_cny": "carbon price",
    "transfer_cost_cny": "data transfer",
    "waiting_cost_cny": "waiting",
    "offer_premium_cny": "offer premium",
}


@dataclass(slots=True)  # not frozen: five made for every explained decision (as Placement)
class Breakdown:
    """One candidate: where and when, the objective term by term (CNY) and what it stands
    for (forecast at placement). ``lost`` says why a runner-up was not chosen. Hosts read it,
    never change it."""

    center: str
    accelerator: str
    start_s: float
    runtime_s: float
    energy_cost_cny: float
    carbon_cost_cny: float
    transfer_cost_cny: float
    waiting_cost_cny: float
    offer_premium_cny: float
    energy_kwh: float
    carbon_kg: float
    green_share: float
    price_cny_per_kwh: float  # forecast, in the start hour
    transfer_s: float
    latency_ms: float
    free_units: int
    lost: str = ""

    @property
    def objective_cny(self) -> float:
        return (self.energy_cost_cny + self.carbon_cost_cny + self.transfer_cost_cny) + (
            self.waiting_cost_cny + self.offer_premium_cny
        )

    @property
    def cost_cny(self) -> float:
        """What the run costs in money: energy and data transfer (no prices of carbon or
        waiting, no offers)."""
        return self.energy_cost_cny + self.transfer_cost_cny


@dataclass(slots=True)  # not frozen: made for every simulated job, and a frozen init costs 4x
class Placement:
    """Where and when a job runs, and (``explained``) why. Hosts read it, never change it.

    ``pos`` indexes the job's feasible pools; ``start_s`` is the planned start (at least its
    data's arrival); ``deferred_s`` how much later than it could start. ``objective_cny`` is
    what the policy compared (nan for a baseline); ``gain_cny`` what a deferral saves against
    the best start now that had room (None: not deferred, nothing had room now, or not
    ``explained``: the simulator does not need it, and it costs calendar lookups).
    """

    pos: int
    pool: int
    start_s: float
    runtime_s: float
    deferred_s: float
    reason: str
    queued: bool
    objective_cny: float
    gain_cny: float | None
    chosen: Breakdown | None = None
    runners_up: tuple[Breakdown, ...] = ()
    if_started_now: Breakdown | None = None

    @property
    def deferred(self) -> bool:
        return self.deferred_s > DEFER_EPSILON_S


def place(
    job: Job,
    info: JobClassInfo,
    state: CapacityState,
    policy: Policy,
    market: Market = NO_MARKET,
    *,
    explain: bool = False,
) -> Placement:
    """Place ``job`` on one of its feasible pools (``info``, not empty) with ``policy``.

    Units others reserved (``market.closed``) are taken out of the state while the policy
    decides. A planning policy enters the run on the state's calendar; the host applies what
    the job holds now (:meth:`CapacityState.free`) when it starts it.
    """
    if market.closed is None:  # the simulator's every decision: no context to enter
        return _place(job, info, state, policy, market, explain)
    with state.closing(market.closed):
        return _place(job, info, state, policy, market, explain)


def _place(
    job: Job,
    info: JobClassInfo,
    state: CapacityState,
    policy: Policy,
    market: Market,
    explain: bool,
) -> Placement:
    # the planned load before this job books its hours (for the offer term it was costed at;
    # without offers there is none to cost, and no copy to make for every decision)
    before = state.committed[info.pools] if explain and market.prices is not None else None
    decision = policy.decide(job, info, state, market, explain=explain)
    pos = decision.pos
    transfer_s = job.data_gb * float(info.transfer_s_per_gb[pos])
    earliest = state.now_s + transfer_s
    start_s = max(decision.start_s, earliest)
    placement = Placement(
        pos=pos,
        pool=int(info.pools[pos]),
        start_s=start_s,
        runtime_s=job.work_scu / (job.demand_units * float(info.speed[pos])) * HOUR_S,
        deferred_s=start_s - earliest,
        reason=decision.reason,
        queued=decision.queued,
        objective_cny=decision.objective_cny,
        gain_cny=decision.gain_cny,
    )
    if explain:
        _explain(job, info, state, policy, market, placement, before, decision.candidates)
    return placement


def _explain(
    job: Job,
    info: JobClassInfo,
    state: CapacityState,
    policy: Policy,
    market: Market,
    p: Placement,
    before: np.ndarray | None,
    candidates: Candidates | None,
) -> None:
    """Fill in ``p``'s explanation: the breakdown of the choice (and of starting it now, when
    deferred) and of the best runners-up, each with why it lost, and the reason in words."""
    planner = policy if isinstance(policy, SuanwangPolicy) else SuanwangPolicy(max_defer_h=0)
    if candidates is None:  # every other pool at its own best admissible start
        grid = planner.grid(job, info, state, np.arange(info.pools.size), market.prices)
        best_k = grid.cost.argmin(axis=1)
        candidates = Candidates(
            grid.cost[np.arange(info.pools.size), best_k], (grid.start_h + best_k) * HOUR_S
        )
    best = candidates.cost
    pick = [i for i in np.argsort(best, kind="stable").tolist() if i != p.pos][:RUNNERS_UP]
    # one breakdown of all rows: the choice, the choice started now (when deferred), runners-up
    rows = [p.pos] + ([p.pos] if p.deferred else []) + pick
    starts = [p.start_s] + ([p.start_s - p.deferred_s] if p.deferred else [])
    starts += candidates.start_s[pick].tolist()
    pos, start_s = np.array(rows, dtype=np.int64), np.array(starts)
    load = None
    if before is not None:  # (with offers: the load they are priced against)
        hours = (start_s // HOUR_S).astype(np.int64)
        load = before[pos, np.minimum(hours, before.shape[1] - 1)]
    now = state.now_s
    t = terms(planner.objective, job, info, pos, start_s, now, state.signals, market.prices, load)
    cols = _columns(t)
    total = t.total_cny.tolist()
    chosen = _row(state, info, cols, 0, rows[0], starts[0])
    started_now = _row(state, info, cols, 1, rows[1], starts[1]) if p.deferred else None
    runners: list[Breakdown] = []
    for j in range(len(rows) - len(pick), len(rows)):
        pool = int(info.pools[rows[j]])
        why = _why_lost(job, state, policy, cols, j, total, float(best[rows[j]]), pool, starts[j])
        runners.append(_row(state, info, cols, j, rows[j], starts[j], why))
    p.reason = _reason(job, info, p, chosen, started_now, runners, len(info.pools))
    p.chosen, p.runners_up, p.if_started_now = chosen, tuple(runners), started_now


#: the columns of :class:`Terms` a breakdown reads
_COLUMNS = (
    "energy_cost_cny",
    "carbon_cost_cny",
    "transfer_cost_cny",
    "waiting_cost_cny",
    "offer_premium_cny",
    "energy_kwh",
    "carbon_kg",
    "green_kwh",
    "runtime_s",
    "transfer_s",
)


def _columns(t: Terms) -> dict[str, list[float]]:
    """Each term of ``t`` as a list of floats (the same numbers: one conversion a column,
    not one a value)."""
    return {name: getattr(t, name).tolist() for name in _COLUMNS}


def _row(
    state: CapacityState,
    info: JobClassInfo,
    t: dict[str, list[float]],
    i: int,
    pos: int,
    start: float,
    lost: str = "",
) -> Breakdown:
    net = state.net
    pool = int(info.pools[pos])
    center = int(info.centers[pos])
    hour = state.signals.hour_index(start)
    kwh = t["energy_kwh"][i]
    return Breakdown(
        center=net.center_ids[center],
        accelerator=net.pool_model[pool],
        start_s=start,
        runtime_s=t["runtime_s"][i],
        energy_cost_cny=t["energy_cost_cny"][i],
        carbon_cost_cny=t["carbon_cost_cny"][i],
        transfer_cost_cny=t["transfer_cost_cny"][i],
        waiting_cost_cny=t["waiting_cost_cny"][i],
        offer_premium_cny=t["offer_premium_cny"][i],
        energy_kwh=kwh,
        carbon_kg=t["carbon_kg"][i],
        green_share=t["green_kwh"][i] / kwh if kwh > 0 else 0.0,
        price_cny_per_kwh=float(state.signals.forecast_price_cny_per_kwh[center, hour]),
        transfer_s=t["transfer_s"][i],
        latency_ms=float(info.latency_ms[pos]),
        free_units=int(state.free[pool]),
        lost=lost,
    )


def _digits(x: float) -> int:
    """Decimals for 4 significant digits of ``x`` (at least 2)."""
    if x == 0 or not math.isfinite(x):
        return 2
    return max(2, 3 - math.floor(math.log10(abs(x))))


def cny(x: float) -> str:
    """A CNY amount to 4 significant digits (at least 2 decimals)."""
    return f"{x:,.{_digits(x)}f}"


def amounts(values: Sequence[float]) -> list[str]:
    """CNY amounts printed with one number of decimals, enough that amounts which differ
    never print the same (up to 12 decimals): a choice and its runner-up never look tied
    when they are not."""
    finite = [v for v in values if math.isfinite(v)]
    digits = max((_digits(v) for v in finite), default=2)
    while digits < 12:
        shown = {f"{v:.{digits}f}" for v in finite}
        if len(shown) == len(set(finite)):
            break
        digits += 1
    return [f"{v:,.{digits}f}" for v in values]


def _why_lost(
    job: Job,
    state: CapacityState,
    policy: Policy,
    t: dict[str, list[float]],
    j: int,
    total: list[float],
    compared: float,
    pool: int,
    start_s: float,
) -> str:
    """Why runner-up ``j`` of the breakdown ``t`` (:func:`_columns`; row 0: the choice;
    ``total``: each row's objective) was not chosen: a dearer objective (naming the term that
    made the difference), no room, or the baseline policy's rule."""
    if not math.isfinite(compared):
        if state.free[pool] < job.demand_units:
            return f"no room now ({int(state.free[pool])} of {job.demand_units} units free)"
        return "no admissible start (deadline)"
    diff = total[j] - total[0]
    if diff > 0:
        deltas = {name: t[key][j] - t[key][0] for key, name in TERM_NAMES.items()}
        worst = max(deltas, key=deltas.__getitem__)
        return f"{cny(diff)} CNY dearer (mostly {worst}: +{cny(deltas[worst])} CNY)"
    if not isinstance(policy, SuanwangPolicy):
        return f"{cny(-diff)} CNY cheaper, but not the {policy.name} rule's choice"
    if not state.fits(pool, job.demand_units, start_s, start_s + t["runtime_s"][j]):
        return "cheaper, but its hours are full on the calendar"
    return f"{cny(-diff)} CNY cheaper, but outside the pools the planner looked at"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _reason(
    job: Job,
    info: JobClassInfo,
    p: Placement,
    chosen: Breakdown,
    started_now: Breakdown | None,
    runners: list[Breakdown],
    feasible: int,
) -> str:
    """What decided the placement, in words: the rule, the deferral and its gain, the
    latency reached against the limit, price and green share at the chosen hour, the data
    transfer, and why the best runner-up lost."""
    parts = [p.reason]
    if p.deferred:
        h = p.deferred_s / HOUR_S
        if p.gain_cny is not None and started_now is not None:
            was, now = amounts([p.gain_cny + chosen.objective_cny, chosen.objective_cny])
            parts[0] = (
                f"deferred {h:.1f} h to a cheaper/greener window: objective "
                f"{was} -> {now} CNY "
                f"(gain {cny(p.gain_cny)} CNY against the best start now with room); price "
                f"{started_now.price_cny_per_kwh:.3f} -> {chosen.price_cny_per_kwh:.3f} CNY/kWh, "
                f"green {_pct(started_now.green_share)} -> {_pct(chosen.green_share)}"
            )
            if "below the posted price" in p.reason:
                parts[0] += " (below the posted price: an offer or the tenant's reservation)"
        elif not p.queued:
            parts[0] = f"deferred {h:.1f} h: no feasible pool has room now"
    else:
        parts.append(
            f"{chosen.price_cny_per_kwh:.3f} CNY/kWh and {_pct(chosen.green_share)} green "
            "at the start hour"
        )
    limit = job.effective_latency_ms
    if limit is not None:
        parts.append(f"latency {chosen.latency_ms:.2f} ms (limit {limit:g} ms)")
    if job.data_gb > 0:
        parts.append(
            f"moving {job.data_gb:g} GB costs {cny(chosen.transfer_cost_cny)} CNY and takes "
            f"{_duration(chosen.transfer_s)}"
        )
    parts.append(f"{feasible} feasible pool{'s' if feasible != 1 else ''}")
    if runners:
        r = runners[0]
        parts.append(f"runner-up {r.center} ({r.accelerator}): {r.lost}")
    return "; ".join(parts)


def unplaceable(net: Network, job: Job, closed: int = 0) -> tuple[str, dict[str, int]]:
    """Why no pool can take ``job``: a sentence and the pools each constraint excluded.

    ``closed``: feasible pools the host cannot use now (no executor, unreachable, drained).
    """
    excluded = net.exclusions(job)
    if closed:
        excluded["closed"] = closed
    words = {
        "accelerator": (
            f"run another accelerator than {job.accelerator}"
            if job.accelerator != "any"
            else f"have no chip for {job.precision.value} work"
        ),
        "software stack": f"lack the software stack ({', '.join(sorted(job.stacks))})",
        "size": f"have fewer than the {job.demand_units} units it holds",
        "latency": f"are beyond its {job.effective_latency_ms or 0:g} ms latency limit",
        "closed": "are at centers without an executor, unreachable or drained",
    }
    said = [f"{n} {words[k]}" for k, n in excluded.items() if n]
    text = f"no center can run this job: of {net.n_pools} pools, " + ", ".join(said)
    return text, excluded
