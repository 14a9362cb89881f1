"""The Typer app every ``suanwang`` command group is made of: help that shows what to type.

Typer shows each parameter's Python type in the help (``<str>``, ``<list[str]>``, ``<bool>``
on every flag). Here a flag shows nothing after its name, an argument only its name, and an
option with a value its ``metavar`` (``URL``, ``N``, ...), or its name in capitals if it has
none; an option with choices keeps them (``<consumer|provider|operator>``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.models import CommandFunctionType


def _no_type(ctx: Any) -> None:
    return None


def readable(param: Any) -> Any:
    """``param`` shown as a user types it (see the module's docstring); returns it."""
    if getattr(param, "is_flag", False):
        param.metavar = ""
    elif param.param_type_name == "argument":
        param.metavar = param.metavar or param.name.upper()
        setattr(param, "display_type_rich", _no_type)  # noqa: B010 (an instance's own method)
    elif param.metavar is None and not getattr(param.type_descriptor, "is_choice", False):
        param.metavar = param.name.upper()
    return param


class Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return [readable(p) for p in super().get_params(ctx)]


class Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return [readable(p) for p in super().get_params(ctx)]


class App(typer.Typer):
    """A :class:`typer.Typer` whose groups and commands print readable help."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("add_completion", False)
        kwargs.setdefault("pretty_exceptions_enable", False)
        super().__init__(cls=Group, **kwargs)

    def command(
        self, name: str | None = None, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        return super().command(name, cls=Command, **kwargs)
