"""The netlink reply parser (pingkiller.bpf.netlink, tc's filter messages) never reads
past what a length claims: malformed replies raise BpfError (EBADMSG), nothing else."""

from __future__ import annotations

import errno
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingkiller.bpf import BpfError, tc
from pingkiller.bpf import netlink as nl


def message(kind: int, payload: bytes, *, flags: int = 0, seq: int = 1, length: int | None = None) -> bytes:
    size = nl.NLMSGHDR.size + len(payload) if length is None else length
    data = nl.NLMSGHDR.pack(size, kind, flags, seq, 0) + payload
    return data + bytes(nl.align(len(data)) - len(data))


def test_messages_follow_their_aligned_lengths() -> None:
    data = message(44, b"abc") + message(3, struct.pack("=i", 0), seq=2)
    parsed = list(nl.messages(data))
    assert [(seq, m.type, m.payload) for seq, _, m in parsed] == [
        (1, 44, b"abc"), (2, 3, bytes(4))]


@pytest.mark.parametrize("data", [
    message(44, b"abcd", length=64),  # claims more than is there
    message(44, b"", length=8),  # shorter than its own header
    message(44, b"") + b"\x01\x02",  # bytes after the last message
])
def test_malformed_messages_raise(data: bytes) -> None:
    with pytest.raises(BpfError) as raised:
        list(nl.messages(data))
    assert raised.value.errno == errno.EBADMSG


def test_attributes_mask_flags_keep_the_first_and_skip_padding() -> None:
    data = (nl.attribute(1, b"bpf\0") + nl.attribute(2 | nl.NLA_F_NESTED, nl.attribute(11, b"\7\0\0\0"))
            + nl.attribute(1, b"u32\0") + nl.attribute(7, b"x"))
    found = nl.attributes(data)
    assert nl.c_string(found[1]) == "bpf"
    assert nl.u32(nl.attributes(found[2])[11], "id") == 7
    assert found[7] == b"x"


@pytest.mark.parametrize("data", [
    struct.pack("=HH", 2, 1) + bytes(8),  # shorter than an attribute header: would never advance
    struct.pack("=HH", 40, 1) + bytes(8),  # longer than what is left
])
def test_malformed_attributes_raise(data: bytes) -> None:
    with pytest.raises(BpfError) as raised:
        nl.attributes(data)
    assert raised.value.errno == errno.EBADMSG


def test_a_u32_of_another_size_raises() -> None:
    with pytest.raises(BpfError, match="TCA_BPF_ID is 2 bytes"):
        nl.u32(b"\1\2", "TCA_BPF_ID")


def test_an_error_ack_carries_the_kernels_message() -> None:
    echoed = nl.NLMSGHDR.pack(36, 44, 5, 1, 0)
    payload = struct.pack("=i", -errno.EEXIST) + echoed + nl.attribute(
        nl.NLMSGERR_ATTR_MSG, b"Filter already exists\0")
    assert nl._ack_error(payload, nl.NLM_F_CAPPED | nl.NLM_F_ACK_TLVS) == (
        errno.EEXIST, "Filter already exists")
    assert nl._ack_error(struct.pack("=i", 0) + echoed, nl.NLM_F_CAPPED) == (0, "")
    with pytest.raises(BpfError):
        nl._ack_error(struct.pack("=i", -1), 0)


def tcmsg(handle: int, priority: int, protocol: int = 3) -> bytes:
    return struct.pack("=BxxxiIII", socket.AF_UNSPEC, 5, handle, 0xFFFFFFF2,
                       priority << 16 | socket.htons(protocol))


def test_filter_messages_parse_and_headers_are_skipped() -> None:
    options = (nl.attribute(11, struct.pack("=I", 42)) + nl.attribute(7, b"drop:[42]\0")
               + nl.attribute(8, struct.pack("=I", 1)))
    body = tcmsg(1, 3) + nl.attribute(1, b"bpf\0") + nl.attribute(11, struct.pack("=I", 0)) \
        + nl.attribute(2 | nl.NLA_F_NESTED, options)
    assert tc._filter_info(body) == tc.TcFilterInfo(
        priority=3, handle=1, kind="bpf", protocol=3, chain=0, prog_id=42, name="drop:[42]",
        direct_action=True)
    assert tc._filter_info(tcmsg(0, 3) + nl.attribute(1, b"bpf\0")) is None
    other = tc._filter_info(tcmsg(0x800, 7, 0x0800) + nl.attribute(1, b"u32\0")
                            + nl.attribute(2, b""))
    assert other is not None and (other.kind, other.protocol, other.prog_id) == ("u32", 0x0800, 0)
    with pytest.raises(BpfError):
        tc._filter_info(tcmsg(1, 3)[:12])


@given(st.binary(max_size=256))
def test_any_bytes_parse_or_raise_bpf_error(data: bytes) -> None:
    for parse in (lambda: list(nl.messages(data)), lambda: nl.attributes(data),
                  lambda: tc._filter_info(data)):
        try:
            parse()
        except BpfError as exc:
            assert exc.errno == errno.EBADMSG
