"""Typed errors of the BPF binding: messages, errno, the verifier-log summary (no root)."""

from __future__ import annotations

import errno
import os

import pytest

from pingkiller.bpf.errors import (
    ENOTSUPP,
    BpfError,
    NotSupportedError,
    VerifierError,
    WrongObjectType,
    check,
    error_from_errno,
    summarize_verifier_log,
    verifier_cause,
)

PACKET_LOG = """\
0: R1=ctx() R10=fp0
; unsigned char *data = (unsigned char *)(long)ctx->data; @ bad.c:4
0: (61) r1 = *(u32 *)(r1 +0)          ; R1=pkt(r=0)
1: (71) r1 = *(u8 *)(r1 +0)
invalid access to packet, off=0 size=1, R1(id=0,off=0,r=0)
R1 offset is outside of the packet
processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""

LOOP_LOG = """\
func#0 @0
0: R1=ctx() R10=fp0
back-edge from insn 5 to 2
infinite loop detected at insn 3
verification time 41 usec
stack depth 0
processed 19 insns (limit 1000000) max_states_per_insn 1 total_states 2 peak_states 2
"""

MAP_LOG = """\
0: R1=ctx() R10=fp0
5: (85) call bpf_map_lookup_elem#1
6: (61) r0 = *(u32 *)(r0 +0)
R0 invalid mem access 'map_value_or_null'
verification time 12 usec
stack depth 8


"""

FRAMED_LOG = """\
-- BEGIN PROG LOAD LOG --
0: R1=ctx() R10=fp0
0: (95) exit
R0 !read_ok
processed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0
-- END PROG LOAD LOG --
"""


@pytest.mark.parametrize(
    ("log", "cause", "summary"),
    [
        (PACKET_LOG, "R1 offset is outside of the packet",
         "invalid access to packet, off=0 size=1, R1(id=0,off=0,r=0): "
         "R1 offset is outside of the packet"),
        (LOOP_LOG, "infinite loop detected at insn 3", "infinite loop detected at insn 3"),
        (MAP_LOG, "R0 invalid mem access 'map_value_or_null'",
         "6: (61) r0 = *(u32 *)(r0 +0): R0 invalid mem access 'map_value_or_null'"),
        (FRAMED_LOG, "R0 !read_ok", "0: (95) exit: R0 !read_ok"),
        ("  only reason, indented  \n", "only reason, indented", "only reason, indented"),
        ("Processed 3 insns\nPROCESSED again\nreal cause\nprocessed 1 insns\n", "real cause",
         "real cause"),
        ("[13] STRUCT drm_rect size=16 vlen=4\n\tx1 type_id=2\n", "x1 type_id=2",
         "[13] STRUCT drm_rect size=16 vlen=4: x1 type_id=2"),
        ("0: (79) r6 = *(u64 *)(r1 +0)\ninvalid bpf_context access off=0 size=8\n",
         "invalid bpf_context access off=0 size=8",
         "0: (79) r6 = *(u64 *)(r1 +0): invalid bpf_context access off=0 size=8"),
    ],
    ids=["packet", "loop", "map-null", "framed", "single", "case-insensitive-noise", "btf",
         "context"],
)
def test_summary_is_the_cause_with_the_line_that_explains_it(log, cause, summary):
    """The cause is the last meaningful line; the summary adds the line before when the
    cause is a register's, an indented BTF member's or a context access's complaint."""
    assert verifier_cause(log) == cause
    assert summarize_verifier_log(log) == summary


def test_summary_of_a_truncated_log_drops_the_cut_line():
    """Since 6.4 a full buffer keeps the end of the log (its first line is cut); before,
    the beginning (its last line is cut, and there is no final newline)."""
    tail = "et, off=0 size=1, R1(id=0,off=0,r=0)\nR1 offset is outside of the packet\n"
    assert verifier_cause(tail, truncated=True) == "R1 offset is outside of the packet"
    assert summarize_verifier_log(tail, truncated=True) == "R1 offset is outside of the packet"
    head = "0: R1=ctx() R10=fp0\n0: (61) r1 = *(u32 *)(r1 +0)\n1: (71) r1 = *(u8 *)(r"
    assert summarize_verifier_log(head, truncated=True) == (
        "0: R1=ctx() R10=fp0: 0: (61) r1 = *(u32 *)(r1 +0)"
    )
    cut = "ide of the packet\nprocessed 2 insns (limit 1000000)\n"
    assert verifier_cause(cut, truncated=True) == (
        "the verifier's reason did not fit in the log buffer"
    )
    err = VerifierError(errno.ENOSPC, "p", tail, truncated=True)
    assert err.truncated and err.log == tail
    assert str(err).endswith("; the log is truncated)")


