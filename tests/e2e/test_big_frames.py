"""Big frames on a real path (issue #21, item 3): no header is read at a wrapped offset.

A veth pair at the largest MTU it takes (65535 here) carries frames that a peer namespace
writes on a packet socket to the host's end, where pingkiller judges them under generic
XDP (which hands it the frame whole, linear) or at tc ingress (where the sk_buff of a frame
larger than a page holds little more than its Ethernet header in its linear part; the rest
is in pages). Echo requests behind IPv6 extension-header chains whose upper-layer header
lies past 8, 16, 32 and 60 KiB are dropped; a TCP SYN behind the same chains is passed.

What the host's own stack makes of each frame is seen first, with nothing attached: it
answers each echo request and each SYN (with a SYN-ACK) that it accepts, so an answer
missing later is pingkiller's drop. Linux accepts a chain of at most 12 extension headers
since 6.18.x / 7.1 (IP6_MAX_EXT_HDRS_CNT; before, any number), which reaches 24 KiB: the
deeper chains are judged by pingkiller's counters alone here, frame by frame and byte by
byte, as they would be on a kernel that delivers them.

The chains are what Linux accepts: 8-byte destination-options headers (padding only) and
2048-byte ones, each filled with eight options of an unknown type whose action is "skip"
(Linux refuses more than 7 bytes of padding in a row, and more than 8 options in one
destination-options header).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import pingkiller
from pingkiller import Reason
from pingkiller.bpf import tcx_supported
from pingkiller.demo.sandbox import IP, Peer, Sandbox, run

pytestmark = pytest.mark.root

KIB = 1024
SMALL, BIG = 8, 2048  # destination-options header sizes: the smallest, the largest
LINUX_MAX_EXT_HDRS = 12  # IP6_MAX_EXT_HDRS_CNT: what Linux delivers, since 6.18.x / 7.1
ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q = 0x0800, 0x86DD, 0x8100
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_ICMPV6, IPPROTO_DSTOPTS = 1, 6, 58, 60
SKIP_OPTION = 0x1E  # RFC 3692 experimental option type; action bits 00: skip it
TCP_SYN = 0x02
ECHO_ID = 0x7B1F
PLAIN_PAYLOAD = 61 * KIB  # a big frame with no chain at all


@dataclass(frozen=True)
class Chain:
    """What stands between the Ethernet header and the upper-layer header."""

    sizes: tuple[int, ...]  # destination-options headers, in bytes
    tags: int = 0  # priority tags (802.1Q, VID 0) before the IPv6 header

    @property
    def upper(self) -> int:
        """The offset of the upper-layer header in the frame."""
        return 14 + 4 * self.tags + 40 + sum(self.sizes)


# Named by the offset the upper-layer header lies just past. "big": 2048-byte headers only
# (the first 8 of them are those the program reads inline); "small-then-big": small ones
# first, so that the big ones lie in the walk (the frame is the first).
CHAINS = {
    "8k-small-then-big": Chain((SMALL,) * 8 + (BIG,) * 4),
    "8k-big": Chain((BIG,) * 4),
    "8k-tagged": Chain((SMALL,) * 8 + (BIG,) * 4, tags=3),
    "16k-small-then-big": Chain((SMALL,) * 4 + (BIG,) * 8),
    "16k-big": Chain((BIG,) * 8),
    "24k-big": Chain((BIG,) * 12),
    "32k-small-then-big": Chain((SMALL,) * 8 + (BIG,) * 16),
    "32k-big": Chain((BIG,) * 16),
    "60k-small-then-big": Chain((SMALL,) * 8 + (BIG,) * 30),
    "60k-big": Chain((BIG,) * 30),
}
# What any Linux delivers: its host answers these with nothing attached.
DELIVERED = {name for name, chain in CHAINS.items() if len(chain.sizes) <= LINUX_MAX_EXT_HDRS}

HOOKS: dict[str, dict[str, str]] = {
    "generic-xdp": {"mode": "generic"},
    "tc": {"hook": "tc"},
}


# --- Frames (built by hand: exact sizes, nothing padded behind our back) --------------------


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def with_checksum(segment: bytes, at: int, pseudo: bytes = b"") -> bytes:
    """``segment`` with the Internet checksum of ``pseudo + segment`` at offset ``at``."""
    return segment[:at] + struct.pack("!H", checksum(pseudo + segment)) + segment[at + 2:]


def dest_opts(nexthdr: int, size: int) -> bytes:
    """A destination-options header of ``size`` bytes (a multiple of 8, at most 2048) that
    Linux accepts: PadN alone when small, else at most 8 skip-options of up to 257 bytes."""
    room = size - 2
    if room <= 7:
        return bytes([nexthdr, 0, 1, room - 2]) + bytes(room - 2)
    options = b""
    while room:
        take = min(room, 257)
        if 0 < room - take < 2:  # leave a whole option (>= 2 bytes) for the rest
            take -= 2
        options += bytes([SKIP_OPTION, take - 2]) + bytes(take - 2)
        room -= take
    assert len(options) == size - 2 and options.count(SKIP_OPTION) <= 8
    return bytes([nexthdr, size // 8 - 1]) + options


def extension_headers(sizes: tuple[int, ...], final: int) -> bytes:
    """Destination-options headers of ``sizes``, the last one naming ``final``."""
    names = [IPPROTO_DSTOPTS] * (len(sizes) - 1) + [final]
    return b"".join(dest_opts(name, size) for name, size in zip(names, sizes, strict=True))


@dataclass(frozen=True)
class Link:
    """The sandbox veth at its largest MTU, as frames from the peer to the host name it."""

    peer: Peer
    host_mac: bytes
    peer_mac: bytes
    mtu: int

    def ethernet(self, ethertype: int, tags: int = 0) -> bytes:
        stack = struct.pack("!HH", ETH_P_8021Q, 0) * tags  # priority tags: VID 0
        return self.host_mac + self.peer_mac + stack + struct.pack("!H", ethertype)

    def ipv6(self, chain: Chain, protocol: int, segment: bytes, checksum_at: int) -> bytes:
        """Ethernet, ``chain``, then ``segment`` of ``protocol`` with its checksum."""
        src = ipaddress.IPv6Address(self.peer.peer_v6).packed
        dst = ipaddress.IPv6Address(self.peer.host_v6).packed
        pseudo = src + dst + struct.pack("!I3xB", len(segment), protocol)
        segment = with_checksum(segment, checksum_at, pseudo)
        ext = extension_headers(chain.sizes, protocol) if chain.sizes else b""
        first = IPPROTO_DSTOPTS if chain.sizes else protocol
        header = struct.pack("!IHBB", 6 << 28, len(ext) + len(segment), first, 64) + src + dst
        frame = self.ethernet(ETH_P_IPV6, chain.tags) + header + ext + segment
        assert len(frame) - 14 - 4 * chain.tags <= self.mtu
        return frame

    def echo6(self, chain: Chain, seq: int, payload: int = 64) -> bytes:
        body = struct.pack("!BBHHH", 128, 0, 0, ECHO_ID, seq) + bytes(payload)
        return self.ipv6(chain, IPPROTO_ICMPV6, body, 2)

    def syn6(self, chain: Chain, sport: int, dport: int) -> bytes:
        segment = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, TCP_SYN, 65535, 0, 0)
        return self.ipv6(chain, IPPROTO_TCP, segment, 16)

    def echo4(self, seq: int, payload: int) -> bytes:
        body = with_checksum(struct.pack("!BBHHH", 8, 0, 0, ECHO_ID, seq) + bytes(payload), 2)
        src = ipaddress.IPv4Address(self.peer.peer_v4).packed
        dst = ipaddress.IPv4Address(self.peer.host_v4).packed
        header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(body), 0, 0, 64, IPPROTO_ICMP, 0)
        header = with_checksum(header + src + dst, 10)
        return self.ethernet(ETH_P_IP) + header + body


# --- Sending frames and seeing what the host answers ----------------------------------------

# Run in the peer's namespace (stdlib only: it starts fast). Reads [[name, frame hex, kind,
# key]] as JSON on stdin, sends each frame on a packet socket and prints the names of those
# the host answered: kind "echo" by an echo reply with id ECHO_ID and seq key, kind "syn" by
# a SYN-ACK or RST to TCP port key. Stops when all are answered, or WAIT seconds after the
# last frame was sent.
PROBER = r"""
import json, socket, struct, sys, time
iface, wait, echo_id = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
probes = json.load(sys.stdin)
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: room for every answer
sock.setsockopt(socket.SOL_SOCKET, 32, 64 << 20)  # SO_SNDBUFFORCE
sock.bind((iface, 0))
wanted = {(kind, key): name for name, _, kind, key in probes}
answered = set()
def answer(frame):
    if frame[12:14] == b"\x86\xdd":
        protocol, l4 = frame[20], frame[54:]
    elif frame[12:14] == b"\x08\x00":
        protocol, l4 = frame[23], frame[14 + 4 * (frame[14] & 15):]
    else:
        return None
    if protocol in (1, 58) and l4[0] in (0, 129) and struct.unpack("!H", l4[4:6])[0] == echo_id:
        return "echo", struct.unpack("!H", l4[6:8])[0]
    if protocol == 6 and l4[13] & 0x16 in (0x12, 0x14, 0x04):  # SYN-ACK or RST
        return "syn", struct.unpack("!H", l4[2:4])[0]
    return None
