"""``suanwang serve`` (the API, and the services unless ``--no-services``) and
``suanwang worker`` (the dispatcher and reconciler on their own)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from suanwang.cli.app import App
from suanwang.cli.options import DbOption, HostOption, PortOption, ScenarioOption
from suanwang.cli.output import fail
from suanwang.server.settings import DEFAULT_DB_URL, DEFAULT_SCENARIO

if TYPE_CHECKING:
    from suanwang.executors.local import Sandbox, SharedUser
    from suanwang.server.platform_config import PlatformConfig
    from suanwang.server.runner import Services
    from suanwang.server.settings import Settings

ExecutorsDirOption = Annotated[
    Path, typer.Option(metavar="DIR", help="where local executors keep their runs")
]
CenterOption = Annotated[
    list[str] | None,
    typer.Option(metavar="CENTER", help="serve only these centers (repeatable)"),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="platform file: scenario and how each center is reached (e.g. Slurm); "
        "see `suanwang testbed up`",
    ),
]
LostAfterOption = Annotated[
    float,
    typer.Option(
        min=1.0,
        metavar="SECONDS",
        help="seconds a center may not answer before its jobs are failed over elsewhere",
    ),
]
MaxLostRunsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        metavar="N",
        help="runs of a job its center's executor may report lost, while the center answers "
        "(a node failure, Slurm's JobLaunchFailure), before the job fails; the job avoids "
        "those centers meanwhile (default: $SUANWANG_MAX_LOST_RUNS, else 3; losses to a "
        "failover do not count: docs/centers.md)",
    ),
]
LostRunBackoffOption = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        metavar="SECONDS",
        help="after a run lost while its center answered, the job goes back to a center it "
        "lost runs at (when no other can run it) only this long after the loss, doubled for "
        "each further loss, at most 10 minutes (default: $SUANWANG_LOST_RUN_BACKOFF_S, else "
        "30; 0: at once; docs/centers.md)",
    ),
]
JsonLogsOption = Annotated[bool, typer.Option(help="log one JSON object per line")]
UnsafeSharedUserOption = Annotated[
    bool,
    typer.Option(
        "--unsafe-shared-user",
        help="DANGEROUS: run jobs of local executors unsandboxed, as the server's own user: "
        "they can read its files and reach its database. Only where the sandbox cannot run "
        "(not root, no bubblewrap), never for strangers' code (docs/security.md)",
    ),
]
JobAccountOption = Annotated[
    str | None,
    typer.Option(
        metavar="ACCOUNT",
        help="run every job of local executors as this one account (default: one account per "
        "tenant, sw-t-..., created on first use)",
    ),
]
AllowJobNetworkOption = Annotated[
    bool,
    typer.Option(
        "--allow-job-network",
        help="jobs may ask for network (network: true in the spec; else a 422). Such a job "
        "gets an outbound-only network (slirp4netns): no address of this host is reachable "
        "from it; add --deny-job-network for the platform's database or API elsewhere "
        "(docs/security.md)",
    ),
]
DenyJobNetworkOption = Annotated[
    list[str] | None,
    typer.Option(
        "--deny-job-network",
        metavar="CIDR",
        help="an IPv4 network that jobs given network may not reach, besides this host's own "
        "addresses (repeat it: e.g. the database's host, 10.1.2.3/32)",
    ),
]


def sandbox_for(
    unsafe_shared_user: bool,
    job_account: str | None,
    allow_network: bool,
    deny_networks: list[str] | None = None,
) -> Sandbox | SharedUser:
    """How local executors contain jobs, from the command's options."""
    from suanwang.executors.local import Sandbox, SharedUser

    if unsafe_shared_user:
        if job_account is not None:
            raise fail("--job-account and --unsafe-shared-user: choose one")
        return SharedUser()
    try:
        Sandbox(deny_networks=tuple(deny_networks or ()))
    except ValueError as exc:
        raise fail(f"--deny-job-network: {exc}") from None
    try:
        return Sandbox(
            account=job_account,
            allow_network=allow_network,
            deny_networks=tuple(deny_networks or ()),
        )
    except ValueError as exc:
        raise fail(f"--job-account: {exc}") from None


