"""A pure-Python oracle of the pingkiller data path: what the XDP program must do with a frame.

This is an independent model of the policy, written from the specification in issue #4, not
from the C. It parses raw frame bytes with :mod:`struct` (no scapy) and returns the verdict,
the reason (which is also the counter slot), the rule hits and the ring-buffer event the real
program must produce. The differential tests run the same frame through BPF_PROG_RUN and
demand equality.

Nothing here imports the product except the ABI enums, so a bug in the product's parsing or
encoding cannot leak into the expectation.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from pingkiller.model.enums import DefaultAction, EventsMode, IcmpSet, Reason, RuleAction

XDP_DROP = 1
XDP_PASS = 2
# The tc programs judge the same way and say it in tc's words: drop is TC_ACT_SHOT, pass is
# TCX_NEXT (not TC_ACT_OK: the programs after it must still run). An event's verdict is
# XDP_DROP or XDP_PASS whatever the hook.
TC_ACT_SHOT = 2
TCX_NEXT = -1
TC_RETURN = {XDP_DROP: TC_ACT_SHOT, XDP_PASS: TCX_NEXT}

ETH_HLEN = 14
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
VLAN_TPIDS = frozenset({0x8100, 0x88A8})
# The program reads 2 tags in place and walks a deeper stack with bpf_loop, as far as 2 + 1024
# tags (kern/pingkiller.bpf.c): Linux strips stacked priority tags, so the stack is walked.
MAX_VLAN_TAGS = 2 + 1024
VLAN_HLEN = 4

IPV4_HLEN = 20
IPV4_MF = 0x2000
IPV4_OFFSET = 0x1FFF
IPV6_HLEN = 40
IPV6_OFFSET = 0xFFF8
# 8 read in place, a longer chain walked with bpf_loop as far as 8 + 512 headers: past 4 KiB
# of 8-byte headers, more than any frame BPF_PROG_RUN takes holds.
MAX_IPV6_EXT_HDRS = 8 + 512

IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_DSTOPTS = 60
OPTION_HEADERS = frozenset({IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS, IPPROTO_AH})
EXTENSION_HEADERS = OPTION_HEADERS | {IPPROTO_FRAGMENT}

ICMP_HLEN = 8
ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
ICMPV6_NDP = range(133, 138)  # router/neighbour solicitation/advertisement, redirect

MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")

# A rule that is the best rule of both src and dst and decides the packet: the first
# spec gave it +2 hits; pingkiller.h defines hits as "packets whose verdict this rule decided",
# and since 43da030 the data path counts such a packet once. Flip this if that ever changes.
SAME_RULE_COUNTS_TWICE = False

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_U16 = struct.Struct("!H")
_ICMP = struct.Struct("!BBHHH")  # type code checksum id sequence


class L4(enum.Enum):
    """What the transport-layer parse found."""

    PING = "ping"  # a ping under the configured ICMP set
    SUSPECT = "suspect"  # transport header unseen behind a fragment/walk limit: judged as a ping
    OTHER = "other"  # another transport, ICMP that is no ping, or a non-IP ethertype
    NDP = "ndp"  # ICMPv6 neighbour discovery (133-137): passes whatever the rules say
    FRAGMENT = "fragment"  # non-first fragment
    UNPARSED = "unparsed"  # malformed or not understood


def normalize(network: Network) -> Network:
    """An IPv4-mapped IPv6 network (inside ::ffff:0:0/96) is the IPv4 network it maps."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(MAPPED_V4):
        address = int(network.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((address, network.prefixlen - 96))
    return network


def _is_exact(network: Network) -> bool:
    return network.prefixlen == network.max_prefixlen


@dataclass(frozen=True)
class Policy:
    """The policy the data path enforces: config plus rules (normalized, one per network)."""

    default_action: DefaultAction = DefaultAction.PASS
    icmp_set: IcmpChoice = IcmpSet.ECHO
    events: EventsMode = EventsMode.OFF
    all_protocols: bool = False
    rules: tuple[tuple[Network, RuleAction], ...] = ()
    # The limiter (the default's rate is class 0, a limit rule's its class, 1 unless
    # listed here), and the state its buckets are in: the bucket a limited ping is judged
    # by is ABSENT (a new peer), FRESH (it holds a ping) or EMPTY; the total, when on
    # (not None), holds a ping (True) or not (False).
    limit_classes: tuple[tuple[Network, int], ...] = ()
    prefix6: int = 64
    bucket: str = "absent"
    total: bool | None = None

    @classmethod
    def make(
        cls,
        rules: Iterable[tuple[Network, RuleAction]] = (),
        **config: object,
    ) -> Policy:
        """A policy whose rules are normalized; a later rule for the same network wins."""
        table: dict[Network, RuleAction] = {}
        for network, action in rules:
            key = normalize(network)
            table.pop(key, None)
            table[key] = RuleAction(action)
        return cls(rules=tuple(table.items()), **config)  # type: ignore[arg-type]

    def limit_class(self, rule: Network) -> int:
        return dict(self.limit_classes).get(rule, 1)

    @cached_property
    def table(self) -> Mapping[Network, RuleAction]:
        return dict(self.rules)

    @cached_property
    def _index(
        self,
    ) -> tuple[dict[int, Network], list[tuple[int, int, Network]], dict[int, Network],
               list[tuple[int, int, Network]]]:
        exact4: dict[int, Network] = {}
        exact6: dict[int, Network] = {}
        prefix4: list[tuple[int, int, Network]] = []
        prefix6: list[tuple[int, int, Network]] = []
        for network, _ in self.rules:
            base = int(network.network_address)
            if network.version == 4:
                if _is_exact(network):
                    exact4[base] = network
                else:
                    prefix4.append((network.prefixlen, base, network))
            elif _is_exact(network):
                exact6[base] = network
            else:
                prefix6.append((network.prefixlen, base, network))
        prefix4.sort(key=lambda item: -item[0])
        prefix6.sort(key=lambda item: -item[0])
        return exact4, prefix4, exact6, prefix6

    def describe(self) -> str:
        rules = ", ".join(f"{action.name.lower()} {network}" for network, action in self.rules)
        icmp = (self.icmp_set.name.lower() if isinstance(self.icmp_set, IcmpSet)
                else f"v4 {sorted(self.icmp_set[0])} v6 {sorted(self.icmp_set[1])}")
        return (
            f"default={self.default_action.name.lower()} icmp={icmp} "
            f"events={self.events.name.lower()} all_protocols={self.all_protocols} "
            f"rules=[{rules}] classes={dict(self.limit_classes)} prefix6={self.prefix6} "
            f"bucket={self.bucket} total={self.total}"
        )


def _longest(prefixes: list[tuple[int, int, Network]], address: int, bits: int) -> Network | None:
    for prefixlen, base, network in prefixes:
        shift = bits - prefixlen
        if address >> shift == base >> shift:
            return network
    return None


def best_rule(policy: Policy, family: int, address: bytes) -> Network | None:
    """The rule that decides for ``address`` (16 bytes; IPv4 in the first 4), or None.

    Exact (/32, /128) first, else the longest prefix. An IPv4-mapped IPv6 address is judged
    by the IPv4 rules (exact, then prefixes) first, then by the IPv6 prefixes only.
    """
    exact4, prefix4, exact6, prefix6 = policy._index
    if family == 4:
        value = int.from_bytes(address[:4], "big")
        rule = exact4.get(value)
        return rule if rule is not None else _longest(prefix4, value, 32)
    value = int.from_bytes(address, "big")
    if value >> 32 == 0xFFFF:  # ::ffff:a.b.c.d
        v4 = value & 0xFFFFFFFF
        rule = exact4.get(v4)
        if rule is None:
            rule = _longest(prefix4, v4, 32)
    else:
        rule = exact6.get(value)
    return rule if rule is not None else _longest(prefix6, value, 128)


# Which ICMP messages count as pings: a shorthand, or the ICMP and ICMPv6 types themselves.
IcmpChoice = IcmpSet | tuple[frozenset[int], frozenset[int]]


def is_ping(family: int, icmp_type: int, icmp_set: IcmpChoice) -> bool:
    if family == 6 and icmp_type in ICMPV6_NDP:
        return False
    if isinstance(icmp_set, tuple):
        return icmp_type in icmp_set[family == 6]
    if icmp_set == IcmpSet.ALL:
        return True
    if family == 6:
        if icmp_set == IcmpSet.ECHO_REQUEST:
            return icmp_type == ICMPV6_ECHO_REQUEST
        return icmp_type in (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY)
    if icmp_set == IcmpSet.ECHO_REQUEST:
        return icmp_type == ICMP_ECHO_REQUEST
    return icmp_type in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)


