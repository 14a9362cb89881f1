"""Fixtures for the console and the app marketplace.

* ``api``: the FastAPI app in-process (``TestClient``) on a fresh database, once on SQLite and
  once on PostgreSQL (a new schema; as the control-plane suite), with ``tenant(role)`` to make
  tenants.
* ``live``: a real ``suanwang serve`` process (API + dispatcher + reconciler + local executors)
  on a free port, with an operator and a consumer key, for the browser tests.
* ``browser``: runs a scenario of ``browser.mjs`` (Playwright driving Debian's
  ``/usr/bin/chromium``). A missing Chromium or Node.js fails the tests: a skipped browser test
  would hide a broken console in CI. ``npm ci`` installs playwright-core when it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from suanwang.server.app import create_app
from suanwang.server.database.models import TenantRole
from suanwang.server.models.tenants import create_tenant
from suanwang.server.settings import Settings

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="Using `httpx` with `starlette.testclient` is deprecated"
    )
    from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("browser.mjs")
CHROMIUM = os.environ.get("SUANWANG_CHROMIUM", "/usr/bin/chromium")
#: Screenshots and failure shots of the browser tests (gitignored).
ARTIFACTS = ROOT / "artifacts" / "console"


@dataclass(frozen=True)
class Key:
    tenant_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_app(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_schema: Callable[..., AbstractContextManager[str]],
) -> Iterator[FastAPI]:
    """The app on a fresh database: a SQLite file, or a new schema on the test PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('console-db') / 'db.sqlite'}"
        app = create_app(Settings(db_url=url))
        with TestClient(app):
            yield app
        return
    with pg_schema("c") as url:
        app = create_app(Settings(db_url=url))
        with TestClient(app):
            yield app


@pytest.fixture
def api(api_app: FastAPI) -> TestClient:
    return TestClient(api_app)


@pytest.fixture
def tenant(api_app: FastAPI) -> Callable[[TenantRole], Key]:
    counter = iter(range(1_000_000))

    def make(role: TenantRole) -> Key:
        with api_app.state.sessions() as session:
            name = f"{role.value}-{os.getpid()}-{next(counter)}-{time.monotonic_ns()}"
            t, key = create_tenant(session=session, name=name, role=role, now=api_app.state.clock())
            session.commit()
            return Key(t.id, key)

    return make


# ------------------------------------------------------------------------------- live server


@dataclass(frozen=True)
class Live:
    url: str
    operator: Key
    consumer: Key
    db: str = ""

    def new_tenant(self, name: str, role: str = "consumer") -> Key:
        """Another tenant of the running server (``suanwang tenants create`` on its database)."""
        return _create(self.db, name, role)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _suanwang() -> list[str]:
    exe = Path(sys.executable).with_name("suanwang")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "suanwang"]


def _create(db: str, name: str, role: str) -> Key:
    out = subprocess.run(
        [*_suanwang(), "tenants", "create", name, "--role", role, "--db", db, "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    data = json.loads(out.stdout)
    return Key(data["tenant_id"], data["api_key"])


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """``suanwang serve`` on a free port with a fresh SQLite database and local executors."""
    work = tmp_path_factory.mktemp("console-live")
    db = f"sqlite:///{work / 'db.sqlite'}"
    operator = _create(db, "console-ops", "operator")
    consumer = _create(db, "console-user", "consumer")
    port = _free_port()
    log = (work / "serve.log").open("w")
    proc = subprocess.Popen(
        [*_suanwang(), "serve", "--db", db, "--port", str(port),
         "--executors-dir", str(work / "centers"), "--no-json-logs"],
        stdout=log, stderr=subprocess.STDOUT, cwd=work,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"suanwang serve exited ({proc.returncode}):\n"
                            + (work / "serve.log").read_text())  # fmt: skip
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("suanwang serve did not answer /healthz within 60 s")
            time.sleep(0.2)
        yield Live(url, operator, consumer, db)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def node_ready() -> str:
    """Node.js with playwright-core installed (``npm ci`` if missing), and Chromium present."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob("failed-*.png"):  # failure shots of an earlier run
        stale.unlink()
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: install Node.js (apt-get install nodejs npm)")
    if not (ROOT / "node_modules" / "playwright-core").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is missing: install it (apt-get install npm)")
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT,
                           capture_output=True, text=True)  # fmt: skip
        if r.returncode != 0:
            pytest.fail(f"npm ci failed:\n{r.stdout}\n{r.stderr}")
    return node


@pytest.fixture
def browser(node_ready: str, live: Live) -> Callable[..., dict[str, Any]]:
    """Run a scenario of browser.mjs against ``live``; its result, or the test fails."""

    def run(scenario: str, key: Key | None = None, **extra: Any) -> dict[str, Any]:
        args = {"url": live.url, "key": (key or live.operator).key, "out": str(ARTIFACTS),
                "chromium": CHROMIUM, **extra}  # fmt: skip
        r = subprocess.run([node_ready, str(SCRIPT), scenario, json.dumps(args)], cwd=ROOT,
                           capture_output=True, text=True, timeout=240)  # fmt: skip
        if r.returncode != 0:
            pytest.fail(f"browser scenario {scenario!r} failed (screenshot in {ARTIFACTS}):\n"
                        f"{r.stderr[-4000:]}")  # fmt: skip
        result: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
        assert result["page_errors"] == [], result["page_errors"]
        return result

    return run
