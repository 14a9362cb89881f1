"""Every rule of a single field is in the OpenAPI schema, and a request breaking it is a 422
naming the field (SQLite and PostgreSQL); rules relating fields have their own error types."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from pinned import NOW
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.server.database.models import Tenant, TenantRole
from suanwang.server.models.centers import grant_centers

Who = Any
OFFER = {"center": "zhangjiakou", "model": "a100", "units": 8, "price_cny_per_scu": "2.50",
         "start": "2025-07-01T08:00Z", "end": "2025-07-01T18:00Z", "type": "reserved"}  # fmt: skip


def _schema(client: TestClient, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = client.get("/openapi.json").json()
    return dict(doc["components"]["schemas"][name])


def _errors(r: Any) -> list[tuple[str, tuple[Any, ...]]]:
    assert r.status_code == 422, r.text
    return [(e["type"], tuple(e["loc"])) for e in r.json()["detail"]]


def _matches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern.removeprefix("^").removesuffix("$"), text) is not None


@pytest.mark.parametrize("field", ["start", "end"])
@pytest.mark.parametrize(
    "text",
    ["2025-07-01T08:30Z", "2025-07-01T13:00+05:30", "2025-07-01T08:00", "2025-02-29T00:00Z",
     "1999-07-01T08:00Z", "2025-07-01 08:00Z", " 2025-07-01T08:00Z"],
)  # fmt: skip
def test_offer_and_reservation_times_are_published_whole_hours(
    client: TestClient, operator: Who, alice: Who, field: str, text: str
) -> None:
    for name in ("OfferRequest", "ReservationRequest"):
        pattern = _schema(client, name)["properties"][field]["pattern"]
        assert not _matches(pattern, text)
        assert _matches(pattern, OFFER[field])
    r = client.post("/v1/offers", json={**OFFER, field: text}, headers=operator.headers)
    assert _errors(r) == [("string_pattern_mismatch", ("body", field))]
    booking = {"offer_id": "o-1", "units": 1, "start": OFFER["start"], "end": OFFER["end"]}
    r = client.post("/v1/reservations", json={**booking, field: text}, headers=alice.headers)
    assert _errors(r) == [("string_pattern_mismatch", ("body", field))]


def test_a_window_that_ends_before_it_starts_is_its_own_error_type(
    client: TestClient, operator: Who
) -> None:
    backwards = {**OFFER, "start": OFFER["end"], "end": OFFER["start"]}
    r = client.post("/v1/offers", json=backwards, headers=operator.headers)
    assert _errors(r) == [("invalid_window", ("body", "end"))]
    too_long = {**OFFER, "end": "2026-07-03T08:00Z"}
    r = client.post("/v1/offers", json=too_long, headers=operator.headers)
    assert _errors(r) == [("invalid_window", ("body", "end"))]
    assert "366 days" in r.json()["detail"][0]["msg"]


def test_scenario_and_clock_rules_of_offers_have_their_types(
    client: TestClient,
    make_tenant: Callable[..., Who],
    sessions: sessionmaker[Session],
    operator: Who,
) -> None:
    r = client.post("/v1/offers", json={**OFFER, "center": "atlantis"}, headers=operator.headers)
    assert _errors(r) == [("scenario", ("body", "center"))]
    past = {**OFFER, "start": "2025-06-01T00:00Z", "end": "2025-06-02T00:00Z"}
    r = client.post("/v1/offers", json=past, headers=operator.headers)
    assert _errors(r) == [("instant_out_of_range", ("body", "end"))]
    prov = make_tenant(TenantRole.PROVIDER)
    with sessions.begin() as s:
        tenant = s.get_one(Tenant, prov.id)
        grant_centers(session=s, tenant=tenant, centers=["zhangjiakou"], now=NOW)
    r = client.post("/v1/offers", json=OFFER, headers=prov.headers)
    assert r.status_code == 201, r.text
    offer = r.json()["id"]
    outside = {"offer_id": offer, "units": 1, "start": "2025-07-01T07:00Z",
               "end": "2025-07-01T09:00Z"}  # fmt: skip
    r = client.post("/v1/reservations", json=outside, headers=operator.headers)
    assert _errors(r) == [("offer_mismatch", ("body", "start"))]


def test_quota_rates_are_rounded_to_6_decimals_as_published(
    client: TestClient, operator: Who, alice: Who
) -> None:
    props = _schema(client, "QuotaSettings")["properties"]
    assert "rounded to 6 decimals" in props["quota_scu_per_h"]["description"]
    assert props["weight"]["minimum"] == 0.000001
    body = {"cohort": "c", "quota_scu_per_h": 0.1234567, "weight": 0.0000015,
            "caps": {"families": {"nvidia": 2.0000004}}}  # fmt: skip
    r = client.put(f"/v1/quotas/{alice.id}", json=body, headers=operator.headers)
    assert r.status_code == 200, r.text
    settings = r.json()["settings"]
    assert settings["quota_scu_per_h"] == 0.123457
    assert settings["weight"] == 0.000002
    assert settings["caps"]["families"] == {"nvidia": 2.0}
    r = client.put(f"/v1/quotas/{alice.id}", json={**body, "weight": 0.0000009},
                   headers=operator.headers)  # fmt: skip
    assert _errors(r) == [("value_error", ("body", "weight"))]


@pytest.mark.parametrize(
    ("amount", "ok"),
    [
        (12.345, True),  # a number is rounded to the fen
        ("12.34", True),
        (999_999_999_999.99, True),
        ("999999999999.99", True),
        (10**12, False),
        ("1000000000000", False),
        ("12.345", False),  # a text is exact
        ("1e3", False),
        (" 5", False),
        ("05", False),
        (-1, False),
        ("-1", False),
    ],
)
def test_money_in_quotas_is_bounded_in_both_forms_as_published(
    client: TestClient, operator: Who, alice: Who, amount: Any, ok: bool
) -> None:
    schema = _schema(client, "QuotaSettings")["properties"]["budget_cny_per_month"]
    number, text = schema["anyOf"][0]["anyOf"]
    if isinstance(amount, str):
        assert _matches(text["pattern"], amount) is ok
    else:
        assert (number["minimum"] <= amount <= number["maximum"]) is ok
    body = {"cohort": "c", "quota_scu_per_h": 10, "budget_cny_per_month": amount}
    r = client.put(f"/v1/quotas/{alice.id}", json=body, headers=operator.headers)
    if ok:
        assert r.status_code == 200, r.text
        shown = r.json()["settings"]["budget_cny_per_month"]
        assert shown == ("12.35" if amount == 12.345 else f"{float(amount):.2f}")
    else:
        assert _errors(r) == [("value_error", ("body", "budget_cny_per_month"))]


@pytest.mark.parametrize(
    ("start", "ok"),
    [("1999-12-31T23:00Z", False), ("2000-01-01T00:30+01:00", False),
     ("2101-01-01T00:00Z", False), (1_751_328_000, False), ("2025-07-01T00:00Z", True)],
)  # fmt: skip
def test_the_whatif_start_is_published(
    client: TestClient, operator: Who, start: Any, ok: bool
) -> None:
    prop = _schema(client, "WhatIfBody")["properties"]["start"]
    assert prop["type"] == "string" and "format" not in prop
    assert (isinstance(start, str) and _matches(prop["pattern"], start)) is ok
    if not ok:  # (an accepted start would start a simulation)
        r = client.post("/v1/whatif", json={"start": start}, headers=operator.headers)
        assert _errors(r) == [("value_error", ("body", "start"))]
        assert "years 2000 to 2100" in r.json()["detail"][0]["msg"]


APP = {
    "id": "genome-align", "name": "Genome alignment", "category": "Life sciences",
    "summary": "Align reads.",
    "parameters": [{"name": "threads", "type": "int", "label": "Threads", "default": 16,
                    "min": 1, "max": 128}],
    "template": {"kind": "analytics", "stacks": ["cpu"], "resources": {"cpus": "{threads}"},
                 "duration_s": 3600, "command": "align --threads {threads}"},
}  # fmt: skip


def test_app_rules_relating_fields_are_of_type_app(client: TestClient, operator: Who) -> None:
    bad = {**APP, "parameters": [{**APP["parameters"][0], "min": 200}]}  # min > max
    r = client.post("/v1/apps", json=bad, headers=operator.headers)
    assert _errors(r) == [("app", ("body", "parameters", 0))]
    undeclared = {**APP, "template": {**APP["template"], "command": "align {reads}"}}
    r = client.post("/v1/apps", json=undeclared, headers=operator.headers)
    assert [t for t, _ in _errors(r)] == ["app"]


def test_app_run_parameter_names_are_published(client: TestClient, alice: Who) -> None:
    schema = _schema(client, "AppRun")["properties"]["parameters"]
    assert schema["additionalProperties"] is False
    [pattern] = schema["patternProperties"]
    assert not _matches(pattern, "Gpus") and _matches(pattern, "gpus")
    body = {"origin": "beijing", "parameters": {"Gpus": 8}}
    r = client.post("/v1/apps/llm-finetune/run", json=body, headers=alice.headers)
    assert r.status_code == 422, r.text
    assert [tuple(e["loc"][:2]) for e in r.json()["detail"]] == [("body", "parameters")]
    r = client.post("/v1/apps/llm-finetune/run", json={"origin": "beijing",
                    "parameters": {"gpu": 8}}, headers=alice.headers)  # fmt: skip
    assert _errors(r) == [("app", ("body", "parameters", "gpu"))]


def test_numeric_bounds_are_published_under_json_schema_names(
    client: TestClient, operator: Who
) -> None:
    doc = client.get("/openapi.json").json()
    stray: list[str] = []

    def walk(node: Any, at: str) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("integer", "number") and {"ge", "le", "gt", "lt"} & set(node):
                stray.append(at)
            for key, value in node.items():
                walk(value, f"{at}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{at}/{i}")

    walk(doc, "")
    assert stray == []
    jobs = _schema(client, "WhatIfBody")["properties"]["jobs"]["anyOf"][0]
    assert jobs["minimum"] == 10
    r = client.post("/v1/whatif", json={"jobs": 9}, headers=operator.headers)
    assert _errors(r) == [("greater_than_equal", ("body", "jobs"))]
