"""Tenants: keys are shown once and stored hashed; the CLI; authentication on every route."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import typer
from pinned import NOW
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from suanwang.cli.admin import tenants_app
from suanwang.server.database.models import Tenant, TenantRole
from suanwang.server.database.session import make_engine, session_factory
from suanwang.server.models.tenants import (
    KeyRefused,
    TenantExists,
    authenticate,
    create_tenant,
    replace_key,
)

# The main CLI mounts the sub-app as ``suanwang tenants``; mount it the same way here.
cli = typer.Typer()
cli.add_typer(tenants_app, name="tenants")
runner = CliRunner()

#: Every authenticated route, with a method (job ids need not exist: auth comes first).
PROTECTED = [
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/00000000-0000-4000-8000-000000000000"),
    ("POST", "/v1/jobs/00000000-0000-4000-8000-000000000000/cancel"),
    ("GET", "/v1/jobs/00000000-0000-4000-8000-000000000000/events"),
    ("GET", "/v1/jobs/00000000-0000-4000-8000-000000000000/logs"),
    ("GET", "/v1/centers"),
    ("GET", "/v1/network"),
]


def test_create_and_authenticate(sessions: sessionmaker[Session], client: Any) -> None:
    with sessions() as s:
        tenant, key = create_tenant(session=s, name="acme", role=TenantRole.PROVIDER, now=NOW)
        s.commit()
        assert key.startswith("sw_") and len(key) >= 40
        assert tenant.api_key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert tenant.role == "provider"
    with sessions() as s:
        found = authenticate(session=s, api_key=key, now=NOW)
        assert found is not None and found.id == tenant.id
        for bad in ("", key[:-1], key + "x", "sw_" + "A" * 43, key[3:], "sw_é" * 10, "sw_" * 100):
            assert authenticate(session=s, api_key=bad, now=NOW) is None


def test_names_are_unique_and_checked(sessions: sessionmaker[Session], client: Any) -> None:
    with sessions() as s:
        create_tenant(session=s, name="acme", role=TenantRole.CONSUMER, now=NOW)
        s.commit()
        with pytest.raises(TenantExists):
            create_tenant(session=s, name="acme", role=TenantRole.OPERATOR, now=NOW)
        for bad in ("", "   ", "x" * 101):
            with pytest.raises(ValueError, match=r"1\.\.100"):
                create_tenant(session=s, name=bad, role=TenantRole.CONSUMER, now=NOW)


def test_a_new_key_replaces_the_old_one(sessions: sessionmaker[Session], client: Any) -> None:
    with sessions() as s:
        tenant, old = create_tenant(session=s, name="nlp-lab", role=TenantRole.CONSUMER, now=NOW)
        s.commit()
        new = replace_key(session=s, name="nlp-lab", now=NOW)
        s.commit()
        assert new != old and new.startswith("sw_")
        with pytest.raises(KeyRefused, match=r"sw_\S{8} was revoked at 2025-07-01T06:30"):
            authenticate(session=s, api_key=old, now=NOW)
        found = authenticate(session=s, api_key=new, now=NOW)
        assert found is not None and found.id == tenant.id
        with pytest.raises(LookupError, match="no tenant named 'atlantis'"):
            replace_key(session=s, name="atlantis", now=NOW)


def test_cli_creates_tenant_on_fresh_database_and_shows_key_once(fresh_db_url: str) -> None:
    args = ["tenants", "create", "acme", "--role", "operator", "--db", fresh_db_url, "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"tenant_id", "api_key"}
    key = doc["api_key"]

    engine = make_engine(fresh_db_url)
    try:
        with session_factory(engine)() as s:
            row = s.scalars(select(Tenant)).one()
            assert (row.id, row.name, row.role) == (doc["tenant_id"], "acme", "operator")
            # only the digest is stored: the key appears in no column
            assert row.api_key_hash == hashlib.sha256(key.encode()).hexdigest()
            assert key not in " ".join(str(v) for v in row.__dict__.values())
            found = authenticate(session=s, api_key=key, now=NOW)
            assert found is not None and found.id == row.id
    finally:
        engine.dispose()

    again = runner.invoke(cli, ["tenants", "create", "acme", "--db", fresh_db_url, "--json"])
    assert again.exit_code == 1
    assert "already exists" in again.stderr

    human = runner.invoke(cli, ["tenants", "create", "beta", "--db", fresh_db_url])
    assert human.exit_code == 0
    assert "shown once" in human.stdout and "sw_" in human.stdout
    assert key not in human.stdout  # a new tenant gets a new key


def test_cli_rejects_bad_role_and_bad_url(tmp_path: Any) -> None:
    bad_role = runner.invoke(cli, ["tenants", "create", "x", "--role", "king", "--db", "sqlite://"])
    assert bad_role.exit_code == 2
    bad_url = runner.invoke(cli, ["tenants", "create", "x", "--db", "nonsense://"])
    assert bad_url.exit_code == 2 and "cannot use database URL" in bad_url.stderr


def test_healthz_needs_no_key(client: Any) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": "ok"}


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_route_but_healthz_needs_a_valid_key(
    client: Any, alice: Any, method: str, path: str
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer sw_wrong"},
        {"Authorization": f"Basic {alice.key}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {alice.key}x"},
    ):
        r = client.request(method, path, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert isinstance(r.json()["detail"], str)
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_openapi_documents_auth_and_the_scenarios_names(client: Any) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["ApiKey"]["scheme"].lower() == "bearer"
    schemas = doc["components"]["schemas"]
    body = schemas["JobCreate"]["properties"]
    assert "beijing" in body["origin"]["enum"]
    assert body["resources"]["$ref"].endswith("/ResourcesCreate")
    assert "ascend-910b" in schemas["ResourcesCreate"]["properties"]["accelerator"]["enum"]
    stacks = next(v for v in body["stacks"]["anyOf"] if v.get("type") == "array")
    assert stacks["items"]["enum"] == ["cann", "cpu", "cuda", "dtk", "neuware"]
    # stored specs (responses) are not constrained to today's scenario
    assert "enum" not in schemas["JobSpecPublic"]["properties"]["origin"]
    assert "enum" not in schemas["ResourcesPublic"]["properties"]["accelerator"]
    # cards, and count (its old name): accepted in requests, shown in responses, deprecated
    request, response = schemas["ResourcesCreate"], schemas["ResourcesPublic"]
    assert request["properties"]["count"]["deprecated"] is True
    assert "cards" in request["properties"] and "cards" in response["properties"]
    assert response["properties"]["count"]["readOnly"] is True
    assert response["properties"]["count"]["deprecated"] is True
    assert client.get("/docs").status_code == 200
