"""``/v1/apps``: the app marketplace — list, read, run (submits a job), publish, update, delete.

Built-in apps ship with the package; providers and operators publish more (``POST /v1/apps``,
table ``apps``); the publisher or an operator updates (``PUT``) or deletes (``DELETE``) a
published app, built-in apps can be neither. Running an app fills its parameters (each
checked: a 422 names the parameter and why) and submits the resulting job through
``POST /v1/jobs``'s own handler, so placement, idempotency, billing admission and every
scenario check are the same.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from suanwang.apps.catalog import (
    APP_RULE,
    PARAM_NAME,
    App,
    AppError,
    AppSpec,
    Problem,
    builtin_apps,
    render,
)
from suanwang.server.api import jobs
from suanwang.server.api.deps import (
    AUTH_RESPONSES,
    AuditDep,
    CurrentTenant,
    NetworkDep,
    SessionDep,
    provider_or_operator,
)
from suanwang.server.database.models import PublishedApp, Tenant, TenantRole
from suanwang.server.models.job_specs import check_spec
from suanwang.server.schemas import ErrorResponse, JobCreate, JobName, JobPublic, Name

router = APIRouter(prefix="/v1/apps", tags=["apps"], responses=AUTH_RESPONSES)
TOO_LARGE: dict[str, object] = {
    "model": ErrorResponse,
    "description": "request body over the server's limit (64 KiB)",
}

AppId = Annotated[str, Path(max_length=64, description="the app's id")]
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "no such app"}
}


#: The tenant, if it may publish apps; 403 otherwise (before the body is validated).
Publisher = Annotated[
    Tenant, provider_or_operator("publishing and changing apps is for providers and operators")
]


class AppList(BaseModel):
    items: list[App]


class AppRun(BaseModel):
    """The body of ``POST /v1/apps/{id}/run``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    origin: Name = Field(description="province or city (id) the job's users and data are in")
    name: JobName | None = Field(None, description="the job's name (default: the app's id)")
    parameters: dict[Annotated[str, Field(pattern=PARAM_NAME)], bool | int | float | str] = Field(
        default_factory=dict,
        max_length=30,
        description="parameter values by name (others: their defaults); a name the app does "
        "not declare, or a value its declaration refuses, is a 422 of type 'app'",
        # pydantic states the names as patternProperties only: say no other name is taken
        json_schema_extra={"additionalProperties": False},
    )
    deadline_s: float | None = Field(None, gt=0, le=1e9, strict=True)


def _may_edit(row: PublishedApp, viewer: Tenant | None) -> bool:
    """Whether ``viewer`` may update or delete the published app ``row``."""
    if viewer is None:
        return False
    return viewer.tenant_role is TenantRole.OPERATOR or viewer.id == row.tenant_id


def _published(row: PublishedApp, session: SessionDep, viewer: Tenant | None = None) -> App:
    tenant = session.get(Tenant, row.tenant_id)
    spec = AppSpec.model_validate(row.spec)
    return App(
        **spec.model_dump(), publisher=tenant.name if tenant else "?", builtin=False,
        editable=_may_edit(row, viewer),
    )  # fmt: skip


def _builtin(app_id: str) -> App | None:
    return next((app for app in builtin_apps() if app.id == app_id), None)


def _find(session: SessionDep, app_id: str, viewer: Tenant | None = None) -> App | None:
    builtin = _builtin(app_id)
    if builtin is not None:
        return builtin
    row = session.get(PublishedApp, app_id)
    return _published(row, session, viewer) if row is not None else None


def _editable_row(session: SessionDep, app_id: str, tenant: Tenant, verb: str) -> PublishedApp:
    """The published app ``tenant`` may ``verb``: 403 for a built-in app or another
    provider's app, 404 if there is none."""
    if _builtin(app_id) is not None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{app_id!r} is a built-in app: it cannot be {verb} (publish a copy under another id)",
        )
    row = session.get(PublishedApp, app_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no app {app_id!r}")
    if not _may_edit(row, tenant):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"app {app_id!r} was published by another tenant: only its publisher or an operator "
            f"may change it",
        )
    return row


def _invalid(
    problems: list[Problem], prefix: tuple[str, ...] = ("body",)
) -> RequestValidationError:
    return RequestValidationError(
        [
            {"type": APP_RULE, "loc": (*prefix, *p.loc), "msg": p.msg, "input": p.input}
            for p in problems
        ]
    )


def _job_problems(
    body: dict[str, Any], net: NetworkDep, *, network_allowed: bool
) -> tuple[JobCreate | None, list[Problem]]:
    """The job for ``body``, or what is wrong with it (pydantic and scenario checks; network
    only if ``network_allowed``)."""
    try:
        spec = JobCreate.model_validate(body)
    except ValidationError as exc:
        return None, [Problem(("job", *e["loc"]), e["msg"], e.get("input")) for e in exc.errors()]
    found = check_spec(spec, net, network_allowed=network_allowed)
    return spec, [Problem(("job", *p.loc), p.msg, p.input) for p in found]


@router.get("")
def list_apps(session: SessionDep, tenant: CurrentTenant) -> AppList:
    """Every app: built-in ones first, then published ones by id."""
    rows = session.scalars(select(PublishedApp).order_by(PublishedApp.id))
    return AppList(items=[*builtin_apps(), *(_published(r, session, tenant) for r in rows)])


@router.get("/{app_id}", responses=NOT_FOUND)
def get_app(app_id: AppId, session: SessionDep, tenant: CurrentTenant) -> App:
    app = _find(session, app_id, tenant)
    if app is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no app {app_id!r}")
    return app


