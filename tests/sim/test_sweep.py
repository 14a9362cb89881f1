"""Sweeps (issue 17, item 4): a grid on a real local Ray runtime (one per module: it takes a
few seconds to start), its results against `suanwang simulate`'s for the same parameters,
resuming, a failing run among good ones, the tables and the summary, the statistics, and bad
sweep files refused with file:line: field."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from suanwang.cli import app
from suanwang.sim.sweep.execute import RAY_ENV, run_sweep, set_ray_env, unset_env
from suanwang.sim.sweep.results import summary_html, table, write_tables
from suanwang.sim.sweep.runs import BOUND, execute, grid
from suanwang.sim.sweep.spec import SweepError, load_sweep, parse_sweep_text
from suanwang.sim.sweep.stats import coverage, median_ci

FIXTURES = Path(__file__).parent.parent / "fixtures"
TINY = FIXTURES / "scenarios" / "tiny"
#: What differs between two runs of the same simulation: how fast it went.
TIMINGS = ("decisions_per_s",)

SWEEP = f"""\
scenario: {TINY}
start: 2025-07-01
drain_days: 1
edits:
  base: {{}}
  dear: {{tariff_scale: 2.0}}
workloads:
  small: {{jobs: 30, days: 0.5}}
policies: [nearest, suanwang]
seeds: [0, 1]
"""


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[None]:
    """One local Ray runtime of 2 CPUs for the module; run_sweep uses it as it is."""
    import ray

    added = set_ray_env()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    unset_env(added)


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def without_timings(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in TIMINGS}


def simulate_json(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["simulate", "--json", *args])
    assert result.exit_code == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_a_grid_on_ray_gives_what_simulate_gives(ray_runtime: None, tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, SWEEP))
    runs = grid(sweep)
    assert [(r.edits, r.policy, r.seed) for r in runs] == [
        (e, p, s) for e in ("base", "dear") for p in ("nearest", "suanwang") for s in (0, 1)
    ]
    assert len({r.key for r in runs}) == len(runs)
    outcome = run_sweep(runs, sweep.edited, tmp_path / "out")
    assert (outcome.reused, outcome.ran, outcome.failed) == (0, 8, [])
    by = {(r["edits"], r["policy"], r["seed"]): r for r in outcome.results}
    for policy in ("nearest", "suanwang"):
        for seed in (0, 1):
            doc = simulate_json(
                "--scenario", str(TINY), "--jobs", "30", "--days", "0.5", "--drain-days", "1",
                "--seed", str(seed), "--policy", policy, "--no-bound", "--start", "2025-07-01",
            )  # fmt: skip
            expected = {**doc["policies"][policy], "jobs": doc["jobs"]}
            got = by[("base", policy, seed)]["metrics"]
            assert without_timings(got) == without_timings(expected)
    # the tariff doubled: the same placements cost more for the policy that ignores prices
    for seed in (0, 1):
        base, dear = by[("base", "nearest", seed)], by[("dear", "nearest", seed)]
        assert dear["metrics"]["energy_kwh"] == base["metrics"]["energy_kwh"]
        assert dear["metrics"]["energy_cost_cny"] > base["metrics"]["energy_cost_cny"]


def test_a_finished_run_is_not_run_again(ray_runtime: None, tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, SWEEP))
    runs = grid(sweep)[:4]
    out = tmp_path / "out"
    first = run_sweep(runs, sweep.edited, out)
    assert (first.reused, first.ran) == (0, 4)
    again = run_sweep(runs, sweep.edited, out)
    assert (again.reused, again.ran) == (4, 0)
    assert again.results == first.results
    (out / "runs" / f"{runs[2].key}.json").unlink()  # lost: only that one runs again
    seen: list[str] = []
    third = run_sweep(runs, sweep.edited, out, on_result=lambda r: seen.append(r["key"]))
    assert (third.reused, third.ran) == (3, 1) and seen == [runs[2].key]
    # renaming an entry keeps its results: the key is what is simulated, not its name
    renamed = load_sweep(write(tmp_path, SWEEP.replace("small:", "renamed:"), "b.yaml"))
    assert [r.key for r in grid(renamed)] == [r.key for r in grid(sweep)]
    # a changed value is a new run
    longer = load_sweep(write(tmp_path, SWEEP.replace("jobs: 30", "jobs: 31"), "c.yaml"))
    assert not {r.key for r in grid(longer)} & {r.key for r in grid(sweep)}


def test_a_failing_run_is_reported_and_the_others_finish(ray_runtime: None, tmp_path: Path) -> None:
    bad = FIXTURES / "traces" / "suanwang_bad.csv"
    text = SWEEP.replace(
        "  small: {jobs: 30, days: 0.5}\n",
        f"  small: {{jobs: 30, days: 0.5}}\n  broken: {{trace: {bad}}}\n",
    ).replace("  dear: {tariff_scale: 2.0}\n", "")
    sweep = load_sweep(write(tmp_path, text))
    out = tmp_path / "out"
    outcome = run_sweep(grid(sweep), sweep.edited, out)
    assert outcome.ran == 8
    assert {(f["workload"], f["policy"], f["seed"]) for f in outcome.failed} == {
        ("broken", p, s) for p in ("nearest", "suanwang") for s in (0, 1)
    }
    for f in outcome.failed:
        assert f["error"].startswith("TraceError: ") and "Traceback" in f["traceback"]
        assert (out / "failed" / f"{f['key']}.json").is_file()
    assert all(r["status"] == "ok" for r in outcome.results if r["workload"] == "small")
    # a failed run is not finished: the next sweep tries it again
    again = run_sweep(grid(sweep), sweep.edited, out)
    assert (again.reused, again.ran, len(again.failed)) == (4, 4, 4)


def test_the_tables_and_the_summary(tmp_path: Path) -> None:
    # seed 4: more work than the tiny network can do in time, so no bound (a failed run)
    text = SWEEP.replace("seeds: [0, 1]", "seeds: [0, 1, 2, 3, 5, 6]")
    text = text.replace("drain_days: 1", "drain_days: 3")
    text = text.replace("policies: [nearest, suanwang]", "policies: [nearest]\nbound: true")
    text = text.replace("  dear: {tariff_scale: 2.0}\n", "  <b>&x: {tariff_scale: 2.0}\n")
    with pytest.raises(
        SweepError, match=r"sweep.yaml:6: edits.<b>&x: as a name: String should match"
    ):
        load_sweep(write(tmp_path, text))
    text = text.replace("<b>&x", "dear")
    sweep = load_sweep(write(tmp_path, text))
    outcome = run_sweep(grid(sweep), sweep.edited, tmp_path / "out", serial=True)
    assert outcome.ran == 24 and not outcome.failed
    df = table(outcome.results)
    csv, parquet = write_tables(df, tmp_path / "out")
    back = pd.read_parquet(parquet)
    assert list(back.columns) == list(df.columns) and len(back) == 24
    assert back["cost_cny"].tolist() == df["cost_cny"].tolist()
    assert pd.read_csv(csv)["seed"].tolist() == df["seed"].tolist()
    assert set(df["policy"]) == {"nearest", BOUND}
    # the bound never costs more than a policy on the same jobs and signals
    for (e, s), part in df.groupby(["edits", "seed"]):
        costs = part.set_index("policy")["cost_cny"]
        assert part.set_index("policy")["unfinished"]["nearest"] == 0
        assert costs[BOUND] <= costs["nearest"] * (1 + 1e-9), (e, s)
    html = summary_html(df, title="t <x>", meta=[("a", "<b>")], edit_notes={"dear": ["×2"]})
    assert "t &lt;x&gt;" in html and "&lt;b&gt;" in html and "<script" not in html
    nearest = df[(df["edits"] == "base") & (df["policy"] == "nearest")]["cost_cny"]
    ci = median_ci(nearest.tolist())
    assert ci.n == 6 and ci.low == nearest.min() and ci.high == nearest.max()
    assert f"[{ci.low:,.0f}" in html or f"[{ci.low:,.1f}" in html or f"[{ci.low:,.2f}" in html
    assert "96.9 %" in html  # the range of 6 seeds


def test_median_interval_coverage_is_exact_and_honest() -> None:
    assert coverage(5, 1) == pytest.approx(1 - 2 / 32)
    ci = median_ci([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (ci.median, ci.low, ci.high, ci.n) == (3.0, 1.0, 5.0, 5)
    assert ci.coverage == pytest.approx(0.9375)  # not called 95 %
    ci = median_ci([float(x) for x in range(20)])
    assert ci.coverage >= 0.95 and (ci.low, ci.high) == (5.0, 14.0)
    assert coverage(20, 7) < 0.95  # the next narrower one falls short
    assert median_ci([]).n == 0 and math.isnan(median_ci([]).median)
    assert median_ci([2.0, math.nan]).n == 1


@given(st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=60))
def test_median_interval_holds_the_median(values: list[float]) -> None:
    ci = median_ci(values)
    assert ci.low <= ci.median <= ci.high
    assert min(values) <= ci.low and ci.high <= max(values)
    if len(values) >= 6:
        assert ci.coverage >= 0.95


def test_a_workload_can_be_run_on_wrong_forecasts(tmp_path: Path) -> None:
    """A workload's ``forecast_error`` is what ``simulate --forecast-error`` does; its runs have
    keys of their own (the same jobs with perfect forecasts are not reused for it)."""
    text = SWEEP.replace(
        "  small: {jobs: 30, days: 0.5}\n",
        "  small: {jobs: 30, days: 0.5}\n  small-fc: {jobs: 30, days: 0.5, forecast_error: high}\n",
    ).replace("  dear: {tariff_scale: 2.0}\n", "")
    sweep = load_sweep(write(tmp_path, text))
    runs = {(r.workload, r.policy, r.seed): r for r in grid(sweep)}
    assert len({r.key for r in runs.values()}) == len(runs) == 8
    r = runs[("small-fc", "suanwang", 1)]
    got = execute(sweep.edited["base"], r)["metrics"]
    doc = simulate_json(
        "--scenario", str(TINY), "--jobs", "30", "--days", "0.5", "--drain-days", "1",
        "--seed", "1", "--policy", "suanwang", "--no-bound", "--start", "2025-07-01",
        "--forecast-error", "high",
    )  # fmt: skip
    assert doc["forecast_error"] == "high"
    assert without_timings(got) == without_timings({**doc["policies"]["suanwang"], "jobs": 30})


BAD = [
    ("colour: red\nworkloads: {w: {}}\npolicies: [all]\nseeds: 1\n", "sweep.yaml:1: colour: "
     "unknown key (known: scenario, start, drain_days, bound, bound_time_limit_s, edits, "
     "workloads"),
    ("workloads: {}\npolicies: [all]\nseeds: 1\n", "sweep.yaml:1: workloads: "),
    ("workloads:\n  w: {jobs: 10, dayz: 1}\npolicies: [all]\nseeds: 1\n",
     "sweep.yaml:2: workloads.w.dayz: unknown key (known: trace, format, jobs, days"),
    ("workloads:\n  w: {jobs: '10'}\npolicies: [all]\nseeds: 1\n",
     "sweep.yaml:2: workloads.w.jobs: Input should be a valid integer"),
    ("workloads:\n  w: {load: 1.5}\npolicies: [all]\nseeds: 1\n",
     "sweep.yaml:2: workloads.w.load: Input should be less than or equal to 1"),
    ("workloads:\n  w: {days: .nan}\npolicies: [all]\nseeds: 1\n", "sweep.yaml:2: workloads.w"
     ".days: Input should be a finite number"),
    ("workloads: {w: {}}\npolicies: [fastest]\nseeds: 1\n",
     "sweep.yaml:2: policies: unknown policy 'fastest'"),
    ("workloads: {w: {}}\npolicies: []\nseeds: 1\n", "sweep.yaml:2: policies: List should"),
    ("workloads: {w: {}}\npolicies: [all]\nseeds: 0\n",
     "sweep.yaml:3: seeds: a count of seeds or a list of seeds: 0 is not within 1"),
    ("workloads: {w: {}}\npolicies: [all]\nseeds: [1, 2, 1]\n",
     "sweep.yaml:3: seeds: a seed is listed twice"),
    ("workloads: {w: {}}\npolicies: [all]\nseeds: [1, x]\n",
     "sweep.yaml:3: seeds: seed [1]: 'x' is not a whole number"),
    ("workloads: {w: {}}\npolicies: [all]\nseeds: 1\nstart: yesterday\n",
     "sweep.yaml:4: start: 'yesterday' is not an ISO date"),
    ("workloads: {w: {}}\npolicies: [all]\nseeds: 1\nedits:\n  x:\n    centers: {nowhere: {}}\n",
     "sweep.yaml:6: edits.x.centers.nowhere: no center 'nowhere' in scenario tiny"),
    ("workloads: {w: {}}\npolicies: [all]\nseeds: 1\nedits:\n  x: {centers: {coast-ai: {pue: 9}}}"
     "\n",
     "sweep.yaml:5: edits.x.centers.coast-ai.pue: Input should be less than or equal to 3"),
    ("workloads: {w: {}}\npolicies: [all]\nseeds: 1\nedits:\n  x: {tarif_scale: 2}\n",
     "sweep.yaml:5: edits.x.tarif_scale: unknown key (known: capacity_scale, tariff_scale"),
    ("workloads:\n  w: {trace: nowhere.csv}\npolicies: [all]\nseeds: 1\n",
     "sweep.yaml:2: workloads.w.trace: no such file"),
    ("workloads:\n  w: {format: philly}\npolicies: [all]\nseeds: 1\n",
     "sweep.yaml:2: workloads.w: format is a trace's: give trace: FILE as well"),
    ("workloads:\n  w: {trace: t.csv, days: 2}\npolicies: [all]\nseeds: 1\n",
     "sweep.yaml:2: workloads.w: a trace workload has no days (synthetic only)"),
    ("workloads: {w: {}}\npolicies: [all]\nseeds: 1\nseeds: 2\n",
     "sweep.yaml:4: seeds: given twice (also on line 3)"),
    ("workloads: {w: {}}\npolicies: [all]\nseeds: 100000\n",
     "sweep.yaml:3: seeds: the grid has 500,000 runs (at most 100,000)"),
    ("workloads:\n  w: {forecast_error: perfect}\npolicies: [all]\nseeds: 1\n",
     "sweep.yaml:2: workloads.w.forecast_error: unknown forecast error level 'perfect' (choose"),
    ("- a\n- b\n", "sweep.yaml:1: top level must be a mapping"),
    ("workloads: {w: {}\n", "sweep.yaml:2: not valid YAML"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "needle"), BAD)
def test_bad_sweep_files_are_refused_with_file_line_and_field(
    tmp_path: Path, text: str, needle: str
) -> None:
    (tmp_path / "t.csv").write_text("x\n")
    mapping = not text.startswith("- ") and "{w: {}\n" not in text  # else the file is broken
    with pytest.raises(SweepError) as exc:
        parse_sweep_text(text + f"scenario: {TINY}\n" * mapping, tmp_path / "sweep.yaml")
    found = [str(p) for p in exc.value.problems]
    assert any(needle in f for f in found), found


def test_ray_settings_are_set_for_the_runtime_and_taken_back_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sweep sets the Ray variables the environment lacks while its runtime lives and takes
    them back after (every later child process of a library caller would inherit them); one
    the user set stays as the user set it."""
    first, *rest = RAY_ENV
    for k in RAY_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv(first, "users-own")
    added = set_ray_env()
    assert added == rest
    assert os.environ[first] == "users-own"
    assert all(os.environ[k] == RAY_ENV[k] for k in rest)
    unset_env(added)
    assert os.environ[first] == "users-own"
    assert not any(k in os.environ for k in rest)


