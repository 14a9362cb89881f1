"""`suanwang simulate` end to end: JSON, reproducibility, traces, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from suanwang.sim.metrics import METRIC_KEYS

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_simulate_json_is_one_document_with_every_metric(invoke: Any, tmp_path: Path) -> None:
    code, out, _ = invoke(
        "simulate", "--jobs", "300", "--days", "0.5", "--policy", "all", "--json",
        "--drain-days", "4", "--out", str(tmp_path / "rep"), "--tight-bound",
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    assert doc["scenario"] == "china" and doc["jobs"] == 300
    assert set(doc["policies"]) == {"nearest", "first-fit", "cheapest", "greenest", "suanwang"}
    for m in doc["policies"].values():
        assert set(METRIC_KEYS) <= set(m)
        assert m["completed"] + m["rejected"] + m["expired"] + m["unfinished"] == 300
        assert m["latency_violations"] == 0
    assert set(doc["bound"]) >= {"cost_cny", "energy_kwh", "carbon_t"}
    assert doc["bound"]["kind"] in {"non-preemptive", "relaxed"} and "bound_tight_error" not in doc
    assert doc["bound"]["cost_cny"] >= doc["bound_relaxed"]["cost_cny"]
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


def test_simulate_is_reproducible_with_a_seed(invoke: Any) -> None:
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
        (("--fifo",), "--fifo compares with --tenants"),
        (("--synthetic-tenants", "-1"), "--synthetic-tenants must be >= 0"),
        (("--tenants", "/nonexistent/tenants.yaml"), "--tenants '/nonexistent/tenants.yaml'"),
        (("--forecast-error", "perfect"), "--forecast-error 'perfect' is not one of none, low"),
    ],
)
def test_bad_input_is_a_clear_error_not_a_traceback(
    invoke: Any, args: tuple[str, ...], needle: str
) -> None:
    code, _, err = invoke("simulate", "--jobs", "10", "--no-bound", *args)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err


def test_forecast_error_changes_what_suanwang_plans_on_not_what_nearest_pays(invoke: Any) -> None:
    docs = {}
    for level in ("none", "realistic"):
        code, out, _ = invoke(
            "simulate", "--jobs", "200", "--days", "0.5", "--drain-days", "1", "--no-bound",
            "--policy", "nearest", "--policy", "suanwang", "--json", "--forecast-error", level,
        )  # fmt: skip
        assert code == 0
        docs[level] = json.loads(out)
    assert docs["realistic"]["forecast_error"] == "realistic"
    assert "forecast_error" not in docs["none"]
    p0, p1 = docs["none"]["policies"], docs["realistic"]["policies"]
    assert p0["nearest"]["cost_cny"] == p1["nearest"]["cost_cny"]
    assert p0["suanwang"]["cost_cny"] != p1["suanwang"]["cost_cny"]
    assert p1["suanwang"]["latency_violations"] == 0


def test_bad_trace_names_line_and_field(invoke: Any) -> None:
    code, _, err = invoke(
        "simulate", "--trace", str(FIXTURES / "traces" / "suanwang_bad.csv"), "--no-bound"
    )
    assert code == 2
    assert "suanwang_bad.csv:" in err


def test_philly_trace_runs_and_reports_skipped_rows(invoke: Any) -> None:
    code, out, err = invoke(
        "simulate", "--trace", str(FIXTURES / "traces" / "philly_valid.csv"), "--format", "philly",
        "--policy", "nearest", "--json", "--no-bound", "--drain-days", "3",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    m = doc["policies"]["nearest"]
    assert m["completed"] + m["rejected"] + m["expired"] + m["unfinished"] == doc["jobs"] > 0
    assert doc["workload"]["rows"] >= doc["jobs"]


def test_bad_tenants_file_names_line_and_field(invoke: Any, tmp_path: Path) -> None:
    bad = tmp_path / "tenants.yaml"
    bad.write_text(
        "cohorts:\n  - name: uni\n    tenants:\n      - name: lab\n        quota_scu_per_h: -5\n"
    )
    code, _, err = invoke("simulate", "--jobs", "10", "--no-bound", "--tenants", str(bad))
    assert code == 2
    assert f"{bad}:5: cohorts[0].tenants[0].quota_scu_per_h" in err
    assert "Traceback" not in err


def test_tenants_json_reports_sharing_per_policy_and_its_fifo(invoke: Any, tmp_path: Path) -> None:
    code, out, err = invoke(
        "simulate", "--jobs", "300", "--days", "0.5", "--policy", "suanwang", "--json",
        "--no-bound", "--drain-days", "2", "--synthetic-tenants", "4", "--tenants", "equal",
        "--fifo", "--out", str(tmp_path / "rep"),
    )  # fmt: skip
    assert code == 0, err
    written = {p.name for p in (tmp_path / "rep").iterdir()}
    assert {"jobs-suanwang.csv", "jobs-suanwang-fifo.csv", "report.html"} <= written
    doc = json.loads(out)
    assert set(doc["policies"]) == {"suanwang", "suanwang/fifo"}
    for m in doc["policies"].values():
        assert m["completed"] + m["rejected"] + m["expired"] + m["unfinished"] == 300
        assert set(m["tenants"]) == {"t01", "t02", "t03", "t04"}
        assert {"jain_index", "min_entitled_fraction"} <= set(m["fairness"])
        assert set(m["classes"]) == {"urgent", "normal", "batch", "preemptible"}
        shares = sum(t["share_of_usage"] for t in m["tenants"].values())
        assert abs(shares - 1.0) < 1e-9
    assert doc["policies"]["suanwang/fifo"]["preemptions"] == 0
    page = (tmp_path / "rep" / "report.html").read_text()
    asks = doc["policies"]["suanwang"]["fairness"]["asks"]
    assert "Asks met within a round" in page and f" of {asks:,}" in page
    # the text table shows the same measure
    code, out, err = invoke(
        "simulate", "--jobs", "300", "--days", "0.5", "--policy", "suanwang", "--no-bound",
        "--drain-days", "2", "--synthetic-tenants", "4", "--tenants", "equal",
    )  # fmt: skip
    assert code == 0, err
    assert "asks met in a" in out and f" of {asks:,}" in out


def test_a_tenants_file_shares_synthetic_jobs_among_its_tenants(invoke: Any) -> None:
    example = Path(__file__).parents[2] / "docs" / "examples" / "tenants.yaml"
    code, out, err = invoke(
        "simulate", "--jobs", "200", "--days", "0.5", "--policy", "nearest", "--json",
        "--no-bound", "--drain-days", "1", "--tenants", str(example),
    )  # fmt: skip
    assert code == 0, err
    m = json.loads(out)["policies"]["nearest"]
    named = {"nlp-lab", "vision-lab", "hpc-group", "acme-training", "acme-serving"}
    assert set(m["tenants"]) == named
    assert sum(t["share_of_usage"] for t in m["tenants"].values()) > 0.999


def test_simulate_table_names_each_bound_by_its_kind(invoke: Any) -> None:
    """The terminal table has a row per bound computed, named by its kind (as in the JSON)."""
    args = ("simulate", "--jobs", "60", "--days", "0.5", "--policy", "nearest",
            "--drain-days", "3", "--scenario", str(FIXTURES / "scenarios" / "tiny"))  # fmt: skip
    code, out, _ = invoke(*args, "--tight-bound")
    assert code == 0
    assert "non-preemptive bound" in out and "relaxed bound" in out
    code, out, _ = invoke(*args)
    assert code == 0
    assert "relaxed bound" in out and "non-preemptive" not in out
