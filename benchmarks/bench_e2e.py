"""End to end through the replicated control plane (issue 16): submission to ``running``.

Run: .venv/bin/python benchmarks/bench_e2e.py [--workers 1 2 4] [--replicas 2] [--rate 100]
         [--seconds 30] [--job-s 2] [--cpus 256] [--agents] [--slurm N] [--chaos] [--kill-every 10]
         [--restart-after 3] [--seed 1] [--src DIR] [--keep]

For each worker count, on a fresh schema of database ``test`` at 127.0.0.1:5432: ``--replicas``
API replicas (``suanwang serve --no-services``; the first migrates) and the workers
(``suanwang worker``), all as processes of this machine, on the tiny test scenario with its four
centers as local executors of ``--cpus`` CPUs each (jobs in the sandbox, as by default; the
three with a CPU pool take 3 x 256 jobs at once by default). With ``--agents`` each center is
served by a ``suanwang agent`` process that runs the jobs, given every replica's address and
syncing with one, each agent starting at another (lease 30 s).
With ``--slurm N`` the first N centers (N <= 3: those with CPUs) are the only ones, each with an
agent whose executor is a Slurm cluster of the testbed (``suanwang testbed``: slurmctld, slurmd
and slurmrestd on this machine, one node of 256 CPUs; jobs run as the tenant's account
``sw-bench``), started under the run's directory and stopped after it.
A load generator
offers ``--rate`` one-CPU jobs a second for ``--seconds``, round robin over the replicas, each
with an ``Idempotency-Key`` (a submission that fails on a dead replica is sent again, with the
same key, to the next); every job appends ``start``, then after ``--job-s`` seconds ``end``,
with times, to a file in its own run directory. Then it waits until every acknowledged job has
ended and reads the database and the run directories:

* throughput: jobs a second that started running while load was offered, after a warm-up of
  5 s; p50/p99 of submit→placed (``submitted_at`` to the first ``scheduled`` event) and
  submit→running (to the first start its run wrote: when the job really began, not when a
  poll saw it);
* correctness: acknowledged jobs missing from the database (lost), jobs that did not succeed,
  jobs whose runs overlap in time or that ended twice (ran twice, from the runs' own files),
  and per center the most CPUs that placements made with room held at once (from the planned
  start, ``start_at`` of the ``scheduled`` event, to the recorded end of the run: what the
  placer counts) against its ``--cpus`` (over-commitment), and the most runs that really ran
  at once (from the runs' files). Without quotas a job placed when every center is full is
  queued at the center where the wait is least (docs/governance.md); those are not counted
  as placed with room;
* ``--chaos``: every ``--kill-every`` s a random process (an API replica, a worker or an
  agent, seeded) gets ``kill -9`` and is started again ``--restart-after`` s later; leader
  takeovers (new placement terms) are timed from the kill of a leader.

One JSON line per worker count. Times come from the processes' clocks on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench_cluster import PG, TINY, Platform
from bench_http import fresh_database
from suanwang.scenarios.loader import load_scenario
from suanwang.testbed import slurm

CENTERS = ("coast-ai", "coast-hpc", "desert-ai", "desert-green")
AGENT_LEASE_S = 30.0  # an agent center's lease (--agents)
WARM_UP_S = 5.0
QUEUED = "no planned room"  # the reason of a placement queued at a full center


class Cluster(Platform):
    """``replicas`` API replicas and workers; each process can be killed and started again.
    ``on_slurm``: that many centers, each an agent driving a Slurm cluster of the testbed."""

    def __init__(
        self,
        url: str,
        root: Path,
        replicas: int,
        workers: int,
        cpus: int,
        agents: bool,
        src: str | None = None,
        on_slurm: int = 0,
    ) -> None:
        super().__init__(url, src, ["--max-defer-h", "0"], root)
        self.cpus = cpus
        self.config = root / "platform.yaml"
        self.centers = CENTERS[:on_slurm] if on_slurm else CENTERS
        local = {"type": "local", "cpus": cpus, "cards": 0}
        executors = dict.fromkeys(self.centers, local)
        self.testbed: Any = None
        if on_slurm:
            agents = True
            self.testbed, executors = _testbed(root, self.centers)
            self.cpus = slurm.NODE_CPUS
        # an agent center's slots are declared, so the engine never plans it beyond what its
        # agent's executor runs before that agent first reports (docs/centers.md, "Agents")
        agent = {"type": "agent", "lease_s": AGENT_LEASE_S, "cpus": self.cpus, "cards": 0}
        entry = agent if agents else local
        centers = [{"center_id": c, "executor": entry} for c in self.centers]
        self.config.write_text(json.dumps({"scenario": TINY, "centers": centers}))
        self.agents: list[Any] = [None] * (len(self.centers) if agents else 0)
        for center in self.centers if agents else ():
            work = str(root / "agents" / center)
            (root / f"agent-{center}.yaml").write_text(
                json.dumps({"executor": executors[center], "work_dir": work})
            )
        self.ports = [self.port + i for i in range(replicas)]
        self.replicas: list[Any] = [None] * replicas
        self.workers: list[Any] = [None] * workers

    def replica(self, i: int) -> None:
        self.replicas[i] = self.run("serve", "--db", self.url, "--scenario", TINY,
                                    "--no-services", "--port", str(self.ports[i]))  # fmt: skip
        self.healthy(self.ports[i])

    def start_all(self) -> str:
        self.replica(0)  # migrates the database first
        for i in range(1, len(self.replicas)):
            self.replica(i)
        self.port = self.ports[0]
        key = self.tenant()
        for i in range(len(self.workers)):
            self.start_worker(i)
        for i in range(len(self.agents)):
            center = self.centers[i]
            made = subprocess.run(
                [sys.executable, "-m", "suanwang.cli", "agent", "token", "create", "--center",
                 center, "--db", self.url, "--scenario", TINY, "--json"], env=self.env,
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            (self.root / f"agent-{center}.token").write_text(json.loads(made.stdout)["token"])
            self.start_agent(i)
        return key

    def stop(self) -> None:
        super().stop()
        if self.testbed is not None:
            slurm.down(self.testbed)

    def start_agent(self, i: int) -> None:
        """The agent of the ``i``-th center, given every replica's address, replica ``i``
        (modulo their number) first: the agents spread over the replicas, and each moves on
        when its replica is down."""
        center = self.centers[i]
        first = i % len(self.ports)
        urls = [f"http://127.0.0.1:{p}" for p in self.ports[first:] + self.ports[:first]]
        self.agents[i] = self.run("agent", "--center", center,
                                  *(a for url in urls for a in ("--url", url)),
                                  "--token-file", str(self.root / f"agent-{center}.token"),
                                  "--config", str(self.root / f"agent-{center}.yaml"),
                                  "--every", "0.5")  # fmt: skip

    def start_worker(self, i: int) -> None:
        self.workers[i] = self.run("worker", "--db", self.url, "--config", str(self.config),
                                   "--executors-dir", str(self.root / "centers"),
                                   *self.worker_args)  # fmt: skip


def _testbed(root: Path, centers: tuple[str, ...]) -> tuple[Any, dict[str, dict[str, Any]]]:
    """A Slurm cluster of the testbed for each of ``centers`` (under ``root``, with an account
    for the tenant ``bench``) and each one's executor entry for its agent."""
    root.chmod(0o711)  # jobs run as the tenant's account: it must pass through
    inventory = {c.id: dict(c.inventory) for c in load_scenario(TINY).centers}
    tb = slurm.up(root / "testbed", inventory, list(centers), tenants=["bench"])
    entries = {c.center_id: {"type": "slurm", "url": c.url, "token_file": c.token_file,
                             "user": tb.user, "partition": slurm.PARTITION,
                             "output_dir": c.jobs_dir, "accounts": dict(tb.accounts),
                             "account_tokens": c.tokens_dir} for c in tb.clusters}  # fmt: skip
    return tb, entries


