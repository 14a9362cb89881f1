"""Every command's --help: it works, says what --json does in the same words everywhere, and
shows what to type rather than Python type names; --version."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from suanwang.cli import app
from suanwang.cli.options import JSON_HELP

runner = CliRunner()
#: What typer shows for an untouched parameter: its Python type (``<str>``, ``<list[str]>``,
#: ``<bool>`` on flags), or click's type names (``TEXT``, ``INTEGER``).
TYPE_NAMES = re.compile(
    r"<(str|int|float|bool|path|class)\b|list\[|dict\[|tuple\[|\b(TEXT|INTEGER|FLOAT|BOOLEAN)\b"
)


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(get_command(app)))


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"simulate", "jobs", "cancel", "logs", "billing quota grant", "ledger verify",
            "tenants centers", "centers drain", "offers publish",
            "testbed up"} <= names  # fmt: skip
    assert len(names) >= 40


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "-" for p, _ in COMMANDS]
)
def test_help_is_readable(path: tuple[str, ...], command: Any) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert not TYPE_NAMES.search(text), text
    words = " ".join(text.replace("│", " ").split())
    for word in re.findall(r"[\w'-]{3,}", command.help or ""):  # nothing taken for markup
        assert word in words, word
    has_json = any("--json" in getattr(p, "opts", ()) for p in command.params)
    assert (JSON_HELP in text) == has_json, text
    assert "Usage: suanwang" in text


def test_version_is_the_installed_packages() -> None:
    for args in (["--version"], ["version"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0
        assert result.stdout == f"{version('suanwang')}\n"
