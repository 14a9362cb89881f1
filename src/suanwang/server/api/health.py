"""``GET /healthz``: liveness and database reachability (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from suanwang.server.api.deps import SessionDep
from suanwang.server.schemas import Health

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    responses={503: {"model": Health, "description": "the database is unreachable"}},
)
def healthz(session: SessionDep, response: Response) -> Health:
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="degraded", database="unreachable")
    return Health(status="ok", database="ok")
