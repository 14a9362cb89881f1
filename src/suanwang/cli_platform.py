"""Platform commands: ``serve``, ``demo`` and the API client (``submit``, ``jobs``, ...).

The client reads ``SUANWANG_URL`` (default http://127.0.0.1:8000) and ``SUANWANG_API_KEY``.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from suanwang.server.platform_config import PlatformConfig

err = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 160)

DEFAULT_URL = "http://127.0.0.1:8000"


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {message}", highlight=False, soft_wrap=True, markup=False)
    return typer.Exit(code)


# --------------------------------------------------------------------------- client


def _send(method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    """Call the API and return the response; no server or a refused key ends with exit 2."""
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
    return r


def _detail(r: Any) -> Any:
    try:
        return r.json().get("detail")
    except (ValueError, AttributeError):
        return r.text


def _body(r: Any) -> Any:
    if r.headers.get("content-type", "").startswith("application/json"):
        return r.json()
    return r.text


def _request(method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    """Call the API; every failure becomes one clear line and exit code 2."""
    r = _send(method, path, headers, **kw)
    if r.status_code >= 400:
        detail = _detail(r)
        if isinstance(detail, list):
            detail = "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail
            )
        raise _fail(f"{r.status_code} {detail}")
    return _body(r)


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


def _problems(problems: list[Any]) -> None:
    for p in problems:
        err.print(str(p), highlight=False, soft_wrap=True, markup=False)


def submit(
    job_file: Annotated[
        Path, typer.Argument(help="job YAML: one job or a list (same fields as POST /v1/jobs)")
    ],
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            help="retry-safe key: the same key never makes a second job "
            "(a list file uses KEY-1, KEY-2, ... for its jobs)"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Submit a job file: one job, or a top-level list of jobs (submitted in order).

    The file is checked before anything is sent; every problem is shown as
    file:line: field: message and nothing is submitted. If the server refuses a job of a
    list, the jobs before it stay submitted (shown), the rest are not sent; with
    --idempotency-key, running the same command again submits only what is missing.
    """
    from suanwang.jobfile import JobFileError, load_job_file

    try:
        jf = load_job_file(job_file)
    except OSError as exc:
        raise _fail(f"cannot read {job_file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise _fail(f"cannot read {job_file}: not UTF-8 text ({exc.reason})") from None
    except JobFileError as exc:
        _problems(exc.problems)
        raise _fail(f"{job_file} has {len(exc.problems)} problem(s); nothing submitted") from None
    done: list[dict[str, Any]] = []

    def report() -> None:
        if as_json:
            doc: Any = done if jf.is_list else (done[0] if done else None)
            if doc is not None:
                sys.stdout.write(json.dumps(doc) + "\n")
            return
        for job in done:
            out.print(f"submitted {job['id']} {job['name']} ({job['state']})", highlight=False)

    for i, spec in enumerate(jf.jobs):
        headers = None
        if idempotency_key:
            key = f"{idempotency_key}-{i + 1}" if jf.is_list else idempotency_key
            headers = {"Idempotency-Key": key}
        r = _send("POST", "/v1/jobs", headers=headers, json=spec.model_dump(mode="json"))
        if r.status_code >= 400:
            report()
            which = f"job {i + 1} of {len(jf.jobs)}" if jf.is_list else "the job"
            if r.status_code == 422:
                _problems(jf.server_problems(i, _detail(r)))
                message = f"{job_file}: the server refused {which}"
            else:
                message = f"{job_file}: {which}: {r.status_code} {_detail(r)}"
            if done:
                message += f" ({len(done)} job(s) before it submitted)"
            raise _fail(message)
        done.append(_body(r))
    report()


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


centers_app = typer.Typer(
    help="The network now (no subcommand), or drain / undrain a center (operators).",
    invoke_without_command=True,
)


@centers_app.command("drain")
def drain_center(
    center_id: str,
    reason: Annotated[str, typer.Option(help="why (shown with the center)")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """No new jobs on CENTER_ID; its running checkpointable jobs move away, others finish."""
    data = _request("POST", f"/v1/centers/{center_id}/drain", json={"reason": reason})
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        out.print(f"{center_id}: drained" + (f" ({reason})" if reason else ""))


@centers_app.command("undrain")
def undrain_center(
    center_id: str, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Open a drained center to new jobs again."""
    data = _request("POST", f"/v1/centers/{center_id}/undrain")
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        out.print(f"{center_id}: open to new jobs")


@centers_app.callback()
def centers(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The network now: capacity, use, price, green share per center."""
    if ctx.invoked_subcommand is not None:
        return
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


DbOpt = Annotated[str, typer.Option(envvar="SUANWANG_DB_URL", help="database URL")]
ScenarioOpt = Annotated[str, typer.Option(help="'china' or a scenario directory")]
ExecutorsDirOpt = Annotated[Path, typer.Option(help="where local executors keep their runs")]
CenterOpt = Annotated[list[str] | None, typer.Option(help="serve only these centers (repeatable)")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        help="platform file: scenario and how each center is reached (e.g. Slurm); "
        "see `suanwang testbed up`"
    ),
]
LostAfterOpt = Annotated[
    float,
    typer.Option(
        min=1.0, help="seconds a center may not answer before its jobs are failed over elsewhere"
    ),
]
JsonLogsOpt = Annotated[bool, typer.Option(help="log one JSON object per line")]


def _platform(path: Path | None) -> PlatformConfig | None:
    """The platform file, or ``None``; problems end the command with file:line:field."""
    if path is None:
        return None
    from suanwang.scenarios.loader import ScenarioError
    from suanwang.server.platform_config import load_platform_config

    try:
        return load_platform_config(path)
    except ScenarioError as exc:
        raise _fail(str(exc)) from None


def serve(
    db: DbOpt = "sqlite:///suanwang.db",
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    scenario: ScenarioOpt = "china",
    executor: Annotated[str, typer.Option(help="executor for the centers: local")] = "local",
    executors_dir: ExecutorsDirOpt = Path(".suanwang/centers"),
    center: CenterOpt = None,
    config: ConfigOpt = None,
    lost_after: LostAfterOpt = 120.0,
    services: Annotated[
        bool,
        typer.Option(help="run dispatcher and reconciler in this process (else: suanwang worker)"),
    ] = True,
    json_logs: JsonLogsOpt = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="API server processes (more than 1 needs --no-services: run the dispatcher "
            "and reconciler as `suanwang worker`)",
        ),
    ] = 1,
) -> None:
    """Run the platform: API, dispatcher and reconciler, with executors for the centers."""
    import uvicorn

    from suanwang.server import logs
    from suanwang.server.app import create_app
    from suanwang.server.runner import build_services
    from suanwang.server.settings import Settings

    if executor != "local":
        raise _fail(f"--executor {executor!r}: only 'local' (or a platform file: --config)")
    logs.configure(json_lines=json_logs)
    platform = _platform(config)
    settings = Settings(db_url=db, scenario=platform.scenario if platform else scenario)
    if workers > 1:
        if services:
            raise _fail(
                f"--workers {workers} needs --no-services: the dispatcher and reconciler run "
                "once, as `suanwang worker` (same --db and --config)"
            )
        _serve_workers(settings, host, port, workers, json_logs)
        return
    loops = None
    if services:
        try:
            loops = build_services(
                settings, executors_dir, center, platform, lost_after_s=lost_after
            )
        except ValueError as exc:
            raise _fail(str(exc)) from None
        loops.start()
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None)
    finally:
        if loops is not None:
            loops.stop()


