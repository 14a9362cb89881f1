"""Fixtures for the command line's tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from suanwang.cli import app


@pytest.fixture
def invoke() -> Callable[..., tuple[int, str, str]]:
    """``invoke("simulate", "--json", ...)``: the exit code, stdout and stderr of a command."""
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.stdout, result.stderr

    return run
