"""Schemathesis over the console's and the marketplace's operations with an operator's key.

``tests/server/test_server_openapi_fuzz.py`` fuzzes every operation with a consumer's key, which
the what-if routes and the app changes refuse (403) before they read the body. Here an
operator's key gets through, so generated scenarios, edits, traces and app specs reach the
checks: every answer is documented and none is a server error; an invalid request is refused.
Simulations are not run (the runner's thread is replaced): only checking the input is fuzzed.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from suanwang.core.scenario import Scenario
from suanwang.server.database.models import TenantRole
from suanwang.server.services.whatif import Run, WhatIfRunner

EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]  # fmt: skip
CONFIG = {
    "checks": {
        "negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 409, 413, 422]},
    }
}
PREFIXES = ("/v1/whatif", "/v1/apps")


def _no_simulation(self: WhatIfRunner, scenario: Scenario, job: Run) -> None:
    job.state, job.progress, job.step = "done", 1.0, "done"  # checked input, nothing simulated


def test_generated_console_requests_never_get_a_server_error(
    api_app: FastAPI, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WhatIfRunner, "_simulate", _no_simulation)
    api_app.state.whatif = WhatIfRunner(api_app.state.signals.clock)
    headers = tenant(TenantRole.OPERATOR).headers
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", api_app, config=SchemathesisConfig.from_dict(CONFIG)
    )
    ran: list[str] = []
    try:
        for result in schema.get_all_operations():
            op = result.ok()
            if not op.path.startswith(PREFIXES):
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(op, mode, headers)
            ran.append(f"{op.method.upper()} {op.path}")
    finally:
        shutdown_lifespans()
    for expected in ("POST /v1/whatif", "GET /v1/whatif/scenarios", "PUT /v1/apps/{app_id}",
                     "DELETE /v1/apps/{app_id}", "POST /v1/apps"):  # fmt: skip
        assert expected in ran, ran


def _fuzz(op: Any, mode: GenerationMode, headers: dict[str, str]) -> None:
    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def check(case: Any) -> None:
        response = case.call(headers=headers)
        checks = list(CHECKS)
        negated = {loc.value for loc, info in (case.meta.components if case.meta else {}).items()
                   if info.mode is GenerationMode.NEGATIVE}  # fmt: skip
        if mode is GenerationMode.NEGATIVE and negated - {"header", "cookie", "query"}:
            checks.append(negative_data_rejection)  # a bad path or body must be refused
        case.validate_response(response, checks=checks)

    check()
