"""``suanwang tenants``: manage tenants from the command line, directly on the database.

Every change is written to the audit log (``via: cli``, the actor the Unix user running the
command), in the transaction of the change.

Exit codes: 0 done; 1 the database refused (a name or center already taken, unreachable);
2 bad arguments (an unknown center, ``--centers`` for a role that owns none, a bad URL or
scenario, a database that does not exist: only ``tenants create`` sets up a new one).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from suanwang.cli.app import App
from suanwang.cli.options import DbOption, JsonOption, ScenarioOption
from suanwang.cli.output import fail as _fail
from suanwang.server.database.models import TenantRole
from suanwang.server.settings import DEFAULT_DB_URL, DEFAULT_SCENARIO

tenants_app = App(help="Create tenants and their API keys.", no_args_is_help=True)
WHERE = "point at it with --db URL or SUANWANG_DB (suanwang demo prints its own)"


@tenants_app.callback()
def tenants() -> None:
    """Create tenants and their API keys; give providers their centers."""


class Role(StrEnum):  # typer needs a plain Enum for choices
    consumer = TenantRole.CONSUMER.value
    provider = TenantRole.PROVIDER.value
    operator = TenantRole.OPERATOR.value


def _split(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated ids, in order, without blanks or repeats."""
    out: list[str] = []
    for value in values or []:
        for part in value.split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def _known_centers(scenario: str) -> set[str]:
    from suanwang.scenarios.loader import ScenarioError, load_scenario

    try:
        return {c.id for c in load_scenario(scenario).centers}
    except ScenarioError as exc:
        raise _fail(f"--scenario {scenario!r}: {exc}", 2) from None
    except OSError as exc:
        raise _fail(f"--scenario {scenario!r}: {exc}", 2) from None


