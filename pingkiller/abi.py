"""The binary ABI of kern/pingkiller.h in Python: enums, struct layouts, encoders.

Every layout is checked against the C definitions compiled into the extension, so
the C header stays the one source of truth.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import struct
import time
from dataclasses import dataclass
from typing import Any, Protocol

from pingkiller._datapath import ffi, lib
from pingkiller.model.enums import (
    DefaultAction,
    Direction,
    EventsMode,
    Hook,
    IcmpSet,
    Reason,
    RuleAction,
    TimingSlot,
)
from pingkiller.model.icmp import IcmpTypes
from pingkiller.model.limits import NS_PER_S, UNIT_SECONDS, Limit, Rate
from pingkiller.model.network import Network, is_exact
from pingkiller.model.policy import DEFAULT_BUCKETS, DEFAULT_EVENT_RATE, Policy

# The version of the pinned state's ABI: the layouts and meanings of kern/pingkiller.h's
# structs, enums and maps. A writer records it beside the pins (pingkiller.pins.Identity);
# every verb compares it before it reads a map. Bump it with any change to the header
# that changes what a map holds (tests/unit/datapath/test_abi_layouts.py fails until you do).
# 4: struct pk_event names two bytes of its padding (hook, direction) and the object has
# the tc programs (TC_PROGRAM_NAMES) beside the XDP one.
# 5: the limit action (rates in the settings and the limits map, buckets, three more
# reasons, two more counter slots) and ICMP types as a set (bitmaps in the settings).
ABI_VERSION = 5
# ABI versions whose maps this build's program runs on unchanged, so `pingkiller upgrade`
# adopts them in place. A layout change resets this to {ABI_VERSION}.
ADOPTABLE_ABI_VERSIONS = frozenset({ABI_VERSION})
# ABI versions whose maps `pingkiller upgrade` converts into this one's (pingkiller.migrate).
# 1: pins made before versions were recorded; 1 and 2 share their layouts: shared rule
# maps (hash and LPM trie, hits counted with atomic adds) and no event window. 3 and 4
# (whose maps are the same): settings of 24 bytes and counters of 10 slots.
MIGRATABLE_ABI_VERSIONS = frozenset({1, 2, 3, 4})

MAX_EXACT_RULES: int = lib.PK_MAX_EXACT_RULES
MAX_PREFIX_RULES: int = lib.PK_MAX_PREFIX_RULES
MAX_LIMITS: int = lib.PK_MAX_LIMITS  # rate classes of limit rules, 0 (the default's) included

# Names of the maps in the object, as pinned.
SETTINGS_MAP = "settings"
COUNTERS_MAP = "counters"
TIMING_MAP = "timing"
EVENTS_MAP = "events"
RULES_V4_MAP = "rules_v4"
RULES_V6_MAP = "rules_v6"
PREFIXES_V4_MAP = "prefixes_v4"
PREFIXES_V6_MAP = "prefixes_v6"
PREFIX_TRIE_V4_MAP = "prefix_trie_v4"
PREFIX_TRIE_V6_MAP = "prefix_trie_v6"
LIMITS_MAP = "limits"
BUCKETS_MAP = "buckets"
RATE_TOTAL_MAP = "rate_total"
PROGRAM_NAME = "pingkiller"  # SEC("xdp")
# The tc programs (SEC("tc")), one per direction: a tc program cannot tell ingress from
# egress by itself. Each drops with TC_ACT_SHOT and passes with TCX_NEXT (-1: the next
# program of the chain runs). Names of at most 15 characters: the kernel keeps no more.
TC_IN_PROGRAM_NAME = "pingkill_tc_in"
TC_OUT_PROGRAM_NAME = "pingkill_tc_out"


# The tc program of each direction.
TC_PROGRAM_NAMES: dict[Direction, str] = {
    Direction.IN: TC_IN_PROGRAM_NAME, Direction.OUT: TC_OUT_PROGRAM_NAME,
}
# A tc program's return codes (<linux/pkt_cls.h>, <linux/bpf.h> enum tcx_action_base).
TC_ACT_SHOT = 2  # drop (= TCX_DROP)
TCX_NEXT = -1  # pass on to the next program (= TC_ACT_UNSPEC); TCX_PASS (0) would skip them

REASON_COUNT: int = lib.PK_REASON_COUNT
TIMING_COUNT: int = lib.PK_TIMING_COUNT
COUNTER_COUNT: int = lib.PK_COUNTER_COUNT


class CounterSlot(enum.IntEnum):
    """Slots of the counters map past the reasons."""

    EVENTS_SENT = lib.PK_COUNTER_EVENTS_SENT
    EVENTS_SUPPRESSED = lib.PK_COUNTER_EVENTS_SUPPRESSED
    EVENTS_LOST = lib.PK_COUNTER_EVENTS_LOST
    BUCKETS_NEW = lib.PK_COUNTER_BUCKETS_NEW
    BUCKETS_FAILED = lib.PK_COUNTER_BUCKETS_FAILED


class ConfigFlag(enum.IntFlag):
    ALL_PROTOCOLS = lib.PK_F_ALL_PROTOCOLS
    TIMING = lib.PK_F_TIMING
    PREFIXES_V4 = lib.PK_F_PREFIXES_V4
    PREFIXES_V6 = lib.PK_F_PREFIXES_V6
    EXACT_V4 = lib.PK_F_EXACT_V4
    EXACT_V6 = lib.PK_F_EXACT_V6
    LIMIT_TOTAL = lib.PK_F_LIMIT_TOTAL


NO_FLAGS = ConfigFlag(0)

# The model's enums that kern/pingkiller.h defines too, with the prefix of their C names.
C_ENUMS: tuple[tuple[type[enum.IntEnum], str], ...] = (
    (Hook, "PK_HOOK_"), (Direction, "PK_DIRECTION_"), (Reason, "PK_REASON_"),
    (DefaultAction, "PK_ACTION_"), (RuleAction, "PK_RULE_"), (IcmpSet, "PK_ICMP_"),
    (EventsMode, "PK_EVENTS_"), (TimingSlot, "PK_TIMING_"),
)


def enum_problems(c: object = lib) -> list[str]:
    """How the model's enums differ from kern/pingkiller.h (compiled into the extension):
    every member must have its C constant's value, and every C constant a member."""
    problems = []
    for kind, prefix in C_ENUMS:
        names = {name.removeprefix(prefix) for name in dir(c) if name.startswith(prefix)}
        names -= {"COUNT"}
        if names != {member.name for member in kind}:
            problems.append(f"{kind.__name__} has {sorted(m.name for m in kind)}, "
                            f"pingkiller.h {sorted(names)}")
            continue
        problems += [f"{kind.__name__}.{member.name} is {member.value}, pingkiller.h "
                     f"{getattr(c, prefix + member.name)}" for member in kind
                     if getattr(c, prefix + member.name) != member.value]
    return problems