@pytest.mark.parametrize(
    "log",
    ["", "\n\n   \n", "processed 0 insns\nverification time 1 usec\nstack depth 0\n"],
    ids=["empty", "blank", "noise-only"],
)
def test_summary_of_a_log_without_reason(log):
    assert summarize_verifier_log(log) == "the verifier gave no reason (empty log)"


def test_bpf_error_carries_errno_and_operation():
    err = BpfError(errno.ENOENT, "opening pinned map", "/sys/fs/bpf/x")
    assert isinstance(err, OSError)
    assert err.errno == errno.ENOENT
    assert err.operation == "opening pinned map"
    assert err.detail == "/sys/fs/bpf/x"
    assert str(err) == f"opening pinned map: {os.strerror(errno.ENOENT)} (/sys/fs/bpf/x)"


def test_bpf_error_without_detail():
    err = BpfError(errno.EPERM, "loading BPF object")
    assert str(err) == f"loading BPF object: {os.strerror(errno.EPERM)}"
    assert "()" not in str(err)


def test_kernel_internal_enotsupp_gets_a_readable_message():
    err = BpfError(ENOTSUPP, "attaching XDP program")
    assert ENOTSUPP == 524
    assert str(err) == "attaching XDP program: operation not supported"
    assert "Unknown error" not in str(err)


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (ENOTSUPP, NotSupportedError),
        (errno.EOPNOTSUPP, NotSupportedError),
        (errno.EPERM, BpfError),
        (errno.EINVAL, BpfError),
        (errno.ENOENT, BpfError),
        (errno.EBUSY, BpfError),
        (errno.E2BIG, BpfError),
    ],
)
def test_error_from_errno_picks_the_type(err, kind):
    made = error_from_errno(err, "doing a thing", "detail")
    assert type(made) is kind
    assert made.errno == err
    assert made.operation == "doing a thing"
    assert isinstance(made, BpfError)


def test_check_passes_results_and_raises_negative_errno():
    assert check(0, "op") == 0
    assert check(7, "op") == 7
    with pytest.raises(BpfError) as caught:
        check(-errno.EBUSY, "attaching", "ifindex 3")
    assert caught.value.errno == errno.EBUSY
    assert str(caught.value).endswith("(ifindex 3)")
    with pytest.raises(NotSupportedError):
        check(-ENOTSUPP, "op")


def test_verifier_error_prints_the_cause():
    err = VerifierError(errno.EACCES, "pingkiller", PACKET_LOG)
    assert isinstance(err, BpfError) and isinstance(err, OSError)
    assert err.errno == errno.EACCES
    assert err.program == "pingkiller"
    assert err.log == PACKET_LOG
    assert err.cause == "R1 offset is outside of the packet"
    assert err.summary == (
        "invalid access to packet, off=0 size=1, R1(id=0,off=0,r=0): "
        "R1 offset is outside of the packet"
    )
    assert not err.truncated
    assert str(err) == (
        f"loading program 'pingkiller': {os.strerror(errno.EACCES)} ({err.summary})"
    )


def test_verifier_error_with_empty_log():
    err = VerifierError(errno.EINVAL, "p", "")
    assert err.summary == "the verifier gave no reason (empty log)"
    assert "no reason" in str(err)


def test_wrong_object_type_names_what_it_really_is():
    err = WrongObjectType("/sys/fs/bpf/x/counters", "a link (xdp)", "a map (percpu_array)")
    assert isinstance(err, BpfError) and err.errno == errno.EINVAL
    assert (err.expected, err.actual) == ("a link (xdp)", "a map (percpu_array)")
    assert str(err) == (
        f"opening a link (xdp): {os.strerror(errno.EINVAL)} "
        "(/sys/fs/bpf/x/counters is a map (percpu_array), not a link (xdp))"
    )
