"""`suanwang scenario export | validate | show`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_export_validate_and_simulate_on_the_exported_directory(
    invoke: Any, tmp_path: Path
) -> None:
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


def test_validate_lists_every_problem_with_file_line_field(invoke: Any, tmp_path: Path) -> None:
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


def test_scenario_show_lists_centers(invoke: Any) -> None:
    from suanwang.scenarios.loader import load_scenario

    code, out, _ = invoke("scenario", "show", "china")
    assert code == 0
    assert "zhongwei" in out and f"{load_scenario('china').total_cards:,}" in out
