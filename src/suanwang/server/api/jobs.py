"""``/v1/jobs``: submit, list, read, cancel, events, logs.

A job the tenant may not see is a 404 (consumers see their own jobs, providers also those on
their centers, operators all). Cancelling is for the job's own tenant and operators: a provider
gets a 403 for a customer's job on its center.

Every ``{job_id}`` is the job's id or an unambiguous prefix of it (at least
:data:`~suanwang.server.models.job_refs.MIN_PREFIX` characters, as ``git`` takes short commit
ids), among the jobs the tenant may see; a prefix several of them share is a 409 naming them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from suanwang.billing.ledger import InsufficientBalance, no_funds
from suanwang.core.lifecycle import TRANSITIONS, JobState, TransitionError
from suanwang.server.api.deps import (
    AUTH_RESPONSES,
    AuditDep,
    CurrentTenant,
    NetworkDep,
    NowDep,
    SessionDep,
    SubmittingTenant,
)
from suanwang.server.database.models import JobRow, Tenant
from suanwang.server.models import job_specs
from suanwang.server.models import jobs as models
from suanwang.server.models.billing.statements import charge_of
from suanwang.server.models.job_refs import MIN_PREFIX, AmbiguousJobId, resolve_job
from suanwang.server.models.jobs import SubmitRequest
from suanwang.server.models.limits import ClassNotAllowed, OverBudget
from suanwang.server.schemas import (
    ConflictResponse,
    ErrorResponse,
    JobCreate,
    JobEventPublic,
    JobList,
    JobPublic,
)
from suanwang.server.submitter import Submitter

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=AUTH_RESPONSES)


class JobCandidate(BaseModel):
    id: str
    name: str
    state: JobState


class AmbiguousJobRef(BaseModel):
    msg: str
    candidates: list[JobCandidate]
    more: bool  # more jobs match than are listed


class AmbiguousResponse(BaseModel):
    detail: AmbiguousJobRef


AMBIGUOUS = "the id prefix matches several of your jobs (the first are named)"
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "no such job (or not yours)"},
    409: {"model": AmbiguousResponse, "description": AMBIGUOUS},
}
JobId = Annotated[
    str,
    Path(
        max_length=100,
        description=f"the job's id (a UUID), or an unambiguous prefix of it of at least "
        f"{MIN_PREFIX} characters",
    ),
]


def _job_or_404(session: SessionDep, tenant: Tenant, job_id: str) -> JobRow:
    try:
        job = resolve_job(session=session, tenant=tenant, ref=job_id)
    except AmbiguousJobId as exc:
        found = [
            JobCandidate(id=c.id, name=c.name, state=JobState(c.state)) for c in exc.candidates
        ]
        body = AmbiguousJobRef(msg=str(exc), candidates=found, more=exc.more)
        raise HTTPException(status.HTTP_409_CONFLICT, body.model_dump(mode="json")) from None
    if job is None:
        hint = "" if len(job_id) >= MIN_PREFIX else f" (give at least {MIN_PREFIX} characters)"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}{hint}")
    return job


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": JobPublic, "description": "replay: this Idempotency-Key made this job"},
        400: {"model": ErrorResponse, "description": "the body could not be read"},
        402: {
            "description": "billing required and the prepaid balance cannot cover the hold, "
            "or the job would take the tenant over its monthly budget or spend per hour"
        },
        403: {"description": "the tenant's quota does not allow the job's priority class"},
        413: {"model": ErrorResponse, "description": "request body over 64 KiB"},
    },
)
async def submit_job(
    spec: JobCreate,
    request: Request,
    tenant: SubmittingTenant,
    net: NetworkDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[!-~]+$",
            description="retries with the same key (and spec) return the first job, with 200",
        ),
    ] = None,
) -> JobPublic:
    """Submit a job; 201 with the new job, or 200 with the earlier one on an idempotent retry.

    Reusing a key for a different spec is a 422 (as the IETF Idempotency-Key draft asks).
    """
    allowed = request.app.state.settings.allow_job_network
    problems = job_specs.check_spec(spec, net, network_allowed=allowed)
    if problems:
        raise RequestValidationError(
            [
                {"type": "scenario", "loc": ("body", *p.loc), "msg": p.msg, "input": p.input}
                for p in problems
            ]
        )
    submitter: Submitter = request.app.state.submitter
    try:
        job, created = await submitter.submit(SubmitRequest(tenant, spec, idempotency_key))
    except models.IdempotencyConflict as exc:
        raise RequestValidationError(
            [
                {
                    "type": "idempotency_conflict",
                    "loc": ("header", "Idempotency-Key"),
                    "msg": str(exc),
                    "input": idempotency_key,
                }
            ]
        ) from None
    except InsufficientBalance as exc:
        raise HTTPException(status.HTTP_402_PAYMENT_REQUIRED, no_funds(exc)) from None
    except OverBudget as exc:
        raise HTTPException(status.HTTP_402_PAYMENT_REQUIRED, over_budget(exc)) from None
    except ClassNotAllowed as exc:
        detail = {"error": "class_not_allowed", "message": str(exc), "allowed": exc.allowed}
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail) from None
    if not created:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    # the stored spec is this spec (a replay's is checked equal): no second validation
    return JobPublic.from_row(job, spec=spec)


@router.get("")
def list_jobs(
    session: SessionDep,
    tenant: CurrentTenant,
    state: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=models.MAX_PAGE)] = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=500,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="next_cursor of the previous page",
        ),
    ] = None,
) -> JobList:
    """Jobs you may see, newest first."""
    try:
        rows, next_cursor = models.list_jobs(
            session=session, tenant=tenant, state=state, limit=limit, cursor=cursor
        )
    except models.InvalidCursor as exc:
        raise RequestValidationError(
            [{"type": "invalid_cursor", "loc": ("query", "cursor"), "msg": str(exc)}]
        ) from None
    return JobList(items=[JobPublic.from_row(r) for r in rows], next_cursor=next_cursor)


@router.get("/{job_id}", responses=NOT_FOUND)
def get_job(job_id: JobId, session: SessionDep, tenant: CurrentTenant) -> JobPublic:
    public = JobPublic.from_row(_job_or_404(session, tenant, job_id))
    public.charge_cny = charge_of(session=session, job_id=public.id)  # billing
    return public


@router.post(
    "/{job_id}/cancel",
    responses={
        **NOT_FOUND,
        403: {
            "model": ErrorResponse,
            "description": "a provider may see but not cancel a customer's job on its center",
        },
        409: {
            "model": ConflictResponse | AmbiguousResponse,
            "description": f"the job has already ended; or: {AMBIGUOUS}",
        },
    },
)
def cancel_job(
    job_id: JobId, session: SessionDep, tenant: CurrentTenant, now: NowDep, audit: AuditDep
) -> JobPublic:
    """Cancel a job that has not ended (a running job's process is stopped by its executor).

    The job's own tenant and operators may cancel it (an operator's cancelling of another
    tenant's job is written to the audit log).
    """
    job = _job_or_404(session, tenant, job_id)
    if not models.may_cancel(tenant, job):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"job {job.id!r} runs on your center but belongs to another tenant: "
            "only that tenant or an operator may cancel it",
        )
    try:
        models.cancel_job(session=session, job=job, by=tenant, now=now)
    except TransitionError as exc:
        session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {
                "msg": str(exc),
                "state": exc.current.value,
                "allowed": sorted(s.value for s in TRANSITIONS[exc.current]),
            },
        ) from None
    if job.tenant_id != tenant.id:
        audit.record(session, "job.cancel", f"job:{job.id}", tenant_id=job.tenant_id,
                     name=job.name)  # fmt: skip
    session.commit()
    return JobPublic.from_row(job)


@router.get("/{job_id}/events", responses=NOT_FOUND)
def job_events(job_id: JobId, session: SessionDep, tenant: CurrentTenant) -> list[JobEventPublic]:
    """Every state change of the job, oldest first."""
    job = _job_or_404(session, tenant, job_id)
    return [JobEventPublic.from_row(e) for e in models.list_events(session=session, job=job)]


@router.get(
    "/{job_id}/logs",
    response_model=None,
    responses={
        **NOT_FOUND,
        200: {
            "description": "the log text",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
    },
)
def job_logs(job_id: JobId, session: SessionDep, tenant: CurrentTenant) -> PlainTextResponse:
    """The job's output so far (empty until an executor has stored some)."""
    job = _job_or_404(session, tenant, job_id)
    return PlainTextResponse(job.logs or "")


def over_budget(exc: OverBudget) -> dict[str, str]:
    """The JSON body of a 402 for a budget: which limit, and by how much."""
    return {
        "error": "over_budget",
        "message": str(exc),
        "limit": exc.limit,
        "limit_cny": str(exc.cap),
        "would_be_cny": str(exc.would_be),
        "excess_cny": str(exc.excess),
    }
