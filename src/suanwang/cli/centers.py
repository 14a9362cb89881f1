"""``suanwang centers``: the network now; ``drain`` / ``undrain`` a center (operators)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from suanwang.cli.app import App
from suanwang.cli.client import Client
from suanwang.cli.options import JsonOption
from suanwang.cli.output import out, print_json, show

centers_app = App(
    help="The network now (no subcommand), or drain / undrain a center (operators).",
    invoke_without_command=True,
)
CenterArgument = Annotated[
    str, typer.Argument(metavar="CENTER", help="a center's id, e.g. zhongwei")
]


@centers_app.command("drain")
def drain_center(
    center_id: CenterArgument,
    reason: Annotated[str, typer.Option(metavar="WHY", help="why (shown with the center)")] = "",
    as_json: JsonOption = False,
) -> None:
    """No new jobs on CENTER; its running checkpointable jobs move away, others finish."""
    data = Client(as_json).request(
        "POST", f"/v1/centers/{center_id}/drain", json={"reason": reason}
    )
    show(data, as_json, f"{center_id}: drained" + (f" ({reason})" if reason else ""))


@centers_app.command("undrain")
def undrain_center(center_id: CenterArgument, as_json: JsonOption = False) -> None:
    """Open a drained center to new jobs again."""
    data = Client(as_json).request("POST", f"/v1/centers/{center_id}/undrain")
    show(data, as_json, f"{center_id}: open to new jobs")


@centers_app.callback()
def centers(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The network now: capacity, use, price, green share per center."""
    if ctx.invoked_subcommand is not None:
        return
    data = Client(as_json).request("GET", "/v1/centers")
    if as_json:
        print_json(data)
        return
    table = Table(title=f"{data.get('scenario', '')}: centers now")
    for col in ("center", "hub", "cards used", "cards", "CPU", "CNY/kWh", "green", "gCO2/kWh",
                "PUE"):  # fmt: skip
        table.add_column(col)
    for c in data["centers"]:
        sig = c.get("signals", {})
        util = c.get("utilization", {})
        table.add_row(
            c["id"], c.get("hub") or "-", f"{util.get('cards', 0):.1%}",
            f"{sum(c['capacity']['cards'].values()):,}", f"{util.get('cpu', 0):.1%}",
            f"{sig.get('price_cny_per_kwh', 0):.3f}", f"{sig.get('green_fraction', 0):.0%}",
            f"{sig.get('carbon_g_per_kwh', 0):.0f}", f"{c.get('pue', 0):.2f}",
        )  # fmt: skip
    out.print(table)
