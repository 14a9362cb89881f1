"""What a tenant's quota refuses at submission (issue 14): a class it may not use (403), work
over its monthly budget or its spend per hour (402, saying by how much); nothing refused is
stored. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from starlette.testclient import TestClient


def _set(client: TestClient, operator: Any, tenant: str, **settings: Any) -> None:
    body = {"cohort": "uni", "quota_scu_per_h": 100, **settings}
    r = client.put(f"/v1/quotas/{tenant}", json=body, headers=operator.headers)
    assert r.status_code == 200, r.text


def _jobs(client: TestClient, who: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get("/v1/jobs", headers=who.headers).json()["items"]
    return items


def test_a_class_the_quota_does_not_allow_is_a_403_and_nothing_is_stored(
    client: TestClient, alice: Any, operator: Any, body: Callable[..., dict[str, Any]]
) -> None:
    _set(client, operator, "alice", classes=["normal", "batch"])
    r = client.post("/v1/jobs", json=body(priority="urgent"), headers=alice.headers)
    assert r.status_code == 403, r.text
    detail = r.json()["detail"]
    assert detail["error"] == "class_not_allowed" and detail["allowed"] == ["normal", "batch"]
    assert "'urgent'" in detail["message"]
    assert _jobs(client, alice) == []
    # the default class of the kind counts too: training is batch, which is allowed
    assert client.post("/v1/jobs", json=body(), headers=alice.headers).status_code == 201
    r = client.post("/v1/jobs", json=body(kind="inference", latency_ms=50), headers=alice.headers)
    assert r.status_code == 201  # normal


def test_work_over_the_monthly_budget_is_a_402_saying_by_how_much(
    client: TestClient, alice: Any, operator: Any, body: Callable[..., dict[str, Any]]
) -> None:
    _set(client, operator, "alice", budget_cny_per_month="1000000")
    first = client.post("/v1/jobs", json=body(), headers=alice.headers)
    assert first.status_code == 201  # well within
    _set(client, operator, "alice", budget_cny_per_month="5.00")
    r = client.post("/v1/jobs", json=body(name="second"), headers=alice.headers)
    assert r.status_code == 402, r.text
    d = r.json()["detail"]
    assert d["error"] == "over_budget" and d["limit"] == "budget_cny_per_month"
    # the pending first job's estimate counts: the month would hold both
    assert Decimal(d["would_be_cny"]) - Decimal(d["limit_cny"]) == Decimal(d["excess_cny"]) > 0
    assert d["limit_cny"] == "5.00" and "over your budget_cny_per_month of 5.00 CNY" in d["message"]
    assert [j["name"] for j in _jobs(client, alice)] == ["train-llm"]


def test_work_over_the_spend_per_hour_is_a_402(
    client: TestClient, alice: Any, bob: Any, operator: Any, body: Callable[..., dict[str, Any]]
) -> None:
    _set(client, operator, "alice", max_spend_cny_per_h="0.01")
    r = client.post("/v1/jobs", json=body(), headers=alice.headers)
    assert r.status_code == 402
    d = r.json()["detail"]
    assert d["limit"] == "max_spend_cny_per_h" and Decimal(d["excess_cny"]) > 0
    assert "CNY/h" in d["message"]
    # a tenant without a quota is not limited; another tenant's limit is not ours
    assert client.post("/v1/jobs", json=body(), headers=bob.headers).status_code == 201
