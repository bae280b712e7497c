"""A seccomp filter for a process that must hold no power over BPF or the host: it may
not call bpf(2) at all, open network sockets, trace or read other processes, make
namespaces, mount, load modules or run programs. Everything else a Python server needs
(threads, files, its inherited sockets, unix socket pairs) stays allowed.

The filter is classic BPF, assembled here (linux/filter.h, linux/seccomp.h): for each
architecture, its audit number and the numbers of the syscalls it names.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from dataclasses import dataclass

from pingkiller.system.privileges import PR_SET_NO_NEW_PRIVS, prctl

# classic BPF opcodes
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (the low word of args[0])
AF_UNIX = 1
CLONE_NEW_ANY = 0x7E020000  # CLONE_NEWNS | CGROUP | UTS | IPC | USER | PID | NET
X32_SYSCALL_BIT = 0x40000000
SECCOMP_SET_MODE_FILTER = 1
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2

DENIED = ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "io_uring_setup",
          "io_uring_enter", "io_uring_register", "perf_event_open", "userfaultfd", "keyctl",
          "add_key", "request_key", "unshare", "setns", "mount", "umount2", "pivot_root",
          "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
          "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
          "execve", "execveat")


@dataclass(frozen=True)
class Arch:
    audit: int
    numbers: dict[str, int]
    x32: bool = False  # x86_64 also takes x32 numbers, which must not slip past the checks


_SHARED = {"pidfd_getfd": 438, "io_uring_setup": 425, "io_uring_enter": 426,
           "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
           "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "clone3": 435}
ARCHES = {
    "x86_64": Arch(0xC000003E, {
        **_SHARED, "bpf": 321, "socket": 41, "clone": 56, "seccomp": 317, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "perf_event_open": 298,
        "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249, "unshare": 272,
        "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155, "kexec_load": 246,
        "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176,
        "execve": 59, "execveat": 322}, x32=True),
    "aarch64": Arch(0xC00000B7, {
        **_SHARED, "bpf": 280, "socket": 198, "clone": 220, "seccomp": 277, "ptrace": 117,
        "process_vm_readv": 270, "process_vm_writev": 271, "perf_event_open": 241,
        "userfaultfd": 282, "keyctl": 219, "add_key": 217, "request_key": 218, "unshare": 97,
        "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41, "kexec_load": 104,
        "kexec_file_load": 294, "init_module": 105, "finit_module": 273, "delete_module": 106,
        "execve": 221, "execveat": 281}),
}


class _Program:
    """Instructions with symbolic jump targets, resolved to cBPF's relative offsets."""

    def __init__(self) -> None:
        self.code: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def op(self, code: int, k: int, jt: str | int = 0, jf: str | int = 0) -> None:
        self.code.append((code, jt, jf, k))

    def assemble(self) -> bytes:
        out = b""
        for index, (code, jt, jf, k) in enumerate(self.code):
            offsets = []
            for target in (jt, jf):
                offset = target if isinstance(target, int) else self.labels[target] - index - 1
                if not 0 <= offset <= 255:
                    raise ValueError(f"jump from {index} to {target} is out of reach")
                offsets.append(offset)
            out += struct.pack("=HBBI", code, offsets[0], offsets[1], k)
        return out


def serving_filter(arch: Arch) -> bytes:
    """The filter: an unknown architecture is killed; bpf(2), network sockets, clone into
    new namespaces and :data:`DENIED` fail with EPERM (clone3 with ENOSYS, so the C
    library falls back to clone, whose flags can be checked); the rest is allowed."""
    numbers = arch.numbers
    program = _Program()
    program.op(_LD_W_ABS, _ARCH)
    program.op(_JEQ_K, arch.audit, 0, "kill")
    program.op(_LD_W_ABS, _NR)
    if arch.x32:
        program.op(_JGE_K, X32_SYSCALL_BIT, "eperm", 0)
    program.op(_JEQ_K, numbers["bpf"], "eperm", 0)
    program.op(_JEQ_K, numbers["socket"], "socket", 0)
    program.op(_JEQ_K, numbers["clone"], "clone", 0)
    program.op(_JEQ_K, numbers["clone3"], "enosys", 0)
    for name in DENIED:
        program.op(_JEQ_K, numbers[name], "eperm", 0)
    program.op(_RET_K, RET_ALLOW)
    program.label("socket")
    program.op(_LD_W_ABS, _ARG0)
    program.op(_JEQ_K, AF_UNIX, "allow", "eperm")
    program.label("clone")
    program.op(_LD_W_ABS, _ARG0)
    program.op(_JSET_K, CLONE_NEW_ANY, "eperm", "allow")
    program.label("allow")
    program.op(_RET_K, RET_ALLOW)
    program.label("eperm")
    program.op(_RET_K, RET_ERRNO | errno.EPERM)
    program.label("enosys")
    program.op(_RET_K, RET_ERRNO | errno.ENOSYS)
    program.label("kill")
    program.op(_RET_K, RET_KILL_PROCESS)
    return program.assemble()


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def this_arch() -> Arch | None:
    return ARCHES.get(platform.machine())


def install() -> str | None:
    """Install :func:`serving_filter` on this thread (call it before any other thread
    starts, which inherit it) with no_new_privs set; None when installed, else why not
    (an architecture without numbers here, a kernel without seccomp filters)."""
    arch = this_arch()
    if arch is None:
        return f"no seccomp filter for {platform.machine()}"
    code = serving_filter(arch)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = _Fprog(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(ctypes.c_long(arch.numbers["seccomp"]), SECCOMP_SET_MODE_FILTER, 0,
                    ctypes.byref(fprog)) == 0:
        return None
    number = ctypes.get_errno()
    if number == errno.ENOSYS and libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER,
                                              ctypes.byref(fprog), 0, 0) == 0:
        return None
    number = ctypes.get_errno() or number
    if number in (errno.EINVAL, errno.ENOSYS):
        return f"this kernel takes no seccomp filter ({os.strerror(number)})"
    raise OSError(number, f"seccomp: {os.strerror(number)}")
