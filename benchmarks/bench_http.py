"""HTTP job submission benchmark against PostgreSQL, side by side with ``sbatch`` to Slurm.

Run (docs/benchmarks.md records the results and the exact commands):

    .venv/bin/python benchmarks/bench_http.py http \
        --db postgresql+psycopg://postgres@127.0.0.1:5432/test --count 20000 --concurrency 64 \
        [--workers 2] [--rate 500] [--repeat 3] [--sbatch-conf /path/to/slurm.conf] [--json]

Each repeat of the ``http`` benchmark:

1. creates a fresh PostgreSQL schema ``bench_<random>`` (selected through ``search_path`` in the
   URL, as the test suite does; dropped at the end unless ``--keep``), migrates it and creates a
   consumer tenant;
2. starts the real server as a subprocess: ``suanwang serve --db URL`` (``--workers 1``) or
   ``uvicorn --factory suanwang.server.app:create_app --workers N``, with or without the
   dispatcher and reconciler (``--services``; with several workers they run as
   ``suanwang worker``), and waits for ``/healthz``;
3. sends ``--count`` realistic job specs to ``POST /v1/jobs`` (or for ``--duration`` seconds),
   each with its own ``Idempotency-Key``, over ``--concurrency`` keep-alive connections: in a
   closed loop (each connection sends when its last answer came) or, with ``--rate``, in an open
   loop (a job is due every 1/rate s and its latency counts from then). A request that fails in
   transport or with a 5xx is retried with the same key, as a real client would. The client is
   a minimal HTTP/1.1 one (``--client raw``): httpx costs more CPU than the server here;
4. measures throughput over the steady part of the run (after ``--warmup`` submissions, before
   the last ``--concurrency`` ones), latency (p50/p95/p99/max) of the requests started in it,
   and the CPU time per submission of the client, the server processes, PostgreSQL and the rest
   of the machine (``other``: noise from whatever else runs);
5. checks in the database: no lost job (every acknowledged id is stored, under its key), no
   duplicate (rows == distinct keys, one ``submitted`` event per job, no row for a key that was
   never sent); replays a sample of keys (must answer 200 with the same id) and races fresh keys
   in pairs (one job per key), then counts the rows again.

``--sbatch-conf PATH`` then runs the same number of ``sbatch --hold --wrap true`` submissions in
the same mode and concurrency (subprocesses, ``SLURM_CONF=PATH``) against that controller; the
``sbatch`` subcommand runs only that part. Results print as a table, or one JSON document with
``--json``; the exit status is 1 if a job was lost or duplicated. ``--profile FILE`` samples the
server with py-spy (``pip install py-spy``) into collapsed stacks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from sqlalchemy import make_url

from suanwang.cli.demo import DEMO_JOBS
from suanwang.server.database.models import TenantRole
from suanwang.server.database.session import make_engine, migrate, session_factory
from suanwang.server.models.tenants import create_tenant

BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

# --------------------------------------------------------------------------- workload

#: The job specs: the mix of ``suanwang demo`` (kinds, origins, resources and stacks vary).
TEMPLATES = DEMO_JOBS


def job_bodies(n: int, seed: int) -> list[bytes]:
    """``n`` JSON bodies for ``POST /v1/jobs``, serialised up front (the client stays cheap)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body = json.loads(json.dumps(TEMPLATES[i % len(TEMPLATES)]))
        body["name"] = f"{body['name']}-{i}"
        body["duration_s"] = round(body["duration_s"] * rng.uniform(0.5, 2.0))
        out.append(json.dumps(body, separators=(",", ":")).encode())
    return out


# --------------------------------------------------------------------------- statistics


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class LoadResult:
    """One load phase (HTTP or sbatch): throughput, latency, errors, CPU."""

    tool: str
    requests: int
    concurrency: int
    ok: int
    errors: int  # failed attempts (retried for HTTP)
    failed: int  # gave up: no job for this request
    wall_s: float
    window_s: float
    window_requests: int
    throughput_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)


