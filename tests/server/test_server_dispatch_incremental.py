"""The placer keeps the pending and active jobs between rounds (issue 14): after any
interleaving of submissions, cancellations, hand-overs, run ends, moves and preemptions, what it
keeps is what the database says (a view rebuilt from scratch, and the rows a round would read
from the database), so its rounds decide as a fresh dispatcher's would. A new term rebuilds it.

Runs on SQLite and PostgreSQL, with the app's API for submissions and cancellations, the real
dispatcher and local executor for placements and hand-overs, and ``transition`` (as the
reconciler, failover and preemption use it) for run ends, moves and preemptions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.core.governance import Governance, TenantQuota
from suanwang.core.lifecycle import JobState
from suanwang.executors.local import LocalExecutor
from suanwang.scheduling.queue import pool_families, pool_hubs
from suanwang.server.database.models import JobRow
from suanwang.server.models.jobs import Transitions, transition
from suanwang.server.services.dispatcher import Dispatcher, _Round
from suanwang.server.services.jobs_view import JobsView
from suanwang.server.services.live import LiveNetwork, _run_starts, active_rows


def _live(app: FastAPI, root: Path, centers: tuple[str, ...] = ("wuhan-ai",)) -> LiveNetwork:
    return LiveNetwork(
        net=app.state.network,
        signals=app.state.signals.current,
        executors={c: LocalExecutor(root / c, c, cpus=64, cards=16) for c in centers},
        clock=app.state.signals.clock,
    )


def _quotas(session: Session) -> Governance:
    names = ("alice", "bob")
    return Governance(
        tenants={n: TenantQuota(name=n, cohort=f"c-{n}", quota_scu_per_h=300.0) for n in names}
    )


def _job(cards: int) -> dict[str, Any]:
    return {
        "command": "true",
        "resources": {"cpus": 2, "cards": cards, "accelerator": "ascend-910", "mem_gb": 8},
        "stacks": ["cann"],
        "kind": "inference",
        "latency_ms": 100,
    }


def _same_as_database(dispatcher: Dispatcher, session: Session) -> None:
    """The dispatcher's view, refreshed, is a view rebuilt from scratch and what a round
    reads from the database."""
    view = dispatcher.view
    assert view is not None
    view.refresh(session, dispatcher.term)
    fresh = JobsView(dispatcher.live.clock)
    fresh.refresh(session, dispatcher.term)
    kept = view.oldest(10_000)
    assert kept == fresh.oldest(10_000)
    assert kept == dispatcher._read_pending(session, 10_000)
    assert view.active_rows() == fresh.active_rows() == active_rows(session)
    again = [r[0] for r in active_rows(session) if r[8] and r[2] == JobState.RUNNING.value]
    assert view.run_starts(session) == _run_starts(session, again)
    _kept_entries_are_fresh(dispatcher, session)
    _kept_held_are_fresh(dispatcher, session)


def _kept_held_are_fresh(dispatcher: Dispatcher, session: Session) -> None:
    """The runs holding units that the live network keeps from its last state (the same
    objects while nothing of them changed) are those it makes from scratch, and the state is
    the same: what it keeps of each active job's row is what the row gives now."""
    live, signals = dispatcher.live, dispatcher.live.signals()
    kept: list[Any] = []
    state = live.state(session, signals, None, kept, dispatcher.view)
    again: list[Any] = []
    live._rows = {}
    fresh = live.state(session, signals, None, again, dispatcher.view)
    assert kept == again
    assert (state.free == fresh.free).all() and (state.committed == fresh.committed).all()


