"""Engines, sessions and schema migration.

SQLite is for development and single-host use: foreign keys are enforced, the journal is WAL
(readers never block the writer) and every transaction starts with ``BEGIN IMMEDIATE``, so
writers queue on the busy timeout instead of failing with "database is locked" when two
read-then-write transactions overlap. PostgreSQL needs no such care.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

log = logging.getLogger("suanwang.database")

#: The alembic scripts shipped inside the package (``env.py`` and ``versions/``).
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Connections a PostgreSQL pool may open beyond its ``pool_size`` when busier.
POOL_OVERFLOW = 10
#: Key of the PostgreSQL advisory lock that serialises concurrent ``migrate`` calls.
_MIGRATE_LOCK_KEY = 0x5355414E  # "SUAN"


class NotMigrated(RuntimeError):
    """A database whose schema is older than this code's (or absent)."""


class DatabaseMissing(FileNotFoundError):
    """A SQLite database file that does not exist, opened with ``create=False``."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no database file {path}")
        self.path = path


#: orjson's options for JSON columns: keys that are not text written as text (as ``json``
#: does); instants and dataclasses not written orjson's own way but refused (by
#: :func:`_not_json`, as ``json`` refuses them: a value is stored as its caller built it)
_ORJSON = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _not_json(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def json_text(value: object) -> str:
    """The text a JSON column stores for ``value``, on either database.

    orjson: a dispatcher round stores thousands of decisions of 60-80 floats each, which
    ``json.dumps`` writes about 9 times slower (7 % of a round). A float that is not finite
    (NaN, infinity) is written ``null``, on both databases alike (``json`` wrote ``NaN``, which
    SQLite kept and PostgreSQL refuses). What orjson does not write itself (an integer beyond
    64 bits, a numpy float) ``json`` writes; what neither does is a ``TypeError``, as before.
    """
    try:
        return orjson.dumps(value, default=_not_json, option=_ORJSON).decode()
    except orjson.JSONEncodeError:  # ``json`` writes big integers, and refuses the rest
        return json.dumps(_finite(value))


def _finite(value: Any) -> Any:
    """``value`` with every float that is not finite made None (as orjson writes it)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def make_engine(url: str, *, pool_size: int | None = None, create: bool = True) -> Engine:
    """An engine for ``url`` (``sqlite:///file.db``, ``postgresql+psycopg://...``).

    ``pool_size``: connections kept open (PostgreSQL; SQLAlchemy's default of 5 otherwise), up
    to :data:`POOL_OVERFLOW` more when busier. A server sizes it to the requests it works on at
    once, so that no request thread ever waits for a connection.

    SQLite creates a missing database file on connecting; with ``create=False`` it is opened
    only if it exists (read-write, never created): else :class:`DatabaseMissing`. (A
    PostgreSQL database is never created by connecting.)
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=pool_size if pool_size is not None else 5,
            max_overflow=POOL_OVERFLOW,
            json_serializer=json_text,
        )
    kwargs: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        "json_serializer": json_text,
    }
    if parsed.database in (None, "", ":memory:"):
        kwargs["poolclass"] = StaticPool  # one shared in-memory database for every thread
    elif not create:
        path = Path(parsed.database).resolve()
        if not path.is_file():
            raise DatabaseMissing(path)
        uri = f"{path.as_uri()}?mode=rw"  # SQLite's own guard: never creates the file
        timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
        kwargs["creator"] = lambda: sqlite3.connect(
            uri, uri=True, check_same_thread=False, timeout=timeout
        )
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module (it would BEGIN lazily and break
    # SAVEPOINTs); SQLAlchemy's "begin" event below emits our own BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (responses are built after it)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    """An alembic configuration pointing at the packaged migrations (no alembic.ini)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def migrate(url: str, *, engine: Engine | None = None, config: Config | None = None) -> bool:
    """Bring the database at ``url`` to the newest schema (``alembic upgrade head``); returns
    whether it is at this version's schema now.

    Safe to call on every start and from several processes at once: on PostgreSQL the upgrade
    runs under an advisory lock, on SQLite under the write lock of ``BEGIN IMMEDIATE``. A
    database already at a later version's revision (one this version's migrations do not
    know) is left as it is and False returned: during a rolling upgrade, version N runs next
    to N+1 on N+1's schema (migrations expand before they contract; docs/operations.md).
    ``config``: other migrations than the packaged ones (tests of upgrades).
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    own = engine is None
    eng = make_engine(url) if engine is None else engine
    cfg = config if config is not None else alembic_config()
    try:
        with eng.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK_KEY})
            current = MigrationContext.configure(conn).get_current_revision()
            known = {sc.revision for sc in ScriptDirectory.from_config(cfg).walk_revisions()}
            if current is not None and current not in known:
                log.warning(
                    "the database has schema revision %s, newer than this version's: running "
                    "on it as it is (a rolling upgrade)",
                    current,
                )
                return False
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            return True
    finally:
        if own:
            eng.dispose()


def schema_revision(engine: Engine) -> str | None:
    """The database's schema revision (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def require_migrated(engine: Engine) -> None:
    """Raise :class:`NotMigrated` unless the database has this code's newest schema (a newer
    one, from a later version during a rolling upgrade, is accepted: migrations only expand
    before they contract)."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    current = schema_revision(engine)
    where = engine.url.render_as_string(hide_password=True)
    if current is None:
        raise NotMigrated(
            f"the database {where} has no schema (never migrated): start `suanwang serve` on "
            f"it once (it migrates), then the workers"
        )
    known = {s.revision for s in scripts.walk_revisions()}
    if current in known and current != head:
        raise NotMigrated(
            f"the database {where} has schema revision {current}, this version needs {head}: "
            "start `suanwang serve` of this version on it once (it migrates), then the workers"
        )