_ZERO16 = bytes(16)


@dataclass(frozen=True)
class Parsed:
    """What the parse learned about one frame."""

    l4: L4
    family: int = 0  # 4, 6, or 0 when no IP header parsed
    protocol: int = 0  # IPv4 protocol / IPv6 final next header, 0 when none
    src: bytes = _ZERO16
    dst: bytes = _ZERO16
    icmp: tuple[int, int, int, int] | None = None  # type, code, id, seq
    vlan_tags: int = 0
    ext_headers: int = 0  # IPv6 extension headers walked completely


def _truncated(fragmented: bool) -> L4:
    """A transport header cut short: judged as a ping inside a fragment, else malformed."""
    return L4.SUSPECT if fragmented else L4.UNPARSED


def _icmp(frame: bytes, at: int, fragmented: bool, family: int,
          icmp_set: IcmpChoice) -> tuple[L4, tuple[int, int, int, int] | None]:
    if at + ICMP_HLEN > len(frame):
        return _truncated(fragmented), None
    icmp_type, code, _, ident, seq = _ICMP.unpack_from(frame, at)
    if family == 6 and icmp_type in ICMPV6_NDP:
        return L4.NDP, (icmp_type, code, ident, seq)
    kind = L4.PING if is_ping(family, icmp_type, icmp_set) else L4.OTHER
    return kind, (icmp_type, code, ident, seq)


