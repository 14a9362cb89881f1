"""Tenants' compute quotas, classes and budgets as operators set them (docs/governance.md,
"Administration"): the stored :class:`~suanwang.core.governance.Governance`, its changes (each
checked whole with :func:`~suanwang.core.governance.check`, each recorded) and what a tenant
uses against its quota now.

Functions take ``session=`` and ``now=``, flush and never commit. Writes are serialised (the
whole governance is checked, and two writes to one cohort must not each pass alone): on
PostgreSQL by an advisory lock held to the end of the transaction, on SQLite by its write lock
(every transaction is ``BEGIN IMMEDIATE``).

The dispatcher reads :func:`load_governance` at each round (through :class:`GovernanceReader`,
which builds it again only when the stored rows changed), so a change takes effect at the next
round.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import String, and_, cast, or_, select, text
from sqlalchemy.orm import Session

from suanwang.core.governance import Governance, TenantQuota, check
from suanwang.core.jobs import Priority
from suanwang.core.lifecycle import JobState
from suanwang.core.network import PRECISION_INDEX, Network, UnknownName
from suanwang.core.scenario import Scenario
from suanwang.scenarios.tenants import cap_names
from suanwang.scheduling.fairshare import Shares
from suanwang.scheduling.queue import pool_families, pool_hubs
from suanwang.server.database.models import JobRow, QuotaChange, Tenant, TenantQuotaRow
from suanwang.server.models.billing.statements import invoice
from suanwang.server.models.job_specs import spec_to_job
from suanwang.server.models.quota_settings import SCALE, QuotaSettings, settings_json
from suanwang.server.schemas import JobSpec

#: Key of the PostgreSQL advisory lock that serialises quota writes ("QUOT").
LOCK_KEY = 0x51554F54
#: The most changes one listing returns.
MAX_CHANGES = 1000


# --------------------------------------------------------------------------- rows


def _quota_of(row: TenantQuotaRow, name: str) -> TenantQuota:
    lend = row.lend_limit_scu_per_h
    return TenantQuota(
        name=name,
        cohort=row.cohort,
        quota_scu_per_h=float(row.quota_scu_per_h),
        borrow_limit_scu_per_h=float(row.borrow_limit_scu_per_h),
        lend_limit_scu_per_h=None if lend is None else float(lend),
        weight=float(row.weight),
        classes=frozenset(p for p in Priority if p.value in row.classes),
        family_caps_scu_per_h={k: float(v) for k, v in row.family_caps.items()},
        hub_caps_scu_per_h={k: float(v) for k, v in row.hub_caps.items()},
        budget_cny_per_month=row.budget_cny_per_month,
        max_spend_cny_per_h=row.max_spend_cny_per_h,
    )


def _exact(x: float) -> Decimal:
    return Decimal(repr(x)).quantize(SCALE)


def _write(row: TenantQuotaRow, q: TenantQuota) -> None:
    s = settings_json(q)
    row.cohort = q.cohort
    row.quota_scu_per_h = _exact(q.quota_scu_per_h)
    row.borrow_limit_scu_per_h = _exact(q.borrow_limit_scu_per_h)
    lend = q.lend_limit_scu_per_h
    row.lend_limit_scu_per_h = None if lend is None else _exact(lend)
    row.weight = _exact(q.weight)
    row.classes = s["classes"]
    row.family_caps = s["caps"]["families"]
    row.hub_caps = s["caps"]["hubs"]
    row.budget_cny_per_month = q.budget_cny_per_month
    row.max_spend_cny_per_h = q.max_spend_cny_per_h


# --------------------------------------------------------------------------- reading


def _configured(session: Session) -> list[tuple[TenantQuotaRow, str]]:
    """Every quota row with its tenant's name, by name."""
    stmt = (
        select(TenantQuotaRow, Tenant.name)
        .join(Tenant, Tenant.id == TenantQuotaRow.tenant_id)
        .order_by(Tenant.name)
    )
    return [(row, name) for row, name in session.execute(stmt)]


def load_governance(session: Session) -> Governance | None:
    """Every tenant with a quota, by tenant name, with the default rules; None when no tenant
    has one (the dispatcher then shares as it did before quotas)."""
    tenants = {name: _quota_of(row, name) for row, name in _configured(session)}
    return Governance(tenants=tenants) if tenants else None


