"""The package's layers: the import table of docs/architecture.md, enforced.

Each module belongs to a layer; it may import modules of its own layer and of the layers
its row names, nothing else (arrows point down). Imports are read from the source (an AST
walk) at any depth: inside functions and TYPE_CHECKING blocks too, since a cycle hidden
there is still a cycle.
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pingkiller"

# Layer -> the layers it may import (besides its own). Top first.
TABLE: dict[str, set[str]] = {
    "entry": {"cli"},  # __main__
    "cli": {"api", "declarative", "exporter", "demo", "doctor", "ops", "model", "system"},
    "api": {"declarative", "ops", "attachment", "datapath", "store", "model", "bpf"},  # __init__
    "declarative": {"api", "ops", "attachment", "model"},
    "exporter": {"api", "ops", "model", "system"},
    "demo": {"api", "ops", "model", "system"},
    "doctor": {"datapath", "store", "system", "abi", "model", "bpf"},
    "ops": {"attachment", "publish", "hooks", "datapath", "store", "system", "abi", "model", "bpf"},
    "attachment": {"publish", "hooks", "datapath", "store", "system", "abi", "model", "bpf"},
    "publish": {"hooks", "datapath", "store", "system", "abi", "model", "bpf"},
    "hooks": {"datapath", "store", "system", "abi", "model", "bpf"},
    "datapath": {"store", "abi", "model", "bpf"},
    "store": {"system", "abi", "model", "bpf"},
    "system": {"model"},
    "abi": {"model"},
    "model": set(),
    "bpf": set(),  # the generic binding; its one tie to the rest: pingkiller.model.errors
}
# Where a module of another layer may reach, one name each (say why).
EXCEPTIONS = {
    ("pingkiller.bpf.errors", "pingkiller.model.errors"),  # every error is a PingkillerError
}
# Imports a cycle may go through: for type checkers only (TYPE_CHECKING), say why.
TYPE_ONLY = {
    ("pingkiller.model.errors", "pingkiller.model.point"),  # an error names its point
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    if module == "pingkiller.__main__":
        return "entry"
    if module in ("pingkiller", "pingkiller._public"):
        return "api"
    part = module.split(".")[1]
    return "datapath" if part == "_datapath" else part


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


def test_every_module_has_a_layer_of_the_table():
    assert {layer(module) for module in SOURCES} == set(TABLE)


def test_the_walk_sees_the_package():
    assert "pingkiller.ops.attach" in GRAPH["pingkiller.cli.attach"] or \
        "pingkiller" in GRAPH["pingkiller.cli.attach"]
    assert "pingkiller.store" in GRAPH["pingkiller.ops.listing"] or \
        "pingkiller.store" in GRAPH["pingkiller.ops.common"]
    assert "pingkiller.bpf" in GRAPH["pingkiller.hooks.xdp"]


def test_no_import_cycle_inside_the_package():
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            pytest.fail("import cycle: " + " -> ".join((*path[path.index(module):], module)))
        if module in done:
            return
        for imported in sorted(GRAPH[module]):
            if (module, imported) not in TYPE_ONLY:
                visit(imported, (*path, module))
        done.add(module)

    for module in SOURCES:
        if layer(module) != "api":  # __init__ names every public module, for type checkers
            visit(module, ())


def test_arrows_point_down_only():
    """Every import goes to the module's own layer or one its row of TABLE names."""
    wrong = sorted(f"{module} -> {imported}" for module, imports in GRAPH.items()
                   for imported in imports
                   if layer(imported) != layer(module)
                   and layer(imported) not in TABLE[layer(module)]
                   and (module, imported) not in EXCEPTIONS
                   and (layer(module), imported) not in EXCEPTIONS)
    assert not wrong, f"imports against the table: {wrong}"


def test_the_model_imports_nothing_compiled():
    """Pure values: a model module imports only other model modules (and the stdlib)."""
    compiled = sorted(f"{module} -> {imported}" for module, imports in GRAPH.items()
                      if layer(module) == "model" for imported in imports
                      if layer(imported) != "model")
    assert not compiled


def test_star_import_leaves_builtins_alone():
    namespace: dict[str, object] = {}
    exec("from pingkiller import *", namespace)
    shadowed = sorted(name for name in namespace if name != "__builtins__" and hasattr(builtins, name))
    assert not shadowed, f"`from pingkiller import *` replaces builtins: {shadowed}"
    import pingkiller

    assert pingkiller.open is pingkiller.open_attachment  # the attribute stays
