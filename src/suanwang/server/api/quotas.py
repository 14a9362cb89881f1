"""``/v1/quotas``: each tenant's compute quota, classes and budget (docs/governance.md,
"Administration (API and CLI)").

* ``GET /v1/quotas`` — operators: every tenant with a quota, by name; others: their own (a
  list of one, or empty).
* ``GET /v1/quotas/changes`` — operators: the record of changes, newest first (``?tenant=``,
  ``?limit=``).
* ``GET /v1/quotas/{tenant}`` — the tenant's settings and what it uses now: one's own, or
  any for operators; another tenant's is a 404, the same answer as for no such tenant.
* ``PUT /v1/quotas/{tenant}`` — operators: set (create or replace) the tenant's quota; the
  whole governance is checked first (a 422 naming each field, nothing written); setting what
  is set changes nothing (``"changed": false``, nothing recorded).
* ``DELETE /v1/quotas/{tenant}`` — operators: remove it (409 when that would leave a cohort
  mate borrowing more than its cohort lends).

``{tenant}`` is a tenant's name (or id; a name may hold ``/``). Changes take effect at the
dispatcher's next round (it reads the quotas at every round).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from suanwang.server.api.deps import (
    AUTH_RESPONSES,
    AuditDep,
    CurrentTenant,
    NetworkDep,
    NowDep,
    SessionDep,
    operator_only,
)
from suanwang.server.database.models import Tenant, TenantRole
from suanwang.server.models.billing.accounts import tenant_by_name_or_id
from suanwang.server.models.governance import (
    MAX_CHANGES,
    NoQuota,
    QuotaRefused,
    quota_changes,
    quota_view,
    quota_views,
    remove_quota,
    set_quota,
)
from suanwang.server.models.quota_settings import QuotaSettings, settings_json
from suanwang.server.schemas import ErrorResponse

router = APIRouter(prefix="/v1/quotas", tags=["quotas"], responses=AUTH_RESPONSES)

Setter = Annotated[Tenant, operator_only("only operators may set or remove quotas")]
Auditor = Annotated[Tenant, operator_only("the record of quota changes is for operators")]
TenantRef = Annotated[
    str, Path(min_length=1, max_length=100, description="the tenant's name (or id)")
]
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "no such tenant (or not yours), or no quota"},
}
WRITE: dict[int | str, dict[str, object]] = {
    **NOT_FOUND,
    403: {"model": ErrorResponse, "description": "not an operator"},
}


def _tenant(session: Session, ref: str) -> Tenant:
    found = tenant_by_name_or_id(session=session, ref=ref)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no tenant {ref!r}")
    return found


def _no_quota(tenant: Tenant) -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND, f"tenant {tenant.name!r} has no quota (none is set)"
    )


def _invalid(exc: QuotaRefused, body: QuotaSettings) -> RequestValidationError:
    """The problems of a refused setting as a 422: this tenant's by their field in the body,
    another tenant's the change would make wrong under ``tenants.NAME.field``."""
    sent = body.model_dump(mode="json")
    errors = []
    for p in exc.problems:
        path = p.field.split(".", 2) if p.field.startswith("caps.") else [p.field]
        kind = "scenario" if path[0] == "caps" else "governance"
        if p.tenant == exc.tenant:
            value: Any = sent
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            errors.append({"type": kind, "loc": ("body", *path), "msg": p.message, "input": value})
        else:
            msg = (
                f"{p.message}, once {exc.tenant!r} is set so: change tenant {p.tenant!r} "
                f"first (docs/governance.md)"
            )
            errors.append({"type": kind, "loc": ("tenants", p.tenant, *path), "msg": msg,
                           "input": None})  # fmt: skip
    return RequestValidationError(errors)


@router.get("")
def list_quotas(
    session: SessionDep, me: CurrentTenant, now: NowDep, net: NetworkDep
) -> dict[str, Any]:
    """Quotas with what each tenant uses now: operators every tenant's, others their own."""
    mine = None if me.tenant_role is TenantRole.OPERATOR else me
    return {"quotas": quota_views(session=session, now=now, network=net, tenant=mine)}