def _job(i: int, job_s: float) -> dict[str, Any]:
    cmd = (f'echo "start $(date +%s.%N)" >> ran; sleep {job_s}; '
           f'echo "end $(date +%s.%N)" >> ran')  # fmt: skip
    return {"name": f"e2e-{i}", "command": cmd, "duration_s": 60, "origin": "harbour",
            "resources": {"cpus": 1}}  # fmt: skip


async def offer(
    ports: list[int], key: str, rate: float, seconds: float, job_s: float
) -> tuple[dict[str, str], int, float]:
    """Submit ``rate`` jobs a second for ``seconds``; returns (idempotency key -> job id of the
    acknowledged, submissions retried, when the load began as epoch seconds)."""
    headers = {"Authorization": f"Bearer {key}"}
    # a connection of its own for each request (none left half-closed by a replica killed)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
    clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", headers=headers,
                                 timeout=10, limits=limits) for p in ports]  # fmt: skip
    acked: dict[str, str] = {}
    retried = 0
    total = int(rate * seconds)
    # submissions in flight at most: when the replicas fall behind (or one is killed), the
    # jobs due wait here; thousands of requests waiting inside the clients' pools made each
    # pool's bookkeeping take the whole process (no submission went out any more)
    in_flight = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        nonlocal retried
        idem = f"e2e-{i}"
        for attempt in range(60):
            client = clients[(i + attempt) % len(clients)]
            try:
                async with in_flight:
                    r = await asyncio.wait_for(client.post("/v1/jobs", json=_job(i, job_s),
                                               headers={"Idempotency-Key": idem}), 15)  # fmt: skip
            except (httpx.HTTPError, TimeoutError):
                r = None
            if r is not None and r.status_code in (200, 201):
                acked[idem] = r.json()["id"]
                return
            retried += 1
            await asyncio.sleep(0.5)
        print(json.dumps({"gave_up_on": idem}), flush=True)

    began = time.time()
    t0 = time.monotonic()
    tasks = []
    for i in range(total):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    for c in clients:
        await c.aclose()
    return acked, retried, began


