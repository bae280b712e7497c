"""What is particular to the tc entry points (the verdict, bypass and differential tables run
every entry point; see their modules): one policy and one set of counters for all three
programs, and sk_buffs as large as BPF_PROG_RUN builds them.

BPF_PROG_RUN builds a linear sk_buff of at most a page (less its head and tail room), so
headers in the pages of a non-linear one (read copied, with bpf_skb_load_bytes: see enum
pk_read in kern/pingkiller.bpf.c) are not reached from here unless the kernel takes a linear
size in the context (``data_end``), which this one refuses; tests/e2e/test_big_frames.py
sends such sk_buffs through a veth. Frames behind a deep tag stack or a long chain are read
copied here as well: the bypass and differential tables run them.
Nor can it set a VLAN tag in the sk_buff's metadata (``vlan_present``): a frame whose tag
the stack moved there reaches the program untagged, which every table here runs.
"""

from __future__ import annotations

import errno
import struct

import fuzz
import pytest
from frames import V4_DST, V4_SRC, echo4, echo6

from pingkiller import abi
from pingkiller.bpf import BpfError
from pingkiller.model import enums

pytestmark = pytest.mark.root

R = enums.Reason
TC = pytest.mark.parametrize("entry", fuzz.TC_ENTRIES, indirect=True, ids=str)
SKB_CONTEXT = 192  # sizeof(struct __sk_buff)
SKB_DATA_END = 80  # offsetof(struct __sk_buff, data_end)


def test_one_policy_and_one_set_of_counters_for_every_entry_point(dp):
    dp.rule(f"{V4_SRC}/32", enums.RuleAction.BLOCK)
    frame = echo4()
    for entry in fuzz.ENTRIES:
        dp.select(entry)
        dp.run(frame).verify(frame, R.DROP_BLOCK)
    assert dp.counter(R.DROP_BLOCK) == (3, 3 * len(frame.data))
    assert dp.hits(f"{V4_SRC}/32") == 3
    assert dp.counter(abi.CounterSlot.EVENTS_SENT) == (3, 0)


def test_events_name_the_hook_and_direction(dp):
    frame = echo6()
    seen = []
    for entry in fuzz.ENTRIES:
        dp.select(entry)
        (event,) = dp.run(frame).events
        seen.append((event.hook, event.direction, event.where))
    assert seen == [
        (enums.Hook.XDP, enums.Direction.IN, ""),
        (enums.Hook.TC, enums.Direction.IN, "tc in"),
        (enums.Hook.TC, enums.Direction.OUT, "tc out"),
    ]


@TC
def test_a_pass_is_tcx_next_so_later_programs_run(dp):
    outcome = dp.run(echo4())
    assert outcome.retval == abi.TCX_NEXT == -1  # not TC_ACT_OK (0), which ends the chain


@TC
@pytest.mark.parametrize("family", [4, 6])
def test_the_largest_sk_buff_prog_run_builds_is_judged(dp, family):
    """About a page: the whole frame sits in the linear part the program reads directly."""
    padding = b"p" * 3600
    frame = (echo4 if family == 4 else echo6)(payload=padding)
    dp.configure(default_action=enums.DefaultAction.DROP)
    dp.run(frame).verify(frame, R.DROP_DEFAULT)
    with pytest.raises(BpfError) as refused:  # a page and more: no sk_buff
        dp.program.test_run(frame.data + bytes(4096))
    assert refused.value.errno == errno.EINVAL


@TC
def test_a_non_linear_sk_buff_is_judged(dp):
    """Where the kernel builds a non-linear sk_buff from a linear size in the context
    (``data_end``), the ping is judged all the same: its headers are read copied."""
    frame = echo4(payload=b"p" * 1400)
    context = bytearray(SKB_CONTEXT)
    struct.pack_into("=I", context, SKB_DATA_END, 14 + 8)  # Ethernet, half the IP header
    dp.configure(default_action=enums.DefaultAction.DROP)
    try:
        result = dp.program.test_run(frame.data, context=bytes(context))
    except BpfError as err:
        if err.errno != errno.EINVAL:
            raise
        pytest.skip("this kernel's BPF_PROG_RUN builds only linear sk_buffs (data_end refused)")
    assert fuzz.signed(result.retval) == abi.TC_ACT_SHOT
    (event,) = dp.drain()
    assert (event.reason, event.length, event.src) == (R.DROP_DEFAULT, len(frame.data), V4_SRC)
    assert event.dst == V4_DST
