"""1,000 concurrent completions, top-ups and cancels leave exact balances and a sound ledger.

Every worker also lowers holds of placed jobs and settles finished ones, and every tenant has
trial card-hours, storage GB-months and tokens (which the runs report serving) that the
settlements consume concurrently: no free hour, GB-month or token is used twice.
Runs on PostgreSQL (row locks, concurrent settlers) and on SQLite (serialised writers).
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from pinned import NOW, PERIOD
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.lifecycle import TERMINAL, JobState, TransitionError
from suanwang.server.database.models import (
    JobRow,
    LedgerTransaction,
    QuotaGrant,
    QuotaUse,
    Tenant,
    TenantRole,
    UsageRecord,
)
from suanwang.server.models.billing.accounts import balance, topup
from suanwang.server.models.billing.config import set_config
from suanwang.server.models.billing.holds import admit, hold_estimate, lower_holds
from suanwang.server.models.billing.quotas import grant_quota
from suanwang.server.models.billing.settle import settle_finished
from suanwang.server.models.billing.statements import settlement
from suanwang.server.models.billing.verify import verify
from suanwang.server.models.jobs import cancel_job, submit_job, transition
from suanwang.server.models.tenants import create_tenant
from suanwang.server.schemas import JobSpec

SEED = 20261122
TENANTS, JOBS, COMPLETIONS, TOPUPS, CANCELS = 5, 400, 450, 300, 250
START = Decimal("20000.00")
FREE_HOURS = Decimal("15")  # two grants per tenant
FREE_GB_MONTHS = Decimal("0.2")
FREE_TOKENS = 2_000_000


def test_concurrent_completions_topups_and_cancels_keep_exact_balances(
    app: FastAPI, client: Any, sessions: sessionmaker[Session], body: Any
) -> None:
    net = app.state.network
    rng = random.Random(SEED)
    with sessions.begin() as s:
        set_config(session=s, billing_required=True, now=NOW)
        tenants = [
            create_tenant(session=s, name=f"c{i}", role=TenantRole.CONSUMER, now=NOW)[0]
            for i in range(TENANTS)
        ]
        for t in tenants:
            topup(session=s, tenant=t, amount=START, key=f"start-{t.id}", now=NOW)
            free = {"card_hours": FREE_HOURS, "storage_gb_months": FREE_GB_MONTHS,
                    "tokens": FREE_TOKENS}  # fmt: skip
            grant_quota(session=s, tenant=t, now=NOW, **free)
            grant_quota(session=s, tenant=t, now=NOW, **free,
                        expires_at=datetime(2999, 1, 1, tzinfo=UTC))  # fmt: skip
    tids = [t.id for t in tenants]
    jobs: list[tuple[str, str]] = []
    spec = JobSpec.model_validate(body(data_gb=20))  # staged data: stored while it runs
    with sessions.begin() as s:
        for i in range(JOBS):
            tenant = s.get_one(Tenant, tids[i % TENANTS])
            row, _ = submit_job(session=s, tenant=tenant, spec=spec, now=NOW)
            admit(session=s, tenant=tenant, job=row, net=net, now=NOW)
            jobs.append((row.id, tenant.id))
        hold = hold_estimate(job=s.get_one(JobRow, jobs[0][0]), net=net)

    ops: list[tuple[str, Any]] = (
        [("complete", (rng.choice(jobs)[0], rng.randint(1, 90), rng.randint(0, 10**6)))
         for _ in range(COMPLETIONS)]
        + [("topup", (rng.choice(tids), Decimal(rng.randint(1, 50_000)) / 100, n))
           for n in range(TOPUPS)]
        + [("cancel", rng.choice(jobs)[0]) for _ in range(CANCELS)]
    )  # fmt: skip
    rng.shuffle(ops)
    topped: dict[str, Decimal] = dict.fromkeys(tids, Decimal("0"))
    for kind, arg in ops:
        if kind == "topup":
            topped[arg[0]] += arg[1]

    def run(op: tuple[str, Any]) -> str:
        kind, arg = op
        try:
            if kind == "topup":
                tid, amount, n = arg
                with sessions.begin() as s:
                    topup(session=s, tenant=s.get_one(Tenant, tid), amount=amount, key=f"t{n}",
                          now=NOW)  # fmt: skip
                return "topup"
            if kind == "cancel":
                with sessions.begin() as s:
                    row = s.get_one(JobRow, arg)
                    cancel_job(session=s, job=row, by=s.get_one(Tenant, row.tenant_id), now=NOW)
            else:
                job_id, minutes, tokens = arg
                with sessions.begin() as s:
                    row = s.get_one(JobRow, job_id)
                    transition(
                        session=s,
                        job=row,
                        to=JobState.SCHEDULED,
                        detail={"center": "zhangjiakou", "pool": "a100"},
                        updates={"center_id": "zhangjiakou", "pool_model": "a100"},
                        now=NOW,
                    )
                lower_holds(sessions, net, now=NOW)  # placed: its hold (and others') lowered
                with sessions.begin() as s:  # it ran for the ``minutes`` before NOW
                    row = s.get_one(JobRow, job_id)
                    began = NOW - timedelta(minutes=minutes)
                    transition(session=s, job=row, to=JobState.RUNNING, now=began)
                    transition(session=s, job=row, to=JobState.SUCCEEDED, now=NOW,
                               detail={"usage": {"tokens": tokens}})  # fmt: skip
        except TransitionError:
            return "conflict"  # the job had already ended: cancelled or completed first
        settle_finished(sessions, net, now=NOW)  # every worker also settles, concurrently
        return kind

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(run, ops))
    elapsed = time.perf_counter() - t0
    settle_finished(sessions, net, now=NOW)
    assert len(results) == 1000 and results.count("topup") == TOPUPS
    assert results.count("complete") > 0 and results.count("cancel") > 0

    with sessions() as s:
        assert verify(session=s) == []
        states = dict(s.execute(select(JobRow.id, JobRow.state)).all())
        charged = dict(
            s.execute(select(UsageRecord.job_id, func.sum(UsageRecord.amount_cny))
                      .group_by(UsageRecord.job_id)).all()
        )  # fmt: skip
        free = dict(
            s.execute(select(QuotaUse.tenant_id, func.sum(QuotaUse.value_cny))
                      .group_by(QuotaUse.tenant_id)).all()
        )  # fmt: skip
        for tid in tids:
            mine = [j for j, t in jobs if t == tid]
            open_ = [j for j in mine if JobState(states[j]) not in TERMINAL]
            # every free hour used exactly once: all granted, none twice (the tenant's jobs
            # ran far more card-hours than it was given)
            used = s.execute(
                select(QuotaGrant.card_hours_used, QuotaGrant.storage_gb_months_used,
                       QuotaGrant.tokens_used).where(QuotaGrant.tenant_id == tid)
            ).all()  # fmt: skip
            assert [tuple(u) for u in used] == [(FREE_HOURS, FREE_GB_MONTHS, FREE_TOKENS)] * 2
            uses = dict(
                s.execute(select(QuotaUse.resource, func.sum(QuotaUse.quantity))
                          .where(QuotaUse.tenant_id == tid).group_by(QuotaUse.resource)).all()
            )  # fmt: skip
            assert uses == {"card_hours": 2 * FREE_HOURS, "storage_gb_months": 2 * FREE_GB_MONTHS,
                            "tokens": 2 * FREE_TOKENS}  # fmt: skip
            spent = sum((charged.get(j) or Decimal(0) for j in mine), Decimal("0")) - free[tid]
            assert free[tid] > 0
            bal = balance(session=s, tenant_id=tid)
            assert bal.held_cny == hold * len(open_)
            assert bal.prepaid_cny == START + topped[tid] - hold * len(open_) - spent
            assert bal.prepaid_cny >= 0 and bal.postpaid_cny == 0
        done = [j for j, _ in jobs if JobState(states[j]) in TERMINAL]
        n_charges = s.scalar(
            select(func.count()).select_from(LedgerTransaction)
            .where(LedgerTransaction.kind == "charge")
        )  # fmt: skip
        assert n_charges == len(done)
        st = settlement(session=s, period=PERIOD, now=NOW)
        total = sum((v or Decimal(0) for v in charged.values()), Decimal("0"))
        payouts = sum(Decimal(p["payout_cny"]) for p in st["providers"])
        assert Decimal(st["charges_cny"]) == total == payouts + Decimal(st["commission_cny"])
        assert Decimal(st["trials_cny"]) == sum(free.values())
        assert total > 0
        n_released = s.scalar(
            select(func.count()).select_from(LedgerTransaction)
            .where(LedgerTransaction.kind == "release")
        )  # fmt: skip
        assert n_released is not None and n_released > 0
    print(f"1000 concurrent billing operations in {elapsed:.2f} s ({len(done)} jobs settled)")
