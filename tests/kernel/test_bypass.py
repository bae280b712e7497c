"""Bypass regressions (issue #4): ways to slip a ping past the policy, and collateral damage.

Every frame here wraps a ping in something a naive parser would give up on (VLAN and QinQ
tags, IPv6 extension headers, IPv4 options, fragments, IPv4-mapped addresses, overlong
header chains, a first fragment cut inside the ICMP header); each one must be dropped when
the policy says drop. The "no collateral" cases check the converse: neighbour discovery,
TCP and UDP pass under every ping-only policy.

Every case runs through each entry point: the XDP program and both tc programs.

Frames are built with scapy, independently of the struct builders in tests/fuzz.py, and
every case is also checked field by field (verdict, reason counter, hits, event) against
the oracle in tests/oracle.py.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence

import fuzz
import oracle
import pytest
from frames import MAC_DST, MAC_SRC, V4_DST, V4_SRC, V6_DST, V6_SRC
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
    fragment6,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

from pingkiller import abi
from pingkiller.model import enums

pytestmark = [
    pytest.mark.root,
    pytest.mark.parametrize("entry", fuzz.ENTRIES, indirect=True, ids=str),
]

R = enums.Reason
BLOCK, ALLOW = enums.RuleAction.BLOCK, enums.RuleAction.ALLOW
DROP = enums.DefaultAction.DROP
XDP_DROP, XDP_PASS = oracle.XDP_DROP, oracle.XDP_PASS

MACS = {"src": MAC_SRC.hex(":"), "dst": MAC_DST.hex(":")}

Rules = Sequence[tuple[str, enums.RuleAction]]



def judge(path: fuzz.DataPath, frame: Packet | bytes, rules: Rules = (),
          **config: object) -> fuzz.Observed:
    """Run ``frame`` under the policy; demand the oracle's verdict, counters, hits, event."""
    policy = oracle.Policy.make(
        [(ipaddress.ip_network(net), action) for net, action in rules],
        events=enums.EventsMode.ALL, **config,
    )
    scenario = fuzz.Scenario(policy, bytes(frame))
    if not fuzz.runnable(path.entry, scenario.frame):
        pytest.skip(f"BPF_PROG_RUN refuses this {len(scenario.frame)}-byte frame for {path.entry}")
    expected = oracle.judge(policy, scenario.frame, path.entry.direction)
    path.apply(scenario, expected.bucket)
    observed = path.run(scenario.frame)
    problems = fuzz.differences(expected, observed, len(scenario.frame))
    assert not problems, ("program and oracle disagree\n"
                          + fuzz.report(scenario, problems, path.entry))
    return observed


def reason(observed: fuzz.Observed) -> enums.Reason:
    (slot,) = (s for s in range(abi.REASON_COUNT) if observed.counters[s][0])
    return enums.Reason(slot)


def assert_dropped(observed: fuzz.Observed, why: enums.Reason) -> None:
    assert (observed.verdict, reason(observed)) == (observed.entry.retval(XDP_DROP), why)


def assert_passed(observed: fuzz.Observed, why: enums.Reason) -> None:
    assert (observed.verdict, reason(observed)) == (observed.entry.retval(XDP_PASS), why)


def ether(*tags: Packet) -> Packet:
    frame = Ether(**MACS)
    for tag in tags:
        frame = frame / tag
    return frame


def echo4(src: str = V4_SRC, dst: str = V4_DST, **ip: object) -> Packet:
    return IP(src=src, dst=dst, **ip) / ICMP(type=8, id=0x77, seq=1) / (b"p" * 56)


def echo6(*ext: Packet, src: str = V6_SRC, dst: str = V6_DST) -> Packet:
    packet = IPv6(src=src, dst=dst)
    for header in ext:
        packet = packet / header
    return packet / ICMPv6EchoRequest(id=0x77, seq=1, data=b"p" * 56)


# Policies that say "drop this ping": by default, by an exact block rule on the destination,
# or by a prefix block rule that is the best rule of both ends.
DROP_POLICIES = {
    "default-drop": ((), {"default_action": DROP}),
    "block-dst": ((("198.18.0.2/32", BLOCK), ("fd00::2/128", BLOCK)), {}),
    "block-prefix": ((("198.18.0.0/24", BLOCK), ("fd00::/64", BLOCK)), {}),
}
DROP_REASON = {"default-drop": R.DROP_DEFAULT, "block-dst": R.DROP_BLOCK,
               "block-prefix": R.DROP_BLOCK}


