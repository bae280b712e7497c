#!/usr/bin/env python3
"""Differential fuzzing of the pingkiller data path against the oracle (tests/oracle.py).

Random and malformed frames under random policies run through BPF_PROG_RUN on the real
program (XDP, or either tc program: --entry); verdict, reason counter, rule hits and
ring-buffer event must equal the oracle's.

This module is both the standalone runner and the library behind
tests/kernel/test_differential.py (strategies, the loaded data path, the comparison):

    python3 tests/fuzz.py --examples 100000 [--seed N] [--entry xdp|tc-in|tc-out]

prints "examples: N, mismatches: M", then every mismatch's frame (hex) and policy, and exits
1 when there was any mismatch. Needs root (BPF_PROG_RUN).
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import random
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

# Run as a script: `oracle` sits beside this file, and `pingkiller` (unless installed or
# already on the path) in the checkout above it.
_TESTS = Path(__file__).resolve().parent
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))
if str(_TESTS.parent) not in sys.path:
    sys.path.append(str(_TESTS.parent))

import oracle  # noqa: E402
from oracle import Network, Policy, normalize  # noqa: E402

from pingkiller import abi, bpf  # noqa: E402
from pingkiller.datapath import program as datapath  # noqa: E402
from pingkiller.datapath.rules import LOOKUP_FLAG_OF, LOOKUP_FLAGS, PREFIX_TRIES, RULE_MAPS  # noqa: E402
from pingkiller.model import enums  # noqa: E402
from pingkiller.model.icmp import IcmpTypes  # noqa: E402
from pingkiller.model.limits import Limit  # noqa: E402

# The rate of every limit the harness writes: a fresh bucket passes one ping, and then
# none for an hour. Buckets are seeded empty with a time far ahead of any clock.
HOURLY = Limit.of("1/h", 1)
EMPTY_BUCKET = 1 << 62


def put_rule(maps: dict[str, bpf.Map], network: Network, action: enums.RuleAction,
             limit_class: int = 0) -> None:
    """Write one rule straight into the maps, as the ABI lays it out: the action (and a
    limit rule's class) in every CPU's copy, hits zero, and a prefix also in its trie
    (whose value is the key)."""
    name, key = abi.rule_map_name(network), abi.rule_key(network)
    maps[name][key] = abi.encode_rule(action, limit=limit_class, cpus=maps[name].cpus)
    if name in PREFIX_TRIES:
        maps[PREFIX_TRIES[name]][key] = key


def delete_rule(maps: dict[str, bpf.Map], network: Network) -> None:
    name, key = abi.rule_map_name(network), abi.rule_key(network)
    if name in PREFIX_TRIES:
        maps[PREFIX_TRIES[name]].discard(key)
    maps[name].discard(key)


T = TypeVar("T")

# Frames larger than this are cut here (BPF_PROG_RUN wants a frame in one page).
MAX_FRAME = 3000

# ---------------------------------------------------------------------------------------------
# Address pools: small, so that rules and packets meet often; with the IPv6 look-alikes of
# IPv4-mapped addresses that a careless check would confuse with them.

V4_POOL: tuple[bytes, ...] = tuple(
    ipaddress.IPv4Address(a).packed
    for a in (
        "198.18.0.1", "198.18.0.2", "198.18.1.7", "198.19.255.255",
        "10.0.0.1", "0.0.0.0", "255.255.255.255", "127.0.0.1",
    )
)
V6_POOL: tuple[bytes, ...] = tuple(
    ipaddress.IPv6Address(a).packed
    for a in (
        "fd00::1", "fd00::2", "fd00:706b:1::2", "fe80::1", "ff02::1", "::", "::1",
        "::ffff:198.18.0.1",  # IPv4-mapped
        "::ffff:198.18.0.2",
        "::ffff:10.0.0.1",
        "::ffff:0.0.0.0",
        "::ffff:255.255.255.255",
        "::198.18.0.1",  # IPv4-compatible (deprecated): not mapped
        "::ffff:0:c612:1",  # SIIT ::ffff:0:0:0/96: not mapped
        "::fffe:c612:1",  # one bit off mapped
        "0:0:0:1:0:ffff:c612:1",  # mapped-looking tail, nonzero head
        "64:ff9b::c612:1",  # NAT64
    )
)


# Strategies are built once and reused: building one inside every draw costs more than the
# draw itself, and the differential test has to run tens of thousands of examples quickly.


@functools.cache
def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


@functools.cache
def _pick(options: tuple[T, ...]) -> st.SearchStrategy[T]:
    return st.sampled_from(options)


@functools.cache
def _binary(low: int, high: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=low, max_size=high)


U8, U16, U32 = _ints(0, 0xFF), _ints(0, 0xFFFF), _ints(0, 0xFFFFFFFF)
BOOL = st.booleans()


def one_in(draw: st.DrawFn, n: int) -> bool:
    """True one draw in ``n`` (false when shrunk)."""
    return draw(_ints(0, n - 1)) == n - 1


def weighted(draw: st.DrawFn, common: tuple[T, ...], rare: st.SearchStrategy[T],
             rare_one_in: int = 4) -> T:
    """Mostly one of ``common``; one draw in ``rare_one_in`` from ``rare``.

    The common case costs a single draw (an index that shrinks towards ``common[0]``).
    """
    size = len(common)
    index = draw(_ints(0, size * rare_one_in - 1))
    if index >= size * (rare_one_in - 1):
        return draw(rare)
    return common[index % size]


def _between(draw: st.DrawFn, low: int, high: int) -> int:
    """An integer in [low, high] for bounds that change every example (no new strategy)."""
    return low + draw(U16) % (high - low + 1)


def address(draw: st.DrawFn, family: int) -> bytes:
    """Mostly from the pool (so rules match), sometimes any address."""
    if family == 4:
        return weighted(draw, V4_POOL, _binary(4, 4), rare_one_in=10)
    return weighted(draw, V6_POOL, _binary(16, 16), rare_one_in=10)


# ---------------------------------------------------------------------------------------------
# Policies

V4_PREFIXLENS = (32, 32, 32, 0, 8, 15, 16, 24, 31)
V6_PREFIXLENS = (128, 128, 128, 0, 16, 64, 80, 96, 104, 112, 120, 127)
# Rules on the pool's addresses (exact ones weighted up), precomputed so that a rule usually
# costs one draw.
POOL_NETWORKS: tuple[Network, ...] = (
    *(ipaddress.IPv4Network((a, n), strict=False) for a in V4_POOL for n in V4_PREFIXLENS),
    *(ipaddress.IPv6Network((a, n), strict=False) for a in V6_POOL for n in V6_PREFIXLENS),
)
RULE_POOL: tuple[tuple[Network, enums.RuleAction], ...] = tuple(
    (network, action) for network in POOL_NETWORKS for action in enums.RuleAction
)


@st.composite
def _random_rules(draw: st.DrawFn) -> tuple[Network, enums.RuleAction]:
    action = draw(st.sampled_from(enums.RuleAction))
    if draw(BOOL):
        return ipaddress.IPv4Network((address(draw, 4), draw(_ints(0, 32))), False), action
    return ipaddress.IPv6Network((address(draw, 6), draw(_ints(0, 128))), False), action


RANDOM_RULES = _random_rules()
SHORTHANDS = (enums.IcmpSet.ECHO, enums.IcmpSet.ECHO_REQUEST, enums.IcmpSet.ALL)
# (default action, ICMP set, events mode, all-protocols) in one draw.
CONFIGS = st.sampled_from([
    (default, icmp, events, every)
    for default in enums.DefaultAction
    for icmp in SHORTHANDS
    for events in enums.EventsMode
    for every in (False, True)
])
# Sets of types as --icmp lists make them: a few of the types frames carry, or any.
_SOME_TYPES = {family: st.frozensets(st.sampled_from(sorted(set(types))), max_size=4)
               for family, types in ((4, (0, 3, 5, 8, 11, 13, 14, 17)),
                                     (6, (1, 3, 128, 129, 130, 143)))}
ICMP_TYPE_SETS = st.tuples(_SOME_TYPES[4], _SOME_TYPES[6]).filter(lambda t: bool(t[0] or t[1]))
# The limiter: bucket state, total, IPv6 prefix length, and the classes of limit rules.
BUCKET_STATES = st.sampled_from(("absent", "absent", "fresh", "empty"))
TOTALS = st.sampled_from((None, None, True, False))
PREFIX6 = st.sampled_from((64, 64, 128, 48, 1, 96, 127))
LIMIT_CLASSES = (1, 2, abi.MAX_LIMITS - 1)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """0-8 rules (exact and prefix, v4 and v6, block, allow and limit), a random config,
    and the state of the limiter's buckets."""
    count = weighted(draw, (0, 1, 1, 2, 2, 3, 4), _ints(0, 8))
    rules = [weighted(draw, RULE_POOL, RANDOM_RULES, rare_one_in=8) for _ in range(count)]
    default, icmp_set, events, all_protocols = draw(CONFIGS)
    icmp: oracle.IcmpChoice = draw(ICMP_TYPE_SETS) if draw(_ints(0, 5)) == 0 else icmp_set
    classes = tuple((normalize(network), draw(st.sampled_from(LIMIT_CLASSES)))
                    for network, action in rules if action == enums.RuleAction.LIMIT)
    return Policy.make(rules, default_action=default, icmp_set=icmp, events=events,
                       all_protocols=all_protocols, limit_classes=classes,
                       prefix6=draw(PREFIX6), bucket=draw(BUCKET_STATES), total=draw(TOTALS))


# ---------------------------------------------------------------------------------------------
# Frames, built with struct. Only bytes the program reads are drawn; the rest is fixed.

ICMP_TYPES = {
    4: (8, 0, 8, 0, 8, 0, 3, 11, 5, 13, 14, 17),
    6: (128, 129, 128, 129, 128, 129, 1, 3, 130, 133, 134, 135, 136, 137, 143),
}
PAYLOAD_SIZES = (0, 0, 8, 16, 56, 56, 1400)  # the size matters, not the content


def _payload(draw: st.DrawFn) -> bytes:
    return b"\xa5" * weighted(draw, PAYLOAD_SIZES, _ints(0, 1472))


def _icmp(draw: st.DrawFn, family: int) -> bytes:
    icmp_type = weighted(draw, ICMP_TYPES[family], U8)
    code = weighted(draw, (0,), U8)
    header = struct.pack("!BBHI", icmp_type, code, 0, draw(U32))  # id and sequence
    return header + _payload(draw)


def _transport(draw: st.DrawFn, protocol: int, family: int) -> bytes:
    """The L4 part for ``protocol`` (ICMP of either family, TCP, UDP, or noise)."""
    if protocol == oracle.IPPROTO_ICMP:
        return _icmp(draw, 4 if family == 4 or not one_in(draw, 4) else 6)
    if protocol == oracle.IPPROTO_ICMPV6:
        return _icmp(draw, 6 if family == 6 or not one_in(draw, 4) else 4)
    if protocol == 6:  # TCP: ports, seq, ack, data offset 5 + SYN, window, csum, urg
        return struct.pack("!IIIHHHH", 0x00500050, 1, 0, 0x5002, 0xFFFF, 0, 0) + _payload(draw)
    if protocol == 17:  # UDP
        body = _payload(draw)
        return struct.pack("!HHHH", 53, 33434, (8 + len(body)) & 0xFFFF, 0) + body
    return draw(_binary(0, 16))


IPV4_OFFSETS = _pick((1, 2, 185, 0x1FFF)) | _ints(1, 0x1FFF)
IPV4_FLAGS = (0, 0, 0x4000, 0x2000, 0x2000, 0x8000, 0x6000)  # none, DF, MF, evil, DF|MF
IPV4_OTHER_PROTOCOLS = _pick((0, 2, 4, 41, 47, 58, 255)) | U8
IHLS = (5, 5, 5, 5, 6, 7, 15)


@st.composite
def ipv4_packets(draw: st.DrawFn) -> tuple[bytes, int]:
    """An IPv4 packet, honest or not; returns (packet, offset of the L4 header)."""
    version = weighted(draw, (4,), _ints(0, 15), rare_one_in=16)
    ihl = weighted(draw, IHLS, _ints(0, 15))
    options = max(0, ihl * 4 - 20)
    options_bytes = draw(_binary(options, options)) if options else b""
    offset = weighted(draw, (0,), IPV4_OFFSETS, rare_one_in=6)
    flags = draw(_pick(IPV4_FLAGS))
    protocol = weighted(draw, (1, 1, 1, 1, 1, 6, 17), IPV4_OTHER_PROTOCOLS, rare_one_in=8)
    src, dst = address(draw, 4), address(draw, 4)
    body = _transport(draw, protocol, 4)
    total = weighted(draw, ((20 + options + len(body)) & 0xFFFF,), U16)
    header = struct.pack("!BBHHHBBH4s4s", version << 4 | ihl, 0, total, 0x1234,
                         flags | offset, 64, protocol, 0, src, dst)
    return header + options_bytes + body, 20 + options


HDRLENS = (0, 0, 0, 1, 2, 3)


def _option_header(draw: st.DrawFn, nexthdr: int) -> bytes:
    """Hop-by-hop, routing or destination options: (hdrlen + 1) * 8 bytes (Pad1 inside)."""
    hdrlen = weighted(draw, HDRLENS, U8, rare_one_in=12)
    return bytes((nexthdr, hdrlen)) + bytes(hdrlen * 8 + 6)


def _ah_header(draw: st.DrawFn, nexthdr: int) -> bytes:
    """An authentication header: (hdrlen + 2) * 4 bytes."""
    hdrlen = weighted(draw, (1, 2, 4), U8, rare_one_in=12)
    return bytes((nexthdr, hdrlen)) + bytes((hdrlen + 2) * 4 - 2)


def _fragment_header(draw: st.DrawFn, nexthdr: int) -> bytes:
    """A fragment header: mostly offset 0 (a first fragment); M flag; rarely junk bits."""
    offset = weighted(draw, (0, 0, 0), _ints(1, 0x1FFF))
    more = draw(BOOL)
    junk = weighted(draw, (0,), U32, rare_one_in=8)  # reserved byte, res bits, id
    return struct.pack("!BBHI", nexthdr, junk >> 24, offset << 3 | (junk & 6) | more, junk)


EXT_HEADER_KINDS = (0, 43, 60, 44, 44, 51)
CHAIN_LENGTHS = (0, 0, 0, 1, 1, 2, 3)
IPV6_FINALS = (58, 58, 58, 58, 58, 6, 17)
IPV6_OTHER_FINALS = _pick((59, 1, 50, 51, 135, 139, 255)) | U8


@st.composite
def ipv6_packets(draw: st.DrawFn) -> tuple[bytes, int]:
    """An IPv6 packet with a chain of 0..10 extension headers; (packet, offset of L4)."""
    version = weighted(draw, (6,), _ints(0, 15), rare_one_in=16)
    count = weighted(draw, CHAIN_LENGTHS, _ints(0, 10), rare_one_in=3)
    chain = [draw(_pick(EXT_HEADER_KINDS)) for _ in range(count)]
    final = weighted(draw, IPV6_FINALS, IPV6_OTHER_FINALS, rare_one_in=8)
    kinds = [*chain, final]
    headers = b"".join(
        _fragment_header(draw, kinds[i + 1]) if kind == 44 else
        _ah_header(draw, kinds[i + 1]) if kind == 51 else
        _option_header(draw, kinds[i + 1])
        for i, kind in enumerate(chain)
    )
    body = _transport(draw, final, 6)
    src, dst = address(draw, 6), address(draw, 6)
    length = weighted(draw, ((len(headers) + len(body)) & 0xFFFF,), U16)
    fixed = struct.pack("!IHBB16s16s", version << 28 | 0x12345, length, kinds[0], 64, src, dst)
    return fixed + headers + body, 40 + len(headers)


IPV4_PACKETS = ipv4_packets()
IPV6_PACKETS = ipv6_packets()
ETHERTYPES = _pick((0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8, 0x9100, 0x0000, 0xFFFF, 0x86DE)) | U16
TAG_COUNTS = (0, 0, 0, 1, 1, 2, 2)
TPIDS = (0x8100, 0x88A8) * 4 + (0x9100,)  # 802.1Q, 802.1ad, and the old 0x9100
MACS = bytes.fromhex("020000000002020000000001")
KINDS = ("v4",) * 5 + ("v6",) * 6 + ("noise",)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """Ethernet frames of at least 14 bytes: mostly IP, many malformed, some plain noise."""
    kind = draw(_pick(KINDS))
    if kind == "noise":
        return draw(_binary(14, 96))
    packet, l4 = draw(IPV4_PACKETS if kind == "v4" else IPV6_PACKETS)
    ethertype = 0x0800 if kind == "v4" else 0x86DD
    ethertype = weighted(draw, (ethertype,), ETHERTYPES, rare_one_in=12)
    tags = weighted(draw, TAG_COUNTS, _ints(0, 3))
    types = [*(draw(_pick(TPIDS)) for _ in range(tags)), ethertype]
    l2 = MACS + struct.pack("!H", types[0])
    for next_type in types[1:]:
        l2 += struct.pack("!HH", 0x0007, next_type)  # TCI (VLAN 7), then the next ethertype
    frame = l2 + packet
    cut = draw(_ints(0, 5))
    if cut == 1:  # anywhere
        frame = frame[: _between(draw, 14, len(frame))]
    elif cut == 2:  # around the transport header
        frame = frame[: max(14, len(l2) + l4 + draw(_ints(-4, 9)))]
    elif cut == 3:  # trailing junk
        frame += draw(_binary(1, 8))
    return frame[:MAX_FRAME]


@dataclass(frozen=True)
class Scenario:
    """One differential case: a policy, config flags that must not matter, and a frame."""

    policy: Policy
    frame: bytes
    timing: bool = False  # PK_F_TIMING: must not change any outcome
    force_lookups: bool = False  # every lookup flag set, rule maps empty or not: no change

    def describe(self) -> str:
        extra = []
        if self.timing:
            extra.append("timing")
        if self.force_lookups:
            extra.append("lookup flags forced")
        return self.policy.describe() + (f" [{', '.join(extra)}]" if extra else "")


POLICIES = policies()
FRAMES = frames()
# (PK_F_TIMING, every lookup flag forced on): flags that must not change any outcome.
EXTRA_FLAGS = ((False, False),) * 6 + ((True, False), (False, True), (True, True))


def scenario(draw: st.DrawFn, frames: st.SearchStrategy[bytes]) -> Scenario:
    timing, force = draw(_pick(EXTRA_FLAGS))
    return Scenario(draw(POLICIES), draw(frames), timing=timing, force_lookups=force)


@st.composite
def scenarios(draw: st.DrawFn, frames: st.SearchStrategy[bytes] = FRAMES) -> Scenario:
    """A random policy with a frame from ``frames``."""
    return scenario(draw, frames)


# ---------------------------------------------------------------------------------------------
# The real data path, loaded once and reset per case.


@dataclass(frozen=True)
class Entry:
    """One entry point of the object: the same policy, said in its program type's words."""

    name: str  # as tests and --entry name it
    program: str
    hook: enums.Hook
    direction: enums.Direction

    def retval(self, verdict: int) -> int:
        """What this program returns for the oracle's verdict (XDP_DROP or XDP_PASS)."""
        return verdict if self.hook == enums.Hook.XDP else oracle.TC_RETURN[verdict]

    def __str__(self) -> str:
        return self.name


XDP = Entry("xdp", abi.PROGRAM_NAME, enums.Hook.XDP, enums.Direction.IN)
TC_IN = Entry("tc-in", abi.TC_IN_PROGRAM_NAME, enums.Hook.TC, enums.Direction.IN)
TC_OUT = Entry("tc-out", abi.TC_OUT_PROGRAM_NAME, enums.Hook.TC, enums.Direction.OUT)
ENTRIES = (XDP, TC_IN, TC_OUT)
TC_ENTRIES = (TC_IN, TC_OUT)


# The shortest frame BPF_PROG_RUN takes: 14 bytes for XDP; for tc it builds an sk_buff
# only around a whole IP header, and refuses (EINVAL) an untagged IPv4 frame under 14 + 20
# bytes and an IPv6 one under 14 + 40. Those cannot be run through the tc programs here
# (the same C judges them through XDP); real traffic can bring them to tc.
TC_SHORTEST = {0x0800: 14 + 20, 0x86DD: 14 + 40}


def runnable(entry: Entry, frame: bytes) -> bool:
    """Whether BPF_PROG_RUN runs ``frame`` through ``entry``'s program at all."""
    if len(frame) < 14:
        return False
    if entry.hook == enums.Hook.XDP:
        return True
    return len(frame) >= TC_SHORTEST.get(int.from_bytes(frame[12:14], "big"), 14)


def signed(retval: int) -> int:
    """BPF_PROG_RUN's return value (a __u32) as the int the program returned: TCX_NEXT is -1."""
    return retval - (1 << 32) if retval >= 1 << 31 else retval

@dataclass
class Observed:
    """What the program did with one frame."""

    verdict: int  # what the program returned (signed: TCX_NEXT is -1)
    counters: list[tuple[int, int]]  # per slot: (packets, bytes) added by this run
    hits: dict[Network, int]  # rules whose hits went up
    events: list[tuple[Any, ...]] = field(default_factory=list)  # abi.EVENT rows
    entry: Entry = XDP  # the program that ran
    buckets: frozenset[bytes] = frozenset()  # the keys the buckets map holds after the run


class DataPath:
    """One loaded pingkiller object that runs scenarios one at a time through one of its
    entry points (``select``; XDP at first). close() when done."""

    def __init__(self, entry: Entry = XDP) -> None:
        self.obj = datapath.load(abi.Config(event_rate=0))
        self.select(entry)
        self.settings = self.obj.maps[abi.SETTINGS_MAP]
        self.counters = self.obj.maps[abi.COUNTERS_MAP]
        self.maps = dict(self.obj.maps)
        self.ring = bpf.RingBuffer(self.obj.maps[abi.EVENTS_MAP])
        self.installed: list[tuple[bpf.Map, bytes, Network]] = []
        for name in (*RULE_MAPS, *PREFIX_TRIES.values()):
            self.maps[name].clear()

    def select(self, entry: Entry) -> None:
        """Run what follows through ``entry``'s program (same maps, same state)."""
        self.entry = entry
        self.program = self.obj.programs[entry.program]

    def close(self) -> None:
        self.ring.close()
        self.obj.close()

    def __enter__(self) -> DataPath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def apply(self, scenario: Scenario, bucket: bytes | None = None) -> None:
        """Install the scenario's policy: its rules (hits zero), its config and the
        limiter's state (``bucket``: the key the oracle says a limited ping is judged by,
        seeded in the scenario's bucket state), nothing else."""
        for _, _, network in self.installed:
            delete_rule(self.maps, network)
        self.installed = []
        flags = abi.ConfigFlag(0)
        if scenario.force_lookups:
            flags |= LOOKUP_FLAGS
        if scenario.timing:
            flags |= abi.ConfigFlag.TIMING
        policy = scenario.policy
        if policy.all_protocols:
            flags |= abi.ConfigFlag.ALL_PROTOCOLS
        for network, action in policy.rules:
            name = abi.rule_map_name(network)
            flags |= LOOKUP_FLAG_OF[name]
            limit_class = policy.limit_class(network) if action == enums.RuleAction.LIMIT else 0
            put_rule(self.maps, network, action, limit_class)
            self.installed.append((self.maps[name], abi.rule_key(network), network))
        limiting = policy.default_action == enums.DefaultAction.LIMIT
        icmp = (IcmpTypes(*policy.icmp_set) if isinstance(policy.icmp_set, tuple)
                else policy.icmp_set)
        config = abi.Config(
            default_action=policy.default_action, icmp=icmp, events=policy.events,
            event_rate=0, flags=flags, limit=HOURLY if limiting else None,
            total=None if policy.total is None else HOURLY, limit_prefix6=policy.prefix6,
        )
        self.settings[abi.u32_key(0)] = config.encode()
        self._seed_limiter(policy, bucket)

    def _seed_limiter(self, policy: Policy, bucket: bytes | None) -> None:
        limits, buckets = self.maps[abi.LIMITS_MAP], self.maps[abi.BUCKETS_MAP]
        hourly = abi.LIMIT.pack(*abi.encode_limit(HOURLY))
        for limit_class in LIMIT_CLASSES:
            limits[abi.u32_key(limit_class)] = hourly
        buckets.clear()
        if bucket is not None and policy.bucket != "absent":
            buckets[bucket] = struct.pack("=Q", EMPTY_BUCKET if policy.bucket == "empty" else 0)
        total = EMPTY_BUCKET if policy.total is False else 0
        self.maps[abi.RATE_TOTAL_MAP][abi.u32_key(0)] = struct.pack("=Q", total)

    def _counter_totals(self) -> list[tuple[int, int]]:
        totals = [(0, 0)] * abi.COUNTER_COUNT
        for key, value in self.counters.items_batch(chunk=abi.COUNTER_COUNT):
            (slot,) = abi.U32_KEY.unpack(key)
            packets = octets = 0
            for cpu in range(self.counters.cpus):
                p, b = abi.COUNTER.unpack_from(value, cpu * self.counters.value_stride)
                packets += p
                octets += b
            totals[slot] = (packets, octets)
        return totals

    def run(self, frame: bytes) -> Observed:
        """Run ``frame`` once under the applied policy and collect what changed."""
        self.ring.consume()  # nothing stale
        before = self._counter_totals()
        verdict = signed(self.program.test_run(frame).retval)
        after = self._counter_totals()
        counters = [(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True)]
        hits: dict[Network, int] = {}
        for rules, key, network in self.installed:
            count = abi.decode_rule(rules[key])[1]
            if count:
                hits[network] = count
        events = list(self.ring.consume().unpack(abi.EVENT))
        buckets = frozenset(key for key, _ in self.maps[abi.BUCKETS_MAP].items_batch())
        return Observed(verdict, counters, hits, events, self.entry, buckets)


def _slot_name(slot: int) -> str:
    if slot < abi.REASON_COUNT:
        return enums.Reason(slot).name
    return abi.CounterSlot(slot).name


def _reason_name(value: int) -> str:
    try:
        return enums.Reason(value).name
    except ValueError:
        return str(value)


# struct pk_event in order (abi.EVENT rows); padding, if unpacked, comes after these.
EVENT_LAYOUT = ("timestamp_ns", "ifindex", "length", "src", "dst", "verdict", "reason",
                "family", "protocol", "icmp_type", "icmp_code", "icmp_id", "icmp_seq",
                "hook", "direction")
# The fields the frame, the policy and the entry point determine (not the time, not the
# interface).
EVENT_FIELDS = EVENT_LAYOUT[2:]


def _event_fields(row: tuple[Any, ...]) -> dict[str, Any]:
    named = dict(zip(EVENT_LAYOUT, row, strict=False))
    return {name: named.get(name) for name in EVENT_FIELDS}


def _expected_event_fields(event: oracle.Event, entry: Entry) -> dict[str, Any]:
    where = {"hook": int(entry.hook), "direction": int(entry.direction)}
    return {name: where[name] if name in where else
            int(getattr(event, name)) if name == "reason" else getattr(event, name)
            for name in EVENT_FIELDS}


def differences(expected: oracle.Outcome, observed: Observed, length: int) -> list[str]:
    """Human-readable differences between the oracle's outcome and what the program did
    with a frame of ``length`` bytes (empty when they agree)."""
    problems = []
    verdict = observed.entry.retval(expected.verdict)
    if observed.verdict != verdict:
        problems.append(f"verdict: expected {verdict} ({observed.entry}), got {observed.verdict}")
    want = [(0, 0)] * abi.COUNTER_COUNT
    want[expected.reason] = (1, length)
    want[abi.CounterSlot.EVENTS_SENT] = (1, 0) if expected.event else (0, 0)
    want[abi.CounterSlot.BUCKETS_NEW] = (1, 0) if expected.bucket_made else (0, 0)
    reasons = [s for s in range(abi.REASON_COUNT) if observed.counters[s] != (0, 0)]
    if reasons != [expected.reason]:
        got = ", ".join(_reason_name(s) for s in reasons) or "none"
        problems.append(f"reason: expected {expected.reason.name}, got {got}")
    for slot, (wanted, got_) in enumerate(zip(want, observed.counters, strict=True)):
        if wanted != got_ and not (slot < abi.REASON_COUNT and reasons != [expected.reason]):
            problems.append(f"counter {_slot_name(slot)}: expected +{wanted}, got +{got_}")
    if expected.bucket_made and expected.bucket not in observed.buckets:
        problems.append(f"buckets: expected {expected.bucket.hex() if expected.bucket else None} "
                        f"made, the map holds {sorted(k.hex() for k in observed.buckets)}")
    if observed.hits != dict(expected.hits):
        problems.append(f"hits: expected {_hits(expected.hits)}, got {_hits(observed.hits)}")
    events = [_event_fields(row) for row in observed.events]
    wanted_events = [_expected_event_fields(expected.event, observed.entry)] if expected.event else []
    if len(events) != len(wanted_events):
        problems.append(f"events: expected {len(wanted_events)}, got {len(events)}")
    elif events:
        for name in EVENT_FIELDS:
            a, b = wanted_events[0][name], events[0][name]
            if a != b:
                show = (lambda v: v.hex()) if isinstance(a, bytes) else str
                problems.append(f"event.{name}: expected {show(a)}, got {show(b)}")
    return problems


def _hits(hits: Any) -> str:
    return "{" + ", ".join(f"{net}: {n}" for net, n in hits.items()) + "}"


def check_scenario(path: DataPath, scenario: Scenario) -> list[str]:
    """The differential check of one scenario, bytes counter included (see ``runnable``:
    the caller leaves out what BPF_PROG_RUN would refuse)."""
    expected = oracle.judge(scenario.policy, scenario.frame, path.entry.direction)
    path.apply(scenario, expected.bucket)
    return differences(expected, path.run(scenario.frame), len(scenario.frame))


def report(scenario: Scenario, problems: list[str], entry: Entry = XDP) -> str:
    outcome = oracle.judge(scenario.policy, scenario.frame, entry.direction)
    return "\n".join([
        f"frame: {scenario.frame.hex()}",
        f"policy: {scenario.describe()}",
        f"oracle: {outcome.reason.name} ({outcome.parsed})",
        *(f"  {problem}" for problem in problems),
    ])


# ---------------------------------------------------------------------------------------------
# Standalone runner


ROUND = 10_000  # examples per hypothesis run: a fresh run (and seed) bounds its memory


def fuzz(examples: int, seed: int, on_result: Callable[[Scenario, list[str]], None],
         entry: Entry = XDP) -> int:
    """Run at least ``examples`` hypothesis-generated scenarios; returns how many ran.

    ``on_result`` sees every scenario with its differences (empty when program and oracle
    agree). Nothing is shrunk: every mismatch is reported as generated.
    """
    ran = 0
    with DataPath(entry) as path:
        round_seed = seed
        while ran < examples:

            @hypothesis_seed(round_seed)
            @settings(max_examples=min(ROUND, examples - ran), deadline=None, database=None,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            @given(scenarios())
            def one(scenario: Scenario) -> None:
                nonlocal ran
                ran += 1
                if runnable(path.entry, scenario.frame):
                    on_result(scenario, check_scenario(path, scenario))

            before = ran
            one()
            if ran == before:
                break
            round_seed += 1
    return ran


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("--examples", type=int, default=10_000, help="scenarios to run")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--entry", choices=[e.name for e in ENTRIES], default=XDP.name,
                        help="the program to run the frames through (default: xdp)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    mismatches: list[tuple[Scenario, list[str]]] = []
    reasons: Counter[str] = Counter()
    classes: Counter[str] = Counter()

    def on_result(scenario: Scenario, problems: list[str]) -> None:
        outcome = oracle.judge(scenario.policy, scenario.frame, entry.direction)
        reasons[outcome.reason.name] += 1
        classes[f"{outcome.parsed.l4.value}/v{outcome.parsed.family}"] += 1
        if problems:
            mismatches.append((scenario, problems))

    entry = next(e for e in ENTRIES if e.name == args.entry)
    started = time.monotonic()
    ran = fuzz(args.examples, seed, on_result, entry)
    elapsed = time.monotonic() - started
    print(f"examples: {ran}, mismatches: {len(mismatches)}")
    print(f"seed: {seed}, time: {elapsed:.1f}s")
    print("reasons: " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
    print("classes: " + ", ".join(f"{k} {v}" for k, v in classes.most_common()))
    for scenario, problems in mismatches:
        print()
        print(report(scenario, problems, entry))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