def _parse_ipv4(frame: bytes, at: int, icmp_set: IcmpChoice, tags: int) -> Parsed:
    if at + IPV4_HLEN > len(frame):
        return Parsed(L4.UNPARSED, vlan_tags=tags)
    version_ihl = frame[at]
    header_len = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or header_len < IPV4_HLEN or at + header_len > len(frame):
        return Parsed(L4.UNPARSED, vlan_tags=tags)
    protocol = frame[at + 9]
    (frag_off,) = _U16.unpack_from(frame, at + 6)
    src = frame[at + 12 : at + 16] + bytes(12)
    dst = frame[at + 16 : at + 20] + bytes(12)
    icmp = None
    if frag_off & IPV4_OFFSET:
        kind = L4.FRAGMENT
    elif protocol != IPPROTO_ICMP:
        kind = L4.OTHER
    else:
        kind, icmp = _icmp(frame, at + header_len, bool(frag_off & IPV4_MF), 4, icmp_set)
    return Parsed(kind, 4, protocol, src, dst, icmp, tags)


def _parse_ipv6(frame: bytes, at: int, icmp_set: IcmpChoice, tags: int) -> Parsed:
    end = len(frame)
    if at + IPV6_HLEN > end or frame[at] >> 4 != 6:
        return Parsed(L4.UNPARSED, vlan_tags=tags)
    nexthdr = frame[at + 6]
    src = frame[at + 8 : at + 24]
    dst = frame[at + 24 : at + 40]
    cursor = at + IPV6_HLEN
    fragmented = False
    walked = 0

    def stop(kind: L4) -> Parsed:
        return Parsed(kind, 6, 0, src, dst, None, tags, walked)

    while nexthdr in EXTENSION_HEADERS:
        if walked == MAX_IPV6_EXT_HDRS:
            return stop(L4.SUSPECT)  # the chain goes on past the walk
        if nexthdr == IPPROTO_FRAGMENT:
            if cursor + 8 > end:
                return stop(_truncated(fragmented))
            following = frame[cursor]
            (frag_off,) = _U16.unpack_from(frame, cursor + 2)
            if frag_off & IPV6_OFFSET:
                return stop(L4.FRAGMENT)
            fragmented = True
            cursor += 8
        else:
            if cursor + 2 > end:
                return stop(_truncated(fragmented))
            following = frame[cursor]
            hdrlen = frame[cursor + 1]
            length = (hdrlen + 2) * 4 if nexthdr == IPPROTO_AH else (hdrlen + 1) * 8
            if cursor + length > end:
                return stop(_truncated(fragmented))
            cursor += length
        nexthdr = following
        walked += 1

    if nexthdr != IPPROTO_ICMPV6:
        return Parsed(L4.OTHER, 6, nexthdr, src, dst, None, tags, walked)
    kind, icmp = _icmp(frame, cursor, fragmented, 6, icmp_set)
    return Parsed(kind, 6, nexthdr, src, dst, icmp, tags, walked)