@dataclass
class GovernanceReader:
    """:func:`load_governance` for a dispatcher's rounds, kept while the stored settings stay:
    each call reads every quota row and its tenant's name as stored text (no parsing, no
    objects) and builds the governance again only when that differs from the last call's.
    Any change, through the API or written to the tables otherwise, changes that text, so a
    round sees every change as it would reading :func:`load_governance`."""

    _seen: list[tuple[str | None, ...]] | None = field(default=None, init=False, repr=False)
    _gov: Governance | None = field(default=None, init=False, repr=False)

    def __call__(self, session: Session) -> Governance | None:
        cols = [cast(c, String) for c in TenantQuotaRow.__table__.columns]
        stmt = (
            select(Tenant.name, *cols)
            .join(Tenant, Tenant.id == TenantQuotaRow.tenant_id)
            .order_by(Tenant.name, TenantQuotaRow.tenant_id)
        )
        seen = [tuple(r) for r in session.execute(stmt)]
        if seen != self._seen:
            self._gov, self._seen = load_governance(session), seen
        return self._gov


def get_quota(*, session: Session, tenant: Tenant) -> TenantQuota | None:
    row = session.get(TenantQuotaRow, tenant.id)
    return None if row is None else _quota_of(row, tenant.name)


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True, slots=True)
class Problem:
    """What :func:`~suanwang.core.governance.check` found wrong with one tenant's setting
    (``field``: ``quota_scu_per_h``, ``caps.families.nvidia``, ...)."""

    tenant: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"tenants.{self.tenant}.{self.field}: {self.message}"


class QuotaRefused(ValueError):
    """A change that would leave the governance inconsistent; nothing was written.
    ``problems`` are the setting's own, and other tenants' it would make wrong."""

    def __init__(self, tenant: str, problems: list[Problem]) -> None:
        self.tenant = tenant
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class NoQuota(LookupError):
    """The tenant has no quota to remove."""