MaxDeferOption = Annotated[
    int,
    typer.Option(
        min=0,
        max=168,
        envvar="SUANWANG_MAX_DEFER_H",
        metavar="HOURS",
        help="how much later than submitted the planner may start deferrable work, for a "
        "cheaper or greener window (0: every job starts as soon as it can)",
    ),
]


def _platform(path: Path | None) -> PlatformConfig | None:
    """The platform file, or ``None``; problems end the command with file:line:field."""
    if path is None:
        return None
    from suanwang.scenarios.loader import ScenarioError
    from suanwang.server.platform_config import load_platform_config

    try:
        return load_platform_config(path)
    except ScenarioError as exc:
        raise fail(str(exc)) from None


def _settings(
    db: str,
    scenario: str,
    config: Path | None,
    allow_job_network: bool = False,
    max_lost_runs: int | None = None,
    lost_run_backoff_s: float | None = None,
) -> tuple[Settings, PlatformConfig | None]:
    """The server's settings and the platform file; the file's scenario wins over
    ``--scenario``, ``--max-lost-runs`` over ``SUANWANG_MAX_LOST_RUNS``,
    ``--lost-run-backoff-s`` over ``SUANWANG_LOST_RUN_BACKOFF_S``; the rest (the rate
    limits, ``SUANWANG_MAX_IN_FLIGHT``) from the environment, as for each of ``--workers``."""
    from suanwang.server.settings import Settings

    platform = _platform(config)
    try:
        from_env = Settings.from_env()
    except ValueError as exc:
        raise fail(str(exc)) from None
    settings = dataclasses.replace(
        from_env,
        db_url=db,
        scenario=platform.scenario if platform else scenario,
        allow_job_network=allow_job_network,
    )
    try:
        if max_lost_runs is not None:
            settings = dataclasses.replace(settings, max_lost_runs=max_lost_runs)
        if lost_run_backoff_s is not None:
            settings = dataclasses.replace(settings, lost_run_backoff_s=lost_run_backoff_s)
    except ValueError as exc:  # (infinity: the option's range lets it through)
        raise fail(str(exc)) from None
    return settings, platform


def _services(
    settings: Settings,
    executors_dir: Path,
    center: list[str] | None,
    platform: PlatformConfig | None,
    lost_after: float,
    max_defer_h: int,
    sandbox: Sandbox | SharedUser,
    *,
    kind: str = "serve",
    dispatch_interval: float = 0.5,
) -> Services:
    """The dispatcher and reconciler, not started yet; a problem ends the command. A
    ``worker`` does not migrate the database: it must have this version's schema."""
    from suanwang.executors.local import SandboxUnavailable
    from suanwang.server.database.session import NotMigrated
    from suanwang.server.runner import build_services

    try:
        return build_services(
            settings,
            executors_dir,
            center,
            platform,
            lost_after_s=lost_after,
            max_defer_h=max_defer_h,
            sandbox=sandbox,
            kind=kind,
            migrate_first=kind != "worker",
            dispatch_interval_s=dispatch_interval,
        )
    except (ValueError, SandboxUnavailable, NotMigrated) as exc:
        raise fail(str(exc)) from None


