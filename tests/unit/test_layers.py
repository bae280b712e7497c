"""The package's layers: the public names, and the import arrows between modules.

Arrows point down only: the CLI and the demo (and what serves them: __main__, manpages)
on top, the product (pingkiller.*) below them, the generic binding (pingkiller.bpf) at the
bottom. Imports are read from the source (an AST walk) at any depth: inside functions and
TYPE_CHECKING blocks too, since a cycle hidden there is still a cycle.
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pingkiller"
TOP = {"pingkiller.cli", "pingkiller.demo", "pingkiller.__main__", "pingkiller.manpages"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str) -> set[str]:
    """The modules of the package that ``module`` imports (``from pingkiller import x``
    counts as pingkiller.x when x is a module, else as the package itself)."""
    found = set()
    for node in ast.walk(ast.parse(SOURCES[module].read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in SOURCES
                     else node.module for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in SOURCES and name != module)
    return found


GRAPH = {module: _imports(module) for module in SOURCES}


def _layer(module: str) -> int:
    if module == "pingkiller.bpf" or module.startswith("pingkiller.bpf."):
        return 0
    return 2 if module in TOP else 1


def test_the_walk_sees_the_package():
    assert {"pingkiller", "pingkiller.policy"} <= GRAPH["pingkiller.cli"]
    assert "pingkiller.killer" in GRAPH["pingkiller.declarative"]
    assert "pingkiller.bpf" in GRAPH["pingkiller.killer"]


def test_no_import_cycle_inside_the_package():
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            pytest.fail("import cycle: " + " -> ".join((*path[path.index(module):], module)))
        if module in done:
            return
        for imported in sorted(GRAPH[module]):
            visit(imported, (*path, module))
        done.add(module)

    for module in SOURCES:
        visit(module, ())


def test_arrows_point_down_only():
    """cli/demo -> product -> bpf: nothing imports a layer above its own, and the binding
    imports nothing of the product."""
    upward = sorted(f"{module} -> {imported}" for module, imports in GRAPH.items()
                    for imported in imports if _layer(imported) > _layer(module))
    assert not upward, f"imports pointing up: {upward}"


def test_the_cli_touches_no_binding_object():
    """The CLI parses, calls the library and renders: what it needs of pingkiller.bpf
    (errors, run-time stats, event streams) the product hands it."""
    binding = sorted(i for i in GRAPH["pingkiller.cli"] if _layer(i) == 0)
    assert not binding, f"pingkiller.cli imports {binding}"


def test_star_import_leaves_builtins_alone():
    namespace: dict[str, object] = {}
    exec("from pingkiller import *", namespace)
    shadowed = sorted(name for name in namespace if name != "__builtins__" and hasattr(builtins, name))
    assert not shadowed, f"`from pingkiller import *` replaces builtins: {shadowed}"
    import pingkiller

    assert pingkiller.open is pingkiller.open_attachment  # the attribute stays