def _kept_entries_are_fresh(dispatcher: Dispatcher, session: Session) -> None:
    """The queue entries the dispatcher kept from its last round (engine job, feasible pools
    at open centers, what a run weighs there) are what a new dispatcher makes of the jobs
    still pending."""
    live = dispatcher.live
    fresh = Dispatcher(dispatcher.sessions, live, governance=_quotas)
    rows, specs = fresh._pending(session, 10_000)
    signals = live.signals()
    round_ = _Round(session, Transitions(live.clock()), signals, live.open_centers(), specs,
                    live, live.per_tenant())  # fmt: skip
    fresh._keep(round_)
    families, hubs = pool_families(live.net), pool_hubs(live.net)
    pending = {r.id: r for r in rows}
    for job_id, (t0, kept) in dispatcher._entries.items():
        job, info, where = kept.job, kept.info, kept.where
        row = pending.get(job_id)
        if row is None:  # placed or gone since: dropped at the next round
            continue
        assert t0 == signals.start
        got = fresh._entry(round_, row, families, hubs)
        assert got is not None
        assert got.job == job
        assert got.info.pools.tolist() == info.pools.tolist()
        assert got.where.rate.tolist() == where.rate.tolist()
        assert list(got.where.family) == list(where.family)
        assert list(got.where.hub) == list(where.hub)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["submit", "cancel", "place", "hand", "run", "end", "move", "preempt"]),
        st.integers(0, 10_000),
    ),
    min_size=1,
    max_size=10,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
def test_the_jobs_kept_between_rounds_are_the_databases(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    bob: Any,
    submit: Callable[..., dict[str, Any]],
    ops: list[tuple[str, int]],
) -> None:
    live = _live(app, tmp_path)
    dispatcher = Dispatcher(sessions, live, governance=_quotas)
    clock = live.clock
    dispatcher.place()  # the view is built here; each example goes on from the database
    assert dispatcher.view is not None and dispatcher.view.rebuilds == 1

    def pick(state: str, k: int) -> tuple[str, str, int] | None:
        """A job in ``state``: its id, tenant and attempt."""
        with sessions() as s:
            stmt = select(JobRow.id, JobRow.tenant_id, JobRow.attempt).where(JobRow.state == state)
            rows = sorted((i, t, a) for i, t, a in s.execute(stmt))
        return rows[k % len(rows)] if rows else None

    def move(state: str, k: int, to: JobState, **updates: Any) -> None:
        row = pick(state, k)
        if row is None:
            return
        with sessions.begin() as s:
            got = s.get(JobRow, row[0], with_for_update=True)
            assert got is not None
            if "attempt" in updates:
                updates["attempt"] = got.attempt + 1
            transition(session=s, now=clock(), job=got, to=to, detail={"reason": "test"},
                       updates=updates)  # fmt: skip

    for op, k in ops:
        if op == "submit":
            for i in range(1 + k % 3):
                submit(alice if (k + i) % 2 else bob, **_job(4 * (1 + (k + i) % 4)))
        elif op == "cancel":
            row = pick(("pending", "scheduled", "running")[k % 3], k)
            if row is not None:
                who = alice if row[1] == alice.id else bob
                r = client.post(f"/v1/jobs/{row[0]}/cancel", headers=who.headers)
                assert r.status_code == 200, r.text
        elif op == "place":
            dispatcher.place()
        elif op == "hand":
            dispatcher.hand_over()  # sets executor references: no event
        elif op == "run":
            move("scheduled", k, JobState.RUNNING)
        elif op == "end":
            move("running", k, JobState.SUCCEEDED)
        elif op == "move":  # a center refused it, or failover: placed again
            move("scheduled", k, JobState.PENDING,
                 center_id=None, pool_model=None, start_at=None, executor_ref=None)  # fmt: skip
        else:  # preempted: stopped and placed again from the start
            move("running", k, JobState.MIGRATING, center_id=None, pool_model=None,
                 executor_ref=None, start_at=None, attempt=0)  # fmt: skip
        with sessions.begin() as session:
            _same_as_database(dispatcher, session)
    assert dispatcher.view.rebuilds == 1  # kept up to date, never read again from scratch


