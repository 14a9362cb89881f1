"""Column generation finds the same optimum as solving the whole LP (the tight bound's
solver, :func:`suanwang.scheduling.bound.solve_lp_by_columns`), or the same refusal."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy.sparse import csc_matrix

from suanwang.scheduling.bound import (
    COLD_FRACTION,
    BoundError,
    Priced,
    solve_lp,
    solve_lp_by_columns,
)
from suanwang.scheduling.tight_bound import _busy, _busy_dual

F64 = NDArray[np.float64]


@dataclass
class LP:
    cost: F64
    col_lo: F64
    col_hi: F64
    row_lo: F64
    row_hi: F64
    a: csc_matrix
    priced: int
    cover: NDArray[np.int64]

    def bounds(self) -> tuple[F64, F64, F64, F64, F64]:
        return self.cost, self.col_lo, self.col_hi, self.row_lo, self.row_hi


@st.composite
def lps(draw: st.DrawFn) -> LP:
    """Classes of jobs that each start once (cover rows), over capacity rows, plus free
    columns that are always in the LP (as the fluid bound's)."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n_cls = draw(st.integers(1, 8))
    n_cap = draw(st.integers(1, 6))
    per = draw(st.integers(1, 12))
    n_gen = n_cls * per
    n_free = draw(st.integers(0, 4))
    cover = np.repeat(np.arange(n_cls), per) + n_cap
    rows, cols, vals = [], [], []
    for j in range(n_gen):
        rows.append(int(cover[j]))
        cols.append(j)
        vals.append(1.0)
        for r in rng.choice(n_cap, size=rng.integers(0, n_cap + 1), replace=False):
            rows.append(int(r))
            cols.append(j)
            vals.append(float(rng.uniform(0.1, 3.0)))
    for f in range(n_free):
        for r in rng.choice(n_cap, size=rng.integers(1, n_cap + 1), replace=False):
            rows.append(int(r))
            cols.append(n_gen + f)
            vals.append(float(rng.uniform(0.1, 2.0)))
    n_all = n_gen + n_free
    a = csc_matrix((vals, (rows, cols)), shape=(n_cap + n_cls, n_all))
    count = rng.integers(1, 5, size=n_cls).astype(float)
    cap = rng.uniform(0.5, 10.0, size=n_cap)
    free_lo = np.where(rng.random(n_free) < 0.5, rng.uniform(0, 2, size=n_free), 0.0)
    return LP(
        cost=np.concatenate([rng.uniform(0, 100, size=n_gen), rng.uniform(-5, 50, n_free)]),
        col_lo=np.concatenate([np.zeros(n_gen), free_lo]),
        col_hi=np.concatenate([np.full(n_gen, np.inf), free_lo + rng.uniform(0, 5, n_free)]),
        row_lo=np.concatenate([np.full(n_cap, -np.inf), count]),
        row_hi=np.concatenate([cap, count]),
        a=a,
        priced=n_gen,
        cover=cover.astype(np.int64),
    )


def by_columns(lp: LP, first: int, cold: float = COLD_FRACTION) -> tuple[F64, float]:
    """``lp`` solved with its first ``priced`` columns generated, the rest always in it
    (re-solved afresh after adding more than ``cold`` of its columns)."""
    a = lp.a
    gen = Priced.of_matrix(a[:, : lp.priced], lp.cost[: lp.priced], lp.cover)
    fixed = slice(lp.priced, None)
    x, z, value = solve_lp_by_columns(lp.cost[fixed], lp.col_lo[fixed], lp.col_hi[fixed],
                                      a[:, fixed], lp.row_lo, lp.row_hi, gen, 60.0, "cols",
                                      first=first, cold_fraction=cold)  # fmt: skip
    return np.concatenate([z, x]), value


@settings(max_examples=200, deadline=None)
@given(lp=lps(), first=st.integers(1, 3), cold=st.sampled_from([0.0, np.inf]))
def test_columns_find_the_whole_lps_optimum(lp: LP, first: int, cold: float) -> None:
    """Started from as few as one column per class, so most are generated; each round's
    solve from the last basis, or afresh (cleared) whenever columns were added."""
    a = lp.a
    try:
        h = solve_lp(*lp.bounds(), (a.indptr, a.indices, a.data), 60.0, "whole")
    except BoundError:
        with pytest.raises(BoundError):
            by_columns(lp, first, cold)
        return
    whole = float(h.getInfo().objective_function_value)
    x, value = by_columns(lp, first, cold)
    assert value == pytest.approx(whole, rel=1e-6, abs=1e-6)
    assert float(lp.cost @ x) == pytest.approx(value, rel=1e-6, abs=1e-6)  # the columns' values
    row = a @ x
    assert np.all(row <= lp.row_hi + 1e-6) and np.all(row >= lp.row_lo - 1e-6)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_whole_jobs_are_priced_as_their_columns_say(data: st.DataObject) -> None:
    """The tight bound prices a whole-job column from the duals without making it: the same
    as its entries (hours held in each pool's buckets, times units, and its cover row)."""
    bucket_h, nb, n_pools = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 12)), 3
    hours = data.draw(st.integers(max(1, (nb - 1) * bucket_h + 1), nb * bucket_h))
    b_len = np.full(nb, float(bucket_h))
    b_len[-1] = hours - (nb - 1) * bucket_h
    n = data.draw(st.integers(1, 20))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    lo = rng.uniform(0, hours, size=n)
    hi = np.maximum(lo, np.minimum(hours, lo + rng.uniform(-1, hours, size=n)))
    pool = rng.integers(0, n_pools, size=n)
    units = rng.integers(1, 9, size=n).astype(float)
    n_rows = n_pools * nb + 2
    cover = rng.integers(n_pools * nb, n_rows, size=n)
    y = rng.normal(size=n_rows)
    block = _busy(np.arange(n), lo, hi, pool, units, cover, bucket_h, nb, n_rows)
    priced = y[cover] + units * _busy_dual(y, lo, hi, pool, b_len, bucket_h, nb, n_pools)
    assert np.allclose(block.T @ y, priced)
    assert np.allclose(block[: n_pools * nb].sum(axis=0).A1, units * (hi - lo))  # all hours