def _find_and_end(session: Session, app_id: str) -> App | None:
    """:func:`_find`, then end the read so that the submit path (its own sessions) may write
    (on SQLite every transaction holds the write lock)."""
    found = _find(session, app_id)
    session.commit()
    return found


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        400: {"model": ErrorResponse, "description": "the body could not be read"},
        413: TOO_LARGE,
        403: {"model": ErrorResponse, "description": "consumers may not publish apps"},
        409: {"model": ErrorResponse, "description": "an app with this id exists"},
    },
)
def publish_app(
    spec: AppSpec, session: SessionDep, tenant: Publisher, net: NetworkDep, audit: AuditDep
) -> App:
    """Publish an app (providers and operators). Its defaults must make a valid job."""
    if _find(session, spec.id) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"an app {spec.id!r} exists already")
    _check_runnable(spec, net)
    row = PublishedApp(id=spec.id, tenant_id=tenant.id, spec=spec.model_dump(mode="json"))
    session.add(row)
    audit.record(session, "app.publish", f"app:{spec.id}", name=spec.name)
    session.commit()
    return _published(row, session, tenant)


def _check_runnable(spec: AppSpec, net: NetworkDep) -> None:
    """422 unless the app's defaults make a job the scenario can run."""
    try:
        body = render(spec, {})
    except AppError as exc:
        raise _invalid(exc.problems) from None
    # whether the platform gives the job network is checked when the app runs
    body = {**body, "name": spec.id, "origin": net.place_ids[0]}
    _, problems = _job_problems(body, net, network_allowed=True)
    problems = [p for p in problems if p.loc[:2] != ("job", "origin")]
    if problems:
        relabelled = [Problem(("template", *p.loc[1:]), p.msg, p.input) for p in problems]
        raise _invalid(relabelled)


CHANGE_RESPONSES: dict[int | str, dict[str, object]] = {
    **NOT_FOUND,
    403: {
        "model": ErrorResponse,
        "description": "a built-in app, another tenant's app, or a consumer's key",
    },
}


@router.put(
    "/{app_id}",
    responses={
        **CHANGE_RESPONSES,
        400: {"model": ErrorResponse, "description": "the body could not be read"},
        413: TOO_LARGE,
    },
)
def update_app(
    app_id: AppId,
    spec: AppSpec,
    session: SessionDep,
    tenant: Publisher,
    net: NetworkDep,
    audit: AuditDep,
) -> App:
    """Replace a published app's spec (its publisher or an operator). The id stays; the new
    spec is checked as when publishing. Jobs already run from the app are not affected."""
    row = _editable_row(session, app_id, tenant, "changed")
    if spec.id != app_id:
        problem = Problem(("id",), f"must be {app_id!r}: an app cannot be renamed", spec.id)
        raise _invalid([problem])
    _check_runnable(spec, net)
    row.spec = spec.model_dump(mode="json")
    audit.record(session, "app.update", f"app:{app_id}", name=spec.name)
    session.commit()
    return _published(row, session, tenant)


@router.delete("/{app_id}", status_code=status.HTTP_204_NO_CONTENT, responses=CHANGE_RESPONSES)
def delete_app(app_id: AppId, session: SessionDep, tenant: Publisher, audit: AuditDep) -> Response:
    """Remove a published app from the marketplace (its publisher or an operator); jobs already
    run from it are not affected. Built-in apps cannot be deleted (403)."""
    row = _editable_row(session, app_id, tenant, "deleted")
    session.delete(row)
    audit.record(session, "app.delete", f"app:{app_id}", publisher_id=row.tenant_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{app_id}/run",
    status_code=status.HTTP_201_CREATED,
    responses={
        **NOT_FOUND,
        200: {"model": JobPublic, "description": "replay: this Idempotency-Key made this job"},
        400: {"model": ErrorResponse, "description": "the body could not be read"},
        413: TOO_LARGE,
        402: {"description": "billing required and the prepaid balance cannot cover the hold"},
    },
)
async def run_app(
    app_id: AppId,
    run: AppRun,
    request: Request,
    session: SessionDep,
    tenant: CurrentTenant,
    net: NetworkDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[!-~]+$"),
    ] = None,
) -> JobPublic:
    """Fill the app's parameters and submit the job (as ``POST /v1/jobs``): 201 and the job.

    A parameter that is unknown, of the wrong type or out of range is a 422 naming it
    (``loc``: ``["body", "parameters", NAME]``).
    """
    app = await run_in_threadpool(_find_and_end, session, app_id)  # the database: not on the loop
    if app is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no app {app_id!r}")
    try:
        body = render(app, run.parameters)
    except AppError as exc:
        raise _invalid(exc.problems) from None
    body.update(name=run.name or app.id, origin=run.origin)
    if run.deadline_s is not None:
        body["deadline_s"] = run.deadline_s
    allowed = request.app.state.settings.allow_job_network
    spec, problems = _job_problems(body, net, network_allowed=allowed)
    origin = [p for p in problems if p.loc[:2] == ("job", "origin")]
    if origin:  # the user's own field: name it as such
        raise _invalid([Problem(("origin",), p.msg, p.input) for p in origin])
    if spec is None or problems:
        raise _invalid(problems)
    return await jobs.submit_job(
        spec=spec,
        request=request,
        tenant=tenant,
        net=net,
        response=response,
        idempotency_key=idempotency_key,
    )
