"""The HTML report: every section, every policy, self-contained (plotly.js inlined once)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from report_page import PLOTLY_MARKER, figure_json, outline

from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scenarios.loader import load_scenario
from suanwang.scheduling.bound import Bound
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import FirstFit, Nearest
from suanwang.scheduling.tight_bound import TightBound
from suanwang.sim.engine import simulate
from suanwang.sim.metrics import PolicyReport, measure
from suanwang.sim.report import write_report
from suanwang.sim.report.data import window_hours
from suanwang.sim.report.text import pct, sig, signed_pct
from suanwang.sim.workload import WorkloadSpec, synthetic_jobs

HEADINGS = (
    "Summary",
    "Cost and carbon against the bound",
    "Green share over time",
    "Card utilization per hub",
    "Origin → executing hub flows (东数西算)",
    "Signals per center",
    "Centers map",
)
ARRIVAL_DAYS = 0.5
HOURS = 4 * 24
START = datetime(2025, 7, 1, tzinfo=UTC)


@dataclass
class Run:
    name: str
    net: Network
    signals: Signals
    reports: list[PolicyReport]
    jobs: int


def _signals(n_centers: int, hours: int, seed: int = 3) -> Signals:
    rng = np.random.default_rng(seed)
    local_h = (np.arange(hours) + 8) % 24
    sun = np.clip(np.sin((local_h - 6) / 12 * np.pi), 0, None)
    green = np.clip(0.2 + 0.6 * sun[None, :] * rng.uniform(0.3, 1.0, (n_centers, 1)), 0, 1)
    price = 0.3 + 0.5 * (1 - green) + rng.uniform(0, 0.05, (n_centers, hours))
    carbon = np.full((n_centers, hours), 580.0)
    return Signals(START, price, carbon, green, price.copy(), green.copy())


@pytest.fixture(scope="module")
def run() -> Run:
    sc = load_scenario("china")
    net = Network(sc)
    sig = _signals(net.n_centers, HOURS)
    jobs = synthetic_jobs(net, WorkloadSpec(jobs=80, days=ARRIVAL_DAYS, seed=1), START)
    reports = [
        measure(p.name, net, sig, jobs, simulate(net, sig, jobs, p), ARRIVAL_DAYS)
        for p in (Nearest(), SuanwangPolicy())
    ]
    return Run(sc.name, net, sig, reports, len(jobs))


@pytest.fixture(scope="module")
def bound() -> Bound:
    return Bound(
        cost_cny=100.0,
        energy_cost_cny=80.0,
        transfer_cost_cny=20.0,
        energy_kwh=400.0,
        carbon_t=0.1,
        bucket_h=2,
        variables=1000,
        classes=10,
        jobs=78,
    )


def _page(
    run: Run,
    path: Path,
    bound: Bound | None,
    tight: Bound | None = None,
    tight_error: str | None = None,
) -> str:
    written = write_report(
        path,
        scenario_name=run.name,
        net=run.net,
        signals=run.signals,
        reports=run.reports,
        bound=bound,
        arrival_days=ARRIVAL_DAYS,
        tight=tight,
        tight_error=tight_error,
    )
    assert written == path
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(run: Run, bound: Bound, tmp_path_factory: pytest.TempPathFactory) -> str:
    return _page(run, tmp_path_factory.mktemp("report") / "sub" / "report.html", bound)


def test_every_section_and_policy_is_present(page: str, run: Run) -> None:
    parsed = outline(page)
    assert parsed.h2 == list(HEADINGS)
    assert page.startswith("<!DOCTYPE html>")
    assert parsed.title.startswith("suanwang simulation report")
    assert parsed.charset == "utf-8"
    for r in run.reports:
        assert f"{r.name}</td>" in page
        assert f'"name":"{r.name}"' in page  # a chart trace per policy
    assert "Scenario: <b>china</b>" in page
    assert f"Jobs: <b>{run.jobs:,}</b>" in page
    assert "Horizon: <b>96 h" in page
    assert "relaxed bound</td>" in page
    assert "Cost / relaxed bound" in page
    assert "Cost vs nearest" in page
    for fig in ("cost-carbon", "green", "utilization", "flows-0", "flows-1", "price", "map"):
        assert f"fig-{fig}" in parsed.div_ids
    assert '"type":"sankey"' in page


def test_report_is_self_contained_with_one_plotly_bundle(page: str) -> None:
    parsed = outline(page)
    assert parsed.script_src == []
    assert parsed.external == []
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert "cdn.plot.ly/plotly" not in page
    assert page.count(PLOTLY_MARKER) == 1
    assert "MathJax.js" not in page
    # the bundle comes before the first Plotly.newPlot call
    assert page.index(PLOTLY_MARKER) < page.index("Plotly.newPlot")


def test_report_is_deterministic(run: Run, bound: Bound, page: str, tmp_path: Path) -> None:
    assert _page(run, tmp_path / "again.html", bound) == page


def test_without_bound_or_named_policies(run: Run, tmp_path: Path) -> None:
    jobs = synthetic_jobs(run.net, WorkloadSpec(jobs=20, days=ARRIVAL_DAYS, seed=2), START)
    first_fit = measure(
        "first-fit", run.net, run.signals, jobs, simulate(run.net, run.signals, jobs, FirstFit()), 1
    )
    out = write_report(
        tmp_path / "r.html",
        scenario_name="tiny <test>",
        net=run.net,
        signals=run.signals,
        reports=[first_fit],
        bound=None,
        arrival_days=ARRIVAL_DAYS,
        title="custom & title",
    )
    page = out.read_text(encoding="utf-8")
    parsed = outline(page)
    assert parsed.h2 == list(HEADINGS)
    assert parsed.title == "custom & title — tiny <test>"
    assert "tiny &lt;test&gt;" in page
    assert "first-fit</td>" in page
    assert "Cost / " not in page
    assert "Cost vs nearest" not in page
    assert "No offline bound" in page
    assert page.count(PLOTLY_MARKER) == 1


def test_no_policies(run: Run, tmp_path: Path) -> None:
    out = write_report(
        tmp_path / "empty.html",
        scenario_name="china",
        net=run.net,
        signals=run.signals,
        reports=[],
        bound=None,
        arrival_days=ARRIVAL_DAYS,
    )
    page = out.read_text(encoding="utf-8")
    assert outline(page).h2 == list(HEADINGS)
    assert "No policy was run." in page
    assert page.count(PLOTLY_MARKER) == 1  # signal heatmaps and map still render


@pytest.mark.parametrize("div_id", ["fig-price", "fig-green-fraction"])
def test_signal_heatmaps_label_rows_with_full_center_ids(page: str, run: Run, div_id: str) -> None:
    """Each row is labelled with the whole center id (and its hub), and the left margin grows
    to fit the longest label instead of cutting every label to its first character."""
    (heat,), layout = figure_json(page, div_id)
    ids = [label.split(" · ")[0] for label in heat["y"]]
    assert sorted(ids) == sorted(c.id for c in run.net.scenario.centers)
    assert layout["yaxis"]["automargin"] is True


def test_window_stops_after_arrivals_plus_two_days(run: Run) -> None:
    hours = window_hours(run.signals, run.reports, ARRIVAL_DAYS)
    assert 1 <= hours <= int(np.ceil(ARRIVAL_DAYS * 24)) + 48
    last = max(int(np.flatnonzero(r.hourly_energy_kwh.sum(0) > 0)[-1]) for r in run.reports)
    assert hours == min(int(np.ceil(ARRIVAL_DAYS * 24)) + 48, last + 1)


def test_number_formatting() -> None:
    assert sig(1234567.8) == "1,234,568"
    assert sig(12.345) == "12.3"
    assert sig(0.000735) == "0.000735"
    assert sig(0.0) == "0"
    assert sig(float("nan")) == "—"
    assert pct(0.82596) == "82.6 %"
    assert signed_pct(-0.6938) == "−69.4 %"
    assert signed_pct(0.0) == "±0 %"


# --- the bounds: the non-preemptive (tight) one and the relaxed one ------------------------


def _tight(bound: Bound, cost: float = 120.0, carbon: float = 0.125) -> TightBound:
    """A non-preemptive bound of the same jobs as ``bound``, 15 CNY of its cost transfer."""
    changed = {"cost_cny": cost, "energy_cost_cny": cost - 15.0, "transfer_cost_cny": 15.0}
    changed |= {"energy_kwh": 410.0, "carbon_t": carbon, "variables": 5000, "classes": 40}
    return TightBound(**(asdict(bound) | changed), solve_s=1.25)


def _bound_row(page: str, label: str) -> list[str]:
    """The summary's row of the bound ``label``: its cells after the label."""
    cells = outline(page).cells
    assert cells.count(label) == 1, label
    i = cells.index(label)
    return cells[i + 1 : i + 9]