def _lock(session: Session) -> None:
    """Serialise quota writes to the end of the transaction (SQLite: its write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})


def _parse(found: str, names: Collection[str]) -> Problem | None:
    """A ``tenants.NAME.field: message`` of :func:`check` (the longest name that fits: names
    may hold dots); None for anything else."""
    fits = [n for n in names if found.startswith(f"tenants.{n}.")]
    if not fits:
        return None
    name = max(fits, key=len)
    path, _, message = found[len(f"tenants.{name}.") :].partition(": ")
    return Problem(name, path, message)


def _problems(tenants: Mapping[str, TenantQuota], scenario: Scenario) -> list[Problem]:
    families, hubs = cap_names(scenario)
    found = (_parse(p, tenants) for p in check(Governance(tenants=tenants), families, hubs))
    return [p for p in found if p is not None]


def _checked(
    before: Mapping[str, TenantQuota],
    after: Mapping[str, TenantQuota],
    tenant: str,
    scenario: Scenario,
) -> None:
    """Raise :class:`QuotaRefused` when ``after`` has problems with ``tenant``'s settings, or
    with another tenant's setting that was sound ``before`` (what was already wrong elsewhere,
    e.g. a cap on a hub the scenario no longer has, does not block fixing this tenant)."""
    wrong_before = {(p.tenant, p.field) for p in _problems(before, scenario)}
    problems = [
        p
        for p in _problems(after, scenario)
        if p.tenant == tenant or (p.tenant, p.field) not in wrong_before
    ]
    if problems:
        raise QuotaRefused(tenant, problems)


def _audit(q: TenantQuota | None) -> dict[str, Any] | None:
    return None if q is None else {"tenant": q.name, **settings_json(q)}


def set_quota(
    *,
    session: Session,
    now: datetime,
    by: Tenant,
    tenant: Tenant,
    fields: QuotaSettings,
    scenario: Scenario,
) -> tuple[TenantQuota, bool]:
    """Create or replace ``tenant``'s quota (``by``: the operator); ``(quota, written)``.

    The whole resulting governance is checked first (:class:`QuotaRefused` with every
    problem, nothing written): e.g. a borrowing limit above what the cohort's other tenants
    lend, a cap on a family or hub the scenario does not have, or a change that leaves
    another tenant borrowing more than its cohort can lend. Setting what is already set
    writes nothing (``written`` False, no change recorded); otherwise a ``quota_changes`` row
    records the settings before and after."""
    _lock(session)
    rows = {name: row for row, name in _configured(session)}
    current = {name: _quota_of(row, name) for name, row in rows.items()}
    new = fields.quota(tenant.name)
    old = current.get(tenant.name)
    if old is not None and settings_json(old) == settings_json(new):
        return old, False
    _checked(current, {**current, tenant.name: new}, tenant.name, scenario)
    row = rows.get(tenant.name)
    if row is None:
        row = TenantQuotaRow(tenant_id=tenant.id)
        session.add(row)
    _write(row, new)
    row.updated_at = now
    row.updated_by = by.id
    session.add(
        QuotaChange(
            at=now, by_tenant_id=by.id, tenant_id=tenant.id, before=_audit(old), after=_audit(new)
        )
    )
    session.flush()
    return new, True


def remove_quota(
    *, session: Session, now: datetime, by: Tenant, tenant: Tenant, scenario: Scenario
) -> TenantQuota:
    """Remove ``tenant``'s quota (``by``: the operator), recorded; the removed quota.
    :class:`NoQuota` if it has none; :class:`QuotaRefused` if the others would be left
    inconsistent (a cohort mate borrowing what it lent)."""
    _lock(session)
    rows = {name: row for row, name in _configured(session)}
    row = rows.get(tenant.name)
    if row is None:
        raise NoQuota(f"tenant {tenant.name!r} has no quota")
    current = {name: _quota_of(r, name) for name, r in rows.items()}
    old = current[tenant.name]
    rest = {name: q for name, q in current.items() if name != tenant.name}
    _checked(current, rest, tenant.name, scenario)
    session.delete(row)
    session.add(
        QuotaChange(at=now, by_tenant_id=by.id, tenant_id=tenant.id, before=_audit(old), after=None)
    )
    session.flush()
    return old


def quota_changes(
    *, session: Session, tenant: Tenant | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The record of quota changes, newest first (``tenant``: only its own), with the names
    of the operator and the tenant (the ids when a tenant no longer exists)."""
    stmt = select(QuotaChange).order_by(QuotaChange.at.desc(), QuotaChange.id.desc())
    if tenant is not None:
        stmt = stmt.where(QuotaChange.tenant_id == tenant.id)
    changes = list(session.scalars(stmt.limit(max(1, min(limit, MAX_CHANGES)))))
    ids = {c.by_tenant_id for c in changes} | {c.tenant_id for c in changes}
    names = dict(session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(ids))).all())
    out = []
    for c in changes:
        recorded = c.after or c.before or {}
        action = "created" if c.before is None else "removed" if c.after is None else "updated"
        out.append(
            {
                "id": c.id,
                "at": c.at.isoformat(),
                "by": names.get(c.by_tenant_id, c.by_tenant_id),
                "by_id": c.by_tenant_id,
                "tenant": names.get(c.tenant_id, recorded.get("tenant", c.tenant_id)),
                "tenant_id": c.tenant_id,
                "action": action,
                "before": c.before,
                "after": c.after,
            }
        )
    return out


# --------------------------------------------------------------------------- usage now


@dataclass
class Use:
    """What a tenant's runs hold now: SCU/h in all, by accelerator family and by hub."""

    rate_scu_per_h: float = 0.0
    jobs: int = 0
    families: dict[str, float] = field(default_factory=dict)
    hubs: dict[str, float] = field(default_factory=dict)


