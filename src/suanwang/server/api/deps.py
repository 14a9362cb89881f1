"""Request dependencies: a database session, the authenticated tenant and its role (and the
key it used: a read-only key is refused every state-changing method here, for every route), the
audit log's writer, the scenario network, the time by the app's clock."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker
from starlette.concurrency import run_in_threadpool

from suanwang.core.network import Network
from suanwang.server.database.models import ApiKey, Tenant, TenantRole
from suanwang.server.models import audit
from suanwang.server.models.keys import hash_key, lookup, refused
from suanwang.server.ratelimit import RateLimits
from suanwang.server.schemas import ErrorResponse

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `suanwang tenants create`: `Authorization: Bearer sw_...`",
)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session per request; uncommitted work is rolled back when the request ends."""
    factory: sessionmaker[Session] = request.app.state.sessions
    session = factory()  # connects lazily: no I/O here
    try:
        yield session
    finally:
        if session.in_transaction():  # a rollback talks to the database: not on the loop
            await run_in_threadpool(session.close)
        else:
            session.close()


SessionDep = Annotated[Session, Depends(get_session)]


#: How long an authenticated key is trusted without asking the database again (per app, in
#: ``app.state.auth_cache``: digest -> (expiry on the monotonic clock, tenant, key)). A tenant
#: removed, or a key revoked, by another process keeps access for at most this long; a key
#: revoked through this app's API is dropped from its cache at once, and expiry is checked
#: on every request by the app's clock.
AUTH_CACHE_TTL_S = 10.0
AUTH_CACHE_MAX = 10_000
#: What a read-only key may do: read. Any other method is a 403, whatever the route.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        message,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


async def current_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Tenant:
    """The tenant whose key is in ``Authorization: Bearer <key>``: 401 for none, an unknown,
    revoked or expired key; 403 for a read-only key on a method that is not a read. The key
    used is ``request.state.api_key`` (for the audit log)."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    digest = hash_key(credentials.credentials)
    mono = time.monotonic()
    state = request.app.state
    cache: dict[str, tuple[float, Tenant, ApiKey]] | None = getattr(state, "auth_cache", None)
    if cache is None:
        cache = state.auth_cache = {}
    hit = cache.get(digest)
    limits: RateLimits = state.limits
    address = request.client.host if request.client else ""
    if hit is not None and hit[0] > mono:
        tenant, key = hit[1], hit[2]
    else:
        wait = limits.auth_failures.wait(address)
        if wait is not None:
            raise too_many(wait, "too many requests with a wrong API key from your address")
        found = await run_in_threadpool(_authenticate, state.sessions, credentials.credentials)
        if found is None:
            limits.auth_failures.take(address)
            raise _unauthorized("invalid API key")
        tenant, key = found
        if len(cache) > AUTH_CACHE_MAX:
            cache.clear()
        cache[digest] = (mono + AUTH_CACHE_TTL_S, tenant, key)
    refusal = refused(key, state.clock())
    if refusal is not None:
        limits.auth_failures.take(address)
        raise _unauthorized(refusal)
    if key.read_only and request.method not in READ_METHODS:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"API key {key.prefix} is read-only: it may read (GET) but not "
            f"{request.method} {request.url.path}",
        )
    request.state.api_key = key
    return tenant


def forget_key(request: Request, key_hash: str) -> None:
    """Drop a key from this app's cache of authenticated keys (it was revoked or rotated)."""
    cache: dict[str, Any] | None = getattr(request.app.state, "auth_cache", None)
    if cache is not None:
        cache.pop(key_hash, None)


def _authenticate(factory: sessionmaker[Session], api_key: str) -> tuple[Tenant, ApiKey] | None:
    """Look the key up in a short session of its own (not the request's: on SQLite every
    transaction holds the write lock, and the request may write through other sessions).

    Returns detached copies of the tenant and its key with every column loaded, in no session:
    nothing can expire them and requests may share them. Revoked and expired keys are found
    too (the caller says which, by its clock)."""
    with factory() as session:
        found = lookup(session=session, api_key=api_key)
        if found is None:
            return None
        tenant = _snapshot(found[0])
        key = _snapshot(found[1])
    return tenant, key


