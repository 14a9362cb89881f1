"""Who may use how much: cohorts, tenants' quotas, priority classes and budgets.

The model (docs/governance.md) in plain data. A **cohort** (a university, a company) holds
**tenants** (its labs, projects). Each tenant has a **nominal quota** in standard compute units
per hour (SCU/h), valid on any chip at that chip's speed, optionally capped per accelerator
family (vendor) or per hub; a **borrowing limit** (how much of its cohort's unused quota it may
use beyond its own), a **lending limit** (how much of its own unused quota its cohort mates may
borrow; None: all of it), a **weight** (its share of what is borrowed from the whole network)
and the priority **classes** it may submit. Budgets: a monthly cap and a maximum spend per hour
(CNY), checked at submission.

Pure: :func:`check` lists what is inconsistent (field paths, nothing applied);
:mod:`suanwang.scheduling.fairshare` applies the rules; files are read by
:mod:`suanwang.scenarios.tenants`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal

from suanwang.core.jobs import Priority

#: defaults of the rules every tenant shares (docs/governance.md, "Rules")
HALF_LIFE_S = 24 * 3600.0
AGING_S = 6 * 3600.0
PROMOTE_AFTER_S = 24 * 3600.0
MAX_PREEMPTIONS_PER_ROUND = 64
PROTECT_AFTER_PREEMPTION_S = 1800.0


@dataclass(frozen=True, slots=True)
class TenantQuota:
    """One tenant's quota, classes and budget (rates in SCU per hour, money in CNY)."""

    name: str
    cohort: str
    quota_scu_per_h: float
    borrow_limit_scu_per_h: float = 0.0
    lend_limit_scu_per_h: float | None = None  # None: all its unused quota
    weight: float = 1.0
    classes: frozenset[Priority] = frozenset(Priority)
    family_caps_scu_per_h: Mapping[str, float] = field(default_factory=dict)
    hub_caps_scu_per_h: Mapping[str, float] = field(default_factory=dict)
    budget_cny_per_month: Decimal | None = None
    max_spend_cny_per_h: Decimal | None = None

    @property
    def lendable_scu_per_h(self) -> float:
        """The most of its quota its cohort mates may borrow."""
        if self.lend_limit_scu_per_h is None:
            return self.quota_scu_per_h
        return min(self.lend_limit_scu_per_h, self.quota_scu_per_h)


@dataclass(frozen=True, slots=True)
class Rules:
    """How the network shares: usage half-life, aging, preemption and its rate limit.

    ``half_life_s``: past usage counts half after this long. ``aging_s``: a job waiting this
    long is ordered as if its tenant stood one full entitlement lower (no job waits forever
    behind tenants with more standing). ``promote_after_s``: a ``batch`` job waiting this long
    is ordered with ``normal`` ones. ``preemption``: reclaim capacity for tenants under their
    nominal quota and for ``urgent`` work; at most ``max_preemptions_per_round`` runs per round,
    and a run that was preempted is protected for ``protect_s`` after it starts again (but
    for ``urgent`` claims and ``preemptible`` runs).
    """

    half_life_s: float = HALF_LIFE_S
    aging_s: float = AGING_S
    promote_after_s: float = PROMOTE_AFTER_S
    preemption: bool = True
    max_preemptions_per_round: int = MAX_PREEMPTIONS_PER_ROUND
    protect_s: float = PROTECT_AFTER_PREEMPTION_S


@dataclass(frozen=True, slots=True)
class Governance:
    """Cohorts and tenants (by name) and the rules. Tenants the file does not name get an
    equal share of what the named ones leave of the network's capacity (:meth:`with_tenants`),
    in their own one-tenant cohorts (``tenant:NAME``)."""

    tenants: Mapping[str, TenantQuota]
    rules: Rules = Rules()

    def cohorts(self) -> dict[str, tuple[str, ...]]:
        """Cohort name -> its tenants, in file order."""
        out: dict[str, list[str]] = {}
        for t in self.tenants.values():
            out.setdefault(t.cohort, []).append(t.name)
        return {c: tuple(names) for c, names in out.items()}

    def with_tenants(self, names: Iterable[str], capacity_scu_per_h: float) -> Governance:
        """This governance with every tenant of ``names`` it lacks added: each gets an equal
        share of the capacity the named quotas leave (0 if they take it all), may use every
        class and borrows nothing from a cohort (it may still use idle capacity)."""
        missing = sorted({n for n in names if n not in self.tenants})
        if not missing:
            return self
        left = max(capacity_scu_per_h - sum(t.quota_scu_per_h for t in self.tenants.values()), 0)
        each = left / len(missing)
        tenants = dict(self.tenants)
        for n in missing:
            tenants[n] = TenantQuota(name=n, cohort=f"tenant:{n}", quota_scu_per_h=each)
        return replace(self, tenants=tenants)


def equal_shares(names: Iterable[str], capacity_scu_per_h: float) -> Governance:
    """Every tenant of ``names`` with an equal share of the capacity (one cohort each)."""
    return Governance(tenants={}).with_tenants(names, capacity_scu_per_h)


def check(gov: Governance, families: Iterable[str], hubs: Iterable[str]) -> list[str]:
    """What is inconsistent, as ``path: message`` (``tenants.NAME.field``); empty when all is
    well. ``families`` and ``hubs``: the names caps may use."""
    problems: list[str] = []
    fam, hub = set(families), set(hubs)
    cohorts = gov.cohorts()
    for t in gov.tenants.values():
        at = f"tenants.{t.name}"
        for name in ("quota_scu_per_h", "borrow_limit_scu_per_h", "weight"):
            value = getattr(t, name)
            if not value >= 0:
                problems.append(f"{at}.{name}: must be >= 0, not {value}")
        if not t.weight > 0:
            problems.append(f"{at}.weight: must be > 0, not {t.weight}")
        if t.lend_limit_scu_per_h is not None and not t.lend_limit_scu_per_h >= 0:
            problems.append(f"{at}.lend_limit_scu_per_h: must be >= 0")
        others = sum(gov.tenants[m].lendable_scu_per_h for m in cohorts[t.cohort] if m != t.name)
        if t.borrow_limit_scu_per_h > others + 1e-9:
            problems.append(
                f"{at}.borrow_limit_scu_per_h: {t.borrow_limit_scu_per_h:g} is more than its "
                f"cohort {t.cohort!r} can lend ({others:g} SCU/h from the other tenants)"
            )
        if not t.classes:
            problems.append(f"{at}.classes: at least one class")
        for caps, known, what in (
            (t.family_caps_scu_per_h, fam, "families"),
            (t.hub_caps_scu_per_h, hub, "hubs"),
        ):
            for key, cap in caps.items():
                if key not in known:
                    problems.append(
                        f"{at}.caps.{what}.{key}: unknown (known: {', '.join(sorted(known))})"
                    )
                elif not cap >= 0:
                    problems.append(f"{at}.caps.{what}.{key}: must be >= 0, not {cap}")
        for name in ("budget_cny_per_month", "max_spend_cny_per_h"):
            value = getattr(t, name)
            if value is not None and not value >= 0:
                problems.append(f"{at}.{name}: must be >= 0, not {value}")
    r = gov.rules
    for name in ("half_life_s", "aging_s", "promote_after_s"):
        if not getattr(r, name) > 0:
            problems.append(f"rules.{name}: must be > 0")
    if r.max_preemptions_per_round < 0:
        problems.append("rules.max_preemptions_per_round: must be >= 0")
    if not r.protect_s >= 0:
        problems.append("rules.protect_s: must be >= 0")
    return problems
