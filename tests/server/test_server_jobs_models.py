"""Data functions: lifecycle transitions, races, idempotency under concurrency, engine jobs."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from pinned import NOW
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.hardware import Precision, speed_scu_per_hour
from suanwang.core.jobs import JobKind
from suanwang.core.lifecycle import TRANSITIONS, JobState, TransitionError
from suanwang.core.network import Network
from suanwang.server.database.models import JobEvent, JobRow, Tenant
from suanwang.server.models import job_specs
from suanwang.server.models import jobs as models
from suanwang.server.schemas import JobSpec

PAIRS = [(a, b) for a in JobState for b in JobState]


def _tenant(s: Session, who: Any) -> Tenant:
    t = s.get(Tenant, who.id)
    assert t is not None
    return t


def _new_job(
    sessions: sessionmaker[Session], who: Any, state: JobState, spec: dict[str, Any]
) -> str:
    with sessions() as s:
        job, created = models.submit_job(
            session=s, tenant=_tenant(s, who), spec=JobSpec.model_validate(spec), now=NOW
        )
        assert created
        job.state = state.value  # put it straight into the state under test
        s.commit()
        return job.id


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_transition_follows_the_lifecycle_table(
    sessions: sessionmaker[Session], alice: Any, src: JobState, dst: JobState, body: Any
) -> None:
    job_id = _new_job(sessions, alice, src, body())
    with sessions() as s:
        job = s.get(JobRow, job_id)
        assert job is not None
        if dst in TRANSITIONS[src]:
            event = models.transition(session=s, job=job, to=dst, detail={"why": "test"})
            s.commit()
            assert (event.from_state, event.to_state, event.detail) == (src, dst, {"why": "test"})
            assert job.state == dst
            assert (job.ended_at is not None) == dst.is_terminal
        else:
            with pytest.raises(TransitionError):
                models.transition(session=s, job=job, to=dst)
            s.rollback()
    with sessions() as s:
        n = s.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job_id))
        assert n == (2 if dst in TRANSITIONS[src] else 1)  # submission + the move, if allowed


def test_transition_sets_placement_and_refuses_other_columns(
    sessions: sessionmaker[Session], alice: Any, body: Any
) -> None:
    job_id = _new_job(sessions, alice, JobState.PENDING, body())
    with sessions() as s:
        job = s.get(JobRow, job_id)
        assert job is not None
        with pytest.raises(ValueError, match="cannot set"):
            models.transition(session=s, job=job, to=JobState.SCHEDULED, updates={"state": "x"})
        decision = {"policy": "suanwang", "cost_cny": 12.5}
        models.transition(
            session=s,
            job=job,
            to=JobState.SCHEDULED,
            updates={"center_id": "qingyang", "pool_model": "a100", "decision": decision},
        )
        models.transition(session=s, job=job, to=JobState.RUNNING, updates={"executor_ref": "p1"})
        models.transition(session=s, job=job, to=JobState.FAILED, updates={"exit_code": 3})
        s.commit()
    with sessions() as s:
        job = s.get(JobRow, job_id)
        assert job is not None
        assert (job.center_id, job.pool_model, job.decision) == ("qingyang", "a100", decision)
        assert (job.executor_ref, job.exit_code, job.state) == ("p1", 3, "failed")
        assert job.scheduled_at and job.started_at and job.ended_at
        assert job.submitted_at <= job.scheduled_at <= job.started_at <= job.ended_at


def test_a_stale_copy_cannot_undo_a_concurrent_transition(
    sessions: sessionmaker[Session], alice: Any, body: Any
) -> None:
    """Two workers hold the same pending job; one cancels; the other may not schedule it."""
    job_id = _new_job(sessions, alice, JobState.PENDING, body())
    with sessions() as stale_s:
        stale = stale_s.get(JobRow, job_id)
        assert stale is not None and stale.state == "pending"
        stale_s.commit()  # end its read transaction, keep the (now stale) object
        with sessions() as s:
            job = s.get(JobRow, job_id)
            assert job is not None
            models.cancel_job(session=s, job=job, by=_tenant(s, alice), now=NOW)
            s.commit()
        with pytest.raises(TransitionError, match="from cancelled to scheduled"):
            models.transition(session=stale_s, job=stale, to=JobState.SCHEDULED)


def test_idempotent_submits_racing_make_one_job(
    sessions: sessionmaker[Session], alice: Any, body: Any
) -> None:
    spec = JobSpec.model_validate(body())
    n = 6
    barrier = threading.Barrier(n)
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with sessions() as s:
                tenant = _tenant(s, alice)
                s.commit()
                barrier.wait(timeout=10)
                job, created = models.submit_job(
                    session=s, tenant=tenant, spec=spec, idempotency_key="race", now=NOW
                )
                s.commit()
                results.append((job.id, created))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(JobRow)) == 1


def test_losing_the_insert_race_rereads_the_winner(
    sessions: sessionmaker[Session], alice: Any, monkeypatch: pytest.MonkeyPatch, body: Any
) -> None:
    """The unique constraint decides (INSERT ... ON CONFLICT DO NOTHING): the loser's insert
    stores nothing and it reads the winner's row once; no second job, no second event."""
    spec = JobSpec.model_validate(body())
    with sessions() as s:
        first, _ = models.submit_job(
            session=s, tenant=_tenant(s, alice), spec=spec, idempotency_key="k", now=NOW
        )
        s.commit()
    real = models._by_key
    calls = []

    def spy(session: Session, tenant: Tenant, key: str) -> JobRow | None:
        calls.append(key)
        return real(session, tenant, key)

    monkeypatch.setattr(models, "_by_key", spy)
    with sessions() as s:
        job, created = models.submit_job(
            session=s, tenant=_tenant(s, alice), spec=spec, idempotency_key="k", now=NOW
        )
        s.commit()
    assert (job.id, created, calls) == (first.id, False, ["k"])
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(JobRow)) == 1
        assert s.scalar(select(func.count()).select_from(JobEvent)) == 1


