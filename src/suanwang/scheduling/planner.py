"""The ``suanwang`` policy: decides where **and when** each job runs.

For a job with feasible pools ``p`` (compatibility and latency already enforced) and candidate
start offsets ``k = 0, 1, ... K`` hours after its data can arrive, the policy minimises the
objective of :mod:`suanwang.scheduling.objective` (energy + carbon price + transfer + waiting
+ offer premium) over the starts ``s_pk = now + transfer_time_p + k h``. ``K = 0`` for
latency-bound kinds (inference, interactive); otherwise ``K = max_defer_h``, cut so that the
planned end keeps a margin before the deadline. Capacity is planned on a reservation calendar
(``committed`` units per pool and hour): the cheapest candidate whose whole run fits under the
pool's capacity is taken, so the network's load is spread to where and when energy is cheap
and green instead of piling onto the first eastern center with room. A deferred start is
taken only when it gains: a start now that has room and costs no more (to 1e-6 CNY) wins.
Jobs that fit nowhere queue where the expected wait is least.

The offers term is there only when the host hands the decision a market with providers'
offers (:class:`~suanwang.scheduling.state.Market`): without offers every decision is exactly
what it was before trading; cheaper offers win where latency, compatibility and capacity allow.

Work is vectorised over (pool, start) pairs: one decision costs tens of microseconds, never a
solver call. The forecast series are what a policy may know in advance (tariffs are published;
renewables are forecast from expected weather); the simulator bills the realised series.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from suanwang.core.cost import HOUR_S, ScuPrices, hour_window
from suanwang.core.jobs import Job
from suanwang.core.network import PRECISION_INDEX, JobClassInfo
from suanwang.core.scenario import DEFAULT_MAX_DEFER_H
from suanwang.scheduling.lookahead import Ready, costs, ready_grids, suspended_windows
from suanwang.scheduling.objective import Objective, ObjectiveTable, offer_term
from suanwang.scheduling.room import NAN_NOW, NONE, SCARCE, first_fit, fit_one, plan
from suanwang.scheduling.state import (
    NO_MARKET,
    Candidates,
    CapacityState,
    Decision,
    Market,
    Running,
)

HOUR = HOUR_S

#: hours beyond its remaining run a checkpointable job may stretch it to keep to the cheapest
#: hours, for a host that suspends runs (the simulator runs a move to the run's own pool after
#: a pause as one): at 20,000 jobs 1.145 -> 1.121 x the tight bound, but at 200,000 worse
#: (1.395 -> 1.427, jobs expire), so no host turns it on yet (docs/benchmarks.md)
SUSPEND_WINDOW_H = 72.0


#: the :class:`ClassRows` a policy keeps (by class and size), the oldest forgotten first
ROWS_KEPT = 16_384


@dataclass(slots=True)  # not frozen: made for every decision (a frozen init costs 4x)
class Grid:
    """Every candidate (pool, start) of one job: row ``i`` is pool ``info.pools[sel[i]]``,
    column ``k`` starts ``k`` hours after ``start_h[i]`` (now + its data transfer time).

    ``cost`` is the objective (inf where the start is not admissible: past the deadline's
    margin, or no room now for ``k = 0``); ``offer`` the offer term in it (None: no offers).
    """

    sel: np.ndarray
    start_h: np.ndarray
    runtime_h: np.ndarray
    cost: np.ndarray
    offer: np.ndarray | None

    def start_s(self, i: int, k: int) -> float:
        return (float(self.start_h[i]) + k) * HOUR


@dataclass(frozen=True, slots=True)
class ClassRows:
    """A job class's per-pool numbers as the planner reads them, worked out once per class:
    ``f`` rows are units x speed, facility power (units x kW per unit), transfer s per GB and
    transfer CNY per GB; ``i`` rows are pools and centers (one gather of each per decision,
    not one per array: the arrays are small, the calls many)."""

    info: JobClassInfo
    f: np.ndarray
    i: np.ndarray
    kwh_per_scu: np.ndarray
    every: np.ndarray  # arange(pools): a selection of every pool, read as such by identity

    @classmethod
    def of(cls, info: JobClassInfo, units: int) -> ClassRows:
        f = np.stack(
            [
                units * info.speed,
                units * info.facility_kw_per_unit,
                info.transfer_s_per_gb,
                info.transfer_cost_cny_per_gb,
            ]
        )
        kwh = info.facility_kw_per_unit / info.speed
        every = np.arange(info.pools.size)
        i = np.stack([info.pools, info.centers])
        for a in (f, i, kwh, every):
            a.flags.writeable = False  # shared by every decision of the class
        return cls(info, f, i, kwh, every)

    def sized(self, units: int) -> ClassRows:
        """The rows of runs of ``units`` from these (runs of 1 unit): the numbers :meth:`of`
        makes (units x speed is units x (1 x speed): ``f``'s first two rows times ``units``,
        the others times 1, exactly), sharing the rows that do not depend on the size (jobs
        of one class come in many sizes, and :meth:`of` is a dozen numpy calls)."""
        f = self.f * np.array([units, units, 1.0, 1.0])[:, None]
        f.flags.writeable = False
        return ClassRows(self.info, f, self.i, self.kwh_per_scu, self.every)


@dataclass
class SuanwangPolicy:
    name: str = "suanwang"
    #: hours a start may be planned after the data arrives: the scenario's deferral rule
    #: (:class:`~suanwang.core.scenario.DeferralRule`; hosts set it from theirs: the simulator
    #: refuses a planner that defers beyond its scenario's rule), or less
    max_defer_h: int = DEFAULT_MAX_DEFER_H
    carbon_price_cny_per_kg: float = 0.1
    wait_price_cny_per_kwh: float = 0.04
    deadline_margin: float = 0.25
    #: (pool, start) candidates tried against the calendar, cheapest first, before the job
    #: queues (256: every one of a 16-pool shortlist's 13 starts): the cheapest are often one
    #: pool's adjacent hours, so a few would all fail on one full pool and send the job to a
    #: queue (with 8, 36% above the tight bound at 20,000 jobs / load 0.6 instead of 17%:
    #: docs/benchmarks.md, "Where `suanwang` loses against the tight bound")
    candidates_checked: int = 256
    shortlist: int = 16
    replan_s: float = 3600.0
    checkpoint_gb_per_unit: float = 16.0
    min_remaining_h: float = 2.0
    min_saving_cny: float = 20.0
    min_saving_share: float = 0.15
    max_moves_per_replan: int = 50
    replan_candidates: int = 300
    price_weight: float = 1.0
    #: suspend a running checkpointable job through its center's price peaks: at each
    #: re-planning it keeps to the cheapest hours of its remaining run within this many hours
    #: more than the run (less, to keep its deadline's margin), and placements count on it;
    #: 0 (the default): never (the live control plane would take a move to the run's own
    #: pool as a move; the simulator can run it, :data:`SUSPEND_WINDOW_H`, opt-in: it loses
    #: at 200,000 jobs); explanations (:func:`~suanwang.scheduling.objective.terms`) break
    #: down running straight through, not a suspended run
    suspend_window_h: float = 0.0
    #: a suspension must save at least this much (forecast objective, CNY)
    min_suspend_saving_cny: float = 1.0
    #: a deferral must save more than this against the best start now that has room: a strictly
    #: positive gain, beyond the float rounding of the objective's sums (the waiting price
    #: already charges for the wait, so any real gain is worth it)
    min_deferral_gain_cny: float = 1e-6
    #: and more than this share of the deferred start's objective: 0 with exact forecasts; with
    #: forecasts that can be wrong, a few sigmas of their error (a smaller gain is as likely
    #: noise, and the cheapest of many noisy starts looks cheaper than it is: docs/model.md)
    min_deferral_gain_share: float = 0.0
    #: the network is scarce while a job waited for room in the platform's queue within this
    #: long (the deferral window): then a start now that fits wins over a deferral for price
    scarce_memory_s: float = 12 * 3600.0
    _table: ObjectiveTable | None = field(default=None, init=False, repr=False)
    _mean_key: object = field(default=None, init=False, repr=False)
    _mean: tuple[np.ndarray, int] = field(init=False, repr=False)
    _rows: dict[tuple[int, int], ClassRows] = field(default_factory=dict, init=False, repr=False)
    _ready: dict[int, Ready] = field(default_factory=dict, init=False, repr=False)
    _low_key: object = field(default=None, init=False, repr=False)
    _low: np.ndarray = field(init=False, repr=False)
    #: per job of the sequence re-planned (by identity): units and precision index (-1: not
    #: yet worked out)
    _jobs_seen: tuple[object, np.ndarray, np.ndarray] = field(
        default=(None, np.empty(0), np.empty(0, dtype=np.int64)), init=False, repr=False
    )

    def __post_init__(self) -> None:
        self._offsets_h = np.arange(self.max_defer_h + 1, dtype=np.float64)
        self._offsets_k = np.arange(self.max_defer_h + 1, dtype=np.int64)

    def rows(self, info: JobClassInfo, units: int) -> ClassRows:
        """:class:`ClassRows` of ``info`` (cached; by identity, as the network caches it)."""
        key = (id(info), units)
        rows = self._rows.get(key)
        if rows is None or rows.info is not info:
            one = self._rows.get((id(info), 1))
            if one is None or one.info is not info:
                one = self._keep_rows((id(info), 1), ClassRows.of(info, 1))
            rows = one if units == 1 else self._keep_rows(key, one.sized(units))
        return rows

    def _keep_rows(self, key: tuple[int, int], rows: ClassRows) -> ClassRows:
        """Keep ``rows`` under ``key``, forgetting the oldest kept beyond :data:`ROWS_KEPT`:
        the platform's queue hands the planner a class cut to the pools with room
        (``JobClassInfo.subset``), a new one for most starts, and each kept entry keeps its
        class alive (a live dispatcher kept ~900 more a round, for ever)."""
        kept = self._rows
        kept[key] = rows
        if len(kept) > ROWS_KEPT:
            del kept[next(iter(kept))]
        return rows

    @property
    def objective(self) -> Objective:
        return Objective(
            carbon_price_cny_per_kg=self.carbon_price_cny_per_kg,
            wait_price_cny_per_kwh=self.wait_price_cny_per_kwh,
            price_weight=self.price_weight,
        )

    def width(self, job: Job) -> int:
        """Candidate starts per pool: now, and up to ``max_defer_h`` hours later if the job's
        kind may wait."""
        return (self.max_defer_h if job.kind.deferrable else 0) + 1

    def deadlines(self, job: Job) -> tuple[float, float]:
        """The hour a run must end by, and a deferred run (the deadline less its margin);
        inf: no deadline."""
        if job.deadline_s is None:
            return math.inf, math.inf
        deadline_h = (job.submit_s + job.deadline_s) / HOUR
        return deadline_h, deadline_h - self.deadline_margin * job.deadline_s / HOUR

    def table(self, state: CapacityState) -> ObjectiveTable:
        """The objective per kWh of every center and hour (cached per signals)."""
        if self._table is None or self._table.signals is not state.signals:
            self._table = ObjectiveTable(state.signals, self.objective, self.max_defer_h + 1)
        return self._table

    def decide(self, job: Job, info: JobClassInfo, state: CapacityState,
               market: Market = NO_MARKET, *, explain: bool = False) -> Decision:  # fmt: skip
        n = info.pools.size
        prices = market.prices
        # to explain, every pool is costed anyway (the runners-up): once, before planning
        # (every pool: the class's own selection, which grid() reads without a gather)
        every = self.rows(info, job.demand_units).every if explain else None
        full = self.grid(job, info, state, every, prices) if every is not None else None
        ready = self._ready.pop(id(job), None) if prices is None and not explain else None
        if ready is not None and not ready.made_for(job, state):
            ready = None  # worked out for another job or time: not this decision's grid
        found = None
        if job.kind.deferrable and n > self.shortlist:
            if ready is not None:
                found = self._plan(job, info, state, ready.sel, None, False, ready=ready)
            else:
                short = self._shortlist(job, info, state, state.now_s, prices)
                found = self._plan(job, info, state, short, prices, explain, full)
        elif ready is not None:
            found = self._plan(job, info, state, ready.sel, None, False, ready=ready)
            if found is None:
                return self._queue(job, info, state)
        if found is None:
            if every is None:
                every = self.rows(info, job.demand_units).every
            found = self._plan(job, info, state, every, prices, explain, full)
        if found is None:
            found = self._queue(job, info, state)
        if full is not None and every is not None:
            best_k = full.cost.argmin(axis=1)
            found.candidates = Candidates(full.cost[every, best_k], (full.start_h + best_k) * HOUR)
        return found

    def _shortlist(
        self,
        job: Job,
        info: JobClassInfo,
        state: CapacityState,
        now_s: float,
        prices: ScuPrices | None,
    ) -> np.ndarray:
        """The ``shortlist`` pools (sorted) with the least energy at the day-ahead mean price
        from ``now_s`` (and transfer, and the best offer over the deferral window)."""
        n = info.pools.size
        mean24, stride_m = self._day_mean(state)
        h = min(int(now_s // HOUR), stride_m - 1)
        rows = self.rows(info, job.demand_units)
        price = mean24.take(info.centers * stride_m + h)
        if job.checkpointable and self.suspend_window_h > 0:  # it can keep to cheap hours
            runtime_h = job.work_scu / rows.f[0]
            price = np.minimum(price, self._low_mean(state, info.centers, h, runtime_h))
        est = job.work_scu * rows.kwh_per_scu * price
        est += job.data_gb * info.transfer_cost_cny_per_gb
        if prices is not None:  # the best offer over the deferral window
            hours = np.full(n, int(now_s // HOUR), dtype=np.int64)
            term = self._offer_term(job, info.pools, hours, self.max_defer_h + 1, state, prices)
            est += term.min(axis=1)
        short: np.ndarray = est.argpartition(self.shortlist)[: self.shortlist]
        short.sort()
        return short

    def prepare(
        self, jobs: Sequence[Job], infos: Sequence[JobClassInfo], state: CapacityState
    ) -> None:
        """Work out the first grid of each of ``jobs`` ahead, all at once: a host that knows
        its next jobs (the simulator) calls this, and each job's decision (at its submit time,
        without offers, not explained) then takes its grid ready and only applies what depends
        on the state then (room now) before its search: the same numbers, far fewer numpy
        calls per decision (:func:`~suanwang.scheduling.lookahead.ready_grids`)."""
        self._ready = ready_grids(self, jobs, infos, state)

    def _low_mean(
        self, state: CapacityState, centers: np.ndarray, h: int, runtime_h: np.ndarray
    ) -> np.ndarray:
        """Per center, the mean objective price of the cheapest hours of the 24 from hour
        ``h`` that a suspended run of ``runtime_h`` keeps to: the share ``runtime /
        (runtime + suspend_window_h)`` of them (at least one)."""
        table = self.table(state)
        if self._low_key is not state.signals:
            hours, day = table.hours, np.arange(24)
            val = table.val.reshape(-1, table.stride)
            ahead = np.sort(val[:, np.minimum(np.arange(hours)[:, None] + day, hours)], axis=2)
            self._low = np.cumsum(ahead, axis=2) / (day + 1)  # mean of the cheapest m + 1
            self._low_key = state.signals
        share = runtime_h / (runtime_h + self.suspend_window_h)
        m = np.clip(np.ceil(24 * share).astype(np.int64), 1, 24) - 1
        out: np.ndarray = self._low[centers, min(h, self._low.shape[1] - 1), m]
        return out

    def _day_mean(self, state: CapacityState) -> tuple[np.ndarray, int]:
        """Mean objective price over the next 24 h from each hour, per center (flattened)."""
        table = self.table(state)
        if self._mean_key is not state.signals:
            hours = table.hours
            c = table.cum.reshape(-1, table.stride)
            ahead = np.minimum(np.arange(hours) + 24, hours)
            mean = (c[:, ahead] - c[:, :hours]) / (ahead - np.arange(hours))
            self._mean = (mean.ravel(), hours)
            self._mean_key = state.signals
        return self._mean

    def grid(
        self,
        job: Job,
        info: JobClassInfo,
        state: CapacityState,
        sel: np.ndarray,
        prices: ScuPrices | None = None,
    ) -> Grid:
        """The objective of every admissible start on pools ``sel`` (see :class:`Grid`).

        Starts are ``now + transfer + k h``: every start of one pool shares its fraction of an
        hour, so the objective integral over all ``k`` is read from one window of the
        cumulative row per pool.
        """
        now = state.now_s
        units = job.demand_units
        width = self.width(job)
        table = self.table(state)
        rows = self.rows(info, units)
        if sel is rows.every:  # every pool, in order: no gather
            f, (pools, centers) = rows.f, rows.i
        else:
            f, (pools, centers) = rows.f.take(sel, axis=1), rows.i.take(sel, axis=1)
        deadline_h, late_h = self.deadlines(job)
        xs, runtime_h, cost = costs(self, table, f, centers, job.work_scu, job.data_gb, now,
                                    deadline_h, late_h, width, job.checkpointable)  # fmt: skip
        offer = None
        if prices is not None:
            hs = np.minimum(xs.astype(np.int64), table.hours)
            offer = self._offer_term(job, pools, hs, width, state, prices)
            cost += offer
        # the first column needs room now
        cost[:, 0][state.free[pools] < units] = np.inf
        return Grid(sel, xs, runtime_h, cost, offer)

    def _plan(
        self,
        job: Job,
        info: JobClassInfo,
        state: CapacityState,
        sel: np.ndarray,
        prices: ScuPrices | None,
        explain: bool,
        full: Grid | None = None,
        ready: Ready | None = None,
    ) -> Decision | None:
        """Cheapest (pool, start) among pools ``sel`` whose run fits the calendar, or None.

        A deferral stands only if no start now that fits costs at most ``value`` +
        ``min_deferral_gain_cny``; when explaining, its gain (against the cheapest start now
        that fits) is worked out too, which takes more calendar lookups. ``full``: the grid of
        every pool, when already worked out (its rows ``sel`` are the same numbers);
        ``ready``: the grid of ``sel`` worked out ahead, all but the need for room now."""
        if ready is not None:  # room now is applied by plan(), as grid() does
            g = Grid(ready.sel, ready.start_h, ready.runtime_h, ready.cost, None)
        elif full is None:
            g = self.grid(job, info, state, sel, prices)
        else:  # rows picked (a copy: the search marks the candidates it tried)
            offer = None if full.offer is None else full.offer[sel]
            g = Grid(sel, full.start_h[sel], full.runtime_h[sel], full.cost[sel], offer)
        pools = ready.pools if ready is not None else info.pools.take(sel)
        return self._on_grid(g, pools, job.demand_units, state, explain)

    def _on_grid(
        self, g: Grid, pools: np.ndarray, units: int, state: CapacityState, explain: bool
    ) -> Decision | None:
        """:meth:`_plan` on its grid ``g`` (row ``i`` on pool ``pools[i]``): the search, the
        deferral's test against the starts now that fit and the booking, compiled
        (:func:`~suanwang.scheduling.room.plan`); the same as :meth:`_plan_py`."""
        eps, share = self.min_deferral_gain_cny, self.min_deferral_gain_share
        outcome, i, k, value, gain, t0, _ = plan(
            g.cost, g.start_h, g.runtime_h, pools, units, state.committed,
            state.net.pool_capacity, state.free, self.candidates_checked, eps, share,
            self.scarce(state), explain,
        )  # fmt: skip
        if outcome == NONE:
            return None
        if outcome == NAN_NOW:  # a NaN cost of a start now: as the search in Python sorts it
            return self._plan_py(g, pools, units, state, explain)
        if outcome == SCARCE:
            why = "cheapest center with room now (scarce: no deferral for price)"
        else:
            why = "cheapest planned slot" if k else "cheapest center with room now"
        if g.offer is not None and g.offer[i, k] < 0:
            why += " (below the posted price: an offer or the tenant's reservation)"
        return Decision(int(g.sel[i]), t0, why, value, None if gain != gain else gain)

    def _plan_py(
        self, g: Grid, pools: np.ndarray, units: int, state: CapacityState, explain: bool
    ) -> Decision | None:
        """:meth:`_on_grid` in Python, as the planner decided before it was compiled (a NaN
        among the costs of starting now: :func:`~suanwang.scheduling.room.plan` leaves
        those; tests compare the two)."""
        sel, cost = g.sel, g.cost
        width = cost.shape[1]
        committed, cap = state.committed, state.net.pool_capacity
        cost[:, 0][state.free[pools] < units] = np.inf
        now_cost = cost[:, 0].tolist()  # starting at once on each pool (inf: no room now)
        found = self._search(cost.ravel(), width, g, pools, units, state, cap)
        if found is None:
            return None
        idx, value = found
        i, k = divmod(idx, width)
        t0 = g.start_s(i, k)
        pool, t1 = int(pools[i]), t0 + float(g.runtime_h[i]) * HOUR
        eps, share = self.min_deferral_gain_cny, self.min_deferral_gain_share
        gain, why = None, None
        if k:
            pool_of, start_h, runtime_h = pools.tolist(), g.start_h.tolist(), g.runtime_h.tolist()

            def run(i: int, k: int) -> tuple[int, float, float]:
                t0 = (start_h[i] + k) * HOUR  # as Grid.start_s
                return pool_of[i], t0, t0 + runtime_h[i] * HOUR

            # a deferral must gain: the cheapest start now that fits wins unless it costs
            # more than the deferral by eps (starts now that cost less were tried before
            # and did not fit). Only an explanation needs how much more: the gain.
            limit = math.inf if explain else value + eps + share * value
            # scarcity: work waited for room lately, so waiting is what the network is short
            # of and a start now that fits wins over any deferral for price (docs/governance.md)
            if self.scarce(state):
                for now_j, j in sorted((c, j) for j, c in enumerate(now_cost)):
                    now = run(j, 0) if now_j < math.inf else None
                    if now is not None and fit_one(committed, cap, now[0], units, now[1], now[2]):
                        i, k, value = j, 0, now_j
                        pool, t0, t1 = now
                        why = "cheapest center with room now (scarce: no deferral for price)"
                        break
            near = [] if not k else sorted(
                (c, j) for j, c in enumerate(now_cost) if value <= c <= limit
            )  # fmt: skip
            for now_j, j in near:
                if now_j == math.inf:
                    break
                now = run(j, 0)
                if not fit_one(committed, cap, now[0], units, now[1], now[2]):
                    continue
                if now_j <= value + eps + share * value:
                    i, k, value = j, 0, now_j
                    pool, t0, t1 = now
                else:
                    gain = now_j - value
                break
        state.book(pool, units, t0, t1)
        if k or why is None:
            why = "cheapest planned slot" if k else "cheapest center with room now"
        if g.offer is not None and g.offer[i, k] < 0:
            why += " (below the posted price: an offer or the tenant's reservation)"
        return Decision(int(sel[i]), t0, why, value, gain)

    def _search(
        self, flat: np.ndarray, width: int, g: Grid, pools: np.ndarray, units: int,
        state: CapacityState, cap: np.ndarray,
    ) -> tuple[int, float] | None:  # fmt: skip
        """The cheapest of the first ``candidates_checked`` candidates of ``flat`` (a grid's
        costs, raveled; pool ``pools[i]`` in row ``i``; ties: the lower index) that fits the
        calendar (:func:`~suanwang.scheduling.room.first_fit`, compiled): its index and cost,
        or None. Marks the candidates it tried (inf in ``flat``)."""
        idx, value = first_fit(
            flat, width, g.start_h, g.runtime_h, pools, units, state.committed, cap,
            self.candidates_checked,
        )  # fmt: skip
        return None if idx < 0 else (idx, value)

    def scarce(self, state: CapacityState) -> bool:
        """Whether the network is short of capacity: a job waited in the platform's queue for
        room on some pool within the last ``scarce_memory_s`` (false when the host does not
        say: ``state.waited_s`` None)."""
        waited = state.waited_s
        return waited is not None and bool(waited.max() >= state.now_s - self.scarce_memory_s)

    def _offer_term(
        self,
        job: Job,
        pools: np.ndarray,
        hours: np.ndarray,
        width: int,
        state: CapacityState,
        prices: ScuPrices,
    ) -> np.ndarray:
        """CNY the offers add to starting on ``pools[i]`` in hour ``hours[i] + k``: (n, width)."""
        cols = hours[:, None] + self._offsets_k[:width]
        load = state.committed[pools[:, None], np.minimum(cols, state.committed.shape[1] - 1)]
        return offer_term(self.objective, job, prices, pools, cols, load)

    def _queue(self, job: Job, info: JobClassInfo, state: CapacityState) -> Decision:
        now = state.now_s
        units = job.demand_units
        runtime = job.work_scu / (units * info.speed) * HOUR
        transfer_s = job.data_gb * info.transfer_s_per_gb
        # nothing fits the plan: queue where the wait is least, counting it in the plan
        wait = state.expected_wait_s(info.pools, units)
        pos = int(wait.argmin())
        t0 = now + float(transfer_s[pos] + wait[pos])
        state.book(int(info.pools[pos]), units, t0, t0 + float(runtime[pos]))
        return Decision(
            pos, now, "no planned room; queued where the wait is least", math.nan, None, True
        )

    def migrations(
        self, jobs: Sequence[Job], running: Sequence[Running], state: CapacityState
    ) -> list[tuple[int, int, float, float]]:
        """Running checkpointable jobs worth moving now: ``(job, new pool, move s, move CNY)``.

        For each candidate, finishing where it is (forecast objective over its remaining
        runtime) is compared with checkpointing, shipping ``checkpoint_gb_per_unit`` x units
        to another feasible pool with room and finishing there (objective over the new runtime
        + transfer cost + waiting price of the move). A move must save ``min_saving_cny`` and
        ``min_saving_share`` of the cost of staying. The most expensive runs are looked at first;
        at most ``max_moves_per_replan`` moves per round.
        """
        n = len(running)
        self._jobs_seen = (None, np.empty(0), np.empty(0, dtype=np.int64))  # its jobs anew
        return self.migrations_of(
            jobs,
            np.fromiter((r.job for r in running), dtype=np.int64, count=n),
            np.fromiter((r.pool for r in running), dtype=np.int64, count=n),
            np.fromiter((r.remaining_scu for r in running), dtype=np.float64, count=n),
            state,
        )

    def _job_columns(self, jobs: Sequence[Job], job: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Units (as floats) and precision index of each of ``jobs``, known at least for the
        indices ``job`` (cached: worked out once per job, for the jobs re-planning sees)."""
        seen, units, prec = self._jobs_seen
        if seen is not jobs:
            units, prec = np.zeros(len(jobs)), np.full(len(jobs), -1, dtype=np.int64)
            self._jobs_seen = (jobs, units, prec)
        new = job[prec[job] < 0]
        if new.size:
            prec_of = PRECISION_INDEX
            more = [jobs[j] for j in new.tolist()]
            units[new] = np.fromiter((j.demand_units for j in more), np.float64, len(more))
            prec[new] = np.fromiter((prec_of[j.precision] for j in more), np.int64, len(more))
        return units, prec

    def migrations_of(
        self,
        jobs: Sequence[Job],
        job: np.ndarray,
        pool: np.ndarray,
        remaining_scu: np.ndarray,
        state: CapacityState,
    ) -> list[tuple[int, int, float, float]]:
        """:meth:`migrations` of the running jobs given as columns (index into ``jobs``, pool,
        SCU still to do): what the simulator passes, without an object per running job. Each
        job's units and precision are read once per ``jobs`` (by identity: a host that calls
        this again with the same sequence must not have changed its jobs)."""
        net = state.net
        now = state.now_s
        integral = self.table(state).integral
        keep = remaining_scu > 0
        if not keep.any():
            return []
        if not keep.all():
            job, pool, remaining_scu = job[keep], pool[keep], remaining_scu[keep]
        units_of, prec_of = self._job_columns(jobs, job)
        pools = pool
        units_arr = units_of[job]
        spd = net.pool_speed[pools, prec_of[job]]
        rem_s = remaining_scu / (units_arr * spd) * HOUR
        job_of, pool_of, rem_of = job.tolist(), pools.tolist(), remaining_scu.tolist()
        here_c = net.pool_center[pools]
        power = units_arr * net.pool_facility_kw[pools]
        stay = power * (integral(here_c, now + rem_s) - integral(here_c, np.full_like(rem_s, now)))
        moves = self._suspensions(jobs, job, pools, here_c, power, rem_s, units_arr, state)
        paused = {i for i, _ in moves}
        out = [m for _, m in moves]
        order = np.argsort(-stay, kind="stable")[: self.replan_candidates]
        if self.suspend_window_h > 0 and order.size:  # staying, it can keep to cheap hours
            late = np.array([self.deadlines(jobs[job_of[i]])[1] for i in order.tolist()])
            run_h, start_h = rem_s[order] / HOUR, np.full(order.size, now / HOUR)
            slack = np.clip(np.floor(late - start_h - run_h), 0.0, self.suspend_window_h)
            cheap = suspended_windows(self.table(state), here_c[order], start_h, run_h, slack, 1)
            stay[order] = np.minimum(stay[order], power[order] * cheap[:, 0])
        free = state.free.copy()
        for i in order.tolist():
            if len(out) - len(paused) >= self.max_moves_per_replan:
                break
            if rem_s[i] < self.min_remaining_h * HOUR or i in paused:
                continue
            info = net.job_class(jobs[job_of[i]])
            u = int(units_arr[i])
            ok = (free[info.pools] >= u) & (info.pools != pool_of[i])
            if not ok.any():
                continue
            qpos = ok.nonzero()[0]
            q_pools = info.pools[qpos]
            q_centers = info.centers[qpos]
            ckpt_gb = self.checkpoint_gb_per_unit * u
            move_s = ckpt_gb * net.center_transfer_s_per_gb[here_c[i], q_centers]
            move_cny = ckpt_gb * net.center_transfer_cost_cny_per_gb[here_c[i], q_centers]
            run_s = rem_of[i] / (u * info.speed[qpos]) * HOUR
            p_q = u * info.facility_kw_per_unit[qpos]
            t0 = now + move_s
            there = (
                p_q * (integral(q_centers, t0 + run_s) - integral(q_centers, t0))
                + move_cny
                + self.wait_price_cny_per_kwh * p_q * move_s / HOUR
            )
            best = int(there.argmin())
            saving = float(stay[i] - there[best])
            if saving < max(self.min_saving_cny, self.min_saving_share * float(stay[i])):
                continue
            q = int(q_pools[best])
            t0_q, t1_q = float(t0[best]), float(t0[best] + run_s[best])
            if not state.fits(q, u, t0_q, t1_q):
                continue
            state.book(q, u, t0_q, t1_q)
            free[q] -= u
            out.append((job_of[i], q, float(move_s[best]), float(move_cny[best])))
        return out

    def _suspensions(
        self,
        jobs: Sequence[Job],
        cands: np.ndarray,
        pools: np.ndarray,
        centers: np.ndarray,
        power: np.ndarray,
        rem_s: np.ndarray,
        units: np.ndarray,
        state: CapacityState,
    ) -> list[tuple[int, tuple[int, int, float, float]]]:
        """Running checkpointable jobs to suspend now, through a price peak: ``(candidate,
        (job, its own pool, pause s, 0 CNY))`` (a move to its own pool after the pause;
        ``cands``: each candidate's job index).

        A job keeps to the cheapest ``ceil(remaining h)`` hours (forecast objective per kWh
        at its center) between now and ``suspend_window_h`` hours after its remaining run
        would end, or its deadline less its margin if sooner: if the hour now is not one of
        them, it is suspended until the first that is, provided that saves at least
        ``min_suspend_saving_cny`` against running on, its units fit the calendar then and
        no work queues for its pool now.
        Hosts call this every ``replan_s``, so a job runs its cheapest hours one by one."""
        if self.suspend_window_h <= 0 or not cands.size:
            return []
        table = self.table(state)
        now = state.now_s
        h_now = int(now // HOUR)
        if h_now >= table.hours:
            return []
        val, stride = table.val, table.stride
        span = int(self.suspend_window_h) + 1
        # which centers have a cheaper hour ahead within the window at all (flat tariffs: none)
        ahead = val.reshape(-1, stride)[:, h_now : h_now + span]
        dearer = ahead[:, 0] > ahead.min(axis=1) * (1.0 + 1e-9)
        # not where work queues for room: the units a suspension frees would be taken and
        # its resume would queue behind (200,000 jobs: jobs expired, docs/benchmarks.md)
        idle = state.backlog_unit_s[pools] <= 0.0
        maybe = (dearer[centers] & idle & (rem_s >= self.min_remaining_h * HOUR)).nonzero()[0]
        out: list[tuple[int, tuple[int, int, float, float]]] = []
        committed, cap = state.committed, state.net.pool_capacity
        for i in maybe.tolist():
            j = int(cands[i])
            job = jobs[j]
            need = math.ceil(float(rem_s[i]) / HOUR - 1e-9)
            end_h = h_now + need + int(self.suspend_window_h)
            _, late_h = self.deadlines(job)
            if late_h < end_h:
                end_h = math.floor(late_h)
            end_h = min(end_h, table.hours)  # the forecasts' horizon
            if end_h - h_now <= need:
                continue  # no room to suspend within the deadline's margin
            c = int(centers[i])
            hours = val[c * stride + h_now : c * stride + end_h]
            chosen = np.sort(np.argsort(hours, kind="stable")[:need])
            if chosen[0] == 0:
                continue  # the hour now is one of its cheapest: run on
            saving = float(power[i]) * float(hours[:need].sum() - hours[chosen].sum())
            if saving < self.min_suspend_saving_cny:
                continue
            pool, u = int(pools[i]), int(units[i])
            resume = (h_now + int(chosen[0])) * HOUR
            h0, h1 = hour_window(now, now + float(rem_s[i]))  # its run as planned
            planned = committed[pool, h0:h1].copy()
            committed[pool, h0:h1] = np.maximum(planned - u, 0)
            if not fit_one(committed, cap, pool, u, resume, resume + float(rem_s[i])):
                committed[pool, h0:h1] = planned
                continue
            state.book(pool, u, resume, resume + float(rem_s[i]))
            out.append((i, (j, pool, resume - now, 0.0)))
        return out
