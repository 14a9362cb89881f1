"""``suanwang agent``: run a center's agent (docs/centers.md, "Agents"), and ``suanwang agent
token create``: make the token an agent authenticates with (on the platform's database).

The agent connects out to the control plane's API only (``--url``: every API replica's address,
the option repeated or the addresses separated by commas; it syncs with one and moves to the
next when that one is down, :mod:`suanwang.agent.replicas`), with its center's token
(``--token-file``), and drives the center's own executor, described in ``--config`` (the same
entry as a platform file's ``local`` or ``slurm`` executor). It ends with exit code 2 when the
control plane refuses it (a wrong token, another center's, an incompatible version).
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from suanwang.cli.admin import _known_centers, _session, audit
from suanwang.cli.app import App
from suanwang.cli.options import DbOption, JsonOption, ScenarioOption
from suanwang.cli.output import fail, print_json
from suanwang.cli.serve import JsonLogsOption, UnsafeSharedUserOption, sandbox_for
from suanwang.server.settings import DEFAULT_DB_URL, DEFAULT_SCENARIO

agent_app = App(
    help="Run a center's agent (connects out to the control plane), or make its token.",
    invoke_without_command=True,
)
token_app = App(help="Agent tokens (one per center; shown once, stored hashed).")
agent_app.add_typer(token_app, name="token")

CenterOption = Annotated[
    str | None, typer.Option("--center", metavar="ID", help="the center this agent serves")
]


@agent_app.callback()
def agent(
    ctx: typer.Context,
    center: CenterOption = None,
    url: Annotated[
        list[str] | None,
        typer.Option(
            metavar="URL",
            help="the control plane's API, e.g. https://...: give every API replica's address "
            "(repeat --url, or separate them with commas); the agent syncs with one and moves "
            "to the next when that one is down",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="a file holding the center's agent token"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="the agent's file: the center's own executor"),
    ] = None,
    every: Annotated[
        float, typer.Option(min=0.05, max=3600, metavar="SECONDS", help="seconds between syncs")
    ] = 1.0,
    unsafe_shared_user: UnsafeSharedUserOption = False,
    json_logs: JsonLogsOption = True,
) -> None:
    """Run the agent of a center: every --every seconds poll the center's executor, sync with
    the control plane at --url (one of its API replicas) and do what it answers (start, cancel,
    checkpoint runs)."""
    if ctx.invoked_subcommand is not None:
        return
    missing = [
        name
        for name, value in (
            ("--center", center),
            ("--url", url),
            ("--token-file", token_file),
            ("--config", config),
        )
        if value is None
    ]
    if missing:
        raise fail(f"suanwang agent needs {', '.join(missing)} (see suanwang agent --help)")
    assert center is not None and url is not None and token_file is not None
    assert config is not None
    urls = control_plane_urls(url)
    _run(center, urls, token_file, config, every, unsafe_shared_user, json_logs)


def control_plane_urls(values: list[str]) -> list[str]:
    """The API replicas' addresses given as ``--url`` (repeated, or separated by commas), in
    their order; refuses an address that is not ``http(s)://host...`` and one given twice."""
    import httpx

    urls: dict[str, str] = {}  # the address as compared (host in lower case, no "/" at the end)
    for value in values:
        for url in value.split(","):
            url = url.strip()
            named = f"--url {url!r}" + (f" (in {value!r})" if url != value else "")
            try:
                parsed = httpx.URL(url)
            except httpx.InvalidURL:
                parsed = httpx.URL()
            if parsed.scheme not in ("http", "https") or not parsed.host or " " in url:
                raise fail(f"{named}: give the control plane's address, http://... or https://...")
            key = str(parsed).rstrip("/")
            if key in urls:
                raise fail(
                    f"{named}: the same address as {urls[key]!r}: give each API replica's "
                    "address once"
                )
            urls[key] = url
    return list(urls.values())


def _run(
    center: str,
    urls: list[str],
    token_file: Path,
    config: Path,
    every: float,
    unsafe_shared_user: bool,
    json_logs: bool,
) -> None:
    from suanwang.agent.loop import Agent
    from suanwang.agent.replicas import Refused, client_for
    from suanwang.executors.local import SandboxUnavailable
    from suanwang.scenarios.loader import ScenarioError
    from suanwang.server import logs
    from suanwang.server.agents.tokens import CENTER_PATTERN
    from suanwang.server.platform_config import load_agent_config
    from suanwang.server.runner import executor_for

    if not CENTER_PATTERN.fullmatch(center):
        raise fail(f"--center {center!r}: use letters, digits, '_', '.', '-'")
    try:
        token = token_file.read_text().strip()
    except OSError as exc:
        raise fail(f"--token-file {token_file}: cannot read it: {exc.strerror}") from None
    if not token:
        raise fail(f"--token-file {token_file}: it is empty")
    try:
        cfg = load_agent_config(config)
    except ScenarioError as exc:
        raise fail(str(exc)) from None
    logs.configure(json_lines=json_logs)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    sandbox = sandbox_for(unsafe_shared_user, None, False)
    try:
        executor = executor_for(center, cfg.executor, work / "runs", sandbox=sandbox)
        clients = [client_for(url, token) for url in urls]
        agent = Agent(center, executor, clients, work / "agent-state.json", every_s=every)
    except (ValueError, SandboxUnavailable) as exc:
        raise fail(str(exc)) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        agent.run(stop)
    except Refused as exc:
        raise fail(str(exc)) from None


@token_app.command("create")
def token_create(
    center: Annotated[str, typer.Option("--center", metavar="ID", help="the agent's center")],
    db: DbOption = DEFAULT_DB_URL,
    scenario: ScenarioOption = DEFAULT_SCENARIO,
    as_json: JsonOption = False,
) -> None:
    """Make the agent token of a center and print it (shown this once; only its hash is
    stored). An earlier token of that center stops working."""
    from suanwang.server.agents.tokens import issue_token

    if center not in _known_centers(scenario):
        raise fail(f"--center {center!r}: no such center in scenario {scenario!r}")
    with _session(db) as session:
        try:
            token = issue_token(session, center, datetime.now(UTC))
        except ValueError as exc:
            raise fail(f"--center: {exc}") from None
        audit(session, "agent.token.create", f"center:{center}", center=center)
        session.commit()
    if as_json:
        print_json({"center": center, "token": token})
        return
    typer.echo(f"agent token of center {center} (shown once, store it now): {token}")


def register(app: App) -> None:
    app.add_typer(agent_app, name="agent")
