"""The report's sharing section (issue 14): shown for governed runs only, with every tenant,
the fairness indices, usage against entitlement per hour, waits by class and preemptions;
and the hourly series it draws (``sim.fairness.sharing_series``), which the JSON's numbers
are the sums of.

On the network of two centers with two A100s each (4 SCU/h in all) of ``tests/sim/a100.py``."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from a100 import a100_job, two_pools
from report_page import PLOTLY_MARKER, figure_json, outline

from suanwang.core.governance import Governance, TenantQuota, equal_shares
from suanwang.core.jobs import Job, Priority
from suanwang.core.network import Network
from suanwang.core.scenario import Scenario
from suanwang.scenarios.signals import build_signals
from suanwang.scheduling.policies import FirstFit
from suanwang.sim.fairness import TAIL_H, governance_metrics, sharing_series
from suanwang.sim.governed import simulate_governed
from suanwang.sim.report import write_report
from suanwang.sim.report.sharing import SECTION
from suanwang.sim.report.text import pct
from suanwang.sim.run import SimulationResult, Workload, run

START = datetime(2025, 7, 1, tzinfo=UTC)
H = 3600.0
ARRIVAL_DAYS = 6 / 24
TENANTS = ("nlp-lab", "hpc-lab", "r&d")
BASE_HEADINGS = [
    "Summary",
    "Cost and carbon against the bound",
    "Green share over time",
    "Card utilization per hub",
    "Origin → executing hub flows (东数西算)",
    "Signals per center",
    "Centers map",
]


def _job(i: int, tenant: str, submit_s: float, **kw: Any) -> Job:
    """A one-A100 training job (1 SCU/h on either pool) of 4 SCU."""
    return a100_job(i, **{"tenant": tenant, "submit_s": submit_s, "work_scu": 4.0, **kw})


def contended() -> list[Job]:
    """``nlp-lab`` floods the network at once, ``hpc-lab`` an hour later (it preempts to take
    its share back), and ``r&d`` sends one urgent job at 2 h."""
    a = [_job(i, TENANTS[0], float(i), checkpointable=i % 2 == 0) for i in range(16)]
    b = [_job(16 + i, TENANTS[1], H + i, checkpointable=True) for i in range(8)]
    c = [_job(24, TENANTS[2], 2 * H, work_scu=1.0, priority=Priority.URGENT)]
    return a + b + c


def governance() -> Governance:
    quotas = ((TENANTS[0], 2.0), (TENANTS[1], 1.5), (TENANTS[2], 0.5))
    return Governance(tenants={t: TenantQuota(t, t, q) for t, q in quotas})


@pytest.fixture(scope="module")
def small(tiny: Scenario) -> Scenario:
    return two_pools(tiny)


@pytest.fixture(scope="module")
def governed(small: Scenario) -> SimulationResult:
    """``first-fit`` with the quotas and its fifo comparison, through ``sim.run`` (as the CLI)."""
    return run(
        small,
        Workload(contended(), ARRIVAL_DAYS, "test"),
        start=START,
        policies=["first-fit"],
        seed=1,
        drain_days=1.0,
        with_bound=False,
        governance=governance(),
        fifo=True,
    )


def _write(result: SimulationResult, path: Path) -> str:
    write_report(
        path,
        scenario_name=result.scenario,
        net=result.network,
        signals=result.signals,
        reports=result.reports,
        bound=None,
        arrival_days=result.workload.arrival_days,
    )
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(governed: SimulationResult, tmp_path_factory: pytest.TempPathFactory) -> str:
    return _write(governed, tmp_path_factory.mktemp("sharing") / "report.html")


def _section(page: str, sid: str) -> str:
    start = page.index(f'<section id="{sid}">')
    return page[start : page.index("</section>", start)]


def _array(value: Any) -> np.ndarray[Any, Any]:
    """A trace's array as plotly writes it: a list, or base64 typed data with its shape."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return flat.reshape([int(k) for k in shape.split(",")]) if shape else flat
    return np.array(value, dtype=object if value and isinstance(value[0], str) else None)


# --------------------------------------------------------------------------- the series


