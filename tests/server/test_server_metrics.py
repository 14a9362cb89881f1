"""/metrics (operators, Prometheus text)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient


def test_metrics_for_operators(
    client: TestClient, operator: Any, alice: Any, submit: Callable[..., dict[str, Any]]
) -> None:
    submit(alice, name="m1")
    submit(alice, name="m2")
    r = client.get("/metrics", headers=operator.headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    pending = [s for s in families["suanwang_jobs"].samples if s.labels["state"] == "pending"]
    assert pending and pending[0].value >= 2
    assert {"suanwang_decisions_total", "suanwang_dispatch_latency_seconds",
            "suanwang_center_utilization", "suanwang_center_price_cny_per_kwh",
            "suanwang_center_green_fraction", "suanwang_green_share"} <= set(families)  # fmt: skip
    centers = {s.labels["center"] for s in families["suanwang_center_green_fraction"].samples}
    assert "zhongwei" in centers
    assert client.get("/metrics", headers=alice.headers).status_code == 403
    assert client.get("/metrics").status_code == 401
