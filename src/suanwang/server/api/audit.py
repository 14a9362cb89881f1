"""``GET /v1/audit``: the audit log, for operators (docs/control-plane.md, "Audit log").

Newest first, in pages (``limit``, then ``cursor=next_cursor``); filters: ``actor`` (a tenant's
name or id, a key prefix, or the Unix user of a database command), ``action`` (exactly, or a
family ending in a dot: ``key.``), ``since`` (inclusive) and ``until`` (exclusive).
Consumers and providers get 403.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime

from suanwang.server.api.deps import AUTH_RESPONSES, SessionDep, operator_only
from suanwang.server.database.models import Tenant
from suanwang.server.models import audit
from suanwang.server.schemas import ErrorResponse

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=AUTH_RESPONSES)

Auditor = Annotated[Tenant, operator_only("the audit log is for operators")]


def _utc(value: datetime | None, field: str) -> datetime | None:
    """``value`` in UTC; a 422 naming ``field`` for one that has no UTC time (year 1 at +01:00,
    year 9999 at -01:00)."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        msg = "out of range: years 1 to 9999 in UTC"
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", field),
                    "msg": msg,
                    "input": value.isoformat(),
                }
            ]
        ) from None


@router.get(
    "",
    responses={
        status.HTTP_403_FORBIDDEN: {"model": ErrorResponse, "description": "not an operator"}
    },
)
def list_audit(
    session: SessionDep,
    me: Auditor,
    actor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            pattern=r"^[^\x00]+$",
            description="a tenant's name or id, a key prefix or a Unix user",
        ),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=40,
            pattern=r"^[a-z_]+(\.[a-z_]*)?$",
            description="e.g. key.revoke, or key. for every key action",
        ),
    ] = None,
    since: Annotated[AwareDatetime | None, Query(description="from this instant on")] = None,
    until: Annotated[AwareDatetime | None, Query(description="before this instant")] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE, description="at most this many")] = 100,
    cursor: Annotated[
        str | None,
        Query(max_length=19, pattern=r"^[0-9]+$", description="next_cursor of the previous page"),
    ] = None,
) -> dict[str, Any]:
    """Who changed what, when, with which key and request id, newest first."""
    since, until = _utc(since, "since"), _utc(until, "until")
    if since is not None and until is not None and until <= since:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "until"), "msg": "must be after since",
              "input": until.isoformat()}]
        )  # fmt: skip
    rows, last = audit.entries(
        session=session, actor=actor, action=action, since=since, until=until, limit=limit,
        before_id=None if cursor is None else int(cursor),
    )  # fmt: skip
    return {
        "entries": [audit.entry_json(r) for r in rows],
        "next_cursor": None if last is None else str(last),
    }
