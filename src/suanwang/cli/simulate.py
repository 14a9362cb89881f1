"""``suanwang simulate``: replay a workload under each policy and compare them with the bound."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from suanwang.cli.app import App
from suanwang.cli.options import JsonOption, ScenarioOption
from suanwang.cli.output import err, fail, out
from suanwang.cli.scenario import load_scenario_or_fail, parse_start

if TYPE_CHECKING:
    from suanwang.core.governance import Governance
    from suanwang.core.scenario import Scenario


def simulate(
    scenario: ScenarioOption = "china",
    trace: Annotated[
        str, typer.Option(metavar="synthetic|FILE", help="'synthetic' or a trace CSV file")
    ] = "synthetic",
    format: Annotated[
        str,
        typer.Option(
            "--format", metavar="NAME", help="trace format: suanwang | philly | alibaba-gpu-2023"
        ),
    ] = "suanwang",
    jobs: Annotated[
        int | None,
        typer.Option(metavar="N", help="synthetic: number of jobs (20000); trace: first N jobs"),
    ] = None,
    days: Annotated[float, typer.Option(metavar="DAYS", help="days of arrivals (synthetic)")] = 2.0,
    start: Annotated[
        str,
        typer.Option(
            metavar="TIME", help="start, ISO date/time; local time of the scenario unless offset"
        ),
    ] = "2025-07-01",
    seed: Annotated[int, typer.Option(metavar="N", help="seed for workload and weather")] = 0,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="policy (repeatable): nearest, first-fit, cheapest, greenest, suanwang, all",
        ),
    ] = None,
    load: Annotated[
        float | None,
        typer.Option(metavar="LOAD", help="synthetic: scale durations to this mean load (0-1)"),
    ] = None,
    drain_days: Annotated[
        float, typer.Option(metavar="DAYS", help="days simulated after the last arrival")
    ] = 14.0,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", metavar="DIR", help="write report.html, results.json and jobs-<policy>.csv"
        ),
    ] = None,
    as_json: JsonOption = False,
    no_bound: Annotated[bool, typer.Option("--no-bound", help="skip the offline bound")] = False,
    tight_bound: Annotated[
        bool,
        typer.Option(
            "--tight-bound",
            help="also the non-preemptive bound (tighter; about a minute at 200,000 jobs)",
        ),
    ] = False,
    offers: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="providers' offers (YAML): placed and paid at their prices"
        ),
    ] = None,
    tenants: Annotated[
        str | None,
        typer.Option(
            metavar="FILE|equal",
            help="quotas, classes and fair share (tenants YAML, docs/governance.md), or 'equal':"
            " every tenant of the workload an equal share; jobs wait in the platform's queue",
        ),
    ] = None,
    fifo: Annotated[
        bool,
        typer.Option(
            "--fifo", help="with --tenants: also run each policy without quotas, oldest first"
        ),
    ] = False,
    synthetic_tenants: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="synthetic: share the jobs among N tenants of unequal demand (5%% urgent, "
            "5%% preemptible); with a --tenants file and no N: among the file's tenants",
        ),
    ] = 0,
    forecast_error: Annotated[
        str,
        typer.Option(
            metavar="LEVEL",
            help="policies plan on forecasts with this day-ahead error (seeded; billed on what "
            "happens): none, low, realistic, high (docs/model.md)",
        ),
    ] = "none",
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
    if synthetic_tenants < 0:
        raise fail("--synthetic-tenants must be >= 0")
    from suanwang.scenarios.forecasts import LEVELS

    if forecast_error not in LEVELS:
        raise fail(f"--forecast-error {forecast_error!r} is not one of {', '.join(LEVELS)}")
    if fifo and tenants is None:
        raise fail("--fifo compares with --tenants: give --tenants FILE or --tenants equal")
    try:
        names = policy_names(policy or ["all"])
    except ValueError as exc:
        raise fail(str(exc)) from None
    if scenario not in BUILTIN and not Path(scenario).exists():
        raise fail(
            f"--scenario {scenario!r} is neither a built-in ({', '.join(BUILTIN)}) nor a directory"
        )
    sc = load_scenario_or_fail(scenario)
    t0 = parse_start(start, sc.timezone)
    from suanwang.core.network import Network

    net = Network(sc)
    governance = None
    if tenants is not None:
        governance = _governance(tenants, sc)
    sharing: tuple[str, ...] = ()
    if governance is not None and trace == "synthetic" and not synthetic_tenants:
        sharing = tuple(governance.tenants)  # the file's tenants share the synthetic jobs
    try:
        workload = make_workload(
            net,
            trace=trace,
            fmt=format,
            jobs=jobs,
            days=days,
            seed=seed,
            start=t0,
            load=load,
            tenants=synthetic_tenants or len(sharing),
            names=sharing,
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
            tight=tight_bound,
            on_policy=on_policy,
            offers=book,
            records_dir=out_dir,
            governance=governance,
            fifo=fifo,
            forecast_error=forecast_error,
        )
    if result.bound_error:
        err.print(f"[yellow]warning:[/] bound not computed: {result.bound_error}")
    if result.tight_error:
        err.print(f"[yellow]warning:[/] non-preemptive bound not computed: {result.tight_error}")
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
            tight=result.tight,
            tight_error=result.tight_error,
        )
        (out_dir / "results.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    if as_json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return
    _print_table(result.to_json())
    if out_dir is not None:
        out.print(f"report: {out_dir / 'report.html'}")


def _governance(tenants: str, sc: Scenario) -> Governance:
    from suanwang.core.governance import Governance
    from suanwang.scenarios.tenants import TenantsError, load_tenants

    if tenants == "equal":
        return Governance(tenants={})
    path = Path(tenants)
    try:
        return load_tenants(path, sc)
    except TenantsError as exc:
        for p in exc.problems[:100]:
            err.print(str(p), highlight=False, soft_wrap=True, markup=False)
        raise fail(f"--tenants {tenants!r} has {len(exc.problems)} problem(s)") from None


def _print_fairness(doc: dict[str, Any]) -> None:
    table = Table(title="sharing (docs/governance.md)")
    titles = ("policy", "Jain", "min entitled", "asks met in a round", "ask p95 s", "preempted",
              "lost work", "urgent p95 s")  # fmt: skip
    for title in titles:
        table.add_column(title, justify="right" if title != "policy" else "left")
    for name, m in doc["policies"].items():
        f = m["fairness"]
        backlogged = f["backlogged_hours"] > 0  # else nobody waited a whole hour: no index
        table.add_row(
            name,
            f"{f['jain_index']:.3f}" if backlogged else "-",
            f"{f['min_entitled_fraction']:.0%}" if backlogged else "-",
            f"{f['asks_met_within_round']:.2%} of {f['asks']:,}",
            f"{f['ask_met_p95_s']:,.0f}",
            str(m["preemptions"]),
            f"{m['lost_work_share']:.2%}",
            f"{m['classes']['urgent']['wait_p95_s']:,.0f}",
        )
    out.print(table)


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
        ("done/rej/exp/unf", None),
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
            f"{m['completed']}/{m['rejected']}/{m.get('expired', 0)}/{m['unfinished']}",
            f"{m['utilization']:.1%}",
            f"{m['decisions_per_s']:,.0f}",
        )
    bounds = [doc.get("bound"), doc.get("bound_relaxed")]
    for b in [b for i, b in enumerate(bounds) if b and b not in bounds[:i]]:
        table.add_row(
            f"{b.get('kind', 'relaxed')} bound",
            f"{b['cost_cny']:,.0f}",
            f"{b['energy_kwh'] / 1000:,.1f}",
            "",
            f"{b['carbon_t']:,.1f}",
        )
    out.print(table)
    if any("fairness" in m for m in doc["policies"].values()):
        _print_fairness(doc)
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


def register(app: App) -> None:
    app.command()(simulate)
