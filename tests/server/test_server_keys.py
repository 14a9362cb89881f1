"""API keys (issue 15, item 4): listed by prefix, created, rotated (with an overlap), expiring
(by the app's clock, pinned), revoked, and read-only keys refused every state-changing route,
through the API for a tenant's own keys and for operators, and from the command line."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from pinned import NOW
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient
from typer.testing import CliRunner

from suanwang.cli import app as cli
from suanwang.server.database.models import ApiKey, AuditEntry, Tenant, TenantRole
from suanwang.server.database.session import make_engine, session_factory
from suanwang.server.models import keys as store
from suanwang.server.models.tenants import create_tenant

Who = Any  # conftest.Who
runner = CliRunner()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _new_key(client: TestClient, who: Who, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/keys", json=body, headers=who.headers)
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


def _stored(sessions: sessionmaker[Session], who: Who, *, created: Any, expires: Any = None) -> str:
    """A key of ``who`` written directly, created (and expiring) at the given times."""
    with sessions.begin() as s:
        secret = store.draw_key(s)
        s.add(store.key_row(who.id, secret, now=created, name="stored", expires_at=expires))
    return secret


def test_a_tenant_lists_its_keys_by_prefix_never_a_secret(
    client: TestClient, alice: Who, bob: Who
) -> None:
    made = _new_key(client, alice, name="grafana", read_only=True)
    assert made["api_key"].startswith(made["key"]["prefix"]) and made["tenant"] == "alice"
    r = client.get("/v1/keys", headers=alice.headers)
    assert r.status_code == 200
    listed = r.json()["keys"]
    assert [k["name"] for k in listed] == ["grafana", "default"]  # newest first
    assert {k["state"] for k in listed} == {"active"}
    assert listed[0]["read_only"] is True and listed[1]["read_only"] is False
    text = r.text
    assert alice.key not in text and made["api_key"] not in text and "hash" not in text
    assert all(len(k["prefix"]) == 11 and k["prefix"].startswith("sw_") for k in listed)
    # the new key works, and bob sees none of alice's keys (another tenant's key is a 404)
    assert client.get("/v1/jobs", headers=_auth(made["api_key"])).status_code == 200
    assert [k["prefix"] for k in client.get("/v1/keys", headers=bob.headers).json()["keys"]] == [
        bob.key[:11]
    ]
    r = client.delete(f"/v1/keys/{made['key']['prefix']}", headers=bob.headers)
    assert r.status_code == 404 and "no API key" in r.json()["detail"]


def test_me_names_the_key_in_use_and_whether_it_is_read_only(
    client: TestClient, alice: Who
) -> None:
    """The console's Keys page says which key it is signed in with and whether it may write."""
    full = client.get("/v1/me", headers=alice.headers).json()
    assert full == {"tenant_id": alice.id, "name": "alice", "role": "consumer",
                    "key_prefix": alice.key[:11], "read_only": False}  # fmt: skip
    ro = _new_key(client, alice, name="dashboard", read_only=True)
    seen = client.get("/v1/me", headers=_auth(ro["api_key"])).json()
    assert seen["key_prefix"] == ro["key"]["prefix"] != alice.key[:11]
    assert seen["read_only"] is True and seen["tenant_id"] == alice.id


def test_bad_key_requests_are_422s_naming_the_field(client: TestClient, alice: Who) -> None:
    for body, field in (
        ({"read_only": "yes"}, "read_only"),
        ({"read_only": 1}, "read_only"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"expires_at": "2030-01-01T00:00"}, "expires_at"),  # no offset
        ({"expires_at": (NOW - timedelta(hours=1)).isoformat()}, "expires_at"),  # past
        ({"expires_at": "9999-12-31T23:00:00-05:00"}, "expires_at"),  # no UTC time
        ({"expires_at": "2200-01-01T00:00:00Z"}, "expires_at"),  # over a century on
        ({"name": "a\nb"}, "name"),
        ({"colour": "red"}, "colour"),
    ):
        r = client.post("/v1/keys", json=body, headers=alice.headers)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["detail"][0]["loc"][-1] == field, (body, r.text)
    for overlap in (86_401, -1, "60", True, 1.5, None):
        r = client.post(f"/v1/keys/{alice.key[:11]}/rotate", json={"overlap_s": overlap},
                        headers=alice.headers)  # fmt: skip
        assert r.status_code == 422, (overlap, r.text)
        assert r.json()["detail"][0]["loc"][-1] == "overlap_s", overlap
    assert client.delete("/v1/keys/not-a-prefix", headers=alice.headers).status_code == 422


