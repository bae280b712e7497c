"""The compiled extension, with libbpf's log routed into :mod:`logging`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pingkiller.bpf._libbpf import ffi, lib

if TYPE_CHECKING:
    from pingkiller.bpf._libbpf import CData

__all__ = ["capture_libbpf_log", "ffi", "lib"]

# A library logs, the application decides where to: no stderr fallback by default.
logging.getLogger("pingkiller.bpf").addHandler(logging.NullHandler())
_log = logging.getLogger("pingkiller.bpf.libbpf")
_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}
_captures: list[list[str]] = []


@ffi.def_extern()
def pk_libbpf_log(level: int, message: CData) -> None:
    text = ffi.string(message).decode(errors="replace")
    for capture in _captures:
        capture.append(text)
    _log.log(_LEVELS.get(level, logging.DEBUG), "%s", text.rstrip("\n"))


@contextmanager
def capture_libbpf_log() -> Iterator[list[str]]:
    """Collect what libbpf prints while the block runs (as well as logging it)."""
    lines: list[str] = []
    _captures.append(lines)
    try:
        yield lines
    finally:
        # by identity: two captures holding equal lines must not be confused
        del _captures[next(i for i, c in enumerate(_captures) if c is lines)]


lib.pk_route_libbpf_log()
