"""``POST /v1/agents/{center}/sync``: a center's agent reports its runs and learns what to do
(docs/centers.md, "Agents"; the protocol: :mod:`suanwang.agent.protocol`).

Authenticated by the center's agent token (``Authorization: Bearer swa_...``, made by ``suanwang
agent token create``), which acts only for its own center: none or an unknown one is a 401, a
token of another center a 403; an agent speaking a protocol version not served (header
``Suanwang-Agent-Protocol``: 1 or 2) is a 409, and so is a center the control plane does not
serve through an agent. All of these are decided before the body is validated (a body that is
not JSON at all is a 400 first). A sync of protocol 2 without its number is a 422; one whose
number is not above the last applied is the stale refusal: a 409 whose header
``Suanwang-Agent-Applied-Seq`` is that last number (nothing recorded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from suanwang.agent.protocol import (
    ACCEPTED_PROTOCOLS,
    APPLIED_HEADER,
    PROTOCOL_HEADER,
    SyncAnswer,
    SyncRequest,
)
from suanwang.server.agents.sync import NotAnAgentCenter, StaleSync, sync
from suanwang.server.agents.tokens import center_of_token
from suanwang.server.api.deps import NowDep, SessionDep, too_many
from suanwang.server.ratelimit import RateLimits
from suanwang.server.schemas import ErrorResponse

router = APIRouter(prefix="/v1/agents", tags=["agents"])

agent_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AgentToken",
    description="A center's agent token from `suanwang agent token create`: `Bearer swa_...`",
)

CenterPath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="the agent's center")
]


SERVED = " and ".join(str(p) for p in ACCEPTED_PROTOCOLS)


@dataclass(frozen=True)
class Caller:
    """The agent of ``center``, speaking ``protocol``."""

    center: str
    protocol: int


def _token_center(factory: sessionmaker[Session], token: str) -> str | None:
    with factory() as session:
        return center_of_token(session, token)


async def agent_center(
    request: Request,
    center: CenterPath,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(agent_bearer)],
    protocol: Annotated[
        str | None,
        Header(alias=PROTOCOL_HEADER, description=f"the agent's protocol ({SERVED})"),
    ] = None,
) -> Caller:
    """The agent of ``center`` if the request's token acts for it (see the module)."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing agent token: send 'Authorization: Bearer <token>' "
            "(suanwang agent token create --center ...)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    limits: RateLimits = request.app.state.limits
    address = request.client.host if request.client else ""
    wait = limits.auth_failures.wait(address)
    if wait is not None:
        raise too_many(wait, "too many requests with a wrong agent token from your address")
    owner = await run_in_threadpool(
        _token_center, request.app.state.sessions, credentials.credentials
    )
    if owner is None:
        limits.auth_failures.take(address)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid agent token (not one made by suanwang agent token create, or replaced "
            "by a newer one)",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    if owner != center:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this is the agent token of center {owner}: it cannot act for center {center}",
        )
    served = {str(p): p for p in ACCEPTED_PROTOCOLS}
    if protocol not in served:
        said = f"protocol {protocol}" if protocol else f"no {PROTOCOL_HEADER} header"
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"incompatible agent: it speaks {said}, this control plane speaks protocols "
            f"{SERVED} (run an agent of the control plane's version)",
        )
    return Caller(center, served[protocol])


@router.post(
    "/{center}/sync",
    responses={
        400: {"model": ErrorResponse, "description": "the body could not be read"},
        401: {"model": ErrorResponse, "description": "missing or invalid agent token"},
        403: {"model": ErrorResponse, "description": "the token is another center's"},
        409: {
            "model": ErrorResponse,
            "description": "an agent of another protocol version, the center is not served "
            f"through an agent, or a stale sync (its number not above the last applied, "
            f"given in the header {APPLIED_HEADER}: nothing recorded)",
        },
        429: {"model": ErrorResponse, "description": "too many wrong tokens from this address"},
    },
)
def sync_route(
    caller: Annotated[Caller, Depends(agent_center)],
    body: SyncRequest,
    session: SessionDep,
    now: NowDep,
) -> SyncAnswer:
    """Record what the agent reports (its version, capacity, every run it holds) and answer
    what it must do: start, cancel, checkpoint, forget, and its lease."""
    center = caller.center
    if caller.protocol >= 2 and body.seq is None:
        msg = f"a sync of protocol {caller.protocol} carries its number: none was sent"
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body", "seq"), "msg": msg, "input": None}]
        )
    try:
        answer = sync(session, center, body, now)
    except StaleSync as exc:
        session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, str(exc), headers={APPLIED_HEADER: str(exc.applied)}
        ) from None
    except NotAnAgentCenter:
        session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"center {center} is not served through an agent: no worker runs it with "
            "executor type agent in its platform file",
        ) from None
    session.commit()
    return answer
