"""The rate limits hold for the whole control plane (docs/security.md, "Rate limits across
replicas"): two real API replicas (``suanwang serve --no-services``) on one PostgreSQL schema,
each keeping its share of the limit from the live API members it counts at its heartbeat.

A client that spreads its requests over both gets the configured number of wrong keys and of
submissions in all, not twice as many.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from processes import free_port, wait_healthy

from suanwang.server.database.models import TenantRole
from suanwang.server.database.session import make_engine, migrate, session_factory
from suanwang.server.models.tenants import create_tenant

SUANWANG = str(Path(sys.executable).parent / "suanwang")
TINY = str(Path(__file__).parents[1] / "fixtures" / "scenarios" / "tiny")
#: the limits of the whole control plane here; refills too slow to matter during a test
AUTH_BURST, SUBMIT_BURST, RATE = 10, 6, 0.001
JOB = {"command": "true", "duration_s": 600, "origin": "harbour",
       "resources": {"accelerator": "h100", "cards": 1}}  # fmt: skip


@pytest.fixture
def replicas(
    pg_schema: Callable[..., AbstractContextManager[str]], tmp_path: Path
) -> Iterator[tuple[list[str], dict[str, str]]]:
    """Two replicas' URLs, once each counts both, and a consumer's headers."""
    with pg_schema() as db:
        migrate(db)
        engine = make_engine(db)
        try:
            with session_factory(engine)() as s:
                now = datetime.now(UTC)
                _, key = create_tenant(session=s, name="c", role=TenantRole.CONSUMER, now=now)
                _, op = create_tenant(session=s, name="op", role=TenantRole.OPERATOR, now=now)
                s.commit()
        finally:
            engine.dispose()
        env = {**os.environ, "SUANWANG_AUTH_FAILURE_BURST": str(AUTH_BURST),
               "SUANWANG_AUTH_FAILURE_RATE": str(RATE), "SUANWANG_SUBMIT_BURST":
               str(SUBMIT_BURST), "SUANWANG_SUBMIT_RATE": str(RATE)}  # fmt: skip
        procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        urls = []
        try:
            for i in range(2):
                port, log = free_port(), tmp_path / f"api{i}.log"
                with log.open("ab") as out:
                    cmd = [SUANWANG, "serve", "--db", db, "--scenario", TINY, "--no-services",
                           "--port", str(port)]  # fmt: skip
                    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
                procs.append((proc, log))
                urls.append(f"http://127.0.0.1:{port}")
                wait_healthy(urls[-1], proc, log.read_text)
            _until_both_count_both(urls[0], {"Authorization": f"Bearer {op}"})
            yield urls, {"Authorization": f"Bearer {key}"}
        finally:
            for proc, _ in procs:
                proc.send_signal(signal.SIGTERM)
            for proc, _ in procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _until_both_count_both(url: str, headers: dict[str, str]) -> None:
    """Until each API member has beaten at least once a second after both were there (each
    counts the live members at its beat)."""
    deadline = time.monotonic() + 60
    while True:
        members = httpx.get(url + "/v1/cluster", headers=headers, timeout=10).json()["members"]
        api = [m for m in members if m["kind"] == "api" and not m["stale"]]
        if len(api) == 2:
            both = max(datetime.fromisoformat(m["started_at"]) for m in api)
            if all((datetime.fromisoformat(m["heartbeat_at"]) - both).total_seconds() > 1
                   for m in api):  # fmt: skip
                return
        assert time.monotonic() < deadline, members
        time.sleep(0.5)


def _answers(urls: list[str], n: int, send: Callable[[str], httpx.Response]) -> list[int]:
    """The status codes of ``n`` requests, each replica in turn."""
    return [send(urls[i % len(urls)]).status_code for i in range(n)]


def test_wrong_keys_and_submissions_are_limited_across_both_replicas(
    replicas: tuple[list[str], dict[str, str]],
) -> None:
    urls, headers = replicas
    codes = _answers(urls, 4 * SUBMIT_BURST, lambda u: httpx.post(
        u + "/v1/jobs", json={**JOB, "name": "j"}, headers=headers, timeout=30))  # fmt: skip
    assert set(codes) == {201, 429}
    assert codes.count(201) == SUBMIT_BURST, codes  # not 2 x SUBMIT_BURST
    wrong = {"Authorization": "Bearer sw_not-a-key"}
    codes = _answers(urls, 4 * AUTH_BURST,
                     lambda u: httpx.get(u + "/v1/jobs", headers=wrong, timeout=30))  # fmt: skip
    assert set(codes) == {401, 429}
    assert codes.count(401) == AUTH_BURST, codes
