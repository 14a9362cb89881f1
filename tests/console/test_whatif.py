"""What-if runs (/v1/whatif): the simulator as a background task for operators."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from suanwang.console.whatif import WhatIfRequest, WhatIfRunner, _Run
from suanwang.server.database.models import TenantRole

Tenant = Callable[[TenantRole], Any]
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
        assert metrics["completed"] + metrics["rejected"] + metrics["unfinished"] == 200
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
    runner = api_app.state.whatif = WhatIfRunner()
    busy = _Run(id="busy-run", request=WhatIfRequest.model_validate(SMALL))
    runner._runs[busy.id] = busy  # a run still going
    r = api.post("/v1/whatif", json=SMALL, headers=op.headers)
    assert r.status_code == 409 and "busy-run" in r.json()["detail"]
    busy.state = "done"
    assert api.post("/v1/whatif", json=SMALL, headers=op.headers).status_code == 202
