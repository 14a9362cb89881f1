"""What the platform writes is stamped by the clock it is given, never by the wall clock: the
API's (``create_app(clock=)``) for what requests write, a service's ``LiveNetwork.clock`` for
what rounds write. Both are pinned here far from today, so a wall-clock stamp cannot pass."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pinned import NOW
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.core.lifecycle import JobState
from suanwang.executors.local import LocalExecutor
from suanwang.server.database.models import (
    CenterDrain,
    JobEvent,
    JobRow,
    LedgerTransaction,
    QuotaGrant,
    RunFence,
)
from suanwang.server.models.jobs import transition
from suanwang.server.services.live import LiveNetwork
from suanwang.server.services.reconciler import Reconciler
from suanwang.server.services.runs import give_up_run

#: The API's clock moves a microsecond per reading (pinned.stepping): far less than this.
SOON = timedelta(seconds=1)


def _by_api(at: datetime) -> bool:
    return NOW <= at < NOW + SOON


def test_what_requests_write_is_stamped_by_the_apps_clock(
    client: TestClient, sessions: sessionmaker[Session], alice: Any, operator: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    job = submit(alice)
    assert _by_api(datetime.fromisoformat(job["submitted_at"]))
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers).status_code == 200
    r = client.post("/v1/billing/topups", json={"tenant": "alice", "amount_cny": "5"},
                    headers=operator.headers)  # fmt: skip
    assert r.status_code == 201, r.text
    r = client.post("/v1/billing/quotas", json={"tenant": "alice", "card_hours": "1"},
                    headers=operator.headers)  # fmt: skip
    assert r.status_code == 201, r.text
    r = client.post("/v1/centers/zhongwei/drain", json={"reason": "test"},
                    headers=operator.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    with sessions() as s:
        row = s.get_one(JobRow, job["id"])
        stamps = [row.submitted_at, row.ended_at, row.updated_at]
        stamps += [e.at for e in s.scalars(select(JobEvent).where(JobEvent.job_id == row.id))]
        stamps += list(s.scalars(select(LedgerTransaction.created_at)))
        stamps += list(s.scalars(select(QuotaGrant.granted_at)))
        stamps += list(s.scalars(select(CenterDrain.drained_at)))
    assert len(stamps) == 8 and all(t is not None and _by_api(t) for t in stamps), stamps


def test_what_service_rounds_write_is_stamped_by_their_clock(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], alice: Any,
    submit: Callable[..., dict[str, Any]], tmp_path: Path,
) -> None:  # fmt: skip
    later = NOW + timedelta(days=40, hours=3)  # another month, another hour
    live = LiveNetwork(
        net=app.state.network, signals=app.state.signals.current,
        executors={"zhongwei": LocalExecutor(tmp_path / "c", "zhongwei", cpus=8, cards=8)},
        clock=lambda: later,
    )  # fmt: skip
    lost, done = submit(alice), submit(alice)
    with sessions.begin() as s:
        for job_id in (lost["id"], done["id"]):
            transition(session=s, job=s.get_one(JobRow, job_id), to=JobState.SCHEDULED, now=NOW,
                       detail={"center": "zhongwei", "pool": "a100"},
                       updates={"center_id": "zhongwei", "pool_model": "a100",
                                "executor_ref": f"zhongwei/{job_id}"})  # fmt: skip
        give_up_run(s, s.get_one(JobRow, lost["id"]), "gone", live)  # failover's step
        transition(session=s, job=s.get_one(JobRow, done["id"]), to=JobState.FAILED, now=NOW,
                   updates={"executor_ref": None})  # fmt: skip
    Reconciler(sessions, live).run_once()  # charges the failed job
    with sessions() as s:
        events = list(  # in the order written: a select without ORDER BY has none on PostgreSQL
            s.scalars(select(JobEvent).where(JobEvent.job_id == lost["id"]).order_by(JobEvent.id))
        )
        assert [e.to_state for e in events[-2:]] == ["lost", "pending"]
        assert all(e.at == later for e in events[-2:])
        assert s.scalars(select(RunFence.created_at)).one() == later
        charge = s.scalars(
            select(LedgerTransaction).where(LedgerTransaction.kind == "charge")
        ).one()
        assert charge.job_id == done["id"] and charge.created_at == later
        assert s.get_one(JobRow, done["id"]).billed_at == later
