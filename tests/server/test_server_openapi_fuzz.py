"""Schemathesis over the OpenAPI document: generated requests never get a 5xx.

Every operation gets a few schema-valid (positive) and schema-invalid (negative) requests with
a valid key. Besides "no server error", responses must use documented status codes, content
types and schemas; invalid requests must be refused. Two outcomes are legitimate although the
schema cannot say so, and are allowed precisely: a 413 for a schema-valid body that is over
64 KiB once encoded, and a 422 of type ``scenario`` (a combination the scenario rules out, e.g.
an Ascend card without the ``cann`` stack), ``invalid_cursor`` (a cursor we never issued) or
``idempotency_conflict`` (a generated key reused for a different spec).
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = 10
ALWAYS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
CONFIG = {
    "checks": {
        "positive_data_acceptance": {"expected-statuses": ["2xx", 401, 403, 404, 409, 413]},
        "negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 409, 413, 422]},
    }
}


#: 422 error types for what a schema cannot express: scenario rules, cursors not issued by us,
#: an Idempotency-Key the generator reused for another spec, an instant relative to now (a
#: key's expiry in the past).
SEMANTIC = frozenset({"scenario", "invalid_cursor", "idempotency_conflict", "instant_out_of_range"})


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
        checks = list(ALWAYS)
        if not positive:
            if not _void_negation(case):
                checks.append(negative_data_rejection)
        elif not _semantic_rejection(response):
            checks.append(positive_data_acceptance)
        case.validate_response(response, checks=checks)

    check()


def test_generated_requests_never_get_a_server_error(
    client: Any, app: Any, alice: Any, submit: Any
) -> None:
    job_id = submit(alice)["id"]
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", app, config=SchemathesisConfig.from_dict(CONFIG)
    )
    ran = 0
    try:
        for result in schema.get_all_operations():
            op = result.ok()
            has_input = any(len(p) for p in (op.path_parameters, op.query, op.headers, op.body))
            _fuzz(op, GenerationMode.POSITIVE, alice.headers, job_id)
            ran += 1
            if has_input:
                _fuzz(op, GenerationMode.NEGATIVE, alice.headers, job_id)
                ran += 1
    finally:
        # schemathesis keeps the app's lifespan open until exit; end it with the test
        shutdown_lifespans()
    assert ran >= 10  # every operation, both modes where there is input
