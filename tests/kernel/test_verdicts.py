"""Every verdict path of the data path, through BPF_PROG_RUN on the real kernel, for each
entry point: the XDP program and both tc programs (the same table: a tc program drops with
TC_ACT_SHOT where XDP says XDP_DROP and passes with TCX_NEXT where XDP says XDP_PASS).

Each case checks the return code, the reason counter (packets and bytes) and the
ring-buffer event together (``Outcome.verify``); rule hits, event modes, the event rate
limit and the timing counters have their own tables below.
"""

from __future__ import annotations

import errno
import struct

import fuzz
import pytest
from frames import (
    ETH_P_8021AD,
    ETH_P_8021Q,
    ETH_P_ARP,
    FRAGMENT,
    IPPROTO_ICMPV6,
    IPPROTO_NONE,
    IPPROTO_TCP,
    IPPROTO_UDP,
    OTHER,
    PING,
    SUSPECT,
    UNPARSED,
    V4_DST,
    V4_SRC,
    V6_DST,
    V6_SRC,
    Frame,
    Parsed,
    dest_opts,
    echo4,
    echo6,
    fragment,
    hop_by_hop,
    ipv4,
    ipv6,
    l2,
    non_ip,
    routing,
    tcp_bytes,
    udp_bytes,
)

from pingkiller import abi
from pingkiller.bpf import BpfError
from pingkiller.model import enums

pytestmark = [
    pytest.mark.root,
    pytest.mark.parametrize("entry", fuzz.ENTRIES, indirect=True, ids=str),
]

R = enums.Reason
BLOCK, ALLOW = enums.RuleAction.BLOCK, enums.RuleAction.ALLOW
PASS_DEFAULT, DROP_DEFAULT = enums.DefaultAction.PASS, enums.DefaultAction.DROP
F = abi.ConfigFlag
NO_FLAGS = F(0)
Q, AD = ETH_P_8021Q, ETH_P_8021AD

# With default DROP and no rules, each transport class has one reason.
REASON_UNDER_DEFAULT_DROP = {
    PING: R.DROP_DEFAULT,
    SUSPECT: R.DROP_DEFAULT,
    OTHER: R.PASS_NOT_PING,
    FRAGMENT: R.PASS_FRAGMENT,
    UNPARSED: R.PASS_UNPARSED,
}


def as_other(frame: Frame) -> Frame:
    """The same ICMP frame, expected as a parsed non-ping."""
    p = frame.parsed
    return frame.expect(Parsed(OTHER, p.family, p.protocol, p.icmp))


def unparsed(data: bytes) -> Frame:
    """Bytes the parser gives up on before it learns an IP address."""
    return Frame(data, Parsed(UNPARSED))


# Pings and the default action


ECHOES = {
    "v4-echo-request": echo4(8),
    "v4-echo-reply": echo4(0),
    "v6-echo-request": echo6(128),
    "v6-echo-reply": echo6(129),
}


@pytest.mark.parametrize("name", ECHOES)
@pytest.mark.parametrize(
    ("default", "reason"),
    [(PASS_DEFAULT, R.PASS_DEFAULT), (DROP_DEFAULT, R.DROP_DEFAULT)],
    ids=["default-pass", "default-drop"],
)
def test_echo_follows_default_action(dp, name, default, reason):
    dp.configure(default_action=default)
    frame = ECHOES[name]
    dp.run(frame).verify(frame, reason)


# Which ICMP types are pings


V4_PING_TYPES = {
    enums.IcmpSet.ECHO: {0, 8},
    enums.IcmpSet.ECHO_REQUEST: {8},
    enums.IcmpSet.ALL: set(range(256)),
}
V6_PING_TYPES = {
    enums.IcmpSet.ECHO: {128, 129},
    enums.IcmpSet.ECHO_REQUEST: {128},
    enums.IcmpSet.ALL: set(range(256)) - set(range(133, 138)),  # NDP is never a ping
}
V4_TYPES = [0, 3, 5, 8, 11, 13, 255]
V6_TYPES = [1, 2, 3, 4, 128, 129, 130, 132, 133, 134, 135, 136, 137, 138, 143, 255]


@pytest.mark.parametrize("icmp_set", fuzz.SHORTHANDS, ids=lambda s: s.name.lower())
@pytest.mark.parametrize(
    ("family", "icmp_type"),
    [(4, t) for t in V4_TYPES] + [(6, t) for t in V6_TYPES],
    ids=[f"v4-type{t}" for t in V4_TYPES] + [f"v6-type{t}" for t in V6_TYPES],
)
def test_icmp_set_decides_what_is_a_ping(dp, icmp_set, family, icmp_type):
    dp.configure(default_action=DROP_DEFAULT, icmp=icmp_set)
    frame = echo4(icmp_type, code=3) if family == 4 else echo6(icmp_type, code=3)
    pings = (V4_PING_TYPES if family == 4 else V6_PING_TYPES)[icmp_set]
    if icmp_type in pings:
        dp.run(frame).verify(frame, R.DROP_DEFAULT)
    else:
        dp.run(frame).verify(as_other(frame), R.PASS_NOT_PING)


@pytest.mark.parametrize("ndp_type", range(133, 138))
def test_ndp_is_never_dropped_under_icmp_all(dp, ndp_type):
    """Neighbour discovery passes under icmp ALL, default DROP and a block rule."""
    dp.configure(default_action=DROP_DEFAULT, icmp=enums.IcmpSet.ALL)
    dp.rule(f"{V6_SRC}/128", BLOCK)
    frame = echo6(ndp_type, dst="ff02::1:ff00:2")
    dp.run(frame).verify(as_other(frame), R.PASS_NOT_PING)
    assert dp.hits(f"{V6_SRC}/128") == 0


# Other transports and ethertypes


NON_PINGS = {
    "v4-tcp": ipv4(tcp_bytes(), proto=IPPROTO_TCP),
    "v4-udp": ipv4(udp_bytes(), proto=IPPROTO_UDP),
    "v4-gre": ipv4(bytes(8), proto=47),
    "v4-proto-255": ipv4(b"", proto=255),
    "v6-tcp": ipv6(tcp_bytes(), nh=IPPROTO_TCP),
    "v6-udp": ipv6(udp_bytes(), nh=IPPROTO_UDP),
    "v6-no-next-header": ipv6(b"", nh=IPPROTO_NONE),
    "v6-icmpv4-proto": ipv6(bytes(8), nh=1),
    "v6-ext-then-udp": ipv6(udp_bytes(), nh=IPPROTO_UDP, ext=[hop_by_hop(), dest_opts()]),
    "v4-tcp-in-qinq": ipv4(tcp_bytes(), proto=IPPROTO_TCP, vlans=(AD, Q)),
    "arp": non_ip(ETH_P_ARP),
    "lldp": non_ip(0x88CC),
    "ethertype-0": non_ip(0x0000),
    "arp-in-vlan": non_ip(ETH_P_ARP, vlans=(Q,)),
    "arp-in-qinq": non_ip(ETH_P_ARP, vlans=(AD, Q)),
    "mpls": non_ip(0x8847, bytes(4) + bytes(echo4().data[14:])),
}