def policy_params() -> list[object]:
    return [pytest.param(name, id=name) for name in DROP_POLICIES]


def dropped_under(path: fuzz.DataPath, frame: Packet | bytes, policy: str) -> None:
    rules, config = DROP_POLICIES[policy]
    assert_dropped(judge(path, frame, rules, **config), DROP_REASON[policy])


# --- Layer 2 -------------------------------------------------------------------------------

VLAN_STACKS = {
    "802.1q": (Dot1Q(vlan=7),),
    "802.1ad": (Dot1AD(vlan=7),),
    "qinq": (Dot1AD(vlan=100), Dot1Q(vlan=7)),
    "double-802.1q": (Dot1Q(vlan=100), Dot1Q(vlan=7)),
}


@pytest.mark.parametrize("policy", policy_params())
@pytest.mark.parametrize("tags", VLAN_STACKS.values(), ids=VLAN_STACKS.keys())
@pytest.mark.parametrize("family", [4, 6])
def test_vlan_and_qinq_tagged_pings_are_dropped(path, tags, family, policy):
    frame = ether(*tags) / (echo4() if family == 4 else echo6())
    dropped_under(path, frame, policy)


def tag(tpid: int, vid: int, pcp: int = 0, dei: int = 0) -> Packet:
    layer = Dot1Q if tpid == 0x8100 else Dot1AD
    return layer(vlan=vid, prio=pcp, dei=dei)


@pytest.mark.parametrize("policy", policy_params())
@pytest.mark.parametrize("depth", [3, 4, 6, 8, 64])
@pytest.mark.parametrize("vid", [0, 7])
@pytest.mark.parametrize("family", [4, 6])
def test_deep_tag_stacks_are_walked_to_the_ping(path, depth, vid, family, policy):
    """Linux strips any number of priority tags (VID 0) and answers what they carry; a
    stack of any depth, any mix of 802.1Q/802.1ad, PCP/DEI set or not, hides nothing."""
    tags = [tag(0x88A8 if i % 2 else 0x8100, vid, pcp=i % 8, dei=i % 2) for i in range(depth)]
    frame = ether(*tags) / (echo4() if family == 4 else echo6())
    dropped_under(path, frame, policy)


def test_a_deep_stack_of_non_pings_passes_as_what_it_carries(path):
    frame = ether(*[tag(0x8100, 0)] * 5) / IP(src=V4_SRC, dst=V4_DST) / TCP()
    assert_passed(judge(path, frame, default_action=DROP), R.PASS_NOT_PING)


def test_a_tag_stack_cut_short_is_passed_unparsed(path):
    frame = bytes(ether(*[tag(0x8100, 0)] * 5) / echo4())
    cut = 14 + 4 * 3 + 2  # inside the fourth tag
    assert_passed(judge(path, frame[:cut], default_action=DROP), R.PASS_UNPARSED)


def test_a_stack_filling_the_largest_test_frame_is_walked(path):
    """850 priority tags before a ping: about as many as the largest frame BPF_PROG_RUN
    takes (3,520 bytes here) holds; the walk (2 + 1024 tags) reaches past any frame XDP
    gets whole, so no stack is too deep to see through."""
    depth = 850
    stack = b"".join(struct.pack("!HH", 0, 0x8100 if i < depth - 1 else 0x0800)
                     for i in range(depth))
    frame = MAC_DST + MAC_SRC + struct.pack("!H", 0x8100) + stack + bytes(echo4())
    assert len(frame) <= 3520
    assert_dropped(judge(path, frame, default_action=DROP), R.DROP_DEFAULT)


# --- IPv6 extension headers ----------------------------------------------------------------

