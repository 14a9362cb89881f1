"""The FastAPI application: ``create_app(settings)``; serve with
``uvicorn --factory suanwang.server.app:create_app`` (settings from ``SUANWANG_*``)."""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suanwang import __version__, web
from suanwang.agent.protocol import MAX_SYNC_BODY_BYTES
from suanwang.core.jobs import ANY_ACCELERATOR
from suanwang.core.network import Network
from suanwang.scenarios.loader import load_scenario
from suanwang.server.api import (
    agents,
    apps,
    audit,
    billing,
    centers,
    cluster,
    console,
    deps,
    docs,
    drain,
    health,
    jobs,
    keys,
    metrics,
    quotas,
    whatif,
)
from suanwang.server.api import offers as trading  # trading (issue 5)
from suanwang.server.cluster import HEARTBEAT_S, Member
from suanwang.server.database.session import make_engine, migrate, session_factory
from suanwang.server.ratelimit import RateLimits, TokenBuckets
from suanwang.server.request_id import RequestId
from suanwang.server.security import SecurityHeaders
from suanwang.server.services.loop import LoopService
from suanwang.server.settings import Settings
from suanwang.server.signals import SignalCache
from suanwang.server.submitter import Submitter

log = logging.getLogger("suanwang.server")


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether or not Content-Length is sent;
    ``larger``: paths starting with these prefixes may send up to so many bytes (an agent's
    sync carries the tails of its runs' logs).

    The body is read (at most the limit + one chunk) before the app sees the request and
    then replayed, so the app never starts on a body it would have to abandon.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = next((n for p, n in self.larger.items() if path.startswith(p)), self.max_bytes)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit():
                    await _error(send, 400, "invalid Content-Length header")
                    return
                if int(value) > limit:
                    await self._too_large(send, limit)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away: let the app see it
                replay = [message]
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
                break

        async def replayed() -> Message:
            return replay.pop(0) if replay else await receive()

        await self.app(scope, replayed, send)

    async def _too_large(self, send: Send, limit: int) -> None:
        await _error(send, 413, f"request body over {limit} bytes")


class InFlightLimit:
    """Work on at most ``limit`` HTTP requests at once; the others wait in line (FIFO).

    Each request holds at most one database connection and one worker thread at a time, so
    with the pool sized to ``limit`` a request never blocks a thread waiting for a connection.
    Without the limit, more concurrent requests than pool connections can deadlock: every
    thread waits for a connection while the requests holding the connections wait for a thread
    (each times out after 30 s). Waiting here costs no thread and no connection.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        # one semaphore per event loop (test clients may run the app on several loops)
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.limit)
        async with slots:
            await self.app(scope, receive, send)


async def _error(send: Send, code: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json_safe(value: Any) -> Any:
    """``value`` made JSON-encodable: NaN/Infinity and lone surrogates become text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {str(_json_safe(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 listing every problem; echoed inputs made safe (FastAPI's handler fails on NaN)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = _json_safe(jsonable_encoder(errors))
    return JSONResponse({"detail": detail}, status_code=422)


class ControlPlaneAPI(FastAPI):
    """FastAPI whose OpenAPI document names the loaded scenario's places, models and stacks."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is not None:
            return self.openapi_schema
        schema = super().openapi()
        _drop_empty_json_alternatives(schema)
        _publish_no_nul(schema)
        _json_schema_bounds(schema)
        net: Network | None = getattr(self.state, "network", None)
        if net is None:  # asked before startup: do not cache a document without the scenario
            self.openapi_schema = None
        else:
            _describe_scenario(schema, net)
        return schema


#: No text the API takes may hold a NUL (``deps.strict_query`` refuses it everywhere).
_NO_NUL = "^[^\\u0000]*$"


#: Schemas only answers use (a 422 may name the field with a NUL it refused) and the inline
#: schemas of responses (a job's log may hold any byte).
_ANSWERS_ONLY = frozenset({"responses", "HTTPValidationError", "ValidationError", "ErrorResponse"})


def _publish_no_nul(node: Any) -> None:
    """Say in the schema what ``deps.strict_query`` enforces: every string without a pattern,
    enum or format gets one that excludes NUL, every free-form object's keys too (not in the
    inline schemas of responses: a job's log may hold any byte)."""
    if isinstance(node, dict):
        if node.get("type") == "string" and not {"pattern", "enum", "format", "const"} & set(node):
            node["pattern"] = _NO_NUL
        if node.get("type") == "object" and node.get("additionalProperties") not in (None, False):
            names = node.setdefault("propertyNames", {})
            if not {"pattern", "enum", "format", "const"} & set(names):
                names["pattern"] = _NO_NUL
        for key, value in node.items():
            if key not in _ANSWERS_ONLY:
                _publish_no_nul(value)
    elif isinstance(node, list):
        for value in node:
            _publish_no_nul(value)


#: pydantic's names of numeric bounds and JSON Schema's.
_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _json_schema_bounds(node: Any) -> None:
    """Bounds pydantic writes under its own names (``ge``, ``le``: a ``Field(ge=...)`` on an
    optional :data:`~suanwang.server.schemas.JsonInt`) as JSON Schema's, which clients and
    fuzzers read (they ignore unknown keywords, so the bound was not published)."""
    if isinstance(node, dict):
        if node.get("type") in ("integer", "number"):
            for ours, theirs in _BOUNDS.items():
                if ours in node:
                    node.setdefault(theirs, node.pop(ours))
        for value in node.values():
            _json_schema_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _json_schema_bounds(value)


def _drop_empty_json_alternatives(schema: dict[str, Any]) -> None:
    """Plain-text routes (logs) also get an empty JSON 200 from FastAPI; remove it."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            content = operation.get("responses", {}).get("200", {}).get("content", {})
            if "text/plain" in content and content.get("application/json") == {"schema": {}}:
                del content["application/json"]


def _describe_scenario(schema: dict[str, Any], net: Network) -> None:
    """Add enums of origins, accelerators and stacks to the ``JobCreate`` request body."""
    comps = schema.get("components", {}).get("schemas", {})
    body, resources = comps.get("JobCreate"), comps.get("Resources")
    if body is None or resources is None:
        return
    props = body["properties"]
    props["origin"]["enum"] = sorted(net.place_ids)
    for variant in props["stacks"].get("anyOf", [props["stacks"]]):
        if variant.get("type") == "array":
            variant["items"]["enum"] = sorted(net.known_stacks)
    create = copy.deepcopy(resources)
    create["title"] = "ResourcesCreate"
    create["properties"]["accelerator"]["enum"] = [ANY_ACCELERATOR, *sorted(net.known_models)]
    comps["ResourcesCreate"] = create
    props["resources"] = {
        k: ("#/components/schemas/ResourcesCreate" if k == "$ref" else v)
        for k, v in props["resources"].items()
    }


def _start(app: FastAPI, cfg: Settings, clock: Callable[[], datetime]) -> None:
    """Migrate, connect and load the scenario, unless an enclosing lifespan already did.

    Lifespans may nest (test clients and fuzzers start their own on an app already running);
    the first one sets up, the last one to end disposes of the engine.
    """
    running = getattr(app.state, "lifespans", 0)
    if running:
        app.state.lifespans = running + 1
        return
    engine = make_engine(cfg.db_url, pool_size=cfg.max_in_flight)
    try:
        migrate(cfg.db_url, engine=engine)
        scenario = load_scenario(cfg.scenario)
    except BaseException:
        engine.dispose()
        raise
    app.state.settings = cfg
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.scenario = scenario
    app.state.network = Network(scenario)
    app.state.clock = clock
    app.state.submitter = Submitter(app.state.sessions, app.state.network, clock=clock)
    app.state.signals = SignalCache(scenario, seed=cfg.signals_seed, clock=clock)
    app.state.lifespans = 1
    app.state.heartbeat = None
    if cfg.heartbeat:  # this replica in the cluster's members (GET /v1/cluster)
        member = Member(app.state.sessions, "api", clock)
        app.state.heartbeat = LoopService("heartbeat", member.beat, HEARTBEAT_S)
        app.state.heartbeat.start()
        app.state.member = member
    # The loaded scenario, network and modules are ~170,000 long-lived objects that every full
    # garbage collection would walk (~100 ms on this machine: a stall of every request in the
    # process, the p99 of the submit benchmark): keep what exists now out of the collector's
    # sight while the app runs (undone by _stop).
    gc.collect()
    gc.freeze()


def _stop(app: FastAPI) -> None:
    app.state.lifespans -= 1
    if app.state.lifespans == 0:
        if app.state.heartbeat is not None:
            app.state.heartbeat.stop()
            try:
                app.state.member.leave()
            except SQLAlchemyError as exc:
                log.warning("could not remove this replica from the cluster's members: %s", exc)
        app.state.engine.dispose()
        gc.unfreeze()


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The control-plane API for ``settings`` (default: from the environment).

    On startup it migrates the database to the newest schema and loads the scenario once;
    ``clock`` (UTC now by default) is the API's time: which hour's signals ``/v1/centers``
    shows, and the time requests stamp on what they write (submissions, ledger entries, ...).
    ``monotonic`` (seconds) refills the rate limits' buckets (:mod:`suanwang.server.ratelimit`).
    """
    cfg = settings if settings is not None else Settings.from_env()
    now = clock if clock is not None else (lambda: datetime.now(UTC))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _start(app, cfg, now)
        try:
            yield
        finally:
            _stop(app)

    app = ControlPlaneAPI(
        title="suanwang control plane",
        summary="Submit jobs to China's national computing power network and watch them run.",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served from the package by api.docs (no CDN)
        redoc_url=None,
        dependencies=[Depends(deps.strict_query)],
    )
    app.add_exception_handler(RequestValidationError, _validation_error)

    def replicas() -> int:  # the live API replicas (this one's heartbeat counts them)
        member: Member | None = getattr(app.state, "member", None)
        return member.peers if member is not None else 1

    app.state.limits = RateLimits(
        auth_failures=TokenBuckets(
            cfg.auth_failure_burst, cfg.auth_failure_rate_per_s, clock=monotonic,
            replicas=replicas,
        ),
        submissions=TokenBuckets(
            cfg.submit_burst, cfg.submit_rate_per_s, clock=monotonic, replicas=replicas
        ),
    )  # fmt: skip
    # the last added runs first: a body is read before the request takes one of the slots
    app.add_middleware(InFlightLimit, limit=cfg.max_in_flight)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=cfg.max_body_bytes,
        larger={"/v1/agents/": max(cfg.max_body_bytes, MAX_SYNC_BODY_BYTES)},
    )
    app.add_middleware(RequestId)  # every answer, a 413 too, carries X-Request-ID
    app.add_middleware(SecurityHeaders)  # outermost: every answer has them, a 413 too
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(centers.router)
    app.include_router(drain.router)
    app.include_router(metrics.router)
    app.include_router(billing.router)  # billing (issue 5)
    app.include_router(apps.router)
    app.include_router(trading.router)  # offers and reservations (issue 5)
    app.include_router(whatif.router)
    app.include_router(quotas.router)  # tenants' compute quotas (issue 14)
    app.include_router(docs.router)  # /docs and /redoc, vendored
    app.include_router(keys.router)  # API keys (issue 15)
    app.include_router(audit.router)  # the audit log (issue 15)
    app.include_router(cluster.router)  # replicas, workers and leaders (issue 16)
    app.include_router(agents.router)  # center agents' syncs (issue 16)
    app.include_router(console.router)  # the console's page at / and its two JSON routes
    app.mount("/static", StaticFiles(directory=web.STATIC), name="static")
    return app