@pytest.mark.parametrize("name", NON_PINGS)
def test_non_pings_pass_under_default_drop(dp, name):
    dp.configure(default_action=DROP_DEFAULT, icmp=enums.IcmpSet.ALL)
    frame = NON_PINGS[name]
    dp.run(frame).verify(frame, R.PASS_NOT_PING)


# VLAN tags


VLAN_STACKS = {"802.1q": (Q,), "802.1ad": (AD,), "qinq": (AD, Q), "double-802.1q": (Q, Q)}


@pytest.mark.parametrize("stack", VLAN_STACKS)
@pytest.mark.parametrize("family", [4, 6])
def test_tagged_pings_are_judged(dp, stack, family):
    dp.configure(default_action=DROP_DEFAULT)
    vlans = VLAN_STACKS[stack]
    frame = echo4(vlans=vlans) if family == 4 else echo6(vlans=vlans)
    dp.run(frame).verify(frame, R.DROP_DEFAULT)


@pytest.mark.parametrize("family", [4, 6])
def test_tagged_ping_matches_block_rule(dp, family):
    src = f"{V4_SRC}/32" if family == 4 else f"{V6_SRC}/128"
    dp.rule(src, BLOCK)
    frame = echo4(vlans=(AD, Q)) if family == 4 else echo6(vlans=(AD, Q))
    dp.run(frame).verify(frame, R.DROP_BLOCK)
    assert dp.hits(src) == 1


@pytest.mark.parametrize("stack", [(Q, Q, Q), (AD, Q, Q), (AD, AD, AD), (Q, Q, Q, Q)])
def test_tags_past_the_second_are_walked_too(dp, stack):
    """The stack strips them all (priority tags), so the program follows them all."""
    dp.configure(default_action=DROP_DEFAULT)
    frame = echo4(vlans=stack)
    dp.run(frame).verify(frame, R.DROP_DEFAULT)


def cut_tag_stack() -> Frame:
    """A third tag cut after its TCI: the frame ends inside the tag stack."""
    return unparsed(echo4(vlans=(Q, Q, Q)).data[:14 + 4 * 2 + 2])


def test_a_tag_stack_cut_short_is_unparsed(dp):
    dp.configure(default_action=DROP_DEFAULT)
    frame = cut_tag_stack()
    dp.run(frame).verify(frame, R.PASS_UNPARSED)


# IPv4 header variants


@pytest.mark.parametrize("words", range(1, 11), ids=lambda w: f"ihl{5 + w}")
def test_ipv4_options_are_skipped(dp, words):
    dp.configure(default_action=DROP_DEFAULT)
    frame = echo4(options=words, id=0xABCD, seq=0x0102)
    dp.run(frame).verify(frame, R.DROP_DEFAULT)


def _patch_ip(offset: int, value: int):
    def patch(ip: bytearray) -> None:
        ip[offset] = value

    return patch


@pytest.mark.parametrize(
    "first_byte",
    [0x65, 0x05, 0x35, 0xF5, 0x44, 0x40, 0x41, 0x43],
    ids=["version6", "version0", "version3", "version15", "ihl4", "ihl0", "ihl1", "ihl3"],
)
def test_bad_ipv4_version_or_ihl_is_unparsed(dp, first_byte):
    dp.configure(default_action=DROP_DEFAULT)
    frame = unparsed(echo4(patch=_patch_ip(0, first_byte)).data)
    dp.run(frame).verify(frame, R.PASS_UNPARSED)


@pytest.mark.parametrize("ihl", [11, 15])
def test_ipv4_ihl_beyond_frame_is_unparsed(dp, ihl):
    """IHL*4 reaches past the end of the frame (a 20-byte header, then 18 bytes)."""
    dp.configure(default_action=DROP_DEFAULT)
    frame = unparsed(echo4(payload=b"0123456789", patch=_patch_ip(0, 0x40 | ihl)).data)
    assert len(frame.data) < 14 + 4 * ihl
    dp.run(frame).verify(frame, R.PASS_UNPARSED)


@pytest.mark.parametrize("total_length", [0, 1, 20, 0xFFFF], ids=lambda n: f"tot_len{n}")
def test_ipv4_total_length_is_not_checked(dp, total_length):
    dp.configure(default_action=DROP_DEFAULT)

    def patch(ip: bytearray) -> None:
        struct.pack_into("!H", ip, 2, total_length)

    frame = echo4(patch=patch)
    dp.run(frame).verify(frame, R.DROP_DEFAULT)


def test_ipv4_dont_fragment_flag_is_an_ordinary_ping(dp):
    dp.configure(default_action=DROP_DEFAULT)
    frame = echo4(patch=_patch_ip(6, 0x40))
    dp.run(frame).verify(frame, R.DROP_DEFAULT)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("ipv6-version-4", lambda: _set_byte(echo6().data, 14, 0x40)),
        ("ipv6-version-0", lambda: _set_byte(echo6().data, 14, 0x00)),
        ("ipv6-under-ipv4-ethertype", lambda: l2(0x0800) + echo6().data[14:]),
        ("ipv4-under-ipv6-ethertype", lambda: l2(0x86DD) + echo4().data[14:] + bytes(40)),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_wrong_ip_version_is_unparsed(dp, name, data):
    dp.configure(default_action=DROP_DEFAULT)
    frame = unparsed(data())
    dp.run(frame).verify(frame, R.PASS_UNPARSED)


def _set_byte(data: bytes, offset: int, value: int) -> bytes:
    out = bytearray(data)
    out[offset] = value
    return bytes(out)


def test_ipv6_payload_length_is_not_checked(dp):
    dp.configure(default_action=DROP_DEFAULT)
    frame = echo6()
    data = bytearray(frame.data)
    struct.pack_into("!H", data, 14 + 4, 0xFFFF)
    patched = Frame(bytes(data), frame.parsed, frame.src, frame.dst)
    dp.run(patched).verify(patched, R.DROP_DEFAULT)


# IPv6 extension headers


EXT_CHAINS = {
    "hop-by-hop": [hop_by_hop()],
    "hop-by-hop-long": [hop_by_hop(pad=60)],
    "routing": [routing(2)],
    "dest-opts": [dest_opts()],
    "dest-opts-long": [dest_opts(pad=200)],
    "first-fragment": [fragment(0, more=True)],
    "atomic-fragment": [fragment(0, more=False)],
    "hop-routing-dest": [hop_by_hop(), routing(), dest_opts()],
    "hop-dest-routing-frag-dest": [hop_by_hop(), dest_opts(), routing(), fragment(0), dest_opts()],
    "seven": [dest_opts()] * 7,
    "eight": [dest_opts()] * 8,
    "eight-mixed": [hop_by_hop(), dest_opts(), routing(), dest_opts(), routing(),
                    fragment(0), dest_opts(8), dest_opts()],
}