def rates_now(
    *, session: Session, net: Network, tenant_ids: Collection[str] | None = None
) -> dict[str, Use]:
    """Tenant id -> the rate of its running and handed-over jobs: units times the speed of
    the pool each holds at the job's precision (SCU/h). Jobs this scenario cannot cost (a
    center or model it lacks) are left out, as the dispatcher's capacity leaves them."""
    holds = or_(
        JobRow.state == JobState.RUNNING.value,
        and_(JobRow.state == JobState.SCHEDULED.value, JobRow.executor_ref.is_not(None)),
    )
    stmt = select(JobRow.tenant_id, JobRow.center_id, JobRow.pool_model, JobRow.spec).where(
        holds, JobRow.center_id.is_not(None)
    )
    if tenant_ids is not None:
        stmt = stmt.where(JobRow.tenant_id.in_(list(tenant_ids)))
    out: dict[str, Use] = {}
    families: tuple[str, ...] | None = None
    hubs: tuple[str | None, ...] = ()
    for tenant_id, center, model, spec in session.execute(stmt):
        try:
            job = spec_to_job(JobSpec.model_validate(spec), net, job_id="", submit_s=0.0, labels={})
        except (ValueError, UnknownName):
            continue
        pool = net.pool_of_run(center or "", model or "", cpu_only=job.cards == 0)
        if pool is None:
            continue
        if families is None:
            families, hubs = pool_families(net), pool_hubs(net)
        rate = job.demand_units * float(net.pool_speed[pool, PRECISION_INDEX[job.precision]])
        use = out.setdefault(tenant_id, Use())
        use.rate_scu_per_h += rate
        use.jobs += 1
        use.families[families[pool]] = use.families.get(families[pool], 0.0) + rate
        hub = hubs[pool]
        if hub is not None:
            use.hubs[hub] = use.hubs.get(hub, 0.0) + rate
    return out


def _view(
    session: Session,
    tenant: Tenant,
    row: TenantQuotaRow,
    use: Use,
    now: datetime,
    names: Mapping[str, str],
) -> dict[str, Any]:
    q = _quota_of(row, tenant.name)
    rate = use.rate_scu_per_h
    month = now.astimezone(UTC).strftime("%Y-%m")
    used = Decimal(invoice(session=session, tenant=tenant, period=month)["total_cny"])
    budget = q.budget_cny_per_month
    return {
        "tenant": tenant.name,
        "tenant_id": tenant.id,
        "settings": settings_json(q),
        "entitlement_scu_per_h": Shares(Governance(tenants={q.name: q})).entitlement(q.name),
        "usage": {
            "rate_scu_per_h": round(rate, 6),
            "jobs": use.jobs,
            "usage_over_quota": round(rate / q.quota_scu_per_h, 6) if q.quota_scu_per_h else None,
            "borrowed_scu_per_h": round(max(0.0, rate - q.quota_scu_per_h), 6),
            "families": {k: round(v, 6) for k, v in sorted(use.families.items())},
            "hubs": {k: round(v, 6) for k, v in sorted(use.hubs.items())},
            "month": month,
            "budget_used_cny": str(used),
            "budget_left_cny": None if budget is None else str(budget - used),
        },
        "updated_at": row.updated_at.isoformat(),
        "updated_by": names.get(row.updated_by, row.updated_by),
    }


def quota_views(
    *, session: Session, now: datetime, network: Network, tenant: Tenant | None = None
) -> list[dict[str, Any]]:
    """The settings and usage now of every tenant with a quota, by name (``tenant``: only
    its own, an empty list when it has none). See :func:`quota_view`."""
    stmt = select(TenantQuotaRow, Tenant).join(Tenant, Tenant.id == TenantQuotaRow.tenant_id)
    if tenant is not None:
        stmt = stmt.where(TenantQuotaRow.tenant_id == tenant.id)
    pairs = list(session.execute(stmt.order_by(Tenant.name)))
    if not pairs:
        return []
    uses = rates_now(session=session, net=network, tenant_ids=[t.id for _, t in pairs])
    by_ids = {row.updated_by for row, _ in pairs}
    names = dict(session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(by_ids))).all())
    return [_view(session, t, row, uses.get(t.id, Use()), now, names) for row, t in pairs]


def quota_view(
    *, session: Session, tenant: Tenant, now: datetime, network: Network
) -> dict[str, Any] | None:
    """``tenant``'s settings and what it uses now (None: it has no quota): the rate of its
    running and handed-over jobs (SCU/h, in all and by family and hub), its entitlement
    (quota x weight, as fair share compares it), usage over quota, what it borrows beyond its
    quota (``max(0, rate - quota)``) and its charges this month (UTC; the month's invoice
    total: jobs settled, reservations paid, refunds) against its budget."""
    views = quota_views(session=session, now=now, network=network, tenant=tenant)
    return views[0] if views else None
