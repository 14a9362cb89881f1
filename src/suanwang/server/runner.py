"""Assemble and run the platform: API server + dispatcher + reconciler + executors."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.network import Network
from suanwang.core.scenario import Scenario, fit_inventory
from suanwang.executors.base import Executor, ExecutorError
from suanwang.executors.limits import Limits
from suanwang.executors.local import LocalExecutor, Sandbox, SharedUser
from suanwang.executors.slurm import SlurmExecutor
from suanwang.scenarios.loader import load_scenario
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.server.agents.executor import AgentExecutor
from suanwang.server.cluster import (
    DUTIES,
    HEARTBEAT_S,
    MIGRATIONS,
    PLACEMENT,
    Election,
    Fence,
    LocalElection,
    Member,
    Wakeups,
    election_for,
    fenced,
)
from suanwang.server.database.session import (
    make_engine,
    migrate,
    require_migrated,
    session_factory,
)
from suanwang.server.models.governance import GovernanceReader
from suanwang.server.platform_config import (
    AgentExecutorConfig,
    LocalExecutorConfig,
    PlatformConfig,
    SlurmExecutorConfig,
)
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.failover import Failover, Migrations
from suanwang.server.services.live import LiveNetwork
from suanwang.server.services.loop import LoopService
from suanwang.server.services.reconciler import Reconciler
from suanwang.server.services.standby import Standby
from suanwang.server.settings import Settings
from suanwang.server.shares import LocalShares, Shares, shares_for
from suanwang.server.signals import SignalCache

log = logging.getLogger("suanwang.serve")

#: Slots each local "center" offers on this machine: real processes, no real accelerators.
LOCAL_CARDS = 64
LOCAL_CPUS = 256
#: Host cores per card a local executor sized like its center adds to the center's CPU cores:
#: the engine counts an accelerator job's cards, not the cores it asks for (a CPU-only job's
#: cores come from the center's CPU pool), and an executor counts both.
HOST_CORES_PER_CARD = 16


def local_executors(
    net: Network,
    root: Path,
    centers: list[str] | None = None,
    *,
    like_scenario: bool = False,
    sandbox: Sandbox | SharedUser = Sandbox(),  # noqa: B008 (frozen)
) -> dict[str, Executor]:
    """A local executor standing in for each center (or the named ones).

    Each offers :data:`LOCAL_CARDS` cards and :data:`LOCAL_CPUS` cores, or ``like_scenario``
    the center's cards in the scenario and its CPU cores (plus :data:`HOST_CORES_PER_CARD`
    per card): then the executor runs at once whatever the engine places as starting now, and
    a pool the engine sees full is full (a scarce scenario, e.g. the demo's). Jobs run in
    ``sandbox`` (see :mod:`suanwang.executors.local.sandbox`).
    """
    chosen = centers if centers else list(net.center_ids)
    unknown = sorted(set(chosen) - set(net.center_ids))
    if unknown:
        raise ValueError(f"unknown center(s): {', '.join(unknown)}")
    out: dict[str, Executor] = {}
    for c in chosen:
        cpus, cards = LOCAL_CPUS, LOCAL_CARDS
        if like_scenario:
            center = net.scenario.center(c)
            cpus, cards = center.cpu_cores + HOST_CORES_PER_CARD * center.cards, center.cards
        out[c] = LocalExecutor(root, c, cpus=cpus, cards=cards, sandbox=sandbox)
    return out


def configured_executors(
    cfg: PlatformConfig,
    scenario: Scenario,
    root: Path,
    lease_s: float = 60.0,
    sandbox: Sandbox | SharedUser = Sandbox(),  # noqa: B008 (frozen)
    *,
    sessions: sessionmaker[Session] | None = None,
) -> dict[str, Executor]:
    """One executor per center of the platform file (local ones keep their runs under root
    and run jobs in ``sandbox``; agent centers' work through the database of ``sessions``,
    which they are declared in).

    ``lease_s`` is the default lease of Slurm runs (see :mod:`suanwang.executors.slurm`).
    """
    known = {c.id for c in scenario.centers}
    unknown = [c.center_id for c in cfg.centers if c.center_id not in known]
    if unknown:
        raise ValueError(f"platform file: unknown center(s) {', '.join(unknown)}")
    out: dict[str, Executor] = {}
    for c in cfg.centers:
        ex = c.executor
        if isinstance(ex, AgentExecutorConfig):
            out[c.center_id] = _agent_executor(c.center_id, ex, sessions)
        else:
            out[c.center_id] = executor_for(c.center_id, ex, root, lease_s, sandbox)
    return out


def executor_for(
    center: str,
    ex: LocalExecutorConfig | SlurmExecutorConfig,
    root: Path,
    lease_s: float = 60.0,
    sandbox: Sandbox | SharedUser = Sandbox(),  # noqa: B008 (frozen)
) -> Executor:
    """The executor a center's entry in a platform file (or an agent's file) describes: a
    local one keeps its runs under ``root``; ``lease_s``: a Slurm run's lease unless the entry
    sets one."""
    if isinstance(ex, LocalExecutorConfig):
        return LocalExecutor(root, center, cpus=ex.cpus, cards=ex.cards, sandbox=sandbox)
    slurm = SlurmExecutor(
        center,
        ex.url,
        ex.token_file,
        ex.user,
        ex.output_dir,
        partition=ex.partition,
        api_version=ex.api_version,
        timeout_s=ex.timeout_s,
        lease_s=ex.lease_s or lease_s,
        accounts=ex.accounts,
        account_tokens=ex.account_tokens,
        unsafe_shared_user=ex.unsafe_shared_user,
        contain=ex.contain,
        shared_dirs=ex.shared_dirs,
        limits=Limits(**ex.limits.model_dump()),
    )
    if not slurm.contain:
        log.warning(
            "center %s: contain is off: its jobs share the compute node's network and "
            "see its processes (they may reach the platform's database if it is there)",
            center,
        )
    if ex.unsafe_shared_user:
        log.warning(
            "center %s: unsafe_shared_user: tenants without an account there run as "
            "%s, all under one account, and can read each other's files and output",
            center,
            ex.user,
        )
    return slurm


def _agent_executor(
    center: str, ex: AgentExecutorConfig, sessions: sessionmaker[Session] | None
) -> AgentExecutor:
    """An agent center's executor, declared in the database (its lease: the sync answers it).
    Failover gives its runs up after its ``stop_grace_s`` (lease + grace) at the earliest."""
    if sessions is None:
        raise ValueError(f"center {center}: an agent center needs the platform's database")
    agent = AgentExecutor(
        sessions, center, lease_s=ex.lease_s, grace_s=ex.grace_s, declared=(ex.cpus, ex.cards)
    )
    agent.declare()
    return agent


def live_scenario(scenario: Scenario, executors: dict[str, Executor]) -> Scenario:
    """The scenario as the executors really are.

    A center whose executor knows its cards per model (a Slurm cluster's GRES) gets that
    inventory and that many CPU cores instead of the scenario's, so the engine never sends a
    center more than it has. One whose executor has slots but does not tie cards to models (a
    ``local`` executor of the platform file) keeps the scenario's figures up to those slots:
    its CPU pool at most the executor's cores, its cards cut to the executor's
    (:func:`~suanwang.core.scenario.fit_inventory`). Otherwise the engine would place there
    what the executor can only queue, and the center's own queue would decide who runs
    first. Centers whose executors cannot be asked right now keep the scenario's figures (the
    first successful round of the reconciler does not change them: capacity is read once, at
    start).
    """
    centers = []
    for c in scenario.centers:
        ex = executors.get(c.id)
        cap = None
        if ex is not None:
            try:
                cap = ex.slots() if isinstance(ex, AgentExecutor) else ex.capacity()
            except ExecutorError as exc:
                log.warning("capacity of %s unknown (%s): using the scenario's", c.id, exc)
        if cap is not None and cap.cards_by_model:
            known = set(scenario.catalog.models)
            inventory = tuple(sorted((m, n) for m, n in cap.cards_by_model.items() if m in known))
            c = dataclasses.replace(c, inventory=inventory, cpu_cores=cap.slots_cpus)
        elif cap is not None:
            inventory = fit_inventory(c.inventory, cap.slots_cards)
            cores = min(c.cpu_cores, cap.slots_cpus)
            if (inventory, cores) != (c.inventory, c.cpu_cores):
                log.info("center %s: %d cards and %d CPU cores, as its executor has (the "
                         "scenario's: %d and %d)", c.id, sum(n for _, n in inventory), cores,
                         c.cards, c.cpu_cores)  # fmt: skip
                c = dataclasses.replace(c, inventory=inventory, cpu_cores=cores)
        centers.append(c)
    return dataclasses.replace(scenario, centers=tuple(centers))


@dataclass
class Services:
    """The background loops of a worker (or of ``serve`` with its services), its election of
    the singleton duties, its record in the cluster and its wake-ups (PostgreSQL)."""

    dispatcher: LoopService
    #: what the dispatcher's loop runs (its settings, for operators and tests)
    placer: Dispatcher
    reconciler: LoopService
    failover: LoopService
    migrations: LoopService
    live: LiveNetwork
    #: the hand-over in a loop of its own (PostgreSQL; on SQLite the dispatcher hands over
    #: after placing, in its own loop: one writer at a time either way)
    handover: LoopService | None = None
    #: tries to lead every duty (a standby takes over here) and records this process
    cluster: LoopService | None = None
    election: Election = field(default_factory=LocalElection)
    #: the centers this process holds among the workers (SQLite: all)
    shares: Shares = field(default_factory=LocalShares)
    member: Member | None = None
    wakeups: Wakeups | None = None
    engine: Engine | None = None

    @property
    def loops(self) -> tuple[LoopService, ...]:
        main: tuple[LoopService, ...] = (
            self.dispatcher,
            self.reconciler,
            self.failover,
            self.migrations,
        )
        if self.handover is not None:
            main = (*main, self.handover)
        return main if self.cluster is None else (self.cluster, *main)

    def start(self) -> None:
        if self.wakeups is not None:
            self.wakeups.start()
        for loop in self.loops:
            loop.start()

    def stop(self) -> None:
        for loop in self.loops:
            loop.stop()
        if self.wakeups is not None:
            self.wakeups.stop()
        self.election.close()  # the next leader takes over at once
        self.shares.close()  # and the centers held here are free for the others
        if self.member is not None:
            try:
                self.member.leave()
            except SQLAlchemyError as exc:
                log.warning("could not remove this worker from the cluster's members: %s", exc)
        if self.engine is not None:
            self.engine.dispose()


def _cluster_round(
    election: Election,
    shares: Shares,
    member: Member,
    wake: dict[str, threading.Event],
    live: LiveNetwork,
) -> int:
    """Try to lead every singleton duty (waking a duty's loop when elected to it), take and
    let go of centers by the live workers and share their reachability, then the heartbeat
    (with what is held)."""
    before = election.terms()
    for duty in DUTIES:
        term = election.lead(duty)
        if term is not None and before.get(duty) != term and duty in wake:
            wake[duty].set()
    live.health.share(member.sessions, member.id, shares.refresh())
    member.beat()
    return 0


#: On PostgreSQL, placing rounds start at least this far apart: submissions arriving one at a
#: time (each a wake-up) are placed in batches, not each in a round of its own that costs the
#: worker's other threads (hand-over, polls) their time. ``bench_e2e.py``, docs/benchmarks.md.
PLACING_ROUND_S = 0.25


def _dispatch_loops(
    placing: Callable[[], int],
    hand_over: Callable[[], int],
    *,
    postgres: bool,
    interval_s: float,
    wakeup: threading.Event,
) -> tuple[LoopService, LoopService | None]:
    """The dispatcher's loop (woken by ``wakeup``: a submission, a new term) and the hand-over's.

    On PostgreSQL they are two loops: a placing round never waits for a hand-over, whose
    calls to the centers can take seconds (a center's submissions one after another, the
    round waiting for the slowest center), and the hand-over is woken by every round that
    decided something. Hand-over runs on every worker, for the centers it holds; placement on
    the elected leader only. Row locks keep the two apart: the hand-over takes only scheduled
    jobs not handed over (``FOR UPDATE SKIP LOCKED``), the placer pending ones and handed-over
    runs to preempt. On SQLite, whose transactions (``BEGIN IMMEDIATE``) each hold the one
    write lock, the dispatcher hands over after placing, in its one loop.
    """
    if not postgres:
        return LoopService("dispatcher", lambda: placing() + hand_over(), interval_s,
                           wakeup=wakeup), None  # fmt: skip
    due = threading.Event()

    def place() -> int:
        decided = placing()
        if decided:
            due.set()
        return decided

    return (
        LoopService("dispatcher", place, interval_s, wakeup=wakeup, min_round_s=PLACING_ROUND_S),
        LoopService("hand-over", hand_over, interval_s, wakeup=due),
    )


def build_services(
    settings: Settings,
    executors_root: Path,
    centers: list[str] | None = None,
    config: PlatformConfig | None = None,
    *,
    lost_after_s: float = 120.0,
    checkpoint_root: Path | None = None,
    max_defer_h: int = 12,
    local_like_scenario: bool = False,
    sandbox: Sandbox | SharedUser | None = None,
    kind: str = "serve",
    migrate_first: bool = True,
    dispatch_interval_s: float = 0.5,
) -> Services:
    """Migrate the database and wire the background services.

    With a platform ``config`` its executors serve its centers; otherwise a local executor
    stands in for every center (or the named ``centers``). A center unreachable for
    ``lost_after_s`` has its jobs failed over; checkpoints live under ``checkpoint_root``
    (default: ``executors_root/../checkpoints``). The dispatcher may defer deferrable work up
    to ``max_defer_h`` hours into a cheaper or greener window, at most the scenario's
    deferral limit (else :class:`ValueError`). ``local_like_scenario``: local
    executors offer what their centers have in the scenario (see :func:`local_executors`).
    Local executors run jobs in ``sandbox`` (default: per-tenant accounts, network where
    ``settings.allow_job_network``); raises
    :class:`~suanwang.executors.local.SandboxUnavailable` where that cannot be done.

    ``migrate_first``: migrate the database (else it must have this version's schema:
    :class:`~suanwang.server.database.session.NotMigrated`). The process records itself in the
    cluster as ``kind``; on PostgreSQL it is elected to the singleton duties (placement,
    migrations) when no other process holds them, and the dispatcher wakes at each submission
    (else every ``dispatch_interval_s``). See :mod:`suanwang.server.cluster`.
    """
    if sandbox is None:
        sandbox = Sandbox(allow_network=settings.allow_job_network)
    if isinstance(sandbox, SharedUser):
        log.warning("%s", sandbox.describe())
    else:
        log.info("%s", sandbox.describe())
    scenario = load_scenario(settings.scenario)
    limit = scenario.deferral.max_defer_h
    if max_defer_h > limit:  # the same rule as the simulator's (docs/model.md)
        raise ValueError(
            f"max_defer_h {max_defer_h} is above the scenario's deferral limit ({limit} h, "
            "scenario.yaml deferral.max_defer_h): a job may not wait longer than that"
        )
    engine = make_engine(settings.db_url)
    if migrate_first:
        migrate(settings.db_url, engine=engine)
    else:
        require_migrated(engine)
    sessions = session_factory(engine)
    if config is not None:
        executors = configured_executors(
            config,
            scenario,
            executors_root,
            lost_after_s / 2,
            sandbox=sandbox,
            sessions=sessions,
        )
        scenario = live_scenario(scenario, executors)
        net = Network(scenario)
    else:
        net = Network(scenario)
        executors = local_executors(
            net, executors_root, centers, like_scenario=local_like_scenario, sandbox=sandbox
        )
    signals = SignalCache(scenario, seed=settings.signals_seed)
    clock = lambda: datetime.now(UTC)  # noqa: E731
    live = LiveNetwork(
        net=net,
        signals=signals.current,
        executors=executors,
        clock=clock,
        checkpoint_root=checkpoint_root or executors_root.parent / "checkpoints",
    )
    member = Member(sessions, kind, clock, serves=frozenset(executors))
    election = member.election = election_for(engine, member.id, clock)
    shares = shares_for(engine, sessions, member.id, executors, clock)
    member.holds = live.holds = shares.held
    dispatcher = Dispatcher(
        sessions,
        live,
        policy=SuanwangPolicy(max_defer_h=max_defer_h),
        governance=GovernanceReader(),  # the quotas, read every round (built when changed)
        lost_run_backoff_s=settings.lost_run_backoff_s,
        round_budget_s=settings.round_budget_s or None,
    )
    migrations = Migrations(sessions, live)

    def place(fence: Fence | None) -> int:
        dispatcher.fence = fence
        dispatcher.term = election.terms().get(PLACEMENT)  # a new one: the jobs read afresh
        return dispatcher.place()

    def migrate_round(fence: Fence | None) -> int:
        migrations.fence = fence
        return migrations.run_once()

    placing = fenced(election, PLACEMENT, place, Standby(sessions, live, dispatcher.policy))
    wake = {PLACEMENT: threading.Event(), MIGRATIONS: threading.Event()}
    postgres = engine.dialect.name == "postgresql"
    dispatch, handover = _dispatch_loops(
        placing,
        dispatcher.hand_over,
        postgres=postgres,
        interval_s=dispatch_interval_s,
        wakeup=wake[PLACEMENT],
    )
    return Services(
        dispatcher=dispatch,
        placer=dispatcher,
        handover=handover,
        reconciler=LoopService(
            "reconciler",
            Reconciler(
                sessions,
                live,
                max_lost_runs=settings.max_lost_runs,
                lost_run_backoff_s=settings.lost_run_backoff_s,
            ).run_once,
            1.0,
        ),
        failover=LoopService(
            "failover", Failover(sessions, live, lost_after_s=lost_after_s).run_once, 2.0
        ),
        migrations=LoopService(
            "migrations",
            fenced(election, MIGRATIONS, migrate_round),
            5.0,
            wakeup=wake[MIGRATIONS],
        ),
        live=live,
        cluster=LoopService(
            "cluster", lambda: _cluster_round(election, shares, member, wake, live), HEARTBEAT_S
        ),
        election=election,
        shares=shares,
        member=member,
        wakeups=Wakeups(engine, wake[PLACEMENT]) if postgres else None,
        engine=engine,
    )