@pytest.mark.parametrize("chain", EXT_CHAINS)
def test_ext_headers_before_icmpv6_are_walked(dp, chain):
    dp.configure(default_action=DROP_DEFAULT)
    frame = echo6(ext=EXT_CHAINS[chain])
    assert frame.parsed.l4 == PING
    dp.run(frame).verify(frame, R.DROP_DEFAULT)


@pytest.mark.parametrize("chain", EXT_CHAINS)
def test_ext_headers_before_tcp_pass(dp, chain):
    """Regression: exactly 8 extension headers then TCP was judged 'suspect' and dropped."""
    dp.configure(default_action=DROP_DEFAULT)
    frame = ipv6(tcp_bytes(), nh=IPPROTO_TCP, ext=EXT_CHAINS[chain])
    assert frame.parsed.l4 == OTHER
    dp.run(frame).verify(frame, R.PASS_NOT_PING)


@pytest.mark.parametrize("count", [9, 10, 20, 300])
@pytest.mark.parametrize("nh", [IPPROTO_ICMPV6, IPPROTO_TCP], ids=["icmpv6", "tcp"])
def test_a_long_ext_chain_is_walked_to_its_end(dp, count, nh):
    """Linux walks a chain of any length: so does the program, past the 8 walked inline
    (bpf_loop), so what ends the chain is judged as what it is."""
    dp.configure(default_action=DROP_DEFAULT)
    chain = [dest_opts()] * count
    frame = echo6(ext=chain) if nh == IPPROTO_ICMPV6 else ipv6(tcp_bytes(), nh=nh, ext=chain)
    assert frame.parsed.l4 == (PING if nh == IPPROTO_ICMPV6 else OTHER)
    dp.run(frame).verify(frame, R.DROP_DEFAULT if nh == IPPROTO_ICMPV6 else R.PASS_NOT_PING)


@pytest.mark.parametrize("cut", [1, 3, 7])
@pytest.mark.parametrize("first", ["dest-opts", "fragment"])
def test_a_long_ext_chain_cut_short_is_unparsed_or_suspect(dp, cut, first):
    """Cut inside its 12th header: malformed; after a (first) fragment header, suspect."""
    dp.configure(default_action=DROP_DEFAULT)
    head = fragment(0) if first == "fragment" else dest_opts()
    frame = echo6(ext=[head, *[dest_opts()] * 11]).cut(14 + 40 + 8 * 11 + cut)
    assert frame.parsed.l4 == (SUSPECT if first == "fragment" else UNPARSED)
    dp.run(frame).verify(frame, R.DROP_DEFAULT if first == "fragment" else R.PASS_UNPARSED)


# Fragments


FRAGMENTS = {
    # name: (frame, class it must be judged as)
    "v4-first-fragment": (echo4(mf=True), PING),
    "v4-middle-fragment": (echo4(mf=True, offset=10), FRAGMENT),
    "v4-last-fragment": (echo4(offset=10), FRAGMENT),
    "v4-offset-max": (echo4(offset=0x1FFF), FRAGMENT),
    "v4-udp-non-first": (ipv4(udp_bytes(), proto=IPPROTO_UDP, offset=3), FRAGMENT),
    "v4-first-fragment-icmp-cut": (echo4(mf=True).cut(14 + 20 + 4), SUSPECT),
    "v4-first-fragment-no-icmp": (echo4(mf=True).cut(14 + 20), SUSPECT),
    "v4-unfragmented-icmp-cut": (echo4().cut(14 + 20 + 7), UNPARSED),
    "v6-first-fragment": (echo6(ext=[fragment(0)]), PING),
    "v6-non-first": (echo6(ext=[fragment(100)]), FRAGMENT),
    "v6-last": (echo6(ext=[fragment(100, more=False)]), FRAGMENT),
    "v6-hop-then-non-first": (echo6(ext=[hop_by_hop(), fragment(1)]), FRAGMENT),
    "v6-first-fragment-icmp-cut": (echo6(ext=[fragment(0)]).cut(14 + 40 + 8 + 3), SUSPECT),
    "v6-first-fragment-no-icmp": (echo6(ext=[fragment(0)]).cut(14 + 40 + 8), SUSPECT),
    "v6-fragment-then-cut-dest-opts": (
        echo6(ext=[fragment(0), dest_opts(pad=20)]).cut(14 + 40 + 8 + 10), SUSPECT),
    "v6-unfragmented-icmp-cut": (echo6().cut(14 + 40 + 5), UNPARSED),
    "v6-unfragmented-ext-cut": (echo6(ext=[dest_opts(pad=20)]).cut(14 + 40 + 10), UNPARSED),
    "v6-ext-cut-before-fragment": (
        echo6(ext=[dest_opts(pad=20), fragment(0)]).cut(14 + 40 + 10), UNPARSED),
    "v6-fragment-header-cut": (echo6(ext=[fragment(0)]).cut(14 + 40 + 7), UNPARSED),
}


@pytest.mark.parametrize("name", FRAGMENTS)
def test_fragments(dp, name):
    frame, l4 = FRAGMENTS[name]
    assert frame.parsed.l4 == l4  # the builder agrees with the table
    dp.configure(default_action=DROP_DEFAULT)
    dp.run(frame).verify(frame, REASON_UNDER_DEFAULT_DROP[l4])


# Truncation at every cut point


TEMPLATES = {
    "v4-echo": echo4(payload=b""),
    "v4-echo-options": echo4(options=3, payload=b""),
    "v4-first-fragment": echo4(mf=True, payload=b""),
    "v4-vlan": echo4(vlans=(Q,), payload=b""),
    "v4-qinq": echo4(vlans=(AD, Q), payload=b""),
    "v4-tcp": ipv4(tcp_bytes(), proto=IPPROTO_TCP),
    "v6-echo": echo6(payload=b""),
    "v6-qinq": echo6(vlans=(AD, Q), payload=b""),
    "v6-ext-chain": echo6(ext=[hop_by_hop(), routing(), dest_opts()], payload=b""),
    "v6-fragmented-chain": echo6(ext=[hop_by_hop(), fragment(0), dest_opts(pad=6)], payload=b""),
    "v6-non-first-fragment": echo6(ext=[dest_opts(), fragment(8)], payload=b""),
}
CUTS = [(name, n) for name, frame in TEMPLATES.items() for n in frame.cut_points()]


