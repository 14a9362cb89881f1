"""Load and check a tenants file (cohorts, tenants' quotas, classes, budgets, the rules) into
a :class:`~suanwang.core.governance.Governance`.

The format is :mod:`suanwang.scenarios.tenants_schema` (docs/governance.md). Caps name the
scenario's accelerator families (the catalog's vendors) and hubs. Every problem is reported
with file, line and field (the YAML path, e.g. ``cohorts[0].tenants[1].weight``); loading
fails with :class:`TenantsError` listing all of them, and nothing is returned half-checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from suanwang.core.governance import Governance, Rules, TenantQuota, check
from suanwang.core.jobs import Priority
from suanwang.core.scenario import Scenario
from suanwang.scenarios.loader import (
    Problem,
    ScenarioError,
    _compose,
    _field,
    _line_of,
    duplicate_keys,
)
from suanwang.scenarios.tenants_schema import KNOWN_KEYS, TenantsFileSpec

__all__ = ["TenantsError", "cap_names", "load_tenants", "parse_tenants_text"]

Loc = tuple[str | int, ...]

#: The file's name of each rule :func:`~suanwang.core.governance.check` names.
_RULE_FIELDS = {
    "half_life_s": "half_life_h",
    "aging_s": "aging_h",
    "promote_after_s": "promote_after_h",
    "protect_s": "protect_min",
}


class TenantsError(ValueError):
    """A tenants file is malformed; ``problems`` lists everything found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def cap_names(scenario: Scenario) -> tuple[frozenset[str], frozenset[str]]:
    """The names caps may use: the scenario's accelerator families (vendors) and hub ids."""
    return (
        frozenset(a.vendor for a in scenario.catalog.accelerators),
        frozenset(h.id for h in scenario.hubs),
    )


def load_tenants(path: Path, scenario: Scenario) -> Governance:
    """Read a tenants file for ``scenario``; raises :class:`TenantsError` with every problem."""
    file = str(path)
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise TenantsError([Problem(file, None, "", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise TenantsError(
            [Problem(file, None, "", f"not UTF-8 text (byte offset {exc.start})")]
        ) from None
    return parse_tenants_text(text, file, scenario)


def parse_tenants_text(text: str, file: str, scenario: Scenario) -> Governance:
    """Parse and check the text of a tenants file (``file`` labels the problems); raises
    :class:`TenantsError` with every problem."""
    try:
        data, node = _compose(text, file)
    except ScenarioError as exc:
        raise TenantsError(exc.problems) from None
    if data is None:
        raise TenantsError([Problem(file, 1, "", "empty file: expected cohorts (and rules)")])
    if not isinstance(data, dict):
        line = node.start_mark.line + 1 if node is not None else 1
        raise TenantsError(
            [Problem(file, line, "", "top level must be a mapping with cohorts (and rules)")]
        )
    problems = [Problem(file, line, _field(loc), msg) for loc, line, msg in duplicate_keys(node)]
    try:
        spec = TenantsFileSpec.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            problems.append(Problem(file, _line_of(node, loc), _field(loc), _message(err)))
        raise TenantsError(_in_file_order(problems)) from None

    def at(loc: Loc, message: str) -> None:
        problems.append(Problem(file, _line_of(node, loc), _field(loc), message))

    gov, where, partial = _build(spec, at)
    families, hubs = cap_names(scenario)
    for found in check(gov, families, hubs):
        loc, message = _loc_of(found, where)
        if loc[-1] == "borrow_limit_scu_per_h" and loc[:2] in partial:
            continue  # what its cohort lends is not known while a tenant is named twice
        at(loc, message)
    if problems:
        raise TenantsError(_in_file_order(problems))
    return gov


# --------------------------------------------------------------------------- build


def _build(
    spec: TenantsFileSpec, at: Callable[[Loc, str], None]
) -> tuple[Governance, dict[str, Loc], set[Loc]]:
    """The governance of a schema-valid file (a repeated name: its first entry), where each
    tenant is in the file and the cohorts (``("cohorts", i)``) that lost a tenant named
    twice; repeated names are reported through ``at(loc, message)``."""
    tenants: dict[str, TenantQuota] = {}
    where: dict[str, Loc] = {}
    partial: set[Loc] = set()
    cohorts: dict[str, int] = {}
    for i, c in enumerate(spec.cohorts):
        if c.name in cohorts:
            first_at = f"cohorts[{cohorts[c.name]}]"
            at(("cohorts", i, "name"), f"cohort {c.name!r} is named twice (first: {first_at})")
        cohorts.setdefault(c.name, i)
        for j, t in enumerate(c.tenants):
            loc: Loc = ("cohorts", i, "tenants", j)
            if t.name in where:
                first = tenants[t.name].cohort
                at(
                    (*loc, "name"),
                    f"tenant {t.name!r} is named twice (first in cohort {first!r}: "
                    f"{_field(where[t.name])})",
                )
                partial.add(("cohorts", i))
                continue
            where[t.name] = loc
            tenants[t.name] = TenantQuota(
                name=t.name,
                cohort=c.name,
                quota_scu_per_h=t.quota_scu_per_h,
                borrow_limit_scu_per_h=t.borrow_limit_scu_per_h,
                lend_limit_scu_per_h=t.lend_limit_scu_per_h,
                weight=t.weight,
                classes=frozenset(Priority) if t.classes is None else frozenset(t.classes),
                family_caps_scu_per_h=dict(t.caps.families),
                hub_caps_scu_per_h=dict(t.caps.hubs),
                budget_cny_per_month=t.budget_cny_per_month,
                max_spend_cny_per_h=t.max_spend_cny_per_h,
            )
    r = spec.rules
    rules = Rules(
        half_life_s=r.half_life_h * 3600,
        aging_s=r.aging_h * 3600,
        promote_after_s=r.promote_after_h * 3600,
        preemption=r.preemption,
        max_preemptions_per_round=r.max_preemptions_per_round,
        protect_s=r.protect_min * 60,
    )
    return Governance(tenants=tenants, rules=rules), where, partial


# --------------------------------------------------------------------------- problems


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: p.line or 0)


def _message(err: Mapping[str, Any]) -> str:
    """Pydantic's message, without its ``Value error,`` prefix; unknown keys with the known."""
    if err["type"] == "value_error":
        return str(err["ctx"]["error"])
    if err["type"] == "extra_forbidden":
        known = KNOWN_KEYS.get(tuple(k for k in err["loc"][:-1] if isinstance(k, str)))
        return f"unknown key (known: {', '.join(known)})" if known else "unknown key"
    return str(err["msg"])


def _loc_of(found: str, where: Mapping[str, Loc]) -> tuple[Loc, str]:
    """The file path and message of a :func:`~suanwang.core.governance.check` problem
    (``tenants.NAME.field: message`` or ``rules.field: message``)."""
    if found.startswith("tenants."):
        names = [n for n in where if found.startswith(f"tenants.{n}.")]
        if names:
            name = max(names, key=len)
            path, _, message = found[len(f"tenants.{name}.") :].partition(": ")
            head, _, rest = path.partition(".")
            if head == "caps" and rest:
                kind, _, key = rest.partition(".")
                return (*where[name], "caps", kind, key), message
            return (*where[name], path), message
    if found.startswith("rules."):
        path, _, message = found[len("rules.") :].partition(": ")
        return ("rules", _RULE_FIELDS.get(path, path)), message
    path, _, message = found.partition(": ")
    return (path,), message
