"""The pin lock: one exclusive flock on the pin root serializes every writer, with a timeout.

A writer that finds the lock held waits, and after a second says on the
``pingkiller.lock`` logger whom it waits for (pid and command line, from /proc/locks and
/proc/PID/cmdline); when the timeout passes it gives up with :class:`LockTimeout`, naming
the holder and the fix, having changed nothing. A holder that dies releases the lock (the
kernel does, when the last process with its open file exits); a stopped or stuck one no
longer hangs every writer without a word.

How long to wait: the ``timeout`` given to :func:`locked`, else what :func:`set_timeout`
chose for this process (the CLI's ``--lock-timeout``), else ``PINGKILLER_LOCK_TIMEOUT``
(seconds), else 30 s. 0 tries once. Readers (status, stats, export, exporter, events)
never take this lock.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pingkiller.model.errors import InvalidInput
from pingkiller.model.untrusted import parse_seconds
from pingkiller.system.flock import acquire

ENV = "PINGKILLER_LOCK_TIMEOUT"
DEFAULT_TIMEOUT = 30.0

_chosen: float | None = None  # set_timeout's choice for this process


def set_timeout(seconds: float | None) -> None:
    """How long this process's writers wait for the pin lock from now on (the CLI's
    ``--lock-timeout``). None goes back to ``PINGKILLER_LOCK_TIMEOUT`` or the default,
    and checks that variable now, so a bad value is reported before anything runs."""
    global _chosen
    _chosen = None if seconds is None else _checked(seconds)
    if seconds is None:
        current_timeout()


def current_timeout() -> float:
    """The lock timeout in effect for this process, in seconds."""
    if _chosen is not None:
        return _chosen
    text = os.environ.get(ENV)
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        return parse_seconds(text)
    except ValueError as err:
        raise InvalidInput(f"{ENV}={err}: fix or unset the variable") from None


_held = threading.local()  # the pin roots this thread holds the lock of


@contextmanager
def locked(pin_root: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive flock on the pin root for a read-modify-write of pins or maps.

    One lock for all interfaces keeps it simple: changes are short. A thread that holds
    it already (a change made to several attachments at once) holds it on. The root must exist:
    a writer mounts bpffs and makes the root first (:meth:`Store.writer
    <pingkiller.store.Store.writer>`; the lock
    itself mounts and makes nothing). Waits at most ``timeout`` seconds (default: see the
    module), then raises :class:`LockTimeout`.
    """
    seconds = current_timeout() if timeout is None else _checked(timeout)
    held = _held.__dict__.setdefault("roots", set())
    if pin_root in held:  # this thread holds it already (a change of several attachments)
        yield
        return
    fd = os.open(pin_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _acquire(fd, pin_root, seconds)
        held.add(pin_root)
        try:
            yield
        finally:
            held.discard(pin_root)
    finally:
        os.close(fd)  # closing releases the lock


def _checked(seconds: float) -> float:
    if not (math.isfinite(seconds) and seconds >= 0):
        raise InvalidInput(f"lock timeout {seconds!r}: give 0 or more seconds")
    return seconds


def _acquire(fd: int, pin_root: Path, seconds: float) -> None:
    acquire(fd, f"the pin lock on {pin_root}", seconds, tunable=True)
