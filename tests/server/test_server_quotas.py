"""``/v1/quotas`` (issue 14, "Administration"), on SQLite and PostgreSQL: who may do what on
every route, each field's 422, the governance checked whole (nothing half-applied), idempotent
PUT, the record of changes, and what a tenant uses now against its quota on the pinned clock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from pinned import NOW, PERIOD
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.billing import ledger
from suanwang.core.governance import Rules
from suanwang.core.hardware import Precision
from suanwang.core.jobs import Priority
from suanwang.core.lifecycle import JobState
from suanwang.core.network import PRECISION_INDEX
from suanwang.server.database.models import JobRow, QuotaChange, TenantQuotaRow, TenantRole
from suanwang.server.models.billing.accounts import post
from suanwang.server.models.governance import GovernanceReader, load_governance
from suanwang.server.models.jobs import transition

Who = Any  # conftest.Who

NLP = {"cohort": "tsinghua", "quota_scu_per_h": 120, "borrow_limit_scu_per_h": 60,
       "lend_limit_scu_per_h": 100, "classes": ["normal", "batch", "preemptible"],
       "caps": {"families": {"nvidia": 80}, "hubs": {"gansu": 50}},
       "budget_cny_per_month": "50000", "max_spend_cny_per_h": 500}  # fmt: skip
HPC = {"cohort": "tsinghua", "quota_scu_per_h": 80}
REFUSAL = "only operators may set or remove quotas"
AUDIT_REFUSAL = "the record of quota changes is for operators"


@pytest.fixture(autouse=True)
def _no_quotas(client: TestClient, sessions: sessionmaker[Session]) -> Iterator[None]:
    """Quota rows go with their tenants (``client`` empties those); the record of changes
    names tenants by id only, so it is emptied here."""
    with sessions.begin() as s:
        s.execute(delete(QuotaChange))
        s.execute(delete(TenantQuotaRow))
    yield
    with sessions.begin() as s:
        s.execute(delete(QuotaChange))
        s.execute(delete(TenantQuotaRow))


@pytest.fixture
def keys(make_tenant: Callable[..., Who]) -> dict[str, Who]:
    return {
        "consumer": make_tenant(TenantRole.CONSUMER, "nlp-lab"),
        "provider": make_tenant(TenantRole.PROVIDER, "north-dc"),
        "operator": make_tenant(TenantRole.OPERATOR, "ops"),
        "other": make_tenant(TenantRole.CONSUMER, "hpc-lab"),
    }


def _put(client: TestClient, op: Who, tenant: str, body: dict[str, Any]) -> Any:
    return client.put(f"/v1/quotas/{tenant}", json=body, headers=op.headers)


def _set(client: TestClient, op: Who, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
    r = _put(client, op, tenant, body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _changes(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(QuotaChange)) or 0


# ------------------------------------------------------------------------- permissions


def test_every_route_refuses_a_request_without_a_key(client: TestClient, keys: Any) -> None:
    for method, path in (("GET", "/v1/quotas"), ("GET", "/v1/quotas/changes"),
                         ("GET", "/v1/quotas/nlp-lab"), ("PUT", "/v1/quotas/nlp-lab"),
                         ("DELETE", "/v1/quotas/nlp-lab")):  # fmt: skip
        r = client.request(method, path, json=HPC if method == "PUT" else None)
        assert r.status_code == 401, (method, path, r.text)
        r = client.request(method, path, headers={"Authorization": "Bearer sw_nope"})
        assert r.status_code == 401 and r.json() == {"detail": "invalid API key"}


def test_only_operators_set_remove_and_audit_whatever_they_send(
    client: TestClient, keys: dict[str, Who], sessions: sessionmaker[Session]
) -> None:
    for role in ("consumer", "provider"):
        who = keys[role]
        for sent in (HPC, {"not": "a quota"}):  # refused before the body is read
            for tenant in ("nlp-lab", "north-dc", "no-such-tenant"):
                r = _put(client, who, tenant, sent)
                assert r.status_code == 403 and r.json() == {"detail": REFUSAL}, (role, r.text)
        r = client.delete("/v1/quotas/nlp-lab", headers=who.headers)
        assert r.status_code == 403 and r.json() == {"detail": REFUSAL}
        r = client.get("/v1/quotas/changes", headers=who.headers)
        assert r.status_code == 403 and r.json() == {"detail": AUDIT_REFUSAL}
    assert _changes(sessions) == 0
    op = keys["operator"]
    assert _set(client, op, "nlp-lab", HPC)["changed"] is True
    r = client.get("/v1/quotas/changes", headers=op.headers)
    assert r.status_code == 200 and len(r.json()["changes"]) == 1
    r = client.delete("/v1/quotas/nlp-lab", headers=op.headers)
    assert r.status_code == 200 and r.json()["removed"] is True


def test_every_tenant_sees_its_own_quota_and_operators_every_one(
    client: TestClient, keys: dict[str, Who]
) -> None:
    op = keys["operator"]
    for role in ("consumer", "provider", "operator"):  # nothing set yet: an empty list
        r = client.get("/v1/quotas", headers=keys[role].headers)
        assert r.status_code == 200 and r.json() == {"quotas": []}
        name = {"consumer": "nlp-lab", "provider": "north-dc", "operator": "ops"}[role]
        r = client.get(f"/v1/quotas/{name}", headers=keys[role].headers)
        assert r.status_code == 404
        assert r.json() == {"detail": f"tenant {name!r} has no quota (none is set)"}
    _set(client, op, "nlp-lab", {**HPC, "quota_scu_per_h": 40})
    _set(client, op, "hpc-lab", HPC)
    _set(client, op, "north-dc", {"cohort": "north", "quota_scu_per_h": 10})
    everyone = client.get("/v1/quotas", headers=op.headers).json()["quotas"]
    assert [q["tenant"] for q in everyone] == ["hpc-lab", "nlp-lab", "north-dc"]
    for role, name in (("consumer", "nlp-lab"), ("provider", "north-dc")):
        who = keys[role]
        mine = client.get("/v1/quotas", headers=who.headers).json()["quotas"]
        assert [q["tenant"] for q in mine] == [name]
        own = client.get(f"/v1/quotas/{name}", headers=who.headers)
        assert own.status_code == 200 and own.json()["tenant"] == name
        by_id = client.get(f"/v1/quotas/{who.id}", headers=who.headers)
        assert by_id.status_code == 200 and by_id.json()["tenant"] == name
        # another tenant's quota is answered as no tenant at all: nothing leaks
        for other in ("hpc-lab", "ops", "no-such-tenant"):
            r = client.get(f"/v1/quotas/{other}", headers=who.headers)
            assert r.status_code == 404
            assert r.json() == {"detail": f"no tenant {other!r} (you may see only your own quota)"}
    for name in ("nlp-lab", "hpc-lab", "north-dc"):
        r = client.get(f"/v1/quotas/{name}", headers=op.headers)
        assert r.status_code == 200 and r.json()["tenant"] == name
    r = client.get("/v1/quotas/ops", headers=op.headers)
    assert r.status_code == 404 and "has no quota" in r.json()["detail"]
    r = client.get("/v1/quotas/atlantis", headers=op.headers)
    assert r.status_code == 404 and r.json() == {"detail": "no tenant 'atlantis'"}


def test_unknown_tenants_are_a_404_with_a_sentence(client: TestClient, keys: Any) -> None:
    op = keys["operator"]
    assert _put(client, op, "atlantis", HPC).json() == {"detail": "no tenant 'atlantis'"}
    r = client.delete("/v1/quotas/atlantis", headers=op.headers)
    assert r.status_code == 404 and r.json() == {"detail": "no tenant 'atlantis'"}
    r = client.delete("/v1/quotas/hpc-lab", headers=op.headers)
    assert r.status_code == 404
    assert r.json() == {"detail": "tenant 'hpc-lab' has no quota (none is set)"}
    r = client.get("/v1/quotas/changes", params={"tenant": "atlantis"}, headers=op.headers)
    assert r.status_code == 404 and r.json() == {"detail": "no tenant 'atlantis'"}


# ------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("change", "loc", "says"),
    [
        ({"quota_scu_per_h": -1}, ["quota_scu_per_h"], "must be >= 0"),
        ({"quota_scu_per_h": True}, ["quota_scu_per_h"], "not a number"),
        ({"quota_scu_per_h": "120"}, ["quota_scu_per_h"], "not a number"),
        ({"quota_scu_per_h": 1e12}, ["quota_scu_per_h"], "absurdly large"),
        ({"quota_scu_per_h": 10**400}, ["quota_scu_per_h"], "absurdly large"),
        ({"weight": 0}, ["weight"], "must be > 0"),
        ({"weight": 0.0000009}, ["weight"], "at least 0.000001"),
        ({"borrow_limit_scu_per_h": -5}, ["borrow_limit_scu_per_h"], "must be >= 0"),
        ({"lend_limit_scu_per_h": False}, ["lend_limit_scu_per_h"], "not a number"),
        ({"classes": ["normal", "vip"]}, ["classes", 1], "'urgent', 'normal', 'batch'"),
        ({"classes": []}, ["classes"], "at least 1 item"),
        ({"caps": {"families": {"nvidia": -1}}}, ["caps", "families", "nvidia"], ">= 0"),
        ({"caps": {"chips": {}}}, ["caps", "chips"], "Extra inputs"),
        ({"budget_cny_per_month": "12.345"}, ["budget_cny_per_month"], "2 decimals"),
        ({"budget_cny_per_month": "1e3"}, ["budget_cny_per_month"], "no sign, exponent"),
        ({"budget_cny_per_month": 10**12}, ["budget_cny_per_month"], "too large"),
        ({"budget_cny_per_month": "1000000000000"}, ["budget_cny_per_month"], "too large"),
        ({"max_spend_cny_per_h": -1}, ["max_spend_cny_per_h"], "must be >= 0"),
        ({"cohort": ""}, ["cohort"], "at least 1 character"),
        ({"cohort": " tsinghua"}, ["cohort"], "blanks at either end"),
        ({"cohort": "a\nb"}, ["cohort"], "pattern"),
        ({"quota": 5}, ["quota"], "Extra inputs"),
    ],
)
def test_a_bad_field_is_a_422_naming_it_and_nothing_is_written(
    client: TestClient,
    keys: dict[str, Who],
    sessions: sessionmaker[Session],
    change: dict[str, Any],
    loc: list[Any],
    says: str,
) -> None:
    r = _put(client, keys["operator"], "hpc-lab", {**HPC, **change})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert [d["loc"] for d in detail] == [["body", *loc]], detail
    assert says in detail[0]["msg"]
    assert _changes(sessions) == 0
    with sessions() as s:
        assert load_governance(s) is None


def test_a_required_field_missing_and_a_non_finite_number_are_422s(
    client: TestClient, keys: dict[str, Who]
) -> None:
    op = keys["operator"]
    r = _put(client, op, "hpc-lab", {"cohort": "tsinghua"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "quota_scu_per_h"]
    r = client.put(
        "/v1/quotas/hpc-lab",
        content=b'{"cohort": "c", "quota_scu_per_h": NaN}',
        headers={**op.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "quota_scu_per_h"]
    assert "not a finite number" in r.json()["detail"][0]["msg"]


def test_the_governance_is_checked_whole_before_anything_is_written(
    client: TestClient, keys: dict[str, Who], sessions: sessionmaker[Session]
) -> None:
    op = keys["operator"]
    # nlp-lab may not borrow 60 from a cohort where nobody lends yet
    r = _put(client, op, "nlp-lab", NLP)
    assert r.status_code == 422
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "borrow_limit_scu_per_h"]
    assert problem["msg"] == (
        "60 is more than its cohort 'tsinghua' can lend (0 SCU/h from the other tenants)"
    )
    assert problem["input"] == 60 and problem["type"] == "governance"
    # caps only on the scenario's families and hubs: every problem at once
    r = _put(client, op, "hpc-lab", {**HPC, "caps": {"families": {"nvidiaa": 1},
                                                     "hubs": {"atlantis": 2}}})  # fmt: skip
    assert r.status_code == 422
    locs = {tuple(d["loc"][2:]): d for d in r.json()["detail"]}
    assert set(locs) == {("families", "nvidiaa"), ("hubs", "atlantis")}
    assert locs["families", "nvidiaa"]["msg"].startswith("unknown (known: cambricon, cpu")
    assert locs["hubs", "atlantis"]["type"] == "scenario"
    assert all(d["loc"][:2] == ["body", "caps"] for d in r.json()["detail"])
    assert _changes(sessions) == 0
    # with hpc-lab lending 80, nlp-lab may borrow 60
    _set(client, op, "hpc-lab", HPC)
    assert _set(client, op, "nlp-lab", NLP)["settings"]["borrow_limit_scu_per_h"] == 60
    # hpc-lab lowering its quota to 20 would leave nlp-lab borrowing more than is lent
    r = _put(client, op, "hpc-lab", {**HPC, "quota_scu_per_h": 20})
    assert r.status_code == 422
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["tenants", "nlp-lab", "borrow_limit_scu_per_h"]
    assert problem["msg"].startswith("60 is more than its cohort 'tsinghua' can lend (20 SCU/h")
    assert "change tenant 'nlp-lab' first" in problem["msg"]
    # ... as would moving it to another cohort, or removing it
    r = _put(client, op, "hpc-lab", {**HPC, "cohort": "mit"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["tenants", "nlp-lab", "borrow_limit_scu_per_h"]
    r = client.delete("/v1/quotas/hpc-lab", headers=op.headers)
    assert r.status_code == 409
    assert r.json()["detail"].startswith(
        "removing 'hpc-lab''s quota would leave tenants.nlp-lab.borrow_limit_scu_per_h: 60 is "
        "more than its cohort 'tsinghua' can lend (0 SCU/h"
    )
    with sessions() as s:
        gov = load_governance(s)
    assert gov is not None and gov.tenants["hpc-lab"].quota_scu_per_h == 80
    assert gov.tenants["hpc-lab"].cohort == "tsinghua"
    assert _changes(sessions) == 2
    # lower nlp-lab's borrowing first, then hpc-lab may go
    _set(client, op, "nlp-lab", {**NLP, "borrow_limit_scu_per_h": 0})
    assert client.delete("/v1/quotas/hpc-lab", headers=op.headers).status_code == 200


# ------------------------------------------------------------------------- writes and record


def test_put_is_idempotent_and_every_change_is_recorded(
    client: TestClient, keys: dict[str, Who], sessions: sessionmaker[Session]
) -> None:
    op = keys["operator"]
    _set(client, op, "hpc-lab", HPC)
    first = _set(client, op, "nlp-lab", NLP)
    assert first["changed"] is True
    assert first["settings"] == {
        "cohort": "tsinghua", "quota_scu_per_h": 120.0, "borrow_limit_scu_per_h": 60.0,
        "lend_limit_scu_per_h": 100.0, "weight": 1.0, "classes": ["normal", "batch", "preemptible"],
        "caps": {"families": {"nvidia": 80.0}, "hubs": {"gansu": 50.0}},
        "budget_cny_per_month": "50000.00", "max_spend_cny_per_h": "500.00",
    }  # fmt: skip
    assert first["updated_by"] == "ops"
    assert first["updated_at"].startswith(NOW.isoformat()[:19])  # the API's clock
    # the same settings, however written: nothing changes, nothing is recorded
    same = {**NLP, "budget_cny_per_month": 50000.0, "classes": ["batch", "normal", "preemptible"]}
    again = _set(client, op, "nlp-lab", same)
    assert again["changed"] is False and again["settings"] == first["settings"]
    assert _changes(sessions) == 2
    _set(client, op, "nlp-lab", {**NLP, "weight": 2})
    assert client.delete("/v1/quotas/hpc-lab", headers=op.headers).status_code == 409
    _set(client, op, "nlp-lab", {"cohort": "tsinghua", "quota_scu_per_h": 120})  # defaults
    r = client.delete("/v1/quotas/hpc-lab", headers=op.headers)
    assert r.status_code == 200
    assert r.json() == {"tenant": "hpc-lab", "tenant_id": keys["other"].id, "removed": True,
                        "settings": {**first["settings"], "quota_scu_per_h": 80.0,
                                     "borrow_limit_scu_per_h": 0.0, "lend_limit_scu_per_h": None,
                                     "classes": [p.value for p in Priority],
                                     "caps": {"families": {}, "hubs": {}},
                                     "budget_cny_per_month": None,
                                     "max_spend_cny_per_h": None}}  # fmt: skip
    changes = client.get("/v1/quotas/changes", headers=op.headers).json()["changes"]
    assert [(c["tenant"], c["action"]) for c in changes] == [
        ("hpc-lab", "removed"), ("nlp-lab", "updated"), ("nlp-lab", "updated"),
        ("nlp-lab", "created"), ("hpc-lab", "created"),
    ]  # fmt: skip
    removed, latest, weighted, created = changes[:4]
    assert all(c["by"] == "ops" and c["by_id"] == op.id for c in changes)
    assert removed["after"] is None and removed["before"]["quota_scu_per_h"] == 80.0
    assert created["before"] is None
    assert created["after"] == {"tenant": "nlp-lab", **first["settings"]}
    assert weighted["before"]["weight"] == 1.0 and weighted["after"]["weight"] == 2.0
    assert latest["before"] == weighted["after"]
    assert latest["after"]["budget_cny_per_month"] is None
    assert all(c["at"].startswith(NOW.isoformat()[:19]) for c in changes)
    only = client.get("/v1/quotas/changes", params={"tenant": "hpc-lab", "limit": 1},
                      headers=op.headers).json()["changes"]  # fmt: skip
    assert [c["action"] for c in only] == ["removed"]
    r = client.get("/v1/quotas/changes", params={"limit": 0}, headers=op.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]


def test_the_record_outlives_the_tenant_and_load_governance_reads_names(
    client: TestClient, keys: dict[str, Who], sessions: sessionmaker[Session]
) -> None:
    from suanwang.server.database.models import Tenant

    op = keys["operator"]
    with sessions() as s:
        assert load_governance(s) is None  # nothing set: the dispatcher keeps its behaviour
    _set(client, op, "hpc-lab", HPC)
    _set(client, op, "nlp-lab", {**NLP, "weight": 2.5})
    with sessions() as s:
        gov = load_governance(s)
    assert gov is not None and gov.rules == Rules()
    assert set(gov.tenants) == {"hpc-lab", "nlp-lab"}
    nlp = gov.tenants["nlp-lab"]
    assert (nlp.cohort, nlp.quota_scu_per_h, nlp.weight) == ("tsinghua", 120.0, 2.5)
    assert nlp.classes == frozenset({Priority.NORMAL, Priority.BATCH, Priority.PREEMPTIBLE})
    assert dict(nlp.family_caps_scu_per_h) == {"nvidia": 80.0}
    assert nlp.budget_cny_per_month == Decimal("50000.00")
    assert gov.cohorts() == {"tsinghua": ("hpc-lab", "nlp-lab")}
    with sessions.begin() as s:
        s.execute(delete(Tenant).where(Tenant.id == keys["other"].id))
    with sessions() as s:
        gov = load_governance(s)
    assert gov is not None and set(gov.tenants) == {"nlp-lab"}
    changes = client.get("/v1/quotas/changes", headers=op.headers).json()["changes"]
    gone = changes[-1]
    assert gone["tenant"] == "hpc-lab" and gone["tenant_id"] == keys["other"].id


def test_the_governance_reader_sees_every_change_and_keeps_the_rest(
    client: TestClient, keys: dict[str, Who], sessions: sessionmaker[Session]
) -> None:
    """The dispatcher's reader builds the governance again on any change of the stored rows,
    through the API or not (no audit row: an operator's SQL, a tenant renamed), and keeps it
    while nothing changed; what it returns is what :func:`load_governance` reads."""
    from suanwang.server.database.models import Tenant

    op = keys["operator"]
    reader = GovernanceReader()

    def read() -> Any:
        with sessions() as s:
            got = reader(s)
            assert got == load_governance(s)
        return got

    assert read() is None
    _set(client, op, "hpc-lab", HPC)
    first = read()
    assert first is not None and first.tenants["hpc-lab"].weight == 1.0
    assert read() is first  # nothing changed: kept
    changes: list[Any] = [
        update(TenantQuotaRow).values(weight=Decimal("3")),
        update(TenantQuotaRow).values(family_caps={"nvidia": 5}),
        update(TenantQuotaRow).values(classes=["batch"]),
        update(Tenant).where(Tenant.id == keys["other"].id).values(name="hpc-lab-2"),
    ]
    last = first
    for change in changes:
        with sessions.begin() as s:
            s.execute(change)
        got = read()
        assert got is not last and got != last
        assert read() is got
        last = got
    assert last.tenants["hpc-lab-2"].weight == 3.0
    assert last.tenants["hpc-lab-2"].classes == frozenset({Priority.BATCH})
    with sessions.begin() as s:
        s.execute(delete(TenantQuotaRow))
    assert read() is None


# ------------------------------------------------------------------------- usage now


def _place(sessions: sessionmaker[Session], job_id: str, center: str, model: str,
           *, run: bool, ref: str | None = None) -> None:  # fmt: skip
    with sessions.begin() as s:
        job = s.get_one(JobRow, job_id)
        updates = {"center_id": center, "pool_model": model, "executor_ref": ref}
        detail = {"center": center, "pool": model}
        transition(session=s, job=job, to=JobState.SCHEDULED, now=NOW, detail=detail,
                   updates=updates)  # fmt: skip
        if run:
            transition(session=s, job=job, to=JobState.RUNNING, now=NOW)


def test_a_tenant_sees_what_its_running_jobs_use_against_its_quota(
    app: FastAPI,
    client: TestClient,
    keys: dict[str, Who],
    sessions: sessionmaker[Session],
    submit: Callable[..., dict[str, Any]],
) -> None:
    op, nlp = keys["operator"], keys["consumer"]
    net = app.state.network
    settings = {"cohort": "solo", "quota_scu_per_h": 10, "weight": 2}
    _set(client, op, "nlp-lab", settings)
    idle = client.get("/v1/quotas/nlp-lab", headers=nlp.headers).json()
    assert idle["usage"] == {
        "rate_scu_per_h": 0.0, "jobs": 0, "usage_over_quota": 0.0, "borrowed_scu_per_h": 0.0,
        "families": {}, "hubs": {}, "month": PERIOD, "budget_used_cny": "0.00",
        "budget_left_cny": None,
    }  # fmt: skip
    assert idle["entitlement_scu_per_h"] == 20.0  # quota x weight
    # running: 8 A100s at zhangjiakou, 8 H800s at zhongwei handed over; one only scheduled
    # (deferred: holds nothing yet); another tenant's running job does not count
    a100 = submit(nlp)["id"]
    _place(sessions, a100, "zhangjiakou", "a100", run=True, ref="r1")
    h800 = submit(nlp)["id"]
    _place(sessions, h800, "zhongwei", "h800", run=False, ref="r2")
    _place(sessions, submit(nlp)["id"], "zhongwei", "h800", run=False)
    _place(sessions, submit(keys["other"])["id"], "zhongwei", "h800", run=True, ref="r3")
    fp16 = PRECISION_INDEX[Precision.FP16]  # training
    speed_a100 = float(net.pool_speed[net.pool_named("zhangjiakou", "a100"), fp16])
    speed_h800 = float(net.pool_speed[net.pool_named("zhongwei", "h800"), fp16])
    rate = 8 * speed_a100 + 8 * speed_h800
    # a charge this month counts against the budget, one of last month does not
    with sessions.begin() as s:
        for job_id, at, amount in ((a100, NOW, "12.34"), (h800, NOW - timedelta(days=40), "5")):
            entry = ledger.charge(tenant_id=nlp.id, job_id=job_id, rate=Decimal("0.1"),
                                  by_provider={ledger.payable(None): Decimal(amount)},
                                  hold_amount=Decimal(0), available=Decimal(0))  # fmt: skip
            post(session=s, entry=entry, now=at)
    _set(client, op, "nlp-lab", {**settings, "budget_cny_per_month": "100"})
    view = client.get("/v1/quotas/nlp-lab", headers=nlp.headers).json()
    use = view["usage"]
    assert use["jobs"] == 2
    assert use["rate_scu_per_h"] == pytest.approx(rate)
    assert use["usage_over_quota"] == pytest.approx(rate / 10)
    assert use["borrowed_scu_per_h"] == pytest.approx(rate - 10)
    assert use["families"] == {"nvidia": pytest.approx(rate)}
    assert set(use["hubs"]) == {"jingjinji", "ningxia"}
    assert use["hubs"]["jingjinji"] == pytest.approx(8 * speed_a100)
    assert (use["budget_used_cny"], use["budget_left_cny"]) == ("12.34", "87.66")
    assert client.get("/v1/quotas", headers=op.headers).json()["quotas"] == [view]


def test_two_operators_changing_one_cohort_at_once_cannot_both_pass(
    app: FastAPI, client: TestClient, keys: dict[str, Who], sessions: sessionmaker[Session]
) -> None:
    """Each change alone is sound (nlp-lab borrows 60 of hpc-lab's 80; hpc-lab's quota drops
    to 20 while nlp-lab borrows nothing), both together are not: writes are serialised and
    checked whole, so exactly one passes, whichever comes first."""
    from suanwang.core.governance import check
    from suanwang.scenarios.tenants import cap_names
    from suanwang.server.database.models import Tenant
    from suanwang.server.models.governance import QuotaRefused, set_quota
    from suanwang.server.models.quota_settings import QuotaSettings

    op = keys["operator"]
    _set(client, op, "hpc-lab", HPC)
    _set(client, op, "nlp-lab", {"cohort": "tsinghua", "quota_scu_per_h": 120})
    scenario = app.state.network.scenario
    changes = {"nlp-lab": {"cohort": "tsinghua", "quota_scu_per_h": 120,
                           "borrow_limit_scu_per_h": 60},
               "hpc-lab": {**HPC, "quota_scu_per_h": 20}}  # fmt: skip
    with sessions() as s:  # read first: on SQLite a transaction holds the write lock
        tenants = {t.name: t for t in s.scalars(select(Tenant))}

    def change(name: str, start: threading.Barrier, outcome: dict[str, str]) -> None:
        fields = QuotaSettings.model_validate(changes[name])
        start.wait()
        with sessions() as s:
            try:
                set_quota(session=s, now=NOW, by=tenants["ops"], tenant=tenants[name],
                          fields=fields, scenario=scenario)  # fmt: skip
                s.commit()
                outcome[name] = "set"
            except QuotaRefused:
                outcome[name] = "refused"

    for _ in range(3):
        start, outcome = threading.Barrier(2, timeout=60), {}
        threads = [threading.Thread(target=change, args=(n, start, outcome)) for n in changes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(outcome.values()) == ["refused", "set"], outcome
        with sessions() as s:
            gov = load_governance(s)
        assert gov is not None and check(gov, *cap_names(scenario)) == []
        # back to where both are sound alone
        _set(client, op, "nlp-lab", {"cohort": "tsinghua", "quota_scu_per_h": 120})
        _set(client, op, "hpc-lab", HPC)


def test_any_tenant_name_works_in_the_path(
    client: TestClient, keys: dict[str, Who], make_tenant: Callable[..., Who]
) -> None:
    op = keys["operator"]
    odd = make_tenant(TenantRole.CONSUMER, "lab/α [x] 1%")
    path = "/v1/quotas/lab%2F%CE%B1%20%5Bx%5D%201%25"
    r = client.put(path, json=HPC, headers=op.headers)
    assert r.status_code == 200 and r.json()["tenant"] == "lab/α [x] 1%", r.text
    assert client.get(path, headers=odd.headers).json()["tenant"] == "lab/α [x] 1%"
    assert client.get("/v1/quotas/changes", headers=op.headers).status_code == 200
    assert client.delete(path, headers=op.headers).json()["removed"] is True
