"""Client commands on jobs: ``submit``, ``jobs``, ``cancel``, ``logs``.

A job is named by its id or by the start of it that no other job of yours has (at least four
characters, as ``git`` takes short ids); the server resolves it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from suanwang.cli.app import App
from suanwang.cli.client import Client, detail_of, explain
from suanwang.cli.options import JobArgument, JsonOption
from suanwang.cli.output import fail, out, print_json, problems, show
from suanwang.scheduling.placement import amounts


def _jobs_table(items: list[dict[str, Any]]) -> Table:
    table = Table()
    for col in ("id", "name", "state", "kind", "origin", "center", "submitted", "exit"):
        table.add_column(col)
    for j in items:
        table.add_row(
            j["id"], j["name"], j["state"], j.get("kind") or "", j.get("origin") or "",
            j.get("center_id") or "-", (j.get("submitted_at") or "")[:19],
            "" if j.get("exit_code") is None else str(j["exit_code"]),
        )  # fmt: skip
    return table


def submit(
    job_file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="job YAML: one job or a list (same fields as POST /v1/jobs)"
        ),
    ],
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="retry-safe key: the same key never makes a second job "
            "(a list file uses KEY-1, KEY-2, ... for its jobs)",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a job file: one job, or a top-level list of jobs (submitted in order).

    The file is checked before anything is sent; every problem is shown as
    file:line: field: message and nothing is submitted. If the server refuses a job of a
    list, the jobs before it stay submitted (shown), the rest are not sent; with
    --idempotency-key, running the same command again submits only what is missing.
    """
    from suanwang.cli.jobfile import JobFileError, load_job_file

    try:
        jf = load_job_file(job_file)
    except OSError as exc:
        raise fail(f"cannot read {job_file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise fail(f"cannot read {job_file}: not UTF-8 text ({exc.reason})") from None
    except JobFileError as exc:
        problems(exc.problems)
        raise fail(f"{job_file} has {len(exc.problems)} problem(s); nothing submitted") from None
    client = Client(as_json)
    done: list[dict[str, Any]] = []
    for i, spec in enumerate(jf.jobs):
        headers = None
        if idempotency_key:
            key = f"{idempotency_key}-{i + 1}" if jf.is_list else idempotency_key
            headers = {"Idempotency-Key": key}
        r = client.send("POST", "/v1/jobs", headers=headers, json=spec.model_dump(mode="json"))
        if r.status_code < 400:
            done.append(r.json())
            continue
        which = f"job {i + 1} of {len(jf.jobs)}" if jf.is_list else "the job"
        detail = detail_of(r)
        placed = jf.server_problems(i, detail) if r.status_code == 422 else []
        if placed:
            message = f"{job_file}: the server refused {which}"
        else:
            message = f"{job_file}: {which}: {explain(r.status_code, detail)}"
        if done:
            message += f" ({len(done)} job(s) before it submitted)"
        if as_json:
            found = [str(p) for p in placed]
            raise client.fail(message, r.status_code, detail, problems=found, submitted=done)
        _print_submitted(done)
        problems(placed)
        raise client.fail(message, r.status_code, detail)
    if as_json:
        print_json(done if jf.is_list else done[0])
    else:
        _print_submitted(done)


def _print_submitted(done: list[dict[str, Any]]) -> None:
    for job in done:
        out.print(f"submitted {job['id']} {job['name']} ({job['state']})", highlight=False)


def jobs(
    job_id: Annotated[
        str | None,
        typer.Argument(
            metavar="JOB", help="one job: its id or the start of it (default: list your jobs)"
        ),
    ] = None,
    state: Annotated[str | None, typer.Option(help="only jobs in this state")] = None,
    as_json: JsonOption = False,
) -> None:
    """List your jobs, or show one with its placement explanation and state history."""
    client = Client(as_json)
    if job_id:
        job = client.request("GET", f"/v1/jobs/{job_id}")
        if as_json:
            print_json(job)
            return
        out.print(_jobs_table([job]))
        decision = job.get("decision")
        if decision:
            out.print(_decision_table(decision))
        events = client.request("GET", f"/v1/jobs/{job['id']}/events")
        out.print(_history(events), highlight=False, soft_wrap=True, markup=False)
        return
    params = {"state": state} if state else None
    page = client.request("GET", "/v1/jobs", params=params)
    show(page, as_json, _jobs_table(page["items"]))


def cancel(job_id: JobArgument, as_json: JsonOption = False) -> None:
    """Cancel a job."""
    job = Client(as_json).request("POST", f"/v1/jobs/{job_id}/cancel")
    show(job, as_json, f"{job['id']}: {job['state']}")


def logs(job_id: JobArgument, as_json: JsonOption = False) -> None:
    """Print a job's output."""
    client = Client(as_json)
    if as_json:  # the document names the job by its whole id
        job_id = client.request("GET", f"/v1/jobs/{job_id}")["id"]
    text = client.request("GET", f"/v1/jobs/{job_id}/logs")
    if as_json:
        print_json({"job_id": job_id, "logs": text})
    else:
        sys.stdout.write(text if isinstance(text, str) else json.dumps(text))


def register(app: App) -> None:
    for command in (submit, jobs, cancel, logs):
        app.command()(command)


def _history(events: list[dict[str, Any]]) -> str:
    """The job's state history, one event a line (as the console's job view shows it): when,
    from which state to which, and the event's detail (a preemption, a checkpoint, ...)."""
    lines = ["history:"]
    for e in events:
        detail = "; ".join(
            f"{k}: {json.dumps(v) if isinstance(v, dict | list) else v}"
            for k, v in (e.get("detail") or {}).items()
        )
        lines.append(
            f"  {(e.get('at') or '')[:19]}  {e.get('from_state') or '-'} -> {e['to_state']}"
            + (f"  {detail}" if detail else "")
        )
    return "\n".join(lines)


def _decision_table(d: dict[str, Any]) -> str:
    """The placement explanation: the reason, then the objective the planner compared, term
    by term, for the choice and its runners-up (amounts with digits enough that different
    amounts never look tied), and why each runner-up lost; or why no center can run the job."""
    if d.get("placed") is False:
        excluded = ", ".join(f"{k} {n}" for k, n in (d.get("excluded") or {}).items() if n)
        return f"not placed: {d['reason']}" + (f"\nexcluded pools: {excluded}" if excluded else "")
    labelled: list[tuple[str, dict[str, Any] | None]] = [("chosen", d.get("chosen"))]
    labelled.append(("if started now", d.get("if_started_now")))
    labelled += [(f"runner-up {i + 1}", r) for i, r in enumerate(d.get("runners_up") or [])]
    rows = [(label, r) for label, r in labelled if r]
    values = [r.get("objective_cny", r.get("cost_cny", 0.0)) for _, r in rows]
    shown = amounts(values)
    digits = len(shown[0].rsplit(".", 1)[-1]) if shown else 2
    lines = [f"placement: {d.get('reason', '')}"]
    for (label, r), objective in zip(rows, shown, strict=True):
        terms = " + ".join(
            f"{name} {r[key]:,.{digits}f}"
            for key, name in (
                ("energy_cost_cny", "energy"),
                ("carbon_cost_cny", "carbon"),
                ("transfer_cost_cny", "transfer"),
                ("waiting_cost_cny", "waiting"),
                ("offer_premium_cny", "offer"),
            )
            if r.get(key) is not None
        )
        green = r.get("green_share")
        facts = f"{r['energy_kwh']:,.1f} kWh" + ("" if green is None else f", {green:.0%} green")
        start = (r.get("start_at") or "")[:16]
        lines.append(
            f"  {label:14s} {r['center']} ({r['accelerator']}) from {start}"
            f": objective {objective} CNY = {terms}; {facts}, {r['latency_ms']:.2f} ms"
            + (f"; lost: {r['lost']}" if r.get("lost") else "")
        )
    return "\n".join(lines)
