"""The ``suanwang`` command line."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from suanwang import __version__

app = typer.Typer(
    name="suanwang",
    help="Open platform for a national integrated computing power network (算力网).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
scenario_app = typer.Typer(help="Inspect, export and validate scenarios.", no_args_is_help=True)
app.add_typer(scenario_app, name="scenario")


def _register_platform() -> None:
    from suanwang.cli_platform import register
    from suanwang.server.admin_cli import app as tenants_app
    from suanwang.server.billing_cli import register as register_billing
    from suanwang.testbed.cli import app as testbed_app

    app.add_typer(tenants_app, name="tenants")
    register_billing(app)  # billing (issue 5): suanwang billing ..., suanwang ledger verify
    app.add_typer(testbed_app, name="testbed")
    register(app)


_register_platform()

err = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 160)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _load_scenario(name: str) -> Any:
    from suanwang.scenarios.loader import ScenarioError, load_scenario

    try:
        return load_scenario(name)
    except ScenarioError as exc:
        for p in exc.problems:
            err.print(str(p), highlight=False, soft_wrap=True, markup=False)
        raise fail(f"scenario {name!r} has {len(exc.problems)} problem(s)") from None


def _parse_start(text: str, tz: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"--start {text!r} is not an ISO date (e.g. 2025-07-01)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=ZoneInfo(tz))
    return t.astimezone(UTC)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


@app.command()
def simulate(
    scenario: Annotated[str, typer.Option(help="'china' or a scenario directory")] = "china",
    trace: Annotated[str, typer.Option(help="'synthetic' or a trace CSV file")] = "synthetic",
    format: Annotated[
        str, typer.Option("--format", help="trace format: suanwang | philly | alibaba-gpu-2023")
    ] = "suanwang",
    jobs: Annotated[
        int | None, typer.Option(help="synthetic: number of jobs (20000); trace: first N jobs")
    ] = None,
    days: Annotated[float, typer.Option(help="days of arrivals (synthetic)")] = 2.0,
    start: Annotated[
        str, typer.Option(help="start, ISO date/time; local time of the scenario unless offset")
    ] = "2025-07-01",
    seed: Annotated[int, typer.Option(help="seed for workload and weather")] = 0,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            help="policy (repeatable): nearest, first-fit, cheapest, greenest, suanwang, all"
        ),
    ] = None,
    load: Annotated[
        float | None, typer.Option(help="synthetic: scale durations to this mean load (0-1)")
    ] = None,
    drain_days: Annotated[float, typer.Option(help="days simulated after the last arrival")] = 14.0,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="write report.html, results.json and jobs-<policy>.csv here"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
    no_bound: Annotated[bool, typer.Option("--no-bound", help="skip the offline bound")] = False,
    offers: Annotated[
        Path | None, typer.Option(help="providers' offers (YAML): placed and paid at their prices")
    ] = None,
) -> None:
    """Replay a workload on the network under each policy and compare them with the bound."""
    from suanwang.scenarios.loader import BUILTIN
    from suanwang.sim.run import make_workload, policy_names, run
    from suanwang.sim.traces import TRACE_FORMATS, TraceError

    if format not in TRACE_FORMATS:
        raise fail(f"--format {format!r} is not one of {', '.join(TRACE_FORMATS)}")
    if jobs is not None and jobs < 0:
        raise fail("--jobs must be >= 0")
    if days <= 0:
        raise fail("--days must be > 0")
    if load is not None and not 0 < load <= 1:
        raise fail("--load must be within (0, 1]")
    if drain_days < 0:
        raise fail("--drain-days must be >= 0")
    try:
        names = policy_names(policy or ["all"])
    except ValueError as exc:
        raise fail(str(exc)) from None
    if scenario not in BUILTIN and not Path(scenario).exists():
        raise fail(
            f"--scenario {scenario!r} is neither a built-in ({', '.join(BUILTIN)}) nor a directory"
        )
    sc = _load_scenario(scenario)
    t0 = _parse_start(start, sc.timezone)
    from suanwang.core.network import Network

    net = Network(sc)
    try:
        workload = make_workload(
            net, trace=trace, fmt=format, jobs=jobs, days=days, seed=seed, start=t0, load=load
        )
    except TraceError as exc:
        for p in exc.problems[:100]:
            err.print(str(p), highlight=False, soft_wrap=True, markup=False)
        raise fail(f"trace {trace!r} has {len(exc.problems)} problem(s)") from None
    except ValueError as exc:
        raise fail(str(exc)) from None

    book = None
    if offers is not None:
        from suanwang.billing.market import load_offers

        try:
            book = load_offers(offers, net)
        except ValueError as exc:
            for line in str(exc).splitlines():
                err.print(line, highlight=False, soft_wrap=True, markup=False)
            raise fail(f"--offers {str(offers)!r}: not loaded") from None

    show_progress = sys.stderr.isatty() and not as_json
    progress = Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} jobs"),
        TimeElapsedColumn(),
        console=err,
        disable=not show_progress,
    )
    tasks: dict[str, TaskID] = {}

    def on_policy(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = progress.add_task(name, total=total)
        progress.update(tasks[name], completed=done)

    with progress:
        result = run(
            sc,
            workload,
            start=t0,
            policies=names,
            seed=seed,
            drain_days=drain_days,
            with_bound=not no_bound,
            on_policy=on_policy,
            offers=book,
            records_dir=out_dir,
        )
    if result.bound_error:
        err.print(f"[yellow]warning:[/] bound not computed: {result.bound_error}")
    if workload.skipped:
        skipped = ", ".join(f"{k}: {v}" for k, v in workload.skipped.items())
        err.print(f"skipped trace rows: {skipped}", highlight=False)
    if out_dir is not None:
        from suanwang.sim.report import write_report

        out_dir.mkdir(parents=True, exist_ok=True)
        write_report(
            out_dir / "report.html",
            scenario_name=sc.name,
            net=result.network,
            signals=result.signals,
            reports=result.reports,
            bound=result.bound,
            arrival_days=workload.arrival_days,
        )
        (out_dir / "results.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    if as_json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return
    _print_table(result.to_json())
    if out_dir is not None:
        out.print(f"report: {out_dir / 'report.html'}")


def _print_table(doc: dict[str, Any]) -> None:
    table = Table(title=f"{doc['scenario']}: {doc['jobs']:,} jobs")
    cols = [
        ("policy", None),
        ("cost CNY", "cost_cny"),
        ("energy MWh", "energy_kwh"),
        ("green", "green_share"),
        ("CO2 t", "carbon_t"),
        ("wait s", "mean_wait_s"),
        ("deadline miss", "deadline_misses"),
        ("lat. viol.", "latency_violations"),
        ("done/rej/unf", None),
        ("util", "utilization"),
        ("dec/s", "decisions_per_s"),
    ]
    for title, _ in cols:
        table.add_column(title, justify="right" if title != "policy" else "left")
    for name, m in doc["policies"].items():
        table.add_row(
            name,
            f"{m['cost_cny']:,.0f}",
            f"{m['energy_kwh'] / 1000:,.1f}",
            f"{m['green_share']:.1%}",
            f"{m['carbon_t']:,.1f}",
            f"{m['mean_wait_s']:,.0f}",
            str(m["deadline_misses"]),
            str(m["latency_violations"]),
            f"{m['completed']}/{m['rejected']}/{m['unfinished']}",
            f"{m['utilization']:.1%}",
            f"{m['decisions_per_s']:,.0f}",
        )
    b = doc.get("bound")
    if b:
        table.add_row(
            "bound (LP)",
            f"{b['cost_cny']:,.0f}",
            f"{b['energy_kwh'] / 1000:,.1f}",
            "",
            f"{b['carbon_t']:,.1f}",
        )
    out.print(table)
    if "offers" in doc:
        paid = Table(title=f"paid by consumers ({doc['offers']} offers; start-hour price per SCU)")
        for title in ("policy", "at offer prices CNY", "at posted prices CNY", "saved", "jobs"):
            paid.add_column(title, justify="right" if title != "policy" else "left")
        for name, m in doc["policies"].items():
            saved = m["paid_posted_cny"] - m["paid_offer_cny"]
            paid.add_row(
                name,
                f"{m['paid_offer_cny']:,.0f}",
                f"{m['paid_posted_cny']:,.0f}",
                f"{saved:,.0f}",
                str(m["jobs_under_offers"]),
            )
        out.print(paid)


@scenario_app.command("export")
def scenario_export(
    name: Annotated[str, typer.Argument(help="built-in scenario, e.g. china")],
    directory: Annotated[Path, typer.Argument(help="directory to write")],
    start: Annotated[str, typer.Option(help="first hour of the signals (ISO)")] = "2025-07-01",
    days: Annotated[float, typer.Option(help="days of hourly signals to write")] = 7.0,
    seed: Annotated[int, typer.Option(help="weather seed")] = 0,
) -> None:
    """Write a built-in scenario as scenario.yaml + signals/<center>.csv."""
    from suanwang.scenarios.export import export_builtin
    from suanwang.scenarios.loader import BUILTIN

    if name not in BUILTIN:
        raise fail(f"no built-in scenario {name!r} (built-in: {', '.join(BUILTIN)})")
    if days <= 0:
        raise fail("--days must be > 0")
    sc = _load_scenario(name)
    files = export_builtin(name, directory, _parse_start(start, sc.timezone), int(days * 24), seed)
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
    sc = _load_scenario(name)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
