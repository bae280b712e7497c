"""BPF_PROG_RUN: run a loaded program on a buffer in the kernel."""

from __future__ import annotations

from dataclasses import dataclass

from pingkiller.bpf._ffi import ffi, lib
from pingkiller.bpf.errors import check

XDP_ABORTED = lib.XDP_ABORTED
XDP_DROP = lib.XDP_DROP
XDP_PASS = lib.XDP_PASS
XDP_TX = lib.XDP_TX
XDP_REDIRECT = lib.XDP_REDIRECT
LIVE_FRAMES = lib.BPF_F_TEST_XDP_LIVE_FRAMES

# Room for what a program may add in front of or behind the frame.
_HEADROOM = 256


@dataclass(frozen=True)
class ProgramRun:
    """The outcome of BPF_PROG_RUN: return value, output frame, mean ns per repetition."""

    retval: int
    data: bytes
    duration_ns: int


def run_program(
    program_fd: int,
    data: bytes,
    *,
    repeat: int = 1,
    flags: int = 0,
    batch_size: int = 0,
    context: bytes | None = None,
) -> ProgramRun:
    """Run the program ``repeat`` times on ``data``; ``context`` is e.g. a struct xdp_md."""
    data_in = ffi.from_buffer(data)
    data_out = ffi.new("char[]", len(data) + _HEADROOM)
    opts = ffi.new("struct bpf_test_run_opts *")
    opts.sz = ffi.sizeof("struct bpf_test_run_opts")
    opts.data_in = data_in
    opts.data_size_in = len(data)
    if not flags & LIVE_FRAMES:
        opts.data_out = data_out
        opts.data_size_out = len(data) + _HEADROOM
    opts.repeat = repeat
    opts.flags = flags
    opts.batch_size = batch_size
    if context is not None:
        ctx_in = ffi.from_buffer(context)
        opts.ctx_in = ctx_in
        opts.ctx_size_in = len(context)
    check(lib.bpf_prog_test_run_opts(program_fd, opts), "running program (BPF_PROG_RUN)")
    out = bytes(ffi.buffer(data_out, opts.data_size_out)) if opts.data_out else b""
    return ProgramRun(retval=opts.retval, data=out, duration_ns=opts.duration)
