"""Options and arguments several commands take, defined once (``Annotated`` aliases).

The database commands (``tenants``, ``billing``, ``ledger``) and the platform (``serve``,
``worker``) find the database in ``--db`` or else ``$SUANWANG_DB`` (``suanwang demo`` prints
its own); the client commands find the API in ``$SUANWANG_URL`` and ``$SUANWANG_API_KEY``.
"""

from __future__ import annotations

from typing import Annotated

import typer

#: The one wording of ``--json`` in every command's help.
JSON_HELP = "print one JSON document on stdout instead of text"

JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="SUANWANG_DB",
        metavar="URL",
        help="database URL, e.g. sqlite:///path/to/file.db (suanwang demo prints its own)",
    ),
]
ScenarioOption = Annotated[
    str,
    typer.Option(
        envvar="SUANWANG_SCENARIO", metavar="NAME|DIR", help="'china' or a scenario directory"
    ),
]
HostOption = Annotated[str, typer.Option(metavar="ADDRESS", help="address to listen on")]
PortOption = Annotated[int, typer.Option(metavar="PORT", help="port to listen on")]
JobArgument = Annotated[
    str,
    typer.Argument(
        metavar="JOB",
        help="the job's id, or the start of it (4 characters or more) that no other job has",
    ),
]
