"""The console in a real browser: Playwright + Debian's Chromium against ``suanwang serve``.

Screenshots land in ``artifacts/console/`` (gitignored); a failing scenario leaves
``failed-<scenario>.png`` there.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

Browser = Callable[..., dict[str, Any]]
Live = Any  # conftest.Live: url, operator and consumer keys of the running server
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"


def _centers(live: Live) -> list[dict[str, Any]]:
    r = httpx.get(f"{live.url}/v1/centers", headers=live.operator.headers, timeout=10)
    r.raise_for_status()
    centers: list[dict[str, Any]] = r.json()["centers"]
    return centers


def test_a_refused_key_is_named_and_nothing_is_shown(browser: Browser) -> None:
    seen = browser("bad_key")
    assert "not accepted" in seen["error"]
    assert seen["nav_hidden"] is True


def test_map_shows_every_center_with_panels(browser: Browser, live: Live) -> None:
    centers = _centers(live)
    assert len(centers) == 32
    seen = browser("map", expect_centers=len(centers))
    assert seen["centers"] == 32
    assert seen["table_rows"] == 32
    hubs = httpx.get(f"{live.url}/v1/network", headers=live.operator.headers).json()["hubs"]
    assert seen["hub_rows"] == len(hubs)
    # the panel of the first center (opened with the keyboard) shows its live numbers
    first = centers[0]
    assert first["name"] in seen["title"]
    for text in ("Utilization", "Energy price", "Green share", "Carbon", "PUE"):
        assert text in seen["panel"]
    assert f"{first['pue']:.2f}" in seen["panel"]
    assert "null" not in seen["panel"] and "undefined" not in seen["panel"]
    assert seen["green_label"].startswith(f"{first['name']}: Green share")
    assert (ARTIFACTS / "map.png").stat().st_size > 10_000
    # the provinces drawn under the markers, labelled where no label covers a marker
    geo = httpx.get(f"{live.url}/v1/network/map", headers=live.operator.headers).json()
    assert {p["id"] for p in geo["provinces"]} <= set(seen["provinces"])
    assert {"taiwan", "hongkong", "macau"} <= set(seen["provinces"])
    assert seen["markers_on_top"] is True
    assert seen["covering"] == []
    assert sorted(seen["hub_labels"]) == sorted(h["name_zh"] for h in geo["hubs"])
    assert len(seen["province_labels"]) >= 25, seen["province_labels"]


def test_the_console_at_phone_width(browser: Browser, live: Live) -> None:
    """390 px wide: the map and the job list are there, no page is wider than the screen."""
    body = {"name": f"phone-{secrets.token_hex(3)}", "command": "echo phone",
            "kind": "inference", "origin": "beijing", "duration_s": 60,
            "resources": {"count": 0, "cpus": 1}}  # fmt: skip
    job = httpx.post(f"{live.url}/v1/jobs", json=body, headers=live.operator.headers, timeout=10)
    assert job.status_code == 201, job.text
    seen = browser("phone", job=job.json()["id"], viewport={"width": 390, "height": 844})
    for page, (scroll_width, width) in seen["widths"].items():
        assert width == 390 and scroll_width <= width, (page, scroll_width)
    assert seen["map"]["width"] >= 350 and seen["map"]["height"] >= 200
    assert seen["job_row_visible"] is True
    assert seen["covering"] == [] and seen["markers_on_top"] is True


def test_submit_a_job_from_the_form_and_watch_it_finish(browser: Browser, live: Live) -> None:
    name = f"console-{secrets.token_hex(3)}"
    marker = f"hello-{secrets.token_hex(4)}"
    seen = browser("submit_job", job_name=name, marker=marker)
    # the refused first attempt named the field
    assert "duration_s" in seen["refused"]
    assert seen["invalid"] == "true"
    assert seen["state"] == "succeeded"
    assert seen["events"][:2] == ["pending", "scheduled"]
    assert seen["events"][-1] == "succeeded"
    assert marker in seen["logs"] and "finished" in seen["logs"]
    job = httpx.get(f"{live.url}/v1/jobs/{seen['id']}", headers=live.operator.headers).json()
    assert job["name"] == name and job["kind"] == "inference" and job["origin"] == "guangdong"
    assert seen["chosen"] == job["decision"]["chosen"]["center"] == job["center_id"]
    assert seen["placement_rows"] == 1 + len(job["decision"]["runners_up"])
    assert seen["listed"] == 1
    assert "No job matches" in seen["filtered_out"]


def test_run_an_app_from_the_marketplace(browser: Browser, live: Live) -> None:
    name = f"app-{secrets.token_hex(3)}"
    seen = browser("run_app", job_name=name)
    for app in ("llm-finetune", "llm-batch-inference", "weather-simulation",
                "molecular-dynamics", "render-3d", "data-analytics"):  # fmt: skip
        assert app in seen["apps"]
    assert "at most 16" in seen["field_error"]
    assert "parameters.gpus" in seen["refused"]
    assert seen["state"] == "succeeded"
    assert "completed 500 prompts" in seen["logs"]
    job = httpx.get(f"{live.url}/v1/jobs/{seen['id']}", headers=live.operator.headers).json()
    assert job["name"] == name and job["origin"] == "shanghai"
    assert job["spec"]["resources"]["count"] == 2 and job["kind"] == "inference"


def test_an_operator_publishes_an_app_from_the_marketplace(browser: Browser) -> None:
    app_id = f"align-{secrets.token_hex(3)}"
    spec = {
        "id": app_id, "name": "Genome alignment", "category": "Life sciences",
        "summary": "Align reads to a reference genome.",
        "parameters": [{"name": "threads", "type": "int", "label": "Threads", "default": 8,
                        "min": 1, "max": 64}],
        "template": {"kind": "analytics", "stacks": ["cpu"], "resources": {"cpus": "{threads}"},
                     "duration_s": 600, "command": "echo align with {threads} threads"},
    }  # fmt: skip
    seen = browser("publish_app", spec=spec)
    assert seen["title"] == "Genome alignment"
    assert seen["fields"] == 1
    assert "by console-ops" in seen["card"]


def test_operator_drains_and_reopens_a_center(browser: Browser, live: Live) -> None:
    center = _centers(live)[-1]["id"]
    seen = browser("drain", center=center)
    assert "drained" in seen["drained_text"]
    assert "open" in seen["reopened_text"]
    drained = httpx.get(f"{live.url}/v1/centers/drained", headers=live.operator.headers).json()
    assert center not in [d["center_id"] for d in drained]


def test_consumer_sees_no_operator_views_and_an_empty_job_list(
    browser: Browser, live: Live
) -> None:
    seen = browser("consumer_views", key=live.consumer)
    assert seen["operator_link_hidden"] is True
    assert "No jobs yet" in seen["empty_jobs"]
    assert seen["publish_forms"] == 0
    assert "null" not in seen["apps_text"] and "undefined" not in seen["apps_text"]


def test_what_if_runs_the_simulator_from_the_browser(browser: Browser) -> None:
    seen = browser("whatif", jobs=150)
    assert "jobs" in seen["refused"]
    assert seen["policies"] == ["nearest", "suanwang"]
    assert seen["step"].startswith("done after") and seen["progress"] == 1
    assert seen["heading"] == "150 jobs on china"


def _charged_job(live: Live, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Submit ``body`` and wait until its charge is on this month's invoice."""
    job: dict[str, Any] = httpx.post(f"{live.url}/v1/jobs", json=body, headers=headers,
                                     timeout=10).json()  # fmt: skip
    period = datetime.now(UTC).strftime("%Y-%m")
    doc: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        doc = httpx.get(f"{live.url}/v1/billing/invoices/{period}", headers=headers).json()
        if any(line["job_id"] == job["id"] for line in doc["lines"]):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job['id']} was not charged within 60 s: {doc}")


