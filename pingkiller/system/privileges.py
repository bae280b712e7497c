"""Giving privileges up for good: another user, no capabilities, no way back (no_new_privs),
nothing another process of that user may inspect (not dumpable). capabilities(7) and
prctl(2) say why each step is needed and in which order.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pingkiller.model.errors import InvalidInput
from pingkiller.model.untrusted import quote
from pingkiller.system.capabilities import proc_status

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def prctl(option: int, arg: int = 0) -> None:
    if _libc().prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"prctl({option}): {os.strerror(number)}")


def last_capability() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40


def set_capabilities(keep: Iterable[int] = ()) -> None:
    """Make ``keep`` this process's effective and permitted capabilities and nothing
    else (none inheritable, none ambient). Dropping needs no privilege."""
    mask = sum(1 << cap for cap in set(keep))
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = _Header(_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)(_Data(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0),
                       _Data(mask >> 32, mask >> 32, 0))
    if _libc().capset(ctypes.byref(header), data) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"capset: {os.strerror(number)}")


def drop_bounding_set(keep: Iterable[int] = ()) -> bool:
    """Take every capability but ``keep`` out of the bounding set, so no program this
    process runs can get it back; False when this needs CAP_SETPCAP, which is not held."""
    kept = set(keep)
    for cap in range(last_capability() + 1):
        if cap in kept:
            continue
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError as err:
            if err.errno == errno.EPERM:
                return False
            if err.errno != errno.EINVAL:  # a capability this kernel does not know
                raise
    return True


def switch_user(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` (real, effective and saved) with no supplementary groups.
    A process that leaves uid 0 this way loses every capability (capabilities(7))."""
    prctl(PR_SET_KEEPCAPS, 0)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def lock_down(parent_death: signal.Signals | None = None) -> None:
    """No new privileges through execve, not dumpable (no ptrace, no /proc/PID/fd for
    others), no core dumps; with ``parent_death``, that signal when the parent dies.
    Call after :func:`switch_user`, which resets both flags."""
    prctl(PR_SET_DUMPABLE, 0)
    if parent_death is not None:
        prctl(PR_SET_PDEATHSIG, parent_death)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclass(frozen=True)
class Status:
    """What /proc says of a process's privileges."""

    uid: tuple[int, ...]
    gid: tuple[int, ...]
    groups: tuple[int, ...]
    effective: int
    permitted: int
    inheritable: int
    ambient: int
    bounding: int
    no_new_privs: bool
    seccomp: int  # 0 none, 1 strict, 2 filter


def status(pid: int | str = "self") -> Status:
    """The privileges of process ``pid``, from /proc/PID/status."""
    fields = proc_status(pid)
    caps = {name: int(fields.get(name, ["0"])[0], 16)
            for name in ("CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd")}
    return Status(uid=tuple(int(v) for v in fields["Uid"]), gid=tuple(int(v) for v in fields["Gid"]),
                  groups=tuple(int(v) for v in fields.get("Groups", [])),
                  effective=caps["CapEff"], permitted=caps["CapPrm"],
                  inheritable=caps["CapInh"], ambient=caps["CapAmb"], bounding=caps["CapBnd"],
                  no_new_privs=fields.get("NoNewPrivs", ["0"])[0] == "1",
                  seccomp=int(fields.get("Seccomp", ["0"])[0]))


def user_ids(name: str) -> tuple[int, int]:
    """The uid and primary gid of user ``name`` (a name or a number)."""
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if name.isascii() and name.isdigit():
            return int(name), int(name)
        raise InvalidInput(f"no user {quote(name)} on this host to serve as: name an existing "
                           "user (getent passwd) or a uid") from None
    return entry.pw_uid, entry.pw_gid
