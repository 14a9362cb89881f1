"""``suanwang audit``: the audit log, for operators, through the API (``GET /v1/audit``:
``$SUANWANG_URL``, an operator's key in ``$SUANWANG_API_KEY``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from suanwang.cli.app import App
from suanwang.cli.client import Client
from suanwang.cli.options import JsonOption
from suanwang.cli.output import show


def register(app: App) -> None:
    app.command("audit")(audit_cmd)


def _brief(detail: dict[str, Any]) -> str:
    """The change in one line: its fields, nested ones by their own (a key by prefix)."""
    parts = []
    for k, v in detail.items():
        if isinstance(v, dict):
            v = v.get("prefix") or v.get("id") or "{...}"
        parts.append(f"{k}={v}")
    line = " ".join(parts)
    return line if len(line) <= 100 else line[:99] + "…"


def audit_cmd(
    actor: Annotated[
        str | None,
        typer.Option(help="a tenant's name or id, a key prefix or a Unix user"),
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="e.g. key.revoke; key. for every key action")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(metavar="INSTANT", help="from this ISO instant on, e.g. 2026-12-01T00:00Z"),
    ] = None,
    until: Annotated[
        str | None, typer.Option(metavar="INSTANT", help="before this ISO instant")
    ] = None,
    limit: Annotated[int, typer.Option(metavar="N", min=1, max=1000, help="at most N")] = 50,
    cursor: Annotated[
        str | None, typer.Option(help="next_cursor of the previous page (--json prints it)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The audit log (operators), newest first: when, who (tenant and key, or the Unix user
    of a database command), what, and the request id."""
    filters = {"actor": actor, "action": action, "since": since, "until": until,
               "cursor": cursor}  # fmt: skip
    params: dict[str, Any] = {"limit": limit} | {k: v for k, v in filters.items() if v}
    data = Client(as_json).request("GET", "/v1/audit", params=params)
    table = Table()
    for col in ("at", "who", "key", "action", "target", "change", "request"):
        table.add_column(col)
    for e in data["entries"]:
        who = e["actor"]["name"] + (" (cli)" if e["via"] == "cli" else "")
        cells = (e["at"][:19], who, e["actor"]["key_prefix"] or "", e["action"], e["target"],
                 _brief(e["detail"]), e["request_id"])  # fmt: skip
        table.add_row(*map(Text, cells))  # names are text, never markup
    if data["next_cursor"] and not as_json:
        table.caption = f"more: --cursor {data['next_cursor']}"
    show(data, as_json, table if data["entries"] else "no audit entries")
