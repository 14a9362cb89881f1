"""The platform's queue, live (issue 14): under quotas the dispatcher takes pending jobs in
fair-share turn, places a job only where it can start now, and a job that cannot start stays
pending saying why; without quotas it places them oldest first, as before.

One center with an executor (wuhan-ai), jobs of 200 Ascend 910 cards: its pool of 400 holds
two. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.core.governance import Governance, TenantQuota
from suanwang.executors.local import LocalExecutor
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.live import LiveNetwork
from suanwang.server.services.sharing import SHARE, Usage, no_governance


def _live(app: FastAPI, root: Path) -> LiveNetwork:
    return LiveNetwork(
        net=app.state.network,
        signals=app.state.signals.current,
        executors={"wuhan-ai": LocalExecutor(root, "wuhan-ai", cpus=64, cards=16)},
        clock=app.state.signals.clock,
    )


def _quotas(**quota: float) -> Callable[[Session], Governance]:
    gov = Governance(
        tenants={
            n: TenantQuota(name=n, cohort=f"c-{n}", quota_scu_per_h=q) for n, q in quota.items()
        }
    )
    return lambda session: gov


def _big(submit: Callable[..., dict[str, Any]], who: Any, name: str, **kw: Any) -> str:
    job = submit(
        who,
        name=name,
        command="sleep 600",
        resources={"cpus": 8, "cards": 200, "accelerator": "ascend-910", "mem_gb": 64},
        stacks=["cann"],
        kind="inference",  # may not wait: no deferral for price, the order alone decides
        latency_ms=100,
        **kw,
    )
    return str(job["id"])


def _get(client: TestClient, who: Any, job: str) -> dict[str, Any]:
    got: dict[str, Any] = client.get(f"/v1/jobs/{job}", headers=who.headers).json()
    return got


def test_under_quotas_the_next_turn_goes_to_the_tenant_standing_lowest(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    bob: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    first = [_big(submit, alice, f"a{i}") for i in range(3)]  # alice floods first
    late = _big(submit, bob, "b0")
    dispatcher = Dispatcher(
        sessions, _live(app, tmp_path), governance=_quotas(alice=500.0, bob=500.0)
    )
    assert dispatcher.place() == 4
    states = {j: _get(client, alice, j)["state"] for j in first}
    assert _get(client, bob, late)["state"] == "scheduled"  # its turn came before alice's 2nd
    assert list(states.values()) == ["scheduled", "pending", "pending"]
    for j in first[1:]:
        d = _get(client, alice, j)["decision"]
        assert d["placed"] is False and d["waiting"] in ("capacity", SHARE)
        assert "waiting in the platform's queue" in d["reason"]
    waiting = _get(client, alice, first[1])["decision"]
    assert waiting["waiting"] == "capacity"  # it was tried: no pool had room


def test_without_quotas_pending_jobs_are_placed_oldest_first_as_before(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    bob: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    first = [_big(submit, alice, f"a{i}") for i in range(3)]
    late = _big(submit, bob, "b0")
    dispatcher = Dispatcher(sessions, _live(app, tmp_path), governance=no_governance)
    assert dispatcher.place() == 4
    # every job is placed (the third and fourth queue at the center where the wait is least)
    assert [_get(client, alice, j)["state"] for j in first] == ["scheduled"] * 3
    assert _get(client, bob, late)["state"] == "scheduled"
    assert _get(client, alice, first[2])["decision"]["queued"] is True


def test_a_waiting_reason_is_written_once_and_cleared_when_placed(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    jobs = [_big(submit, alice, f"a{i}") for i in range(3)]
    usage = Usage()
    dispatcher = Dispatcher(
        sessions, _live(app, tmp_path), governance=_quotas(alice=500.0), usage=usage
    )
    dispatcher.place()
    assert _get(client, alice, jobs[2])["decision"]["waiting"] == "capacity"
    assert usage.at_s is not None and usage.decayed.get(alice.id, 0.0) == 0.0
    dispatcher.place()  # nothing changed: still waiting, the same reason
    assert _get(client, alice, jobs[2])["state"] == "pending"
    # a job of the third never ran: cancel the first, and the third gets its turn
    assert client.post(f"/v1/jobs/{jobs[0]}/cancel", headers=alice.headers).status_code == 200
    dispatcher.place()
    got = _get(client, alice, jobs[2])
    assert got["state"] == "scheduled" and got["decision"]["waiting"] is None


def test_an_urgent_job_goes_before_older_normal_ones(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    bob: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    older = [_big(submit, alice, f"a{i}") for i in range(2)]
    urgent = _big(submit, bob, "forecast", priority="urgent")
    assert _get(client, bob, urgent)["spec"]["priority"] == "urgent"
    # bob has almost no quota (its job runs on borrowed capacity), yet urgent goes first
    dispatcher = Dispatcher(
        sessions, _live(app, tmp_path), governance=_quotas(alice=500.0, bob=1.0)
    )
    dispatcher.place()
    assert _get(client, bob, urgent)["state"] == "scheduled"
    assert [_get(client, alice, j)["state"] for j in older] == ["scheduled", "pending"]


def test_an_unknown_priority_class_is_a_422_naming_the_field(
    client: TestClient, alice: Any, body: Callable[..., dict[str, Any]]
) -> None:
    r = client.post("/v1/jobs", json=body(priority="vip"), headers=alice.headers)
    assert r.status_code == 422
    assert "priority" in r.text and "urgent" in r.text