def parse(frame: bytes, icmp_set: IcmpChoice) -> Parsed:
    """Parse Ethernet, its VLAN tag stack, and IPv4/IPv6 down to the ICMP header."""
    if len(frame) < ETH_HLEN:
        return Parsed(L4.UNPARSED)
    (ethertype,) = _U16.unpack_from(frame, 12)
    cursor = ETH_HLEN
    tags = 0
    while ethertype in VLAN_TPIDS and tags < MAX_VLAN_TAGS:
        if cursor + VLAN_HLEN > len(frame):
            return Parsed(L4.UNPARSED, vlan_tags=tags)
        (ethertype,) = _U16.unpack_from(frame, cursor + 2)
        cursor += VLAN_HLEN
        tags += 1
    if ethertype == ETH_P_IP:
        return _parse_ipv4(frame, cursor, icmp_set, tags)
    if ethertype == ETH_P_IPV6:
        return _parse_ipv6(frame, cursor, icmp_set, tags)
    if ethertype in VLAN_TPIDS:
        return Parsed(L4.UNPARSED, vlan_tags=tags)  # a stack deeper than any frame
    return Parsed(L4.OTHER, vlan_tags=tags)


@dataclass(frozen=True)
class Event:
    """The fields of a ring-buffer event that the frame and policy determine."""

    length: int
    src: bytes
    dst: bytes
    verdict: int
    reason: Reason
    family: int
    protocol: int
    icmp_type: int
    icmp_code: int
    icmp_id: int
    icmp_seq: int


@dataclass(frozen=True)
class Outcome:
    """Everything the data path must do with one frame."""

    verdict: int
    reason: Reason
    hits: Mapping[Network, int] = field(default_factory=dict)  # only rules that were hit
    event: Event | None = None
    parsed: Parsed = field(default_factory=lambda: Parsed(L4.UNPARSED))
    bucket: bytes | None = None  # the key of the bucket a limited ping was judged by
    bucket_made: bool = False  # that bucket was made for it


def _action(policy: Policy, rule: Network | None) -> RuleAction | None:
    return None if rule is None else policy.table[rule]


_BUCKET_KEY = struct.Struct("=IB3x16s")  # struct pk_bucket_key: class, family, address


def bucket_key(policy: Policy, family: int, peer: bytes, limit_class: int) -> bytes:
    """The bucket of ``peer`` (16 bytes; IPv4 in the first 4) under ``limit_class``: an IPv4
    address, or an IPv4-mapped one as that IPv4 address, or an IPv6 address's first
    ``policy.prefix6`` bits."""
    if family == 4:
        return _BUCKET_KEY.pack(limit_class, 4, peer[:4])
    value = int.from_bytes(peer, "big")
    if value >> 32 == 0xFFFF:
        return _BUCKET_KEY.pack(limit_class, 4, peer[12:])
    kept = value >> (128 - policy.prefix6) << (128 - policy.prefix6)
    return _BUCKET_KEY.pack(limit_class, 6, kept.to_bytes(16, "big"))


def _limited(policy: Policy, key: bytes) -> tuple[Reason, bytes, bool]:
    """A limited ping's reason by the bucket ``key`` and the total: (reason, key, made).
    A new peer gets a bucket only if the total admits it."""
    if policy.bucket == "empty":
        return Reason.DROP_RATE, key, False
    if policy.bucket == "fresh":
        return (Reason.DROP_RATE_TOTAL if policy.total is False else Reason.PASS_RATE), key, False
    if policy.total is False:
        return Reason.DROP_RATE_TOTAL, key, False
    return Reason.PASS_RATE, key, True


Judged = tuple[Reason, dict[Network, int], tuple[bytes, bool] | None]