def _serve_workers(settings: Any, host: str, port: int, workers: int, json_logs: bool) -> None:
    """Several API processes on one port (uvicorn's process manager); each builds the app
    from the environment (``SUANWANG_DB_URL``, ``SUANWANG_SCENARIO``)."""
    import uvicorn

    from suanwang.server import logs
    from suanwang.server.database.session import migrate

    migrate(settings.db_url)  # once, before the workers start
    os.environ["SUANWANG_DB_URL"] = settings.db_url
    os.environ["SUANWANG_SCENARIO"] = settings.scenario
    uvicorn.run(
        "suanwang.server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=logs.dict_config(json_lines=json_logs),
    )


def worker(
    db: DbOpt = "sqlite:///suanwang.db",
    scenario: ScenarioOpt = "china",
    executors_dir: ExecutorsDirOpt = Path(".suanwang/centers"),
    center: CenterOpt = None,
    config: ConfigOpt = None,
    lost_after: LostAfterOpt = 120.0,
    json_logs: JsonLogsOpt = True,
) -> None:
    """Run the dispatcher and reconciler as a separate process (next to serve --no-services)."""
    import signal
    import threading

    from suanwang.server import logs
    from suanwang.server.runner import build_services
    from suanwang.server.settings import Settings

    logs.configure(json_lines=json_logs)
    try:
        platform = _platform(config)
        settings = Settings(db_url=db, scenario=platform.scenario if platform else scenario)
        loops = build_services(settings, executors_dir, center, platform, lost_after_s=lost_after)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    loops.start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        loops.stop()


