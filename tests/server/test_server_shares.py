"""Centers shared among workers (PostgreSQL): each center held by one live worker that serves
it, the one rendezvous hashing ranks first; rebalanced as workers come and go, never held by
two at once (their advisory locks), even while their member lists disagree."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from suanwang.server.cluster import STALE_AFTER_S, Member
from suanwang.server.database.session import make_engine, migrate, session_factory
from suanwang.server.shares import LOCK_NAMESPACE, PgShares, holder_of

CENTERS = tuple(f"c{i:02d}" for i in range(16))
T0 = datetime(2026, 12, 31, 20, 10, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Worker:
    """One worker's shares and heartbeat, on an engine (a connection pool) of its own."""

    shares: PgShares
    member: Member
    engine: Engine
    alive: bool = True
    paused: bool = False  # alive, its connection too, but no rounds

    def round(self) -> frozenset[str]:
        """What the cluster loop does each heartbeat: refresh the shares, then beat."""
        held = self.shares.refresh() or frozenset()
        self.member.beat()
        return held


@dataclass
class Cluster:
    url: str
    clock: Clock = field(default_factory=Clock)
    workers: dict[str, Worker] = field(default_factory=dict)

    def add(self, name: str, serves: tuple[str, ...] = CENTERS) -> Worker:
        engine = make_engine(self.url)
        sessions = session_factory(engine)
        shares = PgShares(engine, sessions, name, frozenset(serves), self.clock)
        member = Member(sessions, "worker", self.clock, id=name, serves=frozenset(serves),
                        holds=shares.held)  # fmt: skip
        w = self.workers[name] = Worker(shares, member, engine)
        return w

    def rounds(self, n: int = 3) -> None:
        """``n`` heartbeats of every live worker, one after another (checking each step)."""
        for _ in range(n):
            for w in self.workers.values():
                if w.alive and not w.paused:
                    w.round()
                    self.check_disjoint()
            self.clock.now += timedelta(seconds=2)

    def held(self) -> dict[str, frozenset[str]]:
        return {n: w.shares.held() or frozenset() for n, w in self.workers.items() if w.alive}

    def check_disjoint(self) -> None:
        seen: dict[str, str] = {}
        for name, held in self.held().items():
            for c in held:
                assert c not in seen, f"{c} held by {seen[c]} and {name}"
                seen[c] = name
        # and the server agrees: one holder of each center's lock at most
        with next(iter(self.workers.values())).engine.connect() as conn:
            # (this schema's centers only: other platforms may share the database)
            n = conn.scalar(
                text("SELECT count(*) FROM pg_locks l, unnest(CAST(:cs AS text[])) AS c(id) "
                     "WHERE l.locktype = 'advisory' AND l.granted "
                     "AND l.classid::text::bigint = :ns AND l.objid::text::bigint = "
                     "(hashtext(current_schema() || '/' || c.id)::bigint + 4294967296) "
                     "% 4294967296"), {"ns": LOCK_NAMESPACE, "cs": list(CENTERS)},
            )  # fmt: skip
        assert n == len(seen)

    def end_session(self, w: Worker) -> None:
        """End ``w``'s lock connection on the server (``pg_terminate_backend``)."""
        with next(iter(self.workers.values())).engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": w.shares.backend_pid})

    def close(self) -> None:
        for w in self.workers.values():
            w.shares.close()
            w.engine.dispose()


@pytest.fixture
def cluster(pg_schema: Callable[..., AbstractContextManager[str]]) -> Iterator[Cluster]:
    with pg_schema("sh") as url:
        migrate(url)
        c = Cluster(url)
        try:
            yield c
        finally:
            c.close()


