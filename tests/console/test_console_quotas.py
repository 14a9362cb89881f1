"""The console's quota pages and why a job waits, in a real browser against ``suanwang serve``
(docs/governance.md, "In the console").

Quotas put the live dispatcher under governance for every tenant while they exist, so each test
sets them on tenants of its own and removes them when it ends.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

Browser = Callable[..., dict[str, Any]]
Live = Any  # conftest.Live


@pytest.fixture
def quotas(live: Live) -> Iterator[Callable[[str, dict[str, Any]], None]]:
    """``set(tenant, body)``: PUT a quota (operator); every quota set so is removed at the end,
    borrowers before lenders (removing a lender first is a 409)."""
    names: list[str] = []

    def put(tenant: str, body: dict[str, Any]) -> None:
        r = httpx.put(f"{live.url}/v1/quotas/{tenant}", json=body, headers=live.operator.headers)
        assert r.status_code == 200, r.text
        names.append(tenant)

    yield put
    for name in reversed(names):
        r = httpx.delete(f"{live.url}/v1/quotas/{name}", headers=live.operator.headers)
        assert r.status_code in (200, 404), r.text


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def test_an_operator_sets_edits_and_removes_a_quota_in_the_form(
    browser: Browser, live: Live, quotas: Callable[[str, dict[str, Any]], None]
) -> None:
    cohort = _name("uni")
    lender, borrower, tenant = _name("lender"), _name("borrower"), _name("lab")
    for name in (lender, borrower, tenant):
        live.new_tenant(name)
    quotas(lender, {"cohort": cohort, "quota_scu_per_h": 50})
    quotas(borrower, {"cohort": cohort, "quota_scu_per_h": 10, "borrow_limit_scu_per_h": 30})
    try:
        seen = browser("quotas_operator", tenant=tenant, cohort=_name("solo"), lender=lender)
    finally:  # the form's tenant, if the scenario stopped before removing it
        httpx.delete(f"{live.url}/v1/quotas/{tenant}", headers=live.operator.headers)
    # refused settings: each reason next to its field, the earlier one cleared
    assert seen["weight_invalid"] == "true" and "must be > 0" in seen["weight_error"]
    assert "can lend" in seen["borrow_error"] and seen["weight_cleared"] == 0
    # saved: the table shows it as the API does
    assert seen["saved"].startswith(f"Saved {tenant}'s quota")
    cells = seen["cells"]
    assert cells["quota"] == "100.00" and cells["entitlement"] == "200.00"
    assert cells["usage"] == "0.00 (0 jobs)" and cells["usage_over_quota"] == "0%"
    assert cells["borrowed"] == "0.00" and cells["budget"] == "¥0.00 / ¥1000.00"
    assert cells["classes"] == "normal, batch, preemptible"
    # the record: who, what (only what is not at its default), then before -> after
    created = seen["created"]
    assert "console-ops" in created and "created" in created
    for line in ("quota: 100", "weight: 2", "classes: normal, batch, preemptible",
                 "family caps: nvidia 40", "monthly budget: 1000.00"):  # fmt: skip
        assert line in created, created
    assert "borrow limit" not in created and "hub caps" not in created
    assert seen["filled"] == {"cohort": seen["filled"]["cohort"], "weight": "2", "nvidia": "40",
                              "urgent": False}  # fmt: skip
    assert seen["filled"]["cohort"].startswith("solo-")
    assert "updated" in seen["updated"] and "quota: 100 → 150" in seen["updated"]
    assert "weight" not in seen["updated"]  # only what changed
    assert seen["quota_cell"] == "150.00"
    # a lender its cohort mate borrows from: the 409's reason
    assert "would leave" in seen["conflict"] and borrower in seen["conflict"]
    assert seen["removed"].startswith(f"Removed {tenant}'s quota")
    assert "removed" in seen["removal"] and "quota was 150" in seen["removal"]
    log = httpx.get(f"{live.url}/v1/quotas/changes", params={"tenant": tenant},
                    headers=live.operator.headers).json()["changes"]  # fmt: skip
    assert [c["action"] for c in log] == ["removed", "updated", "created"]
    assert log[2]["after"]["caps"]["families"] == {"nvidia": 40.0}
    assert log[2]["after"]["classes"] == ["normal", "batch", "preemptible"]
    assert log[2]["after"]["budget_cny_per_month"] == "1000.00"


def test_a_consumer_sees_its_own_quota_and_no_one_elses(
    browser: Browser, live: Live, quotas: Callable[[str, dict[str, Any]], None]
) -> None:
    cohort, me, neighbour = _name("co"), _name("me"), _name("neighbour")
    key = live.new_tenant(me)
    live.new_tenant(neighbour)
    quotas(neighbour, {"cohort": cohort, "quota_scu_per_h": 40})
    quotas(me, {"cohort": cohort, "quota_scu_per_h": 80, "weight": 1.5,
                "borrow_limit_scu_per_h": 20, "classes": ["normal", "batch"],
                "budget_cny_per_month": "500"})  # fmt: skip
    seen = browser("quotas_consumer", key=key, other=live.consumer.key)
    mine = seen["mine"]
    assert mine["entitlement"] == "120.00 SCU/h (quota 80.00 SCU/h × weight 1.5)"
    assert mine["usage"].startswith("0.00 SCU/h by 0 running jobs (0% of the quota)")
    assert mine["borrowed"].startswith("0.00 SCU/h beyond the quota (may borrow 20.00 SCU/h")
    assert mine["standing"].startswith("0.00 running now / entitlement")
    assert mine["budget"].startswith("¥500.00 left of ¥500.00")
    assert mine["classes"] == "normal, batch"
    assert neighbour not in mine["page"] and mine["forms"] == 0
    assert "null" not in mine["page"] and "undefined" not in mine["page"]
    # a tenant without a quota is told what it gets
    assert seen["none"].startswith("No quota is set for you: you share the network's idle capacity")


def test_a_pending_job_shows_why_it_waits(
    browser: Browser, live: Live, quotas: Callable[[str, dict[str, Any]], None]
) -> None:
    """A cap of 0 on CPU nodes: the tenant's CPU-only job has no pool it may take, so it stays
    pending, its decision saying the quota is used up."""
    name = _name("capped")
    key = live.new_tenant(name)
    quotas(name, {"cohort": _name("co"), "quota_scu_per_h": 10, "caps": {"families": {"cpu": 0}}})
    body = {"name": _name("waits"), "command": "echo never", "kind": "inference",
            "origin": "beijing", "duration_s": 60,
            "resources": {"count": 0, "cpus": 1}}  # fmt: skip
    r = httpx.post(f"{live.url}/v1/jobs", json=body, headers=key.headers, timeout=10)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    try:
        # generous: on SQLite a read waits for the dispatcher's round (every transaction
        # takes the write lock), and a round of the shared server may take seconds in CI
        deadline = time.monotonic() + 90
        while True:
            job = httpx.get(f"{live.url}/v1/jobs/{job_id}", headers=key.headers, timeout=30).json()
            if (job.get("decision") or {}).get("waiting"):
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["state"] == "pending" and job["decision"]["waiting"] == "quota used up"
        seen = browser("waiting_job", key=key, job=job_id)
    finally:
        httpx.post(f"{live.url}/v1/jobs/{job_id}/cancel", headers=key.headers, timeout=30)
    assert seen["listed"] == "quota used up" and seen["code"] == "quota used up"
    assert seen["waiting"].startswith("Waiting: its tenant's quota is used up.")
    assert seen["state"] == "pending"
