"""Tenants and their API keys.

A key is ``sw_`` + 32 random bytes (url-safe base64). Only its SHA-256 hex digest is stored; the
key itself is returned once, by :func:`create_tenant`, and cannot be recovered.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanwang.server.database.models import Tenant, TenantRole

KEY_PREFIX = "sw_"
KEY_BYTES = 32
#: Longer strings cannot be keys; they are refused before hashing.
MAX_KEY_LENGTH = 128
MAX_NAME_LENGTH = 100


class TenantExists(ValueError):
    """A tenant with this name already exists."""


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def create_tenant(
    *, session: Session, name: str, role: TenantRole, now: datetime
) -> tuple[Tenant, str]:
    """Add a tenant, created ``now``; returns it and its API key (shown once). Flushes, does
    not commit.

    Raises :class:`TenantExists` if the name is taken and :class:`ValueError` for a name that
    is empty or longer than :data:`MAX_NAME_LENGTH`.
    """
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"tenant name must be 1..{MAX_NAME_LENGTH} characters")
    if session.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
        raise TenantExists(f"a tenant named {name!r} already exists")
    api_key = new_api_key()
    tenant = Tenant(
        name=name, role=TenantRole(role).value, api_key_hash=hash_key(api_key), created_at=now
    )
    try:
        with session.begin_nested():  # a concurrent create of the same name loses here
            session.add(tenant)
    except IntegrityError:
        raise TenantExists(f"a tenant named {name!r} already exists") from None
    return tenant, api_key


def replace_key(*, session: Session, name: str) -> str:
    """Give the tenant named ``name`` a new API key; its old key stops working. Returns the
    new key (shown once). Flushes, does not commit; :class:`LookupError` for no such tenant."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == name.strip()))
    if tenant is None:
        raise LookupError(f"no tenant named {name!r}")
    api_key = new_api_key()
    tenant.api_key_hash = hash_key(api_key)
    session.flush()
    return api_key


def authenticate(*, session: Session, api_key: str) -> Tenant | None:
    """The tenant owning ``api_key``, or None.

    The lookup is by digest (indexed); the final comparison is constant-time. Timing of the
    index lookup only reveals facts about a SHA-256 digest of a guess, which is useless.
    """
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > MAX_KEY_LENGTH or not api_key.isascii():
        return None
    digest = hash_key(api_key)
    tenant = session.scalar(select(Tenant).where(Tenant.api_key_hash == digest))
    if tenant is None or not hmac.compare_digest(tenant.api_key_hash, digest):
        return None
    return tenant
