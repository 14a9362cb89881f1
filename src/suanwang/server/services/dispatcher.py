"""The dispatcher: places pending jobs with the engine and hands them to executors.

Two idempotent steps per round, each in its own transaction:

1. **Place.** Pending jobs (oldest first; on PostgreSQL ``FOR UPDATE SKIP LOCKED`` so several
   dispatchers can share the work) are placed by the same policy the simulator proves,
   against live capacity (scenario capacity less what scheduled and running jobs hold) and the
   current signals, restricted to centers that have an executor. The decision and its
   explanation are stored with the transition to ``scheduled`` — intent before effect.
2. **Hand over.** Scheduled jobs without an executor reference whose planned start has come are
   submitted to their center's executor. Executors are idempotent per job id, so a crash
   between submitting and committing the reference only makes the next round get the same
   reference back: no job runs twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.cost import carbon_kg, energy_cost_cny
from suanwang.core.jobs import Job
from suanwang.core.lifecycle import JobState
from suanwang.core.network import JobClassInfo
from suanwang.core.signals import Signals
from suanwang.executors.base import ExecutorError, Submission
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import Policy
from suanwang.scheduling.state import CapacityState
from suanwang.server.database.models import JobRow
from suanwang.server.models.jobs import to_core_job, transition
from suanwang.server.schemas import JobSpec
from suanwang.server.services.live import LiveNetwork

log = logging.getLogger("suanwang.dispatcher")
RUNNERS_UP = 3


def explain(
    job: Job, info: JobClassInfo, chosen: int, start_s: float, state: CapacityState
) -> dict[str, Any]:
    """The chosen center's cost breakdown next to the best runners-up (forecast signals)."""
    net, sig = state.net, state.signals
    units = job.demand_units
    runtime_s = job.work_scu / (units * info.speed) * 3600.0
    power = units * info.facility_kw_per_unit
    t0 = np.full(info.pools.size, max(start_s, state.now_s))
    t0 = t0 + job.data_gb * info.transfer_s_per_gb
    t1 = t0 + runtime_s
    energy = energy_cost_cny(sig, info.centers, power, t0, t1, forecast=True)
    carbon = carbon_kg(sig, info.centers, power, t0, t1, forecast=True)
    transfer = job.data_gb * info.transfer_cost_cny_per_gb
    total = energy + transfer

    def row(i: int) -> dict[str, Any]:
        return {
            "center": net.center_ids[int(info.centers[i])],
            "accelerator": net.pool_model[int(info.pools[i])],
            "cost_cny": round(float(total[i]), 4),
            "energy_cost_cny": round(float(energy[i]), 4),
            "transfer_cost_cny": round(float(transfer[i]), 4),
            "energy_kwh": round(float(power[i] * runtime_s[i] / 3600.0), 4),
            "carbon_kg": round(float(carbon[i]), 4),
            "runtime_s": round(float(runtime_s[i]), 1),
            "latency_ms": round(float(info.latency_ms[i]), 3),
            "free_units": int(state.free[int(info.pools[i])]),
        }

    others = [int(i) for i in np.argsort(total, kind="stable") if int(i) != chosen]
    return {"chosen": row(chosen), "runners_up": [row(i) for i in others[:RUNNERS_UP]]}


@dataclass
class Dispatcher:
    sessions: sessionmaker[Session]
    live: LiveNetwork
    policy: Policy = field(default_factory=lambda: SuanwangPolicy(max_defer_h=0))
    batch: int = 200

    def run_once(self) -> int:
        """One round: place what is pending, hand over what is due. Returns jobs touched."""
        return self.place() + self.hand_over()

    def place(self) -> int:
        signals = self.live.signals()
        with self.sessions.begin() as session:
            rows = list(
                session.scalars(
                    select(JobRow)
                    .where(JobRow.state == JobState.PENDING.value)
                    .order_by(JobRow.submitted_at, JobRow.id)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
            )
            if not rows:
                return 0
            state = self.live.capacity(session, signals)
            for row in rows:
                self._place_one(session, row, state, signals)
            return len(rows)

    def _place_one(
        self, session: Session, row: JobRow, state: CapacityState, signals: Signals
    ) -> None:
        job = to_core_job(row, self.live.net, t0=signals.start)
        info = self.live.restrict(self.live.net.job_class(job))
        if info.pools.size == 0:
            transition(
                session=session,
                job=row,
                to=JobState.FAILED,
                detail={"reason": "no center with an executor can run this job "
                        "(accelerator, software stack, size or latency)"},
            )  # fmt: skip
            return
        decision = self.policy.decide(job, info, state)
        pool = int(info.pools[decision.pos])
        center = self.live.net.center_ids[int(info.centers[decision.pos])]
        why = explain(job, info, decision.pos, decision.start_s, state)
        start_at = signals.start + timedelta(seconds=max(decision.start_s, state.now_s))
        state.free[pool] -= job.demand_units
        transition(
            session=session,
            job=row,
            to=JobState.SCHEDULED,
            detail={"center": center, "reason": decision.reason},
            updates={
                "center_id": center,
                "pool_model": self.live.net.pool_model[pool],
                "decision": {
                    "policy": self.policy.name,
                    "reason": decision.reason,
                    "start_at": start_at.isoformat(),
                    **why,
                },
            },
        )
        log.info("placed job %s on %s (%s)", row.id, center, decision.reason)

    def hand_over(self) -> int:
        now = self.live.clock()
        done = 0
        with self.sessions.begin() as session:
            rows = list(
                session.scalars(
                    select(JobRow)
                    .where(JobRow.state == JobState.SCHEDULED.value, JobRow.executor_ref.is_(None))
                    .order_by(JobRow.scheduled_at, JobRow.id)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
            )
            for row in rows:
                start_at = (row.decision or {}).get("start_at")
                if start_at and datetime.fromisoformat(start_at) > now:
                    continue
                executor = self.live.executors.get(row.center_id or "")
                if executor is None:
                    transition(
                        session=session,
                        job=row,
                        to=JobState.PENDING,
                        detail={"reason": f"center {row.center_id} has no executor; place again"},
                    )
                    continue
                try:
                    row.executor_ref = executor.submit(submission(row))
                except ExecutorError as exc:
                    log.warning("executor refused job %s: %s", row.id, exc)
                    transition(
                        session=session,
                        job=row,
                        to=JobState.PENDING,
                        detail={"reason": f"executor refused it: {exc}"},
                        updates={"center_id": None, "pool_model": None},
                    )
                    continue
                done += 1
        return done


def submission(row: JobRow) -> Submission:
    spec = JobSpec.model_validate(row.spec)
    r = spec.resources
    return Submission(
        job_id=row.id,
        name=row.name,
        command=spec.command,
        script=spec.script,
        cpus=r.cpus,
        cards=r.count,
        accelerator=row.pool_model or r.accelerator,
        mem_gb=r.mem_gb,
        env={"SUANWANG_CENTER": row.center_id or ""},
        checkpoint_dir=None,
    )