@contextmanager
def _session(db: str, *, create: bool = False) -> Iterator[Session]:
    """A session on the database at ``db``, migrated to the newest schema; database failures
    exit with code 1. Unless ``create``, the database must exist and be the platform's: a
    missing SQLite file or a database without its tables ends the command (exit 2) naming it,
    instead of becoming a new, empty database."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from suanwang.server.database.session import (
        DatabaseMissing,
        make_engine,
        migrate,
        session_factory,
    )

    try:
        engine = make_engine(db, create=create)
    except DatabaseMissing as exc:
        raise _fail(f"{exc} (--db {db}): {WHERE}", 2) from None
    except (SQLAlchemyError, ImportError, ValueError) as exc:  # malformed URL, missing driver
        raise _fail(f"cannot use database URL {db!r}: {exc}", 2) from None
    try:
        if not create and not inspect(engine).has_table("alembic_version"):
            raise _fail(f"database {db} has no suanwang tables (not the platform's?): {WHERE}", 2)
        migrate(db, engine=engine)
        with session_factory(engine)() as session:
            yield session
    except SQLAlchemyError as exc:
        raise _fail(f"database {db!r}: {exc.__class__.__name__}: {exc}", 1) from None
    finally:
        engine.dispose()


def audit(session: Session, action: str, target: str, **detail: Any) -> None:
    """One audit entry for a change a database command makes in ``session`` (committed with
    it): the actor is the Unix user running the command, the request id a new one."""
    import getpass

    from suanwang.server.models.audit import Actor, record
    from suanwang.server.request_id import new_request_id

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        user = "unknown"
    record(
        session=session, actor=Actor(via="cli", name=user), action=action, target=target,
        detail=detail, request_id=f"cli-{new_request_id()}", now=datetime.now(UTC),
    )  # fmt: skip


@tenants_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="unique tenant name")],
    role: Annotated[Role, typer.Option(help="what the tenant may see and do")] = Role.consumer,
    centers: Annotated[
        list[str] | None,
        typer.Option(
            "--centers",
            help="providers: the centers they own (comma-separated or repeated), e.g. C1,C2",
        ),
    ] = None,
    scenario: ScenarioOption = DEFAULT_SCENARIO,
    db: DbOption = DEFAULT_DB_URL,
    as_json: JsonOption = False,
) -> None:
    """Create a tenant and print its API key: shown this once, only its hash is stored.

    The database is created or migrated to the newest schema first, so a fresh one works. A
    provider's centers are checked against the scenario; a center has at most one owner.
    JSON: {"tenant_id": ..., "api_key": ...} (+ "centers" for providers).
    """
    from suanwang.server.models.centers import CenterTaken, check_known, grant_centers
    from suanwang.server.models.tenants import TenantExists, create_tenant

    ids = _split(centers)
    if centers is not None and role is not Role.provider:
        raise _fail(f"--centers is for providers only, not for a {role.value}", 2)
    if centers is not None and not ids:
        raise _fail("--centers names no center", 2)
    if ids:
        check = _known_centers(scenario)
        try:
            check_known(ids, check, scenario)
        except ValueError as exc:
            raise _fail(str(exc), 2) from None
    owned: list[str] = []
    with _session(db, create=True) as session:
        try:
            tenant, api_key = create_tenant(
                session=session, name=name, role=TenantRole(role.value), now=datetime.now(UTC)
            )
            if ids:
                owned = grant_centers(
                    session=session, tenant=tenant, centers=ids, now=datetime.now(UTC)
                )
        except (TenantExists, CenterTaken, ValueError) as exc:
            session.rollback()
            raise _fail(str(exc), 1) from None
        audit(session, "tenant.create", f"tenant:{tenant.id}", name=tenant.name,
              role=tenant.role, centers=owned)  # fmt: skip
        session.commit()
    provider = tenant.tenant_role is TenantRole.PROVIDER
    if as_json:
        doc: dict[str, object] = {"tenant_id": tenant.id, "api_key": api_key}
        if provider:
            doc["centers"] = owned
        typer.echo(json.dumps(doc))
        return
    typer.echo(f"created {tenant.role} tenant {tenant.name!r} (id {tenant.id})")
    if provider:
        typer.echo(f"centers: {', '.join(owned) if owned else '(none yet)'}")
    typer.echo(f"API key (shown once, store it now): {api_key}")


@tenants_app.command("centers")
def centers_cmd(
    tenant_name: Annotated[str, typer.Argument(metavar="TENANT", help="provider name or id")],
    add: Annotated[
        list[str] | None,
        typer.Option("--add", metavar="CENTERS", help="grant these centers (comma-separated ok)"),
    ] = None,
    remove: Annotated[
        list[str] | None,
        typer.Option(
            "--remove", metavar="CENTERS", help="revoke these centers (comma-separated ok)"
        ),
    ] = None,
    scenario: ScenarioOption = DEFAULT_SCENARIO,
    db: DbOption = DEFAULT_DB_URL,
    as_json: JsonOption = False,
) -> None:
    """Show, grant (--add) or revoke (--remove) the centers a provider owns (JSON:
    {"tenant_id": ..., "centers": [...]}).

    Removals are applied before additions, all in one transaction: on any error nothing
    changes. Added centers are checked against the scenario; removed ones need not exist in
    it any more.
    """
    from suanwang.server.models.centers import (
        CenterTaken,
        NotAProvider,
        NotOwned,
        check_known,
        find_tenant,
        grant_centers,
        owned_centers,
        revoke_centers,
    )

    adds, removes = _split(add), _split(remove)
    both = sorted(set(adds) & set(removes))
    if both:
        raise _fail(f"both --add and --remove name {', '.join(both)}", 2)
    if adds:
        try:
            check_known(adds, _known_centers(scenario), scenario)
        except ValueError as exc:
            raise _fail(str(exc), 2) from None
    with _session(db) as session:
        tenant = find_tenant(session=session, name_or_id=tenant_name)
        if tenant is None:
            raise _fail(f"no tenant named {tenant_name!r}", 2)
        if tenant.tenant_role is not TenantRole.PROVIDER:
            raise _fail(f"tenant {tenant.name!r} is a {tenant.role}: only providers own centers", 2)
        try:
            before = owned = owned_centers(session=session, tenant=tenant)
            if removes:
                owned = revoke_centers(session=session, tenant=tenant, centers=removes)
            if adds:
                owned = grant_centers(
                    session=session, tenant=tenant, centers=adds, now=datetime.now(UTC)
                )
        except (NotOwned, NotAProvider) as exc:
            session.rollback()
            raise _fail(str(exc), 2) from None
        except CenterTaken as exc:
            session.rollback()
            raise _fail(str(exc), 1) from None
        if owned != before:
            audit(session, "tenant.centers", f"tenant:{tenant.id}", name=tenant.name,
                  before=before, after=owned)  # fmt: skip
        session.commit()
    if as_json:
        typer.echo(json.dumps({"tenant_id": tenant.id, "centers": owned}))
        return
    typer.echo(f"{tenant.name}: {', '.join(owned) if owned else '(no centers)'}")
