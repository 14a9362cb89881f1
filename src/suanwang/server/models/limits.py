"""What a tenant's quota settings refuse at submission: a class it may not use, and work that
would take it over its monthly budget or its maximum spend per hour (docs/governance.md).

Checked in the transaction that stores the job (the submitter's), so a refused job is never
stored. Running work is never stopped by a budget: only new submissions are refused.

* **classes**: a job of a class the tenant may not submit (its ``priority``, or the default
  for its kind) is refused (:class:`ClassNotAllowed`, 403);
* **monthly budget**: its charges this month (UTC; the month's invoice total) plus the
  estimated charges of its jobs not settled yet (active or pending) plus this job's
  estimate must stay within ``budget_cny_per_month`` (:class:`OverBudget`, 402, by how much);
* **spend per hour**: the estimated spend per hour of its active and pending jobs (each one's
  estimated charge over its duration on the reference chip) plus this job's must stay within
  ``max_spend_cny_per_h`` (:class:`OverBudget`).

Estimates are the hold estimate of billing (:func:`~suanwang.server.models.billing.holds.
hold_estimate`: posted prices, the dearest link; a ``preemptible`` job's at the idle price),
the same a prepaid tenant's hold is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.billing.money import cents
from suanwang.billing.pricing import PriceBook
from suanwang.core.jobs import Priority
from suanwang.core.lifecycle import JobState
from suanwang.core.network import Network
from suanwang.server.database.models import JobRow, Tenant, TenantQuotaRow
from suanwang.server.models.billing import holds
from suanwang.server.models.billing.config import admission_config
from suanwang.server.models.billing.metering import is_preemptible
from suanwang.server.models.billing.statements import invoice
from suanwang.server.models.billing.trading import price_book
from suanwang.server.models.governance import get_quota
from suanwang.server.schemas import JobSpec

#: jobs whose charge is still to come
UNSETTLED = (JobState.PENDING, JobState.SCHEDULED, JobState.RUNNING, JobState.MIGRATING)


class ClassNotAllowed(PermissionError):
    """The tenant may not submit work of this class."""

    def __init__(self, priority: str, allowed: list[str]) -> None:
        super().__init__(
            f"your quota does not allow {priority!r} work (allowed: {', '.join(allowed)}); "
            "give another priority, or ask an operator"
        )
        self.priority = priority
        self.allowed = allowed


class OverBudget(ValueError):
    """The job would take the tenant over its budget (``limit``: which one) by ``excess``."""

    def __init__(self, limit: str, cap: Decimal, would_be: Decimal, estimate: Decimal) -> None:
        self.limit, self.cap, self.would_be, self.estimate = limit, cap, would_be, estimate
        self.excess = would_be - cap
        what = "month's spend" if limit == "budget_cny_per_month" else "spend per hour"
        super().__init__(
            f"this job (estimated {estimate} CNY{'/h' if limit != 'budget_cny_per_month' else ''}"
            f") would take your {what} to {would_be} CNY, {self.excess} CNY over your "
            f"{limit} of {cap} CNY"
        )


def has_limits(session: Session, tenant_ids: set[str]) -> set[str]:
    """Of ``tenant_ids``, those with a quota row (whose submissions are checked one by one)."""
    if not tenant_ids:
        return set()
    rows = session.scalars(
        select(TenantQuotaRow.tenant_id).where(TenantQuotaRow.tenant_id.in_(tenant_ids))
    )
    return set(rows)


def _hours(job: JobRow) -> Decimal:
    spec = JobSpec.model_validate(job.spec)
    return Decimal(repr(spec.duration_s)) / 3600


def check_limits(
    *, session: Session, tenant: Tenant, job: JobRow, net: Network, now: datetime
) -> None:
    """Raise :class:`ClassNotAllowed` or :class:`OverBudget` if ``tenant``'s quota refuses
    ``job`` (just stored, in this transaction); nothing without a quota."""
    q = get_quota(session=session, tenant=tenant)
    if q is None:
        return
    spec = JobSpec.model_validate(job.spec)
    priority = spec.priority or Priority.default_for(spec.job_kind)
    if priority not in q.classes:
        allowed = [p.value for p in sorted(q.classes, key=lambda p: p.rank)]
        raise ClassNotAllowed(priority.value, allowed)
    if q.budget_cny_per_month is None and q.max_spend_cny_per_h is None:
        return
    others = list(
        session.scalars(
            select(JobRow).where(
                JobRow.tenant_id == tenant.id,
                JobRow.state.in_([s.value for s in UNSETTLED]),
                JobRow.id != job.id,
            )
        )
    )
    discount = admission_config(session=session).idle_discount
    offers: PriceBook | None = None  # idle_discount offers, for preemptible jobs only
    if any(is_preemptible(j.spec) for j in (job, *others)):
        offers = price_book(session=session, scenario=net.scenario, since=now)

    def hold_estimate(j: JobRow) -> Decimal:
        return holds.hold_estimate(job=j, net=net, idle_discount=discount, offers=offers)

    estimate = hold_estimate(job)
    if q.budget_cny_per_month is not None:
        month = now.astimezone(UTC).strftime("%Y-%m")
        settled = Decimal(invoice(session=session, tenant=tenant, period=month)["total_cny"])
        coming = sum((hold_estimate(o) for o in others), Decimal(0))
        would_be = cents(settled + coming + estimate)
        if would_be > q.budget_cny_per_month:
            raise OverBudget("budget_cny_per_month", q.budget_cny_per_month, would_be, estimate)
    if q.max_spend_cny_per_h is not None:
        per_h = cents(estimate / _hours(job))
        rate = sum((hold_estimate(o) / _hours(o) for o in others), Decimal(0))
        would_be = cents(rate + per_h)
        if would_be > q.max_spend_cny_per_h:
            raise OverBudget("max_spend_cny_per_h", q.max_spend_cny_per_h, would_be, per_h)