def _epoch(at: Any) -> float:
    """Seconds since the epoch of a database time (naive ones are UTC)."""
    if isinstance(at, datetime):
        return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()
    return float(at)


def measure(c: Cluster, acked: dict[str, str], began: float, seconds: float) -> dict[str, Any]:
    ids = list(acked.values())
    jobs = {r[0]: (r[1], _epoch(r[2])) for r in c.sql(
        "SELECT id, state, submitted_at FROM jobs WHERE id = ANY(%s)", ids)}  # fmt: skip
    events: dict[str, list[tuple[float, str, str | None, float, bool]]] = defaultdict(list)
    for job_id, at, to_state, center, start_at, reason in c.sql(
        "SELECT job_id, at, to_state, detail->>'center', detail->>'start_at', "
        "detail->>'reason' FROM job_events WHERE job_id = ANY(%s) ORDER BY id", ids,
    ):  # fmt: skip
        due = datetime.fromisoformat(start_at).timestamp() if start_at else 0.0
        queued = (reason or "").startswith(QUEUED)
        events[job_id].append((_epoch(at), to_state, center, max(_epoch(at), due), queued))
    placed, running, started = [], [], []
    held: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for job_id, evs in events.items():
        sub = jobs[job_id][1]
        first = {ev[1]: ev[0] for ev in reversed(evs)}
        if "scheduled" in first:
            placed.append(first["scheduled"] - sub)
        # a placement made with room holds its units from its planned start to the recorded
        # end of its run (what the placer counts); one queued at a full center (no quotas:
        # "no planned room; queued where the wait is least") claims no room and is left out
        holding: tuple[str, float] | None = None
        for at, state, center, due, queued in evs:
            if state == "running":
                continue
            if holding is not None:
                where, since = holding
                held[where] += [(since, +1), (max(at, since), -1)]
                holding = None
            if state == "scheduled" and not queued:
                holding = (center or "?", due)
    runs = _runs(c.root, ids)
    twice = [j for j, rs in runs.items() if _twice(sorted((a, b) for _, a, b in rs))]
    real: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for rs in runs.values():
        for center, start, end in rs:
            real[center] += [(start, +1), (end if end is not None else start, -1)]
    for job_id, rs in runs.items():  # when each job first really started (its run's file)
        first_start = min(start for _, start, _ in rs)
        running.append(first_start - jobs[job_id][1])
        started.append(first_start)
    peak = _peaks(held)
    window = [t for t in started if began + WARM_UP_S <= t <= began + seconds]

    def q(xs: list[float], p: float) -> float:
        return round(statistics.quantiles(xs, n=100)[int(p) - 1], 3) if len(xs) > 1 else 0.0

    return {
        "acknowledged": len(acked),
        "lost": len(set(ids) - set(jobs)),
        "not_succeeded": sum(1 for s, _ in jobs.values() if s != "succeeded"),
        "not_succeeded_by_state": dict(Counter(s for s, _ in jobs.values() if s != "succeeded")),
        "runs_read": sum(len(rs) for rs in runs.values()),
        "ran_twice": twice,
        "peak_cpus_placed_with_room": peak,
        "peak_cpus_running": _peaks(real),
        "over_capacity": sum(1 for v in peak.values() if v > c.cpus),
        "to_running_per_s": round(len(window) / max(seconds - WARM_UP_S, 1e-9), 1),
        "placed_p50_s": q(placed, 50), "placed_p99_s": q(placed, 99),
        "running_p50_s": q(running, 50), "running_p99_s": q(running, 99),
    }  # fmt: skip