@pytest.mark.parametrize(("template", "length"), CUTS, ids=[f"{t}-{n}" for t, n in CUTS])
def test_truncated_frames(dp, template, length):
    """Cut at every byte: each header boundary moves the verdict exactly as specified."""
    dp.configure(default_action=DROP_DEFAULT)
    frame = TEMPLATES[template].cut(length)
    dp.run(frame).verify(frame, REASON_UNDER_DEFAULT_DROP[frame.parsed.l4])


BOUNDARY_CUTS = [
    (name, header.name, header.end - 1)
    for name, frame in TEMPLATES.items()
    for header in frame.headers
    if header.end - 1 >= 14
]


@pytest.mark.parametrize(
    ("template", "header", "length"), BOUNDARY_CUTS, ids=[f"{t}-{h}" for t, h, _ in BOUNDARY_CUTS]
)
def test_truncated_frames_under_all_protocols_block(dp, template, header, length):
    """A block rule with all-protocols drops what was cut after the IP header, never before."""
    dp.configure(flags=F.ALL_PROTOCOLS | F.PREFIXES_V4 | F.PREFIXES_V6)
    dp.rule("0.0.0.0/0", BLOCK)
    dp.rule("::/0", BLOCK)
    frame = TEMPLATES[template].cut(length)
    reason = R.DROP_BLOCK if frame.parsed.family else R.PASS_UNPARSED
    dp.run(frame).verify(frame, reason)


def test_frames_shorter_than_ethernet_header_are_refused_by_prog_run(dp):
    """The kernel will not build an XDP frame or an sk_buff under 14 bytes, so that path
    cannot be run here (the program's own bounds check passes it as unparsed; see
    truncation tests)."""
    if dp.entry.hook == enums.Hook.XDP:
        data = bytes(4) + bytes(range(10))  # 4 bytes of metadata, then a 10-byte frame
        context: bytes | None = struct.pack("=6I", 4, len(data), 0, 0, 0, 0)  # struct xdp_md
    else:
        data, context = bytes(range(13)), None
    with pytest.raises(BpfError) as refused:
        dp.program.test_run(data, context=context)
    assert refused.value.errno == errno.EINVAL
    assert dp.counter(R.PASS_UNPARSED) == (0, 0)


# Rules: block, allow, exact vs prefix, default


V4_OUT = "198.19.0.2"  # outside 198.18.0.0/16
V6_OUT = "fc00::2"  # outside fd00::/8