def test_cursor_round_trip_and_garbage() -> None:
    from datetime import UTC, datetime

    at = datetime(2025, 7, 1, 6, 0, 0, 1, tzinfo=UTC)
    job_id = "00000000-0000-4000-8000-000000000000"
    assert models.decode_cursor(models.encode_cursor(at, job_id)) == (at, job_id)
    for bad in ("", "abc", "W10", "WyJ4IiwgMV0", models.encode_cursor(at, "nope")):
        with pytest.raises(models.InvalidCursor):
            models.decode_cursor(bad)


# --------------------------------------------------------------------------- engine jobs


def test_to_core_job_uses_the_reference_chip_rule(
    sessions: sessionmaker[Session], alice: Any, app: Any, body: Any
) -> None:
    net: Network = app.state.network
    catalog = net.scenario.catalog
    gpu_id = _new_job(sessions, alice, JobState.PENDING, body(duration_s=7200, deadline_s=86400))
    cpu_spec = body(duration_s=3600, resources={"cpus": 16}, kind="hpc", stacks=["cpu"])
    cpu_id = _new_job(sessions, alice, JobState.PENDING, cpu_spec)
    with sessions() as s:
        gpu_row, cpu_row = s.get(JobRow, gpu_id), s.get(JobRow, cpu_id)
        assert gpu_row is not None and cpu_row is not None
        gpu = job_specs.to_core_job(gpu_row, net, t0=gpu_row.submitted_at - timedelta(seconds=5))
        cpu = job_specs.to_core_job(cpu_row, net)
    a100 = speed_scu_per_hour(catalog.get("a100"), Precision.FP16)
    assert gpu.job_id == gpu_id and gpu.submit_s == pytest.approx(5.0)
    assert (gpu.cards, gpu.cpus, gpu.kind, gpu.origin) == (8, 32, JobKind.TRAINING, "beijing")
    assert gpu.work_scu == pytest.approx(2.0 * 8 * a100) and a100 == pytest.approx(1.0)
    assert gpu.stacks == frozenset({"cuda"}) and gpu.deadline_s == 86400
    assert gpu.labels == {"tenant": alice.id, "name": "train-llm"}
    cpu_model = next(a for a in catalog.accelerators if a.is_cpu)
    assert cpu.cards == 0 and cpu.precision is Precision.CPU
    assert cpu.work_scu == pytest.approx(16 * speed_scu_per_hour(cpu_model, Precision.CPU))
    for job in (gpu, cpu):
        net.check_job(job)
        assert net.job_class(job).pools.size > 0  # the engine can place both


def test_check_spec_reports_every_problem(app: Any, body: Any) -> None:
    net: Network = app.state.network
    spec = JobSpec.model_validate(
        body(origin="atlantis", resources={"count": 2, "accelerator": "tpu"}, stacks=["x", "cuda"])
    )
    problems = {p.loc: p.msg for p in job_specs.check_spec(spec, net, network_allowed=False)}
    assert set(problems) == {("origin",), ("resources", "accelerator"), ("stacks", 1)}
    assert (
        "'atlantis'" in problems[("origin",)] and "'tpu'" in problems[("resources", "accelerator")]
    )
    assert "'x'" in problems[("stacks", 1)]
    assert job_specs.check_spec(JobSpec.model_validate(body()), net, network_allowed=False) == []
