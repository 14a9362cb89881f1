"""Group commit of submissions: batch answers, concurrent requests sharing transactions, a bad
request failing alone, holds still per request."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pinned import NOW
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from suanwang.billing.ledger import InsufficientBalance
from suanwang.server.database.models import JobEvent, JobRow, Tenant, TenantRole
from suanwang.server.models import jobs as models
from suanwang.server.models.billing.config import set_config
from suanwang.server.models.jobs import IdempotencyConflict, SubmitRequest
from suanwang.server.schemas import JobSpec
from suanwang.server.submitter import Submitter


def _tenant(sessions: sessionmaker[Session], who: Any) -> Tenant:
    with sessions() as s:
        t = s.get(Tenant, who.id)
        assert t is not None
        return t


def _spec(body: Any, **overrides: Any) -> JobSpec:
    return JobSpec.model_validate(body(**overrides))


def _counts(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with sessions() as s:
        jobs = s.scalar(select(func.count()).select_from(JobRow)) or 0
        events = s.scalar(select(func.count()).select_from(JobEvent)) or 0
        return jobs, events


def test_a_batch_answers_each_request_as_single_submits_would(
    sessions: sessionmaker[Session], alice: Any, bob: Any, body: Any
) -> None:
    a, b = _tenant(sessions, alice), _tenant(sessions, bob)
    with sessions() as s:  # a job stored earlier under key "old"
        earlier, _ = models.submit_job(
            session=s, tenant=a, spec=_spec(body), idempotency_key="old", now=NOW
        )
        s.commit()
    items = [
        SubmitRequest(a, _spec(body), "k1"),  # new
        SubmitRequest(a, _spec(body), "k1"),  # same key, same spec: a replay of the first
        SubmitRequest(a, _spec(body, name="other"), "k1"),  # same key, other spec: conflict
        SubmitRequest(a, _spec(body), None),  # no key: always new
        SubmitRequest(b, _spec(body), "k1"),  # another tenant's key space: new
        SubmitRequest(a, _spec(body), "old"),  # a replay of the stored job
        SubmitRequest(a, _spec(body, name="x"), "old"),  # conflict with the stored job
    ]
    with sessions() as s:
        answers = models.submit_jobs(session=s, items=items, now=NOW)
        s.commit()
    ok = [x for x in answers if not isinstance(x, IdempotencyConflict)]
    assert len(ok) == 5
    first, replay, conflict, nokey, other, old, old_conflict = answers
    assert not isinstance(first, IdempotencyConflict) and first[1] is True
    assert not isinstance(replay, IdempotencyConflict)
    assert replay == (first[0], False)
    assert isinstance(conflict, IdempotencyConflict)
    assert isinstance(old_conflict, IdempotencyConflict)
    assert not isinstance(nokey, IdempotencyConflict) and nokey[1] is True
    assert not isinstance(other, IdempotencyConflict) and other[1] is True
    assert other[0].tenant_id == b.id
    assert not isinstance(old, IdempotencyConflict)
    assert (old[0].id, old[1]) == (earlier.id, False)
    assert _counts(sessions) == (4, 4)  # earlier + first + nokey + other, one event each


def test_concurrent_submissions_share_transactions_and_each_is_stored_once(
    app: FastAPI, sessions: sessionmaker[Session], alice: Any, body: Any
) -> None:
    tenant = _tenant(sessions, alice)
    submitter = Submitter(
        sessions, app.state.network, clock=app.state.clock, max_batch=16, flushers=2
    )
    n = 120

    async def run() -> list[tuple[JobRow, bool]]:
        reqs = [
            SubmitRequest(tenant, _spec(body, name=f"j{i % 60}"), f"key-{i % 60}") for i in range(n)
        ]
        return await asyncio.gather(*(submitter.submit(r) for r in reqs))

    answers = asyncio.run(run())
    created = [job for job, new in answers if new]
    assert len(created) == 60  # every key twice: one stores, the other replays it
    by_key = {job.idempotency_key: job.id for job in created}
    assert all(by_key[job.idempotency_key] == job.id for job, _ in answers)
    assert _counts(sessions) == (60, 60)
    assert submitter.stored == n  # every request answered by a batch (none fell back)
    assert 1 < submitter.batches < n  # batched: fewer transactions than requests


def test_a_request_the_database_refuses_fails_alone(
    app: FastAPI, sessions: sessionmaker[Session], alice: Any, body: Any
) -> None:
    tenant = _tenant(sessions, alice)
    ghost = Tenant(id="00000000-0000-0000-0000-000000000000", name="ghost", role="consumer")
    submitter = Submitter(sessions, app.state.network, clock=app.state.clock)
    items = [
        SubmitRequest(tenant, _spec(body), "a"),
        SubmitRequest(ghost, _spec(body), "b"),  # no such tenant: the foreign key refuses it
        SubmitRequest(tenant, _spec(body), "c"),
    ]
    answers = submitter.store(items)
    assert isinstance(answers[1], Exception)
    good = [answers[0], answers[2]]
    assert all(not isinstance(x, BaseException) and x[1] for x in good)
    assert _counts(sessions) == (2, 2)


def test_holds_are_taken_per_request_and_a_refused_hold_stores_nothing(
    app: FastAPI,
    sessions: sessionmaker[Session],
    alice: Any,
    make_tenant: Any,
    body: Any,
) -> None:
    with sessions() as s:
        set_config(session=s, billing_required=True, now=NOW)
        s.commit()
    ops = _tenant(sessions, make_tenant(TenantRole.OPERATOR, "ops"))  # operators never prepay
    poor = _tenant(sessions, alice)
    submitter = Submitter(sessions, app.state.network, clock=app.state.clock)
    answers = submitter.store(
        [SubmitRequest(ops, _spec(body), "a"), SubmitRequest(poor, _spec(body), "b")]
    )
    first, second = answers
    assert not isinstance(first, BaseException) and first[1] is True
    assert isinstance(second, InsufficientBalance)
    assert _counts(sessions) == (1, 1)


@pytest.mark.parametrize("bad", [0, -1])
def test_batch_limits_must_be_positive(app: FastAPI, bad: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        Submitter(app.state.sessions, app.state.network, clock=app.state.clock, max_batch=bad)


def _is_async(call: Any) -> bool:
    target = call if inspect.isfunction(call) else type(call).__call__
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def _thread_hops(dependant: Any) -> list[str]:
    """The plain ``def`` callables in a dependency tree: FastAPI runs each in a worker thread,
    one hop per request."""
    out = []
    for sub in dependant.dependencies:
        if not _is_async(sub.call):
            out.append(getattr(sub.call, "__qualname__", repr(sub.call)))
        out += _thread_hops(sub)
    return out


def test_a_submission_hops_to_a_thread_only_to_write(app: FastAPI) -> None:
    """Job submission is the hot path (docs/benchmarks.md): its dependencies, the app's own
    included, run on the event loop. A plain ``def`` dependency of every route once cut
    submissions per second by 40 %."""
    routes = []
    for top in app.routes:  # routers are included as they are, or flattened (older FastAPI)
        inner = getattr(top, "original_router", None)
        routes += inner.routes if inner is not None else [top]
    (route,) = [
        r for r in routes
        if isinstance(r, APIRoute) and r.path == "/v1/jobs" and "POST" in r.methods
    ]  # fmt: skip
    assert _is_async(route.endpoint)
    app_wide = [d.dependency for d in app.router.dependencies]
    assert app_wide and [getattr(c, "__qualname__", c) for c in app_wide if not _is_async(c)] == []
    assert _thread_hops(route.dependant) == []