@dataclass(frozen=True)
class Layout:
    """One struct of kern/pingkiller.h in ``struct`` terms: its C name and, in C order,
    every field's name and format code (a padding field as ``x``: packed as zeros,
    unpacked to nothing). Native byte order, no alignment: the header names its padding,
    so each offset is the sum of the sizes before it, as :func:`check_layouts` verifies."""

    ctype: str
    fields: tuple[tuple[str, str], ...]

    @property
    def format(self) -> str:
        return "=" + "".join(code for _, code in self.fields)

    @property
    def struct(self) -> struct.Struct:
        return struct.Struct(self.format)

    def size_of(self, name: str) -> int:
        """The size of field ``name`` in bytes."""
        return self.offsets()[name][1]

    def offsets(self) -> dict[str, tuple[int, int]]:
        """Field name -> (offset, size), as this layout places them."""
        placed: dict[str, tuple[int, int]] = {}
        at = 0
        for name, code in self.fields:
            size = struct.calcsize("=" + code)
            placed[name] = (at, size)
            at += size
        return placed


LIMIT_LAYOUT = Layout("struct pk_limit", (
    ("interval_ns", "Q"), ("tolerance_ns", "Q"), ("burst", "I"), ("count", "I"),
))
CONFIG_LAYOUT = Layout("struct pk_config", (
    ("default_action", "I"), ("icmp_set", "I"), ("events", "I"), ("event_rate", "I"),
    ("flags", "I"), ("event_window", "I"), ("icmp_v4", "8I"), ("icmp_v6", "8I"),
    ("limit_mask6", "16s"), ("ns_per_tick", "I"), ("limit_prefix6", "I"),
    ("limit", "QQII"), ("total", "QQII"),
))
# The settings of ABI 1 to 4: the first six fields, which keep their meaning in 5.
CONFIG_V4 = struct.Struct("=IIIIII")
RULE_LAYOUT = Layout("struct pk_rule", (("action", "I"), ("limit", "I"), ("hits", "Q")))
BUCKET_KEY_LAYOUT = Layout("struct pk_bucket_key", (
    ("limit", "I"), ("family", "B"), ("pad", "3x"), ("addr", "16s"),
))
PREFIX_V4_LAYOUT = Layout("struct pk_prefix_v4", (("prefixlen", "I"), ("addr", "4s")))
PREFIX_V6_LAYOUT = Layout("struct pk_prefix_v6", (("prefixlen", "I"), ("addr", "16s")))
COUNTER_LAYOUT = Layout("struct pk_counter", (("packets", "Q"), ("bytes", "Q")))
TIMING_LAYOUT = Layout("struct pk_timing", (("count", "Q"), ("total_ns", "Q")))
EVENT_BUDGET_LAYOUT = Layout("struct pk_event_budget", (("window_start", "Q"), ("sent", "Q")))
EVENT_LAYOUT = Layout("struct pk_event", (
    ("timestamp_ns", "Q"), ("ifindex", "I"), ("length", "I"), ("src", "16s"), ("dst", "16s"),
    ("verdict", "B"), ("reason", "B"), ("family", "B"), ("protocol", "B"),
    ("icmp_type", "B"), ("icmp_code", "B"), ("icmp_id", "H"), ("icmp_seq", "H"),
    ("hook", "B"), ("direction", "B"), ("pad", "4x"),
))
# Every struct the program and user space share.
LAYOUTS = (
    LIMIT_LAYOUT, CONFIG_LAYOUT, RULE_LAYOUT, BUCKET_KEY_LAYOUT, PREFIX_V4_LAYOUT,
    PREFIX_V6_LAYOUT, COUNTER_LAYOUT, TIMING_LAYOUT, EVENT_BUDGET_LAYOUT, EVENT_LAYOUT,
)