def summarise(
    tool: str,
    done: list[tuple[float, float, float]],
    requests: int,
    concurrency: int,
    warmup: int,
    wall_s: float,
    errors: int,
    failed: int,
    error_kinds: dict[str, int],
) -> LoadResult:
    """``done``: (start, end, latency) of each successful request.

    The steady window runs from the ``warmup``-th completion to the completion that leaves
    ``concurrency`` requests still to finish (all clients busy throughout).
    """
    if len(done) < 2:  # nothing (or one thing) got through: no rate to measure
        nan = float("nan")
        return LoadResult(
            tool, requests, concurrency, len(done), errors, failed, round(wall_s, 2), 0.0, 0,
            0.0, nan, nan, nan, nan, error_kinds=error_kinds,
        )  # fmt: skip
    ends = sorted(e for _, e, _ in done)
    lo = min(warmup, max(0, len(ends) - 2))
    hi = max(lo + 1, len(ends) - 1 - concurrency)
    t0, t1 = ends[lo], ends[hi]
    window = max(t1 - t0, 1e-9)
    lat = [x * 1000 for s, _, x in done if t0 <= s <= t1] or [x * 1000 for *_, x in done]
    return LoadResult(
        tool=tool,
        requests=requests,
        concurrency=concurrency,
        ok=len(done),
        errors=errors,
        failed=failed,
        wall_s=round(wall_s, 2),
        window_s=round(window, 2),
        window_requests=hi - lo,
        throughput_per_s=round((hi - lo) / window, 1),
        p50_ms=round(pct(lat, 50), 1),
        p95_ms=round(pct(lat, 95), 1),
        p99_ms=round(pct(lat, 99), 1),
        max_ms=round(max(lat), 1),
        error_kinds=error_kinds,
    )


# --------------------------------------------------------------------------- CPU accounting


def _proc_stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, cpu seconds) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def _all_procs() -> dict[int, tuple[str, int, float]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _proc_stat(int(entry))) is not None:
            out[int(entry)] = st
    return out


def cpu_snapshot(server_pid: int | None, extra_pids: list[int]) -> dict[str, float]:
    """CPU seconds so far of: this client, the server's process tree, PostgreSQL, the machine."""
    procs = _all_procs()
    tree: set[int] = set()
    roots = [p for p in [server_pid, *extra_pids] if p is not None]
    frontier = list(roots)
    while frontier:
        pid = frontier.pop()
        if pid in tree:
            continue
        tree.add(pid)
        frontier.extend(c for c, (_, ppid, _) in procs.items() if ppid == pid)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_line = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(x) for i, x in enumerate(cpu_line) if i not in (3, 4)) / CLK_TCK  # no idle
    return {
        "client": ru.ru_utime + ru.ru_stime,
        "client_children": kids.ru_utime + kids.ru_stime,
        "server": sum(procs[p][2] for p in tree if p in procs),
        "postgres": sum(v[2] for v in procs.values() if v[0].startswith("postgres")),
        "machine": busy,
    }


def cpu_per_request(a: dict[str, float], b: dict[str, float], n: int) -> dict[str, float]:
    """CPU ms per request of each part; ``other``: the rest of the machine (noise)."""
    out = {k: round((b[k] - a[k]) * 1000 / max(n, 1), 3) for k in a}
    parts = ("client", "client_children", "server", "postgres")
    out["other"] = round(out["machine"] - sum(out[k] for k in parts), 3)
    return out


# --------------------------------------------------------------------------- database


