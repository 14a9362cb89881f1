"""``suanwang scenario show | export | validate``, and loading a scenario for any command."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from suanwang.cli.app import App
from suanwang.cli.output import err, fail, out

scenario_app = App(help="Inspect, export and validate scenarios.", no_args_is_help=True)


def load_scenario_or_fail(name: str) -> Any:
    """The scenario ``name`` ('china' or a directory); its problems end the command."""
    from suanwang.scenarios.loader import ScenarioError, load_scenario

    try:
        return load_scenario(name)
    except ScenarioError as exc:
        for p in exc.problems:
            err.print(str(p), highlight=False, soft_wrap=True, markup=False)
        raise fail(f"scenario {name!r} has {len(exc.problems)} problem(s)") from None


def parse_start(text: str, tz: str) -> datetime:
    """``--start``: an ISO date or time, in ``tz`` unless it has an offset; as UTC."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"--start {text!r} is not an ISO date (e.g. 2025-07-01)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=ZoneInfo(tz))
    return t.astimezone(UTC)


@scenario_app.command("export")
def scenario_export(
    name: Annotated[str, typer.Argument(help="built-in scenario, e.g. china")],
    directory: Annotated[Path, typer.Argument(help="directory to write")],
    start: Annotated[
        str, typer.Option(metavar="TIME", help="first hour of the signals (ISO)")
    ] = "2025-07-01",
    days: Annotated[
        float, typer.Option(metavar="DAYS", help="days of hourly signals to write")
    ] = 7.0,
    seed: Annotated[int, typer.Option(metavar="N", help="weather seed")] = 0,
) -> None:
    """Write a built-in scenario as scenario.yaml + signals/<center>.csv."""
    from suanwang.scenarios.export import export_builtin
    from suanwang.scenarios.loader import BUILTIN

    if name not in BUILTIN:
        raise fail(f"no built-in scenario {name!r} (built-in: {', '.join(BUILTIN)})")
    if days <= 0:
        raise fail("--days must be > 0")
    sc = load_scenario_or_fail(name)
    files = export_builtin(name, directory, parse_start(start, sc.timezone), int(days * 24), seed)
    out.print(f"wrote {len(files)} files to {directory}")


@scenario_app.command("validate")
def scenario_validate(
    directory: Annotated[Path, typer.Argument(help="scenario directory")],
) -> None:
    """Check a scenario directory; list every problem with file, line and field."""
    from suanwang.scenarios.loader import validate_dir

    problems = validate_dir(directory)
    for p in problems:
        err.print(str(p), highlight=False, soft_wrap=True, markup=False)
    if problems:
        raise fail(f"{len(problems)} problem(s) in {directory}", 1)
    out.print(f"{directory}: valid")


@scenario_app.command("show")
def scenario_show(
    name: Annotated[str, typer.Argument(help="'china' or a scenario directory")] = "china",
) -> None:
    """Summarise a scenario's centers."""
    sc = load_scenario_or_fail(name)
    table = Table(title=f"{sc.name}: {len(sc.centers)} centers, {sc.total_cards:,} cards")
    for col in ("center", "province", "hub", "PUE", "cards", "CPU cores", "green PPA"):
        table.add_column(col)
    for c in sc.centers:
        table.add_row(
            c.id,
            c.province,
            c.hub or "-",
            f"{c.pue:.2f}",
            f"{c.cards:,}",
            f"{c.cpu_cores:,}",
            f"{c.power.green_ppa_share:.0%}",
        )
    out.print(table)
