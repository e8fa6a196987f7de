"""The package's import graph: nothing imports the facade, imports point down the layers, no circles.

The layers, from the bottom (DESIGN.md: cli -> pipeline -> stages -> graph/io): a module may import modules of
its own layer or below, never above. Imports inside functions count too (they are how heavy modules load).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgecnn"

# a module's layer is that of its longest matching prefix
LAYERS = {
    0: ["edgecnn._version", "edgecnn.errors", "edgecnn._tf", "edgecnn.files", "edgecnn.limits", "edgecnn.checks",
        "edgecnn.signals", "edgecnn.lock", "edgecnn.exits", "edgecnn.recipes"],
    1: ["edgecnn.distribute", "edgecnn.io", "edgecnn.graph", "edgecnn.batchnorm", "edgecnn.data", "edgecnn.runtimes",
        "edgecnn.report"],
    2: ["edgecnn.analysis", "edgecnn.surgery", "edgecnn.training", "edgecnn.callbacks", "edgecnn.distill"],
    3: ["edgecnn.exporting", "edgecnn.rewriting", "edgecnn.pruning", "edgecnn.datafree", "edgecnn.benchmarking"],
    4: ["edgecnn.pipeline"],
    5: ["edgecnn.cli"],
}
FACADE = "edgecnn"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str) -> set[str]:
    """Every edgecnn module ``path`` imports (``from X import y`` counts as X, or X.y when that is a module)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    modules = _modules()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "edgecnn")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "edgecnn":
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                found.add(full if full in modules else base)
    return found


def _layer(name: str) -> int:
    best, layer = -1, None
    for rank, prefixes in LAYERS.items():
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), rank
    assert layer is not None, f"{name} is in no layer: add it to LAYERS"
    return layer


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {i for i in _imports(path, name) if i != name} for name, path in modules.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module above the importer's layer."""
    return sorted(f"{name} (layer {_layer(name)}) imports {dep} (layer {_layer(dep)})"
                  for name, deps in graph.items() if name != FACADE
                  for dep in deps if dep != FACADE and _layer(dep) > _layer(name))


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk of ``graph`` closes (each as the path from its first module back to it)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                found.append(stack[stack.index(d):] + [d])
            elif d not in state and d in graph:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def test_every_module_has_a_layer():
    for name in _modules():
        if name != FACADE:
            _layer(name)


def test_nothing_inside_the_package_imports_the_facade():
    assert sorted(name for name, deps in _graph().items() if name != FACADE and FACADE in deps) == []


def test_imports_point_down_the_layers():
    assert upward_imports(_graph()) == []


def test_no_import_circles():
    assert circles({n: d for n, d in _graph().items() if n != FACADE}) == []


def test_the_checks_find_an_upward_import_and_a_circle():
    fake = {"edgecnn.io.load": {"edgecnn.pipeline.stages"}, "edgecnn.pipeline.stages": {"edgecnn.io.load"}}
    assert upward_imports(fake) == ["edgecnn.io.load (layer 1) imports edgecnn.pipeline.stages (layer 4)"]
    assert circles(fake) == [["edgecnn.io.load", "edgecnn.pipeline.stages", "edgecnn.io.load"]]
    assert circles({"edgecnn.a": {"edgecnn.b"}, "edgecnn.b": set()}) == []


def test_the_parser_sees_imports_inside_functions(tmp_path):
    path = PACKAGE / "pipeline" / "stages.py"
    assert "edgecnn.exporting" in _imports(path, "edgecnn.pipeline.stages")  # imported inside quantize()


def test_no_module_much_over_400_lines():
    long = sorted(f"{n}: {len(p.read_text().splitlines())} lines" for n, p in _modules().items()
                  if len(p.read_text().splitlines()) > 450)
    assert long == []