def receive():
    while True:
        try:
            frame, address = sock.recvfrom(1 << 17, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        if address[2] != socket.PACKET_OUTGOING and answer(frame) in wanted:
            answered.add(wanted[answer(frame)])
for name, frame, kind, key in probes:
    sock.send(bytes.fromhex(frame))
    time.sleep(0.002)
    receive()
deadline = time.monotonic() + wait
while len(answered) < len(wanted) and time.monotonic() < deadline:
    time.sleep(0.01)
    receive()
print(json.dumps(sorted(answered)))
"""


@dataclass(frozen=True)
class Probe:
    name: str
    frame: bytes
    kind: str  # "echo" or "syn"
    key: int  # the echo's seq or the SYN's source port
    tags: int = 0

    def length_at(self, hook: str) -> int:
        """The length the hook counts: at tc, the stack has taken the outer tag into the
        sk_buff's metadata."""
        return len(self.frame) - (4 if hook == "tc" and self.tags else 0)


def answered(link: Link, probes: list[Probe], wait: float) -> set[str]:
    """Send ``probes`` from the peer; the names of those the host answered."""
    wire = [[p.name, p.frame.hex(), p.kind, p.key] for p in probes]
    result = subprocess.run(
        link.peer.exec_args([sys.executable, "-c", PROBER, link.peer.peer_ifname, str(wait),
                             str(ECHO_ID)]),
        input=json.dumps(wire), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def echo_probes(link: Link) -> list[Probe]:
    probes = [Probe(name, link.echo6(chain, seq), "echo", seq, chain.tags)
              for seq, (name, chain) in enumerate(CHAINS.items(), 1)]
    return [*probes, Probe("plain-60k-v6", link.echo6(Chain(()), 100, PLAIN_PAYLOAD), "echo", 100),
            Probe("plain-60k-v4", link.echo4(101, PLAIN_PAYLOAD), "echo", 101)]


def syn_probes(link: Link, dport: int, first_port: int) -> list[Probe]:
    return [Probe(name, link.syn6(chain, first_port + i, dport), "syn", first_port + i,
                  chain.tags)
            for i, (name, chain) in enumerate(CHAINS.items())]


def _link_info(command: list[str]) -> dict[str, object]:
    (info,) = json.loads(run(command).stdout)
    assert isinstance(info, dict)
    return info


def big_link(peer: Peer) -> Link:
    """The peer's veth at the largest MTU it takes, its two ends knowing each other."""
    mtu = int(str(_link_info([IP, "-d", "-j", "link", "show", "dev", peer.host_ifname])["max_mtu"]))
    assert mtu >= 61 * KIB, f"a veth takes an MTU of {mtu} only"
    run([IP, "link", "set", "dev", peer.host_ifname, "mtu", str(mtu)])
    peer.run([IP, "link", "set", "dev", peer.peer_ifname, "mtu", str(mtu)])
    assert peer.ping(peer.host_v6) == 1 and peer.ping(peer.host_v4) == 1  # neighbours known
    host_mac = _link_info([IP, "-j", "link", "show", "dev", peer.host_ifname])["address"]
    peer_mac = _link_info(peer.exec_args([IP, "-j", "link", "show", "dev", peer.peer_ifname]))[
        "address"]
    return Link(peer, bytes.fromhex(str(host_mac).replace(":", "")),
                bytes.fromhex(str(peer_mac).replace(":", "")), mtu)


@pytest.fixture
def link(sandbox: Sandbox) -> Link:
    return big_link(sandbox.add_peer())


@pytest.fixture
def listener(link: Link) -> Iterator[int]:
    """A TCP socket listening on the host's end: the port the SYNs go to."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as server:
        server.bind((link.peer.host_v6, 0))
        server.listen(64)
        yield server.getsockname()[1]


def attach(link: Link, hook: str) -> pingkiller.Attachment:
    """pingkiller on the host's end: every ping dropped, nothing pinned."""
    if hook == "tc" and not tcx_supported():
        pytest.skip("this kernel has no tcx (Linux 6.6+)")
    options = HOOKS[hook]
    return pingkiller.attach(link.peer.host_ifname, persist=False, **options)  # type: ignore[arg-type]


def test_each_chain_ends_just_past_its_name() -> None:
    for name, chain in CHAINS.items():
        crossing = int(name.split("k-")[0]) * KIB
        assert crossing < chain.upper <= crossing + BIG, name
    assert CHAINS["8k-small-then-big"].upper == 8310  # the frame: 8382 bytes as echo
    assert {"8k-small-then-big", "16k-big", "24k-big"} <= DELIVERED


@pytest.mark.parametrize("hook", HOOKS)
def test_pings_behind_chains_past_8_to_60_kib_are_dropped(
    pin_root: object, link: Link, hook: str
) -> None:
    probes = echo_probes(link)
    delivered = DELIVERED | {"plain-60k-v6", "plain-60k-v4"}
    assert answered(link, probes, wait=1.0) >= delivered  # the host answers each
    with attach(link, hook) as attachment:
        assert answered(link, probes, wait=0.5) == set(), "these pings got through"
        drops = attachment.stats().reasons[Reason.DROP_DEFAULT]
    # Every one of them, also those this kernel would discard itself, judged a ping.
    assert (drops.packets, drops.bytes) == (len(probes), sum(p.length_at(hook) for p in probes))


@pytest.mark.parametrize("hook", HOOKS)
def test_tcp_behind_chains_past_8_to_60_kib_is_passed(
    pin_root: object, link: Link, listener: int, hook: str
) -> None:
    before = answered(link, syn_probes(link, listener, 41000), wait=1.0)
    assert before >= DELIVERED  # SYN-ACKs
    with attach(link, hook) as attachment:
        probes = syn_probes(link, listener, 42000)
        assert answered(link, probes, wait=1.0) == before, "TCP was dropped"
        stats = attachment.stats()
    assert stats.dropped == 0
    assert stats.reasons[Reason.PASS_NOT_PING].packets >= len(probes)