def _peaks(steps: dict[str, list[tuple[float, int]]]) -> dict[str, int]:
    """The most held at once, per center, of +1/-1 steps in time (ends before starts)."""
    out = {}
    for center, xs in steps.items():
        now = top = 0
        for _, d in sorted(xs):
            now += d
            top = max(top, now)
        out[center] = top
    return out


def _runs(root: Path, ids: list[str]) -> dict[str, list[tuple[str, float, float | None]]]:
    """Every run of the jobs, from the file each run wrote in its directory
    (``.../<center>/<run>/work/ran``, under the workers' or the agents' directories): its
    center, start and end (None: it did not end)."""
    out: dict[str, list[tuple[str, float, float | None]]] = defaultdict(list)
    wanted = set(ids)
    for ran in root.glob("**/ran"):
        # a local run's directory is named by its job (and attempt), a Slurm run's sw-<job>...;
        # a job in a sandbox writes in the run's work/, one not contained (Slurm) in the run's
        run = ran.parent.parent if ran.parent.name == "work" else ran.parent
        job_id = run.name.removeprefix("sw-")[:36]
        if job_id not in wanted:
            continue
        start = end = None
        for line in ran.read_text().splitlines():
            kind, _, at = line.partition(" ")
            if kind == "start":
                start = float(at)
            elif kind == "end":
                end = float(at)
        if start is not None:  # .../<center>/<run>/ or .../<center>/jobs/<run>/ (Slurm)
            center = run.parent if run.parent.name != "jobs" else run.parent.parent
            out[job_id].append((center.name, start, end))
    return out


def _twice(runs: list[tuple[float, float | None]]) -> bool:
    """Whether runs (by start) ended more than once or overlapped in time."""
    ended = sum(1 for _, e in runs if e is not None)
    overlap = any(a_end is not None and b_start < a_end
                  for (_, a_end), (b_start, _) in itertools.pairwise(runs))  # fmt: skip
    return ended > 1 or overlap


def chaos(c: Cluster, rng: random.Random, every: float, restart_after: float,
          stop: threading.Event, log: list[dict[str, Any]]) -> None:  # fmt: skip
    """Kill a random replica, worker or agent every ``every`` s (one that is up: not one
    still being started again); start it again ``restart_after`` s later, from a thread of
    its own (a replica takes long to start on a busy machine: the kills keep their pace)."""
    procs = {"replica": c.replicas, "worker": c.workers, "agent": c.agents}
    starts = {"replica": c.replica, "worker": c.start_worker, "agent": c.start_agent}
    down: set[tuple[str, int]] = set()
    restarts: list[threading.Thread] = []

    def restart(kind: str, i: int, pid: int, t0: float) -> None:
        time.sleep(max(0.0, restart_after - (time.monotonic() - t0)))
        c.sql("DELETE FROM cluster_members WHERE pid = %s", pid)
        starts[kind](i)
        down.discard((kind, i))

    while not stop.wait(every):
        up = [(k, i) for k, ps in procs.items() for i in range(len(ps)) if (k, i) not in down]
        kind, i = rng.choice(up)
        proc = procs[kind][i]
        leader = c.sql("SELECT t.term, m.pid FROM leader_terms t JOIN cluster_members m "
                       "ON m.id = t.holder WHERE t.duty = 'placement'")  # fmt: skip
        was_leader = bool(leader) and int(leader[0][1]) == proc.pid
        term = int(leader[0][0]) if leader else 0
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t0 = time.monotonic()
        down.add((kind, i))
        restarts.append(threading.Thread(target=restart, args=(kind, i, proc.pid, t0)))
        restarts[-1].start()
        entry: dict[str, Any] = {"killed": f"{kind} {i}", "leader": was_leader}
        if was_leader:
            while (got := c.sql("SELECT term FROM leader_terms WHERE duty = 'placement'")) and \
                    int(got[0][0]) <= term and time.monotonic() - t0 < 60:  # fmt: skip
                time.sleep(0.02)
            entry["takeover_s"] = round(time.monotonic() - t0, 2)
        log.append(entry)
        print(json.dumps({"at": round(time.time(), 1), **entry}), flush=True)
    for t in restarts:
        t.join()


