"""Providers own centers: who sees which job and which center, on every endpoint; the admin CLI.

Runs on SQLite and PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
import typer
from pinned import NOW
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from suanwang.cli.admin import tenants_app
from suanwang.core.lifecycle import JobState
from suanwang.server.database.models import CenterOwner, JobRow, Tenant, TenantRole
from suanwang.server.database.session import make_engine, session_factory
from suanwang.server.models.centers import (
    CenterTaken,
    NotAProvider,
    NotOwned,
    UnknownCenters,
    grant_centers,
    owned_centers,
    revoke_centers,
)
from suanwang.server.models.jobs import transition

Submit = Callable[..., dict[str, Any]]
cli = typer.Typer()
cli.add_typer(tenants_app, name="tenants")
runner = CliRunner()
#: Every route about one job, as (method, suffix).
JOB_ROUTES = [("GET", ""), ("GET", "/events"), ("GET", "/logs"), ("POST", "/cancel")]


def _grant(sessions: sessionmaker[Session], who: Any, *centers: str) -> list[str]:
    with sessions() as s:
        tenant = s.get(Tenant, who.id)
        assert tenant is not None
        owned = grant_centers(session=s, tenant=tenant, centers=centers, now=NOW)
        s.commit()
        return owned


def _place(sessions: sessionmaker[Session], job_id: str, center: str, *more: JobState) -> None:
    with sessions() as s:
        row = s.get(JobRow, job_id)
        assert row is not None
        upd = {"center_id": center, "pool_model": "a100"}
        transition(session=s, job=row, to=JobState.SCHEDULED, updates=upd)
        for to in more:
            transition(session=s, job=row, to=to)
        s.commit()


@pytest.fixture
def world(
    client: Any,
    sessions: sessionmaker[Session],
    make_tenant: Callable[..., Any],
    alice: Any,
    bob: Any,
    operator: Any,
    submit: Submit,
) -> dict[str, Any]:
    """Provider ``p`` owns zhangjiakou and wuhu, ``q`` owns zhongwei; jobs of alice and bob."""
    p = make_tenant(TenantRole.PROVIDER, "p-north")
    q = make_tenant(TenantRole.PROVIDER, "q-west")
    _grant(sessions, p, "zhangjiakou", "wuhu")
    _grant(sessions, q, "zhongwei")
    jobs = {
        "a_on_p": submit(alice, name="a-on-p")["id"],
        "b_on_p": submit(bob, name="b-on-p")["id"],
        "a_on_q": submit(alice, name="a-on-q")["id"],
        "a_pending": submit(alice, name="a-pending")["id"],
        "b_on_p_ran": submit(bob, name="b-on-p-ran")["id"],
    }
    _place(sessions, jobs["a_on_p"], "zhangjiakou", JobState.RUNNING)
    _place(sessions, jobs["b_on_p"], "wuhu")
    _place(sessions, jobs["a_on_q"], "zhongwei")
    _place(sessions, jobs["b_on_p_ran"], "zhangjiakou", JobState.RUNNING, JobState.SUCCEEDED)
    return {"p": p, "q": q, "alice": alice, "bob": bob, "ops": operator, "jobs": jobs}


def _listed(client: Any, who: Any, **params: Any) -> set[str]:
    r = client.get("/v1/jobs", headers=who.headers, params=params)
    assert r.status_code == 200, r.text
    return {j["id"] for j in r.json()["items"]}


def test_each_role_lists_exactly_the_jobs_it_may_see(client: Any, world: dict[str, Any]) -> None:
    j = world["jobs"]
    assert _listed(client, world["p"]) == {j["a_on_p"], j["b_on_p"], j["b_on_p_ran"]}
    assert _listed(client, world["q"]) == {j["a_on_q"]}
    assert _listed(client, world["alice"]) == {j["a_on_p"], j["a_on_q"], j["a_pending"]}
    assert _listed(client, world["bob"]) == {j["b_on_p"], j["b_on_p_ran"]}
    assert _listed(client, world["ops"]) == set(j.values())
    # filters and paging keep to the same visibility
    assert _listed(client, world["p"], state="running") == {j["a_on_p"]}
    assert _listed(client, world["p"], state="pending") == set()
    r = client.get("/v1/jobs", headers=world["p"].headers, params={"limit": 2})
    page = r.json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = client.get(
        "/v1/jobs", headers=world["p"].headers, params={"cursor": page["next_cursor"]}
    ).json()
    assert {x["id"] for x in page["items"] + rest["items"]} == _listed(client, world["p"])


@pytest.mark.parametrize(("method", "suffix"), JOB_ROUTES)
def test_a_provider_gets_404_for_jobs_not_on_its_centers(
    client: Any, world: dict[str, Any], method: str, suffix: str
) -> None:
    j = world["jobs"]
    for job in (j["a_on_q"], j["a_pending"]):
        r = client.request(method, f"/v1/jobs/{job}{suffix}", headers=world["p"].headers)
        assert r.status_code == 404, (job, r.text)
        assert r.json()["detail"] == f"no job {job!r}"  # the same answer as for no job at all
    for job in (j["a_on_p"], j["b_on_p"], j["a_pending"]):
        r = client.request(method, f"/v1/jobs/{job}{suffix}", headers=world["q"].headers)
        assert r.status_code == 404, (job, r.text)


@pytest.mark.parametrize("suffix", ["", "/events", "/logs"])
def test_a_provider_reads_jobs_on_its_centers(
    client: Any, world: dict[str, Any], suffix: str
) -> None:
    j = world["jobs"]
    for job in (j["a_on_p"], j["b_on_p"], j["b_on_p_ran"]):
        r = client.get(f"/v1/jobs/{job}{suffix}", headers=world["p"].headers)
        assert r.status_code == 200, r.text
        owner = client.get(f"/v1/jobs/{job}{suffix}", headers=world["ops"].headers)
        assert r.content == owner.content  # the same view as an operator's


def test_a_provider_may_not_cancel_a_customers_job(client: Any, world: dict[str, Any]) -> None:
    j = world["jobs"]
    for job in (j["a_on_p"], j["b_on_p"]):
        r = client.post(f"/v1/jobs/{job}/cancel", headers=world["p"].headers)
        assert r.status_code == 403, r.text
        assert "only that tenant or an operator" in r.json()["detail"]
    states = {
        job: client.get(f"/v1/jobs/{job}", headers=world["ops"].headers).json()["state"]
        for job in (j["a_on_p"], j["b_on_p"])
    }
    assert states == {j["a_on_p"]: "running", j["b_on_p"]: "scheduled"}
    # the job's own tenant and operators may
    for job, who in ((j["a_on_p"], world["alice"]), (j["b_on_p"], world["ops"])):
        r = client.post(f"/v1/jobs/{job}/cancel", headers=who.headers)
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
    # consumers still get 404 for other tenants' jobs, whoever's center they are on
    r = client.post(f"/v1/jobs/{j['a_on_q']}/cancel", headers=world["bob"].headers)
    assert r.status_code == 404


def test_a_provider_sees_and_cancels_its_own_submissions(
    client: Any, world: dict[str, Any], submit: Submit
) -> None:
    own = submit(world["p"], name="provider-own")["id"]
    assert own in _listed(client, world["p"])
    assert own not in _listed(client, world["q"])
    r = client.post(f"/v1/jobs/{own}/cancel", headers=world["p"].headers)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"


def test_revoking_a_center_hides_its_jobs(
    client: Any, world: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    j = world["jobs"]
    with sessions() as s:
        p = s.get(Tenant, world["p"].id)
        assert p is not None
        assert revoke_centers(session=s, tenant=p, centers=["wuhu"]) == ["zhangjiakou"]
        s.commit()
    assert j["b_on_p"] not in _listed(client, world["p"])
    r = client.get(f"/v1/jobs/{j['b_on_p']}", headers=world["p"].headers)
    assert r.status_code == 404
    assert j["a_on_p"] in _listed(client, world["p"])


def test_centers_a_provider_sees_only_its_own(
    client: Any, world: dict[str, Any], app: Any, make_tenant: Callable[..., Any]
) -> None:
    every = [c.id for c in app.state.scenario.centers]

    def ids(who: Any) -> list[str]:
        r = client.get("/v1/centers", headers=who.headers)
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["centers"]]

    assert ids(world["p"]) == [c for c in every if c in {"zhangjiakou", "wuhu"}]
    assert ids(world["q"]) == ["zhongwei"]
    assert ids(make_tenant(TenantRole.PROVIDER, "p-none")) == []
    assert ids(world["alice"]) == every  # consumers need the network view
    assert ids(world["ops"]) == every
    # the provider's view of its center is the operator's (capacity, use, signals)
    mine = client.get("/v1/centers", headers=world["p"].headers).json()["centers"]
    ops = {c["id"]: c for c in client.get("/v1/centers", headers=world["ops"].headers).json()[
        "centers"
    ]}  # fmt: skip
    for c in mine:
        assert c == ops[c["id"]]
    # the network totals stay national for everyone
    nat = client.get("/v1/network", headers=world["p"].headers).json()["national"]
    assert nat["centers"] == len(every)


# --------------------------------------------------------------------------- data functions


def test_grant_and_revoke_rules(
    sessions: sessionmaker[Session], make_tenant: Callable[..., Any], alice: Any
) -> None:
    p = make_tenant(TenantRole.PROVIDER, "p1")
    q = make_tenant(TenantRole.PROVIDER, "q1")
    assert _grant(sessions, p, "zhongwei", " horinger ", "zhongwei") == ["horinger", "zhongwei"]
    assert _grant(sessions, p, "zhongwei") == ["horinger", "zhongwei"]  # again: no change
    with sessions() as s:
        tq, ta = s.get(Tenant, q.id), s.get(Tenant, alice.id)
        assert tq is not None and ta is not None
        with pytest.raises(CenterTaken, match=r"'zhongwei' \(owned by 'p1'\)"):
            grant_centers(session=s, tenant=tq, centers=["wuhu", "zhongwei"], now=NOW)
        s.rollback()
        assert owned_centers(session=s, tenant=tq) == []  # nothing granted, not even wuhu
        with pytest.raises(NotAProvider, match="'alice' is a consumer"):
            grant_centers(session=s, tenant=ta, centers=["wuhu"], now=NOW)
        with pytest.raises(UnknownCenters, match=r"'atlantis', 'mu'.*scenario 'china'"):
            grant_centers(
                session=s,
                tenant=tq,
                centers=["wuhu", "atlantis", "mu"],
                known={"wuhu"},
                scenario="china",
                now=NOW,
            )
        with pytest.raises(NotOwned, match=r"'q1' does not own center\(s\) 'zhongwei'"):
            revoke_centers(session=s, tenant=tq, centers=["zhongwei"])
        tp = s.get(Tenant, p.id)
        assert tp is not None
        assert revoke_centers(session=s, tenant=tp, centers=["zhongwei"]) == ["horinger"]
        s.commit()
    assert _grant(sessions, q, "zhongwei") == ["zhongwei"]  # free again


def test_two_providers_racing_for_a_center_one_wins(
    sessions: sessionmaker[Session], make_tenant: Callable[..., Any]
) -> None:
    n = 5
    who = [make_tenant(TenantRole.PROVIDER, f"racer-{i}") for i in range(n)]
    barrier = threading.Barrier(n)
    won: list[str] = []
    lost: list[str] = []
    errors: list[BaseException] = []

    def worker(w: Any) -> None:
        try:
            with sessions() as s:
                tenant = s.get(Tenant, w.id)
                assert tenant is not None
                s.commit()
                barrier.wait(timeout=10)
                try:
                    grant_centers(session=s, tenant=tenant, centers=["ulanqab"], now=NOW)
                    s.commit()
                    won.append(w.id)
                except CenterTaken as exc:
                    s.rollback()
                    lost.append(str(exc))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in who]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(won) == 1 and len(lost) == n - 1
    assert all("'ulanqab' (owned by 'racer-" in m for m in lost)
    with sessions() as s:
        assert list(s.scalars(select(CenterOwner.tenant_id))) == won


def test_deleting_a_provider_frees_its_centers(
    sessions: sessionmaker[Session], make_tenant: Callable[..., Any]
) -> None:
    p = make_tenant(TenantRole.PROVIDER, "gone")
    _grant(sessions, p, "wuhu")
    with sessions() as s:
        tenant = s.get(Tenant, p.id)
        s.delete(tenant)
        s.commit()
        assert s.scalars(select(CenterOwner)).all() == []


# --------------------------------------------------------------------------- admin CLI


def _tenants(*args: str) -> Any:
    return runner.invoke(cli, ["tenants", *args])


def _owned(db: str, name: str) -> list[str]:
    engine = make_engine(db)
    try:
        with session_factory(engine)() as s:
            tenant = s.scalars(select(Tenant).where(Tenant.name == name)).one()
            return owned_centers(session=s, tenant=tenant)
    finally:
        engine.dispose()


def test_cli_creates_a_provider_with_centers(fresh_db_url: str) -> None:
    db = fresh_db_url
    r = _tenants("create", "north", "--role", "provider", "--centers", "zhongwei,horinger",
                 "--db", db, "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert set(doc) == {"tenant_id", "api_key", "centers"}
    assert doc["centers"] == ["horinger", "zhongwei"]
    assert _owned(db, "north") == ["horinger", "zhongwei"]
    human = _tenants("create", "south", "--role", "provider", "--db", db)
    assert human.exit_code == 0 and "centers: (none yet)" in human.stdout

    # a center has one owner: the second provider is not created at all
    taken = _tenants("create", "west", "--role", "provider", "--centers", "wuhu",
                     "--centers", "zhongwei", "--db", db)  # fmt: skip
    assert taken.exit_code == 1
    assert "'zhongwei' (owned by 'north')" in taken.stderr
    again = _tenants("create", "west", "--role", "provider", "--db", db, "--json")
    assert again.exit_code == 0, again.output  # the name was never taken

    # grant and revoke later
    r = _tenants("centers", "north", "--remove", "horinger", "--add", "wuhu,ulanqab",
                 "--db", db, "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["centers"] == ["ulanqab", "wuhu", "zhongwei"]
    shown = _tenants("centers", "north", "--db", db)
    assert shown.exit_code == 0 and shown.stdout.strip() == "north: ulanqab, wuhu, zhongwei"
    moved = _tenants("centers", "west", "--add", "horinger", "--db", db, "--json")
    assert json.loads(moved.stdout)["centers"] == ["horinger"]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("create", "c", "--centers", "wuhu"), 2, "--centers is for providers only"),
        (("create", "o", "--role", "operator", "--centers", "wuhu"), 2, "not for a operator"),
        (("create", "p", "--role", "provider", "--centers", "wuhu,atlantis,mu"), 2,
         "unknown center(s) 'atlantis', 'mu': not in scenario 'china'"),
        (("create", "p", "--role", "provider", "--centers", " , "), 2, "names no center"),
        (("create", "p", "--role", "provider", "--centers", "wuhu", "--scenario", "/no/such"),
         2, "--scenario '/no/such'"),
        (("centers", "nobody", "--add", "wuhu"), 2, "no tenant named 'nobody'"),
        (("centers", "north", "--add", "atlantis"), 2, "unknown center(s) 'atlantis'"),
        (("centers", "north", "--remove", "wuhu"), 2, "'north' does not own center(s) 'wuhu'"),
        (("centers", "north", "--add", "wuhu", "--remove", "wuhu"), 2, "both --add and --remove"),
        (("centers", "buyer", "--add", "wuhu"), 2, "'buyer' is a consumer"),
        (("centers", "other", "--add", "zhongwei"), 1, "'zhongwei' (owned by 'north')"),
    ],
)  # fmt: skip
def test_cli_refuses_bad_centers_with_a_clear_error(
    fresh_db_url: str, args: tuple[str, ...], code: int, needle: str
) -> None:
    db = fresh_db_url
    for setup in (
        ("create", "north", "--role", "provider", "--centers", "zhongwei"),
        ("create", "other", "--role", "provider"),
        ("create", "buyer"),
    ):
        assert _tenants(*setup, "--db", db).exit_code == 0
    r = _tenants(*args, "--db", db)
    assert r.exit_code == code, r.output
    assert needle in r.stderr
    assert "Traceback" not in r.output
    assert _owned(db, "north") == ["zhongwei"]  # nothing changed