DEMO_JOBS: list[dict[str, Any]] = [
    {"name": "chatbot-inference", "kind": "inference", "origin": "guangdong",
     "resources": {"count": 1, "cpus": 8}, "duration_s": 1800, "stacks": ["cuda", "cann"],
     # a model server reports the tokens it served (metered; free trial tokens cover them)
     "command": "for i in 1 2 3; do echo answered batch $i; "
                "echo '{\"tokens\": 4096}' >> \"$SUANWANG_USAGE_FILE\"; sleep 1; done"},
    {"name": "llm-pretrain", "kind": "training", "origin": "beijing",
     "resources": {"count": 8, "cpus": 64}, "duration_s": 36000, "stacks": ["cuda"],
     "checkpointable": True, "data_gb": 20,
     "command": "for e in 1 2 3 4; do echo epoch $e loss 0.$((9-e)); sleep 1; done"},
    {"name": "llm-finetune-ascend", "kind": "finetune", "origin": "shanghai",
     "resources": {"count": 4, "cpus": 32}, "duration_s": 7200, "stacks": ["cann"],
     "command": "echo fine-tuning on $SUANWANG_CARDS Ascend cards; sleep 2; echo saved adapter"},
    {"name": "weather-wrf", "kind": "hpc", "origin": "tianjin",
     "resources": {"count": 16, "cpus": 128}, "duration_s": 14400, "stacks": ["dtk"],
     "command": "echo WRF forecast 72h; sleep 2; echo done"},
    {"name": "film-render", "kind": "render", "origin": "zhejiang",
     "resources": {"count": 8, "cpus": 32}, "duration_s": 10800, "stacks": ["cuda"],
     "command": "for f in 1 2 3; do echo frame $f rendered; sleep 1; done"},
    {"name": "ecommerce-analytics", "kind": "analytics", "origin": "jiangsu",
     "resources": {"count": 0, "cpus": 64}, "duration_s": 3600, "stacks": ["cpu"],
     "data_gb": 50, "command": "echo scanning orders; sleep 1; echo 42 anomalies"},
    {"name": "nightly-backup", "kind": "backup", "origin": "shanghai",
     "resources": {"count": 0, "cpus": 16}, "duration_s": 3600, "stacks": ["cpu"],
     "data_gb": 100, "command": "echo archiving; sleep 1; echo archived"},
    {"name": "notebook", "kind": "interactive", "origin": "beijing",
     "resources": {"count": 1, "cpus": 8}, "duration_s": 3600, "stacks": ["cuda"],
     "command": "echo jupyter kernel up; sleep 2"},
    {"name": "bad-config", "kind": "finetune", "origin": "sichuan",
     "resources": {"count": 2, "cpus": 16}, "duration_s": 3600, "stacks": ["cuda"],
     "command": "echo missing dataset >&2; exit 2"},
]  # fmt: skip