def test_rotation_revokes_the_old_key_now_or_after_the_overlap(
    client: TestClient, alice: Who
) -> None:
    prefix = alice.key[:11]
    r = client.post(f"/v1/keys/{prefix}/rotate", json={"overlap_s": 600.0}, headers=alice.headers)
    assert r.status_code == 201, r.text
    doc = r.json()
    new = doc["api_key"]
    assert doc["key"]["name"] == "default" and doc["key"]["prefix"] != prefix
    assert doc["old"]["revoked_at"] is None
    until = doc["old"]["expires_at"]
    assert until is not None and until.startswith((NOW + timedelta(seconds=600)).isoformat()[:19])
    # both work during the overlap (the app's clock stands at NOW)
    assert client.get("/v1/jobs", headers=alice.headers).status_code == 200
    assert client.get("/v1/jobs", headers=_auth(new)).status_code == 200
    # rotating the new one with no overlap revokes it at once (this server forgets it)
    r = client.post(f"/v1/keys/{doc['key']['prefix']}/rotate", headers=_auth(new))
    assert r.status_code == 201, r.text
    newest = r.json()["api_key"]
    r = client.get("/v1/jobs", headers=_auth(new))
    assert r.status_code == 401 and "was revoked at 2025-07-01T06:30" in r.json()["detail"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/v1/jobs", headers=_auth(newest)).status_code == 200
    # a revoked key cannot be rotated (409)
    r = client.post(f"/v1/keys/{doc['key']['prefix']}/rotate", headers=_auth(newest))
    assert r.status_code == 409 and "cannot rotate" in r.json()["detail"]


def test_a_rotated_key_keeps_its_access_and_lifetime(client: TestClient, alice: Who) -> None:
    made = _new_key(client, alice, name="board", read_only=True,
                    expires_at=(NOW + timedelta(days=30)).isoformat())  # fmt: skip
    r = client.post(f"/v1/keys/{made['key']['prefix']}/rotate", headers=alice.headers)
    new = r.json()["key"]
    assert (new["name"], new["read_only"]) == ("board", True)
    assert new["expires_at"].startswith((NOW + timedelta(days=30)).isoformat()[:16])


def test_expired_and_revoked_keys_get_a_401_saying_so(
    client: TestClient, alice: Who, sessions: sessionmaker[Session]
) -> None:
    expired = _stored(sessions, alice, created=NOW - timedelta(days=2),
                      expires=NOW - timedelta(days=1))  # fmt: skip
    r = client.get("/v1/jobs", headers=_auth(expired))
    assert r.status_code == 401
    assert r.json()["detail"] == (
        f"API key {expired[:11]} expired at {(NOW - timedelta(days=1)).isoformat()}"
    )
    later = _stored(sessions, alice, created=NOW - timedelta(days=2),
                    expires=NOW + timedelta(minutes=1))  # fmt: skip
    assert client.get("/v1/jobs", headers=_auth(later)).status_code == 200
    states = {k["prefix"]: k["state"] for k in client.get("/v1/keys", headers=alice.headers)
              .json()["keys"]}  # fmt: skip
    assert states[expired[:11]] == "expired" and states[later[:11]] == "active"
    # revoke: 200 and changed; again: changed false; the key is refused at once
    r = client.delete(f"/v1/keys/{later[:11]}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["changed"] is True
    assert r.json()["key"]["state"] == "revoked"
    assert client.delete(f"/v1/keys/{later[:11]}", headers=alice.headers).json()["changed"] is False
    r = client.get("/v1/jobs", headers=_auth(later))
    assert r.status_code == 401 and "was revoked at" in r.json()["detail"]


def test_expiry_is_judged_by_the_clock_given() -> None:
    key = store.key_row("t", "sw_" + "a" * 43, now=NOW, expires_at=NOW + timedelta(hours=1))
    assert store.refused(key, NOW) is None
    assert store.refused(key, NOW + timedelta(minutes=59, seconds=59)) is None
    assert store.refused(key, NOW + timedelta(hours=1)) == (
        f"API key sw_aaaaaaaa expired at {(NOW + timedelta(hours=1)).isoformat()}"
    )
    key.revoked_at = NOW + timedelta(minutes=5)
    assert store.refused(key, NOW) is None  # revoked later than this instant
    assert "revoked" in (store.refused(key, NOW + timedelta(minutes=5)) or "")
    with pytest.raises(ValueError, match="must be after now"):
        store.key_row("t", "sw_" + "b" * 43, now=NOW, expires_at=NOW)


def _state_changing(app: FastAPI) -> list[tuple[str, str]]:
    """Every operation of the API whose method is not a read, its path parameters filled."""
    out = []
    for template, operations in app.openapi()["paths"].items():
        path = re.sub(r"\{prefix\}", "sw_abcdefgh", template)
        path = re.sub(r"\{[a-z_]+\}", "x", path)
        out += [(m.upper(), path) for m in operations if m not in ("get", "head", "options")]
    return out


def test_a_read_only_key_reads_but_every_state_changing_route_refuses_it(
    app: FastAPI, client: TestClient, make_tenant: Callable[..., Who]
) -> None:
    routes = _state_changing(app)
    assert ("POST", "/v1/jobs") in routes and ("DELETE", "/v1/keys/sw_abcdefgh") in routes
    assert len(routes) >= 20
    for role in TenantRole:
        who = make_tenant(role)
        ro = _new_key(client, who, name="dashboard", read_only=True)
        headers = _auth(ro["api_key"])
        for method, path in routes:
            for body in (None, {"any": "thing"}):
                r = client.request(method, path, json=body, headers=headers)
                if path.startswith("/v1/agents/"):  # agents' own tokens, never an API key
                    assert r.status_code == 401, (role, method, path, r.text)
                    assert "invalid agent token" in r.json()["detail"]
                    continue
                assert r.status_code == 403, (role, method, path, r.text)
                assert r.json()["detail"] == (
                    f"API key {ro['key']['prefix']} is read-only: it may read (GET) but not "
                    f"{method} {path}"
                )
        assert client.get("/v1/jobs", headers=headers).status_code == 200
        assert client.get("/v1/keys", headers=headers).status_code == 200
        assert client.get("/v1/me", headers=headers).json()["tenant_id"] == who.id
    # an operator's read-only key reads what operators read
    r = client.get("/v1/audit", headers=headers)
    assert r.status_code == 200, r.text


def test_operators_manage_any_tenants_keys(
    client: TestClient, alice: Who, operator: Who, make_tenant: Callable[..., Who]
) -> None:
    base = "/v1/tenants/alice/keys"
    r = client.post(base, json={"name": "ci", "expires_at": (NOW + timedelta(days=1)).isoformat()},
                    headers=operator.headers)  # fmt: skip
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["tenant_id"] == alice.id
    # the key is alice's: it authenticates as alice
    assert client.get("/v1/me", headers=_auth(made["api_key"])).json()["tenant_id"] == alice.id
    listed = client.get(f"/v1/tenants/{alice.id}/keys", headers=operator.headers).json()
    assert [k["name"] for k in listed["keys"]] == ["ci", "default"]
    r = client.post(f"{base}/{made['key']['prefix']}/rotate", headers=operator.headers)
    assert r.status_code == 201 and r.json()["old"]["state"] == "revoked"
    r = client.delete(f"{base}/{alice.key[:11]}", headers=operator.headers)
    assert r.status_code == 200 and r.json()["changed"] is True
    assert client.get("/v1/jobs", headers=alice.headers).status_code == 401
    assert client.get("/v1/tenants/atlantis/keys", headers=operator.headers).status_code == 404
    r = client.delete(f"{base}/{operator.key[:11]}", headers=operator.headers)  # not alice's
    assert r.status_code == 404
    # every other role: 403 on every operator route (the role check's own message)
    for role in (TenantRole.CONSUMER, TenantRole.PROVIDER):
        who = make_tenant(role)
        for method, path in (("GET", base), ("POST", base),
                             ("POST", f"{base}/{alice.key[:11]}/rotate"),
                             ("DELETE", f"{base}/{alice.key[:11]}")):  # fmt: skip
            r = client.request(method, path, headers=who.headers)
            assert r.status_code == 403, (role, method, path)
            assert r.json()["detail"] == "only operators may manage another tenant's keys"


def test_every_role_manages_its_own_keys(
    client: TestClient, make_tenant: Callable[..., Who]
) -> None:
    for role in TenantRole:
        who = make_tenant(role)
        made = _new_key(client, who, name=f"{role.value}-2")
        prefix = made["key"]["prefix"]
        rotated = client.post(f"/v1/keys/{prefix}/rotate", headers=who.headers)
        assert rotated.status_code == 201, (role, rotated.text)
        r = client.delete(f"/v1/keys/{rotated.json()['key']['prefix']}", headers=who.headers)
        assert r.status_code == 200 and r.json()["changed"], role
        assert len(client.get("/v1/keys", headers=who.headers).json()["keys"]) == 3


def test_keys_from_before_0010_keep_working_under_an_old_prefix(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    """0010 copies each tenant's digest into ``api_keys`` (test_server_migrations checks the
    copy); such a key is named ``old_`` + 12 hex digits and can be revoked by it."""
    with sessions.begin() as s:
        tenant, key = create_tenant(session=s, name="legacy", role=TenantRole.CONSUMER, now=NOW)
        row = s.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant.id)).one()
        row.prefix = "old_" + row.key_hash[:12]
    r = client.get("/v1/keys", headers=_auth(key))
    prefix = r.json()["keys"][0]["prefix"]
    assert prefix.startswith("old_") and len(prefix) == 16
    assert client.delete(f"/v1/keys/{prefix}", headers=_auth(key)).status_code == 200
    assert client.get("/v1/keys", headers=_auth(key)).status_code == 401


def test_cli_lists_creates_rotates_and_revokes_keys(fresh_db_url: str) -> None:
    def run(*args: str) -> Any:
        result = runner.invoke(cli, ["tenants", *args, "--db", fresh_db_url])
        return result

    made = run("create", "acme", "--json")
    assert made.exit_code == 0, made.output
    first = json.loads(made.stdout)["api_key"]
    r = run("keys", "create", "acme", "--name", "grafana", "--read-only", "--expires", "30d",
            "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    ro = doc["key"]
    assert (ro["name"], ro["read_only"], ro["state"]) == ("grafana", True, "active")
    assert doc["api_key"].startswith(ro["prefix"])
    listed = run("keys", "list", "acme", "--json")
    keys = json.loads(listed.stdout)["keys"]
    assert [k["name"] for k in keys] == ["grafana", "default"]
    assert doc["api_key"] not in listed.stdout and first not in listed.stdout
    human = run("keys", "list", "acme")
    assert ro["prefix"] in human.stdout and "read-only" in human.stdout
    rot = run("keys", "rotate", "acme", first[:11], "--overlap", "60")
    assert rot.exit_code == 0, rot.output
    assert "shown once" in rot.stdout and "stops working at" in rot.stdout
    assert run("keys", "revoke", "acme", ro["prefix"]).exit_code == 0
    again = run("keys", "revoke", "acme", ro["prefix"], "--json")
    assert json.loads(again.stdout)["changed"] is False
    # refusals: exit 2 naming what is wrong
    for args, words in (
        (("keys", "list", "atlantis"), "TENANT: no tenant 'atlantis'"),
        (("keys", "revoke", "acme", "sw_nothere"), "PREFIX: tenant 'acme' has no API key"),
        (("keys", "create", "acme", "--expires", "2001-01-01"), "must be after now"),
        (("keys", "create", "acme", "--expires", "9999-12-31"), "at most 36525 days"),
        (("keys", "create", "acme", "--expires", "soon"), "--expires 'soon'"),
        (("keys", "rotate", "acme", ro["prefix"]), "cannot rotate: API key"),
    ):
        bad = run(*args)
        assert bad.exit_code == 2, (args, bad.output)
        assert words in " ".join(bad.stderr.split()), (args, bad.stderr)
    # each change is one audit entry of the Unix user (via cli)
    engine = make_engine(fresh_db_url)
    try:
        with session_factory(engine)() as s:
            rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
            acme = s.scalars(select(Tenant)).one()
    finally:
        engine.dispose()
    assert [e.action for e in rows] == ["tenant.create", "key.create", "key.rotate", "key.revoke"]
    assert {(e.via, e.actor_tenant_id, e.actor_key_prefix) for e in rows} == {("cli", None, None)}
    assert all(e.request_id.startswith("cli-") and e.actor_name for e in rows)
    assert rows[1].target == f"key:{ro['prefix']}" and rows[1].detail["tenant_id"] == acme.id
    assert rows[2].detail["overlap_s"] == 60 and rows[2].detail["old"]["prefix"] == first[:11]
