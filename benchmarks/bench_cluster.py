"""The replicated control plane (issue 16): submit→placed latency and leader takeover.

Run: .venv/bin/python benchmarks/bench_cluster.py [--jobs 40] [--repeat 3] [--seed 1]
         [--src DIR] [--worker-arg ARG ...] [--kills 0]

Each repeat, on a fresh schema of database ``test`` at 127.0.0.1:5432: an API replica
(``serve --no-services``, which migrates) and ``--workers`` workers (``suanwang worker``) on the
tiny test scenario, started as processes; a consumer (``tenants create``). Then:

* **latency**: ``--jobs`` one-card jobs submitted one by one over HTTP, seeded random gaps of
  0.2-0.6 s; for each, the time from its ``submitted_at`` to its ``scheduled`` event (both
  stamped by the processes' clocks on this machine), read from the database;
* **takeover** (``--kills K``, this version only): ``kill -9`` of the placement leader K
  times (a new worker is started after each), the time until the next term is recorded.

``--src DIR`` runs the processes from another source tree (e.g. a worktree of the commit
before: ``PYTHONPATH=DIR/src``), for a side-by-side run; ``--worker-arg`` passes options to the
workers (``--worker-arg=--dispatch-interval --worker-arg=60``). One JSON line per repeat,
then one of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import make_url

from bench_http import fresh_database

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "fixtures" / "scenarios" / "tiny")
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
JOB = {"command": "true", "duration_s": 600, "origin": "harbour",
       "resources": {"accelerator": "h100", "cards": 1}}  # fmt: skip


class Platform:
    """An API replica and workers from ``src`` (None: this tree) on ``url``."""

    def __init__(self, url: str, src: str | None, worker_args: list[str], root: Path) -> None:
        self.url, self.root, self.worker_args = url, root, worker_args
        self.env = {**os.environ}
        if src:
            self.env["PYTHONPATH"] = str(Path(src) / "src")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.port = 18000 + random.Random().randrange(2000)
        self.api_url = f"http://127.0.0.1:{self.port}"
        dsn = make_url(url).set(drivername="postgresql")
        self.dsn = dsn.render_as_string(hide_password=False)

    def run(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{len(self.procs)}-{args[0]}.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "suanwang.cli", *args], env=self.env,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        self.procs.append(proc)
        return proc

    def start(self, workers: int) -> str:
        self.run("serve", "--db", self.url, "--scenario", TINY, "--no-services",
                 "--port", str(self.port))  # fmt: skip
        self.healthy(self.port)
        key = self.tenant()
        for _ in range(workers):
            self.worker()
        return key

    def healthy(self, port: int) -> None:
        """Wait (90 s at most) until the API on ``port`` answers ``/healthz``."""
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the API on port {port} did not start: {self.root}")
            time.sleep(0.2)

    def tenant(self) -> str:
        """A consumer tenant ``bench``; its API key."""
        made = subprocess.run(
            [sys.executable, "-m", "suanwang.cli", "tenants", "create", "bench", "--db", self.url,
             "--json"], env=self.env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        key: str = json.loads(made.stdout)["api_key"]
        return key

    def worker(self) -> subprocess.Popen[bytes]:
        return self.run("worker", "--db", self.url, "--scenario", TINY, "--executors-dir",
                        str(self.root / "centers"), "--center", "coast-hpc",
                        "--unsafe-shared-user", *self.worker_args)  # fmt: skip

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(query, args)
            return cur.fetchall() if cur.description is not None else []

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def _placed_s(p: Platform, job_id: str) -> float | None:
    rows = p.sql(
        "SELECT extract(epoch FROM e.at - j.submitted_at) FROM jobs j JOIN job_events e "
        "ON e.job_id = j.id WHERE j.id = %s AND e.to_state = 'scheduled'",
        job_id,
    )
    return float(rows[0][0]) if rows else None


def latency(p: Platform, key: str, jobs: int, rng: random.Random) -> list[float]:
    headers = {"Authorization": f"Bearer {key}"}
    out: list[float] = []
    with httpx.Client(base_url=p.api_url, headers=headers, timeout=30) as client:
        for i in range(jobs + 3):  # three to warm up, not counted
            r = client.post("/v1/jobs", json={**JOB, "name": f"b{i}"})
            r.raise_for_status()
            job_id = r.json()["id"]
            deadline = time.monotonic() + 120
            while (got := _placed_s(p, job_id)) is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {job_id} not placed in 120 s: {p.root}")
                time.sleep(0.01)
            if i >= 3:
                out.append(got)
            time.sleep(rng.uniform(0.2, 0.6))
    return out


def _leader(p: Platform) -> tuple[int, int] | None:
    rows = p.sql(
        "SELECT t.term, m.pid FROM leader_terms t JOIN cluster_members m ON m.id = t.holder "
        "WHERE t.duty = 'placement'"
    )
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


def takeovers(p: Platform, kills: int) -> list[float]:
    out: list[float] = []
    for _ in range(kills):
        deadline = time.monotonic() + 60
        workers = "SELECT 1 FROM cluster_members WHERE kind = 'worker'"
        while (got := _leader(p)) is None or len(p.sql(workers)) < 2:
            if time.monotonic() > deadline:
                raise SystemExit("no leader and standby")
            time.sleep(0.05)
        term, pid = got
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        while (p.sql("SELECT term FROM leader_terms WHERE duty = 'placement'")[0][0]) <= term:
            if time.monotonic() - t0 > 60:
                raise SystemExit("no takeover in 60 s")
            time.sleep(0.01)
        out.append(time.monotonic() - t0)
        p.sql("DELETE FROM cluster_members WHERE pid = %s", pid)
        p.worker()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--src", help="source tree to run the processes from (default: this one)")
    ap.add_argument("--worker-arg", action="append", default=[], dest="worker_args")
    ap.add_argument("--kills", type=int, default=0, help="kill -9 the leader this many times")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = []
    for rep in range(args.repeat):
        with fresh_database(PG, keep=False) as url, tempfile.TemporaryDirectory() as d:
            p = Platform(url, args.src, args.worker_args, Path(d))
            try:
                key = p.start(args.workers + (1 if args.kills else 0))
                lat = latency(p, key, args.jobs, rng) if args.jobs else []
                took = takeovers(p, args.kills) if args.kills else []
            finally:
                p.stop()
        row = {"repeat": rep, "src": args.src or "this tree", "worker_args": args.worker_args}
        if lat:
            q = statistics.quantiles(lat, n=10)
            row |= {"placed_p50_s": round(statistics.median(lat), 3), "placed_p90_s":
                    round(q[-1], 3), "placed_max_s": round(max(lat), 3)}  # fmt: skip
        if took:
            row |= {"takeover_s": [round(t, 3) for t in took],
                    "takeover_median_s": round(statistics.median(took), 3)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    medians = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]
               if k.endswith("_s") and not isinstance(rows[0][k], list)}  # fmt: skip
    print(json.dumps({"medians_of_repeats": medians, "src": args.src or "this tree",
                      "worker_args": args.worker_args}))  # fmt: skip


if __name__ == "__main__":
    main()
