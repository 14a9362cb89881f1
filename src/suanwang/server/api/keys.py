"""API keys (docs/control-plane.md, "API keys"): a tenant's own, and operators' for any tenant.

* ``GET /v1/keys`` — your keys by prefix (never a secret), newest first, with their state.
* ``POST /v1/keys`` — a new key for yourself (``name``, ``read_only``, ``expires_at``): 201 and
  the key, shown this once.
* ``POST /v1/keys/{prefix}/rotate`` — a new key like that one; the old one is revoked now, or
  works ``overlap_s`` longer (at most a day).
* ``DELETE /v1/keys/{prefix}`` — revoke it (``changed``: false if it was revoked already).
* ``/v1/tenants/{tenant}/keys...`` — the same for any tenant (name or id): operators only.

Another tenant's key is a 404, as is no such key. A read-only key may only list (every
state-changing method is refused it, ``deps.current_tenant``). Every change writes one audit
entry (``key.create``, ``key.rotate``, ``key.revoke``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool
from sqlalchemy.orm import Session

from suanwang.server.api.deps import (
    AUTH_RESPONSES,
    AuditDep,
    CurrentTenant,
    NowDep,
    SessionDep,
    forget_key,
    operator_only,
)
from suanwang.server.database.models import ApiKey, Tenant
from suanwang.server.models import keys
from suanwang.server.models.billing.accounts import tenant_by_name_or_id
from suanwang.server.schemas import ErrorResponse, Name

router = APIRouter(tags=["keys"], responses=AUTH_RESPONSES)

KeyAdmin = Annotated[Tenant, operator_only("only operators may manage another tenant's keys")]
Prefix = Annotated[
    str,
    Path(
        min_length=11,
        max_length=16,
        pattern=keys.PREFIX_PATTERN,
        description="the key's prefix, as listed (sw_ and 8 characters)",
    ),
]
TenantRef = Annotated[
    str, Path(min_length=1, max_length=100, description="the tenant's name or id")
]
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "no such key (or tenant), or not yours"},
}
WRITE: dict[int | str, dict[str, object]] = {
    **NOT_FOUND,
    400: {"model": ErrorResponse, "description": "the body could not be read"},
    403: {"model": ErrorResponse, "description": "a read-only key, or not an operator"},
}


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field("default", description="what the key is for, e.g. 'grafana'")
    read_only: StrictBool = Field(False, description="true: the key may only read (GET)")
    expires_at: AwareDatetime | None = Field(
        None, description="when the key stops working (with its offset); none: never"
    )


def _whole(value: object) -> object:
    """A JSON integer (``60``, or ``60.0``, which JSON Schema counts as one); never a string
    or a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number of seconds")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number of seconds")
        return int(value)
    return value


Seconds = Annotated[int, BeforeValidator(_whole)]


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_s: Seconds = Field(
        0,
        ge=0,
        le=int(keys.MAX_OVERLAP.total_seconds()),
        description="how long the old key keeps working beside the new one (0: revoked now)",
    )


def out_of_range(loc: tuple[str, ...], msg: str, value: datetime) -> RequestValidationError:
    """A 422 for an instant the schema allows but now rules out (in the past, too far on):
    type ``instant_out_of_range``."""
    return RequestValidationError(
        [{"type": "instant_out_of_range", "loc": loc, "msg": msg, "input": value.isoformat()}]
    )


def _tenant(session: Session, ref: str) -> Tenant:
    found = tenant_by_name_or_id(session=session, ref=ref)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no tenant {ref!r}")
    return found


def _key(session: Session, tenant: Tenant, prefix: str) -> ApiKey:
    found = keys.find_key(session=session, tenant=tenant, prefix=prefix)
    if found is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"tenant {tenant.name!r} has no API key {prefix!r}"
        )
    return found


def _owner(tenant: Tenant) -> dict[str, str]:
    return {"tenant": tenant.name, "tenant_id": tenant.id}


def _list(session: Session, tenant: Tenant, now: NowDep) -> dict[str, Any]:
    rows = keys.list_keys(session=session, tenant=tenant)
    return _owner(tenant) | {"keys": [keys.key_json(k, now) for k in rows]}


def _create(
    session: Session, tenant: Tenant, body: KeyCreate, now: NowDep, audit: AuditDep
) -> dict[str, Any]:
    expires_at = None
    if body.expires_at is not None:
        try:
            expires_at = keys.check_expiry(body.expires_at, now)
        except ValueError as exc:
            raise out_of_range(("body", "expires_at"), str(exc), body.expires_at) from None
    row, secret = keys.issue_key(
        session=session, tenant=tenant, now=now, name=body.name, read_only=body.read_only,
        expires_at=expires_at,
    )  # fmt: skip
    shown = keys.key_json(row, now)
    audit.record(session, "key.create", f"key:{row.prefix}", **_owner(tenant), key=shown)
    session.commit()
    return _owner(tenant) | {"key": shown, "api_key": secret}