CONFIG = CONFIG_LAYOUT.struct  # every field, arrays and nested limits flattened
LIMIT = LIMIT_LAYOUT.struct  # interval_ns tolerance_ns burst count
RULE = RULE_LAYOUT.struct  # action limit hits
BUCKET_KEY = BUCKET_KEY_LAYOUT.struct  # limit family addr
PREFIX_V4 = PREFIX_V4_LAYOUT.struct  # prefixlen addr
PREFIX_V6 = PREFIX_V6_LAYOUT.struct
COUNTER = COUNTER_LAYOUT.struct  # packets bytes
TIMING = TIMING_LAYOUT.struct  # count total_ns
EVENT_BUDGET = EVENT_BUDGET_LAYOUT.struct  # window_start sent
EVENT = EVENT_LAYOUT.struct  # every field but pad
U32_KEY = struct.Struct("=I")  # the key of every array map


class AbiMismatchError(ImportError):
    """A layout here disagrees with the C definition compiled into the extension."""


class CLayouts(Protocol):
    """What :func:`check_layouts` asks of a cffi ``FFI``."""

    def typeof(self, cdecl: Any) -> Any: ...
    def sizeof(self, cdecl: Any) -> int: ...
    def offsetof(self, cdecl: str, *fields: str) -> int: ...


def layout_problems(layout: Layout, c: CLayouts) -> list[str]:
    """How ``layout`` differs from the C struct it names: fields, offsets, sizes."""
    ctype = layout.ctype
    # A nested struct or an array is one field of its whole size (its own layout, if it
    # has one, is checked apart: LIMIT_LAYOUT).
    c_fields = [(name, c.sizeof(field.type)) for name, field in c.typeof(ctype).fields]
    names = [name for name, _ in layout.fields]
    if names != [name for name, _ in c_fields]:
        return [f"{ctype} has fields {[name for name, _ in c_fields]}, the layout {names}"]
    problems = []
    offsets = layout.offsets()
    for name, c_size in c_fields:
        offset, size = offsets[name]
        c_offset = c.offsetof(ctype, name)
        if (offset, size) != (c_offset, c_size):
            problems.append(f"{ctype}.{name} is {c_size} bytes at offset {c_offset}, "
                            f"the layout has {size} at {offset}")
    if layout.struct.size != c.sizeof(ctype):
        problems.append(f"{ctype} is {c.sizeof(ctype)} bytes, the layout {layout.struct.size}")
    return problems


