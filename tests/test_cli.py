"""The command line, end to end: simulate, scenario export / validate / show, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanwang.cli import app
from suanwang.sim.metrics import METRIC_KEYS

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_simulate_json_is_one_document_with_every_metric(tmp_path: Path) -> None:
    code, out, _ = invoke(
        "simulate", "--jobs", "300", "--days", "0.5", "--policy", "all", "--json",
        "--drain-days", "4", "--out", str(tmp_path / "rep"),
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    assert doc["scenario"] == "china" and doc["jobs"] == 300
    assert set(doc["policies"]) == {"nearest", "first-fit", "cheapest", "greenest", "suanwang"}
    for m in doc["policies"].values():
        assert set(METRIC_KEYS) <= set(m)
        assert m["completed"] + m["rejected"] + m["unfinished"] == 300
        assert m["latency_violations"] == 0
    assert set(doc["bound"]) >= {"cost_cny", "energy_kwh", "carbon_t"}
    for m in doc["policies"].values():
        if m["unfinished"] == 0:
            assert doc["bound"]["cost_cny"] <= m["cost_cny"] * (1 + 1e-6)
    html = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "<title>" in html and "suanwang" in html
    assert json.loads((tmp_path / "rep" / "results.json").read_text())["jobs"] == 300


def test_simulate_json_stdout_is_only_the_document_in_a_real_process() -> None:
    """The solver writes to the process's stdout below Python (CliRunner would not see it), so
    run the installed command: with the bound on, stdout is one JSON document and nothing else."""
    exe = Path(sys.executable).with_name("suanwang")
    proc = subprocess.run(
        [str(exe), "simulate", "--scenario", str(FIXTURES / "scenarios" / "tiny"),
         "--jobs", "30", "--days", "0.5", "--drain-days", "1", "--policy", "suanwang", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # nothing before or after the document
    assert doc["jobs"] == 30 and doc["bound"]["cost_cny"] > 0
    assert "HiGHS" not in proc.stdout + proc.stderr


def test_simulate_is_reproducible_with_a_seed() -> None:
    args = ("simulate", "--jobs", "200", "--days", "0.5", "--policy", "suanwang", "--json",
            "--no-bound", "--seed", "5", "--drain-days", "3")  # fmt: skip
    a = json.loads(invoke(*args)[1])
    b = json.loads(invoke(*args)[1])
    for doc in (a, b):
        doc.pop("seconds")
        for m in doc["policies"].values():
            m.pop("decisions_per_s")
    assert a == b
    assert a["bound"] is None


def test_export_validate_and_simulate_on_the_exported_directory(tmp_path: Path) -> None:
    d = tmp_path / "net"
    code, out, _ = invoke("scenario", "export", "china", str(d), "--days", "1", "--seed", "3")
    assert code == 0, out
    assert (d / "scenario.yaml").is_file()
    csvs = sorted((d / "signals").glob("*.csv"))
    assert len(csvs) >= 25
    assert csvs[0].read_text().splitlines()[0] == (
        "time,price_cny_per_kwh,carbon_g_per_kwh,green_fraction"
    )
    code, out, err = invoke("scenario", "validate", str(d))
    assert code == 0, err
    assert "valid" in out
    code, out, err = invoke(
        "simulate", "--scenario", str(d), "--jobs", "100", "--days", "0.25", "--json",
        "--no-bound", "--policy", "nearest", "--drain-days", "2",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["jobs"] == 100


def test_validate_lists_every_problem_with_file_line_field(tmp_path: Path) -> None:
    src = (FIXTURES / "scenarios" / "tiny" / "scenario.yaml").read_text(encoding="utf-8")
    d = tmp_path / "bad"
    d.mkdir()
    (d / "scenario.yaml").write_text(src.replace("pue: ", "pue: -", 1), encoding="utf-8")
    (d / "signals").mkdir()
    (d / "signals" / "nowhere.csv").write_text(
        "time,price_cny_per_kwh,carbon_g_per_kwh,green_fraction\n"
    )
    code, _, err = invoke("scenario", "validate", str(d))
    assert code == 1
    assert "scenario.yaml:" in err and ".pue" in err
    assert "nowhere.csv" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--scenario", "/nonexistent/dir"), "neither a built-in"),
        (("--policy", "fastest"), "unknown policy 'fastest'"),
        (("--format", "csv"), "--format 'csv'"),
        (("--days", "0"), "--days must be > 0"),
        (("--load", "1.5"), "--load"),
        (("--start", "yesterday"), "--start 'yesterday'"),
        (("--trace", str(FIXTURES / "traces" / "suanwang_bad.csv")), "problem(s)"),
    ],
)
def test_bad_input_is_a_clear_error_not_a_traceback(args: tuple[str, ...], needle: str) -> None:
    code, _, err = invoke("simulate", "--jobs", "10", "--no-bound", *args)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err


def test_bad_trace_names_line_and_field() -> None:
    code, _, err = invoke(
        "simulate", "--trace", str(FIXTURES / "traces" / "suanwang_bad.csv"), "--no-bound"
    )
    assert code == 2
    assert "suanwang_bad.csv:" in err


def test_philly_trace_runs_and_reports_skipped_rows() -> None:
    code, out, err = invoke(
        "simulate", "--trace", str(FIXTURES / "traces" / "philly_valid.csv"), "--format", "philly",
        "--policy", "nearest", "--json", "--no-bound", "--drain-days", "3",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    m = doc["policies"]["nearest"]
    assert m["completed"] + m["rejected"] + m["unfinished"] == doc["jobs"] > 0
    assert doc["workload"]["rows"] >= doc["jobs"]


def test_scenario_show_lists_centers() -> None:
    from suanwang.scenarios.loader import load_scenario

    code, out, _ = invoke("scenario", "show", "china")
    assert code == 0
    assert "zhongwei" in out and f"{load_scenario('china').total_cards:,}" in out


def test_submit_checks_the_job_file_before_anything_is_sent(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: finetune\ncommand: 'python ft.py'\nresources:\n  count: four\n"
        "duration_s: 7200\norigin: shanghai\nkindd: finetune\n",
        encoding="utf-8",
    )
    # no server and no key: the file's problems come first, each with its line
    result = runner.invoke(app, ["submit", str(job)], env={"SUANWANG_API_KEY": ""})
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{job}:4: resources.count: Input should be a valid integer, unable to parse string as "
        "an integer (got 'four')",
        f"{job}:7: kindd: unknown field (did you mean 'kind'?)",
        f"error: {job} has 2 problem(s); nothing submitted",
    ]
    missing = runner.invoke(app, ["submit", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00name")
    r = runner.invoke(app, ["submit", str(binary)])
    assert r.exit_code == 2 and "not UTF-8 text" in r.stderr and "Traceback" not in r.output
