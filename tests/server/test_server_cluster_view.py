"""``GET /v1/cluster`` on both databases: members with their heartbeats on the API's clock
(stale ones marked), each duty's leader and whether it is alive. (Roles: test_server_roles;
with real processes on PostgreSQL: test_server_cluster.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pinned import NOW
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.server.cluster import MIGRATIONS, PLACEMENT, STALE_AFTER_S, LocalElection, Member
from suanwang.server.database.models import LeaderTerm, TenantRole


def test_members_heartbeats_and_leaders_as_the_api_sees_them(
    client: TestClient, sessions: sessionmaker[Session], make_tenant: Callable[..., Any]
) -> None:
    operator = make_tenant(TenantRole.OPERATOR)
    serves, holds = frozenset({"guian", "zhongwei"}), frozenset({"guian"})
    worker = Member(sessions, "worker", lambda: NOW - timedelta(seconds=1), LocalElection(),
                    serves=serves, holds=lambda: holds)  # fmt: skip
    gone = Member(sessions, "worker", lambda: NOW - timedelta(seconds=STALE_AFTER_S + 5))
    api = Member(sessions, "api", lambda: NOW)
    for m in (worker, gone, api):
        m.beat()
    with sessions.begin() as s:  # placement led by the living worker, migrations by the gone
        s.add(LeaderTerm(duty=PLACEMENT, term=3, holder=worker.id, elected_at=NOW))
        s.add(LeaderTerm(duty=MIGRATIONS, term=0, holder=gone.id, elected_at=NOW))
    r = client.get("/v1/cluster", headers=operator.headers)
    assert r.status_code == 200, r.text
    view = r.json()
    by_id = {m["id"]: m for m in view["members"]}
    assert [m["kind"] for m in view["members"]] == ["api", "worker", "worker"]
    assert by_id[worker.id]["stale"] is False and by_id[gone.id]["stale"] is True
    assert 0.9 < by_id[worker.id]["heartbeat_age_s"] < 1.1
    assert by_id[worker.id]["leads"] == {PLACEMENT: 0, MIGRATIONS: 0}  # SQLite: all, term 0
    assert by_id[api.id]["leads"] == {} and by_id[api.id]["pid"] == worker.pid
    assert (by_id[worker.id]["serves"], by_id[worker.id]["holds"]) == (
        ["guian", "zhongwei"],
        ["guian"],
    )
    assert by_id[gone.id]["serves"] is None and by_id[api.id]["holds"] is None  # not a worker's
    # the placement term (3) is not the one the worker claims (0): not alive; the gone one's
    # claim is stale
    assert [(t["duty"], t["term"], t["alive"]) for t in view["leaders"]] == [
        (MIGRATIONS, 0, False), (PLACEMENT, 3, False)]  # fmt: skip
    with sessions.begin() as s:
        row = s.get(LeaderTerm, PLACEMENT)
        assert row is not None
        row.term = 0
    view = client.get("/v1/cluster", headers=operator.headers).json()
    assert [t["alive"] for t in view["leaders"]] == [False, True]
    worker.leave()
    assert len(client.get("/v1/cluster", headers=operator.headers).json()["members"]) == 2