@contextlib.contextmanager
def fresh_database(url: str, keep: bool) -> Iterator[str]:
    """A URL into a new, empty schema (PostgreSQL) or file (SQLite), removed afterwards."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-http-") as d:
            yield f"sqlite:///{d}/bench.db"
        return
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    schema = f"bench_{secrets.token_hex(5)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        scoped = parsed.update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        if not keep:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def setup_tenant(url: str) -> tuple[str, str]:
    """Migrate and create a consumer tenant; returns (tenant id, API key)."""
    migrate(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            tenant, key = create_tenant(
                session=session, name=f"bench-{secrets.token_hex(4)}", role=TenantRole.CONSUMER,
                now=datetime.now(UTC),
            )  # fmt: skip
            session.commit()
            return tenant.id, key
    finally:
        engine.dispose()


def stored_jobs(url: str, tenant_id: str) -> tuple[dict[str, str], dict[str, int]]:
    """{job id: idempotency key} and {job id: number of 'submitted' events} for the tenant."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT id, idempotency_key FROM jobs WHERE tenant_id = %s"
                if engine.dialect.name == "postgresql"
                else "SELECT id, idempotency_key FROM jobs WHERE tenant_id = ?",
                (tenant_id,),
            ).all()
            events = conn.exec_driver_sql(
                "SELECT job_id, count(*) FROM job_events WHERE from_state IS NULL GROUP BY job_id"
            ).all()
    finally:
        engine.dispose()
    return {r[0]: r[1] for r in rows}, {e[0]: int(e[1]) for e in events}


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    procs: list[subprocess.Popen[bytes]]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.procs[0].pid

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT if p is self.procs[0] else signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_server(db_url: str, args: argparse.Namespace, workdir: Path) -> Server:
    port = free_port()
    log = workdir / "server.log"
    env = {**os.environ, "SUANWANG_DB": db_url}
    centers = str(workdir / "centers")
    extra: list[list[str]] = []
    if args.workers == 1 and not args.uvicorn:
        cmd = [str(BIN / "suanwang"), "serve", "--db", db_url, "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--executors-dir", centers]
        cmd += ["--services" if args.services else "--no-services"]
    else:
        cmd = [str(BIN / "python"), "-m", "uvicorn", "suanwang.server.app:create_app"]
        cmd += ["--factory", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--workers", str(args.workers), "--log-level", "warning"]
        if args.services:
            extra.append([str(BIN / "suanwang"), "worker", "--db", db_url])
            extra[-1] += ["--executors-dir", centers]
    out = log.open("wb")
    procs = [subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)]
    procs += [subprocess.Popen(c, stdout=out, stderr=subprocess.STDOUT, env=env) for c in extra]
    server = Server(procs, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 90
    while True:
        if any(p.poll() is not None for p in procs):
            server.stop()
            raise SystemExit(f"server exited; log:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(server.url + "/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise SystemExit(f"server did not answer /healthz in 90 s; log:\n{log.read_text()}")
        time.sleep(0.2)


# --------------------------------------------------------------------------- HTTP load


@dataclass
class Ack:
    key: str
    job_id: str
    status: int


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client on one connection (a few µs of CPU a request).

    httpx costs ~3 ms of CPU per request here, more than the server: on a 2-core machine
    the load generator would take most of the CPU it is measuring. This one only writes the
    request and reads the status, headers and a Content-Length body.
    """

    def __init__(self, base: str, api_key: str, timeout_s: float) -> None:
        url = httpx.URL(base)
        self.host, self.port = url.host, url.port or 80
        self.timeout_s = timeout_s
        self.head = (
            f"POST /v1/jobs HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes, key: str) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._post(body, key), self.timeout_s)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise ConnectionError("request failed") from None

    async def _post(self, body: bytes, key: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            b"%sIdempotency-Key: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (self.head, key.encode(), len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, close = None, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise ValueError("no Content-Length")
        payload = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def http_load(
    base: str,
    api_key: str,
    bodies: list[bytes],
    keys: list[str],
    concurrency: int,
    duration_s: float | None,
    timeout_s: float,
    client_kind: str,
    rate: float | None = None,
) -> tuple[list[tuple[float, float, float]], list[Ack], int, int, dict[str, int], float, int]:
    """Submit ``bodies[i]`` with ``keys[i]`` over ``concurrency`` keep-alive connections.

    Closed loop (``rate`` None): each connection sends its next request when the previous one
    is answered. Open loop: request ``i`` is due at ``i / rate`` seconds and waits for a free
    connection if none is; its latency counts from when it was due (no coordinated omission).
    ``client_kind``: ``raw`` (:class:`RawConnection`) or ``httpx`` (one ``httpx.AsyncClient``).
    Returns (start, end, latency) of each success, the acknowledgements, failed attempts,
    requests given up, error kinds, wall time and the number of keys sent.
    """
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    done: list[tuple[float, float, float]] = []
    acks: list[Ack] = []
    kinds: dict[str, int] = {}
    errors = failed = 0
    next_i = 0
    t_start = time.perf_counter()
    stop_at = None if duration_s is None else t_start + duration_s

    def more() -> bool:
        return next_i < len(bodies) and (stop_at is None or time.perf_counter() < stop_at)

    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=timeout_s
    ) as client:

        async def via_httpx(body: bytes, key: str) -> tuple[int, bytes]:
            try:
                r = await client.post("/v1/jobs", content=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError as exc:
                raise ConnectionError(type(exc).__name__) from None
            return r.status_code, r.content

        posters: list[RawConnection | None] = [
            RawConnection(base, api_key, timeout_s) if client_kind == "raw" else None
            for _ in range(concurrency)
        ]

        async def submit(i: int, raw: RawConnection | None, due: float) -> None:
            nonlocal errors, failed
            post = raw.post if raw is not None else via_httpx
            for attempt in range(4):  # retries reuse the key: never a second job
                try:
                    status, payload = await post(bodies[i], keys[i])
                except ConnectionError as exc:
                    errors += 1
                    kinds[str(exc)] = kinds.get(str(exc), 0) + 1
                    continue
                end = time.perf_counter()
                if status in (200, 201):
                    done.append((due, end, end - due))
                    acks.append(Ack(keys[i], json.loads(payload)["id"], status))
                    return
                errors += 1
                kinds[str(status)] = kinds.get(str(status), 0) + 1
                if status < 500:
                    break
                await asyncio.sleep(0.05 * (attempt + 1))
            failed += 1

        async def closed_loop(raw: RawConnection | None) -> None:
            nonlocal next_i
            while more():
                i = next_i
                next_i += 1
                await submit(i, raw, time.perf_counter())

        async def open_loop(per_s: float) -> None:
            nonlocal next_i
            free: asyncio.Queue[RawConnection | None] = asyncio.Queue()
            for raw in posters:
                free.put_nowait(raw)
            tasks = set()

            async def one(i: int, raw: RawConnection | None, due: float) -> None:
                try:
                    await submit(i, raw, due)
                finally:
                    free.put_nowait(raw)

            while more():
                i = next_i
                due = t_start + i / per_s
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                raw = await free.get()
                next_i += 1
                task = asyncio.create_task(one(i, raw, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)

        if rate is None:
            await asyncio.gather(*(closed_loop(raw) for raw in posters))
        else:
            await open_loop(rate)
        wall = time.perf_counter() - t_start
        for raw in posters:
            if raw is not None:
                raw.close()
    return done, acks, errors, failed, kinds, wall, next_i


async def replay_and_race(
    base: str, api_key: str, sample: list[tuple[str, bytes, str]], race: list[tuple[str, bytes]]
) -> dict[str, Any]:
    """Resend ``sample`` (key, body, id): expect 200 and the same id. Send each of ``race``
    twice at once: expect one 201 and one 200 with the same id."""
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    out: dict[str, Any] = {"replayed": 0, "replay_mismatch": 0, "raced": 0, "race_mismatch": 0}
    race_ids: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        sem = asyncio.Semaphore(16)

        async def replay(key: str, body: bytes, job_id: str) -> None:
            try:
                async with sem:
                    r = await client.post(
                        "/v1/jobs", content=body, headers={"Idempotency-Key": key}
                    )
            except httpx.HTTPError:
                ok = False
            else:
                ok = (
                    r.status_code == 200
                    and r.headers.get("Idempotent-Replayed") == "true"
                    and r.json()["id"] == job_id
                )
            out["replayed"] += 1
            out["replay_mismatch"] += not ok

        async def pair(key: str, body: bytes) -> None:
            try:
                async with sem:
                    rs = await asyncio.gather(
                        *(
                            client.post("/v1/jobs", content=body, headers={"Idempotency-Key": key})
                            for _ in range(2)
                        )
                    )
            except httpx.HTTPError:
                out["raced"] += 1
                out["race_mismatch"] += 1
                return
            codes = sorted(r.status_code for r in rs)
            ids = {r.json().get("id") for r in rs if r.status_code in (200, 201)}
            out["raced"] += 1
            out["race_mismatch"] += not (codes == [200, 201] and len(ids) == 1)
            if len(ids) == 1:
                race_ids[key] = ids.pop()

        await asyncio.gather(*(replay(*s) for s in sample))
        await asyncio.gather(*(pair(*p) for p in race))
    out["race_ids"] = race_ids
    return out


@dataclass
class Integrity:
    """What the database holds after the load, and how replays and races were answered.

    ``lost``: acknowledged jobs not stored under their key; ``duplicated``: rows beyond one per
    key; ``phantom``: rows for keys never sent; ``bad_events``: jobs without exactly one
    ``submitted`` event; ``retried_ok``: acknowledgements that came from a retry (200);
    ``unacknowledged_rows``: jobs stored for requests that got no answer (a retry would get
    them back).
    """

    acknowledged: int
    retried_ok: int
    rows: int
    distinct_keys: int
    lost: int
    duplicated: int
    phantom: int
    unacknowledged_rows: int
    bad_events: int
    replayed: int
    replay_mismatch: int
    raced: int
    race_mismatch: int
    rows_after_replay: int
    expected_rows_after_replay: int

    @property
    def ok(self) -> bool:
        return (
            self.lost == self.duplicated == self.phantom == self.bad_events == 0
            and self.replay_mismatch == self.race_mismatch == 0
            and self.rows_after_replay == self.expected_rows_after_replay
        )


def check_integrity(
    db_url: str,
    tenant_id: str,
    base: str,
    api_key: str,
    acks: list[Ack],
    sent: dict[str, bytes],
    replay_n: int,
    race_n: int,
    seed: int,
) -> Integrity:
    stored, _ = stored_jobs(db_url, tenant_id)
    by_key = {a.key: a.job_id for a in acks}
    keys_in_db = list(stored.values())
    rng = random.Random(seed)
    sample = rng.sample(sorted(by_key), min(replay_n, len(by_key)))
    race = [(f"race-{secrets.token_hex(8)}", body) for body in job_bodies(race_n, seed + 1)]
    res = asyncio.run(
        replay_and_race(base, api_key, [(k, sent[k], by_key[k]) for k in sample], race)
    )
    after, events = stored_jobs(db_url, tenant_id)
    race_keys = {k for k, _ in race}
    race_bad = sum(1 for j, k in after.items() if k in race_keys and res["race_ids"].get(k) != j)
    return Integrity(
        acknowledged=len(by_key),
        retried_ok=sum(1 for a in acks if a.status == 200),
        rows=len(stored),
        distinct_keys=len(set(keys_in_db)),
        lost=sum(1 for a in acks if stored.get(a.job_id) != a.key),
        duplicated=len(stored) - len(set(keys_in_db)),
        phantom=sum(1 for k in keys_in_db if k not in sent),
        unacknowledged_rows=sum(1 for k in keys_in_db if k in sent and k not in by_key),
        bad_events=sum(1 for j in after if events.get(j, 0) != 1),
        replayed=res["replayed"],
        replay_mismatch=res["replay_mismatch"],
        raced=res["raced"],
        race_mismatch=res["race_mismatch"] + race_bad,
        rows_after_replay=len(after),
        expected_rows_after_replay=len(stored) + race_n,
    )


def run_http(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    with (
        fresh_database(args.db, args.keep) as db_url,
        tempfile.TemporaryDirectory(prefix="bench-http-") as tmp,
    ):
        tenant_id, api_key = setup_tenant(db_url)
        server = start_server(db_url, args, Path(tmp))
        try:
            n = args.count
            run = secrets.token_hex(4)
            keys = [f"bench-{run}-{i:08d}" for i in range(n)]
            bodies = job_bodies(n, seed)
            profiler = None
            if args.profile is not None:  # sampled stacks of the server, e.g. for flamegraph.pl
                cmd = [str(BIN / "py-spy"), "record", "--format", "raw", "--subprocesses", "--gil"]
                cmd += ["--rate", "250", "--output", str(args.profile), "--pid", str(server.pid)]
                profiler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
                time.sleep(1)
            before = cpu_snapshot(server.pid, [p.pid for p in server.procs[1:]])
            done, acks, errors, failed, kinds, wall, n_sent = asyncio.run(
                http_load(
                    server.url,
                    api_key,
                    bodies,
                    keys,
                    args.concurrency,
                    args.duration,
                    args.timeout,
                    args.client,
                    args.rate,
                )
            )
            after = cpu_snapshot(server.pid, [p.pid for p in server.procs[1:]])
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
            sent = dict(zip(keys[:n_sent], bodies[:n_sent], strict=True))
            result = summarise(
                "http",
                done,
                n_sent,
                args.concurrency,
                min(args.warmup, len(done) // 10),
                wall,
                errors,
                failed,
                kinds,
            )
            result.cpu_ms_per_request = cpu_per_request(before, after, len(done))
            integrity = check_integrity(
                db_url,
                tenant_id,
                server.url,
                api_key,
                acks,
                sent,
                args.replay,
                args.race,
                seed,
            )
            log_bytes = server.log.stat().st_size
            log_lines = sum(1 for _ in server.log.open("rb"))
            exited = [p.returncode for p in server.procs if p.poll() is not None]
            if exited:  # say why, rather than leave only connection errors
                print(f"server exited {exited}:\n{server.log.read_text()[-3000:]}", file=sys.stderr)
        finally:
            server.stop()
    return {
        "load": asdict(result),
        "integrity": {**asdict(integrity), "ok": integrity.ok},
        "server_log": {"bytes": log_bytes, "lines": log_lines},
        "server_exited": exited,
    }


# --------------------------------------------------------------------------- sbatch


_SUBMITTED = re.compile(rb"^(\d+)")


def run_sbatch(
    conf: Path,
    count: int,
    concurrency: int,
    warmup: int,
    hold: bool = True,
    rate: float | None = None,
) -> dict[str, Any]:
    """``count`` ``sbatch --wrap true`` submissions from ``concurrency`` concurrent clients
    (closed loop), or offered at ``rate`` per second with at most ``concurrency`` at once.

    With ``hold`` (the default) jobs are submitted held (``--hold``): the controller accepts
    and stores them but does not start them, like the HTTP API without its dispatcher. The
    jobs are cancelled (``scancel --name``) afterwards.
    """
    env = {**os.environ, "SLURM_CONF": str(conf)}
    name = f"bench-{secrets.token_hex(4)}"
    cmd = ["sbatch", "--parsable", "--job-name", name, "--output", "/dev/null"]
    cmd += [*(["--hold"] if hold else []), "--wrap", "true"]
    done: list[tuple[float, float, float]] = []
    ids: list[int] = []
    kinds: dict[str, int] = {}
    errors = 0

    async def one(due: float) -> None:
        nonlocal errors
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        out, err = await proc.communicate()
        end = time.perf_counter()
        m = _SUBMITTED.match(out.strip())
        if proc.returncode == 0 and m:
            done.append((due, end, end - due))
            ids.append(int(m.group(1)))
        else:
            errors += 1
            msg = (err.decode(errors="replace").strip().splitlines() or ["?"])[-1][:80]
            kinds[msg] = kinds.get(msg, 0) + 1

    async def load() -> float:
        next_i = 0
        t0 = time.perf_counter()

        async def closed_loop() -> None:
            nonlocal next_i
            while next_i < count:
                next_i += 1
                await one(time.perf_counter())

        async def open_loop(per_s: float) -> None:  # as in http_load
            slots = asyncio.Semaphore(concurrency)
            tasks = set()

            async def run(due: float) -> None:
                try:
                    await one(due)
                finally:
                    slots.release()

            for i in range(count):
                due = t0 + i / per_s
                if (delay := due - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                task = asyncio.create_task(run(due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)

        if rate is None:
            await asyncio.gather(*(closed_loop() for _ in range(concurrency)))
        else:
            await open_loop(rate)
        return time.perf_counter() - t0

    before = cpu_snapshot(None, [])
    ctld = _slurmctld_pids(conf)
    ctld_before = sum(st[2] for p in ctld if (st := _proc_stat(p)) is not None)
    wall = asyncio.run(load())
    after = cpu_snapshot(None, [])
    ctld_after = sum(st[2] for p in ctld if (st := _proc_stat(p)) is not None)
    result = summarise(
        "sbatch", done, count, concurrency, min(warmup, len(done) // 10), wall, errors,
        errors, kinds,
    )  # fmt: skip
    cpu = cpu_per_request(before, after, len(done))
    cpu["server"] = round((ctld_after - ctld_before) * 1000 / max(len(done), 1), 3)  # slurmctld
    cpu["other"] = round(cpu["other"] - cpu["server"], 3)
    result.cpu_ms_per_request = cpu
    q = subprocess.run(
        ["squeue", "--noheader", "--states=all", "--name", name, "--format=%i"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    in_ctld = {int(x) for x in q.stdout.split() if x.isdigit()}
    subprocess.run(["scancel", "--name", name], env=env, capture_output=True, check=False)
    return {
        "load": asdict(result),
        "integrity": {
            "acknowledged": len(ids),
            "distinct_ids": len(set(ids)),
            "duplicated": len(ids) - len(set(ids)),
            "known_to_controller": len(in_ctld),
            "lost": len(set(ids) - in_ctld) if q.returncode == 0 else None,
        },
    }


def _slurmctld_pids(conf: Path) -> list[int]:
    """The controller of ``conf`` (its ``SlurmctldPidFile``) and its children, else every
    slurmctld on the machine."""
    procs = _all_procs()
    with contextlib.suppress(OSError, ValueError):
        for line in conf.read_text().splitlines():
            key, _, value = line.strip().partition("=")
            if key.lower() == "slurmctldpidfile":
                pid = int(Path(value.strip()).read_text().split()[0])
                return [pid, *(c for c, (_, ppid, _) in procs.items() if ppid == pid)]
    return [p for p, (comm, _, _) in procs.items() if comm == "slurmctld"]


# --------------------------------------------------------------------------- reporting


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    loads = [r["load"] for r in runs]
    keys = ("throughput_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms")
    med: dict[str, Any] = {k: round(statistics.median(x[k] for x in loads), 1) for k in keys}
    med["errors"] = sum(x["errors"] for x in loads)
    med["failed"] = sum(x["failed"] for x in loads)
    cpu_keys = loads[0]["cpu_ms_per_request"].keys()
    med["cpu_ms_per_request"] = {
        k: round(statistics.median(x["cpu_ms_per_request"][k] for x in loads), 3) for k in cpu_keys
    }
    return med


def print_table(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"job submissions: {doc['config']}")
    cols = ["tool", "run", "requests", "ok", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms"]
    cols += ["max ms", "lost", "dup", "CPU ms/req client/server/pg/other"]
    for c in cols:
        table.add_column(c, justify="right" if c not in ("tool", "run") else "left")
    for tool in ("http", "sbatch"):
        for i, r in enumerate(doc.get(tool, {}).get("runs", [])):
            ld, it, cpu = r["load"], r["integrity"], r["load"]["cpu_ms_per_request"]
            cpu_s = f"{cpu['client'] + cpu['client_children']:.2f}/{cpu['server']:.2f}/"
            cpu_s += f"{cpu['postgres']:.2f}/{cpu['other']:.2f}"
            table.add_row(
                tool, str(i + 1), f"{ld['requests']:,}", f"{ld['ok']:,}", str(ld["errors"]),
                f"{ld['throughput_per_s']:,.0f}", f"{ld['p50_ms']:.1f}", f"{ld['p95_ms']:.1f}",
                f"{ld['p99_ms']:.1f}", f"{ld['max_ms']:.0f}", str(it.get("lost")),
                str(it.get("duplicated")), cpu_s,
            )  # fmt: skip
        if tool in doc and len(doc[tool]["runs"]) > 1:
            m = doc[tool]["median"]
            table.add_row(
                tool, "median", "", "", str(m["errors"]), f"{m['throughput_per_s']:,.0f}",
                f"{m['p50_ms']:.1f}", f"{m['p95_ms']:.1f}", f"{m['p99_ms']:.1f}",
                f"{m['max_ms']:.0f}", "", "", "",
            )  # fmt: skip
    Console(width=200).print(table)
    if "http" in doc:
        for i, r in enumerate(doc["http"]["runs"]):
            it = r["integrity"]
            print(
                f"http run {i + 1}: integrity {'OK' if it['ok'] else 'FAILED'}: "
                f"{it['acknowledged']} acknowledged, {it['rows']} rows, "
                f"{it['replayed']} replayed ({it['replay_mismatch']} wrong), "
                f"{it['raced']} raced pairs ({it['race_mismatch']} wrong), "
                f"server log {r['server_log']['lines']} lines"
            )
        t = doc["targets"]
        print(
            f"targets: >= {t['throughput_per_s']} submissions/s: {t['throughput_met']}; "
            f"p99 <= {t['p99_ms']} ms: {t['p99_met']}; zero lost/duplicated: {t['integrity_met']}"
        )


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="bench", required=True)
    h = sub.add_parser("http", help="HTTP submissions (and sbatch with --sbatch-conf)")
    h.add_argument("--db", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    h.add_argument("--count", type=int, default=20_000, help="submissions per run")
    h.add_argument("--duration", type=float, help="stop submitting after this many seconds")
    h.add_argument("--concurrency", type=int, default=64, help="concurrent clients")
    h.add_argument("--warmup", type=int, default=1000, help="submissions not measured")
    h.add_argument("--timeout", type=float, default=30.0, help="per request (s)")
    h.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: minimal keep-alive HTTP/1.1 (raw) or httpx.AsyncClient",
    )
    h.add_argument("--repeat", type=int, default=1, help="runs, each on a fresh schema")
    h.add_argument("--workers", type=int, default=1, help="server processes (uvicorn)")
    h.add_argument(
        "--uvicorn", action="store_true", help="start uvicorn --factory even for one worker"
    )
    h.add_argument("--services", action=argparse.BooleanOptionalAction, default=False)
    h.add_argument("--replay", type=int, default=500, help="keys re-sent after the run")
    h.add_argument("--race", type=int, default=200, help="fresh keys sent twice at once")
    h.add_argument("--keep", action="store_true", help="keep the schema")
    h.add_argument("--profile", type=Path, help="py-spy the server; collapsed stacks to FILE")
    h.add_argument("--seed", type=int, default=7)
    h.add_argument("--target-rps", type=float, default=500.0)
    h.add_argument("--target-p99-ms", type=float, default=100.0)
    for q in (h, sub.add_parser("sbatch", help="sbatch submissions only")):
        q.add_argument("--sbatch-conf", type=Path, help="slurm.conf of a running slurmctld")
        q.add_argument("--sbatch-count", type=int, help="default: --count")
        q.add_argument(
            "--sbatch-hold",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="submit held jobs (accepted and stored, not started)",
        )
        q.add_argument(
            "--rate",
            type=float,
            help="open loop: submissions/s offered (default: closed loop, as fast as answered)",
        )
        q.add_argument("--json", action="store_true", help="print one JSON document")
    s = sub.choices["sbatch"]
    s.add_argument("--count", type=int, default=20_000)
    s.add_argument("--concurrency", type=int, default=64)
    s.add_argument("--warmup", type=int, default=1000)
    s.add_argument("--repeat", type=int, default=1)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop servers, drop the schema
    if args.bench == "sbatch" and args.sbatch_conf is None:
        p.error("sbatch needs --sbatch-conf")

    config = f"{args.count:,} x {args.concurrency} clients"
    if args.bench == "http":
        config += f" ({args.client}), {args.workers} server process(es), services "
        config += "on" if args.services else "off"
    config += f", open loop at {args.rate:g}/s" if args.rate else ", closed loop"
    doc: dict[str, Any] = {"config": config, "args": {k: str(v) for k, v in vars(args).items()}}
    if args.bench == "http":
        runs = []
        for i in range(args.repeat):
            runs.append(run_http(args, args.seed + i))
            if not args.json:
                print(json.dumps({"run": i + 1, **runs[-1]}), file=sys.stderr, flush=True)
        med = median_of(runs)
        doc["http"] = {"runs": runs, "median": med}
        doc["targets"] = {
            "throughput_per_s": args.target_rps,
            "p99_ms": args.target_p99_ms,
            # open loop: the offered rate caps what is measured; allow 1 % for the window edges
            "throughput_met": med["throughput_per_s"]
            >= args.target_rps * (0.99 if args.rate is not None else 1.0),
            "p99_met": med["p99_ms"] <= args.target_p99_ms,
            "integrity_met": all(r["integrity"]["ok"] for r in runs) and med["failed"] == 0,
        }
    if args.sbatch_conf is not None:
        n = args.sbatch_count or args.count
        runs = [
            run_sbatch(
                args.sbatch_conf, n, args.concurrency, args.warmup, args.sbatch_hold, args.rate
            )
            for _ in range(args.repeat)
        ]
        doc["sbatch"] = {"runs": runs, "median": median_of(runs)}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_table(doc)
    ok = doc.get("targets", {}).get("integrity_met", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
