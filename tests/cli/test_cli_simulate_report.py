"""`suanwang simulate --out DIR`: the report shows the bounds the run computed, each with its
kind and value, the same numbers as ``--json``, and compares costs against the tightest."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from suanwang.sim.report.text import sig

TINY = Path(__file__).parent.parent / "fixtures" / "scenarios" / "tiny"


def _bound_cells(page: str, label: str) -> list[str]:
    """The cells of the summary row of the bound ``label`` (its cost first)."""
    row = re.search(r'<tr class="bound"><td>' + re.escape(label) + r"</td>(.*?)</tr>", page)
    assert row is not None, label
    return re.findall(r"<td>(.*?)</td>", row.group(1))


def _simulate(invoke: Any, out: Path, *flags: str) -> tuple[dict[str, Any], str]:
    code, stdout, stderr = invoke(
        "simulate", "--scenario", str(TINY), "--jobs", "60", "--days", "0.5",
        "--drain-days", "3", "--policy", "suanwang", "--policy", "nearest", "--json",
        "--out", str(out), *flags,
    )  # fmt: skip
    assert code == 0, stderr
    return json.loads(stdout), (out / "report.html").read_text(encoding="utf-8")


def test_report_shows_both_bounds_with_their_kinds_and_values(invoke: Any, tmp_path: Path) -> None:
    doc, page = _simulate(invoke, tmp_path / "rep", "--tight-bound")
    tight, relaxed = doc["bound"], doc["bound_relaxed"]
    assert tight["kind"] == "non-preemptive" and relaxed["kind"] == "relaxed"
    assert tight["cost_cny"] > relaxed["cost_cny"] > 0
    for b in (tight, relaxed):
        cells = _bound_cells(page, f"{b['kind']} bound")
        assert cells[0] == sig(b["cost_cny"])
        assert cells[3] == sig(b["energy_kwh"])
        assert cells[5] == sig(b["carbon_t"])
        assert cells[6] == f"{sig(b['cost_cny'] / tight['cost_cny'])}×"
        for value in (b["cost_cny"], b["carbon_t"]):  # a labelled line in the chart
            assert f'"text":"{b["kind"]} bound {sig(value)}"' in page
    assert "<th>Cost / non-preemptive bound</th>" in page
    policy = doc["policies"]["suanwang"]["cost_cny"]
    assert f"<td>{sig(policy / tight['cost_cny'])}×</td>" in page
    assert "Cost / bound is against the non-preemptive bound, the higher of the two" in page


@pytest.mark.parametrize("flags", [(), ("--no-bound",)], ids=["relaxed", "none"])
def test_report_without_the_tight_bound(
    invoke: Any, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    doc, page = _simulate(invoke, tmp_path / "rep", *flags)
    assert "non-preemptive bound</td>" not in page
    assert '"text":"non-preemptive bound' not in page
    if flags:
        assert doc["bound"] is None
        assert "No offline bound was computed for this run." in page
        assert '<tr class="bound">' not in page
        return
    assert doc["bound"]["kind"] == "relaxed"
    cells = _bound_cells(page, "relaxed bound")
    assert cells[0] == sig(doc["bound"]["cost_cny"]) and cells[6] == "1.00×"
    assert "<th>Cost / relaxed bound</th>" in page
    assert "The tighter non-preemptive bound was not computed for this run" in page
