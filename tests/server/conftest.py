"""Fixtures for the control plane: the same suite runs on SQLite and on PostgreSQL.

PostgreSQL is expected at 127.0.0.1:5432 (database ``test``, trust auth, user ``postgres`` or
``root``; override with ``SUANWANG_TEST_PG_URL``). Each test session works in a fresh schema
(``t_<random>``, chosen through ``search_path`` in the URL) that is dropped at the end. If the
server cannot be reached the PostgreSQL half of the suite fails; set ``SUANWANG_NO_POSTGRES=1``
to skip it on purpose.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from pinned import NOW, stepping
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session, sessionmaker

from suanwang.server.app import create_app
from suanwang.server.database.models import (
    Account,
    AgentRun,
    BillingSetting,
    CenterAgent,
    CenterDrain,
    CenterOwner,
    ClusterMember,
    JobEvent,
    JobRow,
    LeaderTerm,
    LedgerPosting,
    LedgerTransaction,
    OfferRow,
    PublishedApp,
    QuotaGrant,
    QuotaUse,
    ReservationRow,
    RunFence,
    Tenant,
    TenantRole,
    TenantUsage,
    UsageRecord,
)
from suanwang.server.models.billing.config import forget_admission_config
from suanwang.server.models.tenants import create_tenant
from suanwang.server.settings import Settings

# Starlette 1.x warns on import that its TestClient should run on httpx2 instead of httpx; only
# httpx is installed and it works. Ignore exactly that warning, exactly here (the module is
# imported once, so nothing else can trigger it later).
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="Using `httpx` with `starlette.testclient` is deprecated"
    )
    from starlette.testclient import TestClient


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_schema: Callable[..., AbstractContextManager[str]],
) -> Iterator[str]:
    """A fresh, empty database for this test session (not yet migrated)."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "suanwang.db"
        yield f"sqlite:///{path}"
        return
    with pg_schema() as url:
        yield url


@pytest.fixture(scope="session")
def app(db_url: str) -> Iterator[FastAPI]:
    """The app with its lifespan entered (migrated database, scenario loaded)."""
    application = create_app(Settings(db_url=db_url), clock=stepping(NOW))
    with TestClient(application):
        yield application


@pytest.fixture(scope="module")
def live_url(app: FastAPI) -> Iterator[str]:
    """The app served over HTTP by uvicorn in a thread, as the command line's client meets it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)


@pytest.fixture
def sessions(app: FastAPI) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = app.state.sessions
    return factory


@pytest.fixture
def engine(app: FastAPI) -> Engine:
    eng: Engine = app.state.engine
    return eng


@pytest.fixture
def client(app: FastAPI, sessions: sessionmaker[Session]) -> Iterator[TestClient]:
    """A client on an empty database (every table emptied before the test)."""
    with sessions.begin() as session:
        for table in (  # billing tables first (issue 5)
            QuotaUse, QuotaGrant,
            ReservationRow, OfferRow,  # trading
            UsageRecord, LedgerPosting, LedgerTransaction, Account, BillingSetting,
            PublishedApp, RunFence, CenterDrain, JobEvent, JobRow, CenterOwner, Tenant,
            ClusterMember, LeaderTerm,  # the replicated control plane (issue 16)
            TenantUsage,  # the placer's saved fair-share usage
            AgentRun, CenterAgent,  # center agents (issue 16)
        ):  # fmt: skip
            session.execute(delete(table))
    forget_admission_config()  # its settings were just deleted
    yield TestClient(app)  # the lifespan is entered once per session, by ``app``


@pytest.fixture
def fresh_db_url(
    db_url: str, tmp_path: Path, pg_schema: Callable[..., AbstractContextManager[str]]
) -> Iterator[str]:
    """Another empty database on the same server as ``db_url`` (a new file or schema)."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with pg_schema() as url:
        yield url


@dataclass(frozen=True)
class Who:
    """A tenant made for a test: its id, role, key and ready-made auth headers."""

    id: str
    role: TenantRole
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def make_tenant(client: TestClient, sessions: sessionmaker[Session]) -> Callable[..., Who]:
    def make(role: TenantRole = TenantRole.CONSUMER, name: str | None = None) -> Who:
        with sessions() as session:
            tenant, key = create_tenant(
                session=session, name=name or f"t-{secrets.token_hex(4)}", role=role, now=NOW
            )
            session.commit()
            return Who(tenant.id, role, key)

    return make


@pytest.fixture
def alice(make_tenant: Callable[..., Who]) -> Who:
    return make_tenant(TenantRole.CONSUMER, "alice")


@pytest.fixture
def bob(make_tenant: Callable[..., Who]) -> Who:
    return make_tenant(TenantRole.CONSUMER, "bob")


@pytest.fixture
def operator(make_tenant: Callable[..., Who]) -> Who:
    return make_tenant(TenantRole.OPERATOR, "ops")


def job_body(**overrides: Any) -> dict[str, Any]:
    """A valid job spec (an 8-card training job from Beijing), with overrides."""
    body: dict[str, Any] = {
        "name": "train-llm",
        "command": "python train.py --epochs 3",
        "resources": {"cpus": 32, "count": 8, "accelerator": "any", "mem_gb": 256},
        "duration_s": 7200,
        "origin": "beijing",
    }
    body.update(overrides)
    return body


@pytest.fixture
def body() -> Callable[..., dict[str, Any]]:
    return job_body


@pytest.fixture
def submit(client: TestClient) -> Callable[..., dict[str, Any]]:
    """Submit ``job_body(**overrides)`` as ``who``; asserts 201 and returns the job."""

    def run(who: Who, **overrides: Any) -> dict[str, Any]:
        r = client.post("/v1/jobs", json=job_body(**overrides), headers=who.headers)
        assert r.status_code == 201, r.text
        job: dict[str, Any] = r.json()
        return job

    return run
