"""Loaded BPF programs."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pingkiller.bpf._ffi import ffi, lib
from pingkiller.bpf.errors import check
from pingkiller.bpf.link import Link
from pingkiller.bpf.pin import open_pinned
from pingkiller.bpf.testrun import ProgramRun, run_program


@dataclass(frozen=True)
class ProgramInfo:
    """What the kernel says about a program; run time counts only while BPF stats are on."""

    id: int
    name: str
    type: int
    tag: str
    run_time_ns: int
    run_count: int


def program_info(fd: int) -> ProgramInfo:
    """Kernel information for the program behind ``fd``."""
    info = ffi.new("struct bpf_prog_info *")
    size = ffi.new("__u32 *", ffi.sizeof("struct bpf_prog_info"))
    check(lib.bpf_obj_get_info_by_fd(fd, info, size), "reading program info")
    return ProgramInfo(
        id=info.id,
        name=ffi.string(info.name).decode(),
        type=info.type,
        tag=bytes(ffi.buffer(info.tag)).hex(),
        run_time_ns=info.run_time_ns,
        run_count=info.run_cnt,
    )


class Program:
    """A loaded program: its fd, name, kernel info, and BPF_PROG_RUN."""

    def __init__(self, fd: int, name: str, *, owns_fd: bool, owner: object = None) -> None:
        self._fd = fd
        self.name = name
        self._owns_fd = owns_fd
        self._owner = owner  # keeps an Object alive while its programs are in use

    @classmethod
    def from_id(cls, program_id: int) -> Program:
        """Open a loaded program by its kernel id."""
        fd = check(lib.bpf_prog_get_fd_by_id(program_id), "opening program", f"id {program_id}")
        return cls._owning(fd)

    @classmethod
    def from_pin(cls, path: str | os.PathLike[str], *, read_only: bool = False) -> Program:
        """Open a program pinned on bpffs; ``read_only`` asks only for read access, which
        is all that reading its info needs."""
        return cls._owning(open_pinned(path, "opening pinned program", read_only=read_only))

    @classmethod
    def _owning(cls, fd: int) -> Program:
        """Wrap a fresh fd; it is closed if reading the program's name fails."""
        try:
            name = program_info(fd).name
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, name, owns_fd=True)

    @property
    def fd(self) -> int:
        if self._fd < 0:
            raise ValueError(f"program {self.name!r} is closed")
        return self._fd

    def info(self) -> ProgramInfo:
        return program_info(self.fd)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the program at ``path`` on bpffs."""
        check(lib.bpf_obj_pin(self.fd, os.fsencode(path)), "pinning program", str(path))

    def attach_raw_tracepoint(self, tracepoint: str) -> Link:
        """Attach this (raw_tracepoint) program to ``tracepoint``, e.g. ``sys_enter``."""
        fd = check(lib.bpf_raw_tracepoint_open(tracepoint.encode(), self.fd),
                   "attaching raw tracepoint", tracepoint)
        return Link(fd)

    def test_run(
        self, data: bytes, *, repeat: int = 1, flags: int = 0, batch_size: int = 0,
        context: bytes | None = None,
    ) -> ProgramRun:
        """Run the program on ``data`` in the kernel (BPF_PROG_RUN)."""
        return run_program(
            self.fd, data, repeat=repeat, flags=flags, batch_size=batch_size, context=context
        )

    def close(self) -> None:
        if self._owns_fd and self._fd >= 0:
            os.close(self._fd)
        self._fd = -1

    def __del__(self) -> None:
        if getattr(self, "_owns_fd", False) and getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)

    def __repr__(self) -> str:
        return f"<Program {self.name!r} fd={self._fd}>"


def enable_run_time_stats() -> int:
    """Turn on the kernel's per-program run-time accounting while the returned fd is open."""
    return check(lib.bpf_enable_stats(lib.BPF_STATS_RUN_TIME), "enabling BPF run-time stats")
