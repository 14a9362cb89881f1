"""The live dispatcher at scale (issue 14): 1,000 tenants, 100,000 pending jobs, a database.

Run: .venv/bin/python benchmarks/bench_dispatch.py [--tenants 1000] [--jobs 100000]
         [--repeat 3] [--postgresql] [--queue-limit N] [--profile FILE] [--profile-round N]
         [--decisions FILE]

Each repeat, on a fresh database (a SQLite file, or with ``--postgresql`` a fresh schema of
database ``test`` at 127.0.0.1:5432, as ``bench_http.py`` makes them), migrated:

1. ``--tenants`` consumer tenants, each with a quota (equal shares of the network's capacity,
   one cohort each: ``equal_shares``), stored as operators store them (``tenant_quotas``);
2. ``--jobs`` pending jobs of the synthetic workload (one day of arrivals of the `china`
   scenario's mix, kinds, sizes, origins, deadlines; Zipf demand over the tenants, some
   urgent and some preemptible), each turned into the spec a client would submit, validated
   as the API validates it and bulk-inserted with its ``submitted`` event;
3. the `china` scenario served live: local executors sized like their centers (as the demo
   runs them), signals of the current hour, the real :class:`Dispatcher` with
   the quotas read from the database every round as ``build_services`` reads them (a
   ``GovernanceReader`` where the commit has one, else ``load_governance``) and the
   server's policy (``SuanwangPolicy``, deferral up to 12 h).

Measured: round 1 (``place()`` from cold: a new dispatcher, nothing running) and round 2
(``place()`` again, nothing ended): wall time, this process's CPU time (the machine may be
shared), jobs decided (placed, failed, or kept pending with a waiting reason: ``place()``'s
count) and decisions per second. With ``--full``, rounds follow until one schedules nothing
more (the network is full, nothing has ended) and one more round is timed: the steady round
of a full network with the rest pending. ``hand_over`` (handing
placed jobs to executors, a separate step of the round) is not timed: it would start
thousands of local processes. The process is pinned to one core (``os.sched_setaffinity``;
PostgreSQL runs in its own processes). One JSON line per repeat, then one of medians.
``--decisions FILE`` writes every job's state and stored decision after the first repeat:
two commits that decide the same write the same file.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from bench_http import fresh_database
from suanwang.core.governance import equal_shares
from suanwang.core.jobs import Job
from suanwang.core.network import Network
from suanwang.scenarios.loader import load_scenario
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.queue import capacity_scu_per_h
from suanwang.server.database.models import JobEvent, JobRow, Tenant, TenantQuotaRow, TenantRole
from suanwang.server.database.session import make_engine, migrate, session_factory
from suanwang.server.models import governance as governance_rows
from suanwang.server.models.governance import _exact, load_governance
from suanwang.server.runner import local_executors
from suanwang.server.schemas import JobSpec
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.live import LiveNetwork
from suanwang.server.settings import DEFAULT_ROUND_BUDGET_S
from suanwang.server.signals import SignalCache
from suanwang.sim.workload import WorkloadSpec, synthetic_jobs, tenant_names

START = datetime(2025, 7, 1, tzinfo=UTC)
#: the platform's clock: every job was submitted in the day before
NOW = START + timedelta(days=1, minutes=5)
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CHUNK = 5000


def spec_of(job: Job, net: Network) -> dict[str, Any]:
    """The spec a client would submit for the synthetic ``job`` (as the API stores it)."""
    one_hour = net.scenario.catalog.work_scu(1.0, job.cards, job.cpus, job.precision)
    body = {
        "name": job.job_id,
        "command": "python train.py" if job.cards else "python etl.py",
        "resources": {"cpus": job.cpus, "cards": job.cards, "mem_gb": job.mem_gb},
        "duration_s": round(job.work_scu / one_hour * 3600.0, 1),
        "kind": job.kind.value,
        "origin": job.origin,
        "deadline_s": job.deadline_s,
        "data_gb": job.data_gb,
        "checkpointable": job.checkpointable,
        "priority": None if job.priority is None else job.priority.value,
        "stacks": sorted(job.stacks),
    }
    return JobSpec.model_validate(body).model_dump(mode="json")


def populate(url: str, net: Network, tenants: int, jobs: list[Job], quotas: bool = True) -> None:
    """Tenants with equal quotas (``quotas``) and every job pending, in bulk."""
    migrate(url)
    engine = make_engine(url)
    names = tenant_names(tenants)
    gov = equal_shares(names, capacity_scu_per_h(net))
    try:
        with session_factory(engine).begin() as session:
            ids = {n: f"00000000-0000-4000-8000-{k:012d}" for k, n in enumerate(names)}
            session.execute(
                insert(Tenant),
                [
                    {"id": ids[n], "name": n, "role": TenantRole.CONSUMER.value,
                     "api_key_hash": f"{k:064x}", "created_at": START}
                    for k, n in enumerate(names)
                ],
            )  # fmt: skip
            if quotas:
                session.execute(
                    insert(TenantQuotaRow),
                    [
                        {"tenant_id": ids[n], "cohort": q.cohort,
                         "quota_scu_per_h": _exact(q.quota_scu_per_h),
                         "borrow_limit_scu_per_h": _exact(q.borrow_limit_scu_per_h),
                         "lend_limit_scu_per_h": None, "weight": Decimal(1),
                         "classes": sorted(p.value for p in q.classes), "family_caps": {},
                         "hub_caps": {}, "updated_at": START, "updated_by": "bench"}
                        for n, q in gov.tenants.items()
                    ],
                )  # fmt: skip
            for lo in range(0, len(jobs), CHUNK):
                part = jobs[lo : lo + CHUNK]
                rows = []
                for k, j in enumerate(part, start=lo):
                    at = START + timedelta(seconds=j.submit_s)
                    rows.append({"id": f"{k:08d}-0000-4000-8000-000000000000",
                                 "tenant_id": ids[j.tenant], "name": j.job_id,
                                 "spec": spec_of(j, net), "state": "pending",
                                 "submitted_at": at, "updated_at": at})  # fmt: skip
                session.execute(insert(JobRow), rows)
                session.execute(
                    insert(JobEvent),
                    [{"job_id": r["id"], "at": r["submitted_at"], "from_state": None,
                      "to_state": "pending", "detail": {"reason": "submitted",
                                                        "by": r["tenant_id"]}}
                     for r in rows],
                )  # fmt: skip
    finally:
        engine.dispose()


def measure(
    url: str,
    net: Network,
    workdir: Path,
    queue_limit: int | None,
    profile: str | None,
    full: bool,
    decisions: str | None = None,
    profile_round: int = 1,
    sustain: int = 0,
    budget: float | None = DEFAULT_ROUND_BUDGET_S,
    batch: int | None = None,
) -> dict[str, float]:
    engine = make_engine(url)
    sessions: sessionmaker[Session] = session_factory(engine)
    cache = SignalCache(net.scenario, clock=lambda: NOW)
    live = LiveNetwork(
        net=net,
        signals=cache.current,
        executors=local_executors(net, workdir / "centers", like_scenario=True),
        clock=lambda: NOW,
        checkpoint_root=workdir / "checkpoints",
    )
    cache.current()  # the signals of this hour are built once an hour, not in a round
    # as the server wires it (``build_services``): the reader that builds the governance again
    # only when the stored quotas change, where this commit has it
    reader = getattr(governance_rows, "GovernanceReader", None)
    dispatcher = Dispatcher(
        sessions,
        live,
        policy=SuanwangPolicy(max_defer_h=12),
        governance=reader() if reader is not None else load_governance,
    )
    if queue_limit is not None:
        dispatcher.queue_limit = queue_limit
    dispatcher.round_budget_s = budget
    if batch is not None:
        dispatcher.batch = batch
    out: dict[str, float] = {}
    try:
        for r in (1, 2):
            prof = cProfile.Profile() if profile and r == profile_round else None
            t, cpu = time.perf_counter(), time.process_time()
            if prof is not None:
                prof.enable()
            decided = dispatcher.place()
            if prof is not None:
                prof.disable()
            dt, cpu = time.perf_counter() - t, time.process_time() - cpu
            if prof is not None and profile:
                prof.dump_stats(profile)
            out[f"round{r}_s"] = round(dt, 3)
            out[f"round{r}_decisions"] = decided
            out[f"round{r}_decisions_per_s"] = round(decided / dt, 1)
            out[f"round{r}_cpu_s"] = round(cpu, 3)  # this process's CPU (the machine is shared)
            out[f"round{r}_decisions_per_cpu_s"] = round(decided / cpu, 1)
        if sustain:  # rounds one after another, as the worker runs them
            walls, cpus, total = [], [], 0
            while total < sustain:
                prof = cProfile.Profile() if profile and profile_round == 3 + len(walls) else None
                t, cpu = time.perf_counter(), time.process_time()
                if prof is not None:
                    prof.enable()
                decided = dispatcher.place()
                if prof is not None:
                    prof.disable()
                    prof.dump_stats(str(profile))
                walls.append(time.perf_counter() - t)
                cpus.append(time.process_time() - cpu)
                total += decided
                if not decided:
                    break
            out["sustained_rounds"] = len(walls)
            out["sustained_decisions"] = total
            out["sustained_decisions_per_s"] = round(total / sum(walls), 1)
            out["sustained_decisions_per_cpu_s"] = round(total / sum(cpus), 1)
            out["sustained_round_median_s"] = round(statistics.median(walls), 3)
            out["sustained_round_max_s"] = round(max(walls), 3)
            out["sustained_round_cpu_median_s"] = round(statistics.median(cpus), 3)
            out["sustained_round_cpu_max_s"] = round(max(cpus), 3)
        if full:  # rounds until one places nothing more: the network is full
            fills, before = 0, -1
            while fills < 50 and (now := _states(sessions).get("scheduled", 0)) != before:
                before = now
                dispatcher.place()
                fills += 1
            t, cpu = time.perf_counter(), time.process_time()
            decided = dispatcher.place()
            dt, cpu = time.perf_counter() - t, time.process_time() - cpu
            out["full_after_rounds"] = 2 + fills
            out["full_round_s"] = round(dt, 3)
            out["full_round_cpu_s"] = round(cpu, 3)
            out["full_round_decisions"] = decided
        by_state = _states(sessions)
        out["scheduled"] = by_state.get("scheduled", 0)
        out["pending"] = by_state.get("pending", 0)
        out["failed"] = by_state.get("failed", 0)
        if decisions:
            _dump(sessions, Path(decisions))
    finally:
        engine.dispose()
    return out


def _dump(sessions: sessionmaker[Session], path: Path) -> None:
    """Every job's state and stored decision, one JSON line each in id order: two commits'
    files are the same when they decided the same."""
    with sessions() as session, path.open("w") as f:
        stmt = select(JobRow.id, JobRow.state, JobRow.decision).order_by(JobRow.id)
        for job_id, state, decision in session.execute(stmt):
            f.write(json.dumps([job_id, state, decision], sort_keys=True) + "\n")


def _states(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        stmt = select(JobRow.state, func.count()).group_by(JobRow.state)
        return {state: n for state, n in session.execute(stmt)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--postgresql", action="store_true", help=f"use {PG_URL}")
    ap.add_argument("--full", action="store_true", help="then fill the network; time one more")
    ap.add_argument(
        "--queue-limit", type=int, default=None, help="the dispatcher's (default: its own)"
    )
    ap.add_argument(
        "--profile", default=None, help="cProfile round 1 of the first repeat into FILE"
    )
    ap.add_argument(
        "--profile-round", type=int, default=1, help="profile this round (3 on: sustained)"
    )
    ap.add_argument(
        "--sustain",
        type=int,
        default=20_000,
        help="after round 2, rounds one after another until they decided this many jobs",
    )
    ap.add_argument(
        "--no-quotas",
        action="store_true",
        help="no tenant has a quota: the dispatcher places oldest first, --batch a round",
    )
    ap.add_argument("--batch", type=int, default=None, help="the dispatcher's (default: its own)")
    ap.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_ROUND_BUDGET_S,
        help="the dispatcher's round_budget_s (default: the server's, SUANWANG_ROUND_BUDGET_S's"
        " default; 0: none, rounds of queue_limit jobs)",
    )
    ap.add_argument(
        "--decisions",
        default=None,
        help="write every job's state and decision after the first repeat to FILE (JSON lines):"
        " compare two commits' files to see that they decide the same",
    )
    a = ap.parse_args()
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        pinned = True
    except (AttributeError, OSError):
        pinned = False
    sc = load_scenario("china")
    net = Network(sc)
    jobs = synthetic_jobs(
        net, WorkloadSpec(jobs=a.jobs, days=1.0, seed=7, tenants=a.tenants), START
    )
    # the workload's objects are this script's, not the dispatcher's (a server holds none of
    # them): out of the garbage collector's sight, or every full collection in a round walks
    # them (about 0.1 s each)
    gc.freeze()
    rows = []
    for r in range(a.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as d:
            base = PG_URL if a.postgresql else f"sqlite:///{d}/bench.db"
            with fresh_database(base, keep=False) as url:
                t = time.perf_counter()
                populate(url, net, a.tenants, jobs, quotas=not a.no_quotas)
                setup_s = time.perf_counter() - t
                prof = a.profile if r == 0 else None
                dump = a.decisions if r == 0 else None
                res = measure(url, net, Path(d), a.queue_limit, prof, a.full, dump,
                              a.profile_round, a.sustain, a.budget or None,
                              a.batch)  # fmt: skip
        rows.append({"setup_s": round(setup_s, 1), **res})
        print(json.dumps({"repeat": r, **rows[-1]}), flush=True)
    med = {k: statistics.median(float(x[k]) for x in rows) for k in rows[0]}
    print(json.dumps({"median": med, "tenants": a.tenants, "jobs": a.jobs,
                      "database": "postgresql" if a.postgresql else "sqlite",
                      "pinned_to_one_core": pinned, "python": sys.version.split()[0],
                      "quotas": not a.no_quotas,
                      "target": "round <= 1 s, >= 2,000 decisions/s"}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
