"""Tenants' API keys: issue, list, rotate, revoke, and look a presented key up.

A key is ``sw_`` + 32 random bytes (url-safe base64); only its SHA-256 hex digest is stored,
and the key is returned once, when issued. Each key has a prefix (its first
:data:`PREFIX_LENGTH` characters: what lists show and commands name it by, never enough to
use it), a name, an optional expiry, and is either full-access or read-only (a read-only key
may only read: the API refuses it every state-changing method, ``server/api/deps.py``).

Rotation issues a new key like the old one (name, read-only, the same lifetime from now) and
revokes the old one now, or lets it work ``overlap`` longer (at most :data:`MAX_OVERLAP`), so
that a deployed dashboard can switch keys without a gap.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.server.database.models import ApiKey, Tenant

KEY_PREFIX = "sw_"
KEY_BYTES = 32
#: Longer strings cannot be keys; they are refused before hashing.
MAX_KEY_LENGTH = 128
#: ``sw_`` and 8 characters of the key (48 random bits): unique among keys.
PREFIX_LENGTH = 11
#: How long a rotated key may keep working beside its successor.
MAX_OVERLAP = timedelta(days=1)
MAX_KEY_NAME_LENGTH = 100
#: The furthest expiry a key may have (and a rotated key's lifetime).
MAX_LIFETIME = timedelta(days=36_525)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: What a prefix looks like (keys from before 0010: ``old_`` and 12 hex digits).
PREFIX_PATTERN = r"^(sw_[A-Za-z0-9_-]{8}|old_[0-9a-f]{12})$"


class KeyRefused(ValueError):
    """A key that exists but may not be used now: revoked or expired (the message says which,
    and when)."""


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def _check_name(name: str) -> str:
    if not name or len(name) > MAX_KEY_NAME_LENGTH or _CONTROL.search(name):
        raise ValueError(
            f"key name must be 1..{MAX_KEY_NAME_LENGTH} characters, no control characters"
        )
    return name


def check_expiry(expires_at: datetime, now: datetime) -> datetime:
    """``expires_at`` in UTC if it is after ``now`` and at most :data:`MAX_LIFETIME` later;
    :class:`ValueError` saying what is wrong otherwise."""
    try:
        at = expires_at.astimezone(UTC)
    except (OverflowError, ValueError):
        at = None
    if at is None or at > now + MAX_LIFETIME:
        raise ValueError(f"must be at most {MAX_LIFETIME.days} days after now ({now.isoformat()})")
    if at <= now:
        raise ValueError(f"must be after now ({now.isoformat()})")
    return at


def draw_key(session: Session) -> str:
    """A new key whose prefix no key has (a prefix taken already, 1 in 2**48 per key, draws
    again)."""
    while True:
        api_key = new_api_key()
        taken = select(ApiKey.id).where(ApiKey.prefix == api_key[:PREFIX_LENGTH])
        if session.scalar(taken) is None:
            return api_key


def key_row(
    tenant_id: str,
    api_key: str,
    *,
    now: datetime,
    name: str = "default",
    read_only: bool = False,
    expires_at: datetime | None = None,
) -> ApiKey:
    """The row that stores ``api_key`` (its prefix and digest) for the tenant, not added.

    :class:`ValueError` for a bad name or an expiry not after ``now``."""
    name = _check_name(name)
    if expires_at is not None:
        expires_at = check_expiry(expires_at, now)
    return ApiKey(
        tenant_id=tenant_id, prefix=api_key[:PREFIX_LENGTH], key_hash=hash_key(api_key),
        name=name, read_only=read_only, created_at=now, expires_at=expires_at,
    )  # fmt: skip


def issue_key(
    *,
    session: Session,
    tenant: Tenant,
    now: datetime,
    name: str = "default",
    read_only: bool = False,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key for ``tenant``: the row and the key itself (shown once). Flushes.

    :class:`ValueError` for a bad name or an expiry not after ``now``."""
    api_key = draw_key(session)
    row = key_row(
        tenant.id, api_key, now=now, name=name, read_only=read_only, expires_at=expires_at
    )
    session.add(row)
    session.flush()
    return row, api_key