RULE_CASES = [
    # id, rules, flags, default action, frame, reason, hits per rule
    ("v4-block-src", [(f"{V4_SRC}/32", BLOCK)], NO_FLAGS, PASS_DEFAULT, echo4(), R.DROP_BLOCK,
     {f"{V4_SRC}/32": 1}),
    ("v4-block-dst", [(f"{V4_DST}/32", BLOCK)], NO_FLAGS, PASS_DEFAULT, echo4(), R.DROP_BLOCK,
     {f"{V4_DST}/32": 1}),
    ("v4-allow-src", [(f"{V4_SRC}/32", ALLOW)], NO_FLAGS, DROP_DEFAULT, echo4(), R.PASS_ALLOW,
     {f"{V4_SRC}/32": 1}),
    ("v4-allow-dst", [(f"{V4_DST}/32", ALLOW)], NO_FLAGS, DROP_DEFAULT, echo4(0), R.PASS_ALLOW,
     {f"{V4_DST}/32": 1}),
    ("v4-allow-src-block-dst", [(f"{V4_SRC}/32", ALLOW), (f"{V4_DST}/32", BLOCK)], NO_FLAGS,
     PASS_DEFAULT, echo4(), R.DROP_BLOCK, {f"{V4_SRC}/32": 0, f"{V4_DST}/32": 1}),
    ("v4-block-src-allow-dst", [(f"{V4_SRC}/32", BLOCK), (f"{V4_DST}/32", ALLOW)], NO_FLAGS,
     DROP_DEFAULT, echo4(), R.DROP_BLOCK, {f"{V4_SRC}/32": 1, f"{V4_DST}/32": 0}),
    ("v4-both-allowed", [(f"{V4_SRC}/32", ALLOW), (f"{V4_DST}/32", ALLOW)], NO_FLAGS,
     DROP_DEFAULT, echo4(), R.PASS_ALLOW, {f"{V4_SRC}/32": 1, f"{V4_DST}/32": 1}),
    # A blocked source decides alone: the destination is not even looked up.
    ("v4-both-blocked", [(f"{V4_SRC}/32", BLOCK), (f"{V4_DST}/32", BLOCK)], NO_FLAGS,
     PASS_DEFAULT, echo4(), R.DROP_BLOCK, {f"{V4_SRC}/32": 1, f"{V4_DST}/32": 0}),
    ("v4-unrelated-block", [("198.18.9.9/32", BLOCK)], NO_FLAGS, PASS_DEFAULT, echo4(),
     R.PASS_DEFAULT, {"198.18.9.9/32": 0}),
    ("v4-unrelated-allow", [("198.18.9.9/32", ALLOW)], NO_FLAGS, DROP_DEFAULT, echo4(),
     R.DROP_DEFAULT, {"198.18.9.9/32": 0}),
    ("v4-prefix-block", [("198.18.0.0/24", BLOCK)], F.PREFIXES_V4, PASS_DEFAULT,
     echo4(dst=V4_OUT), R.DROP_BLOCK, {"198.18.0.0/24": 1}),
    ("v4-prefix-block-dst", [("198.18.0.0/24", BLOCK)], F.PREFIXES_V4, PASS_DEFAULT,
     echo4(src=V4_OUT, dst=V4_SRC), R.DROP_BLOCK, {"198.18.0.0/24": 1}),
    ("v4-prefix-without-flag-ignored", [("198.18.0.0/24", BLOCK)], NO_FLAGS, PASS_DEFAULT,
     echo4(dst=V4_OUT), R.PASS_DEFAULT, {"198.18.0.0/24": 0}),
    ("v4-prefix-v6-flag-ignored", [("198.18.0.0/24", BLOCK)], F.PREFIXES_V6, PASS_DEFAULT,
     echo4(dst=V4_OUT), R.PASS_DEFAULT, {"198.18.0.0/24": 0}),
    ("v4-prefix-allow", [("198.18.0.0/24", ALLOW)], F.PREFIXES_V4, DROP_DEFAULT,
     echo4(dst=V4_OUT), R.PASS_ALLOW, {"198.18.0.0/24": 1}),
    ("v4-slash0-block", [("0.0.0.0/0", BLOCK)], F.PREFIXES_V4, PASS_DEFAULT, echo4(),
     R.DROP_BLOCK, {"0.0.0.0/0": 1}),
    ("v4-exact-allow-beats-prefix-block", [("198.18.0.0/24", BLOCK), (f"{V4_SRC}/32", ALLOW)],
     F.PREFIXES_V4, DROP_DEFAULT, echo4(dst=V4_OUT), R.PASS_ALLOW,
     {"198.18.0.0/24": 0, f"{V4_SRC}/32": 1}),
    ("v4-prefix-block-other-host", [("198.18.0.0/24", BLOCK), (f"{V4_SRC}/32", ALLOW)],
     F.PREFIXES_V4, DROP_DEFAULT, echo4(src="198.18.0.5", dst=V4_OUT), R.DROP_BLOCK,
     {"198.18.0.0/24": 1, f"{V4_SRC}/32": 0}),
    ("v4-exact-block-beats-prefix-allow", [("198.18.0.0/24", ALLOW), (f"{V4_SRC}/32", BLOCK)],
     F.PREFIXES_V4, PASS_DEFAULT, echo4(dst=V4_OUT), R.DROP_BLOCK,
     {"198.18.0.0/24": 0, f"{V4_SRC}/32": 1}),
    ("v4-longer-block-beats-shorter-allow", [("198.18.0.0/16", ALLOW), ("198.18.0.0/24", BLOCK)],
     F.PREFIXES_V4, PASS_DEFAULT, echo4(dst=V4_OUT), R.DROP_BLOCK,
     {"198.18.0.0/16": 0, "198.18.0.0/24": 1}),
    ("v4-longer-allow-beats-shorter-block", [("198.18.0.0/16", BLOCK), ("198.18.0.0/24", ALLOW)],
     F.PREFIXES_V4, DROP_DEFAULT, echo4(dst=V4_OUT), R.PASS_ALLOW,
     {"198.18.0.0/16": 0, "198.18.0.0/24": 1}),
    ("v4-shorter-prefix-outside-longer", [("198.18.0.0/16", BLOCK), ("198.18.0.0/24", ALLOW)],
     F.PREFIXES_V4, PASS_DEFAULT, echo4(src="198.18.1.1", dst=V4_OUT), R.DROP_BLOCK,
     {"198.18.0.0/16": 1, "198.18.0.0/24": 0}),
    ("v6-block-src", [(f"{V6_SRC}/128", BLOCK)], NO_FLAGS, PASS_DEFAULT, echo6(), R.DROP_BLOCK,
     {f"{V6_SRC}/128": 1}),
    ("v6-block-dst", [(f"{V6_DST}/128", BLOCK)], NO_FLAGS, PASS_DEFAULT, echo6(129),
     R.DROP_BLOCK, {f"{V6_DST}/128": 1}),
    ("v6-allow-src", [(f"{V6_SRC}/128", ALLOW)], NO_FLAGS, DROP_DEFAULT, echo6(), R.PASS_ALLOW,
     {f"{V6_SRC}/128": 1}),
    ("v6-allow-src-block-dst", [(f"{V6_SRC}/128", ALLOW), (f"{V6_DST}/128", BLOCK)], NO_FLAGS,
     DROP_DEFAULT, echo6(), R.DROP_BLOCK, {f"{V6_SRC}/128": 0, f"{V6_DST}/128": 1}),
    ("v6-prefix-block", [("fd00::/64", BLOCK)], F.PREFIXES_V6, PASS_DEFAULT, echo6(dst=V6_OUT),
     R.DROP_BLOCK, {"fd00::/64": 1}),
    ("v6-prefix-without-flag-ignored", [("fd00::/64", BLOCK)], NO_FLAGS, PASS_DEFAULT,
     echo6(dst=V6_OUT), R.PASS_DEFAULT, {"fd00::/64": 0}),
    ("v6-prefix-v4-flag-ignored", [("fd00::/64", BLOCK)], F.PREFIXES_V4, PASS_DEFAULT,
     echo6(dst=V6_OUT), R.PASS_DEFAULT, {"fd00::/64": 0}),
    ("v6-exact-allow-beats-prefix-block", [("fd00::/16", BLOCK), (f"{V6_SRC}/128", ALLOW)],
     F.PREFIXES_V6, DROP_DEFAULT, echo6(dst=V6_OUT), R.PASS_ALLOW,
     {"fd00::/16": 0, f"{V6_SRC}/128": 1}),
    ("v6-longer-allow-beats-shorter-block", [("fd00::/8", BLOCK), ("fd00::/64", ALLOW)],
     F.PREFIXES_V6, DROP_DEFAULT, echo6(dst=V6_OUT), R.PASS_ALLOW,
     {"fd00::/8": 0, "fd00::/64": 1}),
    ("v6-prefix-block-other-host", [("fd00::/64", BLOCK), (f"{V6_SRC}/128", ALLOW)],
     F.PREFIXES_V6, DROP_DEFAULT, echo6(src="fd00::99", dst=V6_OUT), R.DROP_BLOCK,
     {"fd00::/64": 1, f"{V6_SRC}/128": 0}),
    ("v4-rules-do-not-judge-v6", [("0.0.0.0/0", BLOCK)], F.PREFIXES_V4 | F.PREFIXES_V6,
     PASS_DEFAULT, echo6(), R.PASS_DEFAULT, {"0.0.0.0/0": 0}),
    ("v6-rules-do-not-judge-v4", [("::/0", BLOCK)], F.PREFIXES_V4 | F.PREFIXES_V6,
     PASS_DEFAULT, echo4(), R.PASS_DEFAULT, {"::/0": 0}),
]


@pytest.mark.parametrize(
    ("rules", "flags", "default", "frame", "reason", "hits"),
    [case[1:] for case in RULE_CASES],
    ids=[case[0] for case in RULE_CASES],
)
def test_rules(dp, rules, flags, default, frame, reason, hits):
    # ``flags`` are the prefix lookups the case is about; exact lookups are on.
    for network, action in rules:
        dp.rule(network, action)
    dp.configure(default_action=default, flags=flags | F.EXACT_V4 | F.EXACT_V6)
    dp.run(frame).verify(frame, reason)
    assert {network: dp.hits(network) for network in hits} == hits


EXACT_LOOKUP_CASES = [
    ("v4-with-its-flag", f"{V4_SRC}/32", F.EXACT_V4, echo4(), R.DROP_BLOCK, 1),
    ("v4-without-a-flag", f"{V4_SRC}/32", NO_FLAGS, echo4(), R.PASS_DEFAULT, 0),
    ("v4-with-the-v6-flag", f"{V4_SRC}/32", F.EXACT_V6, echo4(), R.PASS_DEFAULT, 0),
    ("v6-with-its-flag", f"{V6_SRC}/128", F.EXACT_V6, echo6(), R.DROP_BLOCK, 1),
    ("v6-with-the-v4-flag", f"{V6_SRC}/128", F.EXACT_V4, echo6(), R.PASS_DEFAULT, 0),
    ("mapped-with-the-v4-flag", f"{V4_SRC}/32", F.EXACT_V4, echo6(src="::ffff:198.18.0.1"),
     R.DROP_BLOCK, 1),
    ("mapped-with-the-v6-flag", f"{V4_SRC}/32", F.EXACT_V6, echo6(src="::ffff:198.18.0.1"),
     R.PASS_DEFAULT, 0),
]


