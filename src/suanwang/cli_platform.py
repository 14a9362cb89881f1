"""Platform commands: ``serve``, ``demo`` and the API client (``submit``, ``jobs``, ...).

The client reads ``SUANWANG_URL`` (default http://127.0.0.1:8000) and ``SUANWANG_API_KEY``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

err = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 160)

DEFAULT_URL = "http://127.0.0.1:8000"


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {message}", highlight=False, soft_wrap=True, markup=False)
    return typer.Exit(code)


# --------------------------------------------------------------------------- client


def _request(method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    """Call the API; every failure becomes one clear line and exit code 2."""
    import httpx

    url = os.environ.get("SUANWANG_URL", DEFAULT_URL).rstrip("/")
    key = os.environ.get("SUANWANG_API_KEY", "")
    if not key:
        raise _fail("set SUANWANG_API_KEY to your API key (see: suanwang tenants create)")
    try:
        r = httpx.request(
            method,
            url + path,
            headers={"Authorization": f"Bearer {key}", **(headers or {})},
            timeout=30,
            **kw,
        )
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach the server at {url} ({exc})") from None
    if r.status_code == 401:
        raise _fail(f"the server at {url} refused the API key in SUANWANG_API_KEY")
    if r.status_code >= 400:
        try:
            detail: Any = r.json().get("detail")
        except ValueError:
            detail = r.text
        if isinstance(detail, list):
            detail = "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail
            )
        raise _fail(f"{r.status_code} {detail}")
    if r.headers.get("content-type", "").startswith("application/json"):
        return r.json()
    return r.text


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
    job_file: Annotated[Path, typer.Argument(help="job YAML (same fields as POST /v1/jobs)")],
    idempotency_key: Annotated[
        str | None, typer.Option(help="retry-safe key: the same key never makes a second job")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Submit a job file."""
    try:
        body = yaml.safe_load(job_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(f"cannot read {job_file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise _fail(f"{job_file} is not valid YAML: {exc}") from None
    if not isinstance(body, dict):
        raise _fail(f"{job_file}: a job file is a mapping of fields (name, command, ...)")
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    job = _request("POST", "/v1/jobs", headers=headers, json=body)
    if as_json:
        sys.stdout.write(json.dumps(job) + "\n")
    else:
        out.print(f"submitted {job['id']} ({job['state']})")


def jobs(
    job_id: Annotated[str | None, typer.Argument(help="one job (default: list)")] = None,
    state: Annotated[str | None, typer.Option(help="only jobs in this state")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List your jobs, or show one with its placement explanation."""
    if job_id:
        job = _request("GET", f"/v1/jobs/{job_id}")
        if as_json:
            sys.stdout.write(json.dumps(job) + "\n")
            return
        out.print(_jobs_table([job]))
        decision = job.get("decision")
        if decision:
            out.print(f"placement: {decision.get('reason', '')}")
            for label, row in [("chosen", decision.get("chosen"))] + [
                ("runner-up", r) for r in decision.get("runners_up", [])
            ]:
                if row:
                    out.print(
                        f"  {label:9s} {row['center']:20s} {row['accelerator']:12s} "
                        f"cost {row['cost_cny']:.4f} CNY  energy {row['energy_kwh']:.3f} kWh  "
                        f"latency {row['latency_ms']:.2f} ms"
                    )
        return
    params = {"state": state} if state else None
    page = _request("GET", "/v1/jobs", params=params)
    if as_json:
        sys.stdout.write(json.dumps(page) + "\n")
    else:
        out.print(_jobs_table(page["items"]))


def cancel(
    job_id: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Cancel a job."""
    job = _request("POST", f"/v1/jobs/{job_id}/cancel")
    if as_json:
        sys.stdout.write(json.dumps(job) + "\n")
    else:
        out.print(f"{job['id']}: {job['state']}")


def logs(
    job_id: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print a job's output."""
    text = _request("GET", f"/v1/jobs/{job_id}/logs")
    if as_json:
        sys.stdout.write(json.dumps({"job_id": job_id, "logs": text}) + "\n")
    else:
        sys.stdout.write(text if isinstance(text, str) else json.dumps(text))


def centers(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The network now: capacity, use, price, green share per center."""
    data = _request("GET", "/v1/centers")
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
        return
    table = Table(title=f"{data.get('scenario', '')}: centers now")
    for col in (
        "center",
        "hub",
        "cards used",
        "cards",
        "CPU",
        "CNY/kWh",
        "green",
        "gCO2/kWh",
        "PUE",
    ):
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


# --------------------------------------------------------------------------- server


def serve(
    db: Annotated[str, typer.Option(envvar="SUANWANG_DB_URL", help="database URL")] = (
        "sqlite:///suanwang.db"
    ),
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    scenario: Annotated[str, typer.Option(help="'china' or a scenario directory")] = "china",
    executor: Annotated[str, typer.Option(help="executor for the centers: local")] = "local",
    executors_dir: Annotated[
        Path, typer.Option(help="where local executors keep their runs")
    ] = Path(".suanwang/centers"),
    center: Annotated[
        list[str] | None, typer.Option(help="serve only these centers (repeatable)")
    ] = None,
) -> None:
    """Run the platform: API, dispatcher and reconciler, with executors for the centers."""
    import logging

    import uvicorn

    from suanwang.server.app import create_app
    from suanwang.server.runner import build_services
    from suanwang.server.settings import Settings

    if executor != "local":
        raise _fail(f"--executor {executor!r}: only 'local' is available so far")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings(db_url=db, scenario=scenario)
    try:
        services = build_services(settings, executors_dir, center)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    services.start()
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    finally:
        services.stop()


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(submit)
    app.command()(jobs)
    app.command()(cancel)
    app.command()(logs)
    app.command()(centers)
