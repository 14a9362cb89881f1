"""Billing throughput: repricing holds at placement, settling finished jobs, ``ledger verify``.

Run (docs/benchmarks.md records the results and the exact commands):

    .venv/bin/python benchmarks/bench_billing.py \
        --db postgresql+psycopg://postgres@127.0.0.1:5432/test --jobs 5000 --repeat 3 [--json]

Each repeat, on a fresh PostgreSQL schema (or SQLite file):

1. migrates, requires prepayment, creates ``--tenants`` consumers (each topped up and granted
   trial card-hours, GB-months and tokens) and one provider owning half the A100 centers;
2. submits ``--jobs`` jobs (8 A100s, 20 GB of data, 1-3 h of work) with their holds, and places
   each at an A100 center (the ``scheduled`` event, in batches);
3. times ``lower_holds`` over all of them: every hold repriced at its placement, one
   transaction per job (what each reconciler round does for newly placed jobs);
4. runs and ends every job (``running`` then ``succeeded`` with the tokens it served, events
   back-dated so runs last 10-120 min) and times ``settle_finished``: metered, rated, trial
   quotas consumed, charged and split between provider and commission, one transaction per job;
5. times ``ledger verify`` over the resulting ledger, which must find nothing.

Reported: jobs per second for repricing and settling, the seconds ``verify`` took, and the
medians over the repeats. One process, one thread: what one reconciler does; several
reconcilers settle in parallel (``FOR UPDATE SKIP LOCKED``). Every random choice takes --seed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import update

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http import fresh_database
from suanwang.core.lifecycle import JobState
from suanwang.core.network import Network
from suanwang.scenarios.loader import load_scenario
from suanwang.server.database.models import JobEvent, JobRow, Tenant, TenantRole
from suanwang.server.database.session import make_engine, migrate, session_factory
from suanwang.server.models.billing.accounts import topup
from suanwang.server.models.billing.config import set_config
from suanwang.server.models.billing.holds import admit, lower_holds
from suanwang.server.models.billing.quotas import grant_quota
from suanwang.server.models.billing.settle import settle_finished
from suanwang.server.models.billing.verify import verify
from suanwang.server.models.centers import grant_centers
from suanwang.server.models.jobs import submit_job, transition
from suanwang.server.models.tenants import create_tenant
from suanwang.server.schemas import JobSpec

BATCH = 500


def run_once(url: str, args: argparse.Namespace, seed: int, net: Network) -> dict[str, Any]:
    rng = random.Random(seed)
    now = datetime.now(UTC)  # a benchmark runs at the real time
    migrate(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    try:
        a100 = [c.id for c in net.scenario.centers if dict(c.inventory).get("a100")]
        with sessions.begin() as s:
            set_config(session=s, billing_required=True, now=now)
            provider, _ = create_tenant(
                session=s, name="bench-provider", role=TenantRole.PROVIDER, now=now
            )
            grant_centers(session=s, tenant=provider, centers=a100[::2], now=now)
            tenants = []
            for i in range(args.tenants):
                t, _ = create_tenant(
                    session=s, name=f"bench-{i}", role=TenantRole.CONSUMER, now=now
                )
                topup(session=s, tenant=t, amount=Decimal("10000000"), key=f"start-{i}", now=now)
                grant_quota(session=s, tenant=t, card_hours=Decimal(100), now=now,
                            storage_gb_months=Decimal(5), tokens=50_000_000)  # fmt: skip
                tenants.append(t.id)
        ids: list[str] = []
        for start in range(0, args.jobs, BATCH):
            with sessions.begin() as s:
                for i in range(start, min(start + BATCH, args.jobs)):
                    spec = JobSpec.model_validate({
                        "name": f"job-{i}", "command": "true", "kind": "training",
                        "resources": {"count": 8, "cpus": 32, "accelerator": "a100"},
                        "duration_s": rng.randint(3600, 3 * 3600), "origin": "beijing",
                        "data_gb": 20})  # fmt: skip
                    tenant = s.get_one(Tenant, tenants[i % len(tenants)])
                    row, _ = submit_job(session=s, tenant=tenant, spec=spec, now=now)
                    admit(session=s, tenant=tenant, job=row, net=net, now=now)
                    center = rng.choice(a100)
                    transition(session=s, job=row, to=JobState.SCHEDULED, now=now,
                               detail={"center": center, "pool": "a100"},
                               updates={"center_id": center, "pool_model": "a100"})  # fmt: skip
                    ids.append(row.id)
        t0 = time.perf_counter()
        repriced = lower_holds(sessions, net, now=now, limit=args.jobs)
        reprice_s = time.perf_counter() - t0
        for start in range(0, len(ids), BATCH):
            with sessions.begin() as s:
                for job_id in ids[start : start + BATCH]:
                    row = s.get_one(JobRow, job_id)
                    run = transition(session=s, job=row, to=JobState.RUNNING, now=now)
                    served = {"usage": {"tokens": rng.randint(0, 5_000_000)}}
                    transition(session=s, job=row, to=JobState.SUCCEEDED, detail=served, now=now)
                    began = now - timedelta(minutes=rng.randint(10, 120))
                    s.execute(update(JobEvent).where(JobEvent.id == run.id).values(at=began))
        t0 = time.perf_counter()
        settled = settle_finished(sessions, net, now=now, limit=args.jobs)
        settle_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with sessions() as s:
            problems = verify(session=s)
        verify_s = time.perf_counter() - t0
        return {
            "jobs": args.jobs,
            "repriced": repriced,
            "reprice_jobs_per_s": repriced / reprice_s,
            "settled": settled,
            "settle_jobs_per_s": settled / settle_s,
            "verify_s": verify_s,
            "problems": problems,
        }
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--db", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--tenants", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3, help="runs, each on a fresh schema")
    p.add_argument("--scenario", default="china")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the schema")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.jobs <= 0 or args.tenants <= 0 or args.repeat <= 0:
        p.error("--jobs, --tenants and --repeat must be positive")
    net = Network(load_scenario(args.scenario))
    runs = []
    for r in range(args.repeat):
        with fresh_database(args.db, args.keep) as url:
            runs.append(run_once(url, args, args.seed + r, net))
    keys = ("reprice_jobs_per_s", "settle_jobs_per_s", "verify_s")
    doc = {
        "db": args.db.split("://")[0],
        "jobs": args.jobs,
        "runs": runs,
        "median": {k: statistics.median(r[k] for r in runs) for k in keys},
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for i, r in enumerate(runs):
            print(f"run {i}: reprice {r['reprice_jobs_per_s']:.0f} jobs/s, settle "
                  f"{r['settle_jobs_per_s']:.0f} jobs/s, verify {r['verify_s']:.2f} s "
                  f"({r['settled']} settled, {len(r['problems'])} problems)")  # fmt: skip
        m = doc["median"]
        print(f"median: reprice {m['reprice_jobs_per_s']:.0f} jobs/s, settle "
              f"{m['settle_jobs_per_s']:.0f} jobs/s, verify {m['verify_s']:.2f} s")  # fmt: skip
    broken = any(r["problems"] or r["settled"] != args.jobs for r in runs)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
