"""bpffs itself: where it is mounted, whether this is the host's mount namespace (where a
mount outlives the command that made it), and mounting it root-only (mode 0700) through
mount(2), never through a `mount` binary found on PATH.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

BPFFS = Path("/sys/fs/bpf")
BPF_FS_MAGIC = 0xCAFE4A11  # statfs f_type of bpffs (linux/magic.h)
# The kernel numbers namespaces' /proc inodes from 0xF0000000 up; since 6.x the initial
# mount namespace has the fixed number below instead, which no other namespace can have.
INIT_MOUNT_NS_INODE = 0xEFFFFFF8  # PROC_MNT_INIT_INO (include/linux/proc_ns.h)
_OWN_MOUNT_NS = Path("/proc/self/ns/mnt")
# Processes whose mount namespace is the host's: the kernel's threads live in the initial
# one (kthreadd is PID 2, with parent 0, in the initial PID namespace), and PID 1 in the
# one a container's processes share.
_INIT_PROCESSES = (Path("/proc/2"), Path("/proc/1"))


def mount_points(mounts: str | None = None) -> list[str]:
    """Where bpffs is mounted, from /proc/self/mounts (or the text of such a file)."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return []
    points = []
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "bpf":
            points.append(_unescape(fields[1]))
    return points


def _unescape(field: str) -> str:
    """A path as /proc/self/mounts and mountinfo write it (octal escapes for ' \\t\\n\\\\')."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


@dataclass(frozen=True)
class MountNamespace:
    """Whether this process's mount namespace is the host's, and how that was decided."""

    hosts: bool
    evidence: str  # in words, for messages: "... which is not the host's (...)"


def this_mount_namespace(
    own: Path = _OWN_MOUNT_NS,
    init_processes: tuple[Path, ...] = _INIT_PROCESSES,
    mountinfo: str | None = None,
) -> MountNamespace:
    """Decide whether a bpffs mounted now would outlive this command.

    In order, the first answer that can be had:
    1. the mount namespace of kthreadd (the kernel's threads live in the initial one) or
       else of PID 1, where /proc lets this process read it;
    2. the initial mount namespace's fixed inode number (Linux 6.x);
    3. what a short-lived private namespace leaves in /proc/self/mountinfo: `ip netns
       exec` unshares the mount namespace and mounts a fresh sysfs over /sys, named after
       the network namespace (iproute2's lib/namespace.c), where the host's is "sysfs".
    Nothing found means the host's: a machine where PID 1 is out of sight and nothing
    mounted bpffs at boot is the usual case, not a suspicious one.
    """
    try:
        ours = os.stat(own).st_ino
    except OSError:
        return MountNamespace(True, f"{own} cannot be read")
    for process in init_processes:
        if process.name == "2" and not _is_kthreadd(process):
            continue
        try:
            theirs = os.stat(process / "ns" / "mnt").st_ino
        except OSError:
            continue
        if theirs == ours:
            return MountNamespace(True, f"the same as PID {process.name}'s")
        whose = "the kernel's threads" if process.name == "2" else "PID 1"
        return MountNamespace(False, f"which is not the host's ({whose} live in another, as "
                                     "under `ip netns exec`)")
    if ours == INIT_MOUNT_NS_INODE:
        return MountNamespace(True, "the kernel's initial mount namespace")
    sysfs_source = _sysfs_source(mountinfo)
    if sysfs_source is not None and sysfs_source != "sysfs":
        return MountNamespace(False, f"which is not the host's (/sys is a private sysfs named "
                                     f"{sysfs_source!r}, as `ip netns exec` mounts it)")
    return MountNamespace(True, "no sign of a private mount namespace")


def _is_kthreadd(process: Path) -> bool:
    try:
        status = (process / "status").read_text()
    except OSError:
        return False
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return fields.get("Name", "").strip() == "kthreadd" and fields.get("PPid", "").strip() == "0"


def _sysfs_source(mountinfo: str | None) -> str | None:
    """The source of the sysfs mounted on /sys last (None: no sysfs there)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    source = None
    for line in mountinfo.splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) >= 5 and len(tail) >= 2 and _unescape(fields[4]) == "/sys" \
                and tail[0] == "sysfs":
            source = _unescape(tail[1])
    return source


def mount(where: Path = BPFFS) -> None:
    """Mount bpffs at ``where``, root-only (mode=0700), with mount(2); OSError on failure."""
    import ctypes  # only where bpffs is absent or in question: ~3 ms of start-up

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_char_p]
    flags = 0x2 | 0x4 | 0x8  # MS_NOSUID | MS_NODEV | MS_NOEXEC
    if libc.mount(b"bpf", os.fsencode(where), b"bpf", flags, b"mode=0700") != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(where))


def filesystem_type(path: Path) -> int | None:
    """statfs(2)'s f_type of the file system holding ``path`` (None if it cannot be read).

    Python has no statfs (os.statvfs has no f_type), so libc's is called. f_type is the
    first field: a long on most ABIs, an unsigned int on s390x; the magic numbers fit in
    32 bits, so both readings are tried.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(512)  # struct statfs is 120 bytes on 64-bit ABIs
    if libc.statfs(os.fsencode(path), buffer) != 0:
        return None
    raw = buffer.raw
    as_long = int.from_bytes(raw[: ctypes.sizeof(ctypes.c_long)], sys.byteorder) & 0xFFFFFFFF
    as_int = int.from_bytes(raw[:4], sys.byteorder)
    return BPF_FS_MAGIC if BPF_FS_MAGIC in (as_long, as_int) else as_long
