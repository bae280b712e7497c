"""Errors as the CLI says them: one line on stderr, the remedy worded as a command, and
the exit code (2 bad input, 1 runtime failure, 130 interrupted)."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

from pingkiller.model.enums import Hook
from pingkiller.model.errors import PingkillerError, Remedy
from pingkiller.model.point import Point
from pingkiller.model.untrusted import one_line

# What `main` exits with; the man pages' EXIT STATUS.
EXIT_STATUS = {
    0: "success",
    1: "runtime failure: the input was fine, the system said no",
    2: "bad input or usage",
    130: "interrupted (Ctrl-C)",
}


def options(point: Point) -> str:
    """The CLI arguments that name ``point``, e.g. ``eth0`` or ``eth0 --hook tc --direction out``."""
    if point.hook is Hook.XDP:
        return point.ifname
    return f"{point.ifname} --hook tc --direction {point.direction.label}"


def hint(remedy: Remedy | None, point: Point | None) -> str:
    """``remedy`` as the CLI words it ('' for none)."""
    if remedy is None:
        return ""
    where = options(point) if point is not None else "IFACE"
    ifname = point.ifname if point is not None else "IFACE"
    return {
        Remedy.ATTACH: f"attach one with `pingkiller attach {where}`",
        Remedy.DETACH: f"`pingkiller detach {where}` removes it, then attach again",
        Remedy.REPLACE: f"use --replace to swap the policy, or `pingkiller detach {where}` first",
        Remedy.UPGRADE: f"`pingkiller upgrade {where}` moves them to this version in place, "
                        "keeping rules and counters",
        Remedy.CHOOSE: "say which with --hook xdp, or --hook tc --direction in|out",
        Remedy.NEWER: f"use that pingkiller or a newer one (this one can still `pingkiller "
                      f"detach {where}`)",
        Remedy.TC_HOOK: f"run beside it with `pingkiller attach {ifname} --hook tc`, or remove it "
                        "with the tool that loaded it and try again",
        Remedy.LOCK_TIMEOUT: "--lock-timeout S (or PINGKILLER_LOCK_TIMEOUT) changes how long "
                             "to wait",
    }[remedy]


def describe(err: PingkillerError) -> str:
    """The one line the CLI prints for ``err`` (without the ``pingkiller: `` prefix)."""
    text = hint(err.remedy, err.point)
    separator = "; " if err.remedy is Remedy.LOCK_TIMEOUT else ": "
    return f"{err.message}{separator}{text}" if text else err.message


def stopped(ended: PingkillerError) -> NoReturn:
    """A watcher (stats --watch, events) ends: the attachment it read has ended."""
    fail(f"{describe(ended)}; stopping", ended.exit_code)


def fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"pingkiller: {one_line(message)}\n")
    raise SystemExit(code)


class NoticeHandler(logging.Handler):
    """The library's notices (``pingkiller.*`` loggers, WARNING and up, not the binding's
    libbpf log) as one ``pingkiller: ...`` line each on stderr: e.g. what a writer's
    recovery finished, or whose lock it waits for."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.addFilter(lambda record: not record.name.startswith("pingkiller.bpf"))

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"pingkiller: {record.getMessage()}\n")
        sys.stderr.flush()


def show_notices() -> None:
    library = logging.getLogger("pingkiller")
    if not any(isinstance(handler, NoticeHandler) for handler in library.handlers):
        library.addHandler(NoticeHandler())
