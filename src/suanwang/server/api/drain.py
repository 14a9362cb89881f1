"""Drain and undrain centers (operators): no new placements; movable jobs move away."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from suanwang.server.api.deps import (
    AUTH_RESPONSES,
    AuditDep,
    CurrentTenant,
    NetworkDep,
    NowDep,
    SessionDep,
    operator_only,
)
from suanwang.server.database.models import CenterDrain, Tenant
from suanwang.server.schemas import ErrorResponse

router = APIRouter(prefix="/v1/centers", tags=["centers"])
OperatorDep = Annotated[Tenant, operator_only("draining centers is for operators")]

RESPONSES: dict[int | str, dict[str, object]] = {
    **AUTH_RESPONSES,
    400: {"description": "the body is not JSON", "model": ErrorResponse},
    403: {"description": "the key is not an operator's", "model": ErrorResponse},
    404: {"description": "no such center in the scenario", "model": ErrorResponse},
}


class DrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=500, description="why (shown with the center)")


class DrainState(BaseModel):
    center_id: str
    drained: bool
    drained_at: datetime | None = None
    reason: str = ""


def _check(net: NetworkDep, center_id: str) -> None:
    if center_id not in net.center_index:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown center {center_id!r}")


@router.get("/drained", response_model=list[DrainState], responses=AUTH_RESPONSES)
def drained(session: SessionDep, tenant: CurrentTenant) -> list[DrainState]:
    """Centers drained now (everyone may see which centers take no new work)."""
    rows = session.scalars(select(CenterDrain).order_by(CenterDrain.center_id))
    return [DrainState(center_id=r.center_id, drained=True, drained_at=r.drained_at,
                       reason=r.reason) for r in rows]  # fmt: skip


@router.post("/{center_id}/drain", response_model=DrainState, responses=RESPONSES)
def drain(
    center_id: str,
    session: SessionDep,
    tenant: OperatorDep,
    net: NetworkDep,
    now: NowDep,
    audit: AuditDep,
    body: DrainRequest | None = None,
) -> DrainState:
    """Drain a center: it gets no new jobs; running checkpointable jobs migrate, others finish.

    Idempotent: draining a drained center changes nothing.
    """
    _check(net, center_id)
    row = session.get(CenterDrain, center_id)
    if row is None:
        row = CenterDrain(
            center_id=center_id,
            by_tenant=tenant.id,
            reason=(body or DrainRequest()).reason,
            drained_at=now,
        )
        session.add(row)
        audit.record(session, "center.drain", f"center:{center_id}", reason=row.reason)
        session.commit()
    return DrainState(
        center_id=center_id, drained=True, drained_at=row.drained_at, reason=row.reason
    )


@router.post("/{center_id}/undrain", response_model=DrainState, responses=RESPONSES)
def undrain(
    center_id: str, session: SessionDep, _tenant: OperatorDep, net: NetworkDep, audit: AuditDep
) -> DrainState:
    """Open a drained center to new jobs again (idempotent)."""
    _check(net, center_id)
    row = session.get(CenterDrain, center_id)
    if row is not None:
        session.delete(row)
        audit.record(session, "center.undrain", f"center:{center_id}",
                     drained_at=row.drained_at.isoformat())  # fmt: skip
        session.commit()
    return DrainState(center_id=center_id, drained=False)
