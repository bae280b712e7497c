"""The exporter server's seccomp filter: what it decides for each syscall (read by a small
classic-BPF interpreter), that its numbers are the kernel headers', and what a process
that installs it can no longer do (a forked child, no root needed: no_new_privs)."""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
import socket
import struct
import threading
from pathlib import Path

import pytest

from pingkiller.system import seccomp

X86, ARM = seccomp.ARCHES["x86_64"], seccomp.ARCHES["aarch64"]
EPERM, ENOSYS = seccomp.RET_ERRNO | errno.EPERM, seccomp.RET_ERRNO | errno.ENOSYS


def decide(code: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    """Run the filter on one seccomp_data (nr, arch, args[0]) as the kernel would."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    program = [struct.unpack_from("=HBBI", code, at) for at in range(0, len(code), 8)]
    accumulator, pc = 0, 0
    while True:
        op, jt, jf, k = program[pc]
        pc += 1
        if op == 0x20:
            accumulator = struct.unpack_from("=I", data, k)[0]
        elif op == 0x06:
            return k
        elif op in (0x15, 0x35, 0x45):
            taken = {0x15: accumulator == k, 0x35: accumulator >= k,
                     0x45: accumulator & k != 0}[op]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"opcode {op:#x}")


@pytest.mark.parametrize("arch", [X86, ARM], ids=["x86_64", "aarch64"])
def test_the_filter_decides_each_kind_of_call(arch: seccomp.Arch) -> None:
    code, n = seccomp.serving_filter(arch), arch.numbers
    assert decide(code, n["bpf"], arch.audit) == EPERM
    assert decide(code, n["socket"], arch.audit, socket.AF_INET) == EPERM
    assert decide(code, n["socket"], arch.audit, socket.AF_INET6) == EPERM
    assert decide(code, n["socket"], arch.audit, socket.AF_NETLINK) == EPERM
    assert decide(code, n["socket"], arch.audit, socket.AF_UNIX) == seccomp.RET_ALLOW
    assert decide(code, n["clone"], arch.audit, 0x3D0F00) == seccomp.RET_ALLOW  # a thread
    assert decide(code, n["clone"], arch.audit, 0x10000000 | 0x11) == EPERM  # CLONE_NEWUSER
    assert decide(code, n["clone"], arch.audit, 0x40000000) == EPERM  # CLONE_NEWNET
    assert decide(code, n["clone3"], arch.audit) == ENOSYS
    for name in seccomp.DENIED:
        assert decide(code, n[name], arch.audit) == EPERM, name
    assert decide(code, 0, arch.audit) == seccomp.RET_ALLOW  # read / io_setup
    other = ARM if arch is X86 else X86
    assert decide(code, n["bpf"], other.audit) == seccomp.RET_KILL_PROCESS


def test_x32_numbers_cannot_slip_past_the_checks() -> None:
    code = seccomp.serving_filter(X86)
    assert decide(code, seccomp.X32_SYSCALL_BIT | 321, X86.audit) == EPERM
    assert decide(code, seccomp.X32_SYSCALL_BIT | 0, X86.audit) == EPERM


def _header_numbers(path: Path, prefix: str) -> dict[str, int]:
    found = {}
    for match in re.finditer(rf"#define {prefix}(\w+)\s+(\d+)", path.read_text()):
        found[match.group(1)] = int(match.group(2))
    return found


@pytest.mark.parametrize(("arch", "header", "prefix"), [
    (X86, "/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "__NR_"),
    (ARM, "/usr/include/asm-generic/unistd.h", "__NR(?:3264)?_"),
], ids=["x86_64", "aarch64"])
def test_syscall_numbers_are_the_kernel_headers(arch: seccomp.Arch, header: str, prefix: str) -> None:
    path = Path(header)
    if not path.exists():
        pytest.skip(f"{header} is not installed (linux-libc-dev)")
    numbers = _header_numbers(path, prefix)
    for name, number in arch.numbers.items():
        assert numbers[name] == number, name


def _in_child(check: str) -> tuple[int, str]:
    """Fork; the child installs the filter, runs ``check`` (Python source that sets
    ``result``), writes it back; (exit status, result)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            assert seccomp.install() is None
            scope: dict[str, object] = {"ctypes": ctypes, "socket": socket, "os": os,
                                        "threading": threading, "errno": errno}
            exec(check, scope)
            os.write(write, str(scope["result"]).encode())
            os._exit(0)
        except BaseException as err:
            os.write(write, repr(err).encode())
            os._exit(1)
    os.close(write)
    result = b""
    while chunk := os.read(read, 4096):
        result += chunk
    os.close(read)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), result.decode()


BPF_NR = {"x86_64": 321, "aarch64": 280}


@pytest.mark.skipif(seccomp.this_arch() is None, reason="no filter for this architecture")
def test_a_process_with_the_filter_cannot_call_bpf_or_open_network_sockets() -> None:
    bpf = BPF_NR[platform.machine()]
    # MAP_DELETE_ELEM (3) on fd 0: without the filter the kernel answers EBADF or EINVAL
    code, result = _in_child(
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "attr = ctypes.create_string_buffer(128)\n"
        f"rc = libc.syscall({bpf}, 3, attr, 128)\n"
        "errors = [ctypes.get_errno()]\n"
        "for family in (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK):\n"
        "    try:\n"
        "        socket.socket(family, socket.SOCK_DGRAM)\n"
        "        errors.append(0)\n"
        "    except OSError as err:\n"
        "        errors.append(err.errno)\n"
        "a, b = socket.socketpair()\n"
        "box = []\n"
        "worker = threading.Thread(target=lambda: box.append(1))\n"
        "worker.start(); worker.join()\n"
        "try:\n"
        "    os.execv('/bin/true', ['true'])\n"
        "except OSError as err:\n"
        "    errors.append(err.errno)\n"
        "result = (rc, errors, box)\n")
    assert code == 0, result
    assert result == str((-1, [errno.EPERM] * 5, [1])), result