EXTENSION_CHAINS = {
    "hop-by-hop": lambda: [IPv6ExtHdrHopByHop()],
    "destination-options": lambda: [IPv6ExtHdrDestOpt()],
    "routing": lambda: [IPv6ExtHdrRouting()],
    "atomic-fragment": lambda: [IPv6ExtHdrFragment(m=0, offset=0, id=9)],
    "first-fragment": lambda: [IPv6ExtHdrFragment(m=1, offset=0, id=9)],
    "long-options": lambda: [IPv6ExtHdrDestOpt(options=[PadN(optdata=bytes(36))])],
    "all-four": lambda: [IPv6ExtHdrHopByHop(), IPv6ExtHdrRouting(),
                         IPv6ExtHdrFragment(m=1, id=9), IPv6ExtHdrDestOpt()],
    "seven": lambda: [IPv6ExtHdrHopByHop()] + [IPv6ExtHdrDestOpt()] * 6,
    "exactly-eight": lambda: [IPv6ExtHdrHopByHop()] + [IPv6ExtHdrDestOpt()] * 7,
    # scapy leaves AH's next header and length to the caller: ICMPv6, (24 / 4) - 2
    "authentication-header": lambda: [AH(nh=58, payloadlen=4, spi=1, seq=1, icv=bytes(12))],
    "options-and-ah": lambda: [IPv6ExtHdrHopByHop(),
                               AH(nh=58, payloadlen=4, spi=1, seq=1, icv=bytes(12))],
}


@pytest.mark.parametrize("policy", policy_params())
@pytest.mark.parametrize("chain", EXTENSION_CHAINS.values(), ids=EXTENSION_CHAINS.keys())
def test_extension_headers_before_icmpv6_do_not_hide_the_ping(path, chain, policy):
    dropped_under(path, ether() / echo6(*chain()), policy)


@pytest.mark.parametrize("policy", policy_params())
@pytest.mark.parametrize("count", [9, 10, 16, 40])
@pytest.mark.parametrize("transport", ["icmpv6", "tcp"])
def test_long_chains_are_walked_to_what_ends_them(path, count, transport, policy):
    """Past the 8 headers walked inline the chain is walked on (bpf_loop): a ping at its
    end is dropped, TCP passes (it was judged a ping, 'suspect', before)."""
    chain = [IPv6ExtHdrDestOpt()] * count
    packet = echo6(*chain) if transport == "icmpv6" else IPv6(src=V6_SRC, dst=V6_DST)
    if transport == "tcp":
        for header in chain:
            packet = packet / header
        packet = packet / TCP(dport=22)
    if transport == "icmpv6":
        dropped_under(path, ether() / packet, policy)
    else:
        assert_passed(judge(path, ether() / packet, default_action=DROP), R.PASS_NOT_PING)


@pytest.mark.parametrize("count", [9, 20])
def test_neighbour_discovery_behind_a_long_chain_passes(path, count):
    """Linux accepts it there (RFC 6980 forbids only fragments), so no policy drops it."""
    packet = IPv6(src=V6_SRC, dst=V6_DST, hlim=255)
    for header in [IPv6ExtHdrDestOpt()] * count:
        packet = packet / header
    frame = ether() / packet / ICMPv6ND_NS(tgt=V6_DST)
    assert_passed(judge(path, frame, default_action=DROP, icmp_set=enums.IcmpSet.ALL),
                  R.PASS_NOT_PING)


# --- Kilobytes of headers (issue #21) ------------------------------------------------------
# Headers are read in place; a deeper tag stack or a longer chain than is read inline is
# walked with load_bytes, and where the walk ends past the first KiB (PK_IN_PLACE_BYTES) the
# frame is parsed again from its start, every header copied out (bpf_xdp_load_bytes /
# bpf_skb_load_bytes). Before, the offset a walk ended at was masked into the frame
# (& 0x1fff), which wrapped past 8 KiB: these frames are as big as BPF_PROG_RUN takes (about
# a page) and go through the same code; tests/e2e/test_big_frames.py sends bigger ones.


