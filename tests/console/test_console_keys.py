"""The console's Keys page in a real browser against ``suanwang serve`` (docs/console.md):
one's own keys created (the secret shown once), rotated and revoked; the console's own key
rotated (the console switches to the successor), then revoked (signed out); a read-only key
refused a change; an operator managing another tenant's keys; a consumer refused another
tenant's. What the browser did is checked against the API."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

Browser = Callable[..., dict[str, Any]]
Live = Any  # conftest.Live


def _get(live: Live, path: str, key: str) -> httpx.Response:
    return httpx.get(f"{live.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10)


def _keys(live: Live, key: str) -> dict[str, dict[str, Any]]:
    r = _get(live, "/v1/keys", key)
    assert r.status_code == 200, r.text
    return {k["prefix"]: k for k in r.json()["keys"]}


def _new_key(live: Live, key: str, **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{live.url}/v1/keys", json=body, timeout=10,
                   headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


def test_own_keys_created_once_shown_rotated_and_revoked(browser: Browser, live: Live) -> None:
    me = live.new_tenant(f"keys-own-{secrets.token_hex(3)}")
    helper = _new_key(live, me.key, name="helper")["api_key"]  # to look at the keys afterwards
    seen = browser("keys_own", key=me)
    assert me.key[:11] in seen["console_key"] and "full access" in seen["console_key"]
    assert seen["pickers"] == 0  # a consumer picks no tenant
    # a past expiry: refused next to its field, by the server
    assert "must be after now" in seen["expiry_error"]
    # the secret: shown with a warning, copied, and a working key of this tenant
    secret = seen["secret"]
    assert secret.startswith("sw_") and len(secret) > 40
    assert "will not be shown again" in seen["warning"]
    assert seen["field_errors"] == 0
    assert seen["clipboard"] == secret
    assert _get(live, "/v1/me", secret).json() == {
        "tenant_id": me.tenant_id, "name": _get(live, "/v1/me", helper).json()["name"],
        "role": "consumer", "key_prefix": secret[:11], "read_only": True,
    }  # fmt: skip
    assert seen["created"]["name"] == "dashboard" and seen["created"]["access"] == "read-only"
    assert "2099" in seen["created"]["expires"]
    # gone once the page was left
    assert seen["secret_again"] is False and seen["secret_panels"] == 0
    # rotation: more than a day refused at the field; one hour: the old key works an hour more
    assert "86400" in seen["overlap_error"]
    keys = _keys(live, helper)
    old, new = keys[secret[:11]], keys[seen["successor"][:11]]
    assert seen["old_state"] == "active" == old["state"]
    overlap = datetime.fromisoformat(old["expires_at"]) - datetime.fromisoformat(new["created_at"])
    assert overlap.total_seconds() == 3600
    assert new["name"] == "dashboard" and new["read_only"] is True
    assert "keeps working until" in seen["rotated"] and new["prefix"] in seen["rotated"]
    # the successor revoked (after a confirmation), no button left on it
    assert new["state"] == "revoked" and new["revoked_at"] is not None
    assert f"Revoked {new['prefix']}" in seen["revoked"] and seen["revoke_buttons"] == 0
    assert _get(live, "/v1/me", seen["successor"]).status_code == 401
    # the console's own key rotated: the console now uses the successor (and says so)
    assert seen["first_own"] == me.key[:11]
    own = seen["own_prefix"]
    assert own != me.key[:11] and own in seen["console_key_after"]
    assert f"it now uses {own}" in seen["switched"]
    assert keys[me.key[:11]]["state"] == "revoked" and keys[own]["name"] == "default"
    assert _get(live, "/v1/me", me.key).status_code == 401
    # ... then revoked: confirmed as such, then signed out saying so
    assert "the console signs out" in seen["dialogs"][-1] and own in seen["dialogs"][-1]
    assert "You revoked the key this console was signed in with" in seen["signed_out"]
    assert own in seen["signed_out"] and seen["nav_hidden"] is True
    assert keys[own]["state"] == "revoked"


def test_a_read_only_key_sees_its_keys_but_cannot_create_one(browser: Browser, live: Live) -> None:
    me = live.new_tenant(f"keys-ro-{secrets.token_hex(3)}")
    ro = _new_key(live, me.key, name="dashboard", read_only=True)
    before = _keys(live, me.key)
    seen = browser("keys_read_only", key=type(me)(me.tenant_id, ro["api_key"]))
    assert ro["key"]["prefix"] in seen["console_key"] and seen["access"] == "read-only"
    assert seen["rows"] == 2
    assert f"API key {ro['key']['prefix']} is read-only" in seen["refused"]
    assert "POST /v1/keys" in seen["refused"]
    assert seen["secret_panels"] == 0
    assert _keys(live, me.key) == before  # nothing was made


def test_an_operator_manages_another_tenants_keys(browser: Browser, live: Live) -> None:
    other = live.new_tenant(f"keys-other-{secrets.token_hex(3)}")
    spare = _new_key(live, other.key, name="spare")
    seen = browser("keys_operator", tenant=_get(live, "/v1/me", other.key).json()["name"],
                   revoke=spare["key"]["prefix"])  # fmt: skip
    assert "no tenant 'atlantis-" in seen["unknown"] and seen["create_hidden"] is True
    assert seen["title"].startswith("Keys of keys-other-")
    assert set(seen["before"]) == {other.key[:11], spare["key"]["prefix"]}
    assert seen["hash"].startswith("#/keys?tenant=keys-other-")
    # the key made for the other tenant is that tenant's; its revoked key no longer works
    assert _get(live, "/v1/me", seen["secret"]).json()["tenant_id"] == other.tenant_id
    keys = _keys(live, other.key)
    assert keys[seen["secret"][:11]]["name"] == "made-by-operator"
    assert keys[spare["key"]["prefix"]]["state"] == "revoked"
    assert _get(live, "/v1/me", spare["api_key"]).status_code == 401
    assert f"Revoked {spare['key']['prefix']}" in seen["revoked"]
    assert seen["nav_hidden"] is False  # the operator's own key was not touched


def test_a_consumer_cannot_see_another_tenants_keys(browser: Browser, live: Live) -> None:
    me = live.new_tenant(f"keys-me-{secrets.token_hex(3)}")
    other = live.new_tenant(f"keys-them-{secrets.token_hex(3)}")
    theirs = _new_key(live, other.key, name="theirs")["key"]["prefix"]
    name = _get(live, "/v1/me", other.key).json()["name"]
    seen = browser("keys_consumer", key=me, tenant=name)
    assert seen["own"] == [me.key[:11]]
    assert seen["pickers"] == 0
    assert "only operators may manage another tenant's keys" in seen["refused"]
    assert other.key[:11] not in seen["main"] and theirs not in seen["main"]
