"""No import circles in the package: between modules (function-level and TYPE_CHECKING
imports count) and between its top-level parts (``data``, ``training``, ``evaluate``, ...), so
the data flow reads one way (suites → data → models/losses → agents → training → evaluation →
experiments/reports, the CLI on top)."""

from __future__ import annotations

import ast
from pathlib import Path

import scaledql

ROOT = Path(scaledql.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ("scaledql", *path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module → the package modules it imports. ``from pkg import sub`` is an edge to the
    submodule only (the package's ``__init__`` runs first for every submodule anyway)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] \
                    if node.level else []
                target = ".".join([*base, node.module] if node.module else base)
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
                targets = subs if len(subs) == len(node.names) else [target, *subs]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def _part(module: str, modules: dict[str, Path]) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or modules[module].name == "__init__.py" \
        else module


def test_no_module_imports_itself_through_others():
    assert _circles(_graph(_modules())) == []


def test_no_top_level_part_imports_itself_through_others():
    modules = _modules()
    parts: dict[str, set[str]] = {}
    for module, targets in _graph(modules).items():
        a = _part(module, modules)
        parts.setdefault(a, set()).update(b for t in targets if (b := _part(t, modules)) != a)
    assert _circles(parts) == []


def test_the_checker_sees_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _data_part(module: str) -> str | None:
    """``scaledql.data.<part>`` for a module inside one of ``data``'s parts, else None."""
    parts = module.split(".")
    return ".".join(parts[:3]) if parts[:2] == ["scaledql", "data"] and len(parts) > 3 else None


def test_the_data_package_reads_one_way():
    """Inside ``data``: sampling and importers read and write through the store; the store
    imports neither, and they never import each other (docs/architecture.md)."""
    modules = _modules()
    edges = {(a, b) for module, targets in _graph(modules).items() for t in targets
             if (a := _data_part(module)) and (b := _data_part(t)) and a != b}
    parts = {_data_part(m) for m in modules} - {None}
    assert parts == {"scaledql.data.store", "scaledql.data.sampling", "scaledql.data.importers"}
    assert edges <= {("scaledql.data.sampling", "scaledql.data.store"),
                     ("scaledql.data.importers", "scaledql.data.store")}, edges