def _dest_opts(nexthdr: int, size: int) -> bytes:
    """A destination-options header of ``size`` bytes (a multiple of 8), Pad1 inside."""
    return bytes([nexthdr, size // 8 - 1]) + bytes(size - 2)


def _priority_tags(count: int, ethertype: int) -> bytes:
    """Ethernet and ``count`` 802.1Q priority tags (built by hand: scapy recurses per layer)."""
    types = [0x8100] * count + [ethertype]
    return MAC_DST + MAC_SRC + struct.pack("!H", types[0]) + b"".join(
        struct.pack("!HH", 0, inner) for inner in types[1:])


def _behind_headers(tags: int, sizes: Sequence[int], protocol: int, upper: bytes) -> bytes:
    """``upper`` of ``protocol`` behind ``tags`` priority tags and destination-options
    headers of ``sizes`` bytes."""
    names = [60] * (len(sizes) - 1) + [protocol]
    chain = b"".join(_dest_opts(name, size) for name, size in zip(names, sizes, strict=True))
    ip = IPv6(src=V6_SRC, dst=V6_DST, nh=60, plen=len(chain) + len(upper))
    return _priority_tags(tags, 0x86DD) + bytes(ip) + chain + upper


KILOBYTE_CHAINS = {
    # name: (priority tags, header sizes)
    "eight-of-384": (0, [384] * 8),  # all read inline, the last 3 KiB into the frame
    "nine-past-2k": (0, [8] * 8 + [2048]),  # the walk ends past 1 KiB: parsed copied
    "2k-then-eight": (0, [2048] + [8] * 8),
    "nine-within-1k": (0, [8] * 8 + [512]),  # the walk ends within 1 KiB: read in place
    "tagged-2k": (3, [2048]),  # a tag walked, then the IPv6 header and its chain in place
    "kilobyte-of-tags": (260, [8]),  # the tag walk ends past 1 KiB: parsed copied
    "filling-the-frame": (0, [8] * 8 + [2048, 1024]),
}
ECHO6 = struct.pack("!BBHHH", 128, 0, 0, 0x77, 1) + b"p" * 56


@pytest.mark.parametrize("policy", policy_params())
@pytest.mark.parametrize(("tags", "sizes"), KILOBYTE_CHAINS.values(), ids=KILOBYTE_CHAINS.keys())
def test_pings_behind_kilobytes_of_headers_are_dropped(path, tags, sizes, policy):
    dropped_under(path, _behind_headers(tags, sizes, 58, ECHO6), policy)


@pytest.mark.parametrize(("tags", "sizes"), KILOBYTE_CHAINS.values(), ids=KILOBYTE_CHAINS.keys())
def test_tcp_behind_kilobytes_of_headers_passes(path, tags, sizes):
    frame = _behind_headers(tags, sizes, 6, bytes(TCP(dport=22, flags="S")))
    assert_passed(judge(path, frame, default_action=DROP), R.PASS_NOT_PING)


@pytest.mark.parametrize("cut", [1, 2, 1000, 2047])
@pytest.mark.parametrize("fragmented", [False, True], ids=["whole", "first-fragment"])
def test_a_kilobyte_header_cut_short_is_unparsed_or_suspect(path, cut, fragmented):
    """Copied, a chain cut by the end of the frame is judged as in place: malformed, or
    inside a first fragment as a ping."""
    first = bytes(IPv6ExtHdrFragment(nh=60, m=1, id=5)) if fragmented else b""
    chain = _dest_opts(60, 8) * 8 + _dest_opts(58, 2048)
    ip = IPv6(src=V6_SRC, dst=V6_DST, nh=44 if fragmented else 60)
    frame = bytes(ether() / ip / Raw(first + chain + ECHO6))
    cut_at = 14 + 40 + len(first) + 64 + cut
    observed = judge(path, frame[:cut_at], default_action=DROP)
    if fragmented:
        assert_dropped(observed, R.DROP_DEFAULT)
    else:
        assert_passed(observed, R.PASS_UNPARSED)


@pytest.mark.parametrize("transport", ["icmp", "tcp"])
def test_ipv4_with_options_behind_a_kilobyte_of_tags(path, transport):
    """Behind a kilobyte of tags the IPv4 header, its options and the ICMP header are
    read copied."""
    ip = IP(src=V4_SRC, dst=V4_DST, options=[IPOption_NOP()] * 40)
    frame = _priority_tags(260, 0x0800) + bytes(
        ip / (ICMP(type=8, id=7) if transport == "icmp" else TCP(dport=22, flags="S")))
    observed = judge(path, frame, default_action=DROP)
    if transport == "icmp":
        assert_dropped(observed, R.DROP_DEFAULT)
    else:
        assert_passed(observed, R.PASS_NOT_PING)


# --- IPv4 options and fragments ------------------------------------------------------------


@pytest.mark.parametrize("policy", policy_params())
@pytest.mark.parametrize("ihl", range(6, 16))
def test_ipv4_options_do_not_hide_the_ping(path, ihl, policy):
    packet = echo4(options=[IPOption_NOP()] * ((ihl - 5) * 4))
    frame = ether() / packet
    assert packet.__class__(bytes(packet)).ihl == ihl
    dropped_under(path, frame, policy)


@pytest.mark.parametrize("policy", policy_params())
@pytest.mark.parametrize("family", [4, 6])
def test_first_fragment_of_a_large_ping_is_dropped(path, family, policy):
    if family == 4:
        first = fragment(echo4() / (b"x" * 4000), fragsize=1400)[0]
        assert first.flags.MF and first.frag == 0
    else:
        big = IPv6(src=V6_SRC, dst=V6_DST) / IPv6ExtHdrFragment(id=5) / ICMPv6EchoRequest(
            id=0x77, seq=1, data=b"x" * 4000)
        first = fragment6(big, 1400)[0]
        assert first[IPv6ExtHdrFragment].m == 1 and first[IPv6ExtHdrFragment].offset == 0
    dropped_under(path, ether() / first, policy)


@pytest.mark.parametrize("family", [4, 6])
def test_later_fragments_pass_unless_all_protocols_blocks_them(path, family):
    """No L4 header to judge: passed (the dropped first fragment stops reassembly) ..."""
    if family == 4:
        later = fragment(echo4() / (b"x" * 4000), fragsize=1400)[1]
    else:
        big = IPv6(src=V6_SRC, dst=V6_DST) / IPv6ExtHdrFragment(id=5) / ICMPv6EchoRequest(
            data=b"x" * 4000)
        later = fragment6(big, 1400)[1]
    assert_passed(judge(path, ether() / later, default_action=DROP), R.PASS_FRAGMENT)
    # ... but a block rule with all-protocols drops every fragment of a blocked host.
    rules = [("198.18.0.2/32", BLOCK), ("fd00::2/128", BLOCK)]
    observed = judge(path, ether() / later, rules, all_protocols=True)
    assert_dropped(observed, R.DROP_BLOCK)


# The tiny-fragment attack: a first fragment that ends inside the ICMP header. The type byte
# may even be missing; the stack reassembles it with the next fragment, so it is a ping.
def _tiny_v4(keep: int) -> Packet:
    icmp = bytes(ICMP(type=8, id=0x77, seq=1))
    return IP(src=V4_SRC, dst=V4_DST, proto=1, flags="MF") / Raw(icmp[:keep])


def _tiny_v6(keep: int) -> Packet:
    icmp = bytes(ICMPv6EchoRequest(id=0x77, seq=1))
    return IPv6(src=V6_SRC, dst=V6_DST) / IPv6ExtHdrFragment(m=1, nh=58, id=5) / Raw(icmp[:keep])


def _tiny_v6_cut_in_extension(keep: int) -> Packet:
    """The fragment header, then a destination-options header that the fragment cuts."""
    options = bytes(IPv6ExtHdrDestOpt(nh=58, options=[PadN(optdata=bytes(12))]))
    assert len(options) == 16
    return IPv6(src=V6_SRC, dst=V6_DST) / IPv6ExtHdrFragment(m=1, nh=60, id=5) / Raw(
        options[:keep])


@pytest.mark.parametrize("policy", policy_params())
@pytest.mark.parametrize("keep", range(0, 8))
@pytest.mark.parametrize("build", [_tiny_v4, _tiny_v6], ids=["ipv4", "ipv6"])
def test_tiny_first_fragment_is_judged_as_a_ping(path, build, keep, policy):
    dropped_under(path, ether() / build(keep), policy)


@pytest.mark.parametrize("policy", policy_params())
@pytest.mark.parametrize("keep", [0, 1, 2, 8, 15])
def test_first_fragment_cut_inside_an_extension_header(path, keep, policy):
    dropped_under(path, ether() / _tiny_v6_cut_in_extension(keep), policy)


@pytest.mark.parametrize("keep", range(0, 8))
def test_truncated_icmp_outside_a_fragment_is_unparsed_not_dropped(path, keep):
    """Without a fragment to complete it, a cut ICMP header is just malformed: passed."""
    icmp = bytes(ICMP(type=8))
    frame = ether() / IP(src=V4_SRC, dst=V4_DST, proto=1) / Raw(icmp[:keep])
    assert_passed(judge(path, frame, default_action=DROP), R.PASS_UNPARSED)


# --- Addresses -----------------------------------------------------------------------------

ADDRESS_CASES = {
    # id: (rules, src, dst, rule that must get the hit)
    "v4-exact-dst": ([("198.18.0.2/32", BLOCK)], V4_SRC, V4_DST, "198.18.0.2/32"),
    "v4-exact-src": ([("198.18.0.1/32", BLOCK)], V4_SRC, V4_DST, "198.18.0.1/32"),
    "v4-prefix": ([("198.18.0.0/15", BLOCK)], "10.0.0.1", "198.19.255.254", "198.18.0.0/15"),
    "v4-default-route": ([("0.0.0.0/0", BLOCK)], V4_SRC, V4_DST, "0.0.0.0/0"),
    "v4-block-beats-allow": ([("198.18.0.1/32", ALLOW), ("198.18.0.2/32", BLOCK)],
                             V4_SRC, V4_DST, "198.18.0.2/32"),
    "v4-longer-prefix-blocks": ([("198.18.0.0/16", ALLOW), ("198.18.0.0/30", BLOCK)],
                                "10.0.0.1", V4_DST, "198.18.0.0/30"),
    "v6-exact-dst": ([("fd00::2/128", BLOCK)], V6_SRC, V6_DST, "fd00::2/128"),
    "v6-exact-src": ([("fd00::1/128", BLOCK)], V6_SRC, V6_DST, "fd00::1/128"),
    "v6-prefix": ([("fd00:706b::/32", BLOCK)], "fe80::1", "fd00:706b:1::2", "fd00:706b::/32"),
    "v6-default-route": ([("::/0", BLOCK)], V6_SRC, V6_DST, "::/0"),
    "v6-block-beats-allow": ([("fd00::1/128", ALLOW), ("fd00::/64", BLOCK)],
                             V6_SRC, "fd00::99", "fd00::/64"),
    # IPv4-mapped IPv6 addresses are judged by the IPv4 rules.
    "mapped-src-v4-exact": ([("198.18.0.1/32", BLOCK)], "::ffff:198.18.0.1", V6_DST,
                            "198.18.0.1/32"),
    "mapped-dst-v4-prefix": ([("198.18.0.0/24", BLOCK)], V6_SRC, "::ffff:198.18.0.2",
                             "198.18.0.0/24"),
    "mapped-rule-spelled-v6": ([("::ffff:198.18.0.2/128", BLOCK)], V6_SRC,
                               "::ffff:198.18.0.2", "198.18.0.2/32"),
    "mapped-falls-back-to-v6-prefix": ([("::/80", BLOCK)], V6_SRC, "::ffff:198.18.0.2",
                                       "::/80"),
}


@pytest.mark.parametrize("echo_type", ["request", "reply"])
@pytest.mark.parametrize(("rules", "src", "dst", "decider"), ADDRESS_CASES.values(),
                         ids=ADDRESS_CASES.keys())
def test_pings_to_and_from_blocked_addresses_are_dropped(path, rules, src, dst, decider,
                                                         echo_type):
    if ":" in src:
        icmp = ICMPv6EchoRequest() if echo_type == "request" else ICMPv6EchoReply()
        frame = ether() / IPv6(src=src, dst=dst) / icmp
    else:
        frame = ether() / IP(src=src, dst=dst) / ICMP(type=8 if echo_type == "request" else 0)
    observed = judge(path, frame, rules)
    assert_dropped(observed, R.DROP_BLOCK)
    assert observed.hits == {oracle.normalize(ipaddress.ip_network(decider)): 1}


@pytest.mark.parametrize("lookalike", ["::198.18.0.2", "::ffff:0:c612:2", "::fffe:c612:2",
                                       "0:0:0:1:0:ffff:c612:2", "64:ff9b::c612:2"])
def test_ipv4_mapped_lookalikes_are_not_judged_by_ipv4_rules(path, lookalike):
    """Only ::ffff:0:0/96 maps to IPv4: nearby addresses must not hit the IPv4 rule."""
    frame = ether() / echo6(dst=lookalike)
    assert_passed(judge(path, frame, [("198.18.0.2/32", BLOCK)]), R.PASS_DEFAULT)


# --- No collateral -------------------------------------------------------------------------

NDP = {
    "router-solicitation": ICMPv6ND_RS,
    "router-advertisement": ICMPv6ND_RA,
    "neighbour-solicitation": lambda: ICMPv6ND_NS(tgt=V6_DST),
    "neighbour-advertisement": lambda: ICMPv6ND_NA(tgt=V6_SRC),
    "redirect": ICMPv6ND_Redirect,
}


@pytest.mark.parametrize("icmp_set", fuzz.SHORTHANDS)
@pytest.mark.parametrize("message", NDP.values(), ids=NDP.keys())
def test_neighbour_discovery_always_passes(path, message, icmp_set):
    """NDP (133-137) is never a ping, even with icmp set ALL and a default of drop."""
    for frame in (ether() / IPv6(src="fe80::1", dst="ff02::1", hlim=255) / message(),
                  ether(Dot1Q(vlan=7)) / IPv6(src=V6_SRC, dst=V6_DST, hlim=255)
                  / IPv6ExtHdrHopByHop() / message()):
        observed = judge(path, frame, [("fd00::/8", BLOCK)], icmp_set=icmp_set,
                         default_action=DROP)
        assert_passed(observed, R.PASS_NOT_PING)


PING_ONLY_POLICIES = {
    "default-drop": ((), {"default_action": DROP}),
    "default-drop-all-icmp": ((), {"default_action": DROP, "icmp_set": enums.IcmpSet.ALL}),
    "echo-request-only": ((), {"default_action": DROP,
                               "icmp_set": enums.IcmpSet.ECHO_REQUEST}),
    "block-both-ends": ((("198.18.0.0/15", BLOCK), ("fd00::/8", BLOCK)), {}),
    "block-exact-all-icmp": ((("198.18.0.2/32", BLOCK), ("fd00::2/128", BLOCK)),
                             {"icmp_set": enums.IcmpSet.ALL, "default_action": DROP}),
}

TRANSPORTS = {
    "tcp4": lambda: IP(src=V4_SRC, dst=V4_DST) / TCP(dport=443, flags="S"),
    "udp4": lambda: IP(src=V4_SRC, dst=V4_DST) / UDP(dport=53) / (b"q" * 30),
    "tcp4-options": lambda: IP(src=V4_SRC, dst=V4_DST, options=[IPOption_NOP()] * 40)
    / TCP(dport=443),
    "udp4-first-fragment": lambda: fragment(IP(src=V4_SRC, dst=V4_DST) / UDP() / (b"q" * 3000),
                                            fragsize=1400)[0],
    "tcp6": lambda: IPv6(src=V6_SRC, dst=V6_DST) / TCP(dport=443, flags="S"),
    "udp6": lambda: IPv6(src=V6_SRC, dst=V6_DST) / UDP(dport=53) / (b"q" * 30),
    "tcp6-hop-by-hop": lambda: IPv6(src=V6_SRC, dst=V6_DST) / IPv6ExtHdrHopByHop()
    / TCP(dport=443),
    "udp6-first-fragment": lambda: IPv6(src=V6_SRC, dst=V6_DST)
    / IPv6ExtHdrFragment(m=1, id=3) / UDP(dport=53),
    "tcp6-seven-headers": lambda: IPv6(src=V6_SRC, dst=V6_DST)
    / _chain(7) / TCP(dport=443),
    "tcp6-exactly-eight-headers": lambda: IPv6(src=V6_SRC, dst=V6_DST)
    / _chain(8) / TCP(dport=443),
    "udp6-exactly-eight-headers": lambda: IPv6(src=V6_SRC, dst=V6_DST)
    / _chain(8) / UDP(dport=53),
}


def _chain(count: int) -> Packet:
    chain = IPv6ExtHdrHopByHop()
    for _ in range(count - 1):
        chain = chain / IPv6ExtHdrDestOpt()
    return chain


@pytest.mark.parametrize("tagged", [False, True], ids=["untagged", "qinq"])
@pytest.mark.parametrize("policy", PING_ONLY_POLICIES.values(), ids=PING_ONLY_POLICIES.keys())
@pytest.mark.parametrize("transport", TRANSPORTS.values(), ids=TRANSPORTS.keys())
def test_tcp_and_udp_pass_under_every_ping_only_policy(path, transport, policy, tagged):
    rules, config = policy
    tags = (Dot1AD(vlan=100), Dot1Q(vlan=7)) if tagged else ()
    observed = judge(path, ether(*tags) / transport(), rules, **config)
    assert_passed(observed, R.PASS_NOT_PING)
    assert observed.hits == {}


def test_non_ip_passes_under_default_drop(path):
    frame = ether() / ARP(psrc=V4_SRC, pdst=V4_DST)
    assert_passed(judge(path, frame, [("0.0.0.0/0", BLOCK)], default_action=DROP,
                        all_protocols=True), R.PASS_NOT_PING)
