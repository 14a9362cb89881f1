"""Job files: YAML with the fields of ``POST /v1/jobs``, checked locally with line numbers.

A job file holds one job (a mapping) or several (a top-level list of mappings). Every problem
is reported as ``file:line: field: message`` — a YAML syntax error at the line of its marker, a
field the :class:`~suanwang.server.schemas.JobSpec` refuses at the line of that field (or of
its nearest parent that exists), an unknown field with the closest known name. The same
positions serve to place the server's 422 errors (names the scenario does not know, such as
an origin) back in the file: :meth:`JobFile.server_problems`.

Line lookup and the ``file:line: field: message`` form are those of the scenario validator
(:mod:`suanwang.scenarios.loader`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from suanwang.scenarios.loader import (
    Problem,
    ScenarioError,
    _field,
    _line_of,
    check_yaml_bounds,
    duplicate_keys,
)
from suanwang.server.schemas import JobSpec, Resources

Loc = tuple[str | int, ...]
#: Models by the path of their mapping inside a job (to suggest names for unknown fields).
_MODELS: dict[Loc, type[BaseModel]] = {(): JobSpec, ("resources",): Resources}
_SHAPE = "a job file holds one job (a mapping of fields: name, command, ...) or a list of jobs"


class JobFileError(ValueError):
    """Every problem found in a job file (``str()`` gives one ``file:line: ...`` per line)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class JobFile:
    """The jobs of one file, validated, with what is needed to point back into it.

    ``is_list`` tells a file with a top-level list (even of one job) from a single job.
    """

    label: str
    jobs: list[JobSpec]
    is_list: bool
    node: yaml.Node

    def _loc(self, index: int, loc: Loc) -> Loc:
        return (index, *loc) if self.is_list else loc

    def problem(self, index: int, loc: Loc, message: str) -> Problem:
        """A problem of job ``index`` at ``loc`` (a path inside that job)."""
        full = self._loc(index, loc)
        return Problem(self.label, _line_of(self.node, full), _field(full), message)

    def server_problems(self, index: int, detail: Any) -> list[Problem]:
        """The ``detail`` of a 422 answer to job ``index``, placed in the file.

        Body errors (``loc`` starting with ``"body"``) get the line of their field; others
        (a header) name what they concern.
        """
        if not isinstance(detail, list):
            return [self.problem(index, (), str(detail))]
        out = []
        for d in detail:
            if not isinstance(d, Mapping):
                out.append(self.problem(index, (), str(d)))
                continue
            loc = tuple(x for x in d.get("loc", []) if isinstance(x, str | int))
            msg = str(d.get("msg", d))
            if loc[:1] == ("body",):
                out.append(self.problem(index, loc[1:], msg))
            else:
                where = " ".join(str(x) for x in loc)
                out.append(self.problem(index, (), f"{where}: {msg}" if where else msg))
        return out


def load_job_file(path: Path) -> JobFile:
    """Read and check ``path``; raises :class:`JobFileError` (or ``OSError`` if unreadable)."""
    return parse_job_text(path.read_text(encoding="utf-8"), str(path))


def parse_job_text(text: str, label: str) -> JobFile:
    """Parse and check the text of a job file; ``label`` names it in problems."""
    try:
        check_yaml_bounds(text, label)  # no deeper, larger or longer-numbered than any input
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except ScenarioError as exc:
        raise JobFileError(exc.problems) from None
    except yaml.YAMLError as exc:
        raise JobFileError([_syntax_problem(exc, label)]) from None
    if node is None:
        raise JobFileError([Problem(label, None, "", f"empty file: {_SHAPE}")])
    if isinstance(data, Mapping):
        items, is_list = [data], False
    elif isinstance(data, list):
        if not data:
            raise JobFileError(
                [Problem(label, _line_of(node, ()), "", "the list of jobs is empty")]
            )
        items, is_list = data, True
    else:
        msg = f"{_SHAPE}, not {_kind(data)}"
        raise JobFileError([Problem(label, _line_of(node, ()), "", msg)])
    problems: list[Problem] = []
    jobs: list[JobSpec] = []
    for i, item in enumerate(items):
        prefix: Loc = (i,) if is_list else ()
        if not isinstance(item, Mapping):
            msg = f"a job is a mapping of fields (name, command, ...), not {_kind(item)}"
            problems.append(Problem(label, _line_of(node, prefix), _field(prefix), msg))
            continue
        item_node = _node_at(node, prefix)
        problems += [
            Problem(label, line, _field((*prefix, *loc)), msg)
            for loc, line, msg in duplicate_keys(item_node)
        ]
        try:
            jobs.append(JobSpec.model_validate(item))
        except ValidationError as exc:
            for e in exc.errors():
                loc = _as_written(item, tuple(e["loc"]))
                full = (*prefix, *loc)
                problems.append(Problem(label, _line_of(node, full), _field(full), _message(e)))
    if problems:
        raise JobFileError(sorted(problems, key=lambda p: p.line or 0))
    return JobFile(label=label, jobs=jobs, is_list=is_list, node=node)


def _as_written(item: Mapping[str, Any], loc: Loc) -> Loc:
    """A field as the file names it: ``resources.count`` (the old name of ``cards``) where the
    file still uses it."""
    res = item.get("resources")
    old = isinstance(res, Mapping) and "count" in res and "cards" not in res
    return ("resources", "count", *loc[2:]) if old and loc[:2] == ("resources", "cards") else loc


def _kind(value: object) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _syntax_problem(exc: yaml.YAMLError, label: str) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    msg = f"not valid YAML: {problem}" + (f" ({context})" if context else "")
    if "single document" in f"{problem} {context}":
        msg += "; put several jobs in one top-level list instead of separate documents"
    return Problem(label, line, "", msg)


def _node_at(node: yaml.Node, loc: Loc) -> yaml.Node:
    for key in loc:
        if isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            node = node.value[key]
    return node


def _message(error: Mapping[str, Any]) -> str:
    """Pydantic's message, with the closest field name for an unknown one and the bad input."""
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden" and loc:
        model = _MODELS.get(loc[:-1])
        if model is not None:
            names = list(model.model_fields)
            close = difflib.get_close_matches(str(loc[-1]), names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(names)}"
            return f"unknown field ({hint})"
        return "unknown field"
    msg = str(error["msg"])
    value = error.get("input")
    if kind != "missing" and isinstance(value, str | int | float | bool) and loc:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        msg += f" (got {shown})"
    return msg
