"""The public names of ``pingkiller``, read from the ``if TYPE_CHECKING:`` block of its
``__init__.py`` (where type checkers see them): name -> (module, name there)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path


@functools.cache
def public(init: str) -> dict[str, tuple[str, str]]:
    tree = ast.parse(Path(init).read_text(encoding="utf-8"))
    names: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    for alias in statement.names:
                        names[alias.asname or alias.name] = (statement.module, alias.name)
    return names
