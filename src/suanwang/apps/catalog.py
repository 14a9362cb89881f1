"""Packaged applications: parameterised job templates (the app marketplace, issue 6).

An app is a job spec whose fields may name parameters: ``command`` uses ``{name}`` anywhere
(string values are shell-quoted when filled in), numeric fields (``resources.*``,
``duration_s``, ``data_gb``) are a number or a product such as ``"{hours} * 3600"``. Built-in
apps ship in ``builtin.yaml``; providers and operators publish more through ``POST /v1/apps``
(stored in the ``apps`` table). :func:`render` fills the parameters, checking each one, and
returns the body of a ``POST /v1/jobs``.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from suanwang.core.jobs import JobKind

PARAM_NAME = r"^[a-z][a-z0-9_]{0,39}$"
APP_ID = r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$"
#: Default pattern of string parameters: no spaces, quotes or shell syntax needed.
DEFAULT_STRING_PATTERN = r"^[A-Za-z0-9._/:@+-]{1,200}$"
#: Never allowed in text parameters, whatever the app's pattern (commands quote text values,
#: and these could break out of a double-quoted shell word).
UNSAFE_CHARS = frozenset("$`\"'\\")
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]{0,39})\}")
_NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")
#: Largest number a numeric parameter may take (larger ones are no real job's size).
MAX_NUMBER = 1e15

Scalar = int | float | str
Numeric = Annotated[float | str, Field(description="a number or a product: '{gpus} * 8'")]


#: The error type of an app's rules that relate its fields to each other (a parameter's default
#: to its type, range, choices and pattern; min to max; the template's placeholders to the
#: declared parameters; the template to the scenario) and of a run's parameters to the app's
#: declarations. JSON Schema states each field's own rules; these it cannot (they relate
#: values, or depend on the app stored), so the API names them with this type.
APP_RULE = "app"


def _app_error(message: str) -> PydanticCustomError:
    return PydanticCustomError(APP_RULE, message)


class Parameter(BaseModel):
    """One parameter a user fills in."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=PARAM_NAME)
    type: Literal["int", "float", "string", "choice"]
    label: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=500)
    default: Scalar
    min: float | None = Field(None, strict=True)
    max: float | None = Field(None, strict=True)
    choices: list[str] | None = Field(None, min_length=1, max_length=50)
    pattern: str | None = Field(None, max_length=200, description="strings: a full-match regex")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.type == "choice" and not self.choices:
            raise _app_error("a 'choice' parameter needs 'choices'")
        if self.type != "choice" and self.choices is not None:
            raise _app_error("'choices' is only for 'choice' parameters")
        if self.pattern is not None:
            if self.type != "string":
                raise _app_error("'pattern' is only for 'string' parameters")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise _app_error(f"pattern is not a regular expression: {exc}") from None
        if self.min is not None and self.max is not None and self.min > self.max:
            raise _app_error(f"min {self.min} is above max {self.max}")
        problem = check_value(self, self.default)
        if problem is not None:
            raise _app_error(f"default: {problem}")
        return self


class Template(BaseModel):
    """The job an app submits, with ``{parameter}`` placeholders."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: JobKind
    stacks: list[str] = Field(min_length=1, max_length=16)
    # "count": the old name of "cards", still accepted in published apps
    resources: dict[Literal["cpus", "cards", "count", "mem_gb", "accelerator"], Numeric]
    duration_s: Numeric
    command: str = Field(min_length=1, max_length=8000)
    data_gb: Numeric = 0.0
    checkpointable: bool = Field(False, strict=True)


class AppSpec(BaseModel):
    """An app as published (``POST /v1/apps``) or shipped in ``builtin.yaml``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str = Field(pattern=APP_ID, description="lower-case words joined by '-'")
    name: str = Field(min_length=1, max_length=100)
    category: str = Field(min_length=1, max_length=50)
    summary: str = Field(min_length=1, max_length=300)
    description: str = Field("", max_length=4000)
    parameters: list[Parameter] = Field(default_factory=list, max_length=30)
    template: Template

    @model_validator(mode="after")
    def _placeholders_declared(self) -> Self:
        names = [p.name for p in self.parameters]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise _app_error(f"parameter(s) declared twice: {', '.join(twice)}")
        used = set(_PLACEHOLDER.findall(self.template.command))
        for value in [*self.template.resources.values(), self.template.duration_s,
                      self.template.data_gb]:  # fmt: skip
            if isinstance(value, str):
                used |= set(_PLACEHOLDER.findall(value))
        unknown = sorted(used - set(names))
        if unknown:
            raise _app_error(f"template uses undeclared parameter(s): {', '.join(unknown)}")
        return self


