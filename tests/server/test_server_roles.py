"""Routes for operators (and for providers and operators) refuse other keys with one 403.

Each such route depends on a role check of ``server/api/deps.py`` (``operator_only`` or
``provider_or_operator``) instead of testing the role inline: the check runs before the body is
validated, so a refused key gets the same 403, with the route's own message, whatever JSON it
sends.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from suanwang.server import api
from suanwang.server.api.deps import RoleCheck
from suanwang.server.database.models import TenantRole

Who = Any  # conftest.Who: a tenant's id, role, key and auth headers

OPERATORS = "operators"
PROVIDERS_AND_OPERATORS = "providers and operators"
APP = {
    "id": "roles-app", "name": "Roles", "category": "Tests", "summary": "An app.",
    "parameters": [],
    "template": {"kind": "analytics", "stacks": ["cpu"], "resources": {"cpus": 1},
                 "duration_s": 60, "command": "echo hi"},
}  # fmt: skip
OFFER = {"center": "zhongwei", "model": "a100", "units": 8, "price_cny_per_scu": "3.00",
         "start": "2025-07-01T08:00+00:00", "end": "2025-07-01T10:00+00:00"}  # fmt: skip
#: A what-if run refused after the role check (the bound is for at most 5,000 jobs): an
#: operator's request gets past the check without starting a simulation.
WHATIF = {"jobs": 6000, "bound": True, "policies": ["nearest"]}

KEYS = "only operators may manage another tenant's keys"

#: (method, path, a valid body, who may, the refusal), for every route with a role check.
ROUTES: list[tuple[str, str, dict[str, Any] | None, str, str]] = [
    ("POST", "/v1/billing/topups", {"tenant": "someone", "amount_cny": "10"}, OPERATORS,
     "only operators may top up balances"),
    ("POST", "/v1/billing/payouts", {"provider": "someone"}, OPERATORS,
     "only operators may pay providers out"),
    ("POST", "/v1/billing/quotas", {"tenant": "someone", "card_hours": "1"}, OPERATORS,
     "only operators may grant quotas"),
    ("GET", "/v1/billing/settlements/2025-07", None, PROVIDERS_AND_OPERATORS,
     "settlements are for operators and providers"),
    ("POST", "/v1/centers/zhongwei/drain", {"reason": "maintenance"}, OPERATORS,
     "draining centers is for operators"),
    ("POST", "/v1/centers/zhongwei/undrain", None, OPERATORS, "draining centers is for operators"),
    ("GET", "/metrics", None, OPERATORS, "metrics are for operators"),
    ("POST", "/v1/whatif", WHATIF, OPERATORS, "what-if runs are for operators"),
    ("GET", "/v1/whatif", None, OPERATORS, "what-if runs are for operators"),
    ("GET", "/v1/whatif/scenarios", None, OPERATORS, "what-if runs are for operators"),
    ("GET", "/v1/whatif/scenarios/china/yaml", None, OPERATORS,
     "what-if runs are for operators"),
    ("GET", "/v1/whatif/some-run", None, OPERATORS, "what-if runs are for operators"),
    ("POST", "/v1/apps", APP, PROVIDERS_AND_OPERATORS,
     "publishing and changing apps is for providers and operators"),
    ("PUT", "/v1/apps/roles-app", APP, PROVIDERS_AND_OPERATORS,
     "publishing and changing apps is for providers and operators"),
    ("DELETE", "/v1/apps/roles-app", None, PROVIDERS_AND_OPERATORS,
     "publishing and changing apps is for providers and operators"),
    ("POST", "/v1/offers", OFFER, PROVIDERS_AND_OPERATORS,
     "publishing offers is for providers and operators"),
    ("PUT", "/v1/quotas/someone", {"cohort": "c", "quota_scu_per_h": 1}, OPERATORS,
     "only operators may set or remove quotas"),
    ("DELETE", "/v1/quotas/someone", None, OPERATORS, "only operators may set or remove quotas"),
    ("GET", "/v1/quotas/changes", None, OPERATORS,
     "the record of quota changes is for operators"),
    ("GET", "/v1/audit", None, OPERATORS, "the audit log is for operators"),
    ("GET", "/v1/cluster", None, OPERATORS, "the cluster's members are for operators"),
    ("GET", "/v1/tenants/someone/keys", None, OPERATORS, KEYS),
    ("POST", "/v1/tenants/someone/keys", {"name": "grafana"}, OPERATORS, KEYS),
    ("POST", "/v1/tenants/someone/keys/sw_abcdefgh/rotate", None, OPERATORS, KEYS),
    ("DELETE", "/v1/tenants/someone/keys/sw_abcdefgh", None, OPERATORS, KEYS),
]  # fmt: skip
#: The route templates of :data:`ROUTES` (the app names its paths so).
TEMPLATES = {
    "/v1/billing/settlements/2025-07": "/v1/billing/settlements/{period}",
    "/v1/centers/zhongwei/drain": "/v1/centers/{center_id}/drain",
    "/v1/centers/zhongwei/undrain": "/v1/centers/{center_id}/undrain",
    "/v1/whatif/scenarios/china/yaml": "/v1/whatif/scenarios/{scenario_id}/yaml",
    "/v1/whatif/some-run": "/v1/whatif/{run_id}",
    "/v1/apps/roles-app": "/v1/apps/{app_id}",
    "/v1/quotas/someone": "/v1/quotas/{tenant:path}",
    "/v1/tenants/someone/keys": "/v1/tenants/{tenant}/keys",
    "/v1/tenants/someone/keys/sw_abcdefgh/rotate": "/v1/tenants/{tenant}/keys/{prefix}/rotate",
    "/v1/tenants/someone/keys/sw_abcdefgh": "/v1/tenants/{tenant}/keys/{prefix}",
}


@pytest.fixture
def keys(make_tenant: Callable[..., Who]) -> Iterator[dict[TenantRole, Who]]:
    yield {role: make_tenant(role) for role in TenantRole}


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed", "refusal"),
    ROUTES,
    ids=[f"{method} {path}" for method, path, *_ in ROUTES],
)
def test_a_refused_key_gets_the_routes_403_whatever_it_sends(
    client: Any,
    keys: dict[TenantRole, Who],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    allowed: str,
    refusal: str,
) -> None:
    refused = [TenantRole.CONSUMER] + ([TenantRole.PROVIDER] if allowed == OPERATORS else [])
    for role in refused:
        for sent in (body, {"not": "a valid body"}):  # refused before the body is validated
            r = client.request(method, path, json=sent, headers=keys[role].headers)
            assert r.status_code == 403, (role, sent, r.text)
            assert r.json() == {"detail": refusal}
    # an allowed key gets past the check (whatever the route then answers)
    r = client.request(method, path, json=body, headers=keys[TenantRole.OPERATOR].headers)
    assert r.status_code != 403 or r.json()["detail"] != refusal, r.text
    if allowed == PROVIDERS_AND_OPERATORS:
        r = client.request(method, path, json=body, headers=keys[TenantRole.PROVIDER].headers)
        assert r.status_code != 403 or r.json()["detail"] != refusal, r.text


def _role_checks(dependant: Dependant) -> Iterator[RoleCheck]:
    for dep in dependant.dependencies:
        if isinstance(dep.call, RoleCheck):
            yield dep.call
        yield from _role_checks(dep)


def test_every_route_with_a_role_check_is_listed_above() -> None:
    """:data:`ROUTES` is every route of the API's routers that checks a role, with its roles
    and refusal."""
    found = {}
    for info in pkgutil.iter_modules(api.__path__):
        router = getattr(importlib.import_module(f"{api.__name__}.{info.name}"), "router", None)
        for route in router.routes if isinstance(router, APIRouter) else []:
            if not isinstance(route, APIRoute):
                continue
            for check in _role_checks(route.dependant):
                who = {frozenset({TenantRole.OPERATOR}): OPERATORS,
                       frozenset({TenantRole.PROVIDER, TenantRole.OPERATOR}):
                       PROVIDERS_AND_OPERATORS}[check.roles]  # fmt: skip
                for method in route.methods:
                    found[(method, route.path)] = (who, check.refusal)
    listed = {(m, TEMPLATES.get(p, p)): (who, refusal) for m, p, _, who, refusal in ROUTES}
    assert found == listed
