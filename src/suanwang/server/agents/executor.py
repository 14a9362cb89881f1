"""The executor of an agent center: the :class:`~suanwang.executors.base.Executor` protocol over
the database (docs/centers.md, "Agents").

The control plane never calls an agent: the agent syncs (:mod:`suanwang.server.agents.sync`).
So :class:`AgentExecutor` records what the services ask (a run to start, to cancel, to
checkpoint) in ``agent_runs`` for the agent to pick up at its next sync, and answers from what
the agent last reported: states, exit codes, usage and the tail of each run's log, and the
center's capacity. An agent that has not synced for a few of its sync periods makes every call
that needs it fail (:class:`~suanwang.executors.base.ExecutorError`, "agent of center X silent
for N s"): the services treat its center as unreachable, and fail its jobs over after
``--lost-after``, which must be longer than the agent's lease plus a margin (the agent stops
its runs itself when its lease runs out without contact: ``stop_grace_s``).

Every request is idempotent, as the protocol demands: a run's reference is made of its job id,
attempt and the checkpoint it resumes from (``agent:<center>/<job>[.<attempt>][.resume-<hash>]``),
and the record is written once.

Transactions. The services call executors inside their own transactions. On PostgreSQL this
executor writes in transactions of its own. On SQLite, where a writing transaction holds the
whole database, it cannot (the caller's transaction holds it): it reads through connections
that take no lock (WAL), and its writes are queued and written by a thread of its own as soon
as the caller commits, in order (a process killed in that instant loses the queued writes: a
run handed over then is reported ``lost`` and placed again after ``stop_grace_s``; nothing
runs twice). :meth:`flush` waits for them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.lifecycle import JobState
from suanwang.executors.base import (
    CENTER,
    Capacity,
    ExecutorError,
    ExecutorStatus,
    RunUsage,
    Submission,
)
from suanwang.executors.local.rundir import base_run
from suanwang.server.agents.sync import CANCEL, CHECKPOINT, ENDED, RUN
from suanwang.server.agents.tokens import agent_row
from suanwang.server.database.models import AgentRun, CenterAgent

log = logging.getLogger("suanwang.agents")

#: An agent is silent once it has not synced for this many of its sync periods ...
SILENT_PERIODS = 3
#: ... and never sooner than this many seconds (as a member's heartbeat goes stale): an
#: agent's round is its executor's poll and its sync, and on a busy host or with a slow
#: slurmrestd that takes seconds. At 3 s, agents of 0.5 s on a loaded machine were found
#: silent every few rounds, their centers unreachable and jobs sent away (bench_e2e.py).
MIN_SILENT_S = 10.0
#: Seconds the control plane adds to an agent's lease before giving its runs up (default).
DEFAULT_GRACE_S = 10.0

_Write = Callable[[Session], None]


def agent_ref(center_id: str, sub: Submission, resume_from: str | None = None) -> str:
    """The reference of a run handed to the agent of ``center_id``."""
    ref = f"agent:{center_id}/{base_run(sub)}"
    if resume_from is not None:
        ref += ".resume-" + hashlib.sha256(resume_from.encode()).hexdigest()[:12]
    return ref


class AgentExecutor:
    """Runs one center's jobs through its agent. See the module docstring."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        center_id: str,
        *,
        lease_s: float = 30.0,
        grace_s: float = DEFAULT_GRACE_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        declared: tuple[int | None, int | None] = (None, None),
    ) -> None:
        if lease_s <= 0 or grace_s < 0:
            raise ValueError(f"lease_s must be > 0 and grace_s >= 0 (got {lease_s}, {grace_s})")
        self.name = f"agent:{center_id}"
        self.center_id = center_id
        self.lease_s = lease_s
        self.grace_s = grace_s
        #: a run reported lost may still go on until the agent's lease runs out
        self.stop_grace_s = lease_s + grace_s
        self.clock = clock
        #: the CPU and card slots of the platform file (None: not declared), the capacity
        #: until the agent has reported its own
        self.declared = declared
        self._sessions = sessions
        engine = sessions.kw["bind"]
        self._queued = engine.dialect.name == "sqlite"
        self._reads = sessions
        if self._queued and engine.url.database not in (None, "", ":memory:"):
            # plain pysqlite transactions: a read takes no lock (the platform's engine begins
            # every transaction IMMEDIATE, which waits for the caller's)
            reader = create_engine(engine.url, connect_args={"check_same_thread": False})
            self._reads = sessionmaker(reader, expire_on_commit=False)
        self._queue: list[tuple[_Write, str | None]] = []
        self._pending: dict[str, AgentRun] = {}  # handed over, not yet written (SQLite)
        self._busy = 0
        self._cond = threading.Condition()
        self._writer: threading.Thread | None = None

    # ------------------------------------------------------------------ set-up

    def declare(self) -> None:
        """Record in the database that this center is served through an agent, with its
        lease (the sync route answers it; an agent of a center nobody declared is refused).
        Run once, outside any other transaction (the services' start)."""
        with self._sessions.begin() as session:
            agent_row(session, self.center_id, self.clock()).lease_s = self.lease_s

    # ------------------------------------------------------------------ protocol

    def submit(self, sub: Submission) -> str:
        return self._hand_over(sub, None)

    def resume(self, sub: Submission, checkpoint_dir: str) -> str:
        return self._hand_over(sub, checkpoint_dir)

    def poll(self, refs: Sequence[str]) -> dict[str, ExecutorStatus]:
        if not refs:
            return {}
        self._agent()
        rows = self._rows(refs)
        out: dict[str, ExecutorStatus] = {}
        for ref in refs:
            row = rows.get(ref)
            if row is None:
                why = f"{self.name}: no run {ref}"
                out[ref] = ExecutorStatus(ref, JobState.LOST, reason=why, cause=CENTER)
            elif row.state is None:
                why = f"handed to the agent of center {self.center_id}, not started yet"
                out[ref] = ExecutorStatus(ref, JobState.SCHEDULED, reason=why)
            else:
                out[ref] = ExecutorStatus(
                    ref,
                    JobState(row.state),
                    row.exit_code,
                    row.started_at,
                    row.ended_at,
                    row.reason,
                    row.cause,  # None: the agent did not say (older than causes)
                )
        return out

    def cancel(self, ref: str) -> None:
        self._write(lambda s: self._ask(s, ref, CANCEL, (RUN, CHECKPOINT)))

    def checkpoint(self, ref: str) -> str | None:
        row = self._rows([ref]).get(ref)
        if row is None:
            raise ExecutorError(self.name, f"cannot checkpoint {ref}: no such run")
        where = row.submission.get("checkpoint_dir")
        if row.state == JobState.MIGRATING.value:
            return str(where) if where else None
        if row.state != JobState.RUNNING.value or row.ask == CANCEL:
            raise ExecutorError(
                self.name, f"cannot checkpoint {ref}: it is {row.state or 'not started yet'}"
            )
        if not where:
            return None  # no directory the platform reads: it cannot move
        self._write(lambda s: self._ask(s, ref, CHECKPOINT, (RUN,)))
        return str(where)

    def logs(self, ref: str, tail_bytes: int | None = None) -> str:
        row = self._rows([ref]).get(ref)
        text = row.log_tail if row is not None else ""
        if tail_bytes is None:
            return text
        data = text.encode("utf-8", errors="replace")
        return data[-tail_bytes:].decode("utf-8", errors="ignore") if tail_bytes else ""

    def capacity(self) -> Capacity:
        """What the agent reported of its center at its last sync; raises
        :class:`ExecutorError` when the agent is silent or never synced (failover probes
        centers with this call)."""
        return self._capacity(self._agent().capacity)

    def slots(self) -> Capacity:
        """The center's slots to plan with (read once, at start): what the agent last
        reported, silent since or not (slots change rarely), else those of the platform file
        (:attr:`declared`); raises :class:`ExecutorError` when there is neither."""
        try:
            with self._reads() as session:
                agent = session.get(CenterAgent, self.center_id)
        except SQLAlchemyError as exc:
            raise ExecutorError(self.name, f"cannot read the agent's record: {exc}") from None
        cap = agent.capacity if agent is not None else None
        cpus, cards = self.declared
        if not cap and cpus is not None and cards is not None:
            return Capacity(cpus, cards, 0, 0)
        return self._capacity(cap)

    def _capacity(self, cap: dict[str, Any] | None) -> Capacity:
        if not cap:
            raise ExecutorError(self.name, f"the agent of center {self.center_id} sent no capacity")
        return Capacity(
            int(cap["slots_cpus"]),
            int(cap["slots_cards"]),
            int(cap["used_cpus"]),
            int(cap["used_cards"]),
            cards_by_model={str(k): int(v) for k, v in (cap.get("cards_by_model") or {}).items()},
        )

    def recorded_exit(self, ref: str) -> int | None:
        """The exit code the agent reported when the run ended (``None``: not ended, or lost:
        a run the agent gave up has no end of its own)."""
        row = self._rows([ref]).get(ref)
        if row is None or row.state is None or row.state == JobState.LOST.value:
            return None
        return row.exit_code if JobState(row.state) in ENDED else None

    def reported_usage(self, ref: str) -> RunUsage:
        row = self._rows([ref]).get(ref)
        if row is None or not row.usage:
            return RunUsage()
        return RunUsage(int(row.usage.get("tokens", 0)), tuple(row.usage.get("problems", ())))

    # ------------------------------------------------------------------ the database

    def silent_s(self, agent: CenterAgent, now: datetime) -> float | None:
        """Seconds the agent has been silent past its allowance (None: it is not silent)."""
        if agent.last_seen is None:
            return None
        quiet = (now - agent.last_seen).total_seconds()
        allowed = max(MIN_SILENT_S, SILENT_PERIODS * (agent.every_s or 1.0))
        return quiet if quiet > allowed else None

    def _agent(self) -> CenterAgent:
        """The center's agent record; raises :class:`ExecutorError` when the agent is silent
        or never synced."""
        try:
            with self._reads() as session:
                agent = session.get(CenterAgent, self.center_id)
        except SQLAlchemyError as exc:
            raise ExecutorError(self.name, f"cannot read the agent's record: {exc}") from None
        if agent is None or agent.last_seen is None:
            raise ExecutorError(
                self.name,
                f"agent of center {self.center_id} has never synced: the center is unreachable "
                "until it does (start it: suanwang agent --center ...)",
            )
        quiet = self.silent_s(agent, self.clock())
        if quiet is not None:
            raise ExecutorError(
                self.name,
                f"agent of center {self.center_id} silent for {quiet:.0f} s: the center is "
                "unreachable",
            )
        return agent

    def _rows(self, refs: Sequence[str]) -> dict[str, AgentRun]:
        try:
            with self._reads() as session:
                rows = {
                    r.ref: r
                    for r in session.scalars(
                        select(AgentRun).where(
                            AgentRun.center_id == self.center_id, AgentRun.ref.in_(list(refs))
                        )
                    )
                }
        except SQLAlchemyError as exc:
            raise ExecutorError(self.name, f"cannot read the agent's runs: {exc}") from None
        with self._cond:
            for ref in refs:
                if ref not in rows and ref in self._pending:
                    rows[ref] = self._pending[ref]
        return rows

    def _hand_over(self, sub: Submission, resume_from: str | None) -> str:
        ref = agent_ref(self.center_id, sub, resume_from)
        # handed over before (a worker killed after this record but before its own
        # transaction recorded the run): the agent may have run it already, so it is that
        # run, silent agent or not. Refused, the job would be placed again elsewhere and run
        # twice (bench_e2e.py --chaos at 50 jobs/s: 13 jobs of 15,000)
        if self._rows([ref]):
            return ref
        # a silent agent gets no new runs: the job is placed elsewhere, and the dispatcher
        # marks the center unreachable ("unreachable" in the error), so it is not chosen again
        self._agent()
        now = self.clock()
        run = dict(
            ref=ref, center_id=self.center_id, job_id=sub.job_id, attempt=sub.attempt,
            submission=dataclasses.asdict(sub), ask=RUN, resume_from=resume_from, reason="",
            log_tail="", done=False, created_at=now, updated_at=now,
        )  # fmt: skip

        def insert(session: Session) -> None:
            if session.scalar(select(AgentRun.id).where(AgentRun.ref == ref)) is not None:
                return  # handed over before (a retry after a crash): once only
            try:
                with session.begin_nested():
                    session.add(AgentRun(**run))
            except IntegrityError:
                pass  # another process handed it over at the same moment

        if self._queued:
            with self._cond:
                self._pending.setdefault(ref, AgentRun(**run))
        self._write(insert, ref)
        return ref

    @staticmethod
    def _ask(session: Session, ref: str, ask: str, over: tuple[str, ...]) -> None:
        session.execute(
            update(AgentRun)
            .where(AgentRun.ref == ref, AgentRun.ask.in_(over), AgentRun.done.is_(False))
            .values(ask=ask)
        )

    def _write(self, op: _Write, ref: str | None = None) -> None:
        if not self._queued:
            try:
                with self._sessions.begin() as session:
                    op(session)
            except SQLAlchemyError as exc:
                raise ExecutorError(self.name, f"cannot record the request: {exc}") from None
            return
        with self._cond:
            self._queue.append((op, ref))
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._write_queued, name=f"{self.name} writes", daemon=True
                )
                self._writer.start()
            self._cond.notify_all()

    def _write_queued(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    if not self._cond.wait(timeout=30.0) and not self._queue:
                        self._writer = None
                        return
                ops, self._queue = self._queue, []
                self._busy += 1
            try:
                with self._sessions.begin() as session:
                    for op, _ in ops:
                        op(session)
            except SQLAlchemyError as exc:
                log.warning("%s: could not write (retrying): %s", self.name, exc)
                with self._cond:
                    self._queue[:0] = ops
                    self._busy -= 1
                    self._cond.wait(timeout=0.5)
                continue
            with self._cond:
                self._busy -= 1
                for _, ref in ops:
                    if ref is not None:
                        self._pending.pop(ref, None)
                self._cond.notify_all()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued write is written (SQLite); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout_s)
