"""The objective the ``suanwang`` planner minimises, and its breakdown for explanations.

For a job on pool ``p`` (center ``c``) starting at ``s`` (after its data has arrived) and
running ``r_p`` seconds with facility power ``P_p`` kW (units x unit kW x PUE)::

    energy   = P_p x integral of forecast price_c over [s, s + r_p)           CNY
    carbon   = carbon_price x P_p x integral of forecast grid carbon_c / 1000  CNY (kg x price)
    transfer = data_gb x transfer_cost(origin -> c)                            CNY
    waiting  = wait_price x P_p x (s - now) / 3600                             CNY
    offer    = price_weight x work_scu x premium_p(hour of s)                  CNY

``premium`` is what the cheapest offer in force (or the tenant's own reservation) takes off or
adds to the pool's mean posted price per SCU (:class:`~suanwang.core.cost.ScuPrices`), counted
while the pool's planned load at that hour leaves room within the offered units. The objective
is the sum. :func:`terms` computes each term for chosen candidates (what explanations show);
:class:`ObjectiveTable` computes the sum for every candidate at once (what the planner
compares). Both are the same formulas: a test checks they agree on many random jobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit
from numpy.typing import NDArray

from suanwang.core.cost import HOUR_S, ScuPrices
from suanwang.core.jobs import Job
from suanwang.core.network import PRECISION_INDEX, JobClassInfo
from suanwang.core.signals import Signals

HOUR = HOUR_S
Array = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Objective:
    """The prices that turn a candidate's physics into one number (see the module doc)."""

    carbon_price_cny_per_kg: float = 0.1
    wait_price_cny_per_kwh: float = 0.04
    price_weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Terms:
    """The objective of candidates, term by term (arrays aligned with the candidates), with
    the physical quantities behind them."""

    energy_cost_cny: Array
    carbon_cost_cny: Array
    transfer_cost_cny: Array
    waiting_cost_cny: Array
    offer_premium_cny: Array
    energy_kwh: Array
    carbon_kg: Array
    green_kwh: Array  # forecast
    runtime_s: Array
    transfer_s: Array

    @property
    def total_cny(self) -> Array:
        out: Array = (self.energy_cost_cny + self.carbon_cost_cny + self.transfer_cost_cny) + (
            self.waiting_cost_cny + self.offer_premium_cny
        )
        return out


def offer_term(
    objective: Objective,
    job: Job,
    prices: ScuPrices,
    pools: IntArray,
    hours: IntArray,
    load: Array,
) -> Array:
    """CNY the offers add to starting ``job`` on ``pools[i]`` in hour ``hours[i, k]``.

    ``load[i, k]`` is the pool's planned load (units) in that hour before this job. The premium
    counts while ``load + units`` fits within the units offered (offered units are sold first);
    otherwise the posted price stands (0).
    """
    cols = np.minimum(hours, prices.hours)
    rows = pools[:, None] if hours.ndim == 2 else pools
    premium = prices.premium[PRECISION_INDEX[job.precision]][rows, cols]
    fits = load + job.demand_units <= prices.offered_units[rows, cols]
    out: Array = np.where(fits, premium, 0.0) * (job.work_scu * objective.price_weight)
    return out


#: the series :func:`terms` integrates over a run, in this order
_FORECASTS = ("forecast_price", "forecast_carbon", "forecast_green")
#: the rows of :func:`_terms_of`'s output: :class:`Terms`'s fields, in their order
_N_TERMS = 10