def _bound_lines(page: str) -> dict[str, list[tuple[float, str, str]]]:
    """The cost and carbon chart's horizontal lines: per axis, (y, dash, label) in order."""
    _, layout = figure_json(page, "fig-cost-carbon")
    labels = {
        (a["yref"].split()[0], a["y"]): a["text"] for a in layout["annotations"] if "yref" in a
    }
    lines: dict[str, list[tuple[float, str, str]]] = {"y": [], "y2": []}
    for shape in layout["shapes"]:
        axis = shape["yref"]
        lines[axis].append((shape["y0"], shape["line"]["dash"], labels[(axis, shape["y0"])]))
    return lines


def test_both_bounds_shown_with_values_and_kinds_cost_against_the_tighter(
    run: Run, bound: Bound, tmp_path: Path
) -> None:
    tight = _tight(bound)
    page = _page(run, tmp_path / "both.html", bound, tight)
    cells = outline(page).cells
    assert "Cost / non-preemptive bound" in page and "Cost / relaxed bound" not in page
    # each bound's row: cost, energy cost, transfer, energy, green, carbon, cost / tight bound
    assert _bound_row(page, "non-preemptive bound")[:7] == [
        "120", "105", "15.0", "410", "—", "0.125", "1.00×"
    ]  # fmt: skip
    assert _bound_row(page, "relaxed bound")[:7] == [
        "100", "80.0", "20.0", "400", "—", "0.100", "0.833×"
    ]  # fmt: skip
    assert cells.index("non-preemptive bound") < cells.index("relaxed bound")  # tightest first
    for r in run.reports:  # every policy's cost / bound is against the non-preemptive bound
        row = cells.index(r.name)
        assert cells[row + 7] == f"{sig(r.metrics['cost_cny'] / 120.0)}×"
    # what each is, and why the tight one is the one compared against
    assert "The non-preemptive bound is the LP relaxation of a schedule of whole jobs" in page
    assert "solved in 1.25 s" in page
    assert "The relaxed bound is an LP that lets work split across chips and hours" in page
    assert "Cost / bound is against the non-preemptive bound, the higher of the two" in page
    assert "bound was not computed" not in page
    assert "carbon is indicative: they minimise cost" in page
    # the chart: both as lines, each labelled with its kind and value, the tightest dashed
    assert _bound_lines(page) == {
        "y": [(120.0, "dash", "non-preemptive bound 120"), (100.0, "dot", "relaxed bound 100")],
        "y2": [
            (0.125, "dash", "non-preemptive bound 0.125"),
            (0.1, "dot", "relaxed bound 0.100"),
        ],
    }
    assert "the dashed line is the non-preemptive bound" in page
    assert "the dotted line is the relaxed bound" in page
    assert page.count(PLOTLY_MARKER) == 1 and outline(page).script_src == []  # still offline


