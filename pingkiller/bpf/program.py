"""Loaded BPF programs."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pingkiller.bpf._ffi import ffi, lib
from pingkiller.bpf.errors import check
from pingkiller.bpf.fd import FD, Handle, ObjectKind, adopt, type_name
from pingkiller.bpf.pin import open_pinned
from pingkiller.bpf.testrun import ProgramRun, run_program

PROG_TYPE_XDP: int = lib.BPF_PROG_TYPE_XDP
PROG_TYPE_SCHED_CLS: int = lib.BPF_PROG_TYPE_SCHED_CLS


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


class Program(Handle):
    """A loaded program: it owns its fd; name, type, kernel info and BPF_PROG_RUN.

    A program an :class:`~pingkiller.bpf.Object` hands out is closed with the object;
    :meth:`dup` gives one that outlives it.
    """

    def __init__(self, fd: FD, name: str, prog_type: int) -> None:
        self._fd = fd
        self.name = name
        self.type = prog_type

    @property
    def type_name(self) -> str:
        """libbpf's name of the program type, e.g. ``xdp``."""
        return type_name(ObjectKind.PROGRAM, self.type)

    @classmethod
    def from_id(cls, program_id: int, *, prog_type: int | None = None) -> Program:
        """Open a loaded program by its kernel id (WrongObjectType unless of ``prog_type``,
        when given)."""
        raw = check(lib.bpf_prog_get_fd_by_id(program_id), "opening program", f"id {program_id}")
        return cls._adopt(FD(raw, f"program id {program_id}"), prog_type, f"program id {program_id}")

    @classmethod
    def from_pin(
        cls, path: str | os.PathLike[str], *, read_only: bool = False,
        prog_type: int | None = None,
    ) -> Program:
        """Open a program pinned on bpffs; ``read_only`` asks only for read access, which
        is all that reading its info needs. A pin of anything but a program (of
        ``prog_type``, when given) raises WrongObjectType."""
        fd = open_pinned(path, "program", read_only=read_only)
        return cls._adopt(fd, prog_type, os.fspath(path))

    @classmethod
    def _adopt(cls, fd: FD, prog_type: int | None, where: str) -> Program:
        """Own a fresh fd once it is known to hold a program; it is closed otherwise."""
        info = adopt(fd, ObjectKind.PROGRAM, prog_type, where, program_info)
        fd.what = f"program {info.name!r}"
        return cls(fd, info.name, info.type)

    def dup(self) -> Program:
        """A second handle on the program, with its own fd (e.g. to outlive its object)."""
        return type(self)(self._fd.dup(), self.name, self.type)

    def info(self) -> ProgramInfo:
        return program_info(self.fd)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the program at ``path`` on bpffs."""
        check(lib.bpf_obj_pin(self.fd, os.fsencode(path)), "pinning program", str(path))

    def test_run(
        self, data: bytes, *, repeat: int = 1, flags: int = 0, batch_size: int = 0,
        context: bytes | None = None,
    ) -> ProgramRun:
        """Run the program on ``data`` in the kernel (BPF_PROG_RUN)."""
        return run_program(
            self.fd, data, repeat=repeat, flags=flags, batch_size=batch_size, context=context
        )

    def __repr__(self) -> str:
        return f"<Program {self.name!r} {'closed' if self.closed else self.type_name}>"


def enable_run_time_stats() -> FD:
    """Turn on the kernel's per-program run-time accounting while the returned fd is open
    (close it, or use it as a context manager)."""
    raw = check(lib.bpf_enable_stats(lib.BPF_STATS_RUN_TIME), "enabling BPF run-time stats")
    return FD(raw, "the BPF run-time stats switch")