def expected(members: dict[str, tuple[str, ...]]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {m: set() for m in members}
    for c in CENTERS:
        h = holder_of(c, [m for m, s in members.items() if c in s])
        if h is not None:
            out[h].add(c)
    return {m: frozenset(s) for m, s in out.items()}


def test_every_center_is_held_once_by_its_rendezvous_holder(cluster: Cluster) -> None:
    for name in ("a", "b", "c"):
        cluster.add(name)
    cluster.rounds()
    held = cluster.held()
    assert held == expected(dict.fromkeys(held, CENTERS))
    assert frozenset().union(*held.values()) == frozenset(CENTERS)
    assert all(held.values())  # 16 centers over 3 workers: each has some


def test_a_worker_joining_takes_its_share_only_after_the_holders_let_go(cluster: Cluster) -> None:
    cluster.add("a")
    cluster.add("b")
    cluster.rounds()
    before = cluster.held()
    cluster.add("c")
    cluster.rounds()  # each step checked: never two holders of a center
    after = cluster.held()
    assert after == expected(dict.fromkeys(after, CENTERS))
    for name in ("a", "b"):  # the old workers only gave centers to the new one
        assert after[name] <= before[name]
    assert after["c"] == (before["a"] - after["a"]) | (before["b"] - after["b"])


def test_a_dead_worker_frees_its_centers_and_the_next_in_rank_takes_them(
    cluster: Cluster,
) -> None:
    for name in ("a", "b", "c"):
        cluster.add(name)
    cluster.rounds()
    dead = cluster.workers["b"]
    lost = cluster.held()["b"]
    dead.alive = False
    assert dead.shares.backend_pid is not None
    cluster.end_session(dead)  # as when it dies
    # until its heartbeat is stale the others leave its centers alone: nobody holds them
    cluster.rounds(1)
    held = cluster.held()
    assert not (held["a"] | held["c"]) & lost
    cluster.clock.now += timedelta(seconds=STALE_AFTER_S)
    cluster.rounds(2)
    held = cluster.held()
    assert held == expected({"a": CENTERS, "c": CENTERS})
    assert held["a"] | held["c"] == frozenset(CENTERS)


def test_a_paused_worker_keeps_its_centers_until_its_connection_is_gone(
    cluster: Cluster,
) -> None:
    for name in ("a", "b", "c"):
        cluster.add(name)
    cluster.rounds()
    paused = cluster.workers["b"]
    kept = cluster.held()["b"]
    paused.paused = True  # no more rounds: its heartbeat goes stale, its connection lives
    cluster.clock.now += timedelta(seconds=STALE_AFTER_S)
    cluster.rounds(2)  # the others want its centers but their locks are not free
    held = cluster.held()
    assert not (held["a"] | held["c"]) & kept
    assert held["b"] == kept
    cluster.end_session(paused)  # its connection dies now
    paused.alive = False
    cluster.rounds(1)
    assert cluster.held()["a"] | cluster.held()["c"] == frozenset(CENTERS)


def test_a_worker_whose_lock_connection_died_holds_nothing_until_it_has_it_again(
    cluster: Cluster,
) -> None:
    cluster.add("a")
    b = cluster.add("b")
    cluster.rounds()
    share = b.shares.held()
    assert share
    cluster.end_session(b)  # its locks go with its session; the worker lives on
    b.round()  # nothing to take or let go, but it finds the connection dead
    assert b.shares.held() == frozenset()
    cluster.add("c")  # a member joining may take any of them now: their locks are free
    cluster.rounds()  # each step checked: never two holders
    held = cluster.held()
    assert held == expected(dict.fromkeys(held, CENTERS))
    assert held["b"] and held["b"] <= share  # b holds its share again, less what c took


def test_a_center_goes_only_to_workers_that_serve_it(cluster: Cluster) -> None:
    cluster.add("a", serves=CENTERS[:8])
    cluster.add("b", serves=CENTERS[4:])
    cluster.rounds()
    held = cluster.held()
    assert held["a"] >= frozenset(CENTERS[:4]) and held["b"] >= frozenset(CENTERS[8:])
    assert held == expected({"a": CENTERS[:8], "b": CENTERS[4:]})


def test_a_worker_that_stops_lets_go_at_once_and_says_what_it_held(cluster: Cluster) -> None:
    a, b = cluster.add("a"), cluster.add("b")
    cluster.rounds()
    with a.member.sessions() as s:
        from suanwang.server.database.models import ClusterMember

        rows = {m.id: m for m in s.query(ClusterMember)}
    assert rows["a"].serves == list(CENTERS)
    assert set(rows["a"].holds or ()) == a.shares.held()
    a.shares.close()
    a.member.leave()
    a.alive = False
    cluster.rounds(1)  # b sees a gone (it left) and takes everything at once
    assert b.shares.held() == frozenset(CENTERS)


@given(
    centers=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=30, unique=True),
    members=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=6, unique=True),
    new=st.text(min_size=1, max_size=8),
)
def test_a_member_joining_moves_centers_only_to_itself(
    centers: list[str], members: list[str], new: str
) -> None:
    if new in members:
        return
    for c in centers:
        before = holder_of(c, members)
        after = holder_of(c, [*members, new])
        assert after in (before, new)
        assert holder_of(c, list(reversed(members))) == before  # order does not matter
