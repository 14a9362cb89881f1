"""``GET /v1/cluster``: the control plane's API replicas, workers and leaders, for operators
(docs/operations.md, "Replicated control plane").

Each member with its last heartbeat (``stale``: older than
:data:`~suanwang.server.cluster.STALE_AFTER_S` on the API's clock) and the duties it leads
with their terms; each singleton duty's current term and holder (``alive``: the holder's
heartbeat is fresh and it still claims that term).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.server.api.deps import AUTH_RESPONSES, NowDep, SessionDep, operator_only
from suanwang.server.cluster import STALE_AFTER_S
from suanwang.server.database.models import ClusterMember, LeaderTerm, Tenant
from suanwang.server.schemas import ErrorResponse

router = APIRouter(prefix="/v1/cluster", tags=["cluster"], responses=AUTH_RESPONSES)

Operator = Annotated[Tenant, operator_only("the cluster's members are for operators")]


class MemberOut(BaseModel):
    id: str
    kind: str = Field(description="api (a replica), worker, or serve (API and services)")
    host: str
    pid: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float = Field(description="seconds since its last heartbeat")
    stale: bool = Field(description=f"no heartbeat for more than {STALE_AFTER_S:g} s")
    leads: dict[str, int] = Field(description="the duties it leads and their terms")
    serves: list[str] | None = Field(
        description="the centers its executors reach (a worker; null: a replica)"
    )
    holds: list[str] | None = Field(
        description="the centers whose hand-over, polling and failover are its own now"
    )


class LeaderOut(BaseModel):
    duty: str
    term: int
    holder: str = Field(description="the member elected for this term")
    elected_at: datetime
    alive: bool = Field(description="its holder's heartbeat is fresh and claims this term")


class ClusterOut(BaseModel):
    members: list[MemberOut]
    leaders: list[LeaderOut]
    stale_after_s: float


@router.get(
    "",
    responses={
        status.HTTP_403_FORBIDDEN: {"model": ErrorResponse, "description": "not an operator"}
    },
)
def cluster(session: SessionDep, me: Operator, now: NowDep) -> ClusterOut:
    """Replicas and workers (newest first by kind), and who leads each singleton duty."""
    return cluster_view(session, now)


def cluster_view(session: Session, now: datetime) -> ClusterOut:
    """The members, their heartbeats' age at ``now`` and the leaders (also for /metrics)."""
    members = []
    fresh: dict[str, dict[str, int]] = {}
    rows = session.scalars(
        select(ClusterMember).order_by(ClusterMember.kind, ClusterMember.started_at)
    )
    for m in rows:
        age = max(0.0, (now - m.heartbeat_at).total_seconds())
        stale = age > STALE_AFTER_S
        leads = {str(k): int(v) for k, v in m.duties.items()}
        if not stale:
            fresh[m.id] = leads
        members.append(
            MemberOut(
                id=m.id, kind=m.kind, host=m.host, pid=m.pid, version=m.version,
                started_at=m.started_at, heartbeat_at=m.heartbeat_at,
                heartbeat_age_s=round(age, 3), stale=stale, leads=leads, serves=m.serves,
                holds=m.holds,
            )
        )  # fmt: skip
    leaders = []
    for t in session.scalars(select(LeaderTerm).order_by(LeaderTerm.duty)):
        alive = fresh.get(t.holder, {}).get(t.duty) == t.term
        leaders.append(LeaderOut(duty=t.duty, term=t.term, holder=t.holder,
                                 elected_at=t.elected_at, alive=alive))  # fmt: skip
    return ClusterOut(members=members, leaders=leaders, stale_after_s=STALE_AFTER_S)