@pytest.mark.parametrize(
    ("rule", "flags", "frame", "reason", "hits"),
    [case[1:] for case in EXACT_LOOKUP_CASES],
    ids=[case[0] for case in EXACT_LOOKUP_CASES],
)
def test_exact_maps_are_looked_up_only_when_flagged(dp, rule, flags, frame, reason, hits):
    """pingkiller.rules sets a map's flag while it holds rules; the program skips the
    lookup of a map whose flag is off (an empty map: e.g. a default-drop policy)."""
    dp.rule(rule, BLOCK)
    dp.configure(flags=flags)
    dp.run(frame).verify(frame, reason)
    assert dp.hits(rule) == hits


def test_rule_hits_accumulate_per_packet(dp):
    dp.configure(default_action=DROP_DEFAULT)
    dp.rule(f"{V4_SRC}/32", ALLOW)
    for _ in range(3):
        dp.run(echo4())
    dp.run(echo4(src="198.18.0.7"))  # default drop: no rule decided it
    assert dp.hits(f"{V4_SRC}/32") == 3
    assert dp.counter(R.PASS_ALLOW)[0] == 3
    assert dp.counter(R.DROP_DEFAULT)[0] == 1


def test_rule_hits_with_repeat(dp):
    dp.rule(f"{V6_DST}/128", BLOCK)
    frame = echo6()
    outcome = dp.run(frame, repeat=50)
    assert outcome.dropped
    assert outcome.reasons == {R.DROP_BLOCK: (50, 50 * len(frame))}
    assert dp.hits(f"{V6_DST}/128") == 50


def test_rule_deciding_both_sides_counts_the_packet_once(dp):
    """A prefix rule that is the best rule of both src and dst decided one packet."""
    dp.configure(flags=F.PREFIXES_V4)
    dp.rule("198.18.0.0/24", BLOCK)
    frame = echo4()
    dp.run(frame).verify(frame, R.DROP_BLOCK)
    assert dp.hits("198.18.0.0/24") == 1


@pytest.mark.parametrize(
    ("default", "reason"), [(PASS_DEFAULT, R.PASS_DEFAULT), (DROP_DEFAULT, R.DROP_DEFAULT)]
)
def test_default_verdicts_hit_no_rule(dp, default, reason):
    dp.configure(default_action=default, flags=F.PREFIXES_V4)
    dp.rule("198.19.0.0/16", BLOCK)
    dp.rule("198.19.0.1/32", ALLOW)
    frame = echo4()
    dp.run(frame).verify(frame, reason)
    assert dp.hits("198.19.0.0/16") == dp.hits("198.19.0.1/32") == 0


# All-protocols blocking


ALL_PROTOCOL_FRAMES = {
    # name: (frame, reason when not blocked)
    "v4-tcp": (ipv4(tcp_bytes(), proto=IPPROTO_TCP), R.PASS_NOT_PING),
    "v4-udp": (ipv4(udp_bytes(), proto=IPPROTO_UDP), R.PASS_NOT_PING),
    "v4-dest-unreachable": (as_other(echo4(3, code=1)), R.PASS_NOT_PING),
    "v4-non-first-fragment": (echo4(offset=20), R.PASS_FRAGMENT),
    "v4-icmp-cut": (echo4().cut(14 + 20 + 2), R.PASS_UNPARSED),
    "v6-tcp": (ipv6(tcp_bytes(), nh=IPPROTO_TCP), R.PASS_NOT_PING),
    "v6-non-first-fragment": (echo6(ext=[fragment(9)]), R.PASS_FRAGMENT),
    "v6-ext-cut": (echo6(ext=[hop_by_hop(pad=30)]).cut(14 + 40 + 9), R.PASS_UNPARSED),
    "v6-icmp-cut": (echo6().cut(14 + 40 + 7), R.PASS_UNPARSED),
}


def _src_rule(frame: Frame) -> str:
    return f"{V4_SRC}/32" if frame.parsed.family == 4 else f"{V6_SRC}/128"


@pytest.mark.parametrize("name", ALL_PROTOCOL_FRAMES)
def test_block_rule_spares_non_pings_without_all_protocols(dp, name):
    frame, reason = ALL_PROTOCOL_FRAMES[name]
    dp.rule(_src_rule(frame), BLOCK)
    dp.run(frame).verify(frame, reason)
    assert dp.hits(_src_rule(frame)) == 0


@pytest.mark.parametrize("name", ALL_PROTOCOL_FRAMES)
def test_all_protocols_block_drops_non_pings(dp, name):
    frame, _ = ALL_PROTOCOL_FRAMES[name]
    dp.configure(flags=F.ALL_PROTOCOLS)
    dp.rule(_src_rule(frame), BLOCK)
    dp.run(frame).verify(frame, R.DROP_BLOCK)
    assert dp.hits(_src_rule(frame)) == 1


@pytest.mark.parametrize("icmp_type", range(133, 138))
def test_neighbour_discovery_passes_even_all_protocols_blocks(dp, icmp_type):
    frame = as_other(echo6(icmp_type))
    dp.configure(flags=F.ALL_PROTOCOLS, default_action=DROP_DEFAULT, icmp=enums.IcmpSet.ALL)
    dp.rule(_src_rule(frame), BLOCK)
    dp.run(frame).verify(frame, R.PASS_NOT_PING)
    assert dp.hits(_src_rule(frame)) == 0


@pytest.mark.parametrize("name", ALL_PROTOCOL_FRAMES)
def test_all_protocols_without_block_rule_passes(dp, name):
    """All-protocols needs a block rule: allow rules and default drop touch pings only."""
    frame, reason = ALL_PROTOCOL_FRAMES[name]
    dp.configure(default_action=DROP_DEFAULT, flags=F.ALL_PROTOCOLS)
    dp.rule(_src_rule(frame), ALLOW)
    dp.rule("198.18.9.9/32", BLOCK)
    dp.run(frame).verify(frame, reason)
    assert dp.hits(_src_rule(frame)) == 0


@pytest.mark.parametrize(
    ("frame", "reason"),
    [(non_ip(ETH_P_ARP), R.PASS_NOT_PING), (unparsed(echo4().data[:30]), R.PASS_UNPARSED),
     (cut_tag_stack(), R.PASS_UNPARSED)],
    ids=["arp", "ipv4-header-cut", "tag-stack-cut"],
)
def test_all_protocols_cannot_block_what_has_no_address(dp, frame, reason):
    dp.configure(flags=F.ALL_PROTOCOLS | F.PREFIXES_V4 | F.PREFIXES_V6)
    dp.rule("0.0.0.0/0", BLOCK)
    dp.rule("::/0", BLOCK)
    dp.run(frame).verify(frame, reason)


