"""``suanwang tenants``: manage tenants from the command line (registered by ``suanwang.cli``)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from suanwang.server.database.models import TenantRole
from suanwang.server.settings import DEFAULT_DB_URL

app = typer.Typer(help="Create tenants and their API keys.", no_args_is_help=True)
tenants_app = app


@app.callback()
def tenants() -> None:
    """Create tenants and their API keys."""


class Role(StrEnum):  # typer needs a plain Enum for choices
    consumer = TenantRole.CONSUMER.value
    provider = TenantRole.PROVIDER.value
    operator = TenantRole.OPERATOR.value


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="unique tenant name")],
    role: Annotated[Role, typer.Option(help="what the tenant may see and do")] = Role.consumer,
    db: Annotated[
        str, typer.Option("--db", envvar="SUANWANG_DB_URL", help="database URL")
    ] = DEFAULT_DB_URL,
    as_json: Annotated[
        bool, typer.Option("--json", help='print {"tenant_id": ..., "api_key": ...}')
    ] = False,
) -> None:
    """Create a tenant and print its API key: shown this once, only its hash is stored.

    The database is migrated to the newest schema first, so a fresh one works.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from suanwang.server.database.session import make_engine, migrate, session_factory
    from suanwang.server.models.tenants import TenantExists, create_tenant

    try:
        engine = make_engine(db)
    except (SQLAlchemyError, ImportError, ValueError) as exc:  # malformed URL, missing driver
        typer.echo(f"error: cannot use database URL {db!r}: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        migrate(db, engine=engine)
        with session_factory(engine)() as session:
            tenant, api_key = create_tenant(session=session, name=name, role=TenantRole(role.value))
            session.commit()
    except (TenantExists, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        typer.echo(f"error: database {db!r}: {exc.__class__.__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps({"tenant_id": tenant.id, "api_key": api_key}))
        return
    typer.echo(f"created {tenant.role} tenant {tenant.name!r} (id {tenant.id})")
    typer.echo(f"API key (shown once, store it now): {api_key}")