def test_only_the_relaxed_bound_when_the_tight_one_was_not_computed(
    run: Run, bound: Bound, page: str
) -> None:
    assert "non-preemptive bound</td>" not in page
    assert _bound_row(page, "relaxed bound")[:7] == [
        "100", "80.0", "20.0", "400", "—", "0.100", "1.00×"
    ]  # fmt: skip
    assert _bound_lines(page) == {
        "y": [(100.0, "dash", "relaxed bound 100")],
        "y2": [(0.1, "dash", "relaxed bound 0.100")],
    }
    assert "Cost / bound is against the relaxed bound." in page
    assert "The tighter non-preemptive bound was not computed for this run" in page
    assert "--tight-bound" in page


def test_the_tight_bound_not_solved_says_why(run: Run, bound: Bound, tmp_path: Path) -> None:
    why = "non-preemptive bound LP not solved within 120 s <limit>"
    page = _page(run, tmp_path / "why.html", bound=bound, tight_error=why)
    assert "non-preemptive bound</td>" not in page and "Cost / relaxed bound" in page
    assert "The non-preemptive bound was not computed: non-preemptive bound LP not solved " in page
    assert "&lt;limit&gt;" in page and "<limit>" not in page
    assert "carbon is indicative: it minimises cost" in page
    # neither bound: none shown, and still why the non-preemptive one is missing
    page = _page(run, tmp_path / "none.html", None, tight_error=why)
    assert "No offline bound was computed for this run." in page
    assert "The non-preemptive bound was not computed: " in page
    assert "Cost / " not in page and '<tr class="bound">' not in page


def test_only_the_tight_bound_when_the_relaxed_one_failed(
    run: Run, bound: Bound, tmp_path: Path
) -> None:
    page = _page(run, tmp_path / "tight.html", None, _tight(bound))
    assert "relaxed bound</td>" not in page
    assert _bound_row(page, "non-preemptive bound")[6] == "1.00×"
    assert "Cost / non-preemptive bound" in page
    assert "bound was not computed" not in page and "No offline bound" not in page
    assert [label for _, _, label in _bound_lines(page)["y"]] == ["non-preemptive bound 120"]


def test_the_higher_bound_is_the_one_compared_against(
    run: Run, bound: Bound, tmp_path: Path
) -> None:
    """Both are valid lower bounds: were the non-preemptive one ever the lower, the relaxed one
    is the tightest (as ``"bound"`` in ``simulate --json``), and both are still shown."""
    page = _page(run, tmp_path / "low.html", bound, _tight(bound, cost=90.0, carbon=0.2))
    cells = outline(page).cells
    assert "Cost / relaxed bound" in page
    assert cells.index("relaxed bound") < cells.index("non-preemptive bound")
    assert _bound_row(page, "non-preemptive bound")[6] == "0.900×"
    lines = _bound_lines(page)
    assert [(y, dash) for y, dash, _ in lines["y"]] == [(100.0, "dash"), (90.0, "dot")]
    assert [(y, dash) for y, dash, _ in lines["y2"]] == [(0.1, "dash"), (0.2, "dot")]
