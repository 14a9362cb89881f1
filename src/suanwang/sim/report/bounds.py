"""The offline bounds a report shows: the non-preemptive one and the relaxed one, whichever were
computed, the tightest (highest) first, and what each of them is (docs/model.md)."""

from __future__ import annotations

from dataclasses import dataclass

from suanwang.scheduling.bound import Bound
from suanwang.scheduling.tight_bound import TightBound
from suanwang.sim.report.text import sig

#: the kinds, named as ``simulate --json`` names them in ``"bound"``'s ``"kind"``
NON_PREEMPTIVE = "non-preemptive"
RELAXED = "relaxed"

WHAT = {
    NON_PREEMPTIVE: (
        "the LP relaxation of a schedule of whole jobs: each job that cannot checkpoint runs on "
        "one pool from one start and holds its cards for its whole runtime, its transfer and "
        "energy charged at that same pool, within each pool's cards per time bucket"
    ),
    RELAXED: (
        "an LP that lets work split across chips and hours and charges each job its cheapest "
        "transfer and its cheapest energy even where no one center offers both, so it is "
        "cheap to solve but loose"
    ),
}


@dataclass(frozen=True, slots=True)
class ShownBound:
    kind: str  # NON_PREEMPTIVE or RELAXED
    bound: Bound

    @property
    def label(self) -> str:
        return f"{self.kind} bound"


@dataclass(frozen=True, slots=True)
class Bounds:
    """The bounds computed for a run, the tightest first, and why the non-preemptive one is
    missing when it was asked for and not solved (``tight_error``)."""

    shown: tuple[ShownBound, ...]
    tight_error: str | None = None

    @property
    def tightest(self) -> ShownBound | None:
        return self.shown[0] if self.shown else None


def shown_bounds(
    relaxed: Bound | None, tight: Bound | None, tight_error: str | None = None
) -> Bounds:
    """Both bounds are valid lower bounds: the non-preemptive one is the tightest when it is
    higher than the relaxed one (as ``"bound"`` in ``simulate --json``), else the relaxed."""
    shown = [ShownBound(NON_PREEMPTIVE, tight)] if tight is not None else []
    if relaxed is not None:
        entry = ShownBound(RELAXED, relaxed)
        higher = tight is None or relaxed.cost_cny >= tight.cost_cny
        shown.insert(0 if higher else 1, entry)
    return Bounds(tuple(shown), tight_error)


def bound_notes(b: Bounds) -> list[str]:
    """What each bound is, which one cost / bound compares against and why, and why the
    non-preemptive one is missing."""
    notes = [_what(s) for s in b.shown]
    top = b.tightest
    if top is None:
        notes.append("No offline bound was computed for this run.")
    elif len(b.shown) == 2:
        notes.append(
            "Both are lower bounds with perfect knowledge of the whole horizon: no policy that "
            "completes the same jobs can cost less than either. Cost / bound is against the "
            f"{top.label}, the higher of the two: the closer a lower bound is to what a real "
            "schedule can achieve, the more truly cost / bound shows what a policy has left to "
            "gain."
        )
    else:
        notes.append(
            "It is a lower bound with perfect knowledge of the whole horizon: no policy that "
            f"completes the same jobs can cost less. Cost / bound is against the {top.label}."
        )
    has_tight = any(s.kind == NON_PREEMPTIVE for s in b.shown)
    if not has_tight and b.tight_error:
        notes.append(f"The {NON_PREEMPTIVE} bound was not computed: {b.tight_error}.")
    elif not has_tight and top is not None:
        notes.append(
            f"The tighter {NON_PREEMPTIVE} bound was not computed for this run "
            "(suanwang simulate --tight-bound computes it)."
        )
    if len(b.shown) == 2:
        notes.append("The bounds' carbon is indicative: they minimise cost, not carbon.")
    elif top is not None:
        notes.append("The bound's carbon is indicative: it minimises cost, not carbon.")
    return notes


def _what(s: ShownBound) -> str:
    x = s.bound
    took = f", solved in {sig(x.solve_s)} s" if isinstance(x, TightBound) else ""
    return (
        f"The {s.label} is {WHAT[s.kind]} ({x.bucket_h} h buckets, {x.variables:,} "
        f"variables, {x.classes:,} job classes, {x.jobs:,} jobs{took})."
    )


def lines_note(b: Bounds) -> str:
    """What the chart's bound lines are (plain text)."""
    if not b.shown:
        return "no offline bound was computed."
    top, *rest = b.shown
    text = f"the dashed line is the {top.label}"
    if not rest:
        return text + ", a lower bound on the cost of any policy that completes the same jobs."
    return (
        text + ", the tighter lower bound and the one to compare against; the dotted line is "
        f"the {rest[0].label}, lower and looser (the summary says what each one is)."
    )