def wait_final(c: Cluster, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    final = "('succeeded', 'failed', 'cancelled')"
    while time.monotonic() < deadline:
        left = c.sql(f"SELECT count(*) FROM jobs WHERE id = ANY(%s) AND state NOT IN {final}", ids)
        if int(left[0][0]) == 0:
            return
        time.sleep(1)


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[str]:
    """A directory for the processes' files, removed afterwards unless ``keep``."""
    if keep:
        yield tempfile.mkdtemp(prefix="bench-e2e-")
        return
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as d:
        yield d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--job-s", type=float, default=2.0)
    ap.add_argument("--chaos", action="store_true")
    ap.add_argument("--kill-every", type=float, default=10.0)
    ap.add_argument("--restart-after", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cpus", type=int, default=256, help="CPUs of each center's executor")
    ap.add_argument("--keep", action="store_true", help="keep the database schema and files")
    ap.add_argument("--agents", action="store_true", help="each center served by an agent")
    ap.add_argument("--slurm", type=int, default=0, metavar="N",
                    help="N centers (1-3, those with CPUs), each an agent driving a Slurm "
                    "cluster of the testbed (root, slurm-wlm, slurmrestd, munge)")  # fmt: skip
    ap.add_argument("--src", help="source tree to run the processes from (default: this one)")
    ap.add_argument("--drain-s", type=float, help="how long to wait, after the load, for every "
                    "acknowledged job to end (default: 300 s + --seconds)")  # fmt: skip
    args = ap.parse_args()
    # stopped with SIGTERM, stop the processes and drop the schema too (the finally blocks)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for workers in args.workers:
        with fresh_database(PG, keep=args.keep) as url, _workdir(args.keep) as d:
            if args.keep:
                print(json.dumps({"kept": {"db": url, "dir": d}}), flush=True)
            c = Cluster(url, Path(d), args.replicas, workers, args.cpus, args.agents, args.src,
                        args.slurm)  # fmt: skip
            kills: list[dict[str, Any]] = []
            stop = threading.Event()
            try:
                key = c.start_all()
                time.sleep(3)  # the workers elect a placer
                killer = threading.Thread(
                    target=chaos,
                    args=(c, random.Random(args.seed), args.kill_every, args.restart_after, stop,
                          kills), daemon=True)  # fmt: skip
                if args.chaos:
                    killer.start()
                acked, retried, began = asyncio.run(
                    offer(c.ports, key, args.rate, args.seconds, args.job_s))  # fmt: skip
                stop.set()
                if args.chaos:
                    killer.join()
                drain = args.drain_s if args.drain_s is not None else 300 + args.seconds
                wait_final(c, list(acked.values()), timeout=drain)
                row = {"src": args.src or "this tree", "workers": workers,
                       "replicas": args.replicas, "agents": args.agents or bool(args.slurm),
                       "slurm": args.slurm,
                       "rate": args.rate,
                       "seconds": args.seconds, "chaos": args.chaos, "retried": retried,
                       **measure(c, acked, began, args.seconds)}  # fmt: skip
                if args.chaos:
                    row["kills"] = kills
            finally:
                stop.set()
                c.stop()
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
