"""Group commit of job submissions: many concurrent ``POST /v1/jobs`` share one transaction.

Each submission waits for its own commit, so a 201 still means "stored"; but instead of one
worker thread, one connection, two statements and one commit per request, the requests that
arrive while a batch is being written are written together by the next one: one thread hop,
one multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, one events insert, one commit
(:func:`suanwang.server.models.jobs.submit_jobs`). On PostgreSQL a batch that stored a new job
also sends ``NOTIFY`` in its transaction, which wakes the dispatchers when it commits
(:func:`suanwang.server.cluster.notify_pending`). Batches form by themselves: at low load a
batch is one request (no added delay); under load they grow to ``max_batch``.

At most ``flushers`` batches are written at once per event loop, so the submit path holds at
most that many pooled connections and threads.

Isolation between requests: a batch that the database refuses is retried one request at a
time, so one bad request fails alone. Submissions that need a billing hold (issue 5) are
stored one by one, each in its own transaction, since a hold that does not fit must leave
nothing stored for that request only.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from suanwang.billing.ledger import InsufficientBalance
from suanwang.core.network import Network
from suanwang.server.cluster import notify_pending
from suanwang.server.database.models import JobRow
from suanwang.server.models import jobs as models
from suanwang.server.models.billing.config import admission_config, needs_hold
from suanwang.server.models.billing.holds import admit
from suanwang.server.models.jobs import IdempotencyConflict, SubmitRequest
from suanwang.server.models.limits import ClassNotAllowed, OverBudget, check_limits, has_limits

log = logging.getLogger("suanwang.submit")

#: Largest number of submissions written in one transaction.
MAX_BATCH = 128
#: Batches written at once per event loop.
FLUSHERS = 2

Outcome = tuple[JobRow, bool] | BaseException


@dataclass(slots=True)
class _LoopState:
    pending: deque[tuple[SubmitRequest, asyncio.Future[tuple[JobRow, bool]]]] = field(
        default_factory=deque
    )
    active: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Submitter:
    """Stores submissions in batches (see the module docstring), stamped by ``clock`` (the
    app's: a batch is submitted when it is written)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        net: Network,
        *,
        clock: Callable[[], datetime],
        max_batch: int = MAX_BATCH,
        flushers: int = FLUSHERS,
    ) -> None:
        if max_batch < 1 or flushers < 1:
            raise ValueError(f"max_batch and flushers must be >= 1, not {max_batch}, {flushers}")
        self.sessions = sessions
        self.net = net
        self.clock = clock
        self.max_batch = max_batch
        self.flushers = flushers
        self.batches = 0
        self.stored = 0
        # test clients may run the app on several event loops: one queue per loop
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )

    async def submit(self, request: SubmitRequest) -> tuple[JobRow, bool]:
        """Store ``request``; ``(job, created)`` once committed. Raises
        :class:`IdempotencyConflict` or :class:`InsufficientBalance` (nothing stored)."""
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _LoopState()
        future: asyncio.Future[tuple[JobRow, bool]] = loop.create_future()
        state.pending.append((request, future))
        if state.active < self.flushers:
            state.active += 1
            task = loop.create_task(self._drain(state))
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)
        # a request cancelled meanwhile (client gone) cancels only its wait: the batch it is in
        # is written all the same, and a retry with its key finds the job
        return await future

    async def _drain(self, state: _LoopState) -> None:
        try:
            while state.pending:
                n = min(len(state.pending), self.max_batch)
                batch = [state.pending.popleft() for _ in range(n)]
                try:
                    outcomes = await run_in_threadpool(self.store, [r for r, _ in batch])
                except BaseException as exc:  # the thread could not run at all
                    outcomes = [exc] * len(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            state.active -= 1

    def store(self, requests: list[SubmitRequest]) -> list[Outcome]:
        """Write ``requests`` (in a worker thread): one answer per request, in order."""
        out: list[Outcome | None] = [None] * len(requests)
        with self.sessions() as session:
            config = admission_config(session=session)
            limited = has_limits(session, {r.tenant.id for r in requests})
            plain = [
                i
                for i, r in enumerate(requests)
                if not needs_hold(r.tenant, config) and r.tenant.id not in limited
            ]
            if plain:
                try:
                    answers = models.submit_jobs(
                        session=session, items=[requests[i] for i in plain], now=self.clock()
                    )
                    if any(not isinstance(a, BaseException) and a[1] for a in answers):
                        notify_pending(session)  # the dispatcher wakes at the commit
                    session.commit()
                except Exception:
                    session.rollback()
                    log.warning("a batch of %d submissions failed; storing them one by one",
                                len(plain), exc_info=True)  # fmt: skip
                else:
                    for i, answer in zip(plain, answers, strict=True):
                        out[i] = answer
                    self.batches += 1
                    self.stored += sum(1 for a in answers if not isinstance(a, BaseException))
        for i, request in enumerate(requests):
            if out[i] is None:
                try:
                    out[i] = self.store_one(request)
                except Exception as exc:
                    out[i] = exc
        return [o for o in out if o is not None]

    def store_one(self, request: SubmitRequest) -> tuple[JobRow, bool]:
        """Store one submission, check its tenant's quota limits (class, budgets: issue 14) and
        reserve its estimated charge (billing, issue 5), in one transaction. Raises
        :class:`InsufficientBalance`, :class:`ClassNotAllowed` or :class:`OverBudget` with
        nothing stored."""
        now = self.clock()
        with self.sessions() as session:
            job, created = models.submit_job(
                session=session,
                tenant=request.tenant,
                spec=request.spec,
                now=now,
                idempotency_key=request.idempotency_key,
            )
            if created:
                try:
                    check_limits(
                        session=session, tenant=request.tenant, job=job, net=self.net, now=now
                    )
                    admit(session=session, tenant=request.tenant, job=job, net=self.net, now=now)
                except (InsufficientBalance, ClassNotAllowed, OverBudget):
                    session.rollback()
                    raise
                notify_pending(session)
            session.commit()
            return job, created


__all__ = ["IdempotencyConflict", "Submitter"]