def _judged(policy: Policy, parsed: Parsed, direction: int) -> Judged:
    """The reason, the rules hit and, for a limited ping, its bucket and whether it was
    made. ``direction`` 1 (tc egress): the peer a limit counts is the destination."""
    if parsed.family == 0:
        return (Reason.PASS_NOT_PING if parsed.l4 is L4.OTHER else Reason.PASS_UNPARSED), {}, None
    if parsed.l4 is L4.NDP:
        return Reason.PASS_NOT_PING, {}, None
    src = best_rule(policy, parsed.family, parsed.src)
    dst = best_rule(policy, parsed.family, parsed.dst)
    src_action, dst_action = _action(policy, src), _action(policy, dst)
    blocked = RuleAction.BLOCK in (src_action, dst_action)

    def hits(action: RuleAction) -> dict[Network, int]:
        counted: dict[Network, int] = {}
        for rule, rule_action in ((src, src_action), (dst, dst_action)):
            if rule is not None and rule_action == action:
                counted[rule] = counted.get(rule, 0) + 1
        if not SAME_RULE_COUNTS_TWICE:
            counted = dict.fromkeys(counted, 1)
        return counted

    # A blocked source decides alone (the program does not look the destination up then).
    block_hits = {src: 1} if src_action == RuleAction.BLOCK and src else hits(RuleAction.BLOCK)

    peer = parsed.dst if direction == 1 else parsed.src
    if parsed.l4 in (L4.PING, L4.SUSPECT):
        if blocked:
            return Reason.DROP_BLOCK, block_hits, None
        # Block before limit before allow; the peer's own rule first.
        sides = ((dst, dst_action), (src, src_action)) if direction == 1 else \
            ((src, src_action), (dst, dst_action))
        for rule, action in sides:
            if rule is not None and action == RuleAction.LIMIT:
                reason, key, made = _limited(
                    policy, bucket_key(policy, parsed.family, peer, policy.limit_class(rule)))
                return reason, {rule: 1}, (key, made)
        if RuleAction.ALLOW in (src_action, dst_action):
            return Reason.PASS_ALLOW, hits(RuleAction.ALLOW), None
        if policy.default_action == DefaultAction.DROP:
            return Reason.DROP_DEFAULT, {}, None
        if policy.default_action == DefaultAction.LIMIT:
            reason, key, made = _limited(policy, bucket_key(policy, parsed.family, peer, 0))
            return reason, {}, (key, made)
        return Reason.PASS_DEFAULT, {}, None
    if blocked and policy.all_protocols:
        return Reason.DROP_BLOCK, block_hits, None
    if parsed.l4 is L4.FRAGMENT:
        return Reason.PASS_FRAGMENT, {}, None
    if parsed.l4 is L4.UNPARSED:
        return Reason.PASS_UNPARSED, {}, None
    return Reason.PASS_NOT_PING, {}, None


def _wants_event(policy: Policy, parsed: Parsed, verdict: int) -> bool:
    if policy.events == EventsMode.DROPS:
        return verdict == XDP_DROP
    if policy.events == EventsMode.PINGS:
        return parsed.l4 in (L4.PING, L4.SUSPECT)
    return policy.events == EventsMode.ALL


DROPPED = frozenset({Reason.DROP_BLOCK, Reason.DROP_DEFAULT, Reason.DROP_RATE,
                     Reason.DROP_RATE_TOTAL})


def judge(policy: Policy, frame: bytes, direction: int = 0) -> Outcome:
    """What the data path must do with ``frame`` under ``policy`` (event rate unlimited),
    met going ``direction`` (0 in, 1 out: tc egress)."""
    parsed = parse(frame, policy.icmp_set)
    reason, hits, bucket = _judged(policy, parsed, direction)
    verdict = XDP_DROP if reason in DROPPED else XDP_PASS
    event = None
    if _wants_event(policy, parsed, verdict):
        icmp = parsed.icmp or (0, 0, 0, 0)
        event = Event(len(frame), parsed.src, parsed.dst, verdict, reason, parsed.family,
                      parsed.protocol, *icmp)
    key, made = bucket if bucket is not None else (None, False)
    return Outcome(verdict, reason, hits, event, parsed, key, made)
