"""The ``pingkiller`` command: parses arguments, calls the library, renders the result.

One small module per verb group, no logic beyond argument -> library call -> render.
Exit codes: 0 ok, 1 runtime failure, 2 bad input or usage, 130 interrupted. Errors are
one line on stderr (:mod:`.errors` words the library's remedies as commands).
``--json`` output is made in :mod:`.schemas` and documented in docs/cli.md and the man
pages, which tools/manpages.py makes from the verbs' help texts (``make man``).
"""

from __future__ import annotations

from typing import Any

from pingkiller.cli.command import main

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    """``app``, the typer app, is made on first use (see pingkiller.cli.command)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from pingkiller.cli.command import app

    return app()
