"""Tenants, created with their first API key (keys themselves: :mod:`.keys`).

A key is ``sw_`` + 32 random bytes (url-safe base64). Only its SHA-256 hex digest is stored; the
key itself is returned once, by :func:`create_tenant`, and cannot be recovered.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanwang.server.database.models import ApiKey, Tenant, TenantRole
from suanwang.server.models.keys import (
    KeyRefused,
    draw_key,
    hash_key,
    issue_key,
    key_row,
    lookup,
    refused,
)

__all__ = [
    "KeyRefused",
    "TenantExists",
    "authenticate",
    "create_tenant",
    "hash_key",
    "replace_key",
]

MAX_NAME_LENGTH = 100


class TenantExists(ValueError):
    """A tenant with this name already exists."""


def create_tenant(
    *, session: Session, name: str, role: TenantRole, now: datetime
) -> tuple[Tenant, str]:
    """Add a tenant, created ``now``, with its first API key (full access, named
    ``default``, no expiry); returns the tenant and the key (shown once). Flushes, does not
    commit.

    Raises :class:`TenantExists` if the name is taken and :class:`ValueError` for a name that
    is empty or longer than :data:`MAX_NAME_LENGTH`.
    """
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"tenant name must be 1..{MAX_NAME_LENGTH} characters")
    if session.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
        raise TenantExists(f"a tenant named {name!r} already exists")
    api_key = draw_key(session)
    tenant = Tenant(
        name=name, role=TenantRole(role).value, api_key_hash=hash_key(api_key), created_at=now
    )
    try:
        with session.begin_nested():  # a concurrent create of the same name loses here
            session.add(tenant)
    except IntegrityError:
        raise TenantExists(f"a tenant named {name!r} already exists") from None
    session.add(key_row(tenant.id, api_key, now=now))
    session.flush()
    return tenant, api_key


def replace_key(*, session: Session, name: str, now: datetime) -> str:
    """Give the tenant named ``name`` a new full-access API key; every key it had is revoked
    ``now``. Returns the new key (shown once). Flushes, does not commit; :class:`LookupError`
    for no such tenant."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == name.strip()))
    if tenant is None:
        raise LookupError(f"no tenant named {name!r}")
    for key in session.scalars(
        select(ApiKey).where(ApiKey.tenant_id == tenant.id, ApiKey.revoked_at.is_(None))
    ):
        key.revoked_at = now
    _, api_key = issue_key(session=session, tenant=tenant, now=now)
    return api_key


def authenticate(*, session: Session, api_key: str, now: datetime) -> Tenant | None:
    """The tenant owning ``api_key``, or None for no such key; :class:`KeyRefused` for a key
    revoked or expired at ``now``."""
    found = lookup(session=session, api_key=api_key)
    if found is None:
        return None
    refusal = refused(found[1], now)
    if refusal is not None:
        raise KeyRefused(refusal)
    return found[0]
