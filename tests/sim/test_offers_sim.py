"""The simulator with providers' offers: placements follow cheaper offers and the report shows
what consumers paid at offer prices against posted prices."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from typer.testing import CliRunner

from suanwang.billing.market import load_offers
from suanwang.cli import app
from suanwang.core.network import Network
from suanwang.scenarios.loader import load_scenario
from suanwang.sim.run import make_workload, run

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "offers.yaml"
runner = CliRunner()


def test_offers_draw_placements_and_consumers_pay_less() -> None:
    sc = load_scenario("china")
    net = Network(sc)
    start = datetime(2025, 7, 1, tzinfo=ZoneInfo(sc.timezone))
    workload = make_workload(net, trace="synthetic", fmt="suanwang", jobs=1500, days=1.0, seed=3,
                             start=start, load=None)  # fmt: skip
    book = load_offers(EXAMPLE, net)
    kw = {"start": start, "policies": ["suanwang", "nearest"], "seed": 3, "drain_days": 3.0,
          "with_bound": False}  # fmt: skip
    plain = run(sc, workload, **kw)  # type: ignore[arg-type]
    offered = run(sc, workload, offers=book, **kw)  # type: ignore[arg-type]
    assert "paid_offer_cny" not in plain.reports[0].metrics and "offers" not in plain.to_json()
    assert offered.to_json()["offers"] == 3
    sw, near = offered.reports[0].metrics, offered.reports[1].metrics
    assert sw["paid_offer_cny"] < sw["paid_posted_cny"]
    assert sw["jobs_under_offers"] > 5 * max(near["jobs_under_offers"], 1)
    # the Zhongwei A100 pool (idle capacity at 3.20 CNY per SCU) gets more of the work
    pool = next(p for p in range(net.n_pools) if net.pool_model[p] == "a100"
                and net.center_ids[int(net.pool_center[p])] == "zhongwei")  # fmt: skip
    busy = [r.reports[0].hourly_busy_units[pool].sum() for r in (plain, offered)]
    assert busy[1] > 1.5 * busy[0]
    # same workload, same rules: every job accounted for either way
    for r in (plain, offered):
        m = r.reports[0].metrics
        assert m["completed"] + m["rejected"] + m["expired"] + m["unfinished"] == len(workload.jobs)
    assert not np.isnan(sw["paid_offer_cny"])


def test_simulate_with_an_offers_file_from_the_command_line(tmp_path: Path) -> None:
    r = runner.invoke(app, ["simulate", "--offers", str(EXAMPLE), "--jobs", "400", "--days",
                            "0.5", "--drain-days", "2", "--policy", "suanwang", "--no-bound",
                            "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    m = doc["policies"]["suanwang"]
    assert doc["offers"] == 3 and m["paid_offer_cny"] <= m["paid_posted_cny"]
    table = runner.invoke(app, ["simulate", "--offers", str(EXAMPLE), "--jobs", "200", "--days",
                                "0.5", "--drain-days", "1", "--policy", "suanwang",
                                "--no-bound", "--out", str(tmp_path / "rep")])  # fmt: skip
    assert table.exit_code == 0 and "paid by consumers" in table.stdout
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Paid by consumers" in html and "at offer prices (CNY)" in html
    bad = tmp_path / "offers.yaml"
    bad.write_text(
        "offers:\n"
        "  - {center: zhongwei, model: a100, units: 8, price_cny_per_scu: '1.23456',\n"
        "     start: '2025-07-01T00:00+08:00', end: '2025-07-02T00:00+08:00'}\n"
        "  - {center: atlantis, model: a100, units: 8, price_cny_per_scu: '3',\n"
        "     start: '2025-07-01T00:00+08:00', end: '2025-07-02T00:00+08:00'}\n"
    )
    r = runner.invoke(app, ["simulate", "--offers", str(bad), "--jobs", "10", "--no-bound"])
    assert r.exit_code == 2
    assert f"{bad}: offers[0].price_cny_per_scu: " in r.stderr
    assert f"{bad}: offers[1].center: " in r.stderr
    assert "Traceback" not in r.output