def demo(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    directory: Annotated[
        Path, typer.Option("--dir", help="where the demo keeps its database and runs")
    ] = Path(".suanwang/demo"),
    exit_after: Annotated[
        float | None, typer.Option(help="stop after this many seconds (default: run until ^C)")
    ] = None,
) -> None:
    """Run the whole platform on this machine with a demo tenant and a mix of jobs.

    Starts the API on the `china` scenario with local executors standing in for every center,
    creates a tenant, submits a realistic mix of jobs and prints the URL and API key.
    """
    import logging
    import secrets
    import threading
    import time

    import httpx
    import uvicorn

    from suanwang.server import logs
    from suanwang.server.app import create_app
    from suanwang.server.database.models import TenantRole
    from suanwang.server.database.session import make_engine, session_factory
    from suanwang.server.models.tenants import create_tenant
    from suanwang.server.runner import build_services
    from suanwang.server.settings import Settings

    logs.configure(logging.WARNING, json_lines=False)
    directory.mkdir(parents=True, exist_ok=True)
    settings = Settings(db_url=f"sqlite:///{directory.resolve() / 'demo.db'}")
    services = build_services(settings, directory / "centers")
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise _fail(f"the API did not start on {url} (is the port free? try --port)")
        time.sleep(0.1)
    services.start()
    with session_factory(make_engine(settings.db_url))() as session:
        _, key = create_tenant(
            session=session,
            name=f"demo-{secrets.token_hex(3)}",
            role=TenantRole.OPERATOR,
            now=datetime.now(UTC),
        )
        session.commit()
    headers = {"Authorization": f"Bearer {key}"}
    ids = []
    for body in DEMO_JOBS:
        r = httpx.post(f"{url}/v1/jobs", json=body, headers=headers, timeout=30)
        if r.status_code != 201:
            raise _fail(f"demo job {body['name']} refused: {r.status_code} {r.text}")
        ids.append(r.json()["id"])
    out.print(f"suanwang demo running at {url}  (console: {url}/  API docs: {url}/docs)")
    out.print(f"API key (operator): {key}")
    out.print(f"  export SUANWANG_URL={url} SUANWANG_API_KEY={key}")
    out.print("  suanwang jobs; suanwang jobs <id>; suanwang logs <id>; suanwang centers")
    out.print(f"submitted {len(ids)} jobs; press Ctrl-C to stop", highlight=False)
    _show_deferred(url, headers)
    start = time.monotonic()
    try:
        while exit_after is None or time.monotonic() - start < exit_after:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        states: dict[str, int] = {}
        try:
            page = httpx.get(f"{url}/v1/jobs", headers=headers, timeout=10).json()
            for j in page["items"]:
                states[j["state"]] = states.get(j["state"], 0) + 1
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        services.stop()
        server.should_exit = True
        thread.join(15)
        summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        out.print(f"stopped; jobs: {summary}")


def _show_deferred(url: str, headers: dict[str, str], wait_s: float = 15.0) -> None:
    """Once the demo jobs are placed, name those planned for a later, cheaper/greener hour."""
    import time

    import httpx

    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            pending = httpx.get(
                f"{url}/v1/jobs", params={"state": "pending"}, headers=headers, timeout=10
            ).json()["items"]
            if not pending:
                break
            time.sleep(0.2)
        page = httpx.get(
            f"{url}/v1/jobs", params={"state": "scheduled"}, headers=headers, timeout=10
        ).json()
    except (httpx.HTTPError, ValueError, KeyError):
        return
    for j in page["items"]:
        decision = j.get("decision") or {}
        if decision.get("deferred_h", 0) > 0:
            out.print(
                f"  {j['name']}: starts {(j.get('start_at') or '')[:16]} UTC on {j['center_id']}"
                f" — {decision.get('reason', '')}",
                highlight=False,
                soft_wrap=True,
            )


def register(app: typer.Typer) -> None:
    app.command()(demo)
    app.command()(serve)
    app.command()(worker)
    app.command()(submit)
    app.command()(jobs)
    app.command()(cancel)
    app.command()(logs)
    app.add_typer(centers_app, name="centers")
    from suanwang.trading_cli import register as register_trading  # offers, reservations

    register_trading(app)
