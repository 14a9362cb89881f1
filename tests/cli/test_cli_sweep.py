"""`suanwang sweep` end to end: on a local Ray runtime it starts itself, resumed, a failed
run reported with its parameters, bad files refused with file:line: field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

FIXTURES = Path(__file__).parent.parent / "fixtures"
TINY = FIXTURES / "scenarios" / "tiny"

SWEEP = f"""\
scenario: {TINY}
drain_days: 1
workloads:
  small: {{jobs: 20, days: 0.5}}
policies: [nearest, suanwang]
seeds: 1
"""


def test_sweep_runs_on_ray_then_resumes(invoke: Any, tmp_path: Path) -> None:
    file = tmp_path / "grid.yaml"
    file.write_text(SWEEP)
    code, out, err = invoke("sweep", str(file), "--num-cpus", "2")
    assert code == 0, err
    assert "2 runs: 0 finished before, 2 to run" in err
    results = tmp_path / "grid-results"
    assert f"summary: {results / 'summary.html'}" in out
    df = pd.read_parquet(results / "results.parquet")
    assert df["policy"].tolist() == ["nearest", "suanwang"] and set(df["status"]) == {"ok"}
    assert (df["jobs"] == 20).all()
    html = (results / "summary.html").read_text()
    assert "Medians over seeds" in html and "Failed runs (0)" in html
    code, out, _ = invoke("sweep", str(file), "--json")
    doc = json.loads(out)
    assert code == 0 and (doc["runs"], doc["reused"], doc["ran"], doc["failed"]) == (2, 2, 0, [])


def test_a_failed_run_is_reported_with_its_parameters(invoke: Any, tmp_path: Path) -> None:
    file = tmp_path / "grid.yaml"
    bad = FIXTURES / "traces" / "suanwang_bad.csv"
    file.write_text(SWEEP.replace("seeds: 1", f"seeds: 1\nworkloads:\n  broken: {{trace: {bad}}}"))
    code, _, err = invoke("sweep", str(file), "--serial")
    assert code == 2 and "grid.yaml:7: workloads: given twice (also on line 3)" in err
    file.write_text(SWEEP.replace("workloads:\n", f"workloads:\n  broken: {{trace: {bad}}}\n"))
    code, out, err = invoke("sweep", str(file), "--serial", "--out", str(tmp_path / "o"))
    assert code == 1
    assert "failed: edits=base workload=broken policy=nearest seed=0: TraceError: " in err
    assert "4 runs (0 finished before, 4 run now, 2 failed)" in out
    df = pd.read_csv(tmp_path / "o" / "results.csv")
    assert df.groupby("workload")["status"].agg(set).to_dict() == {
        "broken": {"failed"},
        "small": {"ok"},
    }


def test_bad_files_and_options_are_refused(invoke: Any, tmp_path: Path) -> None:
    file = tmp_path / "sweep.yaml"
    file.write_text(SWEEP.replace("seeds: 1", "seeds: []"))
    code, _, err = invoke("sweep", str(file))
    assert code == 2
    assert f"{file}:6: seeds: no seed: give a count (5) or a list ([0, 7, 42])" in err
    assert "has 1 problem(s)" in err
    code, _, err = invoke("sweep", str(tmp_path / "none.yaml"))
    assert code == 2 and "none.yaml: cannot read: No such file or directory" in err
    code, _, err = invoke("sweep", str(file), "--address", "auto", "--num-cpus", "2")
    assert code == 2 and "--address runs on that cluster" in err
    assert not (tmp_path / "sweep-results").exists()


def test_a_sweep_with_the_tight_bound(invoke: Any, tmp_path: Path) -> None:
    """``bound: tight`` through the command: the bound's run is the non-preemptive bound, the
    summary says which kind its ratios are over."""
    file = tmp_path / "grid.yaml"
    file.write_text(SWEEP + "bound: tight\n")
    code, _, err = invoke("sweep", str(file), "--serial")
    assert code == 0, err
    assert "3 runs: 0 finished before, 3 to run" in err
    results = tmp_path / "grid-results"
    df = pd.read_parquet(results / "results.parquet")
    assert df["policy"].tolist() == ["nearest", "suanwang", "bound"]
    assert df["kind"].tolist()[2] == "non-preemptive" and set(df["status"]) == {"ok"}
    html = (results / "summary.html").read_text()
    assert "1 edits × 1 workloads × 3 policies × 1 seeds" in html
    assert "bound: <b>non-preemptive</b>" in html and "cost / bound (non-preemptive)" in html