def test_a_tight_bound_sweep_gives_simulate_tight_bound(tmp_path: Path) -> None:
    """``bound: tight``: each bound run is ``simulate --tight-bound``'s non-preemptive bound (the
    same number), has a key of its own (a relaxed bound's result is not reused for it), never
    costs more than a policy, and a tight bound HiGHS cannot solve in time is a failed run
    (no relaxed bound in its place); the summary names the kind."""
    text = SWEEP.replace("  dear: {tariff_scale: 2.0}\n", "").replace("seeds: [0, 1]", "seeds: [1]")
    relaxed = {r.policy: r for r in grid(load_sweep(write(tmp_path, text + "bound: true\n")))}
    sweep = load_sweep(write(tmp_path, text + "bound: tight\n"))
    runs = {r.policy: r for r in grid(sweep)}
    assert runs[BOUND].tight and not relaxed[BOUND].tight
    assert runs[BOUND].key != relaxed[BOUND].key
    assert runs["suanwang"].key == relaxed["suanwang"].key  # policies' runs are shared
    outcome = run_sweep(list(runs.values()), sweep.edited, tmp_path / "out", serial=True)
    assert not outcome.failed
    got = {r["policy"]: r["metrics"] for r in outcome.results}
    doc = simulate_json(
        "--scenario", str(TINY), "--jobs", "30", "--days", "0.5", "--drain-days", "1",
        "--seed", "1", "--policy", "nearest", "--start", "2025-07-01", "--tight-bound",
    )  # fmt: skip
    assert doc["bound"]["kind"] == got[BOUND]["kind"] == "non-preemptive"
    assert got[BOUND]["cost_cny"] == doc["bound"]["cost_cny"]
    assert got[BOUND]["cost_cny"] >= doc["bound_relaxed"]["cost_cny"]
    assert got[BOUND]["cost_cny"] <= min(got["nearest"]["cost_cny"], got["suanwang"]["cost_cny"])
    df = table(outcome.results)
    assert df[df["policy"] == BOUND]["kind"].tolist() == ["non-preemptive"]
    html = summary_html(df, title="t", meta=[], edit_notes={})
    assert "cost / bound (non-preemptive)" in html
    # a limit HiGHS cannot meet: the run fails and says why, the policies' runs do not
    hurried = load_sweep(write(tmp_path, text + "bound: tight\nbound_time_limit_s: 1.0e-9\n"))
    r = next(r for r in grid(hurried) if r.policy == BOUND)
    failed = execute(hurried.edited["base"], r)
    assert failed["status"] == "failed"
    assert failed["error"].startswith("RuntimeError: tight bound not computed: ")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("bound: exact\n", "sweep.yaml:11: bound: must be true, false or tight, not 'exact'$"),
        ("bound: 1\n", "sweep.yaml:11: bound: must be true, false or tight, not 1$"),
        ("bound: tight\nbound_time_limit_s: 0\n", "sweep.yaml:12: bound_time_limit_s: "),
        ("bound: tight\nbound_time_limit_s: '60'\n", "sweep.yaml:12: bound_time_limit_s: "),
    ],
)
def test_a_bad_bound_is_refused_with_its_line(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(SweepError, match=message):
        load_sweep(write(tmp_path, SWEEP + line))
