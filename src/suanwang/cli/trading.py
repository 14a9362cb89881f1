"""Trading commands (HTTP clients, like ``suanwang submit``): ``suanwang offers ...`` and
``suanwang reservations ...``. They read ``SUANWANG_URL`` and ``SUANWANG_API_KEY``; every
refusal is one sentence on stderr (the field and what is wrong), or the error as JSON with
``--json``, and exit code 2 (:mod:`suanwang.cli.client`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from suanwang.cli.app import App
from suanwang.cli.client import Client
from suanwang.cli.options import JsonOption
from suanwang.cli.output import show

offers_app = App(help="Providers' offers: publish, list, withdraw.", no_args_is_help=True)
reservations_app = App(
    help="Reserve capacity of reserved offers: create, list, cancel.", no_args_is_help=True
)
TimeOption = Annotated[
    str,
    typer.Option(
        metavar="TIME", help="ISO 8601 with offset, on a whole hour, e.g. 2026-11-23T08:00+08:00"
    ),
]


def _offers_table(rows: list[dict[str, Any]]) -> Table:
    table = Table()
    for col in ("id", "center", "model", "type", "units", "CNY/SCU", "start", "end", "active"):
        table.add_column(col)
    for o in rows:
        table.add_row(
            o["id"], o["center"], o["model"] + (f" ({o['precision']})" if o["precision"] else ""),
            o["type"], str(o["units"]), o["price_cny_per_scu"], o["start"][:16], o["end"][:16],
            "yes" if o["active"] else "",
        )  # fmt: skip
    return table


@offers_app.command("publish")
def publish(
    center: Annotated[str, typer.Option(help="a center you own (operators: any)")],
    model: Annotated[str, typer.Option(help="accelerator (or CPU) model, e.g. a100")],
    units: Annotated[int, typer.Option(help="cards (CPU cores for the CPU model)")],
    price: Annotated[str, typer.Option(help="CNY per standard compute unit, e.g. 3.20")],
    start: TimeOption,
    end: TimeOption,
    type: Annotated[
        str, typer.Option("--type", help="on_demand | reserved | idle_discount")
    ] = "on_demand",
    precision: Annotated[
        str | None, typer.Option(help="price only this precision (fp16|fp32|fp64|cpu)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Publish an offer of capacity at a price per SCU for a time window."""
    body = {"center": center, "model": model, "units": units, "price_cny_per_scu": price,
            "start": start, "end": end, "type": type, "precision": precision}  # fmt: skip
    o = Client(as_json).request("POST", "/v1/offers", json=body)
    line = f"{o['id']}: {o['type']} {o['units']} x {o['model']} at {o['center']}"
    line += f", {o['price_cny_per_scu']} CNY/SCU, {o['start']} .. {o['end']}"
    show(o, as_json, line)


@offers_app.command("list")
def list_offers(
    center: Annotated[str | None, typer.Option(help="only this center")] = None,
    model: Annotated[str | None, typer.Option(help="only this model")] = None,
    type: Annotated[str | None, typer.Option("--type", help="only this type")] = None,
    include_past: Annotated[bool, typer.Option("--all", help="ended offers too")] = False,
    as_json: JsonOption = False,
) -> None:
    """Offers not yet ended, soonest first."""
    params: dict[str, Any] = {"include_past": include_past}
    params |= {k: v for k, v in (("center", center), ("model", model), ("type", type)) if v}
    data = Client(as_json).request("GET", "/v1/offers", params=params)
    show(data, as_json, _offers_table(data["offers"]))


@offers_app.command("withdraw")
def withdraw(offer_id: str, as_json: JsonOption = False) -> None:
    """Withdraw an offer: it ends at the next whole hour (bookings made stay)."""
    o = Client(as_json).request("DELETE", f"/v1/offers/{offer_id}")
    show(o, as_json, f"{o['id']}: withdrawn, ends {o['end']}")


@reservations_app.command("create")
def create(
    offer_id: Annotated[str, typer.Argument(help="a reserved offer (see: suanwang offers list)")],
    units: Annotated[int, typer.Option(help="units of the offer's chip")],
    start: TimeOption,
    end: TimeOption,
    precision: Annotated[str, typer.Option(help="the SCU are counted at")] = "fp16",
    as_json: JsonOption = False,
) -> None:
    """Reserve capacity; it is paid at once (402 without enough prepaid balance)."""
    body = {"offer_id": offer_id, "units": units, "start": start, "end": end,
            "precision": precision}  # fmt: skip
    r = Client(as_json).request("POST", "/v1/reservations", json=body)
    line = f"{r['id']}: {r['units']} x {r['model']} at {r['center']}"
    line += f", {r['start']} .. {r['end']}, paid {r['amount_cny']} CNY"
    show(r, as_json, line)


@reservations_app.command("list")
def list_reservations(
    everyone: Annotated[bool, typer.Option("--all", help="operators: everyone's")] = False,
    as_json: JsonOption = False,
) -> None:
    """Your reservations, newest first."""
    data = Client(as_json).request("GET", "/v1/reservations", params={"all": everyone})
    table = Table()
    for col in ("id", "center", "model", "units", "start", "end", "CNY", "cancelled"):
        table.add_column(col)
    for r in data["reservations"]:
        table.add_row(
            r["id"], r["center"], r["model"], str(r["units"]), r["start"][:16], r["end"][:16],
            r["amount_cny"], "yes" if r["cancelled"] else "",
        )  # fmt: skip
    show(data, as_json, table)


@reservations_app.command("cancel")
def cancel(reservation_id: str, as_json: JsonOption = False) -> None:
    """Cancel a reservation before it starts: refunded in full."""
    r = Client(as_json).request("DELETE", f"/v1/reservations/{reservation_id}")
    what = f"refunded {r['amount_cny']} CNY" if r["refunded"] else "was already cancelled"
    show(r, as_json, f"{r['id']}: cancelled, {what}")


def register(app: App) -> None:
    app.add_typer(offers_app, name="offers")
    app.add_typer(reservations_app, name="reservations")
