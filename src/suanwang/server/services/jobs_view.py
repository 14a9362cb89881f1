"""The placer's view of the pending and active jobs, kept between rounds (issue 14).

A placing round needs the oldest pending jobs and every active job (the capacity state). Read
from the database each round they cost as much as a short round decides; this view keeps them
in memory and reads only what changed since its last round: every change of a job's state or
of the columns placement reads is a ``job_events`` row (:func:`~suanwang.server.models.jobs.
transition`, :class:`~suanwang.server.models.jobs.Transitions`, the submit paths, the
reconciler's ``run stopped``), so :meth:`JobsView.refresh` reads the events above its
watermark and re-reads those jobs' rows. Two changes write no event and are taken otherwise:

* a hand-over sets a scheduled job's ``executor_ref`` (every worker hands over): the scheduled
  jobs with a reference are read each round (few: they run soon);
* a pending job's waiting reason is written by the placer itself: :meth:`JobsView.waiting`
  records it once the round has committed.

Rebuilt from scratch (:meth:`JobsView.invalidate`) on the first round, when the placer's term
changes (another placer may have written in between), after a round that failed (its writes
rolled back) and every ``resync_s`` as a safety net. On PostgreSQL events commit out of id
order: an id skipped by a refresh is looked for again (``gaps``) for ``gap_s``, longer than any
write transaction runs; after a rebuild the events of the last ``gap_s`` are read again once.
On SQLite every write transaction holds the database's write lock from its start
(``BEGIN IMMEDIATE``): ids commit in order and a round sees every change before it.

Jobs are listed in the order of their submission (``submitted_at``, then id), pending and
active alike, as the database would list them with that order.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanwang.core.lifecycle import JobState
from suanwang.server.database.models import JobEvent, JobRow
from suanwang.server.models.jobs import ACTIVE_STATES
from suanwang.server.settings import LOST_RUN_BACKOFF_CAP_S

#: job ids per query
_CHUNK = 2000
_PENDING = frozenset({JobState.PENDING.value, JobState.MIGRATING.value})
_ACTIVE = frozenset(s.value for s in ACTIVE_STATES)
_SCHEDULED = JobState.SCHEDULED.value
_RUNNING = JobState.RUNNING.value

#: a pending job's columns a round reads (:class:`Pending`)
PENDING_COLUMNS = (
    JobRow.id,
    JobRow.tenant_id,
    JobRow.name,
    JobRow.state,
    JobRow.submitted_at,
    JobRow.resume_from,
    JobRow.decision["waiting"].as_string(),
    JobRow.lost_runs,
)
#: an active job's columns the capacity state reads (:data:`ActiveRow`)
ACTIVE_COLUMNS = (
    JobRow.id,
    JobRow.tenant_id,
    JobRow.state,
    JobRow.center_id,
    JobRow.pool_model,
    JobRow.executor_ref,
    JobRow.start_at,
    JobRow.started_at,
    JobRow.attempt,
)
_COLUMNS = PENDING_COLUMNS + ACTIVE_COLUMNS[3:]

#: an active job as the capacity state reads it: id, tenant id, state, center, pool model,
#: executor reference, planned start, started at, attempt
ActiveRow = tuple[
    str, str, str, str | None, str | None, str | None, datetime | None, datetime | None, int
]


class Pending(NamedTuple):
    """A pending job as a round reads it (plain columns: a round reads thousands), with the
    waiting reason its stored decision gives (None: none), the centers it lost runs at
    while they answered, which placement avoids (:func:`avoided`; None: none), how many runs
    it lost so and when it lost the last (:func:`last_loss`: what its back-off counts from)."""

    id: str
    tenant_id: str
    name: str
    state: str
    submitted_at: datetime
    resume_from: str | None
    waiting: str | None
    avoid: tuple[str, ...] | None = None
    lost: int = 0
    lost_at: datetime | None = None

    @classmethod
    def of(cls, row: Any) -> Pending:
        """From the columns :data:`PENDING_COLUMNS` reads (its losses as :func:`avoided` and
        :func:`last_loss`)."""
        id_, tenant, name, state, submitted, resume, waiting, lost = row
        return cls(id_, tenant, name, state, submitted, resume, waiting, avoided(lost),
                   *last_loss(lost))  # fmt: skip


def avoided(lost_runs: list[dict[str, Any]] | None) -> tuple[str, ...] | None:
    """The centers a job's recorded losses (``jobs.lost_runs``) keep it away from, sorted
    (None: none; a tuple of strings, so the view's tuples stay untracked by the collector)."""
    if not lost_runs:
        return None
    return tuple(sorted({str(lost.get("center", "")) for lost in lost_runs}))


def last_loss(lost_runs: list[dict[str, Any]] | None) -> tuple[int, datetime | None]:
    """How many runs a job lost while their centers answered and when the last was lost (its
    ``at``; None: no loss, or one recorded before losses had times or with a time that does
    not parse, which backs off nothing)."""
    if not lost_runs:
        return 0, None
    at = lost_runs[-1].get("at")
    try:
        when = datetime.fromisoformat(at) if isinstance(at, str) else None
    except ValueError:
        when = None
    return len(lost_runs), when if when is not None and when.tzinfo is not None else None


def backoff_until(lost: int, lost_at: datetime | None, base_s: float) -> datetime | None:
    """Until when a job that lost ``lost`` runs (the last at ``lost_at``) stays away from the
    centers it lost them at: ``base_s`` seconds after the last loss, doubled for each further
    loss, at most :data:`~suanwang.server.settings.LOST_RUN_BACKOFF_CAP_S` (or ``base_s`` if
    longer). None: no back-off (no loss with a time, or ``base_s`` 0)."""
    if lost < 1 or lost_at is None or base_s <= 0:
        return None
    wait = min(base_s * 2.0 ** min(lost - 1, 32), max(LOST_RUN_BACKOFF_CAP_S, base_s))
    return lost_at + timedelta(seconds=wait)


_PendingTuple = tuple[
    str, str, str, str, datetime, str | None, str | None, tuple[str, ...] | None, int,
    datetime | None,
]  # fmt: skip


@dataclass
class JobsView:
    """The pending and active jobs between rounds (see the module docstring)."""

    #: the platform's clock (the events' ``at``: after a rebuild, those of the last ``gap_s``
    #: are read again)
    clock: Callable[[], datetime]
    #: seconds between rebuilds from scratch (a safety net: nothing should need them)
    resync_s: float = 600.0
    #: seconds an event id skipped by a refresh is looked for again (PostgreSQL)
    gap_s: float = 60.0
    timer: Callable[[], float] = time.monotonic
    #: each pending job's :class:`Pending` as a plain tuple: a tuple of strings and instants
    #: is one the garbage collector stops tracking (a named tuple is not), so the 100,000 a
    #: view may keep are not walked by every full collection (0.1 s each at that size)
    pending: dict[str, _PendingTuple] = field(default_factory=dict, init=False)
    active: dict[str, tuple[tuple[datetime, str], ActiveRow]] = field(
        default_factory=dict, init=False
    )
    #: the highest event id read (None: to be rebuilt)
    watermark: int | None = field(default=None, init=False)
    #: event ids below the watermark not seen yet -> when first missed (timer)
    gaps: dict[int, float] = field(default_factory=dict, init=False)
    #: rebuilds so far (tests and logs)
    rebuilds: int = field(default=0, init=False)
    _term: object = field(default=None, init=False)
    _built_at: float = field(default=0.0, init=False)
    _order: list[tuple[datetime, str]] = field(default_factory=list, init=False)
    #: the ids in ``_order`` (a dict of strings: the collector does not track it, as it would
    #: a set)
    _in_order: dict[str, None] = field(default_factory=dict, init=False)
    _active_list: list[ActiveRow] | None = field(default=None, init=False)
    _handed: set[str] = field(default_factory=set, init=False)  # scheduled with a reference
    _starts: dict[str, datetime | None] = field(default_factory=dict, init=False)

    def invalidate(self) -> None:
        """Rebuild from scratch at the next refresh."""
        self.watermark = None

    def refresh(self, session: Session, term: object = None) -> None:
        """Bring the view up to what ``session`` sees: rebuilt when invalidated, when
        ``term`` (the placer's) is not the last one's, or every ``resync_s``; else only
        the jobs with events since the last refresh, and the hand-overs."""
        if (
            self.watermark is None
            or term != self._term
            or self.timer() - self._built_at >= self.resync_s
        ):
            self._rebuild(session)
            self._term = term
        else:
            self._changes(session)
        self._hand_overs(session)

    def oldest(self, limit: int) -> list[Pending]:
        """The ``limit`` oldest pending jobs (submission order)."""
        out: list[Pending] = []
        dead = 0
        for key in self._order:  # sorted (:meth:`_put`)
            if len(out) >= limit:
                break
            row = self.pending.get(key[1])
            if row is None:
                dead += 1
            else:
                out.append(Pending._make(row))
        if dead > max(limit, 1000):  # jobs that left: compact
            self._order = [k for k in self._order if k[1] in self.pending]
            self._in_order = dict.fromkeys(k[1] for k in self._order)
        return out

    def active_rows(self) -> list[ActiveRow]:
        """Every active job placed on a center, in submission order."""
        if self._active_list is None:
            self._active_list = [row for _, row in sorted(self.active.values())]
        return self._active_list

    def run_starts(self, session: Session) -> dict[str, datetime]:
        """When each running job of a later attempt started its current run (the last event
        into ``running``), kept until the job changes."""
        ids = [r[0] for _, r in self.active.values() if r[8] and r[2] == _RUNNING]
        missing = [i for i in ids if i not in self._starts]
        for k in range(0, len(missing), _CHUNK):
            part = missing[k : k + _CHUNK]
            stmt = (
                select(JobEvent.job_id, func.max(JobEvent.at))
                .where(JobEvent.job_id.in_(part), JobEvent.to_state == _RUNNING)
                .group_by(JobEvent.job_id)
            )
            found = dict(session.execute(stmt).all())
            for i in part:
                self._starts[i] = found.get(i)
        return {i: at for i in ids if (at := self._starts[i]) is not None}

    def waiting(self, reasons: Iterable[tuple[str, str]]) -> None:
        """The waiting reasons a committed round wrote (job id, reason)."""
        for job_id, reason in reasons:
            row = self.pending.get(job_id)
            if row is not None:
                self.pending[job_id] = (*row[:6], reason, *row[7:])

    # ------------------------------------------------------------------ reading
    def _rebuild(self, session: Session) -> None:
        self.rebuilds += 1
        self.pending, self.active = {}, {}
        self._order, self._in_order, self._active_list = [], {}, None
        self._handed, self._starts, self.gaps = set(), {}, {}
        top = session.scalar(select(func.max(JobEvent.id))) or 0
        states = sorted(_PENDING | _ACTIVE)
        for row in session.execute(select(*_COLUMNS).where(JobRow.state.in_(states))):
            self._put(row)
        self.watermark = top
        self._built_at = self.timer()
        if session.get_bind().dialect.name == "postgresql":  # events still committing then
            since = self.clock() - timedelta(seconds=self.gap_s)
            low = session.scalar(select(func.max(JobEvent.id)).where(JobEvent.at < since))
            seen = set(session.scalars(select(JobEvent.id).where(JobEvent.id > (low or 0))))
            now = self.timer()
            self.gaps = {i: now for i in range((low or 0) + 1, top + 1) if i not in seen}

    def _changes(self, session: Session) -> None:
        assert self.watermark is not None
        stmt = select(JobEvent.id, JobEvent.job_id).where(JobEvent.id > self.watermark)
        found: list[tuple[int, str]] = [(i, j) for i, j in session.execute(stmt)]
        if self.gaps:
            ids = list(self.gaps)
            for k in range(0, len(ids), _CHUNK):
                stmt = select(JobEvent.id, JobEvent.job_id).where(
                    JobEvent.id.in_(ids[k : k + _CHUNK])
                )
                found += [(i, j) for i, j in session.execute(stmt)]
        now = self.timer()
        top = self.watermark
        for event_id, _ in found:
            self.gaps.pop(event_id, None)
        new = sorted(i for i, _ in found if i > top)
        for i in new:
            if i > top + 1:
                self.gaps.update(dict.fromkeys(range(top + 1, i), now))
            top = i
        self.watermark = top
        self.gaps = {i: t for i, t in self.gaps.items() if now - t < self.gap_s}
        self._reread(session, {job_id for _, job_id in found})

    def _reread(self, session: Session, ids: set[str]) -> None:
        """Read the rows of ``ids`` again (their events say they changed)."""
        todo = list(ids)
        for job_id in todo:
            self._drop(job_id)
        for k in range(0, len(todo), _CHUNK):
            stmt = select(*_COLUMNS).where(JobRow.id.in_(todo[k : k + _CHUNK]))
            for row in session.execute(stmt):
                self._put(row)

    def _hand_overs(self, session: Session) -> None:
        """Scheduled jobs handed over since (a hand-over writes no event)."""
        stmt = select(JobRow.id, JobRow.executor_ref).where(
            JobRow.state == _SCHEDULED, JobRow.executor_ref.is_not(None)
        )
        refs: dict[str, str | None] = {i: ref for i, ref in session.execute(stmt)}
        for job_id in self._handed - refs.keys():
            refs[job_id] = None  # (a reference goes with an event: a safety net)
        handed = set()
        for job_id, ref in refs.items():
            got = self.active.get(job_id)
            if got is None or got[1][2] != _SCHEDULED:
                continue
            key, r = got
            if r[5] != ref:
                self.active[job_id] = (key, (r[0], r[1], r[2], r[3], r[4], ref, r[6], r[7], r[8]))
                self._active_list = None
            if ref is not None:
                handed.add(job_id)
        self._handed = handed

    def _drop(self, job_id: str) -> None:
        self.pending.pop(job_id, None)
        if self.active.pop(job_id, None) is not None:
            self._active_list = None
        self._handed.discard(job_id)
        self._starts.pop(job_id, None)

    def _put(self, row: Any) -> None:
        (job_id, tenant, name, state, submitted, resume, waiting, lost,
         center, model, ref, start_at, started_at, attempt) = row  # fmt: skip
        key = (submitted, job_id)
        if state in _PENDING and ref is None:
            self.pending[job_id] = (job_id, tenant, name, state, submitted, resume, waiting,
                                    avoided(lost), *last_loss(lost))  # fmt: skip
            if job_id not in self._in_order:
                self._in_order[job_id] = None
                if self._order and key < self._order[-1]:
                    bisect.insort(self._order, key)
                else:
                    self._order.append(key)
        elif state in _ACTIVE and center is not None:
            active = (job_id, tenant, state, center, model, ref, start_at, started_at, attempt)
            self.active[job_id] = (key, active)
            self._active_list = None
            if state == _SCHEDULED and ref is not None:
                self._handed.add(job_id)
