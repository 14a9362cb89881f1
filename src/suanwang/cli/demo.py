"""``suanwang demo``: the whole platform on this machine, with a demo tenant and a mix of jobs,
and two tenants with quotas sharing a scarce network, one preempting the other
(:mod:`suanwang.cli.demo_sharing`).

:data:`DEMO_JOBS` is that mix (also the workload of the HTTP benchmark).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from suanwang.cli.app import App
from suanwang.cli.options import HostOption, PortOption
from suanwang.cli.output import fail, out
from suanwang.cli.serve import UnsafeSharedUserOption, sandbox_for

#: Jobs of every kind, as ``POST /v1/jobs`` bodies; their commands run on a laptop (the local
#: executors have no accelerators): they print what they stand for, and one fails.
DEMO_JOBS: list[dict[str, Any]] = [
    {"name": "chatbot-inference", "kind": "inference", "origin": "guangdong",
     "resources": {"cards": 1, "cpus": 8}, "duration_s": 1800, "stacks": ["cuda", "cann"],
     # a model server reports the tokens it served (metered; free trial tokens cover them)
     "command": "for i in 1 2 3; do echo answered batch $i; "
                "echo '{\"tokens\": 4096}' >> \"$SUANWANG_USAGE_FILE\"; sleep 1; done"},
    {"name": "llm-pretrain", "kind": "training", "origin": "beijing",
     "resources": {"cards": 8, "cpus": 64}, "duration_s": 36000, "stacks": ["cuda"],
     "checkpointable": True, "data_gb": 20,
     "command": "for e in 1 2 3 4; do echo epoch $e loss 0.$((9-e)); sleep 1; done"},
    {"name": "llm-finetune-ascend", "kind": "finetune", "origin": "shanghai",
     "resources": {"cards": 4, "cpus": 32}, "duration_s": 7200, "stacks": ["cann"],
     "command": "echo fine-tuning on $SUANWANG_CARDS Ascend cards; sleep 2; echo saved adapter"},
    {"name": "weather-wrf", "kind": "hpc", "origin": "tianjin",
     "resources": {"cards": 16, "cpus": 128}, "duration_s": 14400, "stacks": ["dtk"],
     "command": "echo WRF forecast 72h; sleep 2; echo done"},
    {"name": "film-render", "kind": "render", "origin": "zhejiang",
     "resources": {"cards": 8, "cpus": 32}, "duration_s": 10800, "stacks": ["cuda"],
     "command": "for f in 1 2 3; do echo frame $f rendered; sleep 1; done"},
    {"name": "ecommerce-analytics", "kind": "analytics", "origin": "jiangsu",
     "resources": {"cards": 0, "cpus": 64}, "duration_s": 3600, "stacks": ["cpu"],
     "data_gb": 50, "command": "echo scanning orders; sleep 1; echo 42 anomalies"},
    {"name": "nightly-backup", "kind": "backup", "origin": "shanghai",
     "resources": {"cards": 0, "cpus": 16}, "duration_s": 3600, "stacks": ["cpu"],
     "data_gb": 100, "command": "echo archiving; sleep 1; echo archived"},
    {"name": "notebook", "kind": "interactive", "origin": "beijing",
     "resources": {"cards": 1, "cpus": 8}, "duration_s": 3600, "stacks": ["cuda"],
     "command": "echo jupyter kernel up; sleep 2"},
    {"name": "bad-config", "kind": "finetune", "origin": "sichuan",
     "resources": {"cards": 2, "cpus": 16}, "duration_s": 3600, "stacks": ["cuda"],
     "command": "echo missing dataset >&2; exit 2"},
]  # fmt: skip


def demo(
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    directory: Annotated[
        Path,
        typer.Option("--dir", metavar="DIR", help="where the demo keeps its database and runs"),
    ] = Path(".suanwang/demo"),
    exit_after: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", help="stop after this many seconds (default: run until ^C)"
        ),
    ] = None,
    unsafe_shared_user: UnsafeSharedUserOption = False,
) -> None:
    """Run the whole platform on this machine with a demo tenant and a mix of jobs.

    Starts the API on the `china` scenario at 2% of its capacity, with local executors
    standing in for every center (each offers what its center has), creates an operator
    tenant and submits a realistic mix of jobs; two tenants with quotas share the scarce
    H100s: render-farm fills them, nlp-lab's job preempts one of its shots. Prints the URL,
    the API key, the database (for the tenants, billing and ledger commands) and the job to
    watch.
    """
    import logging
    import secrets
    import signal
    import threading
    import time
    from datetime import UTC, datetime

    import httpx
    import uvicorn

    from suanwang.cli import demo_sharing as scene_
    from suanwang.executors.local import SandboxUnavailable
    from suanwang.scenarios.export import write_scaled
    from suanwang.server import logs
    from suanwang.server.app import create_app
    from suanwang.server.database.models import TenantRole
    from suanwang.server.database.session import make_engine, session_factory
    from suanwang.server.models.tenants import TenantExists, create_tenant, replace_key
    from suanwang.server.runner import build_services
    from suanwang.server.settings import Settings

    logs.configure(logging.WARNING, json_lines=False)
    directory.mkdir(parents=True, exist_ok=True)
    served = directory.resolve() / "scenario"
    write_scaled("china", served, scene_.CAPACITY_SCALE)
    settings = Settings(db_url=f"sqlite:///{directory.resolve() / 'demo.db'}", scenario=str(served))
    sandbox = sandbox_for(unsafe_shared_user, None, allow_network=False)
    try:
        services = build_services(
            settings, directory / "centers", local_like_scenario=True, sandbox=sandbox
        )
    except SandboxUnavailable as exc:
        raise fail(str(exc)) from None
    if unsafe_shared_user:
        out.print(f"[bold red]{sandbox.describe()}[/]")
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise fail(f"the API did not start on {url} (is the port free? try --port)")
        time.sleep(0.1)
    services.start()
    tenant = f"demo-{secrets.token_hex(3)}"
    now = datetime.now(UTC)
    keys: dict[str, str] = {}
    with session_factory(make_engine(settings.db_url))() as session:
        _, key = create_tenant(session=session, name=tenant, role=TenantRole.OPERATOR, now=now)
        for name in scene_.QUOTAS:
            try:
                _, keys[name] = create_tenant(
                    session=session, name=name, role=TenantRole.CONSUMER, now=now
                )
            except TenantExists:  # a demo database used before: the tenant gets a new key
                keys[name] = replace_key(session=session, name=name, now=now)
        session.commit()
    headers = {"Authorization": f"Bearer {key}"}
    try:
        scene_.set_quotas(url, headers)
        scene_.clear(url, list(keys.values()))
        # render-farm's shots take the H100s before the operator's mix may
        scene = scene_.fill(url, headers, keys["render-farm"])
        ids = [scene_.submit(url, key, body) for body in DEMO_JOBS]
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    month = datetime.now(UTC).strftime("%Y-%m")
    out.print(f"suanwang demo running at {url}  (console: {url}/  API docs: {url}/docs)")
    out.print(f"API key (operator): {key}")
    out.print(f"database: {settings.db_url}", highlight=False, soft_wrap=True)
    out.print(
        f"  export SUANWANG_URL={url} SUANWANG_API_KEY={key} SUANWANG_DB={settings.db_url} "
        f"SUANWANG_SCENARIO={served}",
        highlight=False,
        soft_wrap=True,
    )
    out.print("  suanwang jobs; suanwang jobs <id>; suanwang logs <id>; suanwang centers")
    out.print("  suanwang quota show; suanwang quota changes", highlight=False)
    out.print(f"  suanwang billing invoice {tenant} --period {month}", highlight=False)
    out.print(f"submitted {len(ids)} jobs", highlight=False)
    out.print(
        f"sharing a scarce network: china at {scene_.CAPACITY_SCALE:.0%} of its capacity "
        f"({scene_.SCARCE_CARDS} H100s); render-farm's {scene_.SHOTS} render shots of "
        f"{scene_.SHOT_CARDS} H100s, beyond its quota on borrowed capacity, take them all",
        highlight=False,
        soft_wrap=True,
    )
    out.print(scene_.describe(tenant), highlight=False, soft_wrap=True)
    try:
        scene_.preempt(scene, keys["nlp-lab"])
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    _show_deferred(url, headers)
    # Ctrl-C stops the demo even where it was started with SIGINT ignored (a non-interactive
    # shell's background job; a parent in the middle of system(3), whose children inherit
    # SIGINT and SIGQUIT ignored): Python installs its handler only where SIGINT is not ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    out.print("press Ctrl-C to stop", highlight=False)
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
        try:
            fate = scene_.outcome(scene)
        except (httpx.HTTPError, ValueError, KeyError):
            fate = None
        services.stop()
        server.should_exit = True
        thread.join(15)
        if fate is not None:
            out.print(fate, highlight=False)
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


def register(app: App) -> None:
    app.command()(demo)
