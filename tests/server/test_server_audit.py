"""The audit log (issue 15, item 4): every operator and provider change (and every key change)
writes exactly one entry, with who (tenant, key prefix), when (the app's clock), what and the
request id; a repeat that changes nothing writes none. Operators read it (``GET /v1/audit``,
filters and pages), others get 403; the database refuses to change or delete an entry."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pinned import NOW
from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.server.database.models import AuditEntry, JobRow, Tenant, TenantRole
from suanwang.server.models.centers import grant_centers

Who = Any  # conftest.Who
CENTER = "zhangjiakou"
H8 = NOW.replace(hour=8, minute=0)
APP = {
    "id": "audit-app", "name": "Audited", "category": "Tests", "summary": "An app.",
    "parameters": [],
    "template": {"kind": "analytics", "stacks": ["cpu"], "resources": {"cpus": 1},
                 "duration_s": 60, "command": "echo hi"},
}  # fmt: skip


def _iso(t: Any) -> str:
    return str(t.isoformat()).replace("+00:00", "Z")


def _entries(sessions: sessionmaker[Session], who: Who) -> list[AuditEntry]:
    with sessions() as s:
        stmt = select(AuditEntry).where(AuditEntry.actor_tenant_id == who.id)
        return list(s.scalars(stmt.order_by(AuditEntry.id)))


class Audited:
    """Sends requests as one tenant with a request id each, and checks that each change wrote
    exactly one entry for that request (and a repeat none)."""

    def __init__(self, client: TestClient, sessions: sessionmaker[Session], who: Who) -> None:
        self.client, self.sessions, self.who = client, sessions, who
        self.n = 0

    def send(self, method: str, path: str, **kw: Any) -> Any:
        self.n += 1
        headers = self.who.headers | {"X-Request-ID": f"req-{self.n}"} | kw.pop("headers", {})
        r = self.client.request(method, path, headers=headers, **kw)
        assert r.status_code < 300, (method, path, r.text)
        assert r.headers["x-request-id"] == f"req-{self.n}"
        return r

    def change(self, action: str, target: str | None, method: str, path: str, **kw: Any) -> Any:
        before = len(_entries(self.sessions, self.who))
        r = self.send(method, path, **kw)
        rows = _entries(self.sessions, self.who)
        assert len(rows) == before + 1, (action, [e.action for e in rows[before:]])
        e = rows[-1]
        assert (e.action, e.via, e.request_id) == (action, "api", f"req-{self.n}")
        assert (e.actor_tenant_id, e.actor_key_prefix) == (self.who.id, self.who.key[:11])
        assert NOW <= e.at < NOW + timedelta(seconds=1)  # the app's clock, never the wall's
        if target is not None:
            assert e.target == target, (action, e.target)
        return r, e

    def same(self, method: str, path: str, **kw: Any) -> None:
        before = len(_entries(self.sessions, self.who))
        self.send(method, path, **kw)
        assert len(_entries(self.sessions, self.who)) == before, (method, path)


def test_every_operator_change_writes_one_entry_and_a_repeat_none(
    client: TestClient, sessions: sessionmaker[Session], operator: Who, alice: Who,
    make_tenant: Callable[..., Who],
) -> None:  # fmt: skip
    op = Audited(client, sessions, operator)
    _, e = op.change("center.drain", f"center:{CENTER}", "POST", f"/v1/centers/{CENTER}/drain",
                     json={"reason": "maintenance"})  # fmt: skip
    assert e.detail == {"reason": "maintenance"} and e.actor_name == "ops"
    op.same("POST", f"/v1/centers/{CENTER}/drain")
    op.change("center.undrain", f"center:{CENTER}", "POST", f"/v1/centers/{CENTER}/undrain")
    op.same("POST", f"/v1/centers/{CENTER}/undrain")
    topup = {"json": {"tenant": "alice", "amount_cny": "12.50"},
             "headers": {"Idempotency-Key": "t-1"}}  # fmt: skip
    _, e = op.change("billing.topup", f"tenant:{alice.id}", "POST", "/v1/billing/topups", **topup)
    assert e.detail["amount_cny"] == "12.50" and e.detail["tenant"] == "alice"
    op.same("POST", "/v1/billing/topups", **topup)  # a replay
    grant = {"tenant": "alice", "card_hours": "2"}
    _, e = op.change("billing.quota_grant", f"tenant:{alice.id}", "POST", "/v1/billing/quotas",
                     json=grant)  # fmt: skip
    assert e.detail["grant"]["card_hours"] == "2.000000"
    quota = {"cohort": "labs", "quota_scu_per_h": 80}
    _, e = op.change("quota.set", f"tenant:{alice.id}", "PUT", "/v1/quotas/alice", json=quota)
    assert e.detail["settings"]["cohort"] == "labs"
    op.same("PUT", "/v1/quotas/alice", json=quota)  # set as it is: nothing recorded
    _, e = op.change("quota.remove", f"tenant:{alice.id}", "DELETE", "/v1/quotas/alice")
    assert e.detail["removed"] is True
    r, _ = op.change("offer.publish", None, "POST", "/v1/offers",
                     json={"center": CENTER, "model": "a100", "units": 8,
                           "price_cny_per_scu": "2.50", "start": _iso(H8),
                           "end": _iso(H8 + timedelta(hours=4)), "type": "reserved"})  # fmt: skip
    offer = r.json()["id"]
    assert _entries(sessions, operator)[-1].target == f"offer:{offer}"
    op.change("app.publish", "app:audit-app", "POST", "/v1/apps", json=APP)
    op.change("app.update", "app:audit-app", "PUT", "/v1/apps/audit-app",
              json=APP | {"name": "Audited again"})  # fmt: skip
    op.change("app.delete", "app:audit-app", "DELETE", "/v1/apps/audit-app")
    # a consumer's reservation and its cancelling are written too (they move money)
    mine = Audited(client, sessions, alice)
    book = {"offer_id": offer, "units": 2, "start": _iso(H8), "end": _iso(H8 + timedelta(hours=2))}
    r, e = mine.change("reservation.create", None, "POST", "/v1/reservations", json=book)
    rid = r.json()["id"]
    assert e.target == f"reservation:{rid}" and e.detail["reservation"]["units"] == 2
    mine.change("reservation.cancel", f"reservation:{rid}", "DELETE", f"/v1/reservations/{rid}")
    mine.same("DELETE", f"/v1/reservations/{rid}")
    op.change("offer.withdraw", f"offer:{offer}", "DELETE", f"/v1/offers/{offer}")
    op.same("DELETE", f"/v1/offers/{offer}")
    # keys
    r, e = op.change("key.create", None, "POST", "/v1/tenants/alice/keys", json={"name": "ci"})
    prefix = r.json()["key"]["prefix"]
    assert e.target == f"key:{prefix}" and e.detail["tenant_id"] == alice.id
    assert r.json()["api_key"] not in str(e.detail)  # never the key itself
    path = f"/v1/tenants/alice/keys/{prefix}"
    r, e = op.change(
        "key.rotate", f"key:{prefix}", "POST", f"{path}/rotate", json={"overlap_s": 60}
    )
    assert e.detail["overlap_s"] == 60 and e.detail["key"]["prefix"] == r.json()["key"]["prefix"]
    op.change("key.revoke", f"key:{prefix}", "DELETE", path)
    op.same("DELETE", path)


def test_a_providers_changes_are_written_and_a_consumers_jobs_are_not(
    client: TestClient, sessions: sessionmaker[Session], make_tenant: Callable[..., Who],
    alice: Who, operator: Who, submit: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    prov = make_tenant(TenantRole.PROVIDER)
    with sessions.begin() as s:
        grant_centers(session=s, tenant=s.get_one(Tenant, prov.id), centers=[CENTER], now=NOW)
    p = Audited(client, sessions, prov)
    r, _ = p.change("offer.publish", None, "POST", "/v1/offers",
                    json={"center": CENTER, "model": "a100", "units": 4,
                          "price_cny_per_scu": "3.00", "start": _iso(H8),
                          "end": _iso(H8 + timedelta(hours=2))})  # fmt: skip
    p.change("offer.withdraw", f"offer:{r.json()['id']}", "DELETE", f"/v1/offers/{r.json()['id']}")
    p.change("app.publish", "app:audit-app", "POST", "/v1/apps", json=APP)
    # a consumer's own job and its cancelling: in job_events, not in the audit log
    a = Audited(client, sessions, alice)
    job = submit(alice)
    a.same("POST", f"/v1/jobs/{job['id']}/cancel")
    # an operator cancelling another tenant's job is written
    other = submit(alice, name="second")
    op = Audited(client, sessions, operator)
    _, e = op.change("job.cancel", f"job:{other['id']}", "POST", f"/v1/jobs/{other['id']}/cancel")
    assert e.detail == {"tenant_id": alice.id, "name": "second"}
    with sessions() as s:
        assert s.get_one(JobRow, other["id"]).state == "cancelled"


def test_operators_read_the_log_with_filters_and_pages(
    client: TestClient, sessions: sessionmaker[Session], operator: Who,
    make_tenant: Callable[..., Who],
) -> None:  # fmt: skip
    ops2 = make_tenant(TenantRole.OPERATOR, "ops-2")
    op = Audited(client, sessions, ops2)
    for c in ("zhongwei", "qingyang", CENTER):
        op.change("center.drain", f"center:{c}", "POST", f"/v1/centers/{c}/drain")
    op.change("center.undrain", "center:zhongwei", "POST", "/v1/centers/zhongwei/undrain")
    mine = {"actor": "ops-2"}
    r = client.get("/v1/audit", params=mine, headers=operator.headers)
    assert r.status_code == 200, r.text
    got = r.json()["entries"]
    assert [e["action"] for e in got] == ["center.undrain"] + ["center.drain"] * 3  # newest first
    first = got[0]
    assert first["actor"] == {"tenant_id": ops2.id, "name": "ops-2", "key_prefix": ops2.key[:11]}
    assert first["request_id"] == "req-4" and first["via"] == "api"
    assert first["target"] == "center:zhongwei"
    # by id, by key prefix, by action and by family
    for actor in (ops2.id, ops2.key[:11]):
        assert len(client.get("/v1/audit", params={"actor": actor},
                              headers=operator.headers).json()["entries"]) == 4  # fmt: skip
    drains = client.get("/v1/audit", params=mine | {"action": "center.drain"},
                        headers=operator.headers).json()["entries"]  # fmt: skip
    assert len(drains) == 3
    family = client.get("/v1/audit", params=mine | {"action": "center."},
                        headers=operator.headers).json()["entries"]  # fmt: skip
    assert len(family) == 4
    # since/until by the entries' times (the app's clock steps a microsecond per reading)
    at = [e["at"] for e in got]
    window = client.get("/v1/audit", params=mine | {"since": at[2], "until": at[0]},
                        headers=operator.headers).json()["entries"]  # fmt: skip
    assert [e["id"] for e in window] == [got[1]["id"], got[2]["id"]]
    # pages of 3 then 1
    page = client.get("/v1/audit", params=mine | {"limit": 3}, headers=operator.headers).json()
    assert len(page["entries"]) == 3 and page["next_cursor"] is not None
    rest = client.get("/v1/audit", params=mine | {"limit": 3, "cursor": page["next_cursor"]},
                      headers=operator.headers).json()  # fmt: skip
    assert [e["id"] for e in rest["entries"]] == [got[3]["id"]] and rest["next_cursor"] is None
    # bad filters: a 422 naming the parameter
    for params, field in (({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
                          ({"cursor": "abc"}, "cursor"), ({"since": "yesterday"}, "since"),
                          ({"since": "2025-07-01T00:00"}, "since"),
                          ({"since": "2025-07-02T00:00Z", "until": "2025-07-01T00:00Z"}, "until"),
                          ({"action": "DROP TABLE"}, "action"), ({"actor": "a\x00b"}, "actor"),
                          ({"since": "0001-01-01T00:00+01:00"}, "since"),
                          ({"until": "9999-12-31T23:00-05:00"}, "until"),
                          ({"who": "x"}, "who")):  # fmt: skip
        r = client.get("/v1/audit", params=params, headers=operator.headers)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["detail"][0]["loc"][-1] == field, (params, r.text)


def test_consumers_and_providers_may_not_read_the_log(
    client: TestClient, make_tenant: Callable[..., Who]
) -> None:
    for role in (TenantRole.CONSUMER, TenantRole.PROVIDER):
        r = client.get("/v1/audit", headers=make_tenant(role).headers)
        assert r.status_code == 403 and r.json() == {"detail": "the audit log is for operators"}
    assert client.get("/v1/audit").status_code == 401


def test_the_database_refuses_to_change_or_delete_an_entry(
    client: TestClient, sessions: sessionmaker[Session], engine: Engine, operator: Who
) -> None:
    Audited(client, sessions, operator).change(
        "center.drain", "center:zhongwei", "POST", "/v1/centers/zhongwei/drain"
    )
    entry = _entries(sessions, operator)[-1]
    attempts = [
        update(AuditEntry).where(AuditEntry.id == entry.id).values(action="nothing"),
        text("UPDATE audit_log SET actor_name = 'someone else'"),
        text("DELETE FROM audit_log WHERE id = :id").bindparams(id=entry.id),
        text("DELETE FROM audit_log"),
    ]
    if engine.dialect.name == "postgresql":
        attempts.append(text("TRUNCATE audit_log"))
    for stmt in attempts:
        with sessions() as s:
            with pytest.raises(DBAPIError, match="audit_log is append-only"):
                s.execute(stmt)
            s.rollback()
    with sessions() as s:
        s.delete(s.get_one(AuditEntry, entry.id))
        with pytest.raises(DBAPIError, match="audit_log is append-only"):
            s.commit()
    again = _entries(sessions, operator)[-1]
    assert (again.id, again.action, again.actor_name) == (entry.id, "center.drain", "ops")


def test_every_answer_carries_a_request_id(client: TestClient, alice: Who) -> None:
    given = client.get("/v1/jobs", headers=alice.headers | {"X-Request-ID": "trace:abc-1.2_3"})
    assert given.headers["x-request-id"] == "trace:abc-1.2_3"
    for bad in ("", "x" * 65, "a b", "<script>", "\xe9".encode("latin-1")):
        r = client.get("/v1/jobs", headers=alice.headers | {"X-Request-ID": bad})
        made = r.headers["x-request-id"]
        assert made != bad and len(made) == 32, bad  # replaced by a new one, never refused
    ids = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3  # a new one for every request, unauthenticated ones too
    assert client.get("/v1/jobs").headers["x-request-id"]  # errors too


def test_the_audit_command_reads_the_log_over_the_api(
    client: TestClient, sessions: sessionmaker[Session], live_url: str, operator: Who, alice: Who
) -> None:
    from typer.testing import CliRunner

    from suanwang.cli import app as cli

    run = CliRunner().invoke
    env = {"SUANWANG_URL": live_url, "SUANWANG_API_KEY": operator.key}
    query = ["audit", "--actor", "ops", "--action", "center.", "--json"]
    # the log is append-only: other tests of this session may have drained centers before
    before = json.loads(run(cli, query, env=env).stdout)["entries"]
    Audited(client, sessions, operator).change(
        "center.drain", "center:qingyang", "POST", "/v1/centers/qingyang/drain"
    )
    r = run(cli, query, env=env)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    new = doc["entries"][: len(doc["entries"]) - len(before)]
    assert [(e["action"], e["target"]) for e in new] == [("center.drain", "center:qingyang")]
    assert doc["entries"][len(new) :] == before
    human = run(cli, ["audit", "--actor", "ops"], env=env)
    assert human.exit_code == 0 and "center:qingyang" in human.stdout and "req-1" in human.stdout
    refused = run(cli, ["audit"], env=env | {"SUANWANG_API_KEY": alice.key})
    assert refused.exit_code == 2 and "the audit log is for operators" in refused.stderr
