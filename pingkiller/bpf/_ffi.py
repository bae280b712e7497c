"""The compiled extension, with libbpf's log routed into :mod:`logging`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
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
# What the log callback raised, for the libbpf call that ran it to raise on return.
_raised: list[BaseException] = []


def _keep_what_the_callback_raised(kind: type[BaseException], error: BaseException,
                                   traceback: TracebackType | None) -> None:
    """cffi would print and drop an exception raised in the callback: most likely a
    KeyboardInterrupt that a signal handler (Ctrl-C, a SIGTERM handler) raised while
    the callback ran. Losing it would lose the signal, so it is kept."""
    _raised.append(error)


@ffi.def_extern(onerror=_keep_what_the_callback_raised)
def pk_libbpf_log(level: int, message: CData) -> None:
    text = ffi.string(message).decode(errors="replace")
    for capture in _captures:
        capture.append(text)
    _log.log(_LEVELS.get(level, logging.DEBUG), "%s", text.rstrip("\n"))


@contextmanager
def capture_libbpf_log() -> Iterator[list[str]]:
    """Collect what libbpf prints while the block runs (as well as logging it). An
    exception raised in the log callback meanwhile (a signal's KeyboardInterrupt) is
    raised when the block ends."""
    lines: list[str] = []
    _captures.append(lines)
    try:
        yield lines
    finally:
        # by identity: two captures holding equal lines must not be confused
        del _captures[next(i for i, c in enumerate(_captures) if c is lines)]
        if _raised:  # a signal's exception, raised in the callback: raised here instead
            error = _raised[0]
            _raised.clear()
            raise error


lib.pk_route_libbpf_log()
