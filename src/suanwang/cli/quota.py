"""``suanwang quota ...``: tenants' compute quotas, classes and budgets (docs/governance.md,
"Administration (API and CLI)").

HTTP clients like ``suanwang offers``: they read ``SUANWANG_URL`` and ``SUANWANG_API_KEY``, so
an operator's key sets, removes and audits, and every tenant's key shows its own quota. Every
refusal is one sentence on stderr naming the option (and the API's field), or the error as
JSON with ``--json``; exit code 2 (:mod:`suanwang.cli.client`).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table
from rich.text import Text

from suanwang.cli.app import App
from suanwang.cli.client import Client
from suanwang.cli.options import JsonOption
from suanwang.cli.output import show

quota_app = App(
    help="Tenants' compute quotas, classes and budgets: operators set them, everyone sees its own.",
    no_args_is_help=True,
)

TenantArgument = Annotated[str, typer.Argument(metavar="TENANT", help="tenant name or id")]
#: The option of each field of ``PUT /v1/quotas/{tenant}``.
OPTIONS = {
    "cohort": "--cohort",
    "quota_scu_per_h": "--quota",
    "borrow_limit_scu_per_h": "--borrow",
    "lend_limit_scu_per_h": "--lend",
    "weight": "--weight",
    "classes": "--classes",
    "families": "--family-cap",
    "hubs": "--hub-cap",
    "budget_cny_per_month": "--budget",
    "max_spend_cny_per_h": "--max-spend",
}
RATE = "SCU/h"
NEXT_ROUND = "takes effect at the dispatcher's next round"


def register(app: App) -> None:
    app.add_typer(quota_app, name="quota")


def _path(tenant: str) -> str:
    return f"/v1/quotas/{quote(tenant, safe='')}"


def _number(client: Client, option: str, text: str) -> int | float:
    """A rate or weight as a JSON number; one sentence for anything else."""
    try:
        value: int | float = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise client.fail(f"{option}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise client.fail(f"{option}: {text!r} is not a finite number")
    return value


def _split(values: list[str] | None) -> list[str]:
    return [p.strip() for v in values or [] for p in v.split(",") if p.strip()]


def _caps(client: Client, option: str, values: list[str] | None) -> dict[str, int | float]:
    """``NAME=SCU/h`` items (repeated or comma-separated) as a mapping."""
    caps: dict[str, int | float] = {}
    for item in _split(values):
        name, sep, rate = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise client.fail(f"{option}: {item!r} is not NAME={RATE} (e.g. nvidia=80)")
        if name in caps:
            raise client.fail(f"{option}: {name!r} is given twice")
        caps[name] = _number(client, f"{option} {name}", rate.strip())
    return caps


def _field(loc: list[Any]) -> str:
    """The option (and the API's field) a 422 names."""
    path = [str(p) for p in loc[1:]]
    if loc[:1] != ["body"] or not path:
        return ".".join(str(p) for p in loc)  # another tenant's setting: tenants.NAME.field
    key = path[1] if path[0] == "caps" and len(path) > 1 else path[0]
    option = OPTIONS.get(key)
    if option is None:
        return ".".join(path)
    if path[0] == "caps" and len(path) > 2:
        return f"{option} {path[2]} ({'.'.join(path)})"
    return f"{option} ({'.'.join(path)})"


def _refusal(detail: Any) -> str:
    if not isinstance(detail, list):
        return str(detail)
    return "; ".join(
        f"{_field(list(d.get('loc', [])))}: {str(d.get('msg', '')).removeprefix('Value error, ')}"
        for d in detail
        if isinstance(d, dict)
    )


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def _caps_text(caps: dict[str, dict[str, float]]) -> str:
    parts = [f"{k} {_num(v)}" for k, v in caps["families"].items()]
    parts += [f"hub {k} {_num(v)}" for k, v in caps["hubs"].items()]
    return ", ".join(parts) or "none"


def _describe(q: dict[str, Any]) -> str:
    s, u = q["settings"], q["usage"]
    lend = "all its unused quota" if s["lend_limit_scu_per_h"] is None else (
        f"up to {_num(s['lend_limit_scu_per_h'])} {RATE}"
    )  # fmt: skip
    budget = "no monthly budget" if s["budget_cny_per_month"] is None else (
        f"{u['budget_used_cny']} of {s['budget_cny_per_month']} CNY used in {u['month']}"
    )  # fmt: skip
    if s["max_spend_cny_per_h"] is not None:
        budget += f"; at most {s['max_spend_cny_per_h']} CNY/h"
    share = "" if u["usage_over_quota"] is None else f", {u['usage_over_quota']:.0%} of quota"
    lines = [
        f"{q['tenant']} (cohort {s['cohort']})",
        f"  quota      {_num(s['quota_scu_per_h'])} {RATE}, weight {_num(s['weight'])} "
        f"(entitlement {_num(q['entitlement_scu_per_h'])} {RATE})",
        f"  cohort     borrows up to {_num(s['borrow_limit_scu_per_h'])} {RATE}, lends {lend}",
        f"  classes    {', '.join(s['classes'])}",
        f"  caps       {_caps_text(s['caps'])}",
        f"  budget     {budget}",
        f"  using now  {_num(u['rate_scu_per_h'])} {RATE} in {u['jobs']} job(s){share}, "
        f"borrowing {_num(u['borrowed_scu_per_h'])} {RATE}",
        f"  set        {q['updated_at'][:19]} by {q['updated_by']}",
    ]
    return "\n".join(lines)


@quota_app.command("set")
def set_quota(
    tenant: TenantArgument,
    cohort: Annotated[str, typer.Option(help="the cohort it belongs to (a university, ...)")],
    quota: Annotated[str, typer.Option(metavar=RATE, help="nominal quota")],
    borrow: Annotated[
        str | None, typer.Option(metavar=RATE, help="may borrow this much of its cohort's")
    ] = None,
    lend: Annotated[
        str | None, typer.Option(metavar=RATE, help="lends at most this much (default: all)")
    ] = None,
    weight: Annotated[str | None, typer.Option(metavar="W", help="weight, > 0 (1)")] = None,
    classes: Annotated[
        list[str] | None,
        typer.Option(metavar="CLASSES", help="classes it may submit, e.g. normal,batch (all)"),
    ] = None,
    family_cap: Annotated[
        list[str] | None,
        typer.Option(metavar="FAMILY=SCU/h", help="cap on a family, e.g. nvidia=80 (repeat)"),
    ] = None,
    hub_cap: Annotated[
        list[str] | None,
        typer.Option(metavar="HUB=SCU/h", help="cap on a hub, e.g. gansu=50 (repeat)"),
    ] = None,
    budget: Annotated[str | None, typer.Option(metavar="CNY", help="budget per month")] = None,
    max_spend: Annotated[
        str | None, typer.Option(metavar="CNY", help="most it may spend per hour")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Set a tenant's quota (operators): every setting, those not given at their defaults."""
    client = Client(as_json)
    body: dict[str, Any] = {"cohort": cohort, "quota_scu_per_h": _number(client, "--quota", quota)}
    for key, option, text in (
        ("borrow_limit_scu_per_h", "--borrow", borrow),
        ("lend_limit_scu_per_h", "--lend", lend),
        ("weight", "--weight", weight),
    ):
        if text is not None:
            body[key] = _number(client, option, text)
    if classes is not None:
        body["classes"] = _split(classes)
    caps = {"families": _caps(client, "--family-cap", family_cap),
            "hubs": _caps(client, "--hub-cap", hub_cap)}  # fmt: skip
    if caps["families"] or caps["hubs"]:
        body["caps"] = caps
    for key, text in (("budget_cny_per_month", budget), ("max_spend_cny_per_h", max_spend)):
        if text is not None:
            body[key] = text.strip()
    r = client.send("PUT", _path(tenant), json=body)
    if r.status_code == 422:
        detail = r.json().get("detail")
        raise client.fail(_refusal(detail), 422, detail)
    if r.status_code >= 400:
        raise client.refused(r)
    q = r.json()
    what = "set" if q["changed"] else "unchanged (already set so)"
    show(q, as_json, Text(f"{_describe(q)}\n{q['tenant']}: quota {what}; {NEXT_ROUND}"))


@quota_app.command("show")
def show_quota(
    tenant: Annotated[
        str | None,
        typer.Argument(metavar="TENANT", help="one tenant (default: all you may see)"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Quotas and what each tenant uses now: operators see every tenant, others their own."""
    client = Client(as_json)
    if tenant is not None:
        q = client.request("GET", _path(tenant))
        show(q, as_json, Text(_describe(q)))
        return
    data = client.request("GET", "/v1/quotas")
    if not data["quotas"]:
        show(data, as_json, "no quota is set (that you may see)")
        return
    table = Table()
    for col in ("tenant", "cohort", "quota", "borrow", "lend", "weight", "classes",
                "using", "borrowed", "budget used"):  # fmt: skip
        table.add_column(col)
    for q in data["quotas"]:
        s, u = q["settings"], q["usage"]
        budget = u["budget_used_cny"] + (
            f" / {s['budget_cny_per_month']}" if s["budget_cny_per_month"] else ""
        )
        table.add_row(*map(Text, (
            q["tenant"], s["cohort"], _num(s["quota_scu_per_h"]),
            _num(s["borrow_limit_scu_per_h"]), _num(s["lend_limit_scu_per_h"]),
            _num(s["weight"]), ",".join(s["classes"]), _num(u["rate_scu_per_h"]),
            _num(u["borrowed_scu_per_h"]), budget,
        )))  # fmt: skip
    show(data, as_json, table)


@quota_app.command("rm")
def remove_quota(tenant: TenantArgument, as_json: JsonOption = False) -> None:
    """Remove a tenant's quota (operators)."""
    r = Client(as_json).request("DELETE", _path(tenant))
    show(r, as_json, Text(f"{r['tenant']}: quota removed; {NEXT_ROUND}"))


def _summary(c: dict[str, Any]) -> str:
    before, after = c["before"] or {}, c["after"] or {}
    if not before or not after:
        s = after or before
        return f"cohort {s.get('cohort')}, quota {_num(s.get('quota_scu_per_h'))} {RATE}"
    changed = [k for k in after if k != "tenant" and before.get(k) != after.get(k)]
    return "; ".join(f"{k} {_brief(before.get(k))} -> {_brief(after.get(k))}" for k in changed)


def _brief(value: Any) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return _num(value)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return re.sub(r"[{}'\"]", "", str(value)) or "none"
    return "none" if value is None else str(value)


@quota_app.command("changes")
def changes(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's (name or id)")] = None,
    limit: Annotated[int, typer.Option(metavar="N", help="at most N, newest first")] = 100,
    as_json: JsonOption = False,
) -> None:
    """The record of quota changes (operators): who changed what, when."""
    params: dict[str, Any] = {"limit": limit} | ({"tenant": tenant} if tenant else {})
    data = Client(as_json).request("GET", "/v1/quotas/changes", params=params)
    table = Table()
    for col in ("at", "by", "tenant", "action", "change"):
        table.add_column(col)
    for c in data["changes"]:
        cells = (c["at"][:19], c["by"], c["tenant"], c["action"], _summary(c))
        table.add_row(*map(Text, cells))  # names are text, never markup
    show(data, as_json, table if data["changes"] else "no quota changes")
