"""Schemathesis over the OpenAPI document, with every one of its checks, for every role.

Every operation gets a few schema-valid (positive) and schema-invalid (negative) requests with
a consumer's, a provider's and an operator's key, and every check schemathesis has looks at the
answers: no server error; documented status codes, content types, headers and schemas;
schema-valid requests accepted and invalid ones refused; a missing required header refused;
an undocumented method answered 405 with a correct ``Allow``; authentication enforced (the
request again without a key and with a wrong one); and the stateful checks (use after free,
resource availability, object-level authorization), which look at what they can.

Outcomes that are legitimate although the schema cannot say so are allowed precisely: a 413
for a schema-valid body over 64 KiB once encoded; a 403 for a role that may not use the
operation (or a center that is not the provider's); a 404 or 409 for something that does not
exist or not in that state; and a 422 whose every error is of a type in :data:`SEMANTIC`
(rules relating a field to another, to stored data, the scenario or the clock, which JSON
Schema cannot state). Every rule of a single field is in the schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pinned import NOW
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from sqlalchemy.orm import Session, sessionmaker

from suanwang.server.database.models import Tenant, TenantRole
from suanwang.server.models.centers import grant_centers

EXAMPLES = 6
CONFIG = {
    "checks": {
        "positive_data_acceptance": {"expected-statuses": ["2xx", 401, 403, 404, 409, 413]},
        "negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 409, 413, 422]},
    }
}


def _all_checks() -> list[Any]:
    load_all_checks()
    checks = CHECKS.get_all()
    assert len(checks) >= 14  # every built-in check, not a chosen few
    return checks


#: 422 error types for rules a JSON Schema cannot express, because they relate a field to
#: another field, to stored data, to the scenario or to the clock (every rule of a field alone
#: is in the schema, and a 422 of any other type fails the test):
#: ``scenario`` (a combination the scenario rules out, e.g. an Ascend card without the ``cann``
#: stack, or an offer for a center or model it does not have), ``invalid_cursor`` (a cursor we
#: never issued), ``idempotency_conflict`` (a generated key reused for another spec),
#: ``instant_out_of_range`` (an instant relative to now: a key's expiry or an offer's end in
#: the past), ``invalid_window`` (an offer's or reservation's end not after its start, or more
#: than 366 days later), ``offer_mismatch`` (a booking that does not fit its offer) and ``app``
#: (an app's parameters and template checked against each other and the scenario, a run's
#: parameters against the app's declarations).
SEMANTIC = frozenset(
    {
        "scenario",
        "invalid_cursor",
        "idempotency_conflict",
        "instant_out_of_range",
        "invalid_window",
        "offer_mismatch",
        "app",
    }
)


def _semantic_rejection(response: Any) -> bool:
    if response.status_code != 422:
        return False
    return all(e.get("type") in SEMANTIC for e in response.json()["detail"])


def _void_negation(case: Any) -> bool:
    """A negative case whose only negations cannot reach the app as invalid data: headers are
    replaced by a valid key (``case.call(headers=...)``). Query parameters are all checked:
    the API refuses one it does not declare, or one given twice."""
    negated = {
        loc.value
        for loc, info in (case.meta.components if case.meta else {}).items()
        if info.mode is GenerationMode.NEGATIVE
    }
    return bool(negated) and negated <= {"header", "cookie"}


def _fuzz(op: Any, mode: GenerationMode, headers: dict[str, str], job_id: str) -> None:
    positive = mode is GenerationMode.POSITIVE
    every = _all_checks()

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        if positive and case.path_parameters and "job_id" in case.path_parameters:
            case.path_parameters["job_id"] = job_id  # exercise a job that exists
        response = case.call(headers=headers)
        excluded = []
        if positive and _semantic_rejection(response):
            excluded.append(positive_data_acceptance)
        if not positive and _void_negation(case):
            excluded.append(negative_data_rejection)
        case.validate_response(response, checks=every, excluded_checks=excluded, headers=headers)

    check()


ROLES = [TenantRole.CONSUMER, TenantRole.PROVIDER, TenantRole.OPERATOR]


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
def test_generated_requests_pass_every_check(
    client: Any,
    app: Any,
    make_tenant: Callable[..., Any],
    sessions: sessionmaker[Session],
    alice: Any,
    submit: Any,
    role: TenantRole,
) -> None:
    job_id = submit(alice)["id"]
    who = alice if role is TenantRole.CONSUMER else make_tenant(role)
    if role is TenantRole.PROVIDER:  # a provider with centers: offers for them are its own
        with sessions() as session:
            tenant = session.get_one(Tenant, who.id)
            grant_centers(session=session, tenant=tenant, centers=["wuhu", "zhongwei"], now=NOW)
            session.commit()
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", app, config=SchemathesisConfig.from_dict(CONFIG)
    )
    ran = 0
    try:
        for result in schema.get_all_operations():
            op = result.ok()
            has_input = any(len(p) for p in (op.path_parameters, op.query, op.headers, op.body))
            _fuzz(op, GenerationMode.POSITIVE, who.headers, job_id)
            ran += 1
            if has_input:
                _fuzz(op, GenerationMode.NEGATIVE, who.headers, job_id)
                ran += 1
    finally:
        # schemathesis keeps the app's lifespan open until exit; end it with the test
        shutdown_lifespans()
    assert ran >= 10  # every operation, both modes where there is input
