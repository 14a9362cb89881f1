"""The app marketplace API (/v1/apps) and the catalog's templates; the console's JSON routes."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest

from suanwang import web
from suanwang.apps.catalog import AppError, AppSpec, builtin_apps, render
from suanwang.server.database.models import TenantRole

Tenant = Callable[[TenantRole], Any]  # conftest.tenant: makes a tenant, returns its Key

REQUIRED = {"llm-finetune", "llm-batch-inference", "weather-simulation",
            "molecular-dynamics", "render-3d", "data-analytics"}  # fmt: skip


def my_app(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "id": "genome-align",
        "name": "Genome alignment",
        "category": "Life sciences",
        "summary": "Align reads to a reference genome.",
        "parameters": [
            {"name": "threads", "type": "int", "label": "Threads", "default": 16,
             "min": 1, "max": 128},
            {"name": "reference", "type": "string", "label": "Reference", "default": "hg38"},
        ],
        "template": {
            "kind": "analytics", "stacks": ["cpu"],
            "resources": {"count": 0, "cpus": "{threads}", "mem_gb": "{threads} * 2"},
            "duration_s": 3600, "command": "echo align to {reference} with {threads} threads",
        },
    }  # fmt: skip
    spec.update(overrides)
    return spec


def test_the_catalog_has_the_six_packaged_apps_and_each_renders_a_valid_job(
    api: Any, tenant: Tenant
) -> None:
    assert {a.id for a in builtin_apps()} >= REQUIRED
    who = tenant(TenantRole.CONSUMER)
    listed = api.get("/v1/apps", headers=who.headers).json()["items"]
    assert {a["id"] for a in listed} >= REQUIRED
    for app in listed:
        assert app["builtin"] is True and app["publisher"] == "suanwang"
        assert app["parameters"], app["id"]
        r = api.post(f"/v1/apps/{app['id']}/run", json={"origin": "beijing"}, headers=who.headers)
        assert r.status_code == 201, (app["id"], r.text)
        job = r.json()
        assert job["name"] == app["id"] and job["kind"] == app["template"]["kind"]
        assert job["state"] == "pending"
        assert sorted(job["spec"]["stacks"]) == sorted(app["template"]["stacks"])


def test_run_fills_parameters_into_the_job(api: Any, tenant: Tenant) -> None:
    who = tenant(TenantRole.CONSUMER)
    params = {"gpus": 4, "epochs": 2, "base_model": "glm-4-9b", "dataset": "my/data"}
    body = {"origin": "sichuan", "name": "ft-1", "parameters": params}
    job = api.post("/v1/apps/llm-finetune/run", json=body, headers=who.headers).json()
    spec = job["spec"]
    assert spec["resources"] == {
        "cpus": 32,
        "cards": 4,
        "count": 4,
        "accelerator": "any",
        "mem_gb": 256.0,
    }
    assert spec["duration_s"] == 4800
    assert spec["checkpointable"] is True and spec["kind"] == "finetune"
    assert "glm-4-9b on my/data: 2 epochs on 4 cards" in spec["command"]
    assert job["origin"] == "sichuan" and job["name"] == "ft-1"
    # the same job as POST /v1/jobs: it is listed, and only for its tenant
    assert api.get(f"/v1/jobs/{job['id']}", headers=who.headers).status_code == 200
    other = tenant(TenantRole.CONSUMER)
    assert api.get(f"/v1/jobs/{job['id']}", headers=other.headers).status_code == 404


@pytest.mark.parametrize(
    ("parameters", "loc", "needle"),
    [
        ({"gpus": 65}, ["body", "parameters", "gpus"], "at most 64 (got 65)"),
        ({"gpus": 0}, ["body", "parameters", "gpus"], "at least 1 (got 0)"),
        ({"gpus": 2.5}, ["body", "parameters", "gpus"], "whole number"),
        ({"gpus": "8"}, ["body", "parameters", "gpus"], "whole number"),
        ({"epochs": True}, ["body", "parameters", "epochs"], "whole number"),
        ({"base_model": "gpt-9"}, ["body", "parameters", "base_model"], "must be one of"),
        ({"dataset": "a b"}, ["body", "parameters", "dataset"], "does not match"),
        ({"dataset": "$(reboot)"}, ["body", "parameters", "dataset"], "may not contain '$'"),
        ({"gpu": 2}, ["body", "parameters", "gpu"], "unknown parameter 'gpu'"),
    ],
)
def test_bad_parameters_are_a_422_naming_the_parameter(
    api: Any, tenant: Tenant, parameters: dict[str, Any], loc: list[str], needle: str
) -> None:
    who = tenant(TenantRole.CONSUMER)
    body = {"origin": "beijing", "parameters": parameters}
    r = api.post("/v1/apps/llm-finetune/run", json=body, headers=who.headers)
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == loc
    assert needle in problem["msg"]
    assert api.get("/v1/jobs", headers=who.headers).json()["items"] == []


def test_every_problem_is_reported_at_once(api: Any, tenant: Tenant) -> None:
    who = tenant(TenantRole.CONSUMER)
    body = {"origin": "beijing", "parameters": {"gpus": 99, "epochs": 0, "nope": 1}}
    r = api.post("/v1/apps/llm-finetune/run", json=body, headers=who.headers)
    assert r.status_code == 422
    assert sorted(p["loc"][-1] for p in r.json()["detail"]) == ["epochs", "gpus", "nope"]


def test_unknown_origin_app_and_missing_key(api: Any, tenant: Tenant) -> None:
    who = tenant(TenantRole.CONSUMER)
    r = api.post("/v1/apps/render-3d/run", json={"origin": "atlantis"}, headers=who.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "origin"]
    assert "atlantis" in r.json()["detail"][0]["msg"]
    r = api.post("/v1/apps/no-such-app/run", json={"origin": "beijing"}, headers=who.headers)
    assert r.status_code == 404 and "no-such-app" in r.json()["detail"]
    assert api.get("/v1/apps/no-such-app", headers=who.headers).status_code == 404
    assert api.get("/v1/apps").status_code == 401
    assert api.post("/v1/apps/render-3d/run", json={"origin": "beijing"}).status_code == 401


def test_run_is_idempotent_with_a_key(api: Any, tenant: Tenant) -> None:
    who = tenant(TenantRole.CONSUMER)
    headers = {**who.headers, "Idempotency-Key": "render-once"}
    first = api.post("/v1/apps/render-3d/run", json={"origin": "beijing"}, headers=headers)
    again = api.post("/v1/apps/render-3d/run", json={"origin": "beijing"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]


def test_providers_and_operators_publish_consumers_may_not(api: Any, tenant: Tenant) -> None:
    consumer, provider = tenant(TenantRole.CONSUMER), tenant(TenantRole.PROVIDER)
    r = api.post("/v1/apps", json=my_app(), headers=consumer.headers)
    assert r.status_code == 403
    r = api.post("/v1/apps", json=my_app(), headers=provider.headers)
    assert r.status_code == 201, r.text
    assert r.json()["builtin"] is False and r.json()["publisher"].startswith("provider-")
    # listed after the built-in apps, readable and runnable by everyone
    ids = [a["id"] for a in api.get("/v1/apps", headers=consumer.headers).json()["items"]]
    assert ids[-1] == "genome-align" and set(ids[:-1]) >= REQUIRED
    body = {"origin": "gansu", "parameters": {"threads": 8, "reference": "chm13"}}
    job = api.post("/v1/apps/genome-align/run", json=body, headers=consumer.headers).json()
    assert job["spec"]["resources"]["cpus"] == 8
    assert job["spec"]["command"] == "echo align to chm13 with 8 threads"
    # ids are unique across built-in and published apps
    again = api.post("/v1/apps", json=my_app(), headers=provider.headers)
    assert again.status_code == 409
    builtin = api.post("/v1/apps", json=my_app(id="render-3d"), headers=provider.headers)
    assert builtin.status_code == 409


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda s: s["template"].update(command="echo {nope}"), "undeclared parameter(s): nope"),
        (lambda s: s["parameters"][0].update(default=500), "default: must be at most 128"),
        (lambda s: s["template"].update(stacks=["cobol"]), "cobol"),
        (lambda s: s["template"]["resources"].update(cpus="{threads} + 1"), "product"),
        (lambda s: s["parameters"].append(s["parameters"][0]), "declared twice: threads"),
        (lambda s: s.update(id="Bad Id"), "pattern"),
    ],
)
def test_publishing_a_broken_app_is_a_422(
    api: Any, tenant: Tenant, change: Callable[[dict[str, Any]], None], needle: str
) -> None:
    operator = tenant(TenantRole.OPERATOR)
    spec = copy.deepcopy(my_app(id="broken-app"))
    change(spec)
    r = api.post("/v1/apps", json=spec, headers=operator.headers)
    assert r.status_code == 422, r.text
    assert needle in r.text
    assert api.get("/v1/apps/broken-app", headers=operator.headers).status_code == 404


def test_render_quotes_text_and_multiplies() -> None:
    spec = AppSpec.model_validate(
        my_app(
            parameters=[
                {"name": "ref", "type": "string", "label": "Ref", "default": "hg38",
                 "pattern": r"^[a-z0-9 ]+$"},
                {"name": "n", "type": "float", "label": "N", "default": 1.5},
            ],
            template={"kind": "hpc", "stacks": ["cuda"], "duration_s": "{n} * 2 * 100",
                      "resources": {"count": 1}, "command": "run {ref} {n}"},
        )
    )  # fmt: skip
    job = render(spec, {"ref": "a b"})
    assert job["command"] == "run 'a b' 1.5"
    assert job["duration_s"] == 300
    with pytest.raises(AppError) as err:
        render(spec, {"ref": "a;b"})
    assert err.value.problems[0].loc == ("parameters", "ref")


def test_console_page_static_files_and_json_routes(api: Any, tenant: Tenant) -> None:
    page = api.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script type="module" src="/static/app.js">' in page.text
    texts = [page.text]
    for path in sorted(web.STATIC.iterdir()):
        if path.is_dir():  # vendor/: the docs pages' files (tests/server/test_server_hardening.py)
            continue
        asset = api.get(f"/static/{path.name}")
        assert asset.status_code == 200, path.name
        texts.append(asset.text)
    # every module the page imports is served (app.js imports the pages, they import core.js)
    imported = set(re.findall(r'from "\./([\w-]+\.js)"', "".join(texts)))
    assert "core.js" in imported and imported <= {p.name for p in web.STATIC.iterdir()}
    # offline-first: the page and its assets name no other host
    for text in texts:
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text
    # the map's province outlines: small, every province of the scenario among them
    outlines = api.get("/static/china-provinces.json")
    assert len(outlines.content) < 200_000
    drawn = {f["id"] for f in outlines.json()["features"]}
    op = tenant(TenantRole.OPERATOR)
    assert api.get("/v1/me", headers=op.headers).json()["role"] == "operator"
    assert api.get("/v1/me").status_code == 401
    geo = api.get("/v1/network/map", headers=op.headers).json()
    assert len(geo["centers"]) == 32
    assert all(18 < c["lat"] < 54 and 73 < c["lon"] < 135 for c in geo["centers"])
    assert {c["hub"] for c in geo["centers"]} - {None} <= {h["id"] for h in geo["hubs"]}
    assert len(geo["provinces"]) >= 31
    assert {p["id"] for p in geo["provinces"]} <= drawn
    # the names a quota's family caps may use (the form shows one field per family)
    assert geo["families"] == ["cambricon", "cpu", "huawei", "hygon", "nvidia"]


def test_huge_numbers_are_refused_not_a_server_error(api: Any, tenant: Tenant) -> None:
    operator = tenant(TenantRole.OPERATOR)
    body = {"origin": "beijing", "parameters": {"prompts": 10**400}}
    r = api.post("/v1/apps/llm-batch-inference/run", json=body, headers=operator.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "prompts"
    spec = my_app(id="huge-app")
    spec["template"]["duration_s"] = "1" + "0" * 400
    r = api.post("/v1/apps", json=spec, headers=operator.headers)
    assert r.status_code == 422 and "too large" in r.text
    spec = my_app(id="huge-param")
    spec["parameters"][0] = {"name": "threads", "type": "int", "label": "T", "default": 10**20}
    r = api.post("/v1/apps", json=spec, headers=operator.headers)
    assert r.status_code == 422 and "at most 1e+15" in r.text


def test_the_publisher_or_an_operator_updates_and_deletes_an_app(api: Any, tenant: Tenant) -> None:
    provider, other, operator = (tenant(TenantRole.PROVIDER), tenant(TenantRole.PROVIDER),
                                 tenant(TenantRole.OPERATOR))  # fmt: skip
    consumer = tenant(TenantRole.CONSUMER)
    spec = my_app(id="edit-me")
    assert api.post("/v1/apps", json=spec, headers=provider.headers).status_code == 201
    # who may change it is shown to the viewer
    assert api.get("/v1/apps/edit-me", headers=provider.headers).json()["editable"] is True
    assert api.get("/v1/apps/edit-me", headers=operator.headers).json()["editable"] is True
    assert api.get("/v1/apps/edit-me", headers=other.headers).json()["editable"] is False
    listed = api.get("/v1/apps", headers=consumer.headers).json()["items"]
    assert not any(a["editable"] for a in listed)
    # the publisher changes a default and the command; runs use the new spec at once
    changed = copy.deepcopy(spec)
    changed["name"] = "Genome alignment v2"
    changed["parameters"][0]["default"] = 4
    changed["template"]["command"] = "echo v2 align {reference} with {threads} threads"
    r = api.put("/v1/apps/edit-me", json=changed, headers=provider.headers)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Genome alignment v2" and r.json()["editable"] is True
    assert api.get("/v1/apps/edit-me", headers=consumer.headers).json()["name"] == (
        "Genome alignment v2"
    )
    job = api.post("/v1/apps/edit-me/run", json={"origin": "gansu"}, headers=consumer.headers)
    assert job.json()["spec"]["command"] == "echo v2 align hg38 with 4 threads"
    assert job.json()["spec"]["resources"]["cpus"] == 4
    # another provider and consumers may not change or delete it
    for who in (other, consumer):
        assert api.put("/v1/apps/edit-me", json=changed, headers=who.headers).status_code == 403
        assert api.delete("/v1/apps/edit-me", headers=who.headers).status_code == 403
    r = api.put("/v1/apps/edit-me", json=changed, headers=other.headers)
    assert "only its publisher or an operator" in r.json()["detail"]
    # an operator may; the job run from it stays
    changed["summary"] = "Changed by the operator."
    r = api.put("/v1/apps/edit-me", json=changed, headers=operator.headers)
    assert r.status_code == 200 and r.json()["summary"] == "Changed by the operator."
    assert r.json()["publisher"].startswith("provider-")  # still the provider's app
    assert api.delete("/v1/apps/edit-me", headers=operator.headers).status_code == 204
    assert api.get("/v1/apps/edit-me", headers=provider.headers).status_code == 404
    assert api.delete("/v1/apps/edit-me", headers=provider.headers).status_code == 404
    assert api.put("/v1/apps/edit-me", json=changed, headers=provider.headers).status_code == 404
    jid = job.json()["id"]
    assert api.get(f"/v1/jobs/{jid}", headers=consumer.headers).status_code == 200
    # the id is free again: the provider publishes it anew and deletes it itself
    assert api.post("/v1/apps", json=spec, headers=provider.headers).status_code == 201
    assert api.delete("/v1/apps/edit-me", headers=provider.headers).status_code == 204
    assert "edit-me" not in [a["id"] for a in api.get("/v1/apps", headers=consumer.headers)
                             .json()["items"]]  # fmt: skip


def test_built_in_apps_cannot_be_changed_or_deleted(api: Any, tenant: Tenant) -> None:
    operator = tenant(TenantRole.OPERATOR)
    spec = my_app(id="render-3d")
    r = api.put("/v1/apps/render-3d", json=spec, headers=operator.headers)
    assert r.status_code == 403 and "built-in app" in r.json()["detail"]
    r = api.delete("/v1/apps/render-3d", headers=operator.headers)
    assert r.status_code == 403 and "cannot be deleted" in r.json()["detail"]
    assert api.get("/v1/apps/render-3d", headers=operator.headers).json()["builtin"] is True
    assert api.delete("/v1/apps/render-3d").status_code == 401


def test_an_update_is_checked_like_a_publication(api: Any, tenant: Tenant) -> None:
    provider = tenant(TenantRole.PROVIDER)
    spec = my_app(id="checked-app")
    assert api.post("/v1/apps", json=spec, headers=provider.headers).status_code == 201
    renamed = my_app(id="other-name")
    r = api.put("/v1/apps/checked-app", json=renamed, headers=provider.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "id"]
    assert "cannot be renamed" in r.json()["detail"][0]["msg"]
    broken = copy.deepcopy(spec)
    broken["parameters"][0]["default"] = 500
    r = api.put("/v1/apps/checked-app", json=broken, headers=provider.headers)
    assert r.status_code == 422 and "at most 128" in r.text
    unrunnable = copy.deepcopy(spec)
    unrunnable["template"]["stacks"] = ["cobol"]
    r = api.put("/v1/apps/checked-app", json=unrunnable, headers=provider.headers)
    assert r.status_code == 422 and "cobol" in r.text
    # nothing changed
    kept = api.get("/v1/apps/checked-app", headers=provider.headers).json()
    assert kept["parameters"][0]["default"] == 16 and kept["template"]["stacks"] == ["cpu"]