def _rotate(
    request: Request,
    session: Session,
    tenant: Tenant,
    prefix: str,
    body: KeyRotate | None,
    now: NowDep,
    audit: AuditDep,
) -> dict[str, Any]:
    old = _key(session, tenant, prefix)
    overlap = timedelta(seconds=(body or KeyRotate()).overlap_s)
    try:
        new, secret = keys.rotate_key(
            session=session, key=old, tenant=tenant, now=now, overlap=overlap
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    shown, before = keys.key_json(new, now), keys.key_json(old, now)
    audit.record(
        session, "key.rotate", f"key:{old.prefix}", **_owner(tenant), key=shown, old=before,
        overlap_s=int(overlap.total_seconds()),
    )  # fmt: skip
    session.commit()
    forget_key(request, old.key_hash)
    return _owner(tenant) | {"key": shown, "api_key": secret, "old": before}


def _revoke(
    request: Request, session: Session, tenant: Tenant, prefix: str, now: NowDep, audit: AuditDep
) -> dict[str, Any]:
    row = _key(session, tenant, prefix)
    changed = keys.revoke_key(session=session, key=row, now=now)
    shown = keys.key_json(row, now)
    if changed:
        audit.record(session, "key.revoke", f"key:{row.prefix}", **_owner(tenant), key=shown)
        session.commit()
        forget_key(request, row.key_hash)
    return _owner(tenant) | {"key": shown, "changed": changed}


CONFLICT: dict[int | str, dict[str, object]] = {
    409: {"model": ErrorResponse, "description": "the key is revoked or expired already"},
}


@router.get("/v1/keys")
def list_my_keys(session: SessionDep, me: CurrentTenant, now: NowDep) -> dict[str, Any]:
    """Your API keys, newest first: prefix, name, read-only, created, expires, revoked, state
    (``active``, ``expired``, ``revoked``). Never a key itself."""
    return _list(session, me, now)


@router.post("/v1/keys", status_code=status.HTTP_201_CREATED, responses=WRITE)
def create_my_key(
    body: KeyCreate, session: SessionDep, me: CurrentTenant, now: NowDep, audit: AuditDep
) -> dict[str, Any]:
    """A new API key for yourself, with your role (``read_only``: it may only read, e.g. for
    a dashboard). ``api_key`` is shown this once: only its digest is stored."""
    return _create(session, me, body, now, audit)


@router.post(
    "/v1/keys/{prefix}/rotate",
    status_code=status.HTTP_201_CREATED,
    responses=WRITE | CONFLICT,
)
def rotate_my_key(
    prefix: Prefix,
    request: Request,
    session: SessionDep,
    me: CurrentTenant,
    now: NowDep,
    audit: AuditDep,
    body: KeyRotate | None = None,
) -> dict[str, Any]:
    """Replace a key: a new one with its name, access and lifetime (``api_key``, shown once);
    the old one is revoked now, or works ``overlap_s`` seconds longer (at most a day)."""
    return _rotate(request, session, me, prefix, body, now, audit)


@router.delete("/v1/keys/{prefix}", responses=WRITE)
def revoke_my_key(
    prefix: Prefix,
    request: Request,
    session: SessionDep,
    me: CurrentTenant,
    now: NowDep,
    audit: AuditDep,
) -> dict[str, Any]:
    """Revoke a key now (``changed``: false if it was revoked already). Revoking the key you
    call with is allowed: this answer is the last it gets."""
    return _revoke(request, session, me, prefix, now, audit)


@router.get("/v1/tenants/{tenant}/keys", responses=WRITE)
def list_keys(tenant: TenantRef, session: SessionDep, me: KeyAdmin, now: NowDep) -> dict[str, Any]:
    """A tenant's API keys (operators), as ``GET /v1/keys`` shows one's own."""
    return _list(session, _tenant(session, tenant), now)


@router.post("/v1/tenants/{tenant}/keys", status_code=status.HTTP_201_CREATED, responses=WRITE)
def create_key(
    tenant: TenantRef, body: KeyCreate, session: SessionDep, me: KeyAdmin, now: NowDep,
    audit: AuditDep,
) -> dict[str, Any]:  # fmt: skip
    """A new API key for a tenant (operators): shown this once."""
    return _create(session, _tenant(session, tenant), body, now, audit)


@router.post(
    "/v1/tenants/{tenant}/keys/{prefix}/rotate",
    status_code=status.HTTP_201_CREATED,
    responses=WRITE | CONFLICT,
)
def rotate_key(
    tenant: TenantRef,
    prefix: Prefix,
    request: Request,
    session: SessionDep,
    me: KeyAdmin,
    now: NowDep,
    audit: AuditDep,
    body: KeyRotate | None = None,
) -> dict[str, Any]:
    """Rotate a tenant's key (operators), as ``POST /v1/keys/{prefix}/rotate``."""
    return _rotate(request, session, _tenant(session, tenant), prefix, body, now, audit)


@router.delete("/v1/tenants/{tenant}/keys/{prefix}", responses=WRITE)
def revoke_key(
    tenant: TenantRef,
    prefix: Prefix,
    request: Request,
    session: SessionDep,
    me: KeyAdmin,
    now: NowDep,
    audit: AuditDep,
) -> dict[str, Any]:
    """Revoke a tenant's key (operators)."""
    return _revoke(request, session, _tenant(session, tenant), prefix, now, audit)
