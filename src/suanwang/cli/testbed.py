"""``suanwang testbed``: real Slurm clusters on this machine standing in for centers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from suanwang.cli.app import App
from suanwang.cli.options import JsonOption, ScenarioOption
from suanwang.cli.output import fail, out
from suanwang.testbed import slurm

testbed_app = App(
    help="A local multi-center testbed: N real Slurm clusters (slurmctld + slurmd + "
    "slurmrestd each) standing in for centers of a scenario.",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path, typer.Option("--dir", metavar="DIR", help="Directory holding the testbed.")
]
CenterArgument = Annotated[str, typer.Argument(metavar="CENTER", help="a center of the testbed")]


@contextmanager
def _refused() -> Iterator[None]:
    """What the testbed refuses (:class:`slurm.TestbedError`) ends the command, saying why."""
    try:
        yield
    except slurm.TestbedError as exc:
        raise fail(str(exc)) from None


def _load(root: Path) -> slurm.Testbed:
    with _refused():
        return slurm.Testbed.load(root)


def write_platform_config(tb: slurm.Testbed, scenario: str) -> Path:
    """``DIR/platform.yaml``: the scenario and one ``slurm`` executor per cluster, each with
    the testbed's tenants' accounts and their tokens."""
    from suanwang.server.platform_config import (
        CenterConfig,
        PlatformConfig,
        SlurmExecutorConfig,
        dump_platform_config,
    )

    cfg = PlatformConfig(
        scenario=scenario,
        centers=[
            CenterConfig(
                center_id=c.center_id,
                executor=SlurmExecutorConfig(
                    type="slurm",
                    url=c.url,
                    token_file=c.token_file,
                    user=tb.user,
                    partition=slurm.PARTITION,
                    output_dir=c.jobs_dir,
                    accounts=dict(tb.accounts),
                    account_tokens=c.tokens_dir,
                ),
            )
            for c in tb.clusters
        ],
    )
    path = Path(tb.dir) / slurm.PLATFORM_FILE
    path.write_text(dump_platform_config(cfg))
    return path


def _print(tb: slurm.Testbed, as_json: bool) -> None:
    doc = tb.describe()
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    table = Table(title=f"testbed {doc['dir']}")
    for col in ("center", "up", "slurmrestd", "slurm.conf", "cards"):
        table.add_column(col)
    for c in doc["centers"]:
        cards = ", ".join(f"{m}:{n}" for m, n in c["gres"].items())
        table.add_row(c["center_id"], "yes" if c["up"] else "no", c["url"], c["slurm_conf"], cards)
    out.print(table)
    accounts = ", ".join(f"{t} → {a}" for t, a in doc["accounts"].items()) or "none"
    out.print(f"tenants' accounts: {accounts}  (add: suanwang testbed account TENANT --dir DIR)")
    out.print(f"platform config: {doc['config']}  (suanwang serve --config {doc['config']})")


@testbed_app.command("up")
def up_cmd(
    dir: DirOption,
    clusters: Annotated[
        int, typer.Option("--slurm", min=1, max=8, metavar="N", help="Slurm clusters.")
    ] = 2,
    scenario: ScenarioOption = "china",
    centers: Annotated[
        str | None,
        typer.Option(metavar="IDS", help="Comma-separated center ids (default: a west/east mix)."),
    ] = None,
    tenants: Annotated[
        str,
        typer.Option(
            metavar="NAMES",
            help="Comma-separated tenant names: each gets its own Unix account (sw-NAME) and "
            "its jobs run as it; a tenant without one gets no jobs placed on the testbed.",
        ),
    ] = "",
    as_json: JsonOption = False,
) -> None:
    """Start N Slurm clusters under DIR and write DIR/platform.yaml for `suanwang serve`."""
    from suanwang.scenarios.loader import ScenarioError, load_scenario

    try:
        sc = load_scenario(scenario)
    except ScenarioError as exc:
        raise fail(str(exc)) from None
    inventory = {c.id: dict(c.inventory) for c in sc.centers}
    with _refused():
        chosen = (
            [c.strip() for c in centers.split(",") if c.strip()]
            if centers
            else slurm.choose_centers(inventory, clusters)
        )
        if centers and len(chosen) != clusters:
            raise slurm.TestbedError(
                f"--centers names {len(chosen)} centers but --slurm is {clusters}"
            )
        names = [t.strip() for t in tenants.split(",") if t.strip()]
        tb = slurm.up(dir, inventory, chosen, tenants=names)
    scenario_ref = scenario if scenario == "china" else str(Path(scenario).resolve())
    write_platform_config(tb, scenario_ref)
    _print(tb, as_json)


@testbed_app.command("account")
def account_cmd(
    tenants: Annotated[
        list[str], typer.Argument(metavar="TENANT...", help="tenant names (as in `tenants`)")
    ],
    dir: DirOption,
) -> None:
    """Give tenants their own Unix accounts (sw-TENANT) and tokens on every cluster, and add
    them to DIR/platform.yaml (restart `suanwang serve` to use it)."""
    import yaml

    tb = _load(dir)
    with _refused():
        new = slurm.add_tenants(tb, tenants)
    config = Path(tb.dir) / slurm.PLATFORM_FILE
    try:
        scenario = str(yaml.safe_load(config.read_text())["scenario"])
    except (OSError, yaml.YAMLError, TypeError, KeyError):
        scenario = "china"
    write_platform_config(tb, scenario)
    for tenant in tenants:
        what = "new" if tenant in new else "had it already"
        out.print(f"{tenant}: account {tb.accounts[tenant]} ({what})")
    out.print(f"platform config: {config}")


@testbed_app.command("stop")
def stop_cmd(center_id: CenterArgument, dir: DirOption) -> None:
    """Take one center's cluster down as a power cut would (daemons and running jobs)."""
    tb = _load(dir)
    with _refused():
        killed = slurm.stop(tb, center_id)
    out.print(f"{center_id}: stopped ({killed} processes killed)")


@testbed_app.command("start")
def start_cmd(center_id: CenterArgument, dir: DirOption) -> None:
    """Bring one center's cluster back with its saved state."""
    tb = _load(dir)
    with _refused():
        c = slurm.start(tb, center_id)
    out.print(f"{center_id}: up at {c.url}")


@testbed_app.command("status")
def status_cmd(dir: DirOption, as_json: JsonOption = False) -> None:
    """Which clusters are up, where their REST APIs listen."""
    _print(_load(dir), as_json)


@testbed_app.command("down")
def down_cmd(dir: DirOption) -> None:
    """Stop everything the testbed started (files and logs stay in DIR)."""
    tb = _load(dir)
    killed = slurm.down(tb)
    out.print(f"testbed in {tb.dir} is down ({killed} processes killed)")
