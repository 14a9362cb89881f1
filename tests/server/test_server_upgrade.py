"""Rolling upgrades (issue 16, docs/operations.md): version N runs on the schema of version
N+1. Version N+1 here is this version's migrations and one more, written expand-only (a new
nullable column of ``jobs`` and a new table); once it has migrated a database, this version
(N) neither fails nor undoes it at start, accepts it as migrated, and serves: a job is
submitted, placed and read back, next to rows N+1 writes into its new column. Both databases.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from pinned import NOW, stepping
from sqlalchemy import text
from starlette.testclient import TestClient

from suanwang.executors.local import LocalExecutor
from suanwang.server.app import create_app
from suanwang.server.database.models import TenantRole
from suanwang.server.database.session import (
    MIGRATIONS_DIR,
    alembic_config,
    make_engine,
    migrate,
    require_migrated,
    schema_revision,
    session_factory,
)
from suanwang.server.models.tenants import create_tenant
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.live import LiveNetwork
from suanwang.server.settings import Settings

NEXT = textwrap.dedent(
    '''\
    """Version N+1's expand step (a test's): a nullable column and a new table."""

    import sqlalchemy as sa
    from alembic import op

    revision = "9001"
    down_revision = "{head}"
    branch_labels = None
    depends_on = None


    def upgrade() -> None:
        op.add_column("jobs", sa.Column("next_note", sa.String(40), nullable=True))
        op.create_table("next_things", sa.Column("id", sa.Integer(), primary_key=True))


    def downgrade() -> None:
        op.drop_table("next_things")
        op.drop_column("jobs", "next_note")
    '''
)


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pg_schema: Callable[..., AbstractContextManager[str]],
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'upgrade.db'}"
        return
    with pg_schema() as url:
        yield url


def _next_version(root: Path) -> Config:
    """The migrations of version N+1: this version's and one expand step more."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    migrations = root / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "9001_next.py").write_text(NEXT.format(head=head))
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    return cfg


def test_version_n_runs_on_the_schema_of_n_plus_1(fresh_url: str, tmp_path: Path) -> None:
    assert migrate(fresh_url, config=_next_version(tmp_path)) is True  # N+1 migrates
    engine = make_engine(fresh_url)
    try:
        assert schema_revision(engine) == "9001"
        assert migrate(fresh_url) is False  # N starts: leaves the newer schema as it is
        assert schema_revision(engine) == "9001"
        require_migrated(engine)  # and its workers accept it
        app = create_app(Settings(db_url=fresh_url), clock=stepping(NOW))
        with TestClient(app) as client:
            sessions = app.state.sessions
            with sessions.begin() as s:
                _, key = create_tenant(session=s, name="alice", role=TenantRole.CONSUMER,
                                       now=NOW - timedelta(days=1))  # fmt: skip
            headers = {"Authorization": f"Bearer {key}"}
            body = {"name": "n", "command": "echo n", "duration_s": 60, "origin": "wuhan",
                    "kind": "inference", "latency_ms": 100, "stacks": ["cann"],
                    "resources": {"cpus": 8, "cards": 1, "accelerator": "ascend-910",
                                  "mem_gb": 8}}  # fmt: skip
            r = client.post("/v1/jobs", json=body, headers=headers)
            assert r.status_code == 201, r.text
            job = r.json()["id"]
            with session_factory(engine).begin() as s:  # N+1 writes its column meanwhile
                s.execute(text("UPDATE jobs SET next_note = 'from n+1' WHERE id = :id"),
                          {"id": job})  # fmt: skip
            center = LocalExecutor(tmp_path / "centers", "wuhan-ai", cpus=64, cards=16)
            live = LiveNetwork(net=app.state.network, signals=app.state.signals.current,
                               executors={"wuhan-ai": center},
                               clock=app.state.signals.clock)  # fmt: skip
            assert Dispatcher(sessions, live).place() == 1
            got = client.get(f"/v1/jobs/{job}", headers=headers).json()
            assert got["state"] == "scheduled" and got["center_id"] == "wuhan-ai"
            assert got["decision"]["placed"] is True
            with engine.connect() as conn:
                note = conn.execute(text("SELECT next_note FROM jobs WHERE id = :id"),
                                    {"id": job}).scalar()  # fmt: skip
            assert note == "from n+1"  # N's writes kept N+1's column
    finally:
        engine.dispose()
