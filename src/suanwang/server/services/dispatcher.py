"""The dispatcher: places pending jobs with the engine and hands them to executors.

Two idempotent steps per round, each in its own transaction:

1. **Place.** Pending jobs (oldest first; on PostgreSQL ``FOR UPDATE SKIP LOCKED`` so several
   dispatchers can share the work) are placed by the same policy the simulator proves, against
   live capacity and the signals from the current hour on, restricted to centers that have an
   executor. The policy decides where **and when**: deferrable work (every kind but inference
   and interactive) may be planned up to ``max_defer_h`` hours later, into a cheaper or
   greener window, never so late that it would miss its deadline (the planned end keeps a
   margin of a quarter of ``deadline_s`` before it). The decision, its explanation and the
   planned start (``start_at``) are stored with the transition to ``scheduled`` — intent
   before effect.
2. **Hand over.** Scheduled jobs without an executor reference whose planned start has come are
   submitted to their center's executor; a deferred job waits in ``scheduled`` until then.
   Executors are idempotent per job id, so a crash between submitting and committing the
   reference only makes the next round get the same reference back: no job runs twice.

Capacity (:meth:`Dispatcher.capacity`): a job holds its units *now* if it is running, has been
handed over, or its planned start has come; a deferred job holds nothing now. Every active job
is also entered on the policy's reservation calendar (units per pool and hour) from its start
(or now) to its expected end, so a job planned now cannot take units a deferred job will need
and a deferred job is not planned into hours running jobs still fill.

Trading (:class:`~suanwang.server.services.live.LiveTrading`): each round the providers'
offers in force are handed to the engine (a :class:`SuanwangPolicy` prices them: cheaper
offers win where the job's constraints allow). Units a consumer has reserved are closed to
other tenants' jobs in the reservation's window (as if planned busy), except what the
reserving tenant's own jobs already hold there; that tenant's jobs see their reserved pool at
price 0 (paid at booking) while the reservation has room, so they use it first.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.cost import carbon_kg, energy_cost_cny
from suanwang.core.jobs import Job
from suanwang.core.lifecycle import JobState
from suanwang.core.network import PRECISION_INDEX, JobClassInfo, UnknownName
from suanwang.core.signals import Signals
from suanwang.executors.base import ExecutorError, Submission
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import Policy
from suanwang.scheduling.state import CapacityState, Decision
from suanwang.server.database.models import JobRow
from suanwang.server.models.jobs import ACTIVE_STATES, spec_to_job, to_core_job, transition
from suanwang.server.schemas import JobSpec
from suanwang.server.services.live import LiveNetwork, LiveTrading, load_trading
from suanwang.server.services.runs import dir_size_gb

log = logging.getLogger("suanwang.dispatcher")
RUNNERS_UP = 3
HOUR = 3600.0
#: Planned starts later than now by less than this are "at once" (clock jitter, data transfer).
DEFER_EPSILON_S = 1.0


def explain(
    job: Job, info: JobClassInfo, chosen: int, start_s: float, state: CapacityState
) -> dict[str, Any]:
    """The chosen center's cost breakdown next to the best runners-up (forecast signals).

    Every candidate is costed as if started after the same deferral as the chosen one (its
    own data transfer time after now, plus the chosen start's delay), so the comparison is of
    places, not of times. ``if_started_now`` costs the chosen pool without the deferral.
    """
    net, sig = state.net, state.signals
    now = state.now_s
    units = job.demand_units
    runtime_s = job.work_scu / (units * info.speed) * HOUR
    power = units * info.facility_kw_per_unit
    transfer_s = job.data_gb * info.transfer_s_per_gb
    delay_s = max(start_s - (now + float(transfer_s[chosen])), 0.0)
    transfer = job.data_gb * info.transfer_cost_cny_per_gb

    def costs(t0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t1 = t0 + runtime_s
        energy = energy_cost_cny(sig, info.centers, power, t0, t1, forecast=True)
        carbon = carbon_kg(sig, info.centers, power, t0, t1, forecast=True)
        return energy, carbon

    energy, carbon = costs(now + transfer_s + delay_s)
    total = energy + transfer

    def row(i: int, energy: np.ndarray, carbon: np.ndarray) -> dict[str, Any]:
        return {
            "center": net.center_ids[int(info.centers[i])],
            "accelerator": net.pool_model[int(info.pools[i])],
            "cost_cny": round(float(energy[i] + transfer[i]), 4),
            "energy_cost_cny": round(float(energy[i]), 4),
            "transfer_cost_cny": round(float(transfer[i]), 4),
            "energy_kwh": round(float(power[i] * runtime_s[i] / HOUR), 4),
            "carbon_kg": round(float(carbon[i]), 4),
            "runtime_s": round(float(runtime_s[i]), 1),
            "latency_ms": round(float(info.latency_ms[i]), 3),
            "free_units": int(state.free[int(info.pools[i])]),
        }

    others = [int(i) for i in np.argsort(total, kind="stable") if int(i) != chosen]
    out: dict[str, Any] = {
        "chosen": row(chosen, energy, carbon),
        "runners_up": [row(i, energy, carbon) for i in others[:RUNNERS_UP]],
    }
    if delay_s > DEFER_EPSILON_S:
        now_energy, now_carbon = costs(now + transfer_s)
        out["if_started_now"] = row(chosen, now_energy, now_carbon)
    return out


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) >= 1 else f"{x:.3g}"


def deferral_reason(delay_h: float, why: dict[str, Any]) -> str:
    """``deferred N h to a cheaper/greener window: ...`` for a deferred decision."""
    chosen, now = why["chosen"], why.get("if_started_now")
    text = f"deferred {delay_h:.1f} h to a cheaper/greener window"
    if now is not None:
        text += (
            f": cost {_num(now['cost_cny'])} -> {_num(chosen['cost_cny'])} CNY, carbon "
            f"{_num(now['carbon_kg'])} -> {_num(chosen['carbon_kg'])} kg against starting now"
        )
    return text


def _hours(t0_s: float, t1_s: float) -> tuple[int, int]:
    """The calendar columns [h0, h1) that a run over [t0, t1) seconds touches."""
    h0 = max(int(t0_s // HOUR), 0)
    return h0, max(math.ceil(t1_s / HOUR), h0 + 1)


@dataclass
class Dispatcher:
    """Places pending jobs and hands due ones to executors (see the module docstring).

    ``policy`` defaults to :class:`SuanwangPolicy` with its normal deferral (up to
    ``max_defer_h`` = 12 hours); pass ``SuanwangPolicy(max_defer_h=0)`` to start every job at
    once.
    """

    sessions: sessionmaker[Session]
    live: LiveNetwork
    policy: Policy = field(default_factory=SuanwangPolicy)
    batch: int = 200

    def __post_init__(self) -> None:
        net = self.live.net
        self._pool_of: dict[tuple[str, str], int] = {}
        self._cpu_pool: dict[str, int] = {}
        for p, (c, m) in enumerate(zip(net.pool_center, net.pool_model, strict=True)):
            center = net.center_ids[int(c)]
            self._pool_of[(center, m)] = p
            if net.pool_is_cpu[p]:
                self._cpu_pool.setdefault(center, p)

    def run_once(self) -> int:
        """One round: place what is pending, hand over what is due. Returns jobs touched."""
        return self.place() + self.hand_over()

    def place(self) -> int:
        signals = self.live.signals()
        with self.sessions.begin() as session:
            rows = list(
                session.scalars(
                    select(JobRow)
                    .where(
                        # pending, and migrating runs that have checkpointed and left
                        JobRow.state.in_([JobState.PENDING.value, JobState.MIGRATING.value]),
                        JobRow.executor_ref.is_(None),
                    )
                    .order_by(JobRow.submitted_at, JobRow.id)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
            )
            if not rows:
                return 0
            trading = load_trading(session, self.live.net, signals)
            state = self.capacity(session, signals, trading)
            for row in rows:
                self._place_one(session, row, state, signals, trading)
            return len(rows)

    def capacity(
        self, session: Session, signals: Signals, trading: LiveTrading | None = None
    ) -> CapacityState:
        """Free units per pool now and the reservation calendar of every active job.

        A job holds its units now if it runs, was handed over, or its planned start has come;
        a deferred job holds none until then. On the calendar a job that holds units now
        occupies its pool from now to its expected end (started_at + runtime on that pool,
        at least the current hour); a deferred one from its planned start to start + runtime.
        With ``trading``, what each reserving tenant's jobs hold is recorded there too.
        """
        net = self.live.net
        now = self.live.clock()
        self.live.refresh_drained(session)  # operators drain through the API
        state = CapacityState.empty(net, signals)
        state.now_s = (now - signals.start).total_seconds()
        held = np.zeros(net.n_pools, dtype=np.int64)
        stmt = select(
            JobRow.id,
            JobRow.tenant_id,
            JobRow.state,
            JobRow.center_id,
            JobRow.pool_model,
            JobRow.spec,
            JobRow.executor_ref,
            JobRow.start_at,
            JobRow.started_at,
        ).where(JobRow.state.in_([s.value for s in ACTIVE_STATES]), JobRow.center_id.is_not(None))
        rows = session.execute(stmt)
        for job_id, tenant_id, st, center, model, spec, ref, start_at, started_at in rows:
            try:
                job = spec_to_job(
                    JobSpec.model_validate(spec), net, job_id=job_id, submit_s=0.0, labels={}
                )
            except (ValueError, UnknownName):  # a spec this scenario cannot cost: skip it
                continue
            pool = self._pool_of.get((center or "", model or ""))
            if pool is None and job.units == 0:
                pool = self._cpu_pool.get(center or "")
            if pool is None:
                continue  # a center or model this scenario does not have
            units = job.demand_units
            speed = float(net.pool_speed[pool, PRECISION_INDEX[job.precision]])
            runtime_s = job.work_scu / (units * speed) * HOUR if speed > 0 else HOUR
            holds = st != JobState.SCHEDULED.value or ref is not None
            holds = holds or start_at is None or start_at <= now
            if holds:
                held[pool] += units
                begun = (started_at - signals.start).total_seconds() if started_at else state.now_s
                h0, h1 = _hours(state.now_s, max(begun + runtime_s, state.now_s))
            else:
                t0 = (start_at - signals.start).total_seconds()
                h0, h1 = _hours(t0, t0 + runtime_s)
            state.committed[pool, h0:h1] += units
            if trading is not None:
                trading.add_use(tenant_id, pool, h0, h1, units)
        state.free = np.maximum(net.pool_capacity - held, 0)
        return state

    def _decide(
        self,
        job: Job,
        info: JobClassInfo,
        state: CapacityState,
        tenant: str,
        trading: LiveTrading | None,
    ) -> Decision:
        """The policy's decision with this tenant's view of the market (see the module doc):
        units others reserved and do not use are planned busy while it decides."""
        if not trading:
            return self.policy.decide(job, info, state)
        blocked = trading.blocked_for(tenant)
        if blocked is not None:
            hour = min(max(int(state.now_s // HOUR), 0), blocked.shape[1] - 1)
            now_blocked = np.minimum(blocked[:, hour].astype(np.int64), state.free)
            state.committed[:, : blocked.shape[1]] += blocked
            state.free -= now_blocked
        planner = self.policy if isinstance(self.policy, SuanwangPolicy) else None
        before = planner.prices if planner is not None else None
        if planner is not None:
            planner.prices = trading.prices_for(tenant, state.committed)
        try:
            return self.policy.decide(job, info, state)
        finally:
            if planner is not None:
                planner.prices = before
            if blocked is not None:
                state.committed[:, : blocked.shape[1]] -= blocked
                state.free += now_blocked

    def _place_one(
        self,
        session: Session,
        row: JobRow,
        state: CapacityState,
        signals: Signals,
        trading: LiveTrading | None = None,
    ) -> None:
        net = self.live.net
        try:
            job = to_core_job(row, net, t0=signals.start)
            if row.resume_from:  # the checkpoint moves too: it counts as data in the cost
                ckpt_gb = dir_size_gb(Path(row.resume_from))
                job = dataclasses.replace(job, data_gb=job.data_gb + ckpt_gb)
            info = self.live.restrict(net.job_class(job))
        except UnknownName as exc:  # stored under another scenario: fail it, do not retry forever
            transition(
                session=session,
                job=row,
                to=JobState.FAILED,
                detail={"reason": f"the served scenario cannot run this job: {exc}"},
            )
            return
        if info.pools.size == 0:
            transition(
                session=session,
                job=row,
                to=JobState.FAILED,
                detail={"reason": "no center with an executor can run this job "
                        "(accelerator, software stack, size or latency)"},
            )  # fmt: skip
            return
        decision = self._decide(job, info, state, row.tenant_id, trading)
        pos = decision.pos
        pool = int(info.pools[pos])
        center = net.center_ids[int(info.centers[pos])]
        start_s = max(decision.start_s, state.now_s)
        market: dict[str, Any] = {}
        if trading:
            units = job.demand_units
            runtime_s = job.work_scu / (units * float(info.speed[pos])) * HOUR
            trading.add_use(row.tenant_id, pool, *_hours(start_s, start_s + runtime_s), units)
            market = _market(trading, row.tenant_id, job, pool, start_s, decision.reason)
        why = explain(job, info, pos, start_s, state)
        transfer_s = job.data_gb * float(info.transfer_s_per_gb[pos])
        delay_s = max(start_s - state.now_s - transfer_s, 0.0)
        start_at = signals.start + timedelta(seconds=start_s)
        if delay_s > DEFER_EPSILON_S:
            reason = deferral_reason(delay_s / HOUR, why)
        else:
            reason = decision.reason
            state.free[pool] -= job.demand_units  # held from now on
        transition(
            session=session,
            job=row,
            to=JobState.SCHEDULED,
            detail={
                "center": center,
                "reason": reason,
                "start_at": start_at.isoformat(),
                "pool": net.pool_model[pool],
                **market,  # billing charges each run as it was placed (trading)
            },  # billing meters each run on its chip
            updates={
                "center_id": center,
                "pool_model": net.pool_model[pool],
                "start_at": start_at,
                "decision": {
                    "policy": self.policy.name,
                    "reason": reason,
                    "start_at": start_at.isoformat(),
                    "deferred_h": round(delay_s / HOUR, 3),
                    **why,
                    **market,
                },
            },
        )
        log.info("placed job %s on %s (%s)", row.id, center, reason)

    def hand_over(self) -> int:
        """Submit scheduled jobs whose planned start has come to their center's executor."""
        now = self.live.clock()
        done = 0
        with self.sessions.begin() as session:
            rows = list(
                session.scalars(
                    select(JobRow)
                    .where(
                        JobRow.state == JobState.SCHEDULED.value,
                        JobRow.executor_ref.is_(None),
                        or_(JobRow.start_at.is_(None), JobRow.start_at <= now),
                    )
                    .order_by(JobRow.scheduled_at, JobRow.id)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
            )
            for row in rows:
                executor = self.live.executors.get(row.center_id or "")
                if executor is None:
                    transition(
                        session=session,
                        job=row,
                        to=JobState.PENDING,
                        detail={"reason": f"center {row.center_id} has no executor; place again"},
                        updates={"start_at": None},
                    )
                    continue
                sub = submission(row, self.live)
                try:
                    if row.resume_from and Path(row.resume_from).is_dir():
                        row.executor_ref = executor.resume(sub, row.resume_from)
                    else:
                        row.executor_ref = executor.submit(sub)
                except ExecutorError as exc:
                    log.warning("executor refused job %s: %s", row.id, exc)
                    if "unreachable" in str(exc):
                        self.live.health.failed(row.center_id or "", str(exc))
                    transition(
                        session=session,
                        job=row,
                        to=JobState.PENDING,
                        detail={"reason": f"executor refused it: {exc}"},
                        updates={"center_id": None, "pool_model": None, "start_at": None},
                    )
                    continue
                done += 1
        return done


def _market(
    trading: LiveTrading, tenant: str, job: Job, pool: int, start_s: float, reason: str
) -> dict[str, Any]:
    """``{"market": {...}}`` when the engine placed the job below the posted price: the
    price per SCU it counted at the planned start hour, the posted one, and why."""
    table = trading.posted
    if table is None and trading.prices is not None:
        table = trading.prices.posted
    if table is None or "below the posted price" not in reason:
        return {}
    h = min(max(int(start_s // HOUR), 0), table.shape[2] - 1)
    posted = float(table[PRECISION_INDEX[job.precision], pool, h])
    mine = trading.reserved.get(tenant)
    if mine is not None and mine[pool, min(h, mine.shape[1] - 1)] > 0:
        return {"market": {"source": "reservation", "price_cny_per_scu": 0.0,
                           "posted_cny_per_scu": round(posted, 4)}}  # fmt: skip
    assert trading.prices is not None
    premium = float(trading.prices.premium[PRECISION_INDEX[job.precision], pool, h])
    return {"market": {"source": "offer", "price_cny_per_scu": round(posted + premium, 4),
                       "posted_cny_per_scu": round(posted, 4)}}  # fmt: skip


def submission(row: JobRow, live: LiveNetwork) -> Submission:
    """What the executor runs: the spec, the pool's model, this attempt, the checkpoint dir."""
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
        checkpoint_dir=str(live.checkpoint_dir(row.id)),
        attempt=row.attempt,
    )
