"""The layout's rules, read from the source: no import cycles between modules of ``suanwang``,
and the pure layers (core/, scheduling/, billing/) import nothing from the edges (server/,
executors/, cli/, console/) nor a database or web library.

Every import counts, also one inside a function (a lazy import hides a cycle, it does not
remove it); ``if TYPE_CHECKING:`` imports do not run and do not count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PURE = ("core", "scheduling", "billing")
EDGES = ("server", "executors", "cli", "console")
#: Libraries of the edges: the pure layers never touch a database or speak HTTP.
EDGE_LIBRARIES = ("sqlalchemy", "alembic", "fastapi", "starlette", "httpx", "uvicorn")
#: Cycles that another part of issue 13 removes (the CLI modules move into one ``cli/``
#: package); any other cycle fails. Empty this once they are gone.
KNOWN_CYCLES: list[list[str]] = []


def modules(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``src`` (packages by their
    ``__init__``)."""
    out = {}
    for f in sorted(src.rglob("*.py")):
        parts = f.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, skipping the bodies of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def imports(name: str, path: Path, known: dict[str, Path]) -> tuple[set[str], set[str]]:
    """The modules of ``known`` that module ``name`` imports, and the top-level names of the
    other (third-party or standard) modules it imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    ours: set[str] = set()
    others: set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target:
            ours.add(target)

    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in {m.split(".")[0] for m in known}:
                    add(alias.name)
                else:
                    others.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if not node.level and module.split(".")[0] not in {m.split(".")[0] for m in known}:
                others.add(module.split(".")[0])
                continue
            for alias in node.names:  # ``from pkg import module`` imports that module
                full = f"{module}.{alias.name}"
                add(full if full in known else module)
    ours.discard(name)
    return ours, others


def import_graph(src: Path) -> dict[str, set[str]]:
    known = modules(src)
    return {name: imports(name, path, known)[0] for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_import_graph_has_no_cycles() -> None:
    found = cycles(import_graph(SRC))
    new = [c for c in found if c not in KNOWN_CYCLES]
    assert not new, "import cycles: " + "; ".join(" <-> ".join(c) for c in new)


@pytest.mark.parametrize("pure", PURE)
def test_a_pure_layer_imports_nothing_from_the_edges(pure: str) -> None:
    known = modules(SRC)
    wrong = []
    for name, path in known.items():
        if layer(name) != pure:
            continue
        ours, others = imports(name, path, known)
        wrong += [f"{name} imports {m}" for m in sorted(ours) if layer(m) in EDGES]
        wrong += [f"{name} imports {lib}" for lib in sorted(others & set(EDGE_LIBRARIES))]
    assert not wrong, "\n".join(wrong)


def test_the_checks_see_cycles_lazy_imports_and_edge_imports(tmp_path: Path) -> None:
    """The rules above are only as good as the graph: on a made-up package they find a cycle
    through a lazy relative import, an upward import and an edge library, and ignore
    TYPE_CHECKING imports."""
    pkg = tmp_path / "suanwang"
    for d in ("billing", "server"):
        (pkg / d).mkdir(parents=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "billing" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nimport sqlalchemy\nfrom . import b\n"
        "if TYPE_CHECKING:\n    from suanwang.server import c\n"
    )
    (pkg / "billing" / "b.py").write_text("def f():\n    from .a import x\n")
    (pkg / "server" / "c.py").write_text("from suanwang.billing.a import y\n")
    (pkg / "billing" / "d.py").write_text("from suanwang.server import c\n")
    graph = import_graph(tmp_path)
    assert cycles(graph) == [["suanwang.billing.a", "suanwang.billing.b"]]
    assert "suanwang.server.c" not in graph["suanwang.billing.a"]  # TYPE_CHECKING only
    assert graph["suanwang.billing.d"] == {"suanwang.server.c"}
    known = modules(tmp_path)
    assert "sqlalchemy" in imports("suanwang.billing.a", known["suanwang.billing.a"], known)[1]
