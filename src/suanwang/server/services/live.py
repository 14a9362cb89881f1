"""The live network the services work on: scenario, signals, executors and capacity now."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanwang.billing import pricing as billing_store  # its book_for
from suanwang.billing.market import posted_prices, scu_prices
from suanwang.billing.pricing import PriceBook
from suanwang.core.cost import ScuPrices, hour_span, hour_window, run_seconds
from suanwang.core.jobs import Job, Priority
from suanwang.core.lifecycle import JobState
from suanwang.core.network import PRECISION_INDEX, JobClassInfo, Network, UnknownName
from suanwang.core.signals import Signals
from suanwang.executors.base import Executor, TenantAccounts
from suanwang.scheduling.state import NO_MARKET, CapacityState, Market, capacity_state_of
from suanwang.server.database.models import CenterDrain, JobEvent, JobRow, Tenant
from suanwang.server.models.billing import trading as trading_store
from suanwang.server.models.job_specs import spec_to_job
from suanwang.server.models.jobs import ACTIVE_STATES
from suanwang.server.schemas import JobSpec
from suanwang.server.services.health import CenterHealth
from suanwang.server.services.jobs_view import ACTIVE_COLUMNS, ActiveRow, JobsView


def tenant_name(session: Session, row: JobRow) -> str:
    """The name of the tenant ``row`` belongs to (what executors' accounts are keyed by)."""
    tenant = session.get(Tenant, row.tenant_id)
    return tenant.name if tenant is not None else ""


@dataclass
class LiveNetwork:
    """What the dispatcher and reconciler share.

    ``executors`` maps center ids to the executor that runs that center's jobs; in live mode
    only those centers receive jobs, and of those only the ones that answer (``health``) and
    are not drained (``drained``, read from the database by :meth:`capacity`).
    ``signals`` returns the signals from the current hour on.
    """

    net: Network
    signals: Callable[[], Signals]
    executors: Mapping[str, Executor]
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    health: CenterHealth = field(default_factory=CenterHealth)
    #: the centers whose hand-over, polling and failover are this process's now (None: all;
    #: several workers share the centers: :mod:`suanwang.server.shares`)
    holds: Callable[[], frozenset[str] | None] = field(default=lambda: None)
    drained: frozenset[str] = frozenset()
    #: Where jobs keep checkpoints: ``<root>/<job id>``, the same directory for every run of a
    #: job, reachable from every center (see :mod:`suanwang.server.services.failover`).
    checkpoint_root: Path = field(default_factory=lambda: Path(".suanwang/checkpoints"))
    #: runs an executor reported ``lost`` that may still be running: ref -> first report
    #: (monotonic clock); the reconciler gives them up after the executor's ``stop_grace_s``
    lost_seen: dict[str, float] = field(default_factory=dict)
    #: the engine's job of each active job at the last :meth:`state` (see :meth:`_costed`)
    _active_jobs: dict[str, Job | None] = field(default_factory=dict, init=False, repr=False)
    #: what :meth:`state` read of each active job's row at its last call (:meth:`_run_row`),
    #: with what it was made of (the row, when its run began, the signals' start): the same
    #: while they stay (a round would otherwise work out tens of thousands again)
    _rows: dict[str, tuple[Any, datetime | None, datetime, _RunRow | None]] = field(
        default_factory=dict, init=False, repr=False
    )

    def held_here(self, center: str) -> bool:
        """Whether ``center``'s hand-over, polling and failover are this process's now."""
        holds = self.holds()
        return holds is None or center in holds

    def __post_init__(self) -> None:
        unknown = sorted(set(self.executors) - set(self.net.center_ids))
        if unknown:
            raise ValueError(f"executors for unknown centers: {', '.join(unknown)}")
        self._served = np.array([c in self.executors for c in self.net.center_ids], dtype=bool)

    def open_centers(self) -> np.ndarray:
        """Per center: has an executor, answers and is not drained."""
        ok = self._served.copy()
        for center in set(self.health.down()) | self.drained:
            i = self.net.center_index.get(center)
            if i is not None:
                ok[i] = False
        return ok

    def restrict(self, info: JobClassInfo, tenant: str | None = None) -> JobClassInfo:
        """The job's feasible pools at open centers (executor, reachable, not drained); with
        ``tenant``, only at centers that run that tenant's jobs (:meth:`runs_for`)."""
        ok = self.open_centers()
        if tenant is not None:
            ok &= np.array([self.runs_for(c, tenant) for c in self.net.center_ids], dtype=bool)
        return info.subset(ok[self.net.pool_center[info.pools]])

    def runs_for(self, center: str, tenant: str) -> bool:
        """Whether ``center``'s executor runs ``tenant``'s jobs: one with accounts per tenant
        (:class:`~suanwang.executors.base.TenantAccounts`) only for tenants it has one for."""
        ex = self.executors.get(center)
        if ex is None:
            return False
        return not isinstance(ex, TenantAccounts) or ex.account_for(tenant) is not None

    def per_tenant(self) -> bool:
        """Whether some executor runs each tenant's jobs under an account of its own."""
        return any(isinstance(ex, TenantAccounts) for ex in self.executors.values())

    def serving(self, tenant: str) -> NDArray[np.bool_]:
        """Per center: whether its executor runs ``tenant``'s jobs (:meth:`runs_for`)."""
        return np.array([self.runs_for(c, tenant) for c in self.net.center_ids], dtype=bool)

    def no_account(self, tenant: str) -> list[str]:
        """Centers with an executor that does not run ``tenant``'s jobs."""
        return [c for c in self.executors if not self.runs_for(c, tenant)]

    def checkpoint_dir(self, job_id: str) -> Path:
        return self.checkpoint_root.resolve() / job_id

    def refresh_drained(self, session: Session) -> frozenset[str]:
        self.drained = frozenset(session.scalars(select(CenterDrain.center_id)))
        return self.drained

    def state(
        self,
        session: Session,
        signals: Signals,
        trading: LiveTrading | None = None,
        held: list[Held] | None = None,
        view: JobsView | None = None,
    ) -> CapacityState:
        """The capacity state placement and migration decide on (one builder for both).

        A job holds its units now if it runs, was handed over, or its planned start has come;
        a deferred job holds none until then. On the calendar a job that holds units now
        occupies its pool from now to its expected end (its run's start + runtime on that pool,
        at least the current hour; a later run, after a move or a preemption, counts from when
        it started running, with its whole runtime); a deferred one from its planned start to
        start + runtime. A job handed over but not yet running waits in its pool's queue
        (backlog). With
        ``trading``, what each reserving tenant's jobs hold is recorded there too; with
        ``held``, every job that holds units now is appended to it (for quotas). Also
        re-reads which centers are drained (operators drain through the API). With ``view``
        (refreshed in this transaction), the active jobs are its own instead of read here.
        """
        net = self.net
        now = self.clock()
        self.refresh_drained(session)
        now_s = (now - signals.start).total_seconds()
        active: list[tuple[int, int, float, float, bool, bool]] = []  # as Active's fields
        if view is not None:
            rows: Sequence[ActiveRow] = view.active_rows()
            rerun = view.run_starts(session)
        else:
            rows = active_rows(session)
            rerun = _run_starts(session, [r[0] for r in rows if r[8] and r[2] == RUNNING])
        jobs = self._costed(session, [r[0] for r in rows])
        sig_start = signals.start
        # what the reserving tenants' jobs hold (no call at all for the others)
        uses = trading.used if trading is not None else {}
        kept, made = self._rows, {}
        for row in rows:
            job_id = row[0]
            started_at = row[7]
            if row[8]:  # a later run: it began when it started running, not the first one
                started_at = rerun.get(job_id, started_at)
            got = kept.get(job_id)
            if got is None or got[0] != row or got[1] != started_at or got[2] is not sig_start:
                got = (row, started_at, sig_start, self._run_row(row, started_at, jobs, signals))
            made[job_id] = got
            run = got[3]
            if run is None:  # a spec this scenario cannot cost, a center or model it lacks
                continue
            pool, units, runtime_s, scheduled, handed, start_at, begun_s, held_run = run
            holds = not scheduled or handed or start_at is None or start_at <= now
            if holds:
                begun = now_s if begun_s is None else begun_s
                t0, t1 = now_s, max(begun + runtime_s, now_s)
            else:  # deferred: from its planned start
                assert start_at is not None  # (a job without one holds its units)
                t0 = (start_at - sig_start).total_seconds()
                t1 = t0 + runtime_s
            active.append((pool, units, t0, t1, holds, handed))
            if held is not None and holds:
                held.append(held_run)
            if row[1] in uses:
                assert trading is not None
                trading.add_use(row[1], pool, *hour_window(t0, t1), units)
        self._rows = made  # one assignment: services in other threads may read it
        return capacity_state_of(net, signals, now_s, active)

    def _run_row(
        self,
        row: ActiveRow,
        started_at: datetime | None,
        jobs: Mapping[str, Job | None],
        signals: Signals,
    ) -> _RunRow | None:
        """What :meth:`state` reads of an active job's ``row`` whatever the time (None: its
        spec cannot be costed, or its center or model is not in this scenario), its run begun
        at ``started_at``: the same while the row, ``started_at`` and the signals' start stay."""
        job_id, tenant, st, center, model, ref, start_at, _, attempt = row
        job = jobs[job_id]
        if job is None:
            return None
        run = self._run_of(job, center, model)
        if run is None:
            return None
        pool, units, speed, runtime_s = run
        begun = (started_at - signals.start).total_seconds() if started_at else None
        running = st == RUNNING
        held = Held(job_id, tenant, job.priority_class, pool, units, units * speed,
                    job.checkpointable, begun if running and started_at is not None else None,
                    job.work_scu, attempt)  # fmt: skip
        scheduled = st == SCHEDULED
        handed = scheduled and ref is not None
        return pool, units, runtime_s, scheduled, handed, start_at, begun, held

    def _run_of(
        self, job: Job, center: str | None, model: str | None
    ) -> tuple[int, int, float, float] | None:
        """Where a run of ``job`` at ``center`` on ``model`` is: its pool, units, speed there
        and runtime (None: a center or model this scenario does not have)."""
        net = self.net
        pool = net.pool_of_run(center or "", model or "", cpu_only=job.cards == 0)
        if pool is None:
            return None
        units = job.demand_units
        speed = float(net.pool_speed[pool, PRECISION_INDEX[job.precision]])
        return pool, units, speed, run_seconds(job.work_scu, units, speed)

    def placed(self, job_id: str, job: Job) -> None:
        """The engine's ``job`` of ``job_id``, just placed: the next state need not read its
        spec again (any job of the same spec does: the state reads only its size, speed, work,
        class and whether it checkpoints)."""
        self._active_jobs[job_id] = job  # one item: a reader in another thread sees it or not

    def _costed(self, session: Session, ids: list[str]) -> dict[str, Job | None]:
        """The engine's job for each active job of ``ids`` (None: its spec cannot be costed
        on this scenario), kept between calls: a job's spec never changes, so only the specs
        of jobs not seen before are read. Keeps only ``ids`` (the active jobs now)."""
        known = self._active_jobs
        out = {i: known[i] for i in ids if i in known}
        missing = [i for i in ids if i not in known]
        for k in range(0, len(missing), _CHUNK):
            chunk = missing[k : k + _CHUNK]
            for job_id, spec in session.execute(
                select(JobRow.id, JobRow.spec).where(JobRow.id.in_(chunk))
            ):
                try:
                    out[job_id] = spec_to_job(
                        JobSpec.model_validate(spec), self.net, job_id="", submit_s=0.0, labels={}
                    )
                except (ValueError, UnknownName):
                    out[job_id] = None
        self._active_jobs = out  # one assignment: services in other threads may read it
        return out


#: job ids per query when reading specs
_CHUNK = 2000
RUNNING = JobState.RUNNING.value
SCHEDULED = JobState.SCHEDULED.value
#: what :meth:`LiveNetwork.state` keeps of an active job's row: pool, units, runtime (s),
#: whether it is scheduled, scheduled and handed over, its planned start, when its run began
#: (seconds from the signals' start; None: not begun) and its :class:`Held`
_RunRow = tuple[int, int, float, bool, bool, datetime | None, float | None, "Held"]


def active_rows(session: Session) -> list[ActiveRow]:
    """Every active job placed on a center, in submission order (as :class:`JobsView`
    lists them)."""
    stmt = (
        select(*ACTIVE_COLUMNS)
        .where(JobRow.state.in_([s.value for s in ACTIVE_STATES]), JobRow.center_id.is_not(None))
        .order_by(JobRow.submitted_at, JobRow.id)
    )
    return [(*r,) for r in session.execute(stmt)]


def _run_starts(session: Session, ids: list[str]) -> dict[str, datetime]:
    """When each job of ``ids`` last started running (its current run, for a job run again)."""
    out: dict[str, datetime] = {}
    for k in range(0, len(ids), _CHUNK):
        stmt = (
            select(JobEvent.job_id, func.max(JobEvent.at))
            .where(JobEvent.job_id.in_(ids[k : k + _CHUNK]), JobEvent.to_state == RUNNING)
            .group_by(JobEvent.job_id)
        )
        out.update((job_id, at) for job_id, at in session.execute(stmt))
    return out


@dataclass(frozen=True, slots=True)
class Held:
    """An active job that holds its units now, as quotas and preemption see it: its id,
    tenant (id), class, pool, units and rate (SCU/h), whether it can checkpoint, when its
    run began (seconds from the signals' start; None: handed over, not running yet),
    its work (SCU) and the attempt its run is (a run that checkpointed or was stopped is
    followed by the next)."""

    job_id: str
    tenant: str
    priority: Priority
    pool: int
    units: int
    rate: float
    checkpointable: bool = False
    started_s: float | None = None
    work_scu: float = 0.0
    attempt: int = 0


@dataclass
class LiveTrading:
    """Providers' offers and consumers' reservations as the dispatcher sees them this round.

    ``prices``: pay-as-you-go offers for the engine (None: none in force). ``reserved[t]``:
    units tenant ``t`` has reserved per pool and hour (hour 0 = the signals' start);
    ``used[t]``: what ``t``'s active jobs are planned to hold there (filled by the dispatcher's
    capacity pass, then by each placement). Units reserved and not used by their tenant are
    closed to every other tenant (:meth:`blocked_for`); the reserving tenant's jobs see the
    pool at price 0 (already paid) while their reservation has room (:meth:`prices_for`), so
    they use it first.
    """

    net: Network
    prices: ScuPrices | None
    posted: np.ndarray | None
    reserved: dict[str, np.ndarray]
    used: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for tenant, r in self.reserved.items():
            self.used.setdefault(tenant, np.zeros_like(r))

    def __bool__(self) -> bool:
        return self.prices is not None or bool(self.reserved)

    def add_use(self, tenant: str, pool: int, h0: int, h1: int, units: int) -> None:
        """``tenant``'s job holds ``units`` on ``pool`` over calendar hours [h0, h1)."""
        used = self.used.get(tenant)
        if used is not None:
            used[pool, max(h0, 0) : max(min(h1, used.shape[1]), 0)] += units

    def blocked_for(self, tenant: str) -> np.ndarray | None:
        """Units per pool and hour that other tenants reserved and do not use (or None)."""
        out = None
        for t, r in self.reserved.items():
            if t == tenant:
                continue
            free = np.maximum(r - self.used[t], 0.0)
            out = free if out is None else out + free
        return out

    def market_for(self, tenant: str, committed: np.ndarray) -> Market:
        """``tenant``'s view of the market for one decision: the offers with its own
        reservations at price 0, and the units others reserved and do not use, closed."""
        if not self:
            return NO_MARKET
        return Market(prices=self.prices_for(tenant, committed), closed=self.blocked_for(tenant))

    def prices_for(self, tenant: str, committed: np.ndarray) -> ScuPrices | None:
        """The engine's prices for ``tenant``'s job: its own reservations at price 0 (their
        offered units: what the reservation has left, expressed against the pool's planned
        load ``committed``), the providers' offers elsewhere."""
        r = self.reserved.get(tenant)
        if r is None or self.posted is None:
            return self.prices
        hours = r.shape[1]
        mine = r > 0
        offer = np.where(mine[None] & np.isfinite(self.posted), 0.0, np.nan)
        load = (
            committed[:, :hours]
            if committed.shape[1] >= hours
            else np.pad(committed, ((0, 0), (0, hours - committed.shape[1])))
        )
        offered = np.where(mine, r - self.used[tenant] + load, 0.0)
        if self.prices is not None:
            offer = np.where(mine[None], offer, self.prices.offer)
            offered = np.where(mine, offered, self.prices.offered_units)
        return ScuPrices(posted=self.posted, offer=offer, offered_units=offered)


def load_trading(session: Session, net: Network, signals: Signals) -> LiveTrading:
    """Offers and reservations reaching into the signals' window, as engine arrays."""
    start = signals.start
    end = start + timedelta(hours=signals.hours)
    book = trading_store.offer_book(session=session, since=start, until=end)
    if not book.offers and not book.reservations:
        return LiveTrading(net, None, None, {})
    scenario = net.scenario
    prices_book = PriceBook(scenario, billing_store.book_for(scenario).params, offers=book)
    prices = scu_prices(net, prices_book, start, signals.hours)
    reserved: dict[str, np.ndarray] = {}
    for r in book.reservations:
        p = net.pool_named(r.center_id, r.model)
        h0, h1 = hour_span(start, r.start, r.end, signals.hours)
        if p is None or h1 <= h0:
            continue
        arr = reserved.setdefault(r.tenant, np.zeros((net.n_pools, signals.hours + 1)))
        arr[p, h0:h1] += r.units
    posted = None
    if reserved:
        posted = (
            prices.posted
            if prices is not None
            else posted_prices(net, prices_book, start, signals.hours)
        )
    return LiveTrading(net, prices, posted, reserved)
