"""The pin root a writer may trust: on bpffs (mounted root-only if nobody did), a real
directory of this user's that nobody else can write, holding only such directories.

Nothing found wrong is taken over (not even by chown/chmod: what it holds could be
planted): the operator is told to look at it and remove it. Readers check nothing here:
they only read, and never act on what they find.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from pingkiller.model.errors import PermissionDenied
from pingkiller.store import bpffs
from pingkiller.store.bpffs import BPF_FS_MAGIC, BPFFS
from pingkiller.system.trust import untrusted_directory


def read_only_mount(path: Path) -> Path | None:
    """``path``, or its closest parent that exists (as far as this process may look), if
    it is on a read-only mount; None when it is writable."""
    where = path
    while not os.path.exists(where) and where != where.parent:
        where = where.parent
    try:
        return where if os.statvfs(where).f_flag & os.ST_RDONLY else None
    except OSError:
        return None


def read_only_error(where: Path) -> PermissionDenied:
    return PermissionDenied(
        f"{where} is mounted read-only here: changing attachments needs bpffs mounted "
        "read-write (status, stats, export and the exporter only read)"
    )


def ensure_root(pin_root: Path) -> Path:
    """Make sure bpffs is mounted and ``pin_root`` exists (0700), trusted; returns it.

    bpffs is mounted at /sys/fs/bpf (root-only) when the root is under it and nothing is
    mounted there, but only in the host's mount namespace: elsewhere (as under `ip netns
    exec`, which gives a command a private mount namespace and a fresh /sys) the mount and
    every pin made in it would vanish when this command exits.
    """
    if pin_root.is_relative_to(BPFFS) and str(BPFFS) not in bpffs.mount_points():
        _mount_bpffs()
    read_only = read_only_mount(pin_root)
    if read_only is not None:
        raise read_only_error(read_only)
    existed = os.path.lexists(pin_root)
    if existed:
        check_owned(pin_root)  # a symlink is refused before anything follows it
    check_on_bpffs(pin_root if existed else pin_root.parent, pin_root)
    try:  # also when it exists: every writer makes the same calls (tests inject faults by count)
        pin_root.mkdir(mode=0o700)
    except FileExistsError:
        pass  # made before, or by another writer just now: checked below like any other
    except PermissionError:
        raise PermissionDenied(
            f"cannot create {pin_root}: needs root (CAP_BPF + CAP_NET_ADMIN)"
        ) from None
    except OSError as err:
        if err.errno == errno.EROFS:
            raise read_only_error(pin_root) from None
        raise
    else:
        os.chmod(pin_root, 0o700)  # mkdir's mode is masked by the umask
    check_owned(pin_root)
    check_entries(pin_root)
    return pin_root


def _mount_bpffs() -> None:
    """Mount bpffs at /sys/fs/bpf, root-only, where the mount outlives this command."""
    namespace = bpffs.this_mount_namespace()
    if not namespace.hosts:
        raise PermissionDenied(
            f"{BPFFS} is not mounted in this mount namespace, {namespace.evidence}: pins made "
            "here would vanish when this command exits; run `nsenter --net=/run/netns/NS "
            "pingkiller ...` instead, which keeps the host's bpffs (or, in the host's mount "
            f"namespace, `mount -t bpf -o mode=0700 bpf {BPFFS}` first)"
        )
    try:
        bpffs.mount(BPFFS)
    except OSError as err:
        raise PermissionDenied(
            f"bpffs is not mounted at {BPFFS} and mounting it failed ({err.strerror}): run as "
            f"root, or `mount -t bpf -o mode=0700 bpf {BPFFS}`"
        ) from None


def check_on_bpffs(where: Path, pin_root: Path) -> None:
    """Refuse a pin root that is not on bpffs (``where``: the root, or its parent while
    the root is not made yet); pins can only live there."""
    found = bpffs.filesystem_type(where)
    if found is None or found == BPF_FS_MAGIC:
        return  # unreadable: what comes next (mkdir, pinning) reports it
    raise PermissionDenied(
        f"the pin root {pin_root} is not on bpffs ({where} is on a file system of type "
        f"{found:#x}): pins live only on bpffs; point PINGKILLER_PIN_ROOT at a directory "
        f"under a bpffs mount (e.g. {BPFFS}/NAME), or unset it"
    )


def check_owned(pin_root: Path) -> None:
    """Refuse a pin root that someone else could have made or can change.

    A writer trusts what it finds under the root (it finishes interrupted transactions
    there), so a root another user made before ours, e.g. in a world-writable
    /sys/fs/bpf, or can write into, could get our filter removed.
    """
    problem = untrusted_directory(pin_root.lstat())
    if problem:
        raise PermissionDenied(
            f"the pin root {pin_root} {problem}: someone else may have made it; check what it "
            f"holds, then remove it (`rm -r {pin_root}`) and run this again"
        )


def check_entries(pin_root: Path) -> None:
    """Refuse a pin root holding an entry a writer would trust but someone else made:
    every entry is an attachment's pins or a writer's leftover that recovery finishes,
    so each must be a real directory of this user's that nobody else can write."""
    with os.scandir(pin_root) as entries:
        for entry in entries:
            problem = untrusted_directory(entry.stat(follow_symlinks=False))
            if problem:
                path = pin_root / entry.name
                raise PermissionDenied(
                    f"{path} in the pin root {problem}: someone else may have made it; check "
                    f"what it holds, then remove it (`rm -r {path}`) and run this again"
                )
