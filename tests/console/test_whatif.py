"""What-if runs (/v1/whatif): the simulator as a background task for operators."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from suanwang.core.network import Network
from suanwang.scenarios.loader import BUILTIN, load_scenario
from suanwang.server.app import create_app
from suanwang.server.database.models import TenantRole
from suanwang.server.models.tenants import create_tenant
from suanwang.server.services.whatif import Run, WhatIfRunner
from suanwang.server.services.whatif_input import (
    MAX_TRACE_CHARS,
    MAX_YAML_CHARS,
    ScenarioEdits,
    TraceFormat,
    WhatIfRequest,
    apply_edits,
)
from suanwang.server.settings import Settings
from suanwang.sim.traces import TRACE_FORMATS, TraceError, load_trace

Tenant = Callable[[TenantRole], Any]
PINNED = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
SMALL = {"jobs": 200, "days": 0.5, "drain_days": 1, "policies": ["nearest", "suanwang"]}


def _wait(api: Any, headers: dict[str, str], run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        run: dict[str, Any] = api.get(f"/v1/whatif/{run_id}", headers=headers).json()
        assert 0.0 <= run["progress"] <= 1.0
        if run["state"] != "running":
            return run
        time.sleep(0.2)
    raise AssertionError(f"what-if run {run_id} still running after 180 s")


def test_an_operator_runs_a_simulation_and_reads_the_report(api: Any, tenant: Tenant) -> None:
    op = tenant(TenantRole.OPERATOR)
    r = api.post("/v1/whatif", json=SMALL, headers=op.headers)
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "running" and r.json()["result"] is None
    run = _wait(api, op.headers, r.json()["id"])
    assert run["state"] == "done", run["error"]
    assert run["progress"] == 1.0
    doc = run["result"]
    assert doc["jobs"] == 200 and set(doc["policies"]) == {"nearest", "suanwang"}
    for metrics in doc["policies"].values():
        ends = ("completed", "rejected", "expired", "unfinished")
        assert sum(metrics[k] for k in ends) == 200
    # the same report as `suanwang simulate --json` is deterministic for a seed: run again
    again = _wait(
        api, op.headers, api.post("/v1/whatif", json=SMALL, headers=op.headers).json()["id"]
    )
    for name, metrics in doc["policies"].items():  # all but the measured speed
        del metrics["decisions_per_s"], again["result"]["policies"][name]["decisions_per_s"]
        assert again["result"]["policies"][name] == metrics
    listed = api.get("/v1/whatif", headers=op.headers).json()
    assert [x["id"] for x in listed][:2] == [again["id"], run["id"]]


def test_what_if_is_for_operators_and_checks_its_input(api: Any, tenant: Tenant) -> None:
    for role in (TenantRole.CONSUMER, TenantRole.PROVIDER):
        who = tenant(role)
        assert api.post("/v1/whatif", json=SMALL, headers=who.headers).status_code == 403
        assert api.get("/v1/whatif", headers=who.headers).status_code == 403
    op = tenant(TenantRole.OPERATOR)
    r = api.post("/v1/whatif", json={**SMALL, "policies": ["fastest"]}, headers=op.headers)
    assert r.status_code == 422 and "unknown policy 'fastest'" in r.text
    r = api.post("/v1/whatif", json={**SMALL, "jobs": 10**6}, headers=op.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "jobs"]
    assert api.get("/v1/whatif/nope", headers=op.headers).status_code == 404


def test_one_run_at_a_time(api: Any, api_app: FastAPI, tenant: Tenant) -> None:
    op = tenant(TenantRole.OPERATOR)
    runner = api_app.state.whatif = WhatIfRunner(api_app.state.signals.clock)
    busy = Run(id="busy-run", request=WhatIfRequest.model_validate(SMALL), created_at=PINNED)
    runner._runs[busy.id] = busy  # a run still going
    r = api.post("/v1/whatif", json=SMALL, headers=op.headers)
    assert r.status_code == 409 and "busy-run" in r.json()["detail"]
    busy.state = "done"
    assert api.post("/v1/whatif", json=SMALL, headers=op.headers).status_code == 202


def _checked_only(self: WhatIfRunner, scenario: Any, job: Run) -> None:
    job.state, job.progress, job.step = "done", 1.0, "done"  # input checked, nothing simulated


@pytest.fixture
def pinned_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    """An app whose clock reads :data:`PINNED` (and whose runs simulate nothing)."""
    monkeypatch.setattr(WhatIfRunner, "_simulate", _checked_only)
    app = create_app(Settings(db_url=f"sqlite:///{tmp_path / 'db.sqlite'}"), clock=lambda: PINNED)
    with TestClient(app):
        yield app


def test_a_run_is_dated_by_the_apps_clock(pinned_app: FastAPI) -> None:
    with pinned_app.state.sessions() as session:
        _, key = create_tenant(session=session, name="ops", role=TenantRole.OPERATOR, now=PINNED)
        session.commit()
    client = TestClient(pinned_app)
    headers = {"Authorization": f"Bearer {key}"}
    r = client.post("/v1/whatif", json=SMALL, headers=headers)
    assert r.status_code == 202, r.text
    assert datetime.fromisoformat(r.json()["created_at"]) == PINNED
    [listed] = client.get("/v1/whatif", headers=headers).json()
    assert datetime.fromisoformat(listed["created_at"]) == PINNED


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "traces"


@pytest.fixture(autouse=True)
def _idle(api_app: FastAPI) -> None:
    """No run of an earlier test still going (a second run would be a 409)."""
    runner = getattr(api_app.state, "whatif", None)
    deadline = time.monotonic() + 180
    while runner is not None and any(r.state == "running" for r in runner.all()):
        assert time.monotonic() < deadline, "a what-if run of an earlier test did not end"
        time.sleep(0.1)


def test_trace_formats_are_those_of_the_simulator() -> None:
    assert set(get_args(TraceFormat)) == set(TRACE_FORMATS)


def test_scenarios_to_choose_from_with_their_editable_parameters(api: Any, tenant: Tenant) -> None:
    op = tenant(TenantRole.OPERATOR)
    items = api.get("/v1/whatif/scenarios", headers=op.headers).json()["items"]
    assert [s["id"] for s in items] == ["served", *BUILTIN]
    china = items[1]
    assert china["name"] == "china" and len(china["centers"]) == 32
    for c in china["centers"]:
        assert c["cards"] == sum(c["inventory"].values())
        assert set(c["inventory"]) <= set(china["models"])
        assert 1 <= c["pue"] <= 3 and 0 <= c["green_ppa_share"] <= 1
    consumer = tenant(TenantRole.CONSUMER)
    assert api.get("/v1/whatif/scenarios", headers=consumer.headers).status_code == 403


@pytest.mark.parametrize(
    ("fixture", "fmt"),
    [("suanwang_valid.csv", "suanwang"), ("philly_valid.csv", "philly"),
     ("alibaba_valid.csv", "alibaba-gpu-2023")],
)  # fmt: skip
def test_an_uploaded_trace_is_simulated(api: Any, tenant: Tenant, fixture: str, fmt: str) -> None:
    op = tenant(TenantRole.OPERATOR)
    text = (FIXTURES / fixture).read_text()
    trace = {"format": fmt, "name": fixture, "text": text}
    body = {"policies": ["nearest", "cheapest"], "trace": trace, "drain_days": 1}
    r = api.post("/v1/whatif", json=body, headers=op.headers)
    assert r.status_code == 202, r.text
    assert r.json()["trace"] == {"name": fixture, "format": fmt, "chars": len(text)}
    assert r.json()["request"]["trace"] is None  # the text is not echoed
    run = _wait(api, op.headers, r.json()["id"])
    assert run["state"] == "done", run["error"]
    doc = run["result"]
    expected = load_trace(FIXTURES / fixture, fmt, Network(load_scenario("china")))
    assert doc["jobs"] == len(expected.jobs) > 0
    assert doc["workload"]["source"] == fixture
    assert doc["workload"]["rows"] == expected.rows
    assert doc["workload"]["skipped"] == expected.skipped
    for metrics in doc["policies"].values():
        ends = ("completed", "rejected", "expired", "unfinished")
        assert sum(metrics[k] for k in ends) == doc["jobs"]


def test_a_bad_trace_is_a_422_naming_each_line_and_field(api: Any, tenant: Tenant) -> None:
    op = tenant(TenantRole.OPERATOR)
    text = (FIXTURES / "suanwang_bad.csv").read_text()
    trace = {"format": "suanwang", "name": "mine.csv", "text": text}
    r = api.post("/v1/whatif", json={"trace": trace}, headers=op.headers)
    assert r.status_code == 422, r.text
    problems = r.json()["detail"]
    with pytest.raises(TraceError) as expected:
        load_trace(FIXTURES / "suanwang_bad.csv", "suanwang", Network(load_scenario("china")))
    assert [(p["line"], p["field"]) for p in problems] == [
        (p.line, p.field) for p in expected.value.problems
    ]
    for p in problems:
        assert p["loc"] == ["body", "trace", "text"] and p["type"] == "trace"
        assert p["msg"].startswith(f"mine.csv:{p['line']}: {p['field']}: ")
    assert "mine.csv:3: duration_s:" in r.text
    assert "mine.csv:5: origin:" in r.text and "atlantis" in r.text
    # a header of another format, an empty trace, a trace in the wrong format
    for text, needle in [
        ("timestamp,duration,num_gpus,gpu_time,cluster\n", "it looks like format 'philly'"),
        ("submit_time_s,duration_s\n", "no job to simulate"),
        ("a,b\n1,2\n", "has none of the columns"),
    ]:
        trace = {"format": "suanwang", "name": "t.csv", "text": text}
        r = api.post("/v1/whatif", json={"trace": trace}, headers=op.headers)
        assert r.status_code == 422 and needle in r.text, r.text
    # too large: over the server's request limit (64 KiB), or over the trace's, unread
    big = {"format": "suanwang", "text": "submit_time_s,duration_s\n" + "1,1\n" * 20_000}
    r = api.post("/v1/whatif", json={"trace": big}, headers=op.headers)
    assert r.status_code == 413 and "request body over 65536 bytes" in r.text
    big["text"] = big["text"][: MAX_TRACE_CHARS + 1]
    r = api.post("/v1/whatif", json={"trace": big}, headers=op.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "trace", "text"]
    assert "at most 48000 characters" in r.json()["detail"][0]["msg"]
    r = api.post("/v1/whatif", json={"trace": {**trace, "format": "slurm"}}, headers=op.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "trace", "format"]


def test_a_trace_is_cut_to_the_horizon_and_the_job_limit(api: Any, tenant: Tenant) -> None:
    op = tenant(TenantRole.OPERATOR)
    day = 86400
    rows = [f"{i * day // 2},600" for i in range(20)]  # a job every 12 h for 10 days
    trace = {"text": "submit_time_s,duration_s\n" + "\n".join(rows) + "\n"}
    body = {"trace": trace, "policies": ["nearest"], "drain_days": 0.5}
    run = _metrics(api, op.headers, body)
    assert run["result"]["jobs"] == 15  # days 0 .. 7 inclusive
    assert run["result"]["workload"]["skipped"] == {"arriving after day 7": 5}
    body["jobs"] = 10
    run = _metrics(api, op.headers, body)
    assert run["result"]["jobs"] == 10
    assert run["result"]["workload"]["skipped"] == {
        "arriving after day 7": 5,
        "beyond the first 10 jobs": 5,
    }


def _metrics(api: Any, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    r = api.post("/v1/whatif", json=body, headers=headers)
    assert r.status_code == 202, r.text
    run = _wait(api, headers, r.json()["id"])
    assert run["state"] == "done", run["error"]
    return run


def test_an_edited_scenario_changes_the_result(api: Any, tenant: Tenant) -> None:
    op = tenant(TenantRole.OPERATOR)
    small = {**SMALL, "policies": ["nearest"], "scenario": "china"}
    base = _metrics(api, op.headers, small)
    assert base["result"]["scenario"] == "china" and base["changes"] == []
    dearer = _metrics(api, op.headers, {**small, "edits": {"tariff_scale": 2}})
    assert dearer["result"]["scenario"] == "china (edited)"
    assert dearer["changes"] == ["grid tariffs × 2"]
    b, d = base["result"]["policies"]["nearest"], dearer["result"]["policies"]["nearest"]
    assert d["energy_cost_cny"] > 1.5 * b["energy_cost_cny"]
    assert d["energy_kwh"] == pytest.approx(b["energy_kwh"])  # the same work, dearer
    # every center's PUE up: more energy for the same jobs
    pue = {c.id: {"pue": 2.5} for c in load_scenario("china").centers}
    hot = _metrics(api, op.headers, {**small, "edits": {"centers": pue}})
    assert hot["result"]["policies"]["nearest"]["energy_kwh"] > 1.3 * b["energy_kwh"]
    assert len(hot["changes"]) == 32
    assert all(ch.endswith("→ 2.5") and ": PUE " in ch for ch in hot["changes"])
    # no cards anywhere: every GPU job is rejected
    empty = _metrics(api, op.headers, {**small, "edits": {"capacity_scale": 0}})
    assert empty["result"]["policies"]["nearest"]["completed"] < b["completed"]


def test_edits_apply_to_the_scenario() -> None:
    china = load_scenario("china")
    center = next(c for c in china.centers if len(c.inventory) >= 2)
    edits = ScenarioEdits.model_validate(
        {"capacity_scale": 2, "tariff_scale": 0.5,
         "centers": {center.id: {"cards": 1001, "pue": 1.7, "green_ppa_share": 0.9}}}
    )  # fmt: skip
    edited = apply_edits(china, edits)
    c = edited.center(center.id)
    assert c.cards == 1001 and c.pue == 1.7 and c.power.green_ppa_share == 0.9
    assert [m for m, _ in c.inventory] == [m for m, _ in center.inventory]
    for (_, new), (_, old) in zip(c.inventory, center.inventory, strict=True):
        assert abs(new - 1001 * old / center.cards) < 1
    other = next(x for x in china.centers if x.id != center.id)
    assert edited.center(other.id).cards == sum(round(n * 2) for _, n in other.inventory)
    assert edited.center(other.id).cpu_cores == 2 * other.cpu_cores
    for new_p, old_p in zip(edited.provinces, china.provinces, strict=True):
        assert new_p.tariff.flat_cny_per_kwh == pytest.approx(old_p.tariff.flat_cny_per_kwh / 2)
        assert new_p.tariff.periods == old_p.tariff.periods
    assert apply_edits(china, ScenarioEdits()) is china


def test_bad_edits_are_a_422_naming_the_field(api: Any, tenant: Tenant) -> None:
    op = tenant(TenantRole.OPERATOR)
    china = load_scenario("china")
    cid = china.centers[0].id
    cases = [
        ({"scenario": "mars"}, ["body", "scenario"], "no scenario 'mars'"),
        ({"edits": {"centers": {"atlantis": {"pue": 1.2}}}},
         ["body", "edits", "centers", "atlantis"], "no center 'atlantis'"),
        ({"edits": {"centers": {cid: {"pue": 0.5}}}},
         ["body", "edits", "centers", cid, "pue"], "greater than or equal to 1"),
        ({"edits": {"centers": {cid: {"inventory": {"tpu-v9": 8}}}}},
         ["body", "edits", "centers", cid, "inventory", "tpu-v9"], "unknown accelerator model"),
        ({"edits": {"tariff_scale": 0}}, ["body", "edits", "tariff_scale"], "greater than"),
        ({"edits": {"centers": {cid: {"cores": 8}}}},
         ["body", "edits", "centers", cid, "cores"], "Extra inputs"),
        ({"jobs": 6000, "bound": True}, ["body", "bound"], "at most 5000 jobs"),
        ({"start": "0001-01-01T00:00:00+14:00"}, ["body", "start"], "years 2000 to 2100"),
        ({"start": "1999-12-31T00:00:00Z"}, ["body", "start"], "years 2000 to 2100"),
    ]  # fmt: skip
    for change, loc, needle in cases:
        r = api.post("/v1/whatif", json={**SMALL, **change}, headers=op.headers)
        assert r.status_code == 422, (change, r.text)
        assert r.json()["detail"][0]["loc"] == loc, r.text
        assert needle in r.json()["detail"][0]["msg"], r.text


def test_a_scenario_edited_as_yaml(api: Any, tenant: Tenant) -> None:
    op = tenant(TenantRole.OPERATOR)
    r = api.get("/v1/whatif/scenarios/china/yaml", headers=op.headers)
    assert r.status_code == 200
    text = r.json()["yaml"]
    assert len(text) <= MAX_YAML_CHARS and "source" not in text
    assert api.get("/v1/whatif/scenarios/mars/yaml", headers=op.headers).status_code == 404
    consumer = tenant(TenantRole.CONSUMER)
    assert api.get("/v1/whatif/scenarios/china/yaml", headers=consumer.headers).status_code == 403
    # the YAML as it comes is the same network: the same report as the bundled scenario
    small = {**SMALL, "policies": ["nearest"]}
    bundled = _metrics(api, op.headers, {**small, "scenario": "china"})
    same = _metrics(api, op.headers, {**small, "scenario_yaml": text})
    assert same["changes"] == [f"scenario china from YAML ({text.count(chr(10)) + 1} lines)"]
    assert same["request"]["scenario_yaml"] is None  # not echoed
    for run in (bundled, same):
        del run["result"]["policies"]["nearest"]["decisions_per_s"]
    assert same["result"]["policies"] == bundled["result"]["policies"]
    # every PUE up in the text: more energy for the same jobs
    hot = _metrics(api, op.headers, {**small, "scenario_yaml": re.sub(r"pue: [0-9.]+", "pue: 2.5",
                                                                     text)})  # fmt: skip
    assert (hot["result"]["policies"]["nearest"]["energy_kwh"]
            > 1.3 * bundled["result"]["policies"]["nearest"]["energy_kwh"])  # fmt: skip


def test_a_bad_scenario_yaml_is_a_422_naming_line_and_field(api: Any, tenant: Tenant) -> None:
    op = tenant(TenantRole.OPERATOR)
    text = api.get("/v1/whatif/scenarios/china/yaml", headers=op.headers).json()["yaml"]
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "pue:" in line)
    lines[at] = re.sub(r"pue: [0-9.]+", "pue: 0.5", lines[at])
    r = api.post("/v1/whatif", json={**SMALL, "scenario_yaml": "\n".join(lines)},
                 headers=op.headers)  # fmt: skip
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "scenario_yaml"] and problem["line"] == at + 1
    assert problem["field"] == "centers[0].pue"
    assert problem["msg"].startswith(f"scenario.yaml:{at + 1}: centers[0].pue: ")
    for bad, needle in [("name: [", "scenario.yaml:1: file: not valid YAML"),
                        ("- a list", "top level must be a mapping"),
                        ("name: x", "scenario.yaml:1: provinces: Field required")]:  # fmt: skip
        r = api.post("/v1/whatif", json={**SMALL, "scenario_yaml": bad}, headers=op.headers)
        assert r.status_code == 422 and needle in r.text, r.text
