"""What a root process may trust on this host, and how it makes files nobody can plant.

pingkiller runs as root, so nothing another user could place may steer it: programs are
run from a fixed system path (never found on PATH), private state lives in directories
only root can write (never in /tmp), and files are created without following a symlink
and renamed into place whole.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO

from pingkiller.model.errors import PermissionDenied, ProgramNotFound

# Where system programs live, in the order a root shell's PATH usually has them.
SYSTEM_BIN = (Path("/usr/sbin"), Path("/usr/bin"), Path("/sbin"), Path("/bin"))
RUN_DIR = Path("/run/pingkiller")  # root-only state that lives until reboot (the demo's lock)


def program(name: str, package: str) -> str:
    """The absolute path of system program ``name`` in :data:`SYSTEM_BIN`; a path
    someone other than root could have changed is skipped. ProgramNotFound names
    ``package`` to install."""
    for directory in SYSTEM_BIN:
        path = directory / name
        if _root_only(path) and all(_root_only(parent) for parent in path.parents):
            return str(path)
    where = ", ".join(str(d) for d in SYSTEM_BIN)
    raise ProgramNotFound(f"{name} is not installed in {where} (pingkiller runs no program found "
                          f"on PATH): install {package}")


def _root_only(path: Path) -> bool:
    """Whether ``path`` (symlinks followed) is owned by root and writable by nobody else,
    and, for a file, is executable."""
    try:
        info = path.stat()
    except OSError:
        return False
    if info.st_uid != 0 or info.st_mode & 0o022:
        return False
    return stat.S_ISDIR(info.st_mode) or (stat.S_ISREG(info.st_mode) and info.st_mode & 0o111 != 0)


def private_directory(path: Path = RUN_DIR) -> Path:
    """``path`` as a directory of this user's that nobody else may write (made 0700 if
    missing); PermissionDenied if it is something else (a symlink, another user's)."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except PermissionError:
        raise PermissionDenied(f"cannot create {path}: needs root") from None
    else:
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask
    problem = untrusted_directory(path.lstat())
    if problem:
        raise PermissionDenied(f"{path} {problem}: someone else may have made it; check it, "
                               f"remove it (`rm -r {path}`) and run this again")
    return path


def untrusted_directory(info: os.stat_result) -> str:
    """What makes a directory this process may not trust, in words ('' when nothing does)."""
    owner = os.geteuid()
    if stat.S_ISLNK(info.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != owner:
        return f"is owned by uid {info.st_uid}, not {owner}"
    if info.st_mode & 0o022:
        return f"is writable by others (mode {stat.S_IMODE(info.st_mode):04o})"
    return ""


def open_lock_file(path: Path) -> int:
    """A file descriptor of lock file ``path`` (made 0600), opened without following a
    symlink; PermissionDenied if it is not a regular file of this user's."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise PermissionDenied(f"cannot open the lock file {path}: {err.strerror} (it must be a "
                               "regular file of root's; remove whatever is there)") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise PermissionDenied(f"the lock file {path} is not a regular file of this user's: "
                               "remove it and run this again")
    return fd


def write_private(path: Path, write: Callable[[IO[str]], None]) -> None:
    """Write a text file at ``path`` that only its owner can read (0600 when new; an
    existing file keeps its mode), whole or not at all: ``write`` fills a new file in
    the same directory, which is renamed over ``path``. A symlink at ``path`` is replaced,
    never followed; a directory there is refused."""
    directory = path.parent
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(21, "Is a directory", str(path))
    try:
        mode = stat.S_IMODE(path.lstat().st_mode) if path.is_file() and not path.is_symlink() \
            else 0o600
    except OSError:
        mode = 0o600
    import tempfile  # only writers of files: ~2 ms of start-up

    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.rename(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def first_closed(path: Path, *, write: bool = False) -> Path | None:
    """The first directory from / down to ``path`` (included, where it exists) that this
    process may not enter (or, with ``write``, whose last level it may not change);
    None when every one is open. A 0700 bpffs (systemd and bpftool mount it so) closes
    /sys/fs/bpf itself to everyone but root."""
    walked = Path(path.anchor)
    for part in path.parts[1:]:
        walked = walked / part
        if not os.path.lexists(walked):
            return None
        wanted = os.X_OK | (os.R_OK | os.W_OK if write and walked == path else 0)
        if not os.access(walked, wanted, effective_ids=True):
            return walked
    return None
