"""pingkiller.bpf stands alone: each module importable on its own, and nothing of the
product (pingkiller.* outside bpf) imported by it (tests/unit/test_layers.py checks the
whole package for cycles)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[3] / "pingkiller" / "bpf"
MODULES = sorted(f"pingkiller.bpf.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def _imports(module: str) -> set[str]:
    """Every pingkiller module ``module`` imports, at any depth of its code (functions and
    TYPE_CHECKING blocks included: a cycle hidden there is still a cycle)."""
    tree = ast.parse((PACKAGE / f"{module.rsplit('.', 1)[1]}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pingkiller"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pingkiller"))
    return found


def test_the_binding_imports_nothing_of_the_product():
    """Nothing but the base of the error tree (pingkiller.model.errors, which imports
    nothing), so that every error the package raises is a PingkillerError."""
    for module in MODULES:
        product = {i for i in _imports(module)
                   if not i.startswith("pingkiller.bpf") and i != "pingkiller.model.errors"}
        assert not product, f"{module} imports {product}"


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module):
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, timeout=60)
