"""``suanwang sweep SWEEP.yaml``: a grid of simulations on Ray (docs/sweeps.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from suanwang.cli.app import App
from suanwang.cli.options import JsonOption
from suanwang.cli.output import err, fail, out, print_json, problems


def sweep(
    file: Annotated[Path, typer.Argument(metavar="SWEEP.yaml", help="the sweep file")],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="DIR",
            help="results directory (default: <file name>-results beside the file); finished"
            " runs found there are not run again",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(metavar="ADDR", help="an existing Ray cluster (e.g. auto, host:6379)"),
    ] = None,
    num_cpus: Annotated[
        int | None,
        typer.Option(metavar="N", help="CPUs of the local Ray runtime (default: all)"),
    ] = None,
    serial: Annotated[
        bool, typer.Option("--serial", help="run one after another in this process, no Ray")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Simulate every combination of the file's edits, workloads, policies and seeds."""
    from suanwang.server.services.whatif_input import describe_edits
    from suanwang.sim.sweep.execute import run_sweep
    from suanwang.sim.sweep.results import summary_html, table, write_tables
    from suanwang.sim.sweep.runs import grid
    from suanwang.sim.sweep.spec import SweepError, load_sweep

    if num_cpus is not None and num_cpus < 1:
        raise fail("--num-cpus must be >= 1")
    if address is not None and (serial or num_cpus is not None):
        raise fail("--address runs on that cluster: without --serial or --num-cpus")
    try:
        spec = load_sweep(file)
    except SweepError as exc:
        problems(exc.problems[:100])
        raise fail(f"sweep file {str(file)!r} has {len(exc.problems)} problem(s)") from None
    runs = grid(spec)
    target = out_dir if out_dir is not None else file.parent / f"{file.stem}-results"
    progress = Progress(
        TextColumn("runs"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=err,
        disable=as_json or not sys.stderr.isatty(),
    )
    task = progress.add_task("runs", total=len(runs), failed=0)
    failures = 0

    def started(reused: int, to_run: int) -> None:
        progress.update(task, completed=reused)
        if not as_json:
            err.print(f"{len(runs)} runs: {reused} finished before, {to_run} to run", style="dim")

    def arrived(result: dict[str, Any]) -> None:
        nonlocal failures
        if result["status"] != "ok":
            failures += 1
            progress.console.print(f"[red]failed:[/] {_params(result)}: {result['error']}",
                                   highlight=False, soft_wrap=True)  # fmt: skip
        progress.update(task, advance=1, failed=failures)

    with progress:
        outcome = run_sweep(runs, spec.edited, target, address=address, num_cpus=num_cpus,
                            serial=serial, on_start=started, on_result=arrived)  # fmt: skip
    df = table(outcome.results)
    csv, parquet = write_tables(df, target)
    meta = [
        ("sweep", str(file)),
        ("scenario", spec.base.name),
        ("start", spec.start.isoformat()),
        ("runs", f"{len(runs)} ({len(outcome.failed)} failed)"),
        (
            "grid",
            f"{len(spec.spec.edits)} edits × {len(spec.spec.workloads)} workloads × "
            f"{len(spec.spec.policies) + bool(spec.spec.bound)} policies × {len(spec.seeds)} "
            "seeds",
        ),
    ]
    if spec.spec.bound_kind is not None:
        meta.append(("bound", spec.spec.bound_kind))
    notes = {name: describe_edits(spec.base, e) for name, e in spec.spec.edits.items()}
    html = summary_html(df, title=f"sweep {file.stem}", meta=meta, edit_notes=notes)
    summary = target / "summary.html"
    summary.write_text(html, "utf-8")
    doc = {
        "runs": len(runs),
        "reused": outcome.reused,
        "ran": outcome.ran,
        "failed": [
            {k: f.get(k) for k in ("key", "edits", "workload", "policy", "seed", "error")}
            for f in outcome.failed
        ],
        "results": {"csv": str(csv), "parquet": str(parquet), "summary": str(summary)},
    }
    if as_json:
        print_json(doc)
    else:
        out.print(
            f"{len(runs)} runs ({outcome.reused} finished before, {outcome.ran} run now, "
            f"{len(outcome.failed)} failed)\nresults: {csv}, {parquet}\nsummary: {summary}",
            highlight=False,
            soft_wrap=True,
        )
    if outcome.failed:
        raise typer.Exit(1)


def _params(result: dict[str, Any]) -> str:
    return " ".join(f"{k}={result[k]}" for k in ("edits", "workload", "policy", "seed"))


def register(app: App) -> None:
    app.command()(sweep)
