"""A replica's share of a rate limit (:class:`suanwang.server.ratelimit.TokenBuckets`): with
``n`` live API replicas each lets through ``burst / n`` at once and refills at ``rate / n``;
``n`` is what its heartbeat counts (:class:`suanwang.server.cluster.Member`)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st
from pinned import NOW
from sqlalchemy.orm import Session, sessionmaker

from suanwang.server.cluster import STALE_AFTER_S, Member
from suanwang.server.ratelimit import TokenBuckets


def _let_through(buckets: TokenBuckets, key: str = "k") -> int:
    n = 0
    while buckets.take(key) is None:
        n += 1
    return n


@given(st.integers(min_value=1, max_value=200), st.integers(min_value=1, max_value=8))
def test_the_replicas_together_let_through_the_burst(burst: int, n: int) -> None:
    now = [0.0]
    replicas = [TokenBuckets(burst, 1.0, clock=lambda: now[0], replicas=lambda: n)
                for _ in range(n)]  # fmt: skip
    total = sum(_let_through(b) for b in replicas)
    # each its share (at least one token: a burst smaller than n lets n through)
    assert total == (n * (burst // n) if burst >= n else n)
    assert total <= max(burst, n)


def test_the_share_follows_the_live_replicas_and_so_does_the_wait() -> None:
    now, live = [0.0], [2]
    buckets = TokenBuckets(10, 2.0, clock=lambda: now[0], replicas=lambda: live[0])
    assert _let_through(buckets) == 5
    assert buckets.take("k") == 1  # a token back in 1 / (2 / 2) s
    live[0] = 4  # two more replicas: each refills at 0.5/s
    assert buckets.wait("k") == 2
    now[0] = 2.0
    assert buckets.take("k") is None and buckets.take("k") == 2
    live[0] = 1  # alone again: the whole burst, refilled at the whole rate
    now[0] = 100.0
    assert _let_through(buckets) == 10


def test_a_replica_counts_the_live_replicas_at_its_heartbeat(
    sessions: sessionmaker[Session],
) -> None:
    """Live: a heartbeat under STALE_AFTER_S old, of its own kind, itself included."""
    stale = NOW - timedelta(seconds=STALE_AFTER_S + 1)
    kind = f"api-{secrets.token_hex(4)}"  # none of the other tests' members
    members = [Member(sessions, kind, lambda: NOW), Member(sessions, kind, lambda: stale),
               Member(sessions, "worker", lambda: NOW)]  # fmt: skip
    try:
        for m in members:
            m.beat()
        me = Member(sessions, kind, lambda: NOW)
        assert me.peers == 1  # before its first heartbeat: alone
        me.beat()
        assert me.peers == 2  # itself and the other live replica; not the stale one, nor workers
        members[0].leave()
        me.beat()
        assert me.peers == 1
        me.leave()
    finally:
        for m in members:
            m.leave()
