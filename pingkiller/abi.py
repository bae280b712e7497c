"""The binary ABI of kern/pingkiller.h in Python: enums, struct layouts, encoders.

Every layout is checked against the C definitions compiled into the extension, so
the C header stays the one source of truth.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass

from pingkiller._native import ffi, lib

MAX_EXACT_RULES: int = lib.PK_MAX_EXACT_RULES
MAX_PREFIX_RULES: int = lib.PK_MAX_PREFIX_RULES
DEFAULT_EVENT_RATE: int = lib.PK_DEFAULT_EVENT_RATE

# Names of the maps in the object, as pinned.
SETTINGS_MAP = "settings"
COUNTERS_MAP = "counters"
TIMING_MAP = "timing"
EVENTS_MAP = "events"
RULES_V4_MAP = "rules_v4"
RULES_V6_MAP = "rules_v6"
PREFIXES_V4_MAP = "prefixes_v4"
PREFIXES_V6_MAP = "prefixes_v6"
PROGRAM_NAME = "pingkiller"


class Reason(enum.IntEnum):
    """Why a packet got its verdict (one counter each)."""

    PASS_NOT_PING = lib.PK_REASON_PASS_NOT_PING
    PASS_ALLOW = lib.PK_REASON_PASS_ALLOW
    PASS_DEFAULT = lib.PK_REASON_PASS_DEFAULT
    DROP_BLOCK = lib.PK_REASON_DROP_BLOCK
    DROP_DEFAULT = lib.PK_REASON_DROP_DEFAULT
    PASS_FRAGMENT = lib.PK_REASON_PASS_FRAGMENT
    PASS_UNPARSED = lib.PK_REASON_PASS_UNPARSED

    @property
    def dropped(self) -> bool:
        return self in (Reason.DROP_BLOCK, Reason.DROP_DEFAULT)

    @property
    def label(self) -> str:
        """Stable lower-case name used in output and JSON (e.g. ``drop_block``)."""
        return self.name.lower()


REASON_COUNT: int = lib.PK_REASON_COUNT


class CounterSlot(enum.IntEnum):
    """Slots of the counters map past the reasons."""

    EVENTS_SENT = lib.PK_COUNTER_EVENTS_SENT
    EVENTS_SUPPRESSED = lib.PK_COUNTER_EVENTS_SUPPRESSED
    EVENTS_LOST = lib.PK_COUNTER_EVENTS_LOST


COUNTER_COUNT: int = lib.PK_COUNTER_COUNT


class DefaultAction(enum.IntEnum):
    """What happens to a ping no rule decides."""

    PASS = lib.PK_ACTION_PASS
    DROP = lib.PK_ACTION_DROP


class RuleAction(enum.IntEnum):
    ALLOW = lib.PK_RULE_ALLOW
    BLOCK = lib.PK_RULE_BLOCK


class IcmpSet(enum.IntEnum):
    """Which ICMP messages count as a ping."""

    ECHO = lib.PK_ICMP_ECHO
    ECHO_REQUEST = lib.PK_ICMP_ECHO_REQUEST
    ALL = lib.PK_ICMP_ALL


class EventsMode(enum.IntEnum):
    """Which packets produce a ring-buffer event."""

    OFF = lib.PK_EVENTS_OFF
    DROPS = lib.PK_EVENTS_DROPS
    PINGS = lib.PK_EVENTS_PINGS
    ALL = lib.PK_EVENTS_ALL


class ConfigFlag(enum.IntFlag):
    ALL_PROTOCOLS = lib.PK_F_ALL_PROTOCOLS
    TIMING = lib.PK_F_TIMING
    PREFIXES_V4 = lib.PK_F_PREFIXES_V4
    PREFIXES_V6 = lib.PK_F_PREFIXES_V6


NO_FLAGS = ConfigFlag(0)


class TimingSlot(enum.IntEnum):
    DROP = lib.PK_TIMING_DROP
    PASS = lib.PK_TIMING_PASS


TIMING_COUNT: int = lib.PK_TIMING_COUNT

CONFIG = struct.Struct("<IIIIII")  # default_action icmp_set events event_rate flags pad
RULE = struct.Struct("<IIQ")  # action pad hits
COUNTER = struct.Struct("<QQ")  # packets bytes
TIMING = struct.Struct("<QQ")  # count total_ns
EVENT = struct.Struct("<QII16s16sBBBBBBHH6x")
U32_KEY = struct.Struct("<I")


def _check_layouts() -> None:
    for layout, ctype in (
        (CONFIG, "struct pk_config"),
        (RULE, "struct pk_rule"),
        (COUNTER, "struct pk_counter"),
        (TIMING, "struct pk_timing"),
        (EVENT, "struct pk_event"),
    ):
        if layout.size != ffi.sizeof(ctype):
            raise ImportError(f"pingkiller ABI mismatch: {ctype} is {ffi.sizeof(ctype)} bytes")


_check_layouts()


@dataclass(frozen=True)
class Config:
    """The settings map's single entry."""

    default_action: DefaultAction = DefaultAction.PASS
    icmp_set: IcmpSet = IcmpSet.ECHO
    events: EventsMode = EventsMode.OFF
    event_rate: int = DEFAULT_EVENT_RATE
    flags: ConfigFlag = NO_FLAGS

    def encode(self) -> bytes:
        return CONFIG.pack(
            self.default_action, self.icmp_set, self.events, self.event_rate, self.flags, 0
        )

    @classmethod
    def decode(cls, raw: bytes) -> Config:
        default, icmp, events, rate, flags, _ = CONFIG.unpack(raw[: CONFIG.size])
        return cls(DefaultAction(default), IcmpSet(icmp), EventsMode(events), rate, ConfigFlag(flags))


def u32_key(index: int) -> bytes:
    """Key of an array map slot."""
    return U32_KEY.pack(index)


def encode_rule(action: RuleAction, hits: int = 0) -> bytes:
    return RULE.pack(action, 0, hits)


def decode_rule(raw: bytes) -> tuple[RuleAction, int]:
    action, _, hits = RULE.unpack(raw[: RULE.size])
    return RuleAction(action), hits


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_exact(network: Network) -> bool:
    """Host rules (/32, /128) live in the hash maps; the rest in the LPM tries."""
    return network.prefixlen == network.max_prefixlen


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
    return U32_KEY.pack(network.prefixlen) + address


def network_from_key(map_name: str, key: bytes) -> Network:
    """Inverse of :func:`rule_key`."""
    if map_name == RULES_V4_MAP:
        return ipaddress.IPv4Network(key)
    if map_name == RULES_V6_MAP:
        return ipaddress.IPv6Network(key)
    (prefixlen,) = U32_KEY.unpack_from(key)
    if map_name == PREFIXES_V4_MAP:
        return ipaddress.IPv4Network((key[4:8], prefixlen))
    return ipaddress.IPv6Network((key[4:20], prefixlen))