def _reservation(live: Live, headers: dict[str, str]) -> dict[str, Any]:
    """Book 2 of 8 A100s at Zhongwei offered by the operator, two hours from the next one
    (paid at booking: a charge of this month, which the platform earns)."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    window = {"start": hour.isoformat(), "end": (hour + timedelta(hours=2)).isoformat()}
    offer = httpx.post(f"{live.url}/v1/offers", headers=live.operator.headers, timeout=10, json={
        "center": "zhongwei", "model": "a100", "units": 8, "price_cny_per_scu": "3.00",
        "type": "reserved", **window})  # fmt: skip
    assert offer.status_code == 201, offer.text
    booked = httpx.post(f"{live.url}/v1/reservations", headers=headers, timeout=10,
                        json={"offer_id": offer.json()["id"], "units": 2, **window})  # fmt: skip
    assert booked.status_code == 201, booked.text
    reservation: dict[str, Any] = booked.json()
    return reservation


def test_the_settlement_panel_is_a_table_within_the_page(browser: Browser, live: Live) -> None:
    _reservation(live, live.consumer.headers)
    seen = browser("settlement")
    assert "[object" not in seen["text"] and "{" not in seen["text"]
    assert "platform" in seen["providers"]
    assert "Commission" in seen["totals"]
    scroll_width, width = seen["widths"]
    assert scroll_width <= width
    assert seen["panel"]["x"] >= 0 and seen["panel"]["x"] + seen["panel"]["width"] <= width


def test_billing_page_and_opening_an_invoice(browser: Browser, live: Live) -> None:
    paths = httpx.get(f"{live.url}/openapi.json").json()["paths"]
    if "/v1/billing/invoices/{period}" not in paths:
        seen = browser("billing")
        assert seen["unavailable"] is True
        assert "not available" in seen["text"]
        return
    # a consumer's finished job of this month, so the invoice has a line to show
    headers = live.consumer.headers
    # a trial of free tokens, which the job's reported tokens use
    consumer = httpx.get(f"{live.url}/v1/billing/balance", headers=headers).json()["tenant_id"]
    trial = {"tenant": consumer, "card_hours": "0", "tokens": 5_000_000}
    grant = httpx.post(f"{live.url}/v1/billing/quotas", headers=live.operator.headers, json=trial)
    assert grant.status_code == 201, grant.text
    serve = """echo billed; echo '{"tokens": 4321}' >> "$SUANWANG_USAGE_FILE" """
    body = {"name": f"billed-{secrets.token_hex(3)}", "command": serve,
            "kind": "inference", "origin": "beijing", "duration_s": 60,
            "resources": {"count": 1, "cpus": 2}}  # fmt: skip
    job = _charged_job(live, headers, body)
    # and a reservation paid at booking (trading): a line of its own
    booked = _reservation(live, headers)
    period = datetime.now(UTC).strftime("%Y-%m")
    doc = httpx.get(f"{live.url}/v1/billing/invoices/{period}", headers=headers).json()
    seen = browser("billing", key=live.consumer, period=period)
    assert seen["unavailable"] is False
    assert seen["months"] == 6
    assert period in seen["title"]
    assert seen["lines"] == len(doc["lines"])
    assert seen["total"] == f"¥{doc['total_cny']}"
    assert body["name"] in seen["text"]
    assert f"Reservation {booked['id'][:8]}: 2 × a100" in seen["text"]
    [line] = [ln for ln in doc["lines"] if ln["job_id"] == job["id"]]
    assert line["tokens"] == 4321 and seen["job_tokens"] == "4,321"
    assert "tokens (covered so far" in seen["trial"]


TRACES = Path(__file__).resolve().parents[1] / "fixtures" / "traces"


def test_what_if_on_an_uploaded_trace(browser: Browser, live: Live) -> None:
    seen = browser("whatif_trace", bad=str(TRACES / "suanwang_bad.csv"),
                   good=str(TRACES / "suanwang_valid.csv"))  # fmt: skip
    # the bad file is refused before anything runs, naming its lines and fields
    assert "suanwang_bad.csv:3: duration_s:" in seen["refused"]
    assert "suanwang_bad.csv:5: origin:" in seen["refused"]
    assert seen["policies"] == ["nearest", "cheapest"]
    run_id = seen["url"].rsplit("/", 1)[1]
    run = httpx.get(f"{live.url}/v1/whatif/{run_id}", headers=live.operator.headers).json()
    doc = run["result"]
    assert run["trace"]["name"] == "suanwang_valid.csv"
    assert seen["heading"] == f"{doc['jobs']} jobs on china"
    assert doc["workload"]["source"] == "suanwang_valid.csv"
    assert "trace suanwang_valid.csv (suanwang" in seen["about"]
    assert f"{doc['workload']['rows']} rows" in seen["workload"]
    assert seen["completed"] == str(doc["policies"]["nearest"]["completed"])


def test_what_if_on_an_edited_scenario_gives_another_result(browser: Browser, live: Live) -> None:
    center = _centers(live)[0]["id"]
    seen = browser("whatif_edit", jobs=150, tariff_scale=2, pue=2.5, center=center)
    before, after = seen["before"], seen["after"]
    assert before["heading"] == "150 jobs on china" and before["changes"] == []
    assert after["heading"] == "150 jobs on china (edited)"
    assert after["changes"][0] == "grid tariffs × 2"
    pue = after["changes"][1]
    assert pue.startswith(f"{center}: PUE ") and pue.endswith("→ 2.5")
    assert float(after["cost"]) > float(before["cost"])
    runs = {r["id"]: r for r in httpx.get(f"{live.url}/v1/whatif",
                                          headers=live.operator.headers).json()}  # fmt: skip
    assert runs[after["id"]]["request"]["edits"]["tariff_scale"] == 2
    edited = runs[after["id"]]["request"]["edits"]["centers"]
    assert list(edited) == [center] and edited[center]["pue"] == 2.5
    assert {k for k, v in edited[center].items() if v is not None} == {"pue"}  # only what changed
    assert runs[before["id"]]["request"]["edits"] is None


def test_edit_and_delete_a_published_app(browser: Browser, live: Live) -> None:
    app_id = f"edit-{secrets.token_hex(3)}"
    spec = {
        "id": app_id, "name": "Variant calling", "category": "Life sciences",
        "summary": "Call variants.", "parameters": [
            {"name": "threads", "type": "int", "label": "Threads", "default": 8, "min": 1,
             "max": 64}],
        "template": {"kind": "analytics", "stacks": ["cpu"], "resources": {"cpus": "{threads}"},
                     "duration_s": 600, "command": "echo call with {threads} threads"},
    }  # fmt: skip
    r = httpx.post(f"{live.url}/v1/apps", json=spec, headers=live.operator.headers)
    assert r.status_code == 201, r.text
    changed = {**spec, "name": "Variant calling v2", "parameters": [
        *spec["parameters"],
        {"name": "caller", "type": "choice", "label": "Caller", "default": "gatk",
         "choices": ["gatk", "deepvariant"]}]}  # fmt: skip
    changed["template"] = {**spec["template"], "command": "echo {caller} with {threads} threads"}
    seen = browser("edit_app", id=app_id, changed=changed)
    assert seen["builtinManage"] == 0
    assert "cannot be renamed" in seen["refused"]
    assert seen["title"] == "Variant calling v2" and seen["fields"] == 2
    assert app_id not in seen["cards"] and "render-3d" in seen["cards"]
    gone = httpx.get(f"{live.url}/v1/apps/{app_id}", headers=live.operator.headers)
    assert gone.status_code == 404


def test_what_if_on_a_scenario_edited_as_yaml(browser: Browser, live: Live) -> None:
    seen = browser("whatif_yaml", jobs=150)
    assert "scenario.yaml:" in seen["refused"] and "centers[0].pue:" in seen["refused"]
    assert "greater than or equal to 1" in seen["refused"]
    assert "pue: 0.5" in seen["selected"]  # the box selects the line the server named
    assert seen["heading"] == "150 jobs on china"
    assert seen["changes"][0].startswith("scenario china from YAML (")
    run = httpx.get(f"{live.url}/v1/whatif/{seen['id']}", headers=live.operator.headers).json()
    assert run["request"]["scenario_yaml"] is None
    assert seen["energy"] == f"{run['result']['policies']['nearest']['energy_kwh']:.0f}"


def _job_in(live: Live, body: dict[str, Any], states: set[str]) -> dict[str, Any]:
    r = httpx.post(f"{live.url}/v1/jobs", json=body, headers=live.operator.headers, timeout=10)
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 30
    while True:
        job: dict[str, Any] = httpx.get(
            f"{live.url}/v1/jobs/{r.json()['id']}", headers=live.operator.headers, timeout=10
        ).json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, job["state"]
        time.sleep(0.2)


def test_a_placement_shows_the_objective_and_why_each_runner_up_lost(
    browser: Browser, live: Live
) -> None:
    body = {"name": f"why-{secrets.token_hex(3)}", "command": "sleep 30", "kind": "training",
            "origin": "shanghai", "duration_s": 7200, "data_gb": 40,
            "resources": {"count": 1, "cpus": 8}}  # fmt: skip
    job = _job_in(live, body, {"scheduled", "running", "succeeded"})
    d = job["decision"]
    seen = browser("job_page", job=job["id"], shot="why")
    assert seen["reason"] == d["reason"] and "moving 40 GB costs" in d["reason"]
    rows = [d["chosen"], *([d["if_started_now"]] if d.get("if_started_now") else []),
            *d["runners_up"]]  # fmt: skip
    values = [r["objective_cny"] for r in rows]
    assert len(seen["objective"]) == len(rows)
    # amounts that differ never print the same: the choice never looks tied with a runner-up
    for (a, sa), (b, sb) in itertools.combinations(zip(values, seen["objective"], strict=True), 2):
        assert (a == b) == (sa == sb), (a, sa, b, sb)
    assert seen["lost"][-len(d["runners_up"]) :] == [r["lost"] for r in d["runners_up"]]
    assert all(seen["lost"][-len(d["runners_up"]) :])


def test_a_job_nothing_can_run_says_which_constraints_excluded_it(
    browser: Browser, live: Live
) -> None:
    body = {"name": f"nowhere-{secrets.token_hex(3)}", "command": "true", "kind": "inference",
            "origin": "beijing", "latency_ms": 0.2, "duration_s": 600,
            "resources": {"count": 1, "cpus": 8}}  # fmt: skip
    job = _job_in(live, body, {"failed"})
    d = job["decision"]
    assert d["placed"] is False and d["excluded"]["latency"] > 0
    seen = browser("job_page", job=job["id"], shot="nowhere")
    assert seen["reason"] == d["reason"]
    assert dict(seen["excluded"]) == {k: str(n) for k, n in d["excluded"].items() if n}
