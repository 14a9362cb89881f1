"""Request dependencies: a database session, the authenticated tenant, the scenario network."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.network import Network
from suanwang.server.database.models import Tenant
from suanwang.server.models.tenants import authenticate
from suanwang.server.schemas import ErrorResponse

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `suanwang tenants create`: `Authorization: Bearer sw_...`",
)


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; uncommitted work is rolled back when the request ends."""
    factory: sessionmaker[Session] = request.app.state.sessions
    with factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def current_tenant(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Tenant:
    """The tenant whose key is in ``Authorization: Bearer <key>``; 401 otherwise."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    tenant = authenticate(session=session, api_key=credentials.credentials)
    if tenant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid API key",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return tenant


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]


def get_network(request: Request) -> Network:
    net: Network = request.app.state.network
    return net


NetworkDep = Annotated[Network, Depends(get_network)]

#: Response documentation shared by every authenticated route.
AUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"description": "missing or invalid API key", "model": ErrorResponse},
}
