"""The package's layers: the public names and the import arrows between modules."""

from __future__ import annotations

import builtins


def test_star_import_leaves_builtins_alone():
    namespace: dict[str, object] = {}
    exec("from pingkiller import *", namespace)
    shadowed = sorted(name for name in namespace if name != "__builtins__" and hasattr(builtins, name))
    assert not shadowed, f"`from pingkiller import *` replaces builtins: {shadowed}"
    import pingkiller

    assert pingkiller.open is pingkiller.open_attachment  # the attribute stays
