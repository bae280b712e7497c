"""Exclusive flocks that wait a bounded time and, when they give up, name who holds them:
the pid and command line, from /proc/locks and /proc/PID (a stopped holder is said to be).

A process that finds a lock held waits, and after a second says on the ``pingkiller.lock``
logger whom it waits for; when the time is up it raises :class:`LockTimeout` naming the
holder and the fix, having changed nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pingkiller.model.errors import LockTimeout, Remedy

log = logging.getLogger("pingkiller.lock")

WARN_AFTER = 1.0  # seconds of waiting before the one "waiting for ..." warning
_FIRST_NAP, _LONGEST_NAP = 0.001, 0.025  # polling: 1 ms naps at first, doubling to 25 ms
_COMMAND_WIDTH = 60
_PYTHON = re.compile(r"(?:python|pypy)[0-9.]*")
_PYTHON_OPTIONS_WITH_VALUE = {"-W", "-X", "--check-hash-based-pycs"}


def acquire(fd: int, what: str, seconds: float, *, tunable: bool = False) -> None:
    """Take the exclusive flock on ``fd`` (``what``: the lock in words, for messages),
    waiting at most ``seconds``; then raise :class:`LockTimeout` naming the holder and
    the fix (``tunable``: and that a longer lock timeout waits longer)."""
    start = time.monotonic()
    deadline = start + seconds
    nap = _FIRST_NAP
    warned = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        now = time.monotonic()
        if now >= deadline:
            raise LockTimeout(timeout_message(what, holder(fd), seconds),
                              remedy=Remedy.LOCK_TIMEOUT if tunable else None)
        if not warned and now - start >= WARN_AFTER:
            warned = True
            log.warning("waiting for %s to release %s (gives up after %s s)",
                        holder(fd).describe(), what, _format_seconds(seconds))
        time.sleep(min(nap, deadline - now))
        nap = min(nap * 2, _LONGEST_NAP)


@dataclass(frozen=True)
class Holder:
    """Who holds a flock, as far as this process can see."""

    pid: int | None  # None: not visible here (another pid namespace) or not found
    command: str | None = None  # its command line, shortened; None if unreadable
    stopped: bool = False  # stopped by a signal (SIGSTOP, Ctrl-Z) or a tracer

    def describe(self) -> str:
        """``pid 1234 (pingkiller block eth0)``, or ``another process``."""
        if self.pid is None:
            return "another process"
        details = [d for d in (self.command, "stopped" if self.stopped else None) if d]
        return f"pid {self.pid} ({', '.join(details)})" if details else f"pid {self.pid}"


def timeout_message(what: str, who: Holder, seconds: float) -> str:
    """What a :class:`LockTimeout` says: who holds the lock, and what to do."""
    held = (f"has held {what} for over {_format_seconds(seconds)} s" if seconds > 0
            else f"holds {what}")
    if who.pid is None:
        fix = ("wait for it to finish, or find it (`lslocks` in its pid namespace) and stop it "
               "if it is stuck")
    elif who.stopped:
        fix = f"resume it (kill -CONT {who.pid}) or end it (kill {who.pid})"
    else:
        fix = f"wait for it to finish, or stop it if it is stuck (kill {who.pid})"
    return f"{who.describe()} {held}: {fix}"


def holder(fd: int, locks: Path = Path("/proc/locks"), proc: Path = Path("/proc")) -> Holder:
    """Who holds the flock on the file open as ``fd``.

    /proc/locks names the process that took the lock. If that one has exited, the lock
    is held by a process that inherited its open file (a child, as the command run by
    ``flock FILE COMMAND``): it is found by the lock line in its /proc/PID/fdinfo.
    """
    info = os.fstat(fd)
    try:
        text = locks.read_text()
    except OSError:
        return Holder(None)
    pid = parse_locks(text, info.st_dev, info.st_ino)
    if pid is not None and not (proc / str(pid)).exists():
        pid = _sharer(proc, info.st_dev, info.st_ino)
    if pid is None:
        return Holder(None)
    try:
        command = describe_command((proc / str(pid) / "cmdline").read_bytes())
    except OSError:
        command = None
    return Holder(pid, command, _stopped(proc / str(pid) / "stat"))


def parse_locks(text: str, device: int, inode: int) -> int | None:
    """The pid holding a flock on (``device``, ``inode``) in /proc/locks text, if shown.

    A line is ``1: FLOCK  ADVISORY  WRITE 6800 00:27:452035 0 EOF``: the device as hex
    major:minor, then the decimal inode; a waiter's line has ``->`` after the number and
    is skipped. A pid the reader cannot see (another pid namespace) is shown as 0 (or -1,
    ``-``), which gives None, as does no line at all. The pid is the one that took the
    lock: the kernel keeps showing it after that process exits while a process that
    inherited the open file still holds the lock.
    """
    for pid in _flock_pids(text, device, inode):
        return int(pid) if pid.isdigit() and int(pid) > 0 else None
    return None


def _flock_pids(text: str, device: int, inode: int) -> Iterator[str]:
    """The pid fields of the held-flock lines of (``device``, ``inode``)."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue  # a waiter ("->"), a POSIX or OFD lock, or not a lock line
        where = fields[5].split(":")
        try:
            if len(where) == 3 and (int(where[0], 16), int(where[1], 16), int(where[2])) == \
                    (os.major(device), os.minor(device), inode):
                yield fields[4]
        except ValueError:
            continue