# IPv4-mapped IPv6


MAPPED = "::ffff:198.18.0.1"
MAPPED_CASES = [
    # id, frame, rules, flags, default, reason, hits
    ("v4-exact-block", echo6(src=MAPPED), [(f"{V4_SRC}/32", BLOCK)], NO_FLAGS, PASS_DEFAULT,
     R.DROP_BLOCK, {f"{V4_SRC}/32": 1}),
    ("v4-exact-allow", echo6(src=MAPPED), [(f"{V4_SRC}/32", ALLOW)], NO_FLAGS, DROP_DEFAULT,
     R.PASS_ALLOW, {f"{V4_SRC}/32": 1}),
    ("v4-exact-block-dst", echo6(dst="::ffff:198.18.0.2"), [(f"{V4_DST}/32", BLOCK)], NO_FLAGS,
     PASS_DEFAULT, R.DROP_BLOCK, {f"{V4_DST}/32": 1}),
    ("v4-prefix-block", echo6(src=MAPPED), [("198.18.0.0/24", BLOCK)], F.PREFIXES_V4,
     PASS_DEFAULT, R.DROP_BLOCK, {"198.18.0.0/24": 1}),
    ("v4-prefix-needs-v4-flag", echo6(src=MAPPED), [("198.18.0.0/24", BLOCK)], F.PREFIXES_V6,
     PASS_DEFAULT, R.PASS_DEFAULT, {"198.18.0.0/24": 0}),
    ("v6-prefix-block", echo6(src=MAPPED), [("::ffff:0:0/96", BLOCK)], F.PREFIXES_V6,
     PASS_DEFAULT, R.DROP_BLOCK, {"::ffff:0:0/96": 1}),
    ("v4-exact-before-v6-prefix", echo6(src=MAPPED),
     [(f"{V4_SRC}/32", ALLOW), ("::ffff:0:0/96", BLOCK)], F.PREFIXES_V6, DROP_DEFAULT,
     R.PASS_ALLOW, {f"{V4_SRC}/32": 1, "::ffff:0:0/96": 0}),
    ("v4-prefix-before-v6-prefix", echo6(src=MAPPED),
     [("198.18.0.0/24", ALLOW), ("::ffff:0:0/96", BLOCK)], F.PREFIXES_V4 | F.PREFIXES_V6,
     DROP_DEFAULT, R.PASS_ALLOW, {"198.18.0.0/24": 1, "::ffff:0:0/96": 0}),
    ("v6-prefix-when-no-v4-rule", echo6(src=MAPPED),
     [("198.18.5.0/24", ALLOW), ("::ffff:0:0/96", BLOCK)], F.PREFIXES_V4 | F.PREFIXES_V6,
     PASS_DEFAULT, R.DROP_BLOCK, {"198.18.5.0/24": 0, "::ffff:0:0/96": 1}),
    # The spec: IPv4 rules, then IPv6 prefixes; the exact IPv6 map is not consulted.
    ("v6-exact-not-consulted", echo6(src=MAPPED), [(f"{MAPPED}/128", BLOCK)], NO_FLAGS,
     PASS_DEFAULT, R.PASS_DEFAULT, {f"{MAPPED}/128": 0}),
    ("v4-compatible-is-not-mapped", echo6(src="::198.18.0.1"), [(f"{V4_SRC}/32", BLOCK)],
     NO_FLAGS, PASS_DEFAULT, R.PASS_DEFAULT, {f"{V4_SRC}/32": 0}),
    ("v4-translated-is-not-mapped", echo6(src="::ffff:0:198.18.0.1"), [(f"{V4_SRC}/32", BLOCK)],
     NO_FLAGS, PASS_DEFAULT, R.PASS_DEFAULT, {f"{V4_SRC}/32": 0}),
    ("unmapped-v6-exact-still-works", echo6(src="::198.18.0.1"), [("::198.18.0.1/128", BLOCK)],
     NO_FLAGS, PASS_DEFAULT, R.DROP_BLOCK, {"::198.18.0.1/128": 1}),
]


@pytest.mark.parametrize(
    ("frame", "rules", "flags", "default", "reason", "hits"),
    [case[1:] for case in MAPPED_CASES],
    ids=[case[0] for case in MAPPED_CASES],
)
def test_ipv4_mapped_ipv6(dp, frame, rules, flags, default, reason, hits):
    # ``flags`` are the prefix lookups the case is about; exact lookups are on.
    for network, action in rules:
        dp.rule(network, action)
    dp.configure(default_action=default, flags=flags | F.EXACT_V4 | F.EXACT_V6)
    dp.run(frame).verify(frame, reason)
    assert {network: dp.hits(network) for network in hits} == hits


# Event modes


def _scenario(dp, kind: str, mode: enums.EventsMode) -> tuple[Frame, enums.Reason]:
    """Configure for one kind of packet; returns the frame and the reason it must get."""
    icmp_cut = echo4(mf=True).cut(14 + 20 + 4)
    tcp = ipv4(tcp_bytes(), proto=IPPROTO_TCP)
    table = {
        "ping-dropped": (DROP_DEFAULT, NO_FLAGS, echo4(), R.DROP_DEFAULT),
        "ping-passed": (PASS_DEFAULT, NO_FLAGS, echo4(), R.PASS_DEFAULT),
        "suspect-dropped": (DROP_DEFAULT, NO_FLAGS, icmp_cut, R.DROP_DEFAULT),
        "suspect-passed": (PASS_DEFAULT, NO_FLAGS, icmp_cut, R.PASS_DEFAULT),
        "other-passed": (DROP_DEFAULT, NO_FLAGS, tcp, R.PASS_NOT_PING),
        "other-dropped": (PASS_DEFAULT, F.ALL_PROTOCOLS, tcp, R.DROP_BLOCK),
        "unparsed": (DROP_DEFAULT, NO_FLAGS, cut_tag_stack(), R.PASS_UNPARSED),
        "fragment": (DROP_DEFAULT, NO_FLAGS, echo4(offset=5), R.PASS_FRAGMENT),
    }
    default, flags, frame, reason = table[kind]
    dp.configure(default_action=default, flags=flags, events=mode)
    if kind == "other-dropped":
        dp.rule(f"{V4_SRC}/32", BLOCK)
    return frame, reason


EVENT_KINDS = ["ping-dropped", "ping-passed", "suspect-dropped", "suspect-passed",
               "other-passed", "other-dropped", "unparsed", "fragment"]