class App(BaseModel):
    """An app as the API shows it."""

    id: str
    name: str
    category: str
    summary: str
    description: str
    publisher: str = Field(description="'suanwang' for built-in apps, else the tenant's name")
    builtin: bool
    editable: bool = Field(
        False, description="the requesting tenant may update or delete it (publisher, operators)"
    )
    parameters: list[Parameter]
    template: Template


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the filled-in parameters (``loc`` inside the request body)."""

    loc: tuple[str | int, ...]
    msg: str
    input: Any


class AppError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in problems))
        self.problems = problems


def check_value(param: Parameter, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``param`` (None: it is)."""
    if param.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                return f"must be a whole number (got {value!r})"
    elif param.type == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number (got {value!r})"
        if not math.isfinite(value):
            return f"must be a finite number (got {value!r})"
    elif param.type == "choice":
        assert param.choices is not None
        if value not in param.choices:
            return f"must be one of {', '.join(param.choices)} (got {value!r})"
        return None
    else:
        if not isinstance(value, str):
            return f"must be text (got {value!r})"
        bad = sorted({ch for ch in value if ch in UNSAFE_CHARS or ord(ch) < 32 or ord(ch) == 127})
        if bad:
            return f"may not contain {' '.join(map(repr, bad))} (got {value!r})"
        pattern = param.pattern or DEFAULT_STRING_PATTERN
        if re.fullmatch(pattern, value) is None:
            return f"{value!r} does not match {pattern}"
        return None
    if abs(value) > MAX_NUMBER:
        return f"must be at most {MAX_NUMBER:.0e} in size (got {value})"
    if param.min is not None and value < param.min:
        return f"must be at least {_num(param.min)} (got {value})"
    if param.max is not None and value > param.max:
        return f"must be at most {_num(param.max)} (got {value})"
    return None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _numeric(expr: float | str, values: dict[str, Scalar], field: str) -> float:
    """A numeric template field: a number, or a product of numbers and parameters."""
    if not isinstance(expr, str):
        return float(expr)
    product = 1.0
    for factor in expr.split("*"):
        factor = factor.strip()
        m = _PLACEHOLDER.fullmatch(factor)
        if m is not None:
            v = values[m.group(1)]
            if isinstance(v, str):
                raise AppError([Problem(("template", field), f"{factor} is text", v)])
            product *= float(v)
        elif _NUMBER.match(factor):
            product *= float(factor)
        else:
            msg = f"{expr!r}: use a number, a {{parameter}} or a product of them"
            raise AppError([Problem(("template", field), msg, expr)])
    if not math.isfinite(product) or abs(product) > MAX_NUMBER:
        msg = f"{expr!r} is {product:g}: too large"
        raise AppError([Problem(("template", field), msg, expr)])
    return product


def fill(app: AppSpec | App, given: dict[str, Any]) -> dict[str, Scalar]:
    """Every parameter's value: given (checked) or its default; all problems at once."""
    problems: list[Problem] = []
    known = {p.name: p for p in app.parameters}
    for name in given:
        if name not in known:
            names = ", ".join(known) or "none"
            msg = f"unknown parameter {name!r} (this app takes: {names})"
            problems.append(Problem(("parameters", name), msg, given[name]))
    values: dict[str, Scalar] = {}
    for p in app.parameters:
        value = given.get(p.name, p.default)
        problem = check_value(p, value)
        if problem is not None:
            problems.append(Problem(("parameters", p.name), f"{p.label}: {problem}", value))
        elif p.type == "int":
            values[p.name] = int(value)
        else:
            values[p.name] = value
    if problems:
        raise AppError(problems)
    return values


def render(app: AppSpec | App, given: dict[str, Any]) -> dict[str, Any]:
    """The job spec (without ``name`` and ``origin``) for these parameter values.

    Raises :class:`AppError` naming each parameter that is missing, unknown or out of range.
    """
    values = fill(app, given)
    t = app.template

    def sub(m: re.Match[str]) -> str:
        v = values[m.group(1)]
        return shlex.quote(v) if isinstance(v, str) else _num(float(v))

    res: dict[str, Any] = {}
    for key, expr in t.resources.items():
        if key == "accelerator":
            res[key] = _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), str(expr))
        else:
            x = _numeric(expr, values, f"resources.{key}")
            res[key] = round(x) if key in ("cpus", "cards", "count") else x
    return {
        "command": _PLACEHOLDER.sub(sub, t.command),
        "kind": t.kind.value,
        "stacks": list(t.stacks),
        "resources": res,
        "duration_s": _numeric(t.duration_s, values, "duration_s"),
        "data_gb": _numeric(t.data_gb, values, "data_gb"),
        "checkpointable": t.checkpointable,
    }


@cache
def builtin_apps() -> tuple[App, ...]:
    """The apps shipped with suanwang (``builtin.yaml``), checked once."""
    text = resources.files("suanwang.apps").joinpath("builtin.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    try:
        specs = [AppSpec.model_validate(a) for a in raw]
    except ValidationError as exc:  # a packaging bug, not user input
        raise RuntimeError(f"suanwang/apps/builtin.yaml: {exc}") from None
    return tuple(App(**s.model_dump(), publisher="suanwang", builtin=True) for s in specs)
