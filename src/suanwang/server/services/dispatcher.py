"""The dispatcher: places pending jobs with the engine and hands them to executors.

Two idempotent steps per round, each in its own transaction (under quotas, step 1 is the
platform's queue instead: :mod:`~suanwang.server.services.sharing`):

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

Capacity (:meth:`LiveNetwork.state`, the one builder placement and migration share): a job
holds its units *now* if it is running, has been handed over, or its planned start has come; a
deferred job holds nothing now. Every active job is also entered on the reservation calendar
(units per pool and hour) from its start (or now) to its expected end, so a job planned now
cannot take units a deferred job will need and a deferred job is not planned into hours
running jobs still fill; jobs handed over and not yet running are their pool's queue.

The pending and active jobs are kept between rounds (:class:`~suanwang.server.services.
jobs_view.JobsView`): a round reads only what changed since the last (the jobs with newer
``job_events``, the hand-overs), and reads everything again on a new term, after a failed
round and every ``resync_s``.
Under quotas, so are the pools the platform's queue keeps for starved jobs (a claim's
reservation, a borrower's kept pool: :attr:`Dispatcher.holds`), until their jobs start, are
deferred or leave the pending jobs, as in the simulator's one queue; in memory only (a new
term or a restarted placer keeps them again for the jobs still starved).

Every job goes through :func:`suanwang.scheduling.placement.place`, the seam the simulator
calls too; the stored decision is its explanation (the objective the policy compared, term by
term, for the choice and the best runners-up), so its numbers always agree with the choice.

Trading (:class:`~suanwang.server.services.live.LiveTrading`): each round the providers'
offers in force are passed to the engine with each decision as its market (a
:class:`SuanwangPolicy` prices them: cheaper offers win where the job's constraints allow).
Units a consumer has reserved are closed to other tenants' jobs in the reservation's window
(as if planned busy), except what the reserving tenant's own jobs already hold there; that
tenant's jobs see their reserved pool at price 0 (paid at booking) while the reservation has
room, so they use it first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import String, any_, bindparam, or_, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker

from suanwang.billing.rating import PREEMPTED  # the event of a preemption; such a run is not billed
from suanwang.core.cost import HOUR_S, hour_window
from suanwang.core.governance import Governance
from suanwang.core.jobs import Job
from suanwang.core.lifecycle import JobState
from suanwang.core.network import PRECISION_INDEX, JobClassInfo, UnknownName
from suanwang.core.signals import Signals
from suanwang.executors.base import ExecutorError, Submission
from suanwang.scheduling.fairshare import Where
from suanwang.scheduling.placement import Placement, place, unplaceable
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import Policy
from suanwang.scheduling.queue import (
    Hold,
    PlatformQueue,
    Queued,
    capacity_scu_per_h,
    pool_families,
    pool_hubs,
    where_of,
)
from suanwang.scheduling.state import NO_MARKET, CapacityState
from suanwang.server.database.models import JobEvent, JobRow, RunFence, Tenant
from suanwang.server.decisions import decision_record
from suanwang.server.models.fair_usage import load_usage, save_usage
from suanwang.server.models.job_specs import engine_job
from suanwang.server.models.jobs import Transitions, transition
from suanwang.server.schemas import JobSpec
from suanwang.server.services.failover import CHECKPOINT_REQUESTED
from suanwang.server.services.handover import HandOver
from suanwang.server.services.jobs_view import (
    PENDING_COLUMNS,
    JobsView,
    Pending,
    backoff_until,
)
from suanwang.server.services.live import (
    Held,
    LiveNetwork,
    LiveTrading,
    load_trading,
)
from suanwang.server.services.runs import LOST_RUN_BACKOFF_S, dir_size_gb
from suanwang.server.services.sharing import SHARE, LiveHost, Usage, by_id, no_governance

log = logging.getLogger("suanwang.dispatcher")

#: job ids per query when reading specs
_CHUNK = 2000


class _CollectorPause:
    """The cyclic garbage collector paused while placing rounds run (a context manager,
    shared by the process's dispatchers: the collector is the process's).

    A round of 1,000 placements keeps its window's rows, entries and the runs held alive
    through the round: the collector's automatic passes moved them to the oldest generation,
    and full collections, which walk every tracked object of the process (the pending and
    active jobs kept between rounds), took about a tenth of a round (docs/benchmarks.md, "The
    live dispatcher at scale", seventh pass). Paused, what a round made and dropped is freed
    by reference counting as before, and a pass over the youngest objects, which the last
    round to leave runs (in the round: its cost counted as the round's), takes what it left
    (cycles included): the round's garbage is collected once a round instead of during it,
    so memory stays bounded by a round's allocations; older generations are collected as the
    collector's thresholds say. The first round to enter pauses it (if
    enabled), the last to leave lets it run again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if not self._depth:
                self._resume = gc.isenabled()
                gc.disable()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                resume = not self._depth and self._resume
                if resume:
                    gc.enable()
            if resume:  # the pass over what the round left, in the round (its cost counted)
                gc.collect(0)


_collector_paused = _CollectorPause()


@dataclass
class _Round:
    """What one placement round shares: its transaction, its writes (made at the end, in
    bulk), the signals, which centers are open, and each job class restricted to them."""

    session: Session
    writes: Transitions
    signals: Signals
    open_centers: NDArray[np.bool_]
    specs: dict[str, dict[str, Any]]  # of the jobs this dispatcher has not seen before
    live: LiveNetwork | None = None
    #: some executor runs each tenant's jobs under an account of its own (read once a round:
    #: a runtime protocol check is slow)
    per_tenant: bool = False
    #: whether the round has run its time, given how many jobs it decided so far
    spent: Callable[[int], bool] = lambda decided: False
    #: runs preempted, and 1 if the round ran out of time (progress besides its transitions)
    progress: int = 0
    #: each job class restricted to the open centers that run its tenant's jobs (with the
    #: class itself, keyed by its id: kept alive, the id is not reused while kept)
    restricted: dict[tuple[int, str], tuple[JobClassInfo, JobClassInfo]] = field(
        default_factory=dict
    )
    names: dict[str, str] = field(default_factory=dict)  # tenant id -> name
    serves: dict[str, NDArray[np.bool_]] = field(default_factory=dict)  # name -> centers
    #: the waiting reasons written (job id, reason)
    waited: list[tuple[str, str]] = field(default_factory=list)

    def tenant_name(self, tenant_id: str) -> str:
        """The tenant's name (what executors' accounts are keyed by); "" when no executor
        runs tenants under accounts of their own (no need to look it up)."""
        if not self.per_tenant:
            return ""
        name = self.names.get(tenant_id)
        if name is None:
            tenant = self.session.get(Tenant, tenant_id)
            name = self.names[tenant_id] = tenant.name if tenant is not None else ""
        return name

    def serving(self, tenant: str) -> NDArray[np.bool_]:
        """The centers whose executors run ``tenant``'s jobs."""
        mask = self.serves.get(tenant)
        if mask is None:
            if self.live is None or not self.per_tenant:
                mask = np.ones_like(self.open_centers)
            else:
                mask = self.live.serving(tenant)
            self.serves[tenant] = mask
        return mask


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
    #: pending jobs a round without quotas places (oldest first); 1,000: a round of about
    #: half a CPU second (docs/benchmarks.md, "Placement throughput")
    batch: int = 1000
    #: scheduled jobs a round hands to executors (each is a call to its center)
    hand_over_batch: int = 200
    #: hands them over, every center's at once
    handing: HandOver = field(default_factory=HandOver)
    #: the quotas in force, read every round (None: none, jobs are placed oldest first)
    governance: Callable[[Session], Governance | None] = no_governance
    #: pending jobs a governed round orders (the platform's queue)
    queue_limit: int = 10_000
    #: a governed round that has decided ``batch`` jobs stops taking more once it has run
    #: this long, writes included (seconds; None: no limit, the default): a round holds its
    #: rows locked (SQLite: the database's write lock), so the API and the other services
    #: wait about this long at most; the rest is taken by the next round, at once (a round
    #: that did work is followed by another without a pause), and every round makes
    #: progress. Each round also pays for ordering the queue and building the capacity state
    #: (reading them is kept between rounds: :attr:`view`), so short rounds decide fewer jobs a
    #: second (docs/benchmarks.md, "The live dispatcher at scale")
    round_budget_s: float | None = None
    #: the clock ``round_budget_s`` is measured on (seconds; tests pass their own)
    timer: Callable[[], float] = time.perf_counter
    usage: Usage = field(default_factory=Usage)
    #: seconds between saves of the tenants' usage (a placer that comes after goes on from it)
    usage_save_s: float = 60.0
    #: per pool, when work last waited in the platform's queue for room there (Unix seconds;
    #: -inf: never): the planner defers no job for price while the network is that scarce
    #: (``CapacityState.waited_s``, docs/governance.md), kept from round to round
    waited_at: NDArray[np.float64] | None = field(default=None, init=False, repr=False)
    #: run in each placement transaction before its writes: raises to refuse them (an elected
    #: placer's fence, :mod:`suanwang.server.cluster`); None: nothing to check
    fence: Callable[[Session], None] | None = None
    #: seconds a job that lost a run at an answering center waits, from that loss, before it
    #: goes back to a center it lost runs at (none other can run it), doubled per further loss
    #: (:func:`~suanwang.server.services.jobs_view.backoff_until`; 0: at once; ``serve
    #: --lost-run-backoff-s``); a job that can go elsewhere does not wait
    lost_run_backoff_s: float = LOST_RUN_BACKOFF_S
    #: seconds the last round's writes and commit took per job decided (to stop in time)
    _write_s: float = field(default=0.0, init=False, repr=False)
    #: the jobs the last round moved on (see :meth:`run_once`)
    progress: int = field(default=0, init=False)
    #: the placer's term (:mod:`suanwang.server.cluster`): a new one rebuilds the pending and
    #: active jobs kept between rounds (another placer may have written meanwhile)
    term: int | None = None
    #: the pending and active jobs, kept between rounds (:class:`JobsView`); None: read from
    #: the database every round, as before it
    view: JobsView | None = field(default=None, init=False, repr=False)
    #: whether rounds keep the jobs between them (:attr:`view`)
    incremental: bool = True
    #: the engine's jobs pending at the last round and their classes (with the signals' start
    #: they count from), kept: a job's spec never changes
    _jobs: dict[str, tuple[datetime, Job, JobClassInfo]] = field(
        default_factory=dict, init=False, repr=False
    )
    #: kept between rounds while the signals' start and the open centers stay (:meth:`_keep`;
    #: None: not kept): each job class restricted to the open centers, by the class's id
    #: and tenant; what runs of one shape weigh, by the restricted class's id and units
    #: (each with the class, kept alive: its id is not reused); the queue's entry of each
    #: job in the window (with the signals' start it counts from)
    _kept_for: tuple[datetime, bytes] | None = field(default=None, init=False, repr=False)
    _restricted: dict[tuple[int, str], tuple[JobClassInfo, JobClassInfo]] = field(
        default_factory=dict, init=False, repr=False
    )
    _wheres: dict[tuple[int, int], tuple[JobClassInfo, Where]] = field(
        default_factory=dict, init=False, repr=False
    )
    #: a restricted class without the centers a job lost runs at (:meth:`_away`), by the
    #: restricted class's id and those centers (with the restricted class, kept alive)
    _away_from: dict[tuple[int, tuple[str, ...]], tuple[JobClassInfo, JobClassInfo]] = field(
        default_factory=dict, init=False, repr=False
    )
    _entries: dict[str, tuple[datetime, Queued]] = field(
        default_factory=dict, init=False, repr=False
    )
    #: the keys of queue entries (each entry's own: an entry kept between rounds keeps it)
    _serial: Iterator[int] = field(default_factory=itertools.count, init=False, repr=False)
    #: the pools the platform's queue kept at the last round for jobs still waiting (a
    #: claim's reservation, a borrower's kept pool), by job id, and the term they were kept
    #: in: handed to the next round's queue, so a pool stays kept until its job starts or is
    #: deferred, as in the simulator's one queue (:meth:`_carry`); in memory only, dropped on
    #: a new term (the queue keeps them again for jobs still starved), as before a failed round
    holds: list[tuple[str, Hold]] = field(default_factory=list, init=False)
    _holds_term: int | None = field(default=None, init=False, repr=False)

    def run_once(self) -> int:
        """One round: place what is pending, hand over what is due. Returns the jobs moved on
        (placed, failed, preempted, handed over; 1 more when a round ran out of time): jobs
        that only go on waiting are not progress, so a backlog that cannot start does not
        make the loop run rounds back to back."""
        self.place()
        return self.progress + self.hand_over()

    def place(self) -> int:
        """One placing round. Returns the jobs it decided: placed, failed, or kept pending
        with the reason they wait (a governed round cut by ``round_budget_s`` decides fewer
        than it read). The garbage collector does not run during it (:class:`_CollectorPause`)."""
        with _collector_paused():
            return self._place()

    def _place(self) -> int:
        t0 = self.timer()
        self.progress = 0
        signals = self.live.signals()
        if self.incremental and self.view is None:
            self.view = JobsView(self.live.clock)
        view = self.view
        holds = self.holds
        try:
            with self.sessions.begin() as session:
                if view is not None:
                    view.refresh(session, self.term)
                decided, waited, t1 = self._round(session, signals, t0, view)
        except BaseException:
            if view is not None:  # its writes rolled back: read everything again
                view.invalidate()
            self.holds = holds  # the round is undone: as before it
            raise
        if t1 is not None:
            self._write_s = (self.timer() - t1) / max(decided, 1)
        if view is not None:
            view.waiting(waited)
        return decided

    def _round(
        self, session: Session, signals: Signals, t0: float, view: JobsView | None
    ) -> tuple[int, list[tuple[str, str]], float | None]:
        """:meth:`place`'s transaction: the jobs decided, the waiting reasons written and when
        the writes began (``timer``; None: nothing to decide)."""
        gov = self.governance(session)
        limit = self.batch if gov is None else self.queue_limit
        rows, specs = self._pending(session, limit, view)
        if gov is None or not rows or self.term != self._holds_term:
            self.holds, self._holds_term = [], self.term  # no queue, or another placer's
        if not rows:
            return 0, [], None
        trading = load_trading(session, self.live.net, signals)
        held: list[Held] | None = [] if gov is not None else None  # only quotas need it
        state = self.live.state(session, signals, trading, held, view)
        writes = Transitions(self.live.clock())
        round_ = _Round(session, writes, signals, self.live.open_centers(), specs, self.live,
                        self.live.per_tenant(), spent=self._budget(t0))  # fmt: skip
        self._keep(round_)
        if gov is not None and held is not None:
            decided = self._place_in_turn(round_, rows, state, trading, gov, held)
        else:  # oldest first, ``batch`` at most: within the round's time
            decided = len(rows)
            for row in rows:
                got = self._engine_job(round_, row)
                if got is not None:
                    self._place_one(round_, row, *got, state, trading)
        t1 = self.timer()
        if self.fence is not None:
            self.fence(session)
        moved = writes.transitions + round_.progress
        writes.write(session)
        self.progress = moved
        return decided, round_.waited, t1

    def _budget(self, t0: float) -> Callable[[int], bool]:
        """Whether a round begun at ``t0`` that has decided ``decided`` jobs (at least
        ``batch``) has run ``round_budget_s``, counting the writes its decisions will take (at
        the last round's pace); once spent, always spent."""
        limit = self.round_budget_s
        done = False

        def spent(decided: int) -> bool:
            nonlocal done
            if limit is not None and not done and decided >= self.batch:
                done = self.timer() - t0 + decided * self._write_s >= limit
            return done

        return spent

    def _pending(
        self, session: Session, limit: int, view: JobsView | None = None
    ) -> tuple[list[Pending], dict[str, dict[str, Any]]]:
        """The oldest ``limit`` pending jobs (and migrating runs that have checkpointed and
        left), locked (PostgreSQL: ``FOR UPDATE SKIP LOCKED``), and the specs of those not
        seen before (the engine's jobs of the others are kept: a job's spec never changes).
        With ``view`` the jobs are its own (on PostgreSQL, those still pending are locked
        here; on SQLite the round's transaction holds the write lock since the view read)."""
        if view is not None:
            rows = view.oldest(limit)
            if session.get_bind().dialect.name == "postgresql":
                rows = _lock(session, rows)
        else:
            rows = self._read_pending(session, limit)
        jobs, entries = self._jobs, self._entries
        self._jobs = {r.id: jobs[r.id] for r in rows if r.id in jobs}  # the rest has gone
        self._entries = {r.id: entries[r.id] for r in rows if r.id in entries}
        missing = [r.id for r in rows if r.id not in jobs]
        specs: dict[str, dict[str, Any]] = {}
        for i in range(0, len(missing), _CHUNK):
            chunk = missing[i : i + _CHUNK]
            found = session.execute(select(JobRow.id, JobRow.spec).where(JobRow.id.in_(chunk)))
            specs.update((job_id, spec) for job_id, spec in found)
        return rows, specs

    def _read_pending(self, session: Session, limit: int) -> list[Pending]:
        found = session.execute(
            select(*PENDING_COLUMNS)
            .where(
                JobRow.state.in_([JobState.PENDING.value, JobState.MIGRATING.value]),
                JobRow.executor_ref.is_(None),
            )
            .order_by(JobRow.submitted_at, JobRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [Pending.of(r) for r in found]

    def _place_in_turn(
        self,
        round_: _Round,
        rows: list[Pending],
        state: CapacityState,
        trading: LiveTrading | None,
        gov: Governance,
        held: list[Held],
    ) -> int:
        """A governed round (:mod:`~suanwang.server.services.sharing`): the platform's queue
        takes the pending jobs in turn; those it does not start stay pending, saying why (those
        a round cut by its time did not reach, as they were). Returns the jobs decided."""
        net = self.live.net
        session = round_.session
        names = list(gov.tenants)
        found = session.execute(select(Tenant.name, Tenant.id).where(Tenant.name.in_(names)))
        ids = {name: tenant_id for name, tenant_id in found}
        seen = {row.tenant_id for row in rows} | {h.tenant for h in held}
        gov = by_id(gov, ids).with_tenants(seen, capacity_scu_per_h(net))
        families, hubs = pool_families(net), pool_hubs(net)
        usage = self.usage
        usage.in_frame(round_.signals.start)
        if usage.at_s is None:  # this placer's first round: go on from the usage last saved
            saved = load_usage(session=session)
            if saved is not None:
                usage.restore(*saved)
        shares, tiers = usage.shares(gov, state.now_s, held, families, hubs)
        now = round_.writes.now
        if usage.saved_at is None or (now - usage.saved_at).total_seconds() >= self.usage_save_s:
            as_of = round_.signals.start + timedelta(seconds=state.now_s)
            save_usage(session=session, decayed=usage.decayed, now=as_of)  # this round's
            usage.saved_at = now  # transaction: behind the fence, undone with the round
        # when work last waited for room, in this round's frame (the signals' start moves
        # every hour): the queue records it, the planner reads it (the same array)
        frame = round_.signals.start.timestamp()
        if self.waited_at is None or self.waited_at.size != net.n_pools:
            self.waited_at = np.full(net.n_pools, -np.inf)
        state.waited_s = self.waited_at - frame
        queue = PlatformQueue(shares, gov.rules, state.waited_s)
        waiting: dict[int, tuple[Pending, Job]] = {}
        held_for = {job_id for job_id, _ in self.holds}
        holding: dict[str, Queued] = {}  # the entries of the jobs pools were kept for
        for row in rows:
            item = self._entry(round_, row, families, hubs)
            if item is not None:
                waiting[item.key] = (row, item.job)
                queue.push(item)
                if row.id in held_for:
                    holding[row.id] = item
        self._carry(queue, holding)

        def place_one(key: int, info: JobClassInfo) -> Placement:
            row, job = waiting[key]
            return self._place_one(round_, row, job, info, state, trading)

        def stop(run: Held, key: int) -> None:
            self._preempt(session, run, waiting[key][0].id)
            round_.progress += 1

        host = LiveHost(
            state.free, place_one, stop, shares, held, tiers, self.usage, families, hubs,
            gov.rules.protect_s,
        )  # fmt: skip
        cut = False

        def spent() -> bool:
            nonlocal cut
            cut = round_.spent(len(host.placed))
            return cut

        why = queue.round(state.now_s, host, spent)
        self.holds = [(waiting[h.key][0].id, h) for h in queue.holds()]
        self.waited_at = state.waited_s + frame  # kept for the next rounds, in Unix seconds
        round_.progress += int(cut)  # the rest is for the next round, at once
        decided = len(rows) - len(waiting)  # failed, or waiting for their centers to open
        for key, (row, _) in waiting.items():
            if key in host.placed:
                decided += 1
            elif key in why or not cut:  # looked at, or behind the fair order when none could
                decided += 1  # start: waiting for its share (not reached: as it was)
                self._wait(round_, row, why.get(key, SHARE))
        return decided

    def _carry(self, queue: PlatformQueue, holding: dict[str, Queued]) -> None:
        """Hand ``queue`` the pools the last round kept (:attr:`holds`) for the jobs still
        waiting (``holding``: their entries this round, whose keys may be new), where they
        can still run: a job that started, was deferred, cancelled, failed or left the pending
        jobs lets its pool go."""
        for job_id, h in self.holds:
            item = holding.get(job_id)
            if item is not None and bool((item.info.pools == h.pool).any()):
                queue.hold(dataclasses.replace(h, key=item.key, tenant=item.job.tenant))

    def _preempt(self, session: Session, run: Held, by: str) -> None:
        """Stop ``run`` for job ``by``: a checkpointable run is asked to checkpoint (it leaves
        as ``migrating`` and resumes where it is placed next); another is stopped now, its run
        fenced, and goes back to be placed from the start (``migrating``, next attempt)."""
        row = session.get(JobRow, run.job_id, with_for_update=True)
        executor = self.live.executors.get(row.center_id or "") if row is not None else None
        if row is None or row.executor_ref is None or executor is None:
            return
        now = self.live.clock()
        detail = {"event": PREEMPTED, "by": by, "attempt": row.attempt}
        try:
            asked = run.checkpointable and executor.checkpoint(row.executor_ref) is not None
            if not asked:
                executor.cancel(row.executor_ref)
        except ExecutorError as exc:  # the center will be marked by the reconciler's polls
            log.warning("could not preempt job %s at %s: %s", row.id, row.center_id, exc)
            return
        if asked:
            detail["event"] = CHECKPOINT_REQUESTED
            detail["why"] = PREEMPTED
            session.add(JobEvent(job_id=row.id, at=now, from_state=row.state,
                                 to_state=row.state, detail=detail))  # fmt: skip
            log.info("asked job %s to checkpoint: preempted by %s", row.id, by)
            return
        session.add(RunFence(job_id=row.id, center_id=row.center_id or "",
                             executor_ref=row.executor_ref, reason=f"preempted by {by}",
                             created_at=now))  # fmt: skip
        transition(
            session=session,
            now=now,
            job=row,
            to=JobState.MIGRATING,
            detail={**detail, "reason": f"preempted by job {by}: placed again from the start"},
            updates={"center_id": None, "pool_model": None, "executor_ref": None,
                     "start_at": None, "attempt": row.attempt + 1, "resume_from": None},
        )  # fmt: skip
        log.info("preempted job %s for %s: placing it again from the start", row.id, by)

    def _wait(self, round_: _Round, row: Pending, reason: str) -> None:
        """Keep ``row`` pending, saying why (written only when the reason changes)."""
        if row.waiting == reason:
            return
        decision = {
            "placed": False,
            "policy": self.policy.name,
            "reason": f"waiting in the platform's queue: {reason}",
            "waiting": reason,
        }
        round_.writes.set(row.id, decision=decision)
        round_.waited.append((row.id, reason))

    def _entry(
        self,
        round_: _Round,
        row: Pending,
        families: tuple[str, ...],
        hubs: tuple[str | None, ...],
    ) -> Queued | None:
        """What the platform's queue takes of ``row``: the engine's job, its feasible pools
        at open centers and what a run would weigh on each, under a key of its own (None: the
        job failed, as :meth:`_engine_job` says). Kept between rounds for a job without a
        checkpoint to move and without lost runs to avoid centers for, while the signals'
        start and the open centers stay (:meth:`_keep`)."""
        t0 = round_.signals.start
        kept = not row.resume_from and not row.avoid  # (an entry from before a loss is stale)
        if kept:
            cached = self._entries.get(row.id)
            if cached is not None and cached[0] == t0:
                return cached[1]
        got = self._engine_job(round_, row)
        if got is None:
            return None
        job, info = got
        k = (id(info), job.demand_units)  # jobs of one shape weigh the same
        known = self._wheres.get(k)
        if known is None:
            known = self._wheres[k] = (info, where_of(job, info, families, hubs))
        entry = Queued(next(self._serial), job, info, known[1])
        if kept:  # (the checkpoint's size is read each round)
            self._entries[row.id] = (t0, entry)
        return entry

    def _keep(self, round_: _Round) -> None:
        """Give ``round_`` the job classes restricted and the queue entries of the last
        rounds, or start them again: when the signals' start or the open centers changed,
        or when executors run tenants under accounts of their own (read every round)."""
        now = (round_.signals.start, round_.open_centers.tobytes())
        if round_.per_tenant or now != self._kept_for:
            self._restricted, self._wheres, self._entries = {}, {}, {}
            self._away_from = {}
            self._kept_for = None if round_.per_tenant else now
        round_.restricted = self._restricted

    def _engine_job(self, round_: _Round, row: Pending) -> tuple[Job, JobClassInfo] | None:
        """The engine's job for ``row`` and its feasible pools at open centers; None when the
        served scenario or no open center can run it: the job failed, saying why, or, when
        centers that could run it are only unreachable or drained now, it waits for them. Jobs are
        kept between rounds (their spec, tenant and submission never change) and feasible
        pools restricted once a round per job class."""
        net = self.live.net
        t0 = round_.signals.start
        try:
            cached = self._jobs.get(row.id)
            if cached is None or cached[0] != t0:
                if cached is None:
                    job = engine_job(
                        round_.specs[row.id],
                        net,
                        job_id=row.id,
                        tenant=row.tenant_id,
                        name=row.name,
                        submitted_at=row.submitted_at,
                        t0=t0,
                    )
                else:  # a new hour: the signals start later
                    submit_s = (row.submitted_at - t0).total_seconds()
                    job = dataclasses.replace(cached[1], submit_s=submit_s)
                cached = (t0, job, net.job_class(job))
                self._jobs[row.id] = cached
            _, job, everywhere = cached
            if row.resume_from:  # the checkpoint moves too: it counts as data in the cost
                ckpt_gb = dir_size_gb(Path(row.resume_from))
                job = dataclasses.replace(job, data_gb=job.data_gb + ckpt_gb)
                everywhere = net.job_class(job)
            tenant = round_.tenant_name(row.tenant_id)
            got = round_.restricted.get((id(everywhere), tenant))
            if got is None:
                ok = round_.open_centers & round_.serving(tenant)
                info = everywhere.subset(ok[net.pool_center[everywhere.pools]])
                round_.restricted[(id(everywhere), tenant)] = (everywhere, info)
            else:
                info = got[1]
            back = False
            if row.avoid:
                away = self._away(info, row.avoid)
                back, info = away is info, away
        except UnknownName as exc:  # stored under another scenario: fail it, do not retry forever
            reason = f"the served scenario cannot run this job: {exc}"
            self._fail(round_, row, reason, {})
            return None
        if info.pools.size == 0:
            open_pools = int(round_.open_centers[net.pool_center[everywhere.pools]].sum())
            if open_pools:  # open centers could run it, but none has an account for the tenant
                where = ", ".join(self.live.no_account(tenant))
                reason = (
                    f"no center can run this job for tenant {tenant}: it has no account at "
                    f"{where} (the platform file's executor.accounts), the only open centers "
                    "that could"
                )
                self._fail(round_, row, reason, {"no account": open_pools})
                return None
            closed = self._closed_for_now(everywhere, tenant)
            if closed:  # centers that run it are down or drained now: wait for them
                self._wait(round_, row, f"every center that can run it is {closed}")
                return None
            reason, excluded = unplaceable(net, job, closed=everywhere.pools.size)
            self._fail(round_, row, reason, excluded)
            return None
        if back:  # only centers it lost runs at can run it: not before its back-off is over
            until = backoff_until(row.lost, row.lost_at, self.lost_run_backoff_s)
            if until is not None and round_.writes.now < until:
                self._wait(round_, row, _backing_off(row, until))
                return None
        return job, info

    def _away(self, info: JobClassInfo, avoid: tuple[str, ...]) -> JobClassInfo:
        """``info`` without the pools of the centers ``avoid`` names (where the job lost runs
        while they answered), unless no other pool is left: then ``info`` itself, back to
        those centers (``max_lost_runs`` bounds how often; a job that only they can run neither
        waits for ever nor fails at once). Kept between rounds as the restricted classes."""
        key = (id(info), avoid)
        got = self._away_from.get(key)
        if got is None:
            index = self.live.net.center_index
            gone = np.array([index[c] for c in avoid if c in index], dtype=info.centers.dtype)
            away = info.subset(~np.isin(info.centers, gone))
            got = self._away_from[key] = (info, away if away.pools.size else info)
        return got[1]

    def _closed_for_now(self, everywhere: JobClassInfo, tenant: str) -> str:
        """Of the centers with an executor that runs ``tenant``'s jobs and that hold a
        feasible pool of the job, those unreachable or drained now, said in words ("" when
        there are none: then no center with an executor can ever run the job)."""
        live = self.live
        centers = {live.net.center_ids[i] for i in live.net.pool_center[everywhere.pools]}
        ours = sorted(c for c in centers if live.runs_for(c, tenant))
        down, drained = set(live.health.down()), live.drained
        said = [f"{c} (drained)" if c in drained else f"{c} (unreachable)" for c in ours
                if c in drained or c in down]  # fmt: skip
        return "unreachable or drained now: " + ", ".join(said) if said else ""

    def _place_one(
        self,
        round_: _Round,
        row: Pending,
        job: Job,
        info: JobClassInfo,
        state: CapacityState,
        trading: LiveTrading | None = None,
    ) -> Placement:
        net = self.live.net
        signals = round_.signals
        market = trading.market_for(row.tenant_id, state.committed) if trading else NO_MARKET
        placed = place(job, info, state, self.policy, market, explain=True)
        pool, start_s = placed.pool, placed.start_s
        center = net.center_ids[int(net.pool_center[pool])]
        detail: dict[str, Any] = {}
        if trading:
            h0, h1 = hour_window(start_s, start_s + placed.runtime_s)
            trading.add_use(row.tenant_id, pool, h0, h1, job.demand_units)
            detail = _market(trading, row.tenant_id, job.precision, pool, placed)
        if row.avoid:  # it lost runs at these centers while they answered (runs.give_up_run)
            detail["avoided"] = _avoided(row.avoid, center)
        if state.starts_now(start_s):
            state.free[pool] -= job.demand_units  # held from now on (as the state builder says)
        self.live.placed(row.id, job)
        start_at = signals.start + timedelta(seconds=start_s)
        decision = decision_record(placed, self.policy.name, signals.start, detail.get("market"))
        if row.avoid:
            decision["avoided"] = detail["avoided"]
        round_.writes.add(
            row.id,
            JobState(row.state),
            JobState.SCHEDULED,
            detail={
                "center": center,
                "reason": placed.reason,
                "start_at": start_at.isoformat(),
                "pool": net.pool_model[pool],
                **detail,  # billing charges each run as it was placed (trading)
            },  # billing meters each run on its chip
            updates={
                "center_id": center,
                "pool_model": net.pool_model[pool],
                "start_at": start_at,
                "decision": decision,
            },
        )
        log.info("placed job %s on %s (%s)", row.id, center, placed.reason)
        return placed

    def _fail(self, round_: _Round, row: Pending, reason: str, excluded: dict[str, int]) -> None:
        """A job no center can run: failed, with which constraint excluded the candidates."""
        round_.writes.add(
            row.id,
            JobState(row.state),
            JobState.FAILED,
            detail={"reason": reason, "excluded": excluded},
            updates={
                "decision": {
                    "placed": False,
                    "policy": self.policy.name,
                    "reason": reason,
                    "excluded": excluded,
                }
            },
        )

    def hand_over(self) -> int:
        """Submit scheduled jobs whose planned start has come to their center's executor."""
        now = self.live.clock()
        done = 0
        holds = self.live.holds()  # the centers this worker hands over to (None: every one)
        mine = JobRow.center_id.in_(sorted(holds)) if holds is not None else true()
        with self.sessions.begin() as session:
            rows = list(
                session.scalars(
                    select(JobRow)
                    .where(
                        JobRow.state == JobState.SCHEDULED.value,
                        JobRow.executor_ref.is_(None),
                        or_(JobRow.start_at.is_(None), JobRow.start_at <= now),
                        mine,
                    )
                    .order_by(JobRow.scheduled_at, JobRow.id)
                    .limit(self.hand_over_batch)
                    .with_for_update(skip_locked=True)
                )
            )
            ids = {row.tenant_id for row in rows}
            found = session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(ids)))
            names = {tenant_id: name for tenant_id, name in found}
            batches: dict[str, list[tuple[Submission, str | None]]] = {}
            for row in rows:
                if row.center_id not in self.live.executors:
                    reason = f"center {row.center_id} has no executor; place again"
                    _place_again(session, now, row, reason)
                    continue
                resume = (
                    row.resume_from if row.resume_from and Path(row.resume_from).is_dir() else None
                )
                sub = submission(row, self.live, names.get(row.tenant_id, ""))
                batches.setdefault(row.center_id or "", []).append((sub, resume))
            # every center's at once: a hung center delays no other (handover.py)
            handed = self.handing.submit(session, now, self.live.executors, batches)
            for row in rows:
                got = handed.get(row.id)
                if isinstance(got, ExecutorError):
                    log.warning("executor refused job %s: %s", row.id, got)
                    if "unreachable" in str(got):
                        self.live.health.failed(row.center_id or "", str(got))
                    _place_again(session, now, row, f"executor refused it: {got}", refused=True)
                elif got is not None:
                    row.executor_ref = got
                    log.info("handed job %s to %s as %s", row.id, row.center_id, got)
                    done += 1
        return done


def _lock(session: Session, rows: list[Pending]) -> list[Pending]:
    """Those of ``rows`` still pending and not locked by another transaction, locked
    (``FOR UPDATE SKIP LOCKED``): the others changed since the view read them (their events
    come with the next round) or are being changed."""
    ids = bindparam("ids", [r.id for r in rows], type_=ARRAY(String))  # one parameter
    stmt = (
        select(JobRow.id)
        .where(
            JobRow.id == any_(ids),
            JobRow.state.in_([JobState.PENDING.value, JobState.MIGRATING.value]),
            JobRow.executor_ref.is_(None),
        )
        .with_for_update(skip_locked=True)
    )
    ok = set(session.scalars(stmt))
    return [r for r in rows if r.id in ok]


def _place_again(
    session: Session, now: datetime, row: JobRow, reason: str, *, refused: bool = False
) -> None:
    """Hand a scheduled job back to placement (pending), saying why; its planned start goes,
    and where the center ``refused`` it, its center and pool too."""
    updates: dict[str, Any] = {"start_at": None}
    if refused:
        updates |= {"center_id": None, "pool_model": None}
    transition(
        session=session,
        now=now,
        job=row,
        to=JobState.PENDING,
        detail={"reason": reason},
        updates=updates,
    )


def _backing_off(row: Pending, until: datetime) -> str:
    """Why ``row`` waits: it lost runs at the only centers that can run it, and waits out
    its back-off before it goes back to them."""
    said = ", ".join(row.avoid or ())
    wait = (until - row.lost_at).total_seconds() if row.lost_at is not None else 0.0
    return (
        f"backing off after a lost run: back to {said} (it lost {row.lost} runs there, "
        f"the last at {row.lost_at.isoformat() if row.lost_at else '?'}) not before "
        f"{until.isoformat()} (a back-off of {wait:g} s)"
    )


def _avoided(avoid: tuple[str, ...], center: str) -> dict[str, Any]:
    """What a placement of a job that lost runs at ``avoid`` (while those centers answered)
    says of them: kept away from, or back at one because no other open center can run it."""
    said = ", ".join(avoid)
    if center in avoid:
        why = (
            f"back at {center}, where it lost a run before: no other open center can run it "
            f"(lost runs at {said})"
        )
    else:
        why = f"kept away from {said}: it lost runs there while the centers answered"
    return {"centers": list(avoid), "back": center in avoid, "reason": why}


def _market(
    trading: LiveTrading, tenant: str, precision: Any, pool: int, placed: Placement
) -> dict[str, Any]:
    """``{"market": {...}}`` when the engine placed the job below the posted price: the price
    per SCU it counted at the planned start hour, the posted one, and where it came from."""
    table = trading.posted
    if table is None and trading.prices is not None:
        table = trading.prices.posted
    chosen = placed.chosen
    if table is None or chosen is None or chosen.offer_premium_cny >= 0:
        return {}
    h = min(max(int(placed.start_s // HOUR_S), 0), table.shape[2] - 1)
    q = PRECISION_INDEX[precision]
    posted = float(table[q, pool, h])
    mine = trading.reserved.get(tenant)
    if mine is not None and mine[pool, min(h, mine.shape[1] - 1)] > 0:
        return {"market": {"source": "reservation", "price_cny_per_scu": 0.0,
                           "posted_cny_per_scu": round(posted, 4)}}  # fmt: skip
    assert trading.prices is not None
    offer = float(trading.prices.offer[q, pool, h])
    return {"market": {"source": "offer", "price_cny_per_scu": round(offer, 4),
                       "posted_cny_per_scu": round(posted, 4)}}  # fmt: skip


def submission(row: JobRow, live: LiveNetwork, tenant: str = "") -> Submission:
    """What the executor runs: the spec, the pool's model, this attempt, the checkpoint dir,
    and whose job it is (``tenant``'s name)."""
    spec = JobSpec.model_validate(row.spec)
    r = spec.resources
    return Submission(
        job_id=row.id,
        name=row.name,
        command=spec.command,
        script=spec.script,
        cpus=r.cpus,
        cards=r.cards,
        accelerator=row.pool_model or r.accelerator,
        mem_gb=r.mem_gb,
        env={"SUANWANG_CENTER": row.center_id or ""},
        checkpoint_dir=str(live.checkpoint_dir(row.id)),
        attempt=row.attempt,
        tenant=tenant,
        tenant_id=row.tenant_id,
        network=spec.network,
    )
