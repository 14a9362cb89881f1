"""Center ownership: which provider tenant owns which centers of the scenario.

A center has at most one owner (the primary key of ``center_owners``). A provider sees the jobs
placed on its centers and, in ``GET /v1/centers``, only its centers. The database does not know
the scenario: callers pass the scenario's center ids as ``known`` to check names. These
functions flush but never commit.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanwang.server.database.models import CenterOwner, Tenant, TenantRole


class NotAProvider(ValueError):
    """Only provider tenants own centers."""


class UnknownCenters(ValueError):
    """Center ids that the scenario does not have."""


class CenterTaken(ValueError):
    """A center that another provider already owns."""


class NotOwned(ValueError):
    """Revoking a center the tenant does not own."""


def _ids(centers: Iterable[str]) -> list[str]:
    """The ids in order, stripped, without blanks or repeats."""
    out: list[str] = []
    for c in centers:
        c = c.strip()
        if c and c not in out:
            out.append(c)
    return out


def owned_centers(*, session: Session, tenant: Tenant) -> list[str]:
    """Ids of the centers ``tenant`` owns, sorted (empty for consumers and operators)."""
    stmt = select(CenterOwner.center_id).where(CenterOwner.tenant_id == tenant.id)
    return sorted(session.scalars(stmt))


def check_known(centers: Iterable[str], known: Collection[str], scenario: str) -> None:
    """Raise :class:`UnknownCenters` naming every id of ``centers`` not in ``known``."""
    unknown = [c for c in _ids(centers) if c not in known]
    if unknown:
        names = ", ".join(repr(c) for c in unknown)
        raise UnknownCenters(
            f"unknown center(s) {names}: not in scenario {scenario!r} "
            f"(see: suanwang scenario show {scenario})"
        )


def grant_centers(
    *,
    session: Session,
    tenant: Tenant,
    centers: Iterable[str],
    now: datetime,
    known: Collection[str] | None = None,
    scenario: str = "",
) -> list[str]:
    """Make ``tenant`` (a provider) the owner of ``centers`` from ``now``; returns all centers
    it now owns.

    Granting a center the tenant already owns changes nothing. Raises :class:`NotAProvider`,
    :class:`UnknownCenters` (when ``known`` is given) or :class:`CenterTaken` naming each
    center another provider owns and that provider; nothing is granted then.
    """
    ids = _ids(centers)
    if tenant.tenant_role is not TenantRole.PROVIDER:
        raise NotAProvider(f"tenant {tenant.name!r} is a {tenant.role}: only providers own centers")
    if known is not None:
        check_known(ids, known, scenario)
    rows = session.execute(
        select(CenterOwner.center_id, Tenant.id, Tenant.name)
        .join(Tenant, Tenant.id == CenterOwner.tenant_id)
        .where(CenterOwner.center_id.in_(ids))
    ).all()
    taken = {c: name for c, tid, name in rows if tid != tenant.id}
    if taken:
        raise CenterTaken(_taken_message(taken))
    mine = {c for c, tid, _ in rows if tid == tenant.id}
    try:
        with session.begin_nested():  # a concurrent grant of the same center loses here
            for c in ids:
                if c not in mine:
                    session.add(CenterOwner(center_id=c, tenant_id=tenant.id, granted_at=now))
    except IntegrityError:
        owners = session.execute(
            select(CenterOwner.center_id, Tenant.name)
            .join(Tenant, Tenant.id == CenterOwner.tenant_id)
            .where(CenterOwner.center_id.in_(ids), CenterOwner.tenant_id != tenant.id)
        ).all()
        raise CenterTaken(_taken_message({c: name for c, name in owners})) from None
    return owned_centers(session=session, tenant=tenant)


def _taken_message(taken: dict[str, str]) -> str:
    parts = ", ".join(f"{c!r} (owned by {name!r})" for c, name in sorted(taken.items()))
    return f"center(s) already owned by another provider: {parts}; revoke them there first"


def revoke_centers(*, session: Session, tenant: Tenant, centers: Iterable[str]) -> list[str]:
    """Give up ownership of ``centers``; returns the centers ``tenant`` still owns.

    Raises :class:`NotOwned` naming every center ``tenant`` does not own (nothing changes).
    """
    ids = _ids(centers)
    mine = set(owned_centers(session=session, tenant=tenant))
    missing = [c for c in ids if c not in mine]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise NotOwned(f"tenant {tenant.name!r} does not own center(s) {names}")
    if ids:
        session.execute(
            delete(CenterOwner).where(
                CenterOwner.tenant_id == tenant.id, CenterOwner.center_id.in_(ids)
            )
        )
        session.flush()
    return owned_centers(session=session, tenant=tenant)


def find_tenant(*, session: Session, name_or_id: str) -> Tenant | None:
    """The tenant with this name, or else with this id."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == name_or_id.strip()))
    if tenant is None:
        tenant = session.get(Tenant, name_or_id.strip())
    return tenant