def _sharer(proc: Path, device: int, inode: int) -> int | None:
    """A process with the lock-holding open file among its fds (``lock:`` lines of its
    fdinfo list the locks held through that fd's open file), or None."""
    try:
        pids = sorted(int(entry.name) for entry in proc.iterdir() if entry.name.isdigit())
    except OSError:
        return None
    for pid in pids:
        try:
            fdinfos = list((proc / str(pid) / "fdinfo").iterdir())
        except OSError:
            continue  # gone, or not ours to look at
        for fdinfo in fdinfos:
            try:
                text = fdinfo.read_text()
            except OSError:
                continue
            held = "\n".join(line.removeprefix("lock:").strip() for line in text.splitlines()
                             if line.startswith("lock:"))
            if held and next(_flock_pids(held, device, inode), None) is not None:
                return pid
    return None


def describe_command(cmdline: bytes) -> str | None:
    """A process's /proc/PID/cmdline as one short printable line: arguments joined with
    spaces, the program as its base name, a Python running pingkiller (``python -m
    pingkiller``, a ``pingkiller`` launcher script) as ``pingkiller``; None if empty."""
    args = [a.decode(errors="replace") for a in cmdline.split(b"\0")]
    while args and not args[-1]:
        args.pop()
    if not args:
        return None
    args = [os.path.basename(args[0]) or args[0], *args[1:]]
    if _PYTHON.fullmatch(args[0]):
        args = _as_pingkiller(args) or args
    text = "".join(c if c.isprintable() else " " if c.isspace() else "?"
                   for c in " ".join(args))
    return text if len(text) <= _COMMAND_WIDTH else text[: _COMMAND_WIDTH - 3] + "..."


def _as_pingkiller(args: list[str]) -> list[str] | None:
    """``pingkiller ARGS`` if this Python command line runs pingkiller, else None."""
    i = 1
    while i < len(args):
        arg = args[i]
        if arg == "-m" or (arg.startswith("-m") and not arg.startswith("--")):
            module = arg[2:] or (args[i + 1] if i + 1 < len(args) else "")
            rest = args[i + 1 :] if arg[2:] else args[i + 2 :]
            return ["pingkiller", *rest] if module.split(".")[0] == "pingkiller" else None
        if arg in _PYTHON_OPTIONS_WITH_VALUE:
            i += 2
            continue
        if arg == "-c" or arg == "-" or not arg.startswith("-"):
            script = os.path.basename(arg)
            return ["pingkiller", *args[i + 1 :]] if script == "pingkiller" else None
        i += 1
    return None


def _stopped(stat: Path) -> bool:
    try:
        text = stat.read_text()
    except OSError:
        return False
    state = text[text.rfind(")") + 1 :].split()[:1]  # the comm may hold spaces and ')'
    return state in (["T"], ["t"])


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}"