def check_layouts(layouts: tuple[Layout, ...] = LAYOUTS, c: CLayouts = ffi) -> None:
    """Raise :class:`AbiMismatchError` unless every layout and enum matches its C definition."""
    problems = [problem for layout in layouts for problem in layout_problems(layout, c)]
    problems += enum_problems()
    if DEFAULT_EVENT_RATE != lib.PK_DEFAULT_EVENT_RATE:
        problems.append(f"the default event rate is {DEFAULT_EVENT_RATE}, pingkiller.h "
                        f"{lib.PK_DEFAULT_EVENT_RATE}")
    if DEFAULT_BUCKETS != lib.PK_DEFAULT_BUCKETS:
        problems.append(f"the default bucket count is {DEFAULT_BUCKETS}, pingkiller.h "
                        f"{lib.PK_DEFAULT_BUCKETS}")
    if problems:
        raise AbiMismatchError("pingkiller ABI mismatch (rebuild: `make build`): "
                               + "; ".join(problems))


check_layouts()


_CLOCK_MONOTONIC_COARSE = 6  # <linux/time.h>; the time module does not name it


@functools.cache
def jiffies_per_second() -> int:
    """The kernel's HZ: the coarse clocks tick once a jiffy, so their resolution is
    1/HZ (clock_getres(2) reports it)."""
    return max(1, round(1 / time.clock_getres(_CLOCK_MONOTONIC_COARSE)))


def ns_per_tick() -> int:
    """The length of a jiffy in ns: the limiter's clock unit."""
    return round(NS_PER_S / jiffies_per_second())


def prefix_mask(length: int, size: int = 16) -> bytes:
    """The netmask of a prefix ``length`` bits long, ``size`` bytes."""
    return ((1 << size * 8) - (1 << (size * 8 - length))).to_bytes(size, "big")


def encode_limit(limit: Limit | None) -> tuple[int, int, int, int]:
    """``struct pk_limit``'s fields for ``limit`` (None: zeros, no limit)."""
    if limit is None:
        return (0, 0, 0, 0)
    return (limit.rate.interval_ns, limit.tolerance_ns(ns_per_tick()), limit.burst,
            limit.rate.count)


def decode_limit(interval_ns: int, tolerance_ns: int, burst: int, count: int) -> Limit | None:
    """Inverse of :func:`encode_limit`: the unit is the one ``count`` intervals make."""
    del tolerance_ns  # made from the rest, and from the clock
    if not interval_ns:
        return None
    unit = min(UNIT_SECONDS, key=lambda u: abs(UNIT_SECONDS[u] * NS_PER_S - interval_ns * count))
    return Limit(Rate(count, unit), burst)