@router.get("/changes", responses=WRITE)
def list_changes(
    session: SessionDep,
    me: Auditor,
    tenant: Annotated[
        str | None, Query(min_length=1, max_length=100, description="only this tenant's")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CHANGES, description="at most this many")] = 100,
) -> dict[str, Any]:
    """Every change of a quota (operators), newest first: who made it, when, the settings
    before (null: created) and after (null: removed)."""
    who = None if tenant is None else _tenant(session, tenant)
    return {"changes": quota_changes(session=session, tenant=who, limit=limit)}


@router.get("/{tenant:path}", responses=NOT_FOUND)
def get_quota(
    tenant: TenantRef, session: SessionDep, me: CurrentTenant, now: NowDep, net: NetworkDep
) -> dict[str, Any]:
    """A tenant's quota and what it uses now: its running and handed-over jobs' rate (SCU/h,
    in all, by family and by hub), entitlement, usage over quota, what it borrows, and its
    charges this month against its budget."""
    if me.tenant_role is TenantRole.OPERATOR:
        who = _tenant(session, tenant)
    elif tenant in (me.name, me.id):
        who = me
    else:  # another tenant's quota, or no tenant: the same answer
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no tenant {tenant!r} (you may see only your own quota)"
        )
    view = quota_view(session=session, tenant=who, now=now, network=net)
    if view is None:
        raise _no_quota(who)
    return view


@router.put(
    "/{tenant:path}",
    responses={
        **WRITE,
        400: {"model": ErrorResponse, "description": "the body could not be read"},
        413: {"model": ErrorResponse, "description": "request body over the server's limit"},
    },
)
def put_quota(
    tenant: TenantRef,
    body: QuotaSettings,
    session: SessionDep,
    me: Setter,
    now: NowDep,
    net: NetworkDep,
    audit: AuditDep,
) -> dict[str, Any]:
    """Set a tenant's quota (operators): every setting, those not given at their defaults.
    ``changed``: false when it was set so already (nothing recorded). Takes effect at the
    dispatcher's next round."""
    who = _tenant(session, tenant)
    try:
        new, written = set_quota(
            session=session, now=now, by=me, tenant=who, fields=body, scenario=net.scenario
        )
    except QuotaRefused as exc:
        raise _invalid(exc, body) from None
    if written:
        audit.record(session, "quota.set", f"tenant:{who.id}", tenant=who.name,
                     settings=settings_json(new))  # fmt: skip
    session.commit()
    view = quota_view(session=session, tenant=who, now=now, network=net)
    if view is None:  # pragma: no cover - removed by a concurrent request
        raise _no_quota(who)
    return view | {"changed": written}


@router.delete(
    "/{tenant:path}",
    responses={
        **WRITE,
        409: {"model": ErrorResponse, "description": "a cohort mate borrows what it lends"},
    },
)
def delete_quota(
    tenant: TenantRef,
    session: SessionDep,
    me: Setter,
    now: NowDep,
    net: NetworkDep,
    audit: AuditDep,
) -> dict[str, Any]:
    """Remove a tenant's quota (operators); recorded. Takes effect at the dispatcher's next
    round."""
    who = _tenant(session, tenant)
    try:
        old = remove_quota(session=session, now=now, by=me, tenant=who, scenario=net.scenario)
    except NoQuota:
        raise _no_quota(who) from None
    except QuotaRefused as exc:
        found = "; ".join(str(p) for p in exc.problems)
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"removing {who.name!r}'s quota would leave {found}: change that first",
        ) from None
    removed = {"removed": True, "settings": settings_json(old)}
    audit.record(session, "quota.remove", f"tenant:{who.id}", tenant=who.name, **removed)
    session.commit()
    return {"tenant": who.name, "tenant_id": who.id} | removed