@settings(max_examples=150, deadline=None)
@given(lp=lps(), seed=st.integers(0, 2**31 - 1))
def test_columns_priced_only_where_they_may_pay(lp: LP, seed: int) -> None:
    """As the tight bound prices: from a given first set (one column per class), and a
    column whose cost is not below its class's dual reported as 0 without its entries (with
    the capacity duals <= 0 it cannot be negative): still the whole LP's optimum."""
    a = lp.a
    full = Priced.of_matrix(a[:, : lp.priced], lp.cost[: lp.priced], lp.cover)
    n_cap = int(lp.cover.min())

    def reduced(y: F64) -> F64:
        if y[:n_cap].max(initial=0.0) > 0.0:
            return full.reduced(y)
        out = np.zeros(lp.priced)
        may = np.nonzero(full.cost - y[full.cover] < 0.0)[0]
        out[may] = full.reduced(y)[may]
        return out

    rng = np.random.default_rng(seed)
    per = lp.priced // (lp.cover.max() - n_cap + 1)
    start = np.arange(0, lp.priced, per) + rng.integers(0, per)
    gen = Priced(full.cost, full.cover, full.block, reduced, start.astype(np.int64))
    fixed = slice(lp.priced, None)
    args = (lp.cost[fixed], lp.col_lo[fixed], lp.col_hi[fixed], a[:, fixed], lp.row_lo, lp.row_hi)
    try:
        h = solve_lp(*lp.bounds(), (a.indptr, a.indices, a.data), 60.0, "whole")
    except BoundError:
        with pytest.raises(BoundError):
            solve_lp_by_columns(*args, gen, 60.0, "cols")
        return
    *_, value = solve_lp_by_columns(*args, gen, 60.0, "cols")
    whole = float(h.getInfo().objective_function_value)
    assert value == pytest.approx(whole, rel=1e-6, abs=1e-6)


class _NoAnswerOnce:
    """HiGHS as it is, except that its first re-solve from a basis ends without an answer
    (status "Unknown", as HiGHS 1.16 did on a 200,000-job bound): what the solver reports,
    not what it computed, so the column generation must solve that LP again, afresh."""

    def __init__(self, h: object) -> None:
        self._h = h
        self.runs = 0
        self.cleared = 0
        self._unknown = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._h, name)

    def run(self) -> object:
        self.runs += 1
        self._unknown = self.runs == 2
        return self._h.run()  # type: ignore[attr-defined]

    def clearSolver(self) -> object:
        self.cleared += 1
        return self._h.clearSolver()  # type: ignore[attr-defined]

    def getModelStatus(self) -> object:
        import highspy

        if self._unknown:
            return highspy.HighsModelStatus.kUnknown
        return self._h.getModelStatus()  # type: ignore[attr-defined]


@settings(max_examples=60, deadline=None)
@given(lp=lps())
def test_a_re_solve_without_an_answer_is_solved_afresh(lp: LP) -> None:
    """A re-solve from the basis that HiGHS ends without an answer is repeated afresh (the
    basis cleared), and the optimum is still the whole LP's."""
    import suanwang.scheduling.bound as bound_module

    made: list[_NoAnswerOnce] = []
    real = bound_module._quiet_highs

    def flaky() -> _NoAnswerOnce:
        made.append(_NoAnswerOnce(real()))
        return made[-1]

    a = lp.a
    try:
        h = solve_lp(*lp.bounds(), (a.indptr, a.indices, a.data), 60.0, "whole")
    except BoundError:
        return
    with pytest.MonkeyPatch.context() as m:
        m.setattr(bound_module, "_quiet_highs", flaky)
        _, value = by_columns(lp, 1, cold=np.inf)  # every re-solve from the basis
    assert value == pytest.approx(float(h.getInfo().objective_function_value), rel=1e-6, abs=1e-6)
    (solver,) = made
    if solver.runs >= 2:  # there was a re-solve: its missing answer was asked for afresh
        assert solver.cleared == 1 and solver.runs >= 3
