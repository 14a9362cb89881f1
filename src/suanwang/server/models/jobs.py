"""Jobs: submit (idempotent), read (tenant-scoped), move through the lifecycle, cancel.

Visibility: a consumer sees its own jobs, a provider its own jobs and the jobs placed on the
centers it owns (``center_owners``), an operator every job. Only a job's own tenant and
operators may cancel it (:func:`may_cancel`): a provider sees but does not stop its customers'
jobs.

Every state change goes through :func:`transition`, which checks
:func:`suanwang.core.lifecycle.check_transition` against the row's *current* state (re-read
under a row lock) and writes a ``job_events`` row. These functions flush but never commit.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, insert, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, make_transient_to_detached

from suanwang.core.jobs import ANY_ACCELERATOR
from suanwang.core.lifecycle import JobState, check_transition
from suanwang.server.database.models import (
    CenterOwner,
    JobEvent,
    JobRow,
    Tenant,
    TenantRole,
    new_id,
    utcnow,
)
from suanwang.server.schemas import JobSpec, cards_of

MAX_PAGE = 500
#: Columns a caller may set together with a transition (placement, executor handle, result).
TRANSITION_FIELDS = frozenset(
    {
        "center_id",
        "pool_model",
        "decision",
        "start_at",
        "executor_ref",
        "exit_code",
        "logs",
        "attempt",
        "resume_from",
    }
)
ACTIVE_STATES = (JobState.SCHEDULED, JobState.RUNNING)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BAD_CURSOR = "invalid cursor: pass back the next_cursor of a previous page"


class IdempotencyConflict(ValueError):
    """An ``Idempotency-Key`` was reused with a different job spec."""


class InvalidCursor(ValueError):
    """A paging cursor that this server did not produce."""


# --------------------------------------------------------------------------- visibility


def _visible_to(tenant: Tenant) -> ColumnElement[bool]:
    role = tenant.tenant_role
    if role is TenantRole.OPERATOR:
        return true()
    if role is TenantRole.CONSUMER:
        return JobRow.tenant_id == tenant.id
    owned = select(CenterOwner.center_id).where(CenterOwner.tenant_id == tenant.id)
    return or_(JobRow.tenant_id == tenant.id, JobRow.center_id.in_(owned))


def may_cancel(tenant: Tenant, job: JobRow) -> bool:
    """Whether ``tenant`` may cancel ``job``: its own tenant or an operator (not a provider)."""
    return tenant.tenant_role is TenantRole.OPERATOR or job.tenant_id == tenant.id


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text  # canonical lower-case form only, as stored
    except ValueError:
        return False


# --------------------------------------------------------------------------- submit / read


def submit_job(
    *,
    session: Session,
    tenant: Tenant,
    spec: JobSpec,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> tuple[JobRow, bool]:
    """Store a new pending job, submitted ``now`` (the caller's clock; None: the wall clock,
    a last resort for callers that have no clock yet); returns ``(job, created)``.

    With an ``idempotency_key`` a retry returns the job the first request created
    (``created`` False) and never makes a second one, even when both requests race: the unique
    constraint ``(tenant_id, idempotency_key)`` decides (``INSERT ... ON CONFLICT DO NOTHING``,
    no savepoint) and the loser reads the winner's row. Reusing a key with a different spec
    raises :class:`IdempotencyConflict`. Two statements (job, event) in the common case.
    """
    items = [SubmitRequest(tenant, spec, idempotency_key)]
    (answer,) = submit_jobs(session=session, items=items, now=utcnow() if now is None else now)
    if isinstance(answer, IdempotencyConflict):
        raise answer
    return answer


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    """One job to store: who submits it, its spec and its ``Idempotency-Key`` (or None)."""

    tenant: Tenant
    spec: JobSpec
    idempotency_key: str | None = None


def submit_jobs(
    *, session: Session, items: list[SubmitRequest], now: datetime
) -> list[tuple[JobRow, bool] | IdempotencyConflict]:
    """Store many new pending jobs in one statement (and their events in one more), all
    submitted ``now``: the batched form of :func:`submit_job` with the same answer per item,
    in order.

    Items sharing a tenant and key are one job: the first is stored, the others are its
    replays (or :class:`IdempotencyConflict` for a different spec). Flushes, never commits;
    on a database error nothing of the batch is kept (the caller rolls back).
    """
    datas = [it.spec.model_dump(mode="json") for it in items]
    first: dict[tuple[str, str], int] = {}  # (tenant, key) -> the item that stores it
    values: dict[int, dict[str, Any]] = {}  # item -> its row, for the items that insert
    for i, it in enumerate(items):
        if it.idempotency_key is not None:
            k = (it.tenant.id, it.idempotency_key)
            if k in first:
                continue
            first[k] = i
        values[i] = {
            "id": new_id(),
            "tenant_id": it.tenant.id,
            "name": it.spec.name,
            "spec": datas[i],
            "state": JobState.PENDING.value,
            "idempotency_key": it.idempotency_key,
            "submitted_at": now,
            "updated_at": now,
        }
    stmt = _INSERT_JOB[session.get_bind().dialect.name]
    returned = session.execute(stmt, list(values.values())).all() if values else []
    stored: dict[str, JobRow] = {}
    for row in returned:
        job = JobRow(**row._asdict())  # the row as stored (server defaults included)
        make_transient_to_detached(job)
        session.add(job)
        stored[job.id] = job
    if stored:
        session.execute(
            _INSERT_EVENT,
            [
                {
                    "job_id": job.id,
                    "at": now,
                    "from_state": None,
                    "to_state": JobState.PENDING.value,
                    "detail": {"reason": "submitted", "by": job.tenant_id},
                }
                for job in stored.values()
            ],
        )
    out: list[tuple[JobRow, bool] | IdempotencyConflict] = []
    by_key: dict[tuple[str, str], JobRow] = {}
    for i, it in enumerate(items):
        mine = stored.get(values[i]["id"]) if i in values else None
        key = it.idempotency_key
        if mine is not None:
            if key is not None:
                by_key[(it.tenant.id, key)] = mine
            out.append((mine, True))
            continue
        if key is None:  # pragma: no cover - a NULL key never conflicts
            raise RuntimeError("a job without an Idempotency-Key was not stored")
        existing = by_key.get((it.tenant.id, key)) or _by_key(session, it.tenant, key)
        if existing is None:  # pragma: no cover - ON CONFLICT waited for the winner's commit
            raise RuntimeError("idempotency conflict without a stored job")
        by_key[(it.tenant.id, key)] = existing
        try:
            out.append((_replay(existing, datas[i]), False))
        except IdempotencyConflict as exc:
            out.append(exc)
    return out


#: The statements of the submit path, built (and so compiled) once per dialect.
_JOBS = cast(Table, JobRow.__table__)
_INSERT_JOB = {
    name: dialect_insert(_JOBS)
    .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
    .returning(*_JOBS.columns)
    for name, dialect_insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}
_INSERT_EVENT = insert(cast(Table, JobEvent.__table__))
_JOBS = cast(Table, JobRow.__table__)


def _by_key(session: Session, tenant: Tenant, key: str) -> JobRow | None:
    stmt = select(JobRow).where(JobRow.tenant_id == tenant.id, JobRow.idempotency_key == key)
    return session.scalar(stmt)


def _replay(job: JobRow, data: dict[str, Any]) -> JobRow:
    if job.spec != data:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used for a different job spec; "
            "use a new key for a new job"
        )
    return job


def get_job(*, session: Session, tenant: Tenant, job_id: str) -> JobRow | None:
    """The job if it exists and ``tenant`` may see it, else None (never says which)."""
    if not _is_uuid(job_id):
        return None
    return session.scalar(select(JobRow).where(JobRow.id == job_id, _visible_to(tenant)))


def list_jobs(
    *,
    session: Session,
    tenant: Tenant,
    state: JobState | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[JobRow], str | None]:
    """One page of visible jobs, newest first, and the cursor of the next page (or None).

    Paging is by ``(submitted_at, id)`` so that pages neither skip nor repeat rows while jobs
    are being added. Raises :class:`InvalidCursor`.
    """
    limit = max(1, min(limit, MAX_PAGE))
    stmt = select(JobRow).where(_visible_to(tenant))
    if state is not None:
        stmt = stmt.where(JobRow.state == state.value)
    if cursor is not None:
        at, job_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                JobRow.submitted_at < at,
                and_(JobRow.submitted_at == at, JobRow.id < job_id),
            )
        )
    stmt = stmt.order_by(JobRow.submitted_at.desc(), JobRow.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].submitted_at, rows[-1].id)


def encode_cursor(at: datetime, job_id: str) -> str:
    raw = json.dumps([at.astimezone(UTC).isoformat(), job_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_s, job_id = json.loads(raw)
        at = datetime.fromisoformat(at_s)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidCursor(_BAD_CURSOR) from None
    if at.tzinfo is None or not isinstance(job_id, str) or not _is_uuid(job_id):
        raise InvalidCursor(_BAD_CURSOR)
    return at, job_id


def list_events(*, session: Session, job: JobRow) -> list[JobEvent]:
    """Every transition of ``job``, oldest first."""
    stmt = select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id)
    return list(session.scalars(stmt))


# --------------------------------------------------------------------------- lifecycle


def transition(
    *,
    session: Session,
    job: JobRow,
    to: JobState,
    detail: Mapping[str, Any] | None = None,
    updates: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> JobEvent:
    """Move ``job`` to ``to`` at ``now`` and record the event; raises ``TransitionError`` if
    not allowed.

    The row is re-read under ``SELECT ... FOR UPDATE`` first (SQLite: the transaction already
    holds the write lock), so two racing transitions cannot both succeed from the same state.
    ``updates`` sets columns of :data:`TRANSITION_FIELDS` in the same step (e.g. the center
    when scheduling). Timestamps: ``scheduled_at`` on scheduling, ``started_at`` on the first
    run, ``ended_at`` on reaching a terminal state, each ``now`` (the caller's clock; None: the
    wall clock, a last resort for callers that have no clock yet).
    """
    session.flush()
    session.refresh(job, with_for_update=True)
    current = JobState(job.state)
    if now is None:
        now = utcnow()
    changes = _changes(current, to, now, updates, started=job.started_at is not None)
    for name, value in changes.items():
        setattr(job, name, value)
    event = JobEvent(
        job_id=job.id,
        at=now,
        from_state=current.value,
        to_state=to.value,
        detail=dict(detail or {}),
    )
    session.add(event)
    session.flush()
    return event


def _changes(
    current: JobState,
    to: JobState,
    now: datetime,
    updates: Mapping[str, Any] | None,
    *,
    started: bool,
) -> dict[str, Any]:
    """The columns a transition from ``current`` to ``to`` at ``now`` sets (``updates`` and
    the state's timestamps; ``started``: the job has run before); raises ``TransitionError``
    if not allowed."""
    extra = set(updates or {}) - TRANSITION_FIELDS
    if extra:
        raise ValueError(f"cannot set {sorted(extra)} in a transition")
    check_transition(current, to)
    out = {**(updates or {}), "state": to.value, "updated_at": now}
    if to is JobState.SCHEDULED:
        out["scheduled_at"] = now
    elif to is JobState.RUNNING and not started:
        out["started_at"] = now
    if to.is_terminal:
        out["ended_at"] = now
    return out


@dataclass
class Transitions:
    """Many transitions of jobs this transaction has locked, written in bulk (a dispatcher
    round decides thousands): :func:`transition`'s checks and columns, without re-reading
    each row. The caller read ``current`` under ``SELECT ... FOR UPDATE`` in this transaction
    (SQLite: the transaction holds the write lock), so it is the row's state. Nothing is
    written before :meth:`write`, which issues one ``UPDATE`` per set of columns (by primary
    key, executemany) and one ``INSERT`` of the events; ORM objects of these rows in the
    session are not refreshed."""

    now: datetime
    _rows: dict[tuple[str, ...], list[dict[str, Any]]] = field(default_factory=dict)
    _events: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        job_id: str,
        current: JobState,
        to: JobState,
        detail: Mapping[str, Any] | None = None,
        updates: Mapping[str, Any] | None = None,
    ) -> None:
        """Move ``job_id`` from ``current`` to ``to`` (checked now, written by :meth:`write`);
        the job must not have run before when ``to`` is running."""
        self.set(job_id, **_changes(current, to, self.now, updates, started=False))
        self._events.append({"job_id": job_id, "at": self.now, "from_state": current.value,
                             "to_state": to.value, "detail": dict(detail or {})})  # fmt: skip

    @property
    def transitions(self) -> int:
        """Transitions added and not yet written."""
        return len(self._events)

    def set(self, job_id: str, **values: Any) -> None:
        """Set columns of ``job_id`` without a transition (e.g. a pending job's decision)."""
        self._rows.setdefault(tuple(sorted(values)), []).append({"id": job_id, **values})

    def write(self, session: Session) -> None:
        for columns, rows in self._rows.items():
            # Core's executemany: the ORM's bulk update by primary key sorts each row's keys
            # into sets again (a tenth of a dispatcher round)
            stmt = (
                update(_JOBS)
                .where(_JOBS.c.id == bindparam("_id"))
                .values({c: bindparam(f"_{c}") for c in columns})
            )
            session.execute(stmt, [{f"_{k}": v for k, v in row.items()} for row in rows])
        if self._events:
            session.execute(_INSERT_EVENT, self._events)
        self._rows, self._events = {}, []


def cancel_job(
    *,
    session: Session,
    job: JobRow,
    by: Tenant,
    now: datetime,
    reason: str = "cancelled on request",
) -> JobEvent:
    """Cancel a job that has not ended, at ``now`` (raises ``TransitionError`` for a terminal
    one).

    A scheduled or running job is marked cancelled at once; stopping its process is the
    executor's business (the reconciler compares executor state with the database).
    """
    return transition(
        session=session,
        job=job,
        to=JobState.CANCELLED,
        detail={"reason": reason, "by": by.id},
        now=now,
    )


# --------------------------------------------------------------------------- usage


@dataclass(slots=True)
class Usage:
    """Units held by scheduled and running jobs at one center."""

    cards: dict[str, int] = field(default_factory=dict)
    cpu_cores: int = 0


def active_usage(*, session: Session, at: datetime | None = None) -> dict[str, Usage]:
    """Center id -> cards by model and CPU cores held by its scheduled and running jobs.

    With ``at``, a scheduled job whose planned start (``start_at``) is later than ``at`` and
    that has not been handed to its executor holds nothing yet (a deferred start); without it
    every scheduled job counts.
    """
    stmt = select(JobRow.center_id, JobRow.pool_model, JobRow.spec).where(
        JobRow.state.in_([s.value for s in ACTIVE_STATES]), JobRow.center_id.is_not(None)
    )
    if at is not None:
        stmt = stmt.where(
            or_(
                JobRow.state != JobState.SCHEDULED.value,
                JobRow.executor_ref.is_not(None),
                JobRow.start_at.is_(None),
                JobRow.start_at <= at,
            )
        )
    out: dict[str, Usage] = {}
    for center_id, pool_model, spec in session.execute(stmt):
        if center_id is None:
            continue
        res = (spec or {}).get("resources") or {}
        cards = cards_of(res)
        use = out.setdefault(center_id, Usage())
        if cards > 0:
            model = pool_model or str(res.get("accelerator", ANY_ACCELERATOR))
            use.cards[model] = use.cards.get(model, 0) + cards
        else:
            use.cpu_cores += int(res.get("cpus", 1))
    return out
