"""What every command prints: tables and lines on stdout, errors on stderr, JSON documents."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.text import Text

err = Console(stderr=True)
#: Wide enough for the tables when stdout is a file or a pipe.
out = Console(width=None if sys.stdout.isatty() else 160)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; ``raise`` the result to end the command."""
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    return typer.Exit(code)


def problems(items: list[Any]) -> None:
    """One problem per line on stderr (``file:line: field: message``)."""
    for p in items:
        err.print(str(p), highlight=False, soft_wrap=True, markup=False)


def print_json(doc: Any) -> None:
    """``doc`` as one line of JSON on stdout."""
    sys.stdout.write(json.dumps(doc) + "\n")


def show(doc: Any, as_json: bool, text: RenderableType) -> None:
    """``doc`` as JSON (``--json``), else ``text`` (a line or a table) on stdout."""
    if as_json:
        print_json(doc)
    else:
        out.print(text, highlight=False)
