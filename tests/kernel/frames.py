"""Frame builders for the kernel tests: bytes plus what the XDP parser should learn from them.

Layer 2 is built by hand (so VLAN tags are exactly what the test asks for) and layers 3/4
with scapy, always with explicit addresses and MACs: nothing here resolves a route or a
neighbour, and nothing is ever sent. Every :class:`Frame` records where each header the
program reads ends and what a frame cut inside it must be judged as, so truncation tests
can be generated for every cut point.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from scapy.layers.inet import IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
)
from scapy.packet import Packet, Raw
from scapy.utils import checksum

MAC_DST = bytes.fromhex("020000000002")
MAC_SRC = bytes.fromhex("020000000001")
V4_SRC, V4_DST = "198.18.0.1", "198.18.0.2"
V6_SRC, V6_DST = "fd00::1", "fd00::2"

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_HLEN = 14

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59

IP_MF = 1  # scapy's flags field: bit 0 = MF, bit 1 = DF

# What the parser concludes about the transport layer (the BPF program's pk_l4_class).
PING, SUSPECT, OTHER, FRAGMENT, UNPARSED = "ping", "suspect", "other", "fragment", "unparsed"


@dataclass(frozen=True)
class Icmp:
    """The ICMP header fields as the program reports them (id and seq in host order)."""

    type: int
    code: int = 0
    id: int = 0
    seq: int = 0


@dataclass(frozen=True)
class Parsed:
    """What the parser learns: the transport class and the event fields that go with it."""

    l4: str
    family: int = 0
    protocol: int = 0
    icmp: Icmp | None = None  # None: the ICMP header was not read (fields stay 0)


@dataclass(frozen=True)
class Header:
    """A header the program reads: it ends at ``end``; a frame cut before that is ``cut``."""

    name: str
    end: int
    cut: Parsed


@dataclass(frozen=True)
class Frame:
    """A frame, its addresses, what a full parse yields (under an icmp set that makes it a
    ping when ``l4 == PING``) and the headers a truncation can fall into."""

    data: bytes
    parsed: Parsed
    src: bytes = bytes(16)  # as in the event: network order, IPv4 in the first 4 bytes
    dst: bytes = bytes(16)
    headers: tuple[Header, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.data)

    def cut(self, length: int) -> Frame:
        """The first ``length`` bytes, with what the parser should make of them."""
        if length >= len(self.data):
            return self
        for header in self.headers:
            if length < header.end:
                addresses = (self.src, self.dst) if header.cut.family else (bytes(16), bytes(16))
                return Frame(self.data[:length], header.cut, *addresses, headers=())
        # Cut inside a payload the program never reads: same parse, shorter frame.
        return replace(self, data=self.data[:length], headers=())

    def expect(self, parsed: Parsed) -> Frame:
        """The same bytes with another expected parse (addresses only when IP was parsed)."""
        if parsed.family:
            return replace(self, parsed=parsed, headers=())
        return Frame(self.data, parsed)

    def cut_points(self) -> list[int]:
        """Every length from a bare Ethernet header up to the whole frame."""
        return list(range(ETH_HLEN, len(self.data) + 1))


def event_address(address: str) -> bytes:
    """An address as the event carries it: 16 bytes, IPv4 in the first 4."""
    return ipaddress.ip_address(address).packed.ljust(16, b"\0")


# Layer 2


def l2(ethertype: int, vlans: Sequence[int] = (), vid: int = 100) -> bytes:
    """Ethernet header, then one 4-byte tag per TPID in ``vlans`` (outermost first)."""
    types = [*vlans, ethertype]
    out = MAC_DST + MAC_SRC + struct.pack("!H", types[0])
    for i, inner in enumerate(types[1:]):
        out += struct.pack("!HH", vid + i, inner)
    return out


def l2_headers(vlans: Sequence[int]) -> tuple[Header, ...]:
    unparsed = Parsed(UNPARSED)
    headers = [Header("ethernet", ETH_HLEN, unparsed)]
    headers += [Header(f"vlan{i}", ETH_HLEN + 4 * (i + 1), unparsed) for i in range(len(vlans))]
    return tuple(headers)


def non_ip(ethertype: int = ETH_P_ARP, payload: bytes = bytes(28), vlans: Sequence[int] = ()) -> Frame:
    """A frame whose (inner) ethertype is neither IPv4 nor IPv6."""
    return Frame(l2(ethertype, vlans) + payload, Parsed(OTHER), headers=l2_headers(vlans))


# Transport headers (raw, so any type/code/id/seq is possible)


def icmp_bytes(icmp: Icmp, payload: bytes = b"") -> bytes:
    """An ICMP or ICMPv6 header with id/seq in the echo position (checksum left 0 for v6)."""
    return struct.pack("!BBHHH", icmp.type, icmp.code, 0, icmp.id, icmp.seq) + payload


def icmp4_bytes(icmp: Icmp, payload: bytes = b"") -> bytes:
    """ICMPv4 with a correct checksum."""
    raw = bytearray(icmp_bytes(icmp, payload))
    struct.pack_into("!H", raw, 2, checksum(bytes(raw)))
    return bytes(raw)


def tcp_bytes() -> bytes:
    return bytes(TCP(sport=40000, dport=80, flags="S"))


def udp_bytes(payload: bytes = b"hello") -> bytes:
    return bytes(UDP(sport=40000, dport=53) / Raw(payload))


# IPv4


def ipv4(
    l4: bytes,
    *,
    proto: int = IPPROTO_ICMP,
    src: str = V4_SRC,
    dst: str = V4_DST,
    vlans: Sequence[int] = (),
    options: int = 0,
    mf: bool = False,
    offset: int = 0,
    icmp: Icmp | None = None,
    l4_class: str | None = None,
    patch: Callable[[bytearray], None] | None = None,
) -> Frame:
    """An IPv4 frame; ``options`` is the number of 4-byte option words (IHL = 5 + options).

    ``icmp`` is what the transport header holds when it is ICMP; ``l4_class`` overrides the
    class a full parse yields (default: PING for ICMP, OTHER otherwise, FRAGMENT when
    ``offset``). ``patch`` edits the IP header bytes after scapy built them.
    """
    header = IP(
        src=src,
        dst=dst,
        proto=proto,
        flags=IP_MF if mf else 0,
        frag=offset,
        options=[IPOption_NOP()] * (4 * options),
    )
    ip = bytearray(bytes(header / Raw(l4)))
    if patch is not None:
        patch(ip)
    head = l2(ETH_P_IP, vlans)
    ihl_end = len(head) + 20 + 4 * options
    headers = [*l2_headers(vlans), Header("ipv4", ihl_end, Parsed(UNPARSED))]
    protocol = proto
    if offset:
        parsed = Parsed(FRAGMENT, 4, protocol)
        # Everything after the IP header is payload the program does not read.
    elif proto == IPPROTO_ICMP:
        cut = Parsed(SUSPECT if mf else UNPARSED, 4, protocol)
        headers.append(Header("icmp", ihl_end + 8, cut))
        parsed = Parsed(l4_class or PING, 4, protocol, icmp)
    else:
        parsed = Parsed(l4_class or OTHER, 4, protocol)
    return Frame(head + bytes(ip), parsed, event_address(src), event_address(dst), tuple(headers))


def echo4(
    type: int = 8,
    *,
    code: int = 0,
    id: int = 0x1234,
    seq: int = 7,
    payload: bytes = b"pingkiller",
    **kwargs: object,
) -> Frame:
    """An ICMPv4 message (by default an echo request) in an IPv4 frame."""
    icmp = Icmp(type, code, id, seq)
    return ipv4(icmp4_bytes(icmp, payload), icmp=icmp, **kwargs)  # type: ignore[arg-type]


# IPv6


@dataclass(frozen=True)
class Ext:
    """An IPv6 extension header: its protocol number and a builder given the next header."""

    proto: int
    build: Callable[[int], Packet]
    fragment_offset: int = 0

    def raw(self, nexthdr: int) -> bytes:
        return bytes(self.build(nexthdr))


def hop_by_hop(pad: int = 0) -> Ext:
    """Hop-by-hop options; ``pad`` bytes of PadN make it longer than 8 bytes."""
    options = [PadN(optdata=b"\0" * pad)] if pad else []
    return Ext(0, lambda nh: IPv6ExtHdrHopByHop(nh=nh, options=options))


def routing(addresses: int = 1) -> Ext:
    hops = [f"fd00::{i + 10:x}" for i in range(addresses)]
    return Ext(43, lambda nh: IPv6ExtHdrRouting(nh=nh, addresses=hops))


def dest_opts(pad: int = 0) -> Ext:
    options = [PadN(optdata=b"\0" * pad)] if pad else []
    return Ext(60, lambda nh: IPv6ExtHdrDestOpt(nh=nh, options=options))


def fragment(offset: int = 0, more: bool = True) -> Ext:
    """A fragment header; ``offset`` in 8-byte units."""
    return Ext(
        44, lambda nh: IPv6ExtHdrFragment(nh=nh, offset=offset, m=int(more), id=0xBEEF), offset
    )


def ipv6(
    l4: bytes,
    *,
    nh: int = IPPROTO_ICMPV6,
    src: str = V6_SRC,
    dst: str = V6_DST,
    ext: Sequence[Ext] = (),
    vlans: Sequence[int] = (),
    icmp: Icmp | None = None,
    l4_class: str | None = None,
) -> Frame:
    """An IPv6 frame: header, the extension headers ``ext`` in order, then ``l4`` (protocol
    ``nh``). The expected parse follows the data path's walk: 8 headers in place, a
    longer chain with bpf_loop as far as 8 + 512 (more than a page of headers)."""
    chain = [e.proto for e in ext] + [nh]
    raw_ext = [e.raw(chain[i + 1]) for i, e in enumerate(ext)]
    ip = bytes(IPv6(src=src, dst=dst, nh=chain[0]) / Raw(b"".join(raw_ext) + l4))
    head = l2(ETH_P_IPV6, vlans)
    at = len(head) + 40
    headers = [*l2_headers(vlans), Header("ipv6", at, Parsed(UNPARSED))]
    fragmented = False
    parsed: Parsed | None = None
    for i, (e, raw) in enumerate(zip(ext, raw_ext, strict=True)):
        if i == 8 + 512:  # the walk stops: still an extension header
            parsed = Parsed(SUSPECT, 6)
            break
        at += len(raw)
        headers.append(Header(f"ext{i}-{e.proto}", at, Parsed(SUSPECT if fragmented else UNPARSED, 6)))
        if e.proto == 44:
            if e.fragment_offset:
                parsed = Parsed(FRAGMENT, 6)
                break
            fragmented = True
    if parsed is None:
        if nh == IPPROTO_ICMPV6:
            cut = Parsed(SUSPECT if fragmented else UNPARSED, 6, nh)
            headers.append(Header("icmpv6", at + 8, cut))
            parsed = Parsed(l4_class or PING, 6, nh, icmp)
        else:
            parsed = Parsed(l4_class or OTHER, 6, nh)
    return Frame(head + ip, parsed, event_address(src), event_address(dst), tuple(headers))


def echo6(
    type: int = 128,
    *,
    code: int = 0,
    id: int = 0x4321,
    seq: int = 9,
    payload: bytes = b"pingkiller",
    **kwargs: object,
) -> Frame:
    """An ICMPv6 message (by default an echo request) in an IPv6 frame."""
    icmp = Icmp(type, code, id, seq)
    return ipv6(icmp_bytes(icmp, payload), icmp=icmp, **kwargs)  # type: ignore[arg-type]
