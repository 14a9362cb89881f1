"""``suanwang status``: the control plane's API replicas, workers and leaders, for operators,
through the API (``GET /v1/cluster``: ``$SUANWANG_URL``, an operator's key in
``$SUANWANG_API_KEY``)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from suanwang.cli.app import App
from suanwang.cli.client import Client
from suanwang.cli.options import JsonOption
from suanwang.cli.output import show


def register(app: App) -> None:
    app.command("status")(status_cmd)


def status_cmd(as_json: JsonOption = False) -> None:
    """Replicas and workers with their heartbeats (stale ones marked), how many of the
    centers they serve each worker holds, and who leads each singleton duty (placement,
    migrations) with its term."""
    data = Client(as_json).request("GET", "/v1/cluster")
    members = Table(title="members")
    for col in ("kind", "host", "pid", "version", "started", "heartbeat", "leads", "holds"):
        members.add_column(col)
    for m in data["members"]:
        age = f"{m['heartbeat_age_s']:.1f} s ago" + (" STALE" if m["stale"] else "")
        leads = ", ".join(f"{d} (term {t})" for d, t in sorted(m["leads"].items()))
        holds = "" if m.get("holds") is None else f"{len(m['holds'])} of {len(m['serves'] or ())}"
        cells = (m["kind"], m["host"], str(m["pid"]), m["version"], m["started_at"][:19], age,
                 leads, holds)  # fmt: skip
        members.add_row(*map(Text, cells), style="red" if m["stale"] else None)
    leaders = Table(title="leaders")
    for col in ("duty", "term", "holder", "elected", "holder alive"):
        leaders.add_column(col)
    pids = {m["id"]: f"{m['kind']} {m['host']}:{m['pid']}" for m in data["members"]}
    for t in data["leaders"]:
        row = (t["duty"], str(t["term"]), pids.get(t["holder"], t["holder"]),
                 t["elected_at"][:19], "yes" if t["alive"] else "NO")  # fmt: skip
        leaders.add_row(*map(Text, row))
    if not data["members"]:
        show(data, as_json, "no replica or worker has recorded itself")
        return
    show(data, as_json, Group(members, leaders) if data["leaders"] else members)