def test_the_series_are_what_the_json_sums(small: Scenario) -> None:
    """Usage, entitlement and waits of the series add up to ``governance_metrics``; given the
    series, ``governance_metrics`` gives the same document; preemptions land in their hour."""
    net = Network(small)
    sig = build_signals(small, START, 30, seed=1)
    jobs = contended()
    g = simulate_governed(net, sig, jobs, FirstFit(), governance())
    s = sharing_series(net, jobs, g, ARRIVAL_DAYS)
    m = governance_metrics(net, jobs, g, ARRIVAL_DAYS)
    assert governance_metrics(net, jobs, g, ARRIVAL_DAYS, s) == m
    assert s.tenants == tuple(sorted(TENANTS)) and s.fair
    assert s.arrival_hours == 6
    assert s.hours == min(6 + TAIL_H, 30)  # the arrivals and the tail, within the horizon
    assert s.usage_scu.shape == s.backlogged.shape == (3, s.hours)
    for i, t in enumerate(s.tenants):
        row = m["tenants"][t]
        assert s.usage_scu[i, :6].sum() == pytest.approx(row["usage_scu"], rel=1e-12)
        assert s.entitlement_scu_per_h[i] * 6 == pytest.approx(row["entitlement_scu"])
    np.testing.assert_allclose(
        s.entitled_fraction(), s.usage_scu / s.entitlement_scu_per_h[:, None], rtol=1e-12
    )
    # the network is full from the first round until the work runs out
    assert s.usage_scu.sum(axis=0)[1:6] == pytest.approx([4.0] * 5)
    assert s.usage_scu.sum() == pytest.approx(sum(j.work_scu for j in jobs) + m["lost_work_scu"])
    assert m["preemptions"] > 0
    assert int(s.preemptions.sum()) == m["preemptions"]
    assert s.lost_work_scu.sum() == pytest.approx(m["lost_work_scu"])
    for p in g.preemptions:
        assert s.preemptions[int(p.at_s // H)] > 0
    assert s.wait_s.shape == (len(jobs),)
    assert s.job_class[-1] == list(Priority).index(Priority.URGENT)


def test_run_attaches_the_series_to_governed_reports_only(
    governed: SimulationResult, small: Scenario
) -> None:
    assert [r.name for r in governed.reports] == ["first-fit", "first-fit/fifo"]
    fair, fifo = governed.reports
    assert fair.sharing is not None and fair.sharing.fair
    assert fifo.sharing is not None and not fifo.sharing.fair
    assert not fifo.sharing.preemptions.any()
    plain = run(
        small,
        Workload(contended()[:4], ARRIVAL_DAYS, "test"),
        start=START,
        policies=["first-fit"],
        seed=1,
        drain_days=0.5,
        with_bound=False,
    )
    assert plain.reports[0].sharing is None and plain.reports[0].governance is None


# --------------------------------------------------------------------------- the section


def test_the_section_shows_every_tenant_and_the_fairness_numbers(
    page: str, governed: SimulationResult
) -> None:
    parsed = outline(page)
    assert parsed.h2 == [BASE_HEADINGS[0], SECTION[1], *BASE_HEADINGS[1:]]
    assert f'<a href="#{SECTION[0]}">' in page
    section = outline(_section(page, SECTION[0]))
    for t in TENANTS:
        assert parsed.cells.count(t) == 2, t  # a row per policy, names escaped in the HTML
    assert "r&amp;d" in page and "r&d<" not in page
    for r in governed.reports:
        assert r.governance is not None
        f = r.governance["fairness"]
        assert f["backlogged_hours"] > 0
        cells = section.cells
        row = cells.index(r.name)  # the policy's row of the section's first table (fairness)
        assert cells[row + 1] == f"{f['jain_index']:.3f}"
        assert cells[row + 2] == pct(f["min_entitled_fraction"])
        assert cells[row + 3] == str(f["backlogged_hours"])
        assert cells[row + 4] == f"{pct(f['asks_met_within_round'])} of {f['asks']}"
        assert cells[row + 6] == str(r.governance["preemptions"])
    fair, fifo = (r.governance for r in governed.reports)
    assert fair is not None and fifo is not None
    assert fair["fairness"]["jain_index"] > fifo["fairness"]["jain_index"]
    for fig in ("usage-0", "usage-1", "waits", "preemptions"):
        assert f"fig-sharing-{fig}" in parsed.div_ids
    assert "<details open><summary>first-fit: 3 tenants" in page


def test_the_heatmap_is_usage_over_entitlement_with_backlogged_hours_marked(
    page: str, governed: SimulationResult
) -> None:
    for i, r in enumerate(governed.reports):
        s = r.sharing
        assert s is not None
        (heat, marks), layout = figure_json(page, f"fig-sharing-usage-{i}")
        assert heat["type"] == "heatmap"
        assert list(heat["y"]) == ["hpc-lab", "nlp-lab", "r&amp;d"]  # sorted, escaped
        z = _array(heat["z"])
        n = z.shape[1]
        assert z.shape == (3, n) and 6 < n <= s.hours
        np.testing.assert_allclose(z, s.entitled_fraction()[:, :n], rtol=1e-12)
        np.testing.assert_allclose(_array(heat["customdata"]), s.usage_scu[:, :n], rtol=1e-12)
        # one mark per backlogged (tenant, hour), on the heatmap's own rows and hours
        assert marks["type"] == "scatter"
        assert len(marks["y"]) == int(s.backlogged[:, :n].sum()) > 0
        assert set(marks["y"]) <= set(heat["y"])
        assert set(_array(marks["x"]).tolist()) <= set(_array(heat["x"]).tolist())
        assert layout["xaxis"]["type"] == "date"
        assert layout["yaxis"]["automargin"] is True


def test_waits_by_class_and_preemptions_per_policy(page: str, governed: SimulationResult) -> None:
    bars, _ = figure_json(page, "fig-sharing-waits")
    assert [b["name"] for b in bars] == ["first-fit"] * 2 + ["first-fit/fifo"] * 2
    runs = [governed.reports[0]] * 2 + [governed.reports[1]] * 2
    for bar, r, key in zip(bars, runs, ["wait_p50_s", "wait_p95_s"] * 2, strict=True):
        assert r.governance is not None
        assert list(bar["x"]) == ["urgent", "normal", "batch", "preemptible"]
        expected = [r.governance["classes"][c][key] / 60.0 for c in bar["x"]]
        np.testing.assert_allclose(_array(bar["y"]).astype(float), expected, rtol=1e-12)
    assert bars[2]["marker"]["pattern"]["shape"] == "/"  # the fifo run hatched
    lines, _ = figure_json(page, "fig-sharing-preemptions")
    assert {line["name"] for line in lines} == {"first-fit"}  # fifo never preempts
    fair = governed.reports[0]
    assert fair.sharing is not None and fair.governance is not None
    counts = _array(lines[0]["y"])
    assert int(counts.sum()) == fair.governance["preemptions"]


def test_the_report_with_the_section_loads_nothing_from_the_network(page: str) -> None:
    parsed = outline(page)
    assert parsed.script_src == [] and parsed.external == []
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert "cdn.plot.ly/plotly" not in page
    assert page.count(PLOTLY_MARKER) == 1
    assert page.index(PLOTLY_MARKER) < page.index("Plotly.newPlot")


def test_the_report_is_deterministic(page: str, governed: SimulationResult, tmp_path: Path) -> None:
    assert _write(governed, tmp_path / "again.html") == page


def test_an_ungoverned_run_has_no_sharing_section(small: Scenario, tmp_path: Path) -> None:
    result = run(
        small,
        Workload(contended(), ARRIVAL_DAYS, "test"),
        start=START,
        policies=["first-fit"],
        seed=1,
        drain_days=1.0,
        with_bound=False,
    )
    page = _write(result, tmp_path / "plain.html")
    assert outline(page).h2 == BASE_HEADINGS
    assert SECTION[1] not in page and "fig-sharing" not in page
    assert "nlp-lab" not in page
    assert page.count(PLOTLY_MARKER) == 1


def test_many_tenants_each_get_a_row(small: Scenario, tmp_path: Path) -> None:
    """24 tenants of one job each: every one is a row of the heatmap, which grows to fit them;
    nothing was preempted, and the section says so."""
    names = [f"team-{i:02d}" for i in range(24)]
    jobs = [_job(i, t, 600.0 * i, work_scu=0.5) for i, t in enumerate(names)]
    result = run(
        small,
        Workload(jobs, ARRIVAL_DAYS, "test"),
        start=START,
        policies=["first-fit"],
        seed=1,
        drain_days=0.5,
        with_bound=False,
        governance=equal_shares(names, 4.0),
    )
    page = _write(result, tmp_path / "many.html")
    (heat, _), layout = figure_json(page, "fig-sharing-usage-0")
    assert list(heat["y"]) == names
    assert layout["height"] >= 16 * len(names)
    assert all(f"<td>{t}</td>" in page for t in names)
    assert "No run preempted anything" in page
    assert "fig-sharing-preemptions" not in page