_Row = TypeVar("_Row", Tenant, ApiKey)


def _snapshot(row: _Row) -> _Row:
    copy = type(row)(**{c.key: getattr(row, c.key) for c in type(row).__table__.columns})
    make_transient_to_detached(copy)
    return copy


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]


def too_many(wait_s: int, why: str) -> HTTPException:
    """A ``429`` saying ``why``, with ``Retry-After`` (seconds)."""
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"{why}: retry after {wait_s} s",
        headers={"Retry-After": str(wait_s)},
    )


async def submission_allowed(request: Request, tenant: CurrentTenant) -> Tenant:
    """The tenant, if its submission rate limit has a token for this submission; else 429."""
    limits: RateLimits = request.app.state.limits
    wait = limits.submissions.take(tenant.id)
    if wait is not None:
        raise too_many(wait, "too many job submissions")
    return tenant


SubmittingTenant = Annotated[Tenant, Depends(submission_allowed)]


class RoleCheck:
    """A dependency: the requesting tenant if its role is one of ``roles``, else a 403 saying
    ``refusal``. It runs before the request body is validated: a refused key gets this 403
    whatever JSON it sends."""

    def __init__(self, roles: frozenset[TenantRole], refusal: str) -> None:
        self.roles = roles
        self.refusal = refusal

    async def __call__(self, tenant: CurrentTenant) -> Tenant:
        if tenant.tenant_role not in self.roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, self.refusal)
        return tenant

    def __repr__(self) -> str:
        roles = ", ".join(sorted(r.value for r in self.roles))
        return f"RoleCheck({roles}: {self.refusal!r})"


def operator_only(refusal: str) -> Any:
    """``Depends`` on an operator's key (403 ``refusal`` otherwise), for a typed alias:
    ``OperatorDep = Annotated[Tenant, operator_only("metrics are for operators")]``."""
    return Depends(RoleCheck(frozenset({TenantRole.OPERATOR}), refusal))


def provider_or_operator(refusal: str) -> Any:
    """``Depends`` on a provider's or an operator's key (a consumer's is a 403 ``refusal``)."""
    return Depends(RoleCheck(frozenset({TenantRole.PROVIDER, TenantRole.OPERATOR}), refusal))


class Audit:
    """Writes the audit entries of one request: its tenant and key, its request id, the app's
    clock (a dependency: ``audit: AuditDep``, then ``audit.record(session, ...)`` before the
    route commits its change)."""

    def __init__(self, request: Request, tenant: Tenant) -> None:
        key: ApiKey | None = getattr(request.state, "api_key", None)
        self.actor = audit.Actor(
            via="api", name=tenant.name, tenant_id=tenant.id,
            key_prefix=None if key is None else key.prefix,
        )  # fmt: skip
        self.request_id: str = getattr(request.state, "request_id", "") or "none"
        self.now: datetime = request.app.state.clock()

    def record(self, session: Session, action: str, target: str, **detail: Any) -> None:
        """One entry for a change made in ``session`` (committed with it)."""
        audit.record(
            session=session, actor=self.actor, action=action, target=target, detail=detail,
            request_id=self.request_id, now=self.now,
        )  # fmt: skip


async def get_audit(request: Request, tenant: CurrentTenant) -> Audit:
    return Audit(request, tenant)


AuditDep = Annotated[Audit, Depends(get_audit)]


async def get_network(request: Request) -> Network:
    net: Network = request.app.state.network
    return net


NetworkDep = Annotated[Network, Depends(get_network)]


async def get_now(request: Request) -> datetime:
    """Now by the app's clock (``create_app(clock=...)``): what a request stamps on what it
    writes and compares with (never the wall clock, so tests can pin it)."""
    now: datetime = request.app.state.clock()
    return now


NowDep = Annotated[datetime, Depends(get_now)]

