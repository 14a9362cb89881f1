"""`suanwang serve --workers N --no-services`: several API processes on one port."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
from pathlib import Path

import httpx
from pinned import NOW
from processes import free_port, wait_healthy
from sqlalchemy import func, select

from suanwang.server.database.models import JobRow, TenantRole
from suanwang.server.database.session import make_engine, migrate, session_factory
from suanwang.server.models.tenants import create_tenant

SUANWANG = str(Path(sys.executable).parent / "suanwang")


def test_two_worker_processes_serve_one_port_and_lose_nothing(
    fresh_db_url: str, tmp_path: Path
) -> None:
    migrate(fresh_db_url)
    engine = make_engine(fresh_db_url)
    sessions = session_factory(engine)
    with sessions() as s:
        _, key = create_tenant(session=s, name="w", role=TenantRole.CONSUMER, now=NOW)
        s.commit()
    port = free_port()
    refused = subprocess.run(
        [SUANWANG, "serve", "--db", fresh_db_url, "--workers", "2", "--port", str(port)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "needs --no-services" in refused.stderr
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [SUANWANG, "serve", "--db", fresh_db_url, "--workers", "2", "--no-services",
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, (tmp_path / "serve.log").read_text)
        headers = {"Authorization": f"Bearer {key}"}
        body = {"name": "w", "command": "true", "duration_s": 60, "origin": "beijing"}

        def post(i: int) -> str:
            with httpx.Client(base_url=url, timeout=30) as c:
                r = c.post("/v1/jobs", json=body, headers={**headers, "Idempotency-Key": f"k{i}"})
                assert r.status_code == 201, r.text
                job_id: str = r.json()["id"]
                return job_id

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(post, range(200)))
        assert len(set(ids)) == 200
        with sessions() as s:
            assert s.scalar(select(func.count()).select_from(JobRow)) == 200
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
        engine.dispose()
    # JSON lines from the worker processes too (their logging is configured from a dict)
    lines = (tmp_path / "serve.log").read_text().splitlines()
    assert sum('"logger": "uvicorn.error"' in line for line in lines) >= 2
