"""Schema and migrations: packaged, idempotent, identical to the ORM; UTC times; constraints."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from migrating import step
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from suanwang.server.database.models import Base, JobRow, Tenant, TenantRole
from suanwang.server.database.models.audit import AuditEntry
from suanwang.server.database.session import (
    MIGRATIONS_DIR,
    alembic_config,
    json_text,
    make_engine,
    migrate,
    session_factory,
)
from suanwang.server.models.tenants import replace_key


def test_migrations_ship_inside_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert (MIGRATIONS_DIR / "columns.py").is_file()  # the columns the versions share
    assert (MIGRATIONS_DIR / "versions" / "0001_initial.py").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0002_center_owners_start_at.py").is_file()
    assert "suanwang" in MIGRATIONS_DIR.parts


def test_migrate_creates_schema_equal_to_models_and_is_idempotent(fresh_db_url: str) -> None:
    migrate(fresh_db_url)
    migrate(fresh_db_url)  # a second start changes nothing
    engine = make_engine(fresh_db_url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            assert {"tenants", "center_owners", "jobs", "job_events", "alembic_version"} <= tables
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            assert head is not None and head >= "0002"
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_timestamps_come_back_utc_aware(sessions: sessionmaker[Session], client: object) -> None:
    cst = timezone(timedelta(hours=8))
    made = datetime(2025, 7, 1, 14, 0, 0, 123456, tzinfo=cst)
    with sessions() as s:
        s.add(Tenant(id="t1", name="tz", role="consumer", api_key_hash="0" * 64, created_at=made))
        s.commit()
    with sessions() as s:
        got = s.scalars(select(Tenant.created_at).where(Tenant.id == "t1")).one()
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)
    assert got == made
    assert got == datetime(2025, 7, 1, 6, 0, 0, 123456, tzinfo=UTC)


def test_many_rows_binding_the_same_instants_store_each_its_own(
    sessions: sessionmaker[Session], client: object
) -> None:
    """A statement run for many rows binds one instant object in most of them (remembered
    once converted); every row keeps its own, whatever the others bound, and an equal
    instant of another zone is converted anew."""
    cst = timezone(timedelta(hours=8))
    one = datetime(2025, 7, 1, 14, 0, 0, 123456, tzinfo=cst)
    other = datetime(2025, 7, 1, 6, 0, 0, 123456, tzinfo=UTC)  # == one
    later = one + timedelta(microseconds=1)
    made = [one, one, other, later, one, later, later, other]
    with sessions() as s:
        for i, at in enumerate(made):
            s.add(Tenant(id=f"t{i}", name=f"n{i}", role="consumer", api_key_hash=f"{i:064d}",
                         created_at=at))  # fmt: skip
        s.commit()
    with sessions() as s:
        got = {i: at for i, at in s.execute(select(Tenant.id, Tenant.created_at))}
    for i, at in enumerate(made):
        assert got[f"t{i}"] == at and got[f"t{i}"].utcoffset() == timedelta(0)
    with sessions() as s:  # after a refused one, the next converts as before
        s.add(Tenant(name="naive", role="consumer", api_key_hash="9" * 64,
                     created_at=datetime(2025, 7, 1)))  # fmt: skip
        with pytest.raises(StatementError, match="naive datetime"):
            s.commit()


def test_json_columns_read_back_what_was_stored_on_either_database(
    sessions: sessionmaker[Session], client: object
) -> None:
    """JSON columns are written by orjson (``json_text``): values read back as ``json`` would
    have stored them; a float that is not finite is null on both databases (PostgreSQL refused
    ``json``'s NaN); an integer beyond 64 bits is written by ``json`` (the same rules); what
    ``json`` refuses is refused."""
    made = datetime(2025, 7, 1, tzinfo=UTC)
    detail = {
        "text": '训练 \U0001f600 "quoted" \\ back',
        "floats": [0.1, 1e-05, 1e16, -0.0, 2.5e-300, 1.7976931348623157e308],
        "ints": [0, -1, 2**63 - 1],
        "nested": {"a": [True, False, None, {"b": []}]},
        "tuple": (1, "x"),
        7: "a key that is not text",
        "nan": math.nan,
        "inf": [math.inf, -math.inf],
    }
    big = {**detail, "ints": [0, 2**64 + 1]}  # beyond orjson's integers
    with sessions() as s:
        for i, d in enumerate([detail, big]):
            s.add(AuditEntry(at=made, via="api", actor_name="t", action="a", target=f"x{i}",
                             detail=d, request_id="r"))  # fmt: skip
        s.commit()
    with sessions() as s:
        got = {t: d for t, d in s.execute(select(AuditEntry.target, AuditEntry.detail))}
    for target, stored in [("x0", detail), ("x1", big)]:
        read = {("7" if k == 7 else k): v for k, v in stored.items()}
        assert got[target] == {**read, "tuple": [1, "x"], "nan": None, "inf": [None, None]}
        assert math.copysign(1, got[target]["floats"][3]) == -1
    assert json_text({"u": "训练", "x": 1e-05}) == '{"u":"训练","x":0.00001}'
    for refused in [made, {1, 2}, np.int64(3), Tenant(name="x")]:
        for value in [{"v": refused}, {"v": refused, "big": 2**64}]:
            with pytest.raises(TypeError, match="not JSON serializable"):
                json_text(value)
    with sessions() as s:
        s.add(AuditEntry(at=made, via="api", actor_name="t", action="a", target="x",
                         detail={"at": made}, request_id="r"))  # fmt: skip
        # (SQLite's driver wraps it; psycopg's JSON dumper raises it as it is)
        with pytest.raises((StatementError, TypeError), match="datetime is not JSON serial"):
            s.commit()


def test_naive_timestamps_are_refused(sessions: sessionmaker[Session], client: object) -> None:
    with sessions() as s:
        s.add(Tenant(name="naive", role="consumer", api_key_hash="1" * 64,
                     created_at=datetime(2025, 7, 1)))  # fmt: skip
        with pytest.raises(StatementError, match="naive datetime"):
            s.commit()


def test_foreign_keys_and_checks_are_enforced(
    sessions: sessionmaker[Session], client: object
) -> None:
    with sessions() as s:
        s.add(JobRow(tenant_id="no-such-tenant", name="x", spec={}))
        with pytest.raises(IntegrityError):
            s.commit()
    with sessions() as s:
        s.add(Tenant(name="king", role="king", api_key_hash="2" * 64))
        with pytest.raises(IntegrityError):
            s.commit()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_in_memory_sqlite_is_one_shared_database() -> None:
    engine = make_engine("sqlite://")
    try:
        migrate("sqlite://", engine=engine)
        with engine.connect() as conn:
            assert "jobs" in inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_0002_keeps_existing_rows_and_downgrades_without_losing_events(fresh_db_url: str) -> None:
    """Jobs scheduled before 0002 have no start_at (handed over at once); 0002 can be undone."""
    engine = make_engine(fresh_db_url)

    def upgrade_or_downgrade(how: str, target: str) -> None:
        step(engine, how, target)

    try:
        upgrade_or_downgrade("upgrade", "0001")
        now = datetime(2025, 7, 1, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO tenants VALUES ('t', 'n', 'consumer', :h, :at)"),
                {"h": "0" * 64, "at": now},
            )
            conn.execute(
                text(
                    "INSERT INTO jobs (id, tenant_id, name, spec, state, center_id, "
                    "submitted_at, updated_at) VALUES ('j', 't', 'x', '{}', 'scheduled', "
                    "'zhongwei', :at, :at)"
                ),
                {"at": now},
            )
            conn.execute(
                text(
                    "INSERT INTO job_events (job_id, at, to_state, detail) "
                    "VALUES ('j', :at, 'pending', '{}')"
                ),
                {"at": now},
            )
        upgrade_or_downgrade("upgrade", "head")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, start_at FROM jobs")).all() == [("j", None)]
            assert conn.execute(text("SELECT count(*) FROM center_owners")).scalar() == 0
        upgrade_or_downgrade("downgrade", "0001")
        with engine.connect() as conn:
            assert "center_owners" not in inspect(conn).get_table_names()
            assert "start_at" not in {c["name"] for c in inspect(conn).get_columns("jobs")}
            assert conn.execute(text("SELECT count(*) FROM job_events")).scalar() == 1
        migrate(fresh_db_url, engine=engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_0010_moves_every_key_to_api_keys_and_downgrades_to_the_newest(fresh_db_url: str) -> None:
    """0010 copies each tenant's key (digest) into ``api_keys`` (it keeps working, named
    ``old_`` + 12 hex digits) and adds the append-only audit log; downgrading puts the
    tenant's newest unrevoked key back and drops both tables."""
    from suanwang.server.models.tenants import authenticate, create_tenant

    engine = make_engine(fresh_db_url)

    def to(how: str, target: str) -> None:
        step(engine, how, target)

    key = "sw_" + "k" * 43
    digest = hashlib.sha256(key.encode()).hexdigest()
    now = datetime(2025, 7, 1, tzinfo=UTC)
    try:
        to("upgrade", "0009")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO tenants VALUES ('t', 'n', 'consumer', :h, :at)"),
                         {"h": digest, "at": now})  # fmt: skip
        to("upgrade", "0010")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT tenant_id, prefix, key_hash, name, read_only, "
                                     "expires_at, revoked_at FROM api_keys")).all()  # fmt: skip
            assert [tuple(r) for r in rows] == [
                ("t", "old_" + digest[:12], digest, "default", False, None, None)
            ]
            conn.execute(text("INSERT INTO audit_log (at, via, actor_name, action, target, "
                              "detail, request_id) VALUES (:at, 'cli', 'root', 'x.y', 't', "
                              "'{}', 'r')"), {"at": now})  # fmt: skip
            with pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text("UPDATE audit_log SET action = 'z'"))
            conn.rollback()
        with session_factory(engine)() as s:
            found = authenticate(session=s, api_key=key, now=now)
            assert found is not None and found.id == "t"
            # a second tenant, its key rotated: the newest unrevoked key goes back on downgrade
            other, first = create_tenant(session=s, name="m", role=TenantRole.CONSUMER, now=now)
            newer = replace_key(session=s, name="m", now=now)
            s.commit()
            other_id = other.id
        to("downgrade", "0009")
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            assert "api_keys" not in tables and "audit_log" not in tables
            hashes = dict(conn.execute(text("SELECT id, api_key_hash FROM tenants")).all())
        assert hashes == {"t": digest, other_id: hashlib.sha256(newer.encode()).hexdigest()}
        assert first != newer
        migrate(fresh_db_url, engine=engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
            assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar() == 2
    finally:
        engine.dispose()
