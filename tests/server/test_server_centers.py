"""``/v1/centers`` and ``/v1/network``: capacity from the scenario, use from the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from suanwang.core.lifecycle import JobState
from suanwang.core.scenario import Scenario
from suanwang.server.database.models import JobRow
from suanwang.server.models.jobs import transition
from suanwang.server.signals import SignalCache


def _place(sessions: Any, job_id: str, center: str, model: str | None, *states: JobState) -> None:
    with sessions() as s:
        row = s.get(JobRow, job_id)
        for to in states:
            upd = {"center_id": center, "pool_model": model} if to is JobState.SCHEDULED else {}
            transition(session=s, job=row, to=to, updates=upd)
        s.commit()


def test_centers_show_scenario_capacity_and_current_signals(
    client: Any, alice: Any, app: Any
) -> None:
    scenario: Scenario = app.state.scenario
    r = client.get("/v1/centers", headers=alice.headers)
    assert r.status_code == 200
    doc = r.json()
    assert doc["scenario"] == "china"
    centers = doc["centers"]
    assert [c["id"] for c in centers] == [c.id for c in scenario.centers]
    signals = app.state.signals.current()
    assert signals.start == datetime(2025, 7, 1, 6, tzinfo=UTC)  # the test clock, floored
    for i, (c, sc) in enumerate(zip(centers, scenario.centers, strict=True)):
        assert (c["name"], c["province"], c["hub"], c["pue"]) == (
            sc.name, sc.province, sc.hub, sc.pue,
        )  # fmt: skip
        assert c["capacity"] == {"cards": dict(sc.inventory), "cpu_cores": sc.cpu_cores}
        assert c["used"] == {"cards": {}, "cpu_cores": 0}
        assert c["utilization"]["cards"] == 0.0 and c["utilization"]["cpu"] == 0.0
        sig = c["signals"]
        assert datetime.fromisoformat(sig["hour"]) == signals.start
        green = float(signals.green_fraction[i, 0])
        assert sig["price_cny_per_kwh"] == pytest.approx(float(signals.price_cny_per_kwh[i, 0]))
        assert sig["green_fraction"] == pytest.approx(green)
        assert sig["carbon_g_per_kwh"] == pytest.approx(
            (1 - green) * float(signals.carbon_g_per_kwh[i, 0])
        )
        assert sig["price_cny_per_kwh"] > 0 and 0 <= green <= 1


def test_used_counts_scheduled_and_running_jobs_only(
    client: Any, alice: Any, submit: Any, sessions: Any
) -> None:
    gpu = [submit(alice, name=f"g{i}")["id"] for i in range(4)]  # 8 cards each
    cpu = submit(alice, resources={"cpus": 64}, name="c")["id"]
    _place(sessions, gpu[0], "zhangjiakou", "a100", JobState.SCHEDULED)
    _place(sessions, gpu[1], "zhangjiakou", "a100", JobState.SCHEDULED, JobState.RUNNING)
    _place(sessions, gpu[2], "zhangjiakou", "h800", JobState.SCHEDULED, JobState.SUCCEEDED)
    _place(sessions, cpu, "zhangjiakou", "cpu-node", JobState.SCHEDULED, JobState.RUNNING)
    # gpu[3] stays pending: not counted
    centers = {
        c["id"]: c for c in client.get("/v1/centers", headers=alice.headers).json()["centers"]
    }
    z = centers["zhangjiakou"]
    assert z["used"] == {"cards": {"a100": 16}, "cpu_cores": 64}
    cap = z["capacity"]
    assert z["utilization"]["by_model"]["a100"] == pytest.approx(16 / cap["cards"]["a100"])
    assert z["utilization"]["by_model"]["h800"] == 0.0
    assert z["utilization"]["cards"] == pytest.approx(16 / sum(cap["cards"].values()))
    assert z["utilization"]["cpu"] == pytest.approx(64 / cap["cpu_cores"])
    assert all(c["used"]["cpu_cores"] == 0 for cid, c in centers.items() if cid != "zhangjiakou")

    net = client.get("/v1/network", headers=alice.headers).json()
    assert net["national"]["used"] == {"cards": {"a100": 16}, "cpu_cores": 64}
    hub = next(h for h in net["hubs"] if h["id"] == "jingjinji")
    assert hub["used"] == net["national"]["used"]


def test_network_hubs_add_up_to_the_national_total(client: Any, alice: Any, app: Any) -> None:
    scenario: Scenario = app.state.scenario
    r = client.get("/v1/network", headers=alice.headers)
    assert r.status_code == 200
    doc = r.json()
    national = doc["national"]
    assert national["centers"] == len(scenario.centers)
    assert national["capacity"]["cpu_cores"] == sum(c.cpu_cores for c in scenario.centers)
    hubs = doc["hubs"]
    assert [h["id"] for h in hubs if h["id"] is not None] == [h.id for h in scenario.hubs]
    assert sum(h["centers"] for h in hubs) == national["centers"]
    assert sum(h["capacity"]["cpu_cores"] for h in hubs) == national["capacity"]["cpu_cores"]
    for model, n in national["capacity"]["cards"].items():
        assert sum(h["capacity"]["cards"].get(model, 0) for h in hubs) == n
    assert national["utilization"] == {
        "cards": 0.0, "by_model": dict.fromkeys(national["capacity"]["cards"], 0.0), "cpu": 0.0,
    }  # fmt: skip


def test_signal_cache_rebuilds_once_per_hour(tiny: Scenario) -> None:
    now = [datetime(2025, 7, 1, 6, 5, tzinfo=UTC)]
    cache = SignalCache(tiny, seed=0, hours=4, clock=lambda: now[0])
    first = cache.current()
    assert first.start == datetime(2025, 7, 1, 6, tzinfo=UTC) and first.hours == 4
    now[0] += timedelta(minutes=50)
    assert cache.current() is first
    now[0] += timedelta(minutes=10)
    second = cache.current()
    assert second is not first and second.start == datetime(2025, 7, 1, 7, tzinfo=UTC)
