"""``suanwang tenants keys list|create|rotate|revoke``: a tenant's API keys, on the database
(like ``suanwang tenants``; over the API: ``/v1/keys``, docs/control-plane.md "API keys").

Keys are named by their prefix (``sw_`` and 8 characters, as listed); a key itself is printed
once, when created or rotated. Every change is written to the audit log. Exit codes as
``suanwang tenants``: 0 done, 1 the database refused, 2 bad arguments (no such tenant or key,
an expiry in the past, a revoked key to rotate).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from suanwang.cli.admin import _session, audit, tenants_app
from suanwang.cli.app import App
from suanwang.cli.options import DbOption, JsonOption
from suanwang.cli.output import fail as _fail
from suanwang.cli.output import show
from suanwang.server.settings import DEFAULT_DB_URL

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from suanwang.server.database.models import ApiKey, Tenant

keys_app = App(help="List, create, rotate and revoke a tenant's API keys.", no_args_is_help=True)
tenants_app.add_typer(keys_app, name="keys")

TenantArgument = Annotated[str, typer.Argument(metavar="TENANT", help="tenant name or id")]
PrefixArgument = Annotated[
    str, typer.Argument(metavar="PREFIX", help="the key's prefix, as listed (sw_ and 8 more)")
]
_DURATION = re.compile(r"^([1-9][0-9]{0,5})([hd])$")


@keys_app.callback()
def keys_cmd() -> None:
    """A tenant's API keys: by prefix, never the key itself (shown once, when made)."""


def _tenant(session: Session, ref: str) -> Tenant:
    from suanwang.server.models.billing.accounts import tenant_by_name_or_id

    found = tenant_by_name_or_id(session=session, ref=ref.strip())
    if found is None:
        raise _fail(f"TENANT: no tenant {ref!r}", 2)
    return found


def _key(session: Session, tenant: Tenant, prefix: str) -> ApiKey:
    from suanwang.server.models.keys import find_key

    found = find_key(session=session, tenant=tenant, prefix=prefix.strip())
    if found is None:
        raise _fail(f"PREFIX: tenant {tenant.name!r} has no API key {prefix!r}", 2)
    return found


def expiry(text: str | None, now: datetime) -> datetime | None:
    """``--expires``: ``30d`` or ``12h`` from now, or an ISO date (the start of that day,
    UTC) or instant (UTC if it has no offset); it must be in the future (at most a century
    on)."""
    if text is None:
        return None
    m = _DURATION.match(text.strip())
    if m:
        n = int(m.group(1))
        at = now + (timedelta(days=n) if m.group(2) == "d" else timedelta(hours=n))
    else:
        try:
            at = datetime.fromisoformat(text.strip())
        except ValueError:
            raise _fail(
                f"--expires {text!r}: give 30d, 12h, a date (2027-01-31) or an ISO instant", 2
            ) from None
        at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    from suanwang.server.models.keys import check_expiry

    try:
        return check_expiry(at, now)
    except ValueError as exc:
        raise _fail(f"--expires {text!r}: {exc}", 2) from None


def _table(doc: dict[str, Any]) -> Table:
    table = Table(title=f"{doc['tenant']}'s API keys")
    for col in ("prefix", "name", "access", "state", "created", "expires", "revoked"):
        table.add_column(col)
    for k in doc["keys"]:
        cells = (k["prefix"], k["name"], "read-only" if k["read_only"] else "full", k["state"],
                 k["created_at"][:19], (k["expires_at"] or "never")[:19],
                 (k["revoked_at"] or "")[:19])  # fmt: skip
        table.add_row(*map(Text, cells))  # names are text, never markup
    return table


@keys_app.command("list")
def list_cmd(
    tenant: TenantArgument, db: DbOption = DEFAULT_DB_URL, as_json: JsonOption = False
) -> None:
    """TENANT's API keys by prefix, newest first, with their state.

    JSON: {"tenant", "tenant_id", "keys": [{"prefix", "name", "read_only", "state", ...}]}."""
    from suanwang.server.models.keys import key_json, list_keys

    now = datetime.now(UTC)
    with _session(db) as session:
        who = _tenant(session, tenant)
        rows = list_keys(session=session, tenant=who)
        doc = {"tenant": who.name, "tenant_id": who.id,
               "keys": [key_json(k, now) for k in rows]}  # fmt: skip
    show(doc, as_json, _table(doc) if doc["keys"] else f"{who.name} has no API keys")


