"""``/v1/jobs`` end to end: submit, idempotency, isolation, validation, cancel, events, logs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.lifecycle import JobState
from suanwang.server.database.models import JobRow, Tenant, TenantRole
from suanwang.server.models.job_refs import (
    MAX_CANDIDATES,
    MIN_PREFIX,
    is_prefix,
    prefix_bounds,
    prefix_query,
)
from suanwang.server.models.jobs import get_job, transition
from suanwang.server.schemas import JobSpec

Submit = Callable[..., dict[str, Any]]
NO_JOB = "00000000-0000-4000-8000-000000000000"


def _errors(r: Any) -> dict[tuple[Any, ...], str]:
    assert r.status_code == 422, r.text
    return {tuple(e["loc"]): e["msg"] for e in r.json()["detail"]}


def _set_state(sessions: sessionmaker[Session], job_id: str, *states: JobState) -> None:
    """Walk a job through ``states`` with the data function (as the services will)."""
    with sessions() as s:
        row = s.get(JobRow, job_id)
        assert row is not None
        for to in states:
            updates = (
                {"center_id": "zhangjiakou", "pool_model": "a100"} if to == "scheduled" else {}
            )
            transition(session=s, job=row, to=to, detail={"by": "test"}, updates=updates)
        s.commit()


# --------------------------------------------------------------------------- submit and read


def test_submit_returns_201_and_the_job_reads_back(client: Any, alice: Any, body: Any) -> None:
    r = client.post("/v1/jobs", json=body(), headers=alice.headers)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] == "pending" and job["tenant_id"] == alice.id
    assert job["kind"] == "training" and job["origin"] == "beijing"
    assert job["center_id"] is None and job["decision"] is None and job["exit_code"] is None
    assert job["spec"]["stacks"] == ["cuda"] and job["spec"]["kind"] == "training"
    assert datetime.fromisoformat(job["submitted_at"]).utcoffset() is not None
    got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers)
    assert got.status_code == 200 and got.json() == job


def test_defaults_for_a_cpu_script_job(client: Any, alice: Any, body: Any) -> None:
    spec = body(command=None, script="#!/bin/sh\necho hi\n", resources={"cpus": 16})
    spec.pop("command")
    r = client.post("/v1/jobs", json=spec, headers=alice.headers)
    assert r.status_code == 201, r.text
    s = r.json()["spec"]
    assert r.json()["kind"] == "analytics"
    assert s["stacks"] == ["cpu"] and s["resources"] == {
        "cpus": 16, "cards": 0, "count": 0, "accelerator": "any", "mem_gb": 4.0,
    }  # fmt: skip
    assert s["script"].startswith("#!/bin/sh") and s["command"] is None


def test_idempotency_key_makes_one_job(client: Any, alice: Any, body: Any) -> None:
    h = {**alice.headers, "Idempotency-Key": "run-42"}
    first = client.post("/v1/jobs", json=body(), headers=h)
    again = client.post("/v1/jobs", json=body(), headers=h)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = client.post("/v1/jobs", json=body(), headers={**alice.headers, "Idempotency-Key": "43"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert len(client.get("/v1/jobs", headers=alice.headers).json()["items"]) == 2


def test_idempotency_key_reused_for_another_spec_is_422(client: Any, alice: Any, body: Any) -> None:
    h = {**alice.headers, "Idempotency-Key": "k1"}
    assert client.post("/v1/jobs", json=body(), headers=h).status_code == 201
    errs = _errors(client.post("/v1/jobs", json=body(duration_s=60), headers=h))
    assert "different job spec" in errs[("header", "Idempotency-Key")]


def test_idempotency_keys_are_per_tenant(client: Any, alice: Any, bob: Any, body: Any) -> None:
    a = client.post("/v1/jobs", json=body(), headers={**alice.headers, "Idempotency-Key": "same"})
    b = client.post("/v1/jobs", json=body(), headers={**bob.headers, "Idempotency-Key": "same"})
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "ключ"])
def test_bad_idempotency_keys_are_422(client: Any, alice: Any, body: Any, key: str) -> None:
    h = {**alice.headers, "Idempotency-Key": key}
    r = client.post("/v1/jobs", json=body(), headers={k: v.encode() for k, v in h.items()})
    assert r.status_code == 422


# --------------------------------------------------------------------------- isolation


def test_other_tenants_jobs_are_404_everywhere(
    client: Any, alice: Any, bob: Any, submit: Submit
) -> None:
    job = submit(alice)
    for method, suffix in [("GET", ""), ("POST", "/cancel"), ("GET", "/events"), ("GET", "/logs")]:
        r = client.request(method, f"/v1/jobs/{job['id']}{suffix}", headers=bob.headers)
        assert r.status_code == 404, (suffix, r.text)
        assert isinstance(r.json()["detail"], str)
        ok = client.request(method, f"/v1/jobs/{job['id']}{suffix}", headers=alice.headers)
        assert ok.status_code == 200, (suffix, ok.text)
    assert client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()["state"] == (
        "cancelled"  # bob's cancel did nothing; alice's did
    )


@pytest.mark.parametrize("job_id", [NO_JOB, "nope", "0" * 100, NO_JOB.upper()])
def test_unknown_or_malformed_ids_are_404(client: Any, alice: Any, job_id: str) -> None:
    for suffix in ("", "/events", "/logs"):
        assert client.get(f"/v1/jobs/{job_id}{suffix}", headers=alice.headers).status_code == 404
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=alice.headers).status_code == 404


def test_list_shows_own_jobs_operator_all_provider_without_centers_none(
    client: Any, alice: Any, bob: Any, operator: Any, make_tenant: Any, submit: Submit
) -> None:
    a = {submit(alice, name=f"a{i}")["id"] for i in range(2)}
    b = {submit(bob, name="b0")["id"]}

    def ids(who: Any) -> set[str]:
        r = client.get("/v1/jobs", headers=who.headers)
        assert r.status_code == 200
        return {j["id"] for j in r.json()["items"]}

    assert ids(alice) == a and ids(bob) == b
    assert ids(operator) == a | b
    for job_id in a | b:
        assert client.get(f"/v1/jobs/{job_id}", headers=operator.headers).status_code == 200
    provider = make_tenant(TenantRole.PROVIDER)  # owns no center (see test_server_providers)
    assert ids(provider) == set()
    assert client.get(f"/v1/jobs/{next(iter(a))}", headers=provider.headers).status_code == 404


def test_list_pages_by_cursor_newest_first_and_filters_by_state(
    client: Any, alice: Any, submit: Submit
) -> None:
    made = [submit(alice, name=f"j{i}")["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/jobs", params=params, headers=alice.headers).json()
        assert len(page["items"]) <= 2
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    client.post(f"/v1/jobs/{made[0]}/cancel", headers=alice.headers)
    r = client.get("/v1/jobs", params={"state": "cancelled"}, headers=alice.headers).json()
    assert [j["id"] for j in r["items"]] == [made[0]]
    r = client.get("/v1/jobs", params={"state": "pending"}, headers=alice.headers).json()
    assert len(r["items"]) == 4


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 501}, {"state": "sleeping"}, {"cursor": "garbage"},
     {"cursor": "W10"}, {"cursor": "x" * 501}],
)  # fmt: skip
def test_bad_list_parameters_are_422(client: Any, alice: Any, params: dict[str, Any]) -> None:
    r = client.get("/v1/jobs", params=params, headers=alice.headers)
    assert r.status_code == 422, r.text


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("program", ["command", "script"])
@pytest.mark.parametrize(
    ("field", "value", "loc"),
    [
        ("origin", "atlantis", ("body", "origin")),
        ("resources", {"count": 1, "accelerator": "tpu-v9"}, ("body", "resources", "accelerator")),
        ("stacks", ["cuda", "rocm-x"], ("body", "stacks", 1)),
    ],
)
def test_unknown_names_are_422_naming_the_value(
    client: Any, alice: Any, body: Any, program: str, field: str, value: Any, loc: Any
) -> None:
    spec = body(**{field: value})
    if program == "script":
        spec["script"] = spec.pop("command")
    errs = _errors(client.post("/v1/jobs", json=spec, headers=alice.headers))
    bad = value if isinstance(value, str) else value[-1] if isinstance(value, list) else "tpu-v9"
    assert loc in errs and repr(bad) in errs[loc], errs


def test_mismatched_accelerator_and_stack_are_422(client: Any, alice: Any, body: Any) -> None:
    r = client.post("/v1/jobs", json=body(resources={"count": 8, "accelerator": "ascend-910b"}),
                    headers=alice.headers)  # fmt: skip
    assert "'cann'" in _errors(r)[("body", "stacks")]
    r = client.post("/v1/jobs", json=body(resources={"count": 0, "accelerator": "a100"}),
                    headers=alice.headers)  # fmt: skip
    assert "cards is 0" in _errors(r)[("body", "resources", "accelerator")]
    ok = body(resources={"count": 8, "accelerator": "ascend-910b"}, stacks=["cann"])
    assert client.post("/v1/jobs", json=ok, headers=alice.headers).status_code == 201


@pytest.mark.parametrize(
    "change",
    [
        {"command": None},  # neither
        {"script": "echo both"},  # both
        {"unexpected": 1},
        {"duration_s": 0},
        {"duration_s": -5},
        {"duration_s": "soon"},
        {"resources": {"cpus": 0}},
        {"resources": {"count": -1}},
        {"resources": {"mem_gb": 0}},
        {"resources": {"gpus": 8}},
        {"deadline_s": 0},
        {"latency_ms": -1},
        {"data_gb": -1},
        {"kind": "mining"},
        {"stacks": []},
        {"stacks": ["cuda"] * 17},
        {"name": ""},
        {"name": "x" * 201},
        {"name": "bad\x00name"},
        {"name": "tab\tname"},
        {"command": "echo \x00"},
        {"origin": ""},
        {"origin": "x" * 101},
    ],
)
def test_invalid_specs_are_422(client: Any, alice: Any, body: Any, change: Any) -> None:
    spec = body(**change)
    if spec.get("command") is None:
        spec.pop("command", None)
    r = client.post("/v1/jobs", json=spec, headers=alice.headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "x", "command": "c", "duration_s": NaN, "origin": "beijing"}',
        b'{"name": "x", "command": "c", "duration_s": Infinity, "origin": "beijing"}',
        b'{"name": "\\ud800", "command": "c", "duration_s": 1, "origin": "beijing"}',
        b'{"name": "x", "command": "c", "duration_s": 1e999, "origin": "beijing"}',
        b"not json",
        b"[]",
        b"",
        b"\xff\xfe",
    ],
)
def test_malformed_bodies_are_422(client: Any, alice: Any, raw: bytes) -> None:
    h = {**alice.headers, "Content-Type": "application/json"}
    r = client.post("/v1/jobs", content=raw, headers=h)
    assert r.status_code == 422, r.text


def test_bodies_over_64_kib_are_413(client: Any, alice: Any, body: Any) -> None:
    near = body(command=None, script="#" * 60_000)
    near.pop("command")
    assert client.post("/v1/jobs", json=near, headers=alice.headers).status_code == 201
    huge = json.dumps(body(command="x" * 70_000)).encode()
    r = client.post("/v1/jobs", content=huge, headers={**alice.headers,
                    "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 413 and "bytes" in r.json()["detail"]
    # no Content-Length (chunked): counted while reading
    chunks = iter([huge[:40_000], huge[40_000:]])
    r = client.post("/v1/jobs", content=chunks, headers={**alice.headers,
                    "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 413
    assert client.get("/v1/jobs", headers=alice.headers).json()["items"][0]["id"]


# --------------------------------------------------------------------------- lifecycle


def test_cancel_pending_job_records_an_event(client: Any, alice: Any, submit: Submit) -> None:
    job = submit(alice)
    r = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled" and r.json()["ended_at"] is not None
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=alice.headers).json()
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        (None, "pending"),
        ("pending", "cancelled"),
    ]
    assert events[1]["detail"]["by"] == alice.id


@pytest.mark.parametrize("path", [["cancelled"], ["scheduled", "running", "succeeded"],
                                  ["scheduled", "failed"]])  # fmt: skip
def test_cancel_terminal_job_is_409_with_allowed_transitions(
    client: Any, alice: Any, submit: Submit, sessions: Any, path: list[str]
) -> None:
    job = submit(alice)
    _set_state(sessions, job["id"], *[JobState(s) for s in path])
    r = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert detail["state"] == path[-1] and detail["allowed"] == []
    assert "cannot go from" in detail["msg"]


def test_cancel_running_job_and_operator_may_cancel(
    client: Any, alice: Any, operator: Any, submit: Submit, sessions: Any
) -> None:
    job = submit(alice)
    _set_state(sessions, job["id"], JobState.SCHEDULED, JobState.RUNNING)
    r = client.post(f"/v1/jobs/{job['id']}/cancel", headers=operator.headers)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    last = client.get(f"/v1/jobs/{job['id']}/events", headers=alice.headers).json()[-1]
    assert (last["from_state"], last["to_state"]) == ("running", "cancelled")
    assert last["detail"]["by"] == operator.id


def test_events_record_every_transition_in_order_with_timestamps(
    client: Any, alice: Any, submit: Submit, sessions: Any
) -> None:
    job = submit(alice)
    _set_state(sessions, job["id"], JobState.SCHEDULED, JobState.RUNNING, JobState.SUCCEEDED)
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=alice.headers).json()
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        (None, "pending"),
        ("pending", "scheduled"),
        ("scheduled", "running"),
        ("running", "succeeded"),
    ]
    times = [datetime.fromisoformat(e["at"]) for e in events]
    assert all(t.utcoffset() is not None for t in times) and times == sorted(times)
    got = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert got["state"] == "succeeded" and got["center_id"] == "zhangjiakou"
    assert got["scheduled_at"] <= got["started_at"] <= got["ended_at"]


def test_logs_are_plain_text(client: Any, alice: Any, submit: Submit, sessions: Any) -> None:
    job = submit(alice)
    r = client.get(f"/v1/jobs/{job['id']}/logs", headers=alice.headers)
    assert r.status_code == 200 and r.text == ""
    assert r.headers["content-type"].startswith("text/plain")
    with sessions() as s:
        s.execute(update(JobRow).where(JobRow.id == job["id"]).values(logs="step 1\nstep 2\n"))
        s.commit()
    assert client.get(f"/v1/jobs/{job['id']}/logs", headers=alice.headers).text == (
        "step 1\nstep 2\n"
    )


def test_get_job_data_function_respects_visibility(
    sessions: Any, alice: Any, bob: Any, operator: Any, submit: Submit
) -> None:
    job = submit(alice)
    with sessions() as s:
        from suanwang.server.database.models import Tenant

        by_id = {t.id: t for t in s.query(Tenant)}
        assert get_job(session=s, tenant=by_id[alice.id], job_id=job["id"]) is not None
        assert get_job(session=s, tenant=by_id[operator.id], job_id=job["id"]) is not None
        assert get_job(session=s, tenant=by_id[bob.id], job_id=job["id"]) is None


# --------------------------------------------------------------------------- short ids

A1 = "abcd1234-0000-4000-8000-000000000001"
A2 = "abcd1299-0000-4000-8000-000000000002"
B1 = "abcd5678-0000-4000-8000-000000000003"
ROUTES = [("GET", ""), ("GET", "/events"), ("GET", "/logs"), ("POST", "/cancel")]


def _every_route(client: Any, who: Any, ref: str) -> Iterator[tuple[str, Any]]:
    """(route, answer) for each route that takes a job id, with ``ref`` as the id."""
    for method, suffix in ROUTES:
        yield suffix, client.request(method, f"/v1/jobs/{ref}{suffix}", headers=who.headers)


def _job_with_id(sessions: sessionmaker[Session], who: Any, job_id: str, name: str) -> None:
    """A pending job with a chosen id (ids are random UUIDs otherwise)."""
    body = {"name": name, "command": "true", "duration_s": 600, "origin": "beijing"}
    spec = JobSpec.model_validate(body).model_dump(mode="json")
    with sessions() as s:
        s.add(JobRow(id=job_id, tenant_id=who.id, name=name, spec=spec))
        s.commit()


@pytest.fixture
def prefixed(sessions: sessionmaker[Session], alice: Any, bob: Any) -> None:
    """alice's jobs A1 and A2 share the prefix abcd12; bob's B1 shares abcd with both."""
    for who, job_id, name in [(alice, A1, "a1"), (alice, A2, "a2"), (bob, B1, "b1")]:
        _job_with_id(sessions, who, job_id, name)


@pytest.mark.usefixtures("prefixed")
@pytest.mark.parametrize("ref", [A1, A1.upper(), "abcd1234", "ABCD123", "abcd1234-0", A1[:-1]])
def test_a_job_is_found_by_its_id_or_any_unambiguous_prefix(
    client: Any, alice: Any, ref: str
) -> None:
    for route, r in _every_route(client, alice, ref):
        assert r.status_code == 200, (route, r.text)
    job = client.get(f"/v1/jobs/{ref}", headers=alice.headers).json()
    assert job["id"] == A1 and job["state"] == "cancelled"  # cancelled through the prefix


@pytest.mark.usefixtures("prefixed")
def test_a_prefix_only_another_tenants_job_has_is_unknown(client: Any, alice: Any) -> None:
    # abcd matches bob's job too, but alice cannot see it: for her only her two jobs match
    for route, r in _every_route(client, alice, "abcd5"):
        assert r.status_code == 404 and r.json()["detail"] == "no job 'abcd5'", (route, r.text)
    ambiguous = client.get("/v1/jobs/abcd", headers=alice.headers).json()["detail"]
    assert [c["id"] for c in ambiguous["candidates"]] == [A1, A2]


@pytest.mark.usefixtures("prefixed")
def test_an_ambiguous_prefix_is_409_naming_the_candidates(
    client: Any, alice: Any, operator: Any
) -> None:
    for route, r in _every_route(client, alice, "abcd12"):
        assert r.status_code == 409, (route, r.text)
        detail = r.json()["detail"]
        assert detail["msg"] == (
            "job id prefix 'abcd12' is ambiguous: 2 jobs match; give more characters"
        )
        assert detail["candidates"] == [
            {"id": A1, "name": "a1", "state": "pending"},
            {"id": A2, "name": "a2", "state": "pending"},
        ]
        assert detail["more"] is False
    # an operator sees every tenant's jobs, so bob's job makes abcd ambiguous for it too
    everyone = client.get("/v1/jobs/abcd", headers=operator.headers).json()["detail"]
    assert [c["id"] for c in everyone["candidates"]] == [A1, A2, B1]
    assert client.get("/v1/jobs/abcd5", headers=operator.headers).json()["id"] == B1


def test_an_ambiguous_prefix_names_the_first_candidates_only(
    client: Any, alice: Any, sessions: sessionmaker[Session]
) -> None:
    ids = [f"beef{i:04x}-0000-4000-8000-000000000000" for i in range(MAX_CANDIDATES + 2)]
    for i, job_id in enumerate(ids):
        _job_with_id(sessions, alice, job_id, f"j{i}")
    detail = client.get("/v1/jobs/beef", headers=alice.headers).json()["detail"]
    assert [c["id"] for c in detail["candidates"]] == ids[:MAX_CANDIDATES]
    assert detail["more"] is True and "more than 10 jobs match" in detail["msg"]


@pytest.mark.usefixtures("prefixed")
@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("abc", "no job 'abc' (give at least 4 characters)"),
        ("abce", "no job 'abce'"),
        ("abcd12345", "no job 'abcd12345'"),  # a hyphen belongs there
        ("abcg", "no job 'abcg'"),
        ("ffff", "no job 'ffff'"),
    ],
)
def test_a_too_short_malformed_or_unknown_prefix_is_404(
    client: Any, alice: Any, ref: str, message: str
) -> None:
    for route, r in _every_route(client, alice, ref):
        assert r.status_code == 404 and r.json()["detail"] == message, (route, r.text)


def test_prefix_bounds_hold_every_id_with_the_prefix_and_no_other() -> None:
    assert prefix_bounds("abcd") == ("abcd", "abce")
    assert prefix_bounds("abc9") == ("abc9", "abca")
    assert prefix_bounds("abff") == ("abff", "ac")
    assert prefix_bounds("abcd1234-") == ("abcd1234-", "abcd1235")
    assert prefix_bounds("0fff-") == ("0fff-", "1")
    assert prefix_bounds("ffff") == ("ffff", None)


@given(st.uuids(), st.integers(MIN_PREFIX, 36), st.uuids())
def test_an_id_is_within_a_prefix_bounds_iff_it_begins_with_it(
    owner: uuid.UUID, length: int, other: uuid.UUID
) -> None:
    prefix = str(owner)[:length]
    assert is_prefix(prefix)
    low, high = prefix_bounds(prefix)
    for job_id in (str(owner), str(other)):
        inside = low <= job_id and (high is None or job_id < high)
        assert inside == job_id.startswith(prefix)


def test_a_prefix_is_looked_up_by_the_ids_index(engine: Any, db_url: str) -> None:
    """One range scan of the primary key's index, whoever asks (a tenant's own index would
    walk all of its jobs)."""
    with engine.connect() as conn:
        for role in TenantRole:
            stmt = prefix_query(Tenant(id="t", name="t", role=role.value), "abcd", 11)
            sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
            if db_url.startswith("sqlite"):
                plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
                assert plan[0].startswith(
                    "SEARCH jobs USING INDEX sqlite_autoindex_jobs_1 (id>?"
                ), plan
            else:
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                plan = [row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}")]
                assert "Index Scan using pk_jobs on jobs" in "\n".join(plan), plan
                assert "Index Cond: (((id)::text >= 'abcd'::text)" in "\n".join(plan), plan


def test_a_query_parameter_given_twice_or_unknown_is_refused(client: Any, alice: Any) -> None:
    """Not silently read as its last value, or ignored: a 422 naming it (every route)."""
    for url in ("/v1/jobs?state=pending&state=running", "/v1/offers?model=a100&model=h800"):
        r = client.get(url, headers=alice.headers)
        assert r.status_code == 422, (url, r.text)
        (problem,) = r.json()["detail"]
        assert problem["loc"][0] == "query" and "more than once" in problem["msg"]
    assert client.get("/v1/jobs?state=pending", headers=alice.headers).status_code == 200
    # an unknown one (a typo'd filter would silently filter nothing) is refused, naming it
    r = client.get("/v1/jobs?stat=running", headers=alice.headers)
    assert r.status_code == 422
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["query", "stat"] and "takes: cursor, limit, state" in problem["msg"]


def test_cards_and_count_its_old_name(
    client: Any, alice: Any, sessions: Any, body: Callable[..., dict[str, Any]]
) -> None:
    """A request gives cards, or count (its old name); the API shows both; specs are stored
    with cards, and specs stored with count still read."""
    for resources in ({"cards": 2, "cpus": 8}, {"count": 2, "cpus": 8}):
        r = client.post("/v1/jobs", json=body(resources=resources), headers=alice.headers)
        assert r.status_code == 201, r.text
        shown = r.json()["spec"]["resources"]
        assert (shown["cards"], shown["count"]) == (2, 2)
        with sessions() as s:
            stored = s.get(JobRow, r.json()["id"]).spec["resources"]
        assert stored["cards"] == 2 and "count" not in stored
    both = {"cards": 2, "count": 2, "cpus": 8}
    r = client.post("/v1/jobs", json=body(resources=both), headers=alice.headers)
    assert r.status_code == 422
    assert "not both" in r.json()["detail"][0]["msg"]
    with sessions.begin() as s:  # a spec stored before cards had its name
        row = s.get(JobRow, client.get("/v1/jobs", headers=alice.headers).json()["items"][0]["id"])
        row.spec = {**row.spec, "resources": {"count": 3, "cpus": 8}}
        job_id = row.id
    shown = client.get(f"/v1/jobs/{job_id}", headers=alice.headers).json()["spec"]["resources"]
    assert (shown["cards"], shown["count"]) == (3, 3)