def test_a_new_term_or_a_failed_round_reads_every_job_again(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    live = _live(app, tmp_path)
    dispatcher = Dispatcher(sessions, live, governance=_quotas, term=1)
    submit(alice, **_job(8))
    dispatcher.place()
    view = dispatcher.view
    assert view is not None and view.rebuilds == 1
    dispatcher.place()
    assert view.rebuilds == 1
    # another placer (term 2) wrote meanwhile, what no event says: a waiting reason
    with sessions.begin() as session:
        row = session.scalars(select(JobRow)).one()
        assert row.state == "scheduled"
        transition(session=session, now=live.clock(), job=row, to=JobState.PENDING,
                   detail={"reason": "test"}, updates={"center_id": None})  # fmt: skip
    with sessions.begin() as session:
        row = session.scalars(select(JobRow)).one()
        row.decision = {"placed": False, "reason": "elsewhere", "waiting": "quota used up"}
    dispatcher.term = 3  # this process elected again, after the other
    with sessions.begin() as session:
        view.refresh(session, dispatcher.term)
        assert view.rebuilds == 2
        assert [p.waiting for p in view.oldest(10)] == ["quota used up"]

    def refused(session: Session) -> None:
        raise RuntimeError("fenced")

    dispatcher.fence = refused
    with pytest.raises(RuntimeError, match="fenced"):
        dispatcher.place()
    dispatcher.fence = None
    dispatcher.place()
    assert view.rebuilds == 3  # the failed round's writes rolled back: read again
    with sessions.begin() as session:
        _same_as_database(dispatcher, session)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite: no row locks
def test_a_job_another_transaction_holds_is_left_to_the_next_round(
    client: TestClient,
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
    db_url: str,
) -> None:
    """PostgreSQL: the rows a round takes from its kept view are locked ``FOR UPDATE SKIP
    LOCKED``; one another transaction holds (a cancellation under way) is not placed."""
    assert db_url.startswith("postgresql")  # on SQLite the round holds the write lock
    held, free = (str(submit(alice, **_job(4))["id"]) for _ in range(2))
    dispatcher = Dispatcher(sessions, _live(app, tmp_path), governance=_quotas)
    decided: list[int] = []
    with sessions.begin() as other:
        other.get(JobRow, held, with_for_update=True)
        round_ = threading.Thread(target=lambda: decided.append(dispatcher.place()))
        round_.start()
        round_.join(30)
        waited = round_.is_alive()
    round_.join()
    assert not waited, "the round waited for a row another transaction holds"
    assert decided == [1]
    with sessions() as s:
        assert s.get(JobRow, free).state == "scheduled"  # type: ignore[union-attr]
        assert s.get(JobRow, held).state == "pending"  # type: ignore[union-attr]
    assert dispatcher.place() == 1
    with sessions() as s:
        assert s.get(JobRow, held).state == "scheduled"  # type: ignore[union-attr]


def test_kept_queue_entries_follow_the_open_centers(
    sessions: sessionmaker[Session],
    app: FastAPI,
    tmp_path: Path,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    """A center that stops answering between rounds: the queue entries kept from the last
    round (each job's feasible pools at open centers) are made again without it."""
    live = _live(app, tmp_path, ("zhangjiakou", "zhongwei", "horinger"))
    net = live.net
    ids = {str(submit(alice)["id"]) for _ in range(3)}
    dispatcher = Dispatcher(sessions, live, governance=_quotas)

    def entries() -> dict[str, set[str]]:
        """A round's queue entries: the centers of each job's feasible pools."""
        with sessions.begin() as session:
            rows, specs = dispatcher._pending(session, 100)
            round_ = _Round(session, Transitions(live.clock()), live.signals(),
                            live.open_centers(), specs, live, live.per_tenant())  # fmt: skip
            dispatcher._keep(round_)
            families, hubs = pool_families(net), pool_hubs(net)
            out = {}
            for row in rows:
                got = dispatcher._entry(round_, row, families, hubs)
                assert got is not None
                out[row.id] = {net.center_ids[int(net.pool_center[p])] for p in got.info.pools}
            _kept_entries_are_fresh(dispatcher, session)
        return out

    first = entries()
    assert first.keys() == ids == dispatcher._entries.keys()
    assert entries() == first  # kept: the same
    down = sorted(set().union(*first.values()))[0]
    live.health.failed(down, "unreachable")
    again = entries()
    assert again.keys() == ids
    assert all(down not in got and got == first[i] - {down} for i, got in again.items())
