"""/metrics (operators, Prometheus text)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.core.lifecycle import JobState
from suanwang.server.database.models import JobEvent, JobRow
from suanwang.server.models.jobs import transition


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
    assert {"suanwang_decisions", "suanwang_dispatch_latency_seconds",
            "suanwang_center_utilization", "suanwang_center_price_cny_per_kwh",
            "suanwang_center_green_fraction", "suanwang_green_share"} <= set(families)  # fmt: skip
    centers = {s.labels["center"] for s in families["suanwang_center_green_fraction"].samples}
    assert "zhongwei" in centers
    assert client.get("/metrics", headers=alice.headers).status_code == 403
    assert client.get("/metrics").status_code == 401


def _moved(
    sessions: sessionmaker[Session], job_id: str, *steps: tuple[JobState, dict[str, Any]]
) -> JobRow:
    with sessions() as s:
        row = s.get(JobRow, job_id)
        assert row is not None
        for to, detail in steps:
            updates = {"center_id": "zhongwei", "pool_model": "a100"}
            transition(session=s, job=row, to=to, detail=detail,
                       updates=updates if to is JobState.SCHEDULED else None)  # fmt: skip
        s.commit()
        return row


def _scrape(client: TestClient, operator: Any) -> str:
    r = client.get("/metrics", headers=operator.headers)
    assert r.status_code == 200, r.text
    return r.text


def test_metrics_pass_promtool_and_count_events_as_counters(
    client: TestClient, sessions: sessionmaker[Session], operator: Any, alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    """Every family, with jobs that were placed, run, lost and asked to move, passes
    ``promtool check metrics``; the counts of events are counters (``_total``), not gauges."""
    S, R, L, M = JobState.SCHEDULED, JobState.RUNNING, JobState.LOST, JobState.MIGRATING
    ids = [submit(alice, name=f"j{i}")["id"] for i in range(4)]
    _moved(sessions, ids[0], (S, {}))
    _moved(sessions, ids[1], (S, {}), (R, {}))
    _moved(sessions, ids[2], (S, {}), (R, {}), (L, {"why": "center unreachable"}))
    _moved(sessions, ids[3], (S, {}), (R, {}), (M, {}))
    with sessions.begin() as s:  # what failover and migration record next to transitions
        for detail in ({"event": "checkpoint_requested", "why": "drain", "move_cost_cny": 1.5},
                       {"event": "fenced"}):  # fmt: skip
            s.add(JobEvent(job_id=ids[3], from_state="running", to_state="running", detail=detail))
    text = _scrape(client, operator)
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: Debian's prometheus package has it (.ci/run installs it)"
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), (
        lint.stdout + lint.stderr
    )
    families = {f.name: f for f in text_string_to_metric_families(text)}
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values() for s in f.samples
    }  # fmt: skip
    for name in ("decisions", "failovers", "migrations", "migration_requests", "fenced_runs"):
        assert families[f"suanwang_{name}"].type == "counter", name
    assert values[("suanwang_decisions_total", ())] == 4
    assert values[("suanwang_failovers_total", ())] == 1
    assert values[("suanwang_migrations_total", ())] == 1
    assert values[("suanwang_fenced_runs_total", ())] == 1
    assert values[("suanwang_migration_requests_total", (("why", "drain"),))] == 1
    assert values[("suanwang_migration_planned_cost_cny", ())] == 1.5
    assert not any(name.endswith("_created") for name, _ in values)  # counts as old as the db


def test_dispatch_latency_covers_the_last_hour_of_the_apps_clock(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], operator: Any,
    alice: Any, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    """The summary takes "the last hour" from the API's clock (tests pin it), not the wall's."""
    now = app.state.signals.clock()
    recent, old = (submit(alice, name=n)["id"] for n in ("recent", "old"))
    for job_id, scheduled in ((recent, now - timedelta(minutes=30)),
                              (old, now - timedelta(hours=2))):  # fmt: skip
        row = _moved(sessions, job_id, (JobState.SCHEDULED, {}))
        with sessions.begin() as s:
            got = s.get(JobRow, row.id)
            assert got is not None
            got.submitted_at = scheduled - timedelta(seconds=90)
            got.scheduled_at = scheduled
    families = {f.name: f for f in text_string_to_metric_families(_scrape(client, operator))}
    summary = {s.name: s.value for s in families["suanwang_dispatch_latency_seconds"].samples}
    assert summary["suanwang_dispatch_latency_seconds_count"] == 1
    assert summary["suanwang_dispatch_latency_seconds_sum"] == 90
