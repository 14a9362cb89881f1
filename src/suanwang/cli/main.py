"""The ``suanwang`` command line: the root app, every command group registered on it."""

from __future__ import annotations

from typing import Annotated

import typer

from suanwang.cli import keys as _keys  # noqa: F401  (registers ``suanwang tenants keys``)
from suanwang.cli.admin import tenants_app
from suanwang.cli.agent import register as register_agent
from suanwang.cli.app import App
from suanwang.cli.audit import register as register_audit
from suanwang.cli.billing import register as register_billing
from suanwang.cli.centers import centers_app
from suanwang.cli.demo import register as register_demo
from suanwang.cli.jobs import register as register_jobs
from suanwang.cli.output import out
from suanwang.cli.quota import register as register_quota
from suanwang.cli.scenario import scenario_app
from suanwang.cli.serve import register as register_serve
from suanwang.cli.simulate import register as register_simulate
from suanwang.cli.status import register as register_status
from suanwang.cli.sweep import register as register_sweep
from suanwang.cli.testbed import testbed_app
from suanwang.cli.trading import register as register_trading

app = App(
    name="suanwang",
    help="Open platform for a national integrated computing power network (算力网).",
    no_args_is_help=True,
)


def package_version() -> str:
    """The installed package's version (its metadata, as ``pip show suanwang`` reports it)."""
    from importlib.metadata import version

    return version("suanwang")


def _print_version(value: bool) -> None:
    if value:
        out.print(package_version(), highlight=False)
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Open platform for a national integrated computing power network (算力网)."""


@app.command("version")
def version_cmd() -> None:
    """Print the version."""
    out.print(package_version(), highlight=False)


register_demo(app)
register_serve(app)  # serve, worker
register_jobs(app)  # submit, jobs, cancel, logs
register_simulate(app)
register_sweep(app)  # suanwang sweep SWEEP.yaml (issue 17)
app.add_typer(scenario_app, name="scenario")
app.add_typer(tenants_app, name="tenants")
register_billing(app)  # suanwang billing ..., suanwang ledger verify
app.add_typer(testbed_app, name="testbed")
app.add_typer(centers_app, name="centers")
register_trading(app)  # offers, reservations
register_quota(app)  # quota set|show|rm|changes (issue 14)
register_audit(app)  # suanwang audit (issue 15)
register_status(app)  # suanwang status: replicas, workers, leaders (issue 16)
register_agent(app)  # suanwang agent, suanwang agent token create (issue 16)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