def list_keys(*, session: Session, tenant: Tenant) -> list[ApiKey]:
    """Every key of ``tenant`` (revoked and expired ones too), newest first."""
    stmt = select(ApiKey).where(ApiKey.tenant_id == tenant.id)
    return list(session.scalars(stmt.order_by(ApiKey.created_at.desc(), ApiKey.prefix)))


def find_key(*, session: Session, tenant: Tenant, prefix: str) -> ApiKey | None:
    """``tenant``'s key with this prefix (another tenant's is None too)."""
    return session.scalar(
        select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.tenant_id == tenant.id)
    )


def revoke_key(*, session: Session, key: ApiKey, now: datetime) -> bool:
    """Revoke ``key`` now; False (nothing changes) if it was revoked already. Flushes."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = now
    session.flush()
    return True


def rotate_key(
    *, session: Session, key: ApiKey, tenant: Tenant, now: datetime, overlap: timedelta
) -> tuple[ApiKey, str]:
    """A new key like ``key`` (its name, read-only or not, and its lifetime counted from
    ``now``); ``key`` stops working now, or after ``overlap`` (up to :data:`MAX_OVERLAP`, and
    never later than it would have). :class:`ValueError` for a revoked or expired key or an
    overlap out of range."""
    if overlap < timedelta(0) or overlap > MAX_OVERLAP:
        raise ValueError(f"overlap must be 0 to {int(MAX_OVERLAP.total_seconds())} seconds")
    refusal = refused(key, now)
    if refusal is not None:
        raise ValueError(f"cannot rotate: {refusal}")
    lifetime = None if key.expires_at is None else key.expires_at - key.created_at
    new, secret = issue_key(
        session=session, tenant=tenant, now=now, name=key.name, read_only=key.read_only,
        expires_at=None if lifetime is None else now + lifetime,
    )  # fmt: skip
    if overlap:
        end = now + overlap
        key.expires_at = end if key.expires_at is None else min(key.expires_at, end)
    else:
        key.revoked_at = now
    session.flush()
    return new, secret


def refused(key: ApiKey, now: datetime) -> str | None:
    """Why ``key`` may not be used at ``now`` (revoked, expired), or None."""
    if key.revoked_at is not None and key.revoked_at <= now:
        return f"API key {key.prefix} was revoked at {key.revoked_at.isoformat()}"
    if key.expires_at is not None and key.expires_at <= now:
        return f"API key {key.prefix} expired at {key.expires_at.isoformat()}"
    return None


def lookup(*, session: Session, api_key: str) -> tuple[Tenant, ApiKey] | None:
    """The tenant and key row of ``api_key`` (revoked and expired ones too), or None.

    The lookup is by digest (indexed); the final comparison is constant-time. Timing of the
    index lookup only reveals facts about a SHA-256 digest of a guess, which is useless.
    """
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > MAX_KEY_LENGTH or not api_key.isascii():
        return None
    digest = hash_key(api_key)
    found = session.execute(
        select(Tenant, ApiKey)
        .join(ApiKey, ApiKey.tenant_id == Tenant.id)
        .where(ApiKey.key_hash == digest)
    ).first()
    if found is None or not hmac.compare_digest(found[1].key_hash, digest):
        return None
    return found[0], found[1]


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def key_json(key: ApiKey, now: datetime) -> dict[str, Any]:
    """A key as lists show it (never its digest), with its state at ``now``: ``active``,
    ``expired`` or ``revoked``."""
    refusal = refused(key, now)
    state = "active" if refusal is None else "revoked" if "revoked" in refusal else "expired"
    return {
        "prefix": key.prefix,
        "name": key.name,
        "read_only": key.read_only,
        "created_at": key.created_at.isoformat(),
        "expires_at": _iso(key.expires_at),
        "revoked_at": _iso(key.revoked_at),
        "state": state,
    }