def _shown(doc: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        typer.echo(json.dumps(doc))
        return
    k = doc["key"]
    access = "read-only" if k["read_only"] else "full-access"
    until = f", expires {k['expires_at']}" if k["expires_at"] else ""
    typer.echo(f"{verb} {access} key {k['prefix']} ({k['name']!r}) of {doc['tenant']!r}{until}")
    if "old" in doc:
        old = doc["old"]
        when = old["revoked_at"] or old["expires_at"]
        typer.echo(f"old key {old['prefix']} stops working at {when}")
    typer.echo(f"API key (shown once, store it now): {doc['api_key']}")


@keys_app.command("create")
def create(
    tenant: TenantArgument,
    name: Annotated[str, typer.Option(help="what the key is for, e.g. grafana")] = "default",
    read_only: Annotated[
        bool, typer.Option("--read-only", help="the key may only read (for dashboards)")
    ] = False,
    expires: Annotated[
        str | None,
        typer.Option(metavar="WHEN", help="30d, 12h, a date or an ISO instant (default: never)"),
    ] = None,
    db: DbOption = DEFAULT_DB_URL,
    as_json: JsonOption = False,
) -> None:
    """Create an API key for TENANT and print it: shown this once, only its hash is stored."""
    from suanwang.server.models.keys import issue_key, key_json

    now = datetime.now(UTC)
    until = expiry(expires, now)
    with _session(db) as session:
        who = _tenant(session, tenant)
        try:
            row, secret = issue_key(
                session=session, tenant=who, now=now, name=name, read_only=read_only,
                expires_at=until,
            )  # fmt: skip
        except ValueError as exc:
            raise _fail(f"--name {name!r}: {exc}", 2) from None
        shown = key_json(row, now)
        audit(session, "key.create", f"key:{row.prefix}", tenant=who.name, tenant_id=who.id,
              key=shown)  # fmt: skip
        session.commit()
    _shown({"tenant": who.name, "tenant_id": who.id, "key": shown, "api_key": secret},
           as_json, "created")  # fmt: skip


@keys_app.command("rotate")
def rotate(
    tenant: TenantArgument,
    prefix: PrefixArgument,
    overlap: Annotated[
        int,
        typer.Option(
            min=0,
            max=86_400,
            metavar="SECONDS",
            help="the old key keeps working this long beside the new one (default 0: revoked "
            "now; at most a day)",
        ),
    ] = 0,
    db: DbOption = DEFAULT_DB_URL,
    as_json: JsonOption = False,
) -> None:
    """Replace TENANT's key PREFIX by a new one (printed once); the old one is revoked.

    The new key has the old one's name, access and lifetime; the old key stops working now,
    or after --overlap seconds."""
    from suanwang.server.models.keys import key_json, rotate_key

    now = datetime.now(UTC)
    with _session(db) as session:
        who = _tenant(session, tenant)
        old = _key(session, who, prefix)
        try:
            new, secret = rotate_key(
                session=session, key=old, tenant=who, now=now, overlap=timedelta(seconds=overlap)
            )
        except ValueError as exc:
            raise _fail(f"PREFIX: {exc}", 2) from None
        shown, before = key_json(new, now), key_json(old, now)
        audit(session, "key.rotate", f"key:{old.prefix}", tenant=who.name, tenant_id=who.id,
              key=shown, old=before, overlap_s=overlap)  # fmt: skip
        session.commit()
    doc = {"tenant": who.name, "tenant_id": who.id, "key": shown, "api_key": secret, "old": before}
    _shown(doc, as_json, "rotated: new")


@keys_app.command("revoke")
def revoke(
    tenant: TenantArgument,
    prefix: PrefixArgument,
    db: DbOption = DEFAULT_DB_URL,
    as_json: JsonOption = False,
) -> None:
    """Revoke TENANT's key PREFIX now.

    A server that authenticated the key in the last 10 s may still take it for the rest of
    those seconds (a revocation through the API takes effect at once on that server)."""
    from suanwang.server.models.keys import key_json, revoke_key

    now = datetime.now(UTC)
    with _session(db) as session:
        who = _tenant(session, tenant)
        row = _key(session, who, prefix)
        changed = revoke_key(session=session, key=row, now=now)
        shown = key_json(row, now)
        if changed:
            audit(session, "key.revoke", f"key:{row.prefix}", tenant=who.name,
                  tenant_id=who.id, key=shown)  # fmt: skip
            session.commit()
    doc = {"tenant": who.name, "tenant_id": who.id, "key": shown, "changed": changed}
    text = "revoked" if changed else f"was revoked already (at {shown['revoked_at']})"
    show(doc, as_json, Text(f"{who.name}: key {row.prefix} {text}"))