@dataclass(frozen=True)
class Config:
    """The settings map's single entry. Its event window (a second, in the kernel's
    jiffies) and its clock unit are not settings: :meth:`encode` writes this kernel's."""

    default_action: DefaultAction = DefaultAction.PASS
    icmp: IcmpTypes | IcmpSet = IcmpSet.ECHO
    events: EventsMode = EventsMode.OFF
    event_rate: int = DEFAULT_EVENT_RATE
    flags: ConfigFlag = NO_FLAGS
    limit: Limit | None = None
    total: Limit | None = None
    limit_prefix6: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "icmp", IcmpTypes.coerce(self.icmp))
        flags = self.flags & ~ConfigFlag.LIMIT_TOTAL
        if self.total is not None:
            flags |= ConfigFlag.LIMIT_TOTAL
        object.__setattr__(self, "flags", ConfigFlag(flags))

    @property
    def icmp_types(self) -> IcmpTypes:
        assert isinstance(self.icmp, IcmpTypes)
        return self.icmp

    def encode(self) -> bytes:
        icmp = self.icmp_types
        return CONFIG.pack(
            self.default_action, icmp.shorthand, self.events, self.event_rate, self.flags,
            jiffies_per_second(), *icmp.bitmap(4), *icmp.bitmap(6),
            prefix_mask(self.limit_prefix6), ns_per_tick(), self.limit_prefix6,
            *encode_limit(self.limit), *encode_limit(self.total),
        )

    @classmethod
    def decode(cls, raw: bytes) -> Config:
        fields = CONFIG.unpack(raw[: CONFIG.size])
        default, _, events, rate, flags, _ = fields[:6]
        icmp = IcmpTypes.from_bitmaps(fields[6:14], fields[14:22])
        prefix6 = fields[24]
        limit, total = decode_limit(*fields[25:29]), decode_limit(*fields[29:33])
        flags = ConfigFlag(flags)
        return cls(DefaultAction(default), icmp, EventsMode(events), rate, flags,
                   limit, total if flags & ConfigFlag.LIMIT_TOTAL else None, prefix6)

    @classmethod
    def decode_v4(cls, raw: bytes) -> Config:
        """The settings of pins of ABI 1 to 4 (24 bytes; ABI 1 and 2 had no event window)."""
        default, icmp, events, rate, flags, _ = CONFIG_V4.unpack(raw[: CONFIG_V4.size])
        return cls(DefaultAction(default), IcmpSet(icmp), EventsMode(events), rate,
                   ConfigFlag(flags))

    @classmethod
    def of(cls, policy: Policy, lookups: ConfigFlag = NO_FLAGS) -> Config:
        """The settings of ``policy``, with the rule maps' ``lookups`` flags."""
        flags = lookups
        if policy.all_protocols:
            flags |= ConfigFlag.ALL_PROTOCOLS
        if policy.timing:
            flags |= ConfigFlag.TIMING
        return cls(policy.default, policy.icmp_types, policy.events, policy.event_rate, flags,
                   policy.limit, policy.limit_total, policy.limit_prefix6)

    def policy(self, limit_buckets: int = DEFAULT_BUCKETS) -> Policy:
        """The policy these settings are (the bucket count is the buckets map's size)."""
        return Policy(default=self.default_action, icmp=self.icmp_types,
                      all_protocols=bool(self.flags & ConfigFlag.ALL_PROTOCOLS),
                      events=self.events, event_rate=self.event_rate,
                      timing=bool(self.flags & ConfigFlag.TIMING), limit=self.limit,
                      limit_total=self.total, limit_prefix6=self.limit_prefix6,
                      limit_buckets=limit_buckets)


def u32_key(index: int) -> bytes:
    """Key of an array map slot."""
    return U32_KEY.pack(index)


def encode_rule(action: RuleAction, hits: int = 0, *, limit: int = 0, cpus: int = 1) -> bytes:
    """A rule map value: ``cpus`` copies of the rule (a per-CPU map's value holds one
    per possible CPU: pingkiller.bpf.Map.cpus), the first with ``hits``; ``limit``: a
    limit rule's index in the limits map."""
    return RULE.pack(action, limit, hits) + RULE.pack(action, limit, 0) * (cpus - 1)


def decode_rule(raw: bytes) -> tuple[RuleAction, int]:
    """The action and total hits of a rule map value (one copy or one per CPU)."""
    copies = list(RULE.iter_unpack(raw))
    return RuleAction(copies[0][0]), sum(hits for _, _, hits in copies)


def rule_limit(raw: bytes) -> int:
    """A rule map value's index in the limits map (0 unless a limit rule)."""
    return int(RULE.unpack_from(raw)[1])


def rule_map_name(network: Network) -> str:
    """Which map holds the rule for ``network``."""
    if network.version == 4:
        return RULES_V4_MAP if is_exact(network) else PREFIXES_V4_MAP
    return RULES_V6_MAP if is_exact(network) else PREFIXES_V6_MAP


def rule_key(network: Network) -> bytes:
    """The map key for ``network``: the address for exact rules, prefixlen+address otherwise."""
    address = network.network_address.packed
    if is_exact(network):
        return address
    return prefix_key(network.prefixlen, address)


def prefix_key(prefixlen: int, address: bytes) -> bytes:
    """The key of an LPM trie map: ``struct pk_prefix_v4`` or ``_v6`` by the address size."""
    return (PREFIX_V4 if len(address) == 4 else PREFIX_V6).pack(prefixlen, address)


def network_from_key(map_name: str, key: bytes) -> Network:
    """Inverse of :func:`rule_key`."""
    if map_name == RULES_V4_MAP:
        return ipaddress.IPv4Network(key)
    if map_name == RULES_V6_MAP:
        return ipaddress.IPv6Network(key)
    if map_name == PREFIXES_V4_MAP:
        prefixlen, address = PREFIX_V4.unpack_from(key)
        return ipaddress.IPv4Network((address, prefixlen))
    prefixlen, address = PREFIX_V6.unpack_from(key)
    return ipaddress.IPv6Network((address, prefixlen))