def terms(
    objective: Objective,
    job: Job,
    info: JobClassInfo,
    pos: IntArray,
    start_s: Array,
    now_s: float,
    signals: Signals,
    prices: ScuPrices | None = None,
    load: Array | None = None,
) -> Terms:
    """The objective of starting ``job`` on ``info.pools[pos[i]]`` at ``start_s[i]``, by term.

    ``load[i]`` is that pool's planned load in the start hour before this job (for the offer
    term; needed with ``prices``). Uses the forecast series, as the planner does. Compiled
    (:func:`_terms_of`: every decision the live dispatcher stores is explained by a few
    candidates, and numpy's calls on arrays of 3-5 values cost more than their arithmetic).
    """
    cum, val = signals.stacked(_FORECASTS)
    out = np.empty((_N_TERMS, pos.size))
    if start_s.shape != pos.shape:
        start_s = np.broadcast_to(start_s, pos.shape)
    _terms_of(
        job.demand_units,
        job.work_scu,
        job.data_gb,
        pos,
        info.speed,
        info.facility_kw_per_unit,
        info.centers,
        info.transfer_cost_cny_per_gb,
        info.transfer_s_per_gb,
        start_s,
        now_s,
        cum,
        val,
        float(signals.step_s),
        signals.hours,
        objective.carbon_price_cny_per_kg,
        objective.wait_price_cny_per_kwh,
        out,
    )
    if prices is not None:
        assert load is not None, "the offer term needs the pools' planned load"
        hours = (start_s // HOUR_S).astype(np.int64)
        out[4] = offer_term(objective, job, prices, info.pools[pos], hours, load)
    return Terms(*out)


@njit(cache=True)
def _cumulative_at(
    cum: Array, val: Array, w: int, c: int, t: float, step: float, hours: int
) -> float:
    """:meth:`Signals.cumulative` of stacked series ``w`` at center ``c`` and time ``t``: the
    same float operations (so the same number)."""
    x = t / step
    h = min(max(math.floor(x), 0), hours)
    return float(cum[w, c, h] + (x - h) * val[w, c, min(h, hours - 1)])


@njit(cache=True)
def _terms_of(
    units: int,
    work_scu: float,
    data_gb: float,
    pos: IntArray,
    speed: Array,
    kw_per_unit: Array,
    centers: IntArray,
    transfer_cost: Array,
    transfer_s: Array,
    start_s: Array,
    now_s: float,
    cum: Array,
    val: Array,
    step: float,
    hours: int,
    carbon_price: float,
    wait_price: float,
    out: Array,
) -> None:
    """:func:`terms` without the offer term (row 4 is 0) into ``out``, one column a candidate
    (``pos[i]``, ``start_s[i]``; the other arrays are the job class's, by position),
    each number by the float operations of the formulas in the module docstring in the order
    numpy evaluated them before this was compiled (tests/scheduling: the same bits)."""
    for i in range(pos.size):
        p = pos[i]
        runtime = work_scu / (units * speed[p]) * HOUR
        power = units * kw_per_unit[p]
        c = centers[p]
        s = start_s[i]
        end = s + runtime
        price = _cumulative_at(cum, val, 0, c, end, step, hours) - _cumulative_at(
            cum, val, 0, c, s, step, hours
        )
        carbon = _cumulative_at(cum, val, 1, c, end, step, hours) - _cumulative_at(
            cum, val, 1, c, s, step, hours
        )
        green = _cumulative_at(cum, val, 2, c, end, step, hours) - _cumulative_at(
            cum, val, 2, c, s, step, hours
        )
        carbon_kg = power * carbon / 1000.0
        out[0, i] = power * price
        out[1, i] = carbon_price * carbon_kg
        out[2, i] = data_gb * transfer_cost[p]
        out[3, i] = wait_price * power * (s - now_s) / HOUR
        out[4, i] = 0.0
        out[5, i] = power * runtime / HOUR
        out[6, i] = carbon_kg
        out[7, i] = power * green
        out[8, i] = runtime
        out[9, i] = data_gb * transfer_s[p]


@dataclass
class ObjectiveTable:
    """The energy and carbon terms per kWh of every center and hour, as cumulative rows, so
    that the planner reads the integral over many (start, runtime) pairs with a few gathers.

    ``per_kwh(c, h) = forecast price + carbon price x forecast grid carbon / 1000``. Each
    center's row has ``H + 1`` cumulative points, then ``pad`` more that continue the last
    hour's value, so times past the horizon extrapolate (as :meth:`Signals.cumulative` does)
    and every window of ``pad`` start offsets stays inside the row.
    """

    signals: Signals
    objective: Objective
    pad: int
    cum: Array = field(init=False)
    val: Array = field(init=False)
    stride: int = field(init=False)
    hours: int = field(init=False)
    offsets: IntArray = field(init=False)

    def __post_init__(self) -> None:
        sig = self.signals
        per_kwh = (
            sig.forecast_price_cny_per_kwh
            + self.objective.carbon_price_cny_per_kg
            * (1.0 - sig.forecast_green_fraction)
            * sig.carbon_g_per_kwh
            / 1000.0
        )
        c, h = per_kwh.shape
        pad = self.pad
        last = per_kwh[:, -1:]
        cum = np.zeros((c, h + 1 + pad))
        np.cumsum(per_kwh, axis=1, out=cum[:, 1 : h + 1])
        cum[:, h + 1 :] = cum[:, h : h + 1] + last * np.arange(1, pad + 1)
        val = np.concatenate([per_kwh, np.repeat(last, pad + 1, axis=1)], axis=1)
        self.cum, self.val = cum.ravel(), val.ravel()
        self.stride, self.hours = h + 1 + pad, h
        self.offsets = np.arange(pad, dtype=np.int64)

    def integral(self, centers: IntArray, t_s: Array) -> Array:
        """Integral of ``per_kwh`` from the signals' start to ``t_s``, per center."""
        x = t_s / HOUR_S
        h = np.minimum(x.astype(np.int64), self.hours)
        idx = centers * self.stride + h
        out: Array = self.cum.take(idx) + (x - h) * self.val.take(idx)
        return out

    def windows(self, centers: IntArray, start_h: Array, runtime_h: Array, width: int) -> Array:
        """Integral over ``[start_h + k, start_h + k + runtime_h)`` for each ``k < width``.

        The ends and the starts are read in one gather of each row (few numpy calls: the
        arrays are small and the planner calls this for every decision)."""
        n = start_h.size
        x = np.concatenate((start_h + runtime_h, start_h))  # the ends, then the starts
        h = np.minimum(x.astype(np.int64), self.hours)
        row = centers * self.stride
        idx = (np.concatenate((row, row)) + h)[:, None] + self.offsets[:width]
        both = self.cum.take(idx) + (x - h)[:, None] * self.val.take(idx)
        out: Array = both[:n] - both[n:]
        return out