#: Response documentation shared by every authenticated route.
AUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"description": "missing or invalid API key", "model": ErrorResponse},
    429: {
        "description": "too many requests with a wrong key from this address (or, for "
        "submissions, from this tenant): retry after Retry-After seconds",
        "model": ErrorResponse,
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    },
}


def _query_names(route: Any) -> frozenset[str] | None:
    """The query parameters a route declares (its dependencies' too); None: not an API route."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        names = frozenset(_declared_query(dependant))
        _QUERY_NAMES[id(route)] = names
    return names


_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _declared_query(dependant: Dependant) -> Iterator[str]:
    yield from (p.alias for p in dependant.query_params)
    for sub in dependant.dependencies:
        yield from _declared_query(sub)


def _nul_problem(loc: tuple[str | int, ...], value: object) -> dict[str, Any]:
    where = " ".join(str(x) for x in loc)
    return {"type": "nul_character", "loc": loc, "input": value,
            "msg": f"{where}: must not contain a NUL character (\\u0000)"}  # fmt: skip


def _nuls_in(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Where in a parsed JSON ``value`` a text (a key or a string) holds a NUL."""
    if isinstance(value, str):
        if "\x00" in value:
            yield loc, value
    elif isinstance(value, dict):
        for k, v in value.items():
            if "\x00" in k:
                yield (*loc, k), k
            yield from _nuls_in(v, (*loc, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nuls_in(v, (*loc, i))


def _escaped_nul(body: bytes) -> bool:
    """Whether a JSON text has a ``\\u0000`` escape (an odd run of backslashes before it)."""
    start = 0
    while (at := body.find(b"u0000", start)) >= 0:
        before = at
        while before > 0 and body[before - 1] == 0x5C:  # a backslash
            before -= 1
        if (at - before) % 2:
            return True
        start = at + 1
    return False


async def strict_query(request: Request) -> None:
    """Every query parameter of this API is declared and takes one value: an unknown one (a
    typo'd filter would otherwise silently filter nothing) or one given twice is a 422 naming
    it, never ignored (the app depends on this for every route).

    No text a client sends may hold a NUL character (no database stores one; PostgreSQL fails
    on it): a query parameter, a path parameter or a string (or key) anywhere in a JSON body
    with one is a 422 naming where it is, whatever the route.

    ``async`` though it rarely waits: FastAPI runs a plain ``def`` dependency in a worker
    thread, a hop that halved job submissions per second (docs/benchmarks.md, 2026-12-06)."""
    problems: list[dict[str, Any]] = []
    for name, value in request.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            problems.append(_nul_problem(("path", name), value))
    if request.method in ("POST", "PUT", "PATCH"):
        body = await request.body()  # already read (and bounded) by the app's middleware
        if _escaped_nul(body):  # rare: only then is the body parsed here to say where
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None  # not JSON: the route's own validation says so
            problems += [_nul_problem(("body", *loc), v) for loc, v in _nuls_in(parsed, ())]
    if request.scope.get("query_string"):
        problems += _query_problems(request)
    if problems:
        raise RequestValidationError(problems)


def _query_problems(request: Request) -> list[dict[str, Any]]:
    known = _query_names(request.scope.get("route"))
    seen: set[str] = set()
    problems: list[dict[str, Any]] = []
    for key, value in request.query_params.multi_items():
        if key in seen:
            msg = f"query parameter {key!r} is given more than once; give it once"
            problems.append({"type": "repeated_query_parameter", "loc": ("query", key),
                             "msg": msg, "input": request.query_params.getlist(key)})  # fmt: skip
        elif known is not None and key not in known:
            listed = ", ".join(sorted(known)) or "none"
            msg = f"unknown query parameter {key!r} (this route takes: {listed})"
            problems.append({"type": "unknown_query_parameter", "loc": ("query", key),
                             "msg": msg, "input": request.query_params[key]})  # fmt: skip
        elif "\x00" in value or "\x00" in key:
            problems.append(_nul_problem(("query", key), value))
        seen.add(key)
    return problems