def serve(
    db: DbOption = DEFAULT_DB_URL,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    scenario: ScenarioOption = DEFAULT_SCENARIO,
    executor: Annotated[
        str, typer.Option(metavar="NAME", help="executor for the centers: local")
    ] = "local",
    executors_dir: ExecutorsDirOption = Path(".suanwang/centers"),
    center: CenterOption = None,
    config: ConfigOption = None,
    lost_after: LostAfterOption = 120.0,
    max_defer_h: MaxDeferOption = 12,
    max_lost_runs: MaxLostRunsOption = None,
    lost_run_backoff_s: LostRunBackoffOption = None,
    services: Annotated[
        bool,
        typer.Option(help="run dispatcher and reconciler in this process (else: suanwang worker)"),
    ] = True,
    json_logs: JsonLogsOption = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="API server processes (more than 1 needs --no-services: run the dispatcher "
            "and reconciler as `suanwang worker`)",
        ),
    ] = 1,
    unsafe_shared_user: UnsafeSharedUserOption = False,
    job_account: JobAccountOption = None,
    allow_job_network: AllowJobNetworkOption = False,
    deny_job_network: DenyJobNetworkOption = None,
) -> None:
    """Run the platform: API, dispatcher and reconciler, with executors for the centers."""
    import uvicorn

    from suanwang.server import logs
    from suanwang.server.app import create_app

    if executor != "local":
        raise fail(f"--executor {executor!r}: only 'local' (or a platform file: --config)")
    # flags first: a refused flag ends the command before logging is set up for a process
    settings, platform = _settings(
        db, scenario, config, allow_job_network, max_lost_runs, lost_run_backoff_s
    )
    settings = dataclasses.replace(settings, heartbeat=True)  # in the cluster's members
    sandbox = sandbox_for(unsafe_shared_user, job_account, allow_job_network, deny_job_network)
    logs.configure(json_lines=json_logs)
    if workers > 1:
        if services:
            raise fail(
                f"--workers {workers} needs --no-services: the dispatcher and reconciler run "
                "once, as `suanwang worker` (same --db and --config)"
            )
        _serve_workers(settings, host, port, workers, json_logs)
        return
    loops = None
    if services:
        loops = _services(
            settings, executors_dir, center, platform, lost_after, max_defer_h, sandbox
        )
        loops.start()
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None)
    finally:
        if loops is not None:
            loops.stop()


def _serve_workers(settings: Settings, host: str, port: int, workers: int, json_logs: bool) -> None:
    """Several API processes on one port (uvicorn's process manager); each builds the app
    from the environment (``SUANWANG_DB``, ``SUANWANG_SCENARIO``)."""
    import uvicorn

    from suanwang.server import logs
    from suanwang.server.database.session import migrate

    migrate(settings.db_url)  # once, before the workers start
    os.environ["SUANWANG_DB"] = settings.db_url
    os.environ["SUANWANG_SCENARIO"] = settings.scenario
    os.environ["SUANWANG_ALLOW_JOB_NETWORK"] = "1" if settings.allow_job_network else ""
    os.environ["SUANWANG_HEARTBEAT"] = "1" if settings.heartbeat else ""
    uvicorn.run(
        "suanwang.server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=logs.dict_config(json_lines=json_logs),
    )


def worker(
    db: DbOption = DEFAULT_DB_URL,
    scenario: ScenarioOption = DEFAULT_SCENARIO,
    executors_dir: ExecutorsDirOption = Path(".suanwang/centers"),
    center: CenterOption = None,
    config: ConfigOption = None,
    lost_after: LostAfterOption = 120.0,
    max_defer_h: MaxDeferOption = 12,
    max_lost_runs: MaxLostRunsOption = None,
    lost_run_backoff_s: LostRunBackoffOption = None,
    json_logs: JsonLogsOption = True,
    unsafe_shared_user: UnsafeSharedUserOption = False,
    job_account: JobAccountOption = None,
    allow_job_network: AllowJobNetworkOption = False,
    deny_job_network: DenyJobNetworkOption = None,
    dispatch_interval: Annotated[
        float,
        typer.Option(
            min=0.05,
            metavar="SECONDS",
            help="seconds between dispatcher rounds when nothing wakes it (on PostgreSQL each "
            "submission wakes the placer at once)",
        ),
    ] = 0.5,
) -> None:
    """Run the dispatcher and reconciler as a separate process (next to serve --no-services).

    Any number of workers may share one PostgreSQL database: one is elected to place jobs
    (and to plan migrations), the others stand by and take over within seconds
    (docs/operations.md, "Replicated control plane"). The database must have been migrated by
    `suanwang serve` of this version first."""
    import signal
    import threading

    from suanwang.server import logs

    # flags first: a refused flag ends the command before logging is set up for a process
    settings, platform = _settings(
        db, scenario, config, allow_job_network, max_lost_runs, lost_run_backoff_s
    )
    sandbox = sandbox_for(unsafe_shared_user, job_account, allow_job_network, deny_job_network)
    logs.configure(json_lines=json_logs)
    loops = _services(
        settings, executors_dir, center, platform, lost_after, max_defer_h, sandbox,
        kind="worker", dispatch_interval=dispatch_interval,
    )  # fmt: skip
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    loops.start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        loops.stop()


def register(app: App) -> None:
    app.command()(serve)
    app.command()(worker)