WANTS_EVENT = {
    enums.EventsMode.OFF: set(),
    enums.EventsMode.DROPS: {"ping-dropped", "suspect-dropped", "other-dropped"},
    enums.EventsMode.PINGS: {"ping-dropped", "ping-passed", "suspect-dropped", "suspect-passed"},
    enums.EventsMode.ALL: set(EVENT_KINDS),
}


@pytest.mark.parametrize("mode", list(enums.EventsMode), ids=lambda m: m.name.lower())
@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_event_modes(dp, mode, kind):
    frame, reason = _scenario(dp, kind, mode)
    dp.run(frame).verify(frame, reason, event=kind in WANTS_EVENT[mode])


# Event rate limit and lost events


def test_event_rate_limit_suppresses_per_cpu(dp, one_cpu):
    dp.configure(event_rate=3)
    frame = echo4()
    outcomes = [dp.run(frame) for _ in range(5)]
    assert [len(o.events) for o in outcomes] == [1, 1, 1, 0, 0]
    assert dp.counter(R.PASS_DEFAULT) == (5, 5 * len(frame))
    assert dp.counter(abi.CounterSlot.EVENTS_SENT) == (3, 0)
    assert dp.counter(abi.CounterSlot.EVENTS_SUPPRESSED) == (2, 0)
    assert dp.counter(abi.CounterSlot.EVENTS_LOST) == (0, 0)
    # Only the CPU that ran the program spent its budget.
    budgets = [abi.EVENT_BUDGET.unpack(v) for v in dp.obj.maps["event_budget"].per_cpu(abi.u32_key(0))]
    assert budgets[one_cpu][1] == 3
    assert all(sent == 0 for cpu, (_, sent) in enumerate(budgets) if cpu != one_cpu)




def test_event_rate_window_renews_after_a_second(dp, one_cpu):
    dp.configure(event_rate=2)
    frame = echo6()
    for _ in range(3):
        dp.run(frame)
    assert dp.counter(abi.CounterSlot.EVENTS_SUPPRESSED) == (1, 0)
    budget_map = dp.obj.maps["event_budget"]
    started, sent = abi.EVENT_BUDGET.unpack(budget_map.per_cpu(abi.u32_key(0))[one_cpu])
    assert sent == 2 and started > 0  # the window opened at the first event, in jiffies
    # Still within the window: suppressed.
    within = dp.run(frame)
    assert within.events == [] and within.counters[abi.CounterSlot.EVENTS_SUPPRESSED] == (1, 0)
    # Age the window by more than a second (HZ jiffies) instead of sleeping.
    hz = abi.jiffies_per_second()
    aged = abi.EVENT_BUDGET.pack(started - hz - 1, 2)
    budget_map[abi.u32_key(0)] = aged.ljust(budget_map.value_stride, b"\0") * budget_map.cpus
    outcome = dp.run(frame)
    outcome.verify(frame, R.PASS_DEFAULT)
    window, sent = abi.EVENT_BUDGET.unpack(budget_map.per_cpu(abi.u32_key(0))[one_cpu])
    assert sent == 1
    # A new window, opened now: jiffies went on from where the first one opened.
    assert started <= window <= started + 60 * hz


def test_event_rate_limit_within_one_run(dp, one_cpu):
    dp.configure(event_rate=10)
    outcome = dp.run(echo4(), repeat=25)
    assert len(outcome.events) == 10
    assert outcome.counters[abi.CounterSlot.EVENTS_SENT] == (10, 0)
    assert outcome.counters[abi.CounterSlot.EVENTS_SUPPRESSED] == (15, 0)


def test_event_rate_zero_is_unlimited(dp):
    dp.configure(event_rate=0)
    outcome = dp.run(echo4(), repeat=500)
    assert len(outcome.events) == 500
    assert outcome.counters[abi.CounterSlot.EVENTS_SENT] == (500, 0)
    assert abi.CounterSlot.EVENTS_SUPPRESSED not in outcome.counters


def test_full_ring_counts_lost_events(dp):
    dp.configure(event_rate=0)
    runs = 20_000  # 20k records of 64+8 bytes do not fit the 1 MiB ring
    outcome = dp.run(echo4(), repeat=runs)
    sent = outcome.counters[abi.CounterSlot.EVENTS_SENT][0]
    lost = outcome.counters[abi.CounterSlot.EVENTS_LOST][0]
    assert lost > 0
    assert sent + lost == runs
    assert len(outcome.events) == sent
    assert outcome.counters[R.PASS_DEFAULT][0] == runs
    # Once drained the ring takes events again.
    dp.run(echo4()).verify(echo4(), R.PASS_DEFAULT)


# Timing and counters


@pytest.mark.parametrize(
    ("default", "slot", "other"),
    [(DROP_DEFAULT, enums.TimingSlot.DROP, enums.TimingSlot.PASS),
     (PASS_DEFAULT, enums.TimingSlot.PASS, enums.TimingSlot.DROP)],
    ids=["drop", "pass"],
)
def test_timing_counts_per_verdict(dp, default, slot, other):
    dp.configure(default_action=default, flags=F.TIMING, events=enums.EventsMode.OFF)
    dp.run(echo4(), repeat=20)
    count, total_ns = dp.timing(slot)
    assert count == 20
    assert 0 < total_ns < 20 * 1_000_000_000
    assert dp.timing(other) == (0, 0)


def test_no_timing_without_the_flag(dp):
    dp.configure(default_action=DROP_DEFAULT)
    dp.run(echo4(), repeat=5)
    dp.run(ipv4(tcp_bytes(), proto=IPPROTO_TCP), repeat=5)
    assert dp.timing(enums.TimingSlot.DROP) == (0, 0)
    assert dp.timing(enums.TimingSlot.PASS) == (0, 0)


def test_reason_counters_add_packets_and_bytes(dp):
    dp.configure(default_action=DROP_DEFAULT, events=enums.EventsMode.OFF)
    frames = [echo4(payload=b"x" * n) for n in (0, 10, 100, 1000)]
    for frame in frames:
        dp.run(frame)
    assert dp.counter(R.DROP_DEFAULT) == (4, sum(len(f) for f in frames))
    others = [dp.counter(slot) for slot in range(abi.COUNTER_COUNT) if slot != R.DROP_DEFAULT]
    assert all(value == (0, 0) for value in others)


def test_counters_are_per_cpu_and_summed(dp):
    frame = echo4()
    dp.run(frame, repeat=7)
    per_cpu = dp.obj.maps[abi.COUNTERS_MAP].per_cpu(abi.u32_key(R.PASS_DEFAULT))
    values = [abi.COUNTER.unpack(v) for v in per_cpu]
    assert len(values) == dp.obj.maps[abi.COUNTERS_MAP].cpus
    assert (sum(p for p, _ in values), sum(b for _, b in values)) == (7, 7 * len(frame))
